"""AWS Batch workers: each (queue, definition, region) gets array jobs on the cluster's job queue.

Behind :class:`hyper.backends.base.WorkerBackend` for the generic tick (:mod:`hyper.scheduler.loop`):

* inventory: in every region the pairs' clusters span, which job queues exist and are ENABLED/VALID, and the
  unfinished worker jobs in them (by tags, so a crashed and restarted scheduler counts what its predecessor
  started and never provisions twice; jobs this process or a predecessor submitted in the last five minutes
  are described directly, because ListJobs lags);
* workers waiting RUNNABLE longer than the host's ``worker_stuck_after`` (seconds, default 1800) with nothing
  of theirs ever started are **stuck**: typically a definition no instance type of the compute environment
  can hold (ECS reserves part of every instance's memory). They are not counted as live, are shown with a
  reason, and the region gets no new workers of that pair this tick (its share goes to the others);
* prepare: the latest ACTIVE revision of each needed job definition per region (cached five minutes);
* render: :func:`hyper.aws.batch.render_submissions` (pure);
* submit: at most ``batch_submit_rate`` SubmitJob per second across all regions (Batch allows 50/s per
  account); throttled or never-sent submissions back off and are retried within a budget, others are reported.
"""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, ClassVar, Sequence

from hyper.aws import names
from hyper.aws.batch import (FINISHED_STATUSES, BatchApi, BatchStatus, LiveJob, SubmitRequest, live_workers,
                             render_submissions)
from hyper.backends import instances
from hyper.backends.base import Inventory, Pair, Stuck, Submitted, WorkerState, problem, setting
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster
from hyper.store.base import Store, WorkerInfo

DEFAULT_SUBMIT_RATE = 50.0  # SubmitJob per second per account (AWS Batch quota)
RECENT_SECONDS = 300.0  # jobs this process submitted are described directly for this long (ListJobs lags)
DEFINITION_CACHE_SECONDS = 300.0
DEFAULT_STUCK_AFTER = 1800.0

# Batch job statuses in the one worker-state language
BATCH_STATES: dict[str, WorkerState] = {
    BatchStatus.SUBMITTED: WorkerState.PENDING, BatchStatus.PENDING: WorkerState.PENDING,
    BatchStatus.RUNNABLE: WorkerState.PENDING, BatchStatus.STARTING: WorkerState.STARTING,
    BatchStatus.RUNNING: WorkerState.RUNNING, BatchStatus.SUCCEEDED: WorkerState.SUCCEEDED,
    BatchStatus.FAILED: WorkerState.FAILED,
}


class TokenBucket:
    """At most `rate` calls per second on average, bursts up to `burst`; shared by every region's thread."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else rate)
        self.tokens = self.burst
        self.clock = clock
        self.sleep = sleep
        self.stamp = clock()
        self.lock = threading.Lock()

    def take(self) -> float:
        """Take a token, waiting for it if the bucket is empty; returns the seconds waited.

        Reservation style: a caller finding no token goes into debt and sleeps until its token has accrued,
        so concurrent callers queue up in order and no one spins.
        """
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
            self.tokens -= 1
            wait = -self.tokens / self.rate if self.tokens < 0 else 0.0
        if wait > 0:
            self.sleep(wait)
        return wait


def stuck_runnable(job: dict, now: float, limit: float) -> float | None:
    """Seconds a worker job has waited RUNNABLE with nothing of it ever started, when beyond `limit`."""
    created = job.get("createdAt")
    if not created or limit <= 0:
        return None
    age = now - float(created) / 1000.0
    if age < limit:
        return None
    array = job.get("arrayProperties") or {}
    if "size" in array:
        summary = array.get("statusSummary") or {}
        started = sum(int(summary.get(s) or 0) for s in (BatchStatus.STARTING, BatchStatus.RUNNING,
                                                           BatchStatus.SUCCEEDED, BatchStatus.FAILED))
        return age if started == 0 and int(summary.get(BatchStatus.RUNNABLE) or 0) > 0 else None
    return age if job.get("status") == BatchStatus.RUNNABLE else None


class BatchBackend:
    kind: ClassVar[str] = "batch"

    def __init__(self, host: Host, store: Store, *, api: BatchApi | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 submit_rate: float | None = None, worker_idle: float | None = None,
                 throttle_budget: float = 120.0, max_threads: int = 16, prices: Any = None):
        self.host = host
        self.store = store
        self.api = api or BatchApi(host)
        self.clock = clock
        self.sleep = sleep
        extra = host.extra or {}
        rate = submit_rate if submit_rate is not None else setting(extra, "batch_submit_rate", DEFAULT_SUBMIT_RATE)
        if not rate or rate <= 0:
            raise HyperError(f"host setting batch_submit_rate={rate!r} must be positive", "e.g. batch_submit_rate: 50")
        self.bucket = TokenBucket(rate, sleep=sleep)
        self.worker_idle = worker_idle if worker_idle is not None else setting(extra, "worker_idle", None)
        self.stuck_after = setting(extra, "worker_stuck_after", DEFAULT_STUCK_AFTER) or 0.0
        self.throttle_budget = throttle_budget
        self.max_threads = max_threads
        self.prices = prices if prices is not None else instances.PriceBook(host)
        self.prefix = names.prefix(host)
        self._recent: dict[str, dict[str, float]] = {}  # region -> {job id: submitted at}
        self._recalled = False  # recent submissions of an earlier scheduler process read from the store yet
        self._revisions: dict[tuple[str, str], tuple[int, float]] = {}  # (region, batch def) -> (rev, checked at)
        self._pinned: dict[tuple[str, str], int] = {}  # this tick's revisions, for render
        self._lock = threading.Lock()

    # -- inventory -----------------------------------------------------------------------------------
    def _recall(self, now: float) -> None:
        with self._lock:
            if not self._recalled:  # a restarted scheduler first recalls what its predecessor submitted
                self._recalled = True
                for region, job_id, at in self.store.recent_submissions(now - RECENT_SECONDS):
                    self._recent.setdefault(region, {}).setdefault(job_id, at)
            for ids in self._recent.values():
                for job_id in [j for j, t in ids.items() if now - t >= RECENT_SECONDS]:
                    del ids[job_id]

    def inventory(self, pairs: Sequence[Pair], known_pairs: Sequence[tuple[str, str]]) -> Inventory:
        self._recall(self.clock())
        by_region: dict[str, set[str]] = {}
        definitions = {p.definition.name: p.definition for p in pairs}
        for p in pairs:
            for r in p.enabled:
                by_region.setdefault(r, set()).add(p.cluster.name)
        inv = Inventory()
        states = self._in_parallel(lambda r: self._inspect(r, by_region[r], known_pairs), sorted(by_region))
        now = self.clock()
        for region, (usable, known, live, problems) in sorted(states.items()):
            inv.problems.extend(problems)
            inv.usable.update((c, region) for c in usable)
            inv.known.update((c, region) for c in known)
            for cluster, job, raw in live:
                vcpus = job.vcpus
                if job.key is not None:
                    if job.definition in definitions:
                        vcpus = definitions[job.definition].vcpus
                    age = stuck_runnable(raw, now, self.stuck_after)
                    if age is not None:
                        inv.stuck.append(Stuck(job.queue, job.definition, region, job.workers, age,
                                               self._stuck_reason(cluster, job.definition, pairs, age), self.kind))
                        continue
                    inv.add_live(job.queue, job.definition, region, job.workers)
                inv.add_used(cluster, region, job.workers * max(1, vcpus))
        return inv

    def _stuck_reason(self, cluster: str, definition: str, pairs: Sequence[Pair], age: float) -> str:
        for p in pairs:
            if p.cluster.name == cluster and p.definition.name == definition:
                why = instances.fit_problem(p.definition, p.cluster, reserve=instances.ECS_RESERVE)
                if why:
                    return f"RUNNABLE for {age / 60:.0f} min: {why}"
        return (f"RUNNABLE for {age / 60:.0f} min with nothing started: the compute environment has no capacity "
                "for it (spot capacity, the account's vCPU quota, or instance types too small)")

    def _in_parallel(self, fn: Callable[[str], Any], regions: list[str]) -> dict[str, Any]:
        if len(regions) <= 1:
            return {r: fn(r) for r in regions}
        with ThreadPoolExecutor(max_workers=min(self.max_threads, len(regions)),
                                thread_name_prefix="hyper-batch") as pool:
            return dict(zip(regions, pool.map(fn, regions)))

    def _inspect(self, region: str, cluster_names: set[str], known_pairs: Sequence[tuple[str, str]]
                 ) -> tuple[set[str], set[str], list[tuple[str, LiveJob, dict]], list[str]]:
        """Which job queues exist in a region, and the unfinished worker jobs in them: (usable clusters, clusters
        whose jobs are all known, (cluster, job, its DescribeJobs entry) of live workers, problems)."""
        usable: set[str] = set()
        known: set[str] = set()
        live: list[tuple[str, LiveJob, dict]] = []
        problems: list[str] = []
        wanted = {names.job_queue(self.host, c): c for c in sorted(cluster_names)}
        try:
            found = self.api.job_queues(region, list(wanted))
        except Exception as exc:
            problems.append(self._batch_problem(exc, region, "DescribeJobQueues"))
            return usable, known, live, problems
        now = self.clock()
        for qname, cluster in wanted.items():
            jq = found.get(qname)
            if jq is None:
                known.add(cluster)  # no job queue: nothing of ours runs there
                problems.append(problem(
                    f"region {region}: Batch job queue {qname} (cluster {cluster}) does not exist",
                    f"provision cluster {cluster} in {region} with hyper (its stack creates the job queue), or "
                    f"remove {region} from the cluster's regions; the other regions are still scheduled"))
                continue
            if jq.get("state") == "ENABLED" and jq.get("status") in (None, "VALID", "UPDATING"):
                usable.add(cluster)
            else:
                why = jq.get("statusReason") or ""
                problems.append(problem(
                    f"region {region}: Batch job queue {qname} is {jq.get('state')}/{jq.get('status')}"
                    + (f": {why}" if why else "") + "; no new workers there",
                    f"enable it or re-provision cluster {cluster} in {region}"))
            with self._lock:
                recent = [j for j, t in self._recent.get(region, {}).items() if now - t < RECENT_SECONDS]
            try:
                listing = self.api.active_jobs(region, qname, also=recent)
            except Exception as exc:
                usable.discard(cluster)
                problems.append(self._batch_problem(exc, region, f"ListJobs on {qname}"))
                continue
            if listing.truncated:
                usable.discard(cluster)
                problems.append(problem(
                    f"region {region}: job queue {qname} lists more unfinished jobs than the scheduler reads "
                    f"({self.api.max_pages} pages per status); live workers unknown",
                    "raise BatchApi max_pages or cancel stale jobs"))
                continue
            known.add(cluster)
            raw = {str(j.get("jobId", "")): j for j in listing.jobs}
            live.extend((cluster, job, raw.get(job.job_id, {}))
                        for job in live_workers(listing.jobs, self.prefix, known_pairs))
        return usable, known, live, problems

    # -- prepare: job definitions --------------------------------------------------------------------
    def prepare(self, pairs: dict[tuple[str, str], Pair], wanted: dict[tuple[str, str], int]) -> list[str]:
        """Latest ACTIVE revision of each needed job definition per region; regions without it are dropped."""
        self._pinned = {}
        needed: dict[str, set[str]] = {}
        for key, n in wanted.items():
            if n > 0:
                for r in pairs[key].weights:
                    needed.setdefault(r, set()).add(key[1])
        if not needed:
            return []
        now = self.clock()

        def check(region: str) -> tuple[dict[str, int | None], list[str]]:
            found: dict[str, int | None] = {}
            problems = []
            for dname in sorted(needed[region]):
                batch_name = names.job_definition(self.host, dname)
                with self._lock:
                    cached = self._revisions.get((region, batch_name))
                if cached and now - cached[1] < DEFINITION_CACHE_SECONDS:
                    found[dname] = cached[0]
                    continue
                try:
                    rev = self.api.definition_revision(region, batch_name)
                except Exception as exc:
                    found[dname] = None
                    problems.append(self._batch_problem(exc, region, f"DescribeJobDefinitions {batch_name}"))
                    continue
                found[dname] = rev
                if rev is None:
                    problems.append(problem(
                        f"region {region}: Batch job definition {batch_name} (definition {dname}) has no ACTIVE "
                        "revision; no workers for it there",
                        f"provision definition {dname} with hyper (it registers the job definition in every "
                        "region of the cluster)"))
                else:
                    with self._lock:
                        self._revisions[(region, batch_name)] = (rev, now)
            return found, problems

        out: list[str] = []
        for region, (found, problems) in sorted(self._in_parallel(check, sorted(needed)).items()):
            out.extend(problems)
            for dname, rev in found.items():
                if rev is None:
                    for key, p in pairs.items():
                        if key[1] == dname:
                            p.weights.pop(region, None)
                else:
                    self._pinned[(region, dname)] = rev
        return out

    # -- render (pure given the pinned revisions) ----------------------------------------------------
    def render(self, counts: dict[tuple[str, str, str], int], pairs: dict[tuple[str, str], Pair],
               tick: str) -> list[SubmitRequest]:
        definitions = {k[1]: p.definition for k, p in pairs.items()}
        clusters = {k[0]: p.cluster.name for k, p in pairs.items()}
        return render_submissions(self.host, counts, definitions, clusters, tick, revisions=self._pinned,
                                  worker_idle=self.worker_idle)

    def capacity(self, cluster: Cluster, region: str) -> tuple[int, int | None]:
        from hyper.scheduler.loop import region_cap

        return region_cap(cluster, region), None  # a compute environment caps vCPUs only

    def hourly_price(self, pair: Pair, region: str) -> float | None:
        return self.prices.worker_price(pair.definition, pair.cluster, region, reserve=instances.ECS_RESERVE)

    # -- submit / cancel -----------------------------------------------------------------------------
    def submit(self, requests: Sequence[SubmitRequest]) -> list[tuple[Submitted | None, str | None]]:
        by_region: dict[str, list[SubmitRequest]] = {}
        for req in requests:
            by_region.setdefault(req.region, []).append(req)

        def run(region: str) -> list[tuple[Submitted | None, str | None]]:
            return [self._submit_one(req) for req in by_region[region]]

        out = []
        for _, results in sorted(self._in_parallel(run, sorted(by_region)).items()):
            out.extend(results)
        return out

    def ended(self, workers: Sequence[WorkerInfo]) -> list[str]:
        """Workers whose own Batch job (``<array job>:<index>``, recorded by the worker) is SUCCEEDED or FAILED:
        the container is gone (spot reclaim, OOM, host failure), whatever lease its jobs still hold. One
        DescribeJobs per 100 workers and region; a region that cannot be asked is asked again next tick."""
        from hyper.placement import parse_host

        by_region: dict[str, dict[str, str]] = {}
        for w in workers:
            where = parse_host(w.host)
            if where.get("batch_job") and where.get("region"):
                by_region.setdefault(where["region"], {})[where["batch_job"]] = w.id
        out: list[str] = []
        for region, ids in sorted(by_region.items()):
            try:
                described = self.api.describe(region, sorted(ids))
            except Exception:  # (inventory reports the region's Batch problems; this only loses a shortcut)
                continue
            out.extend(ids[j["jobId"]] for j in described
                       if j.get("jobId") in ids and j.get("status") in FINISHED_STATUSES)  # no container left
        return sorted(out)

    def cancel(self, worker_ids: Sequence[str]) -> list[bool]:
        """Terminate worker jobs given as ``region/job id``; False for those Batch refused."""
        out = []
        for wid in worker_ids:
            region, _, job_id = wid.partition("/")
            try:
                self.api.terminate(region, job_id, "cancelled by hyper scheduler")
                out.append(True)
            except Exception as exc:
                self._batch_problem(exc, region, f"TerminateJob {job_id}")
                out.append(False)
        return out

    def _submit_one(self, req: SubmitRequest) -> tuple[Submitted | None, str | None]:
        from hyper.aws.batch import error_code, error_message, is_throttling, never_sent

        what = f"{req.job_name} ({req.workers} worker(s) for queue {req.queue}, definition {req.definition})"
        started = time.monotonic()
        delay = 0.5
        while True:
            self.bucket.take()
            try:
                response = self.api.submit(req.region, req.request)
            except HyperError as exc:  # e.g. no client for the region: nothing was sent
                return None, problem(f"region {req.region}: cannot submit {what}: {exc.message}", exc.hint)
            except Exception as exc:
                module = type(exc).__module__ or ""
                if not module.startswith(("botocore", "boto3", "urllib3")):
                    raise
                retry = is_throttling(exc) or never_sent(exc)
                if retry and time.monotonic() - started + delay <= self.throttle_budget:
                    self.sleep(random.uniform(delay / 2, delay))
                    delay = min(delay * 2, 20.0)
                    continue
                if retry:
                    return None, problem(
                        f"region {req.region}: Batch did not accept {what} within {self.throttle_budget:g} s "
                        f"({error_code(exc) or type(exc).__name__}); not submitted",
                        "the next tick plans these workers again")
                code = error_code(exc)
                if code:
                    return None, problem(f"region {req.region}: Batch refused {what}: {code}: {error_message(exc)}",
                                         "fix the job queue or definition in that region; other regions were "
                                         "still submitted")
                return None, problem(f"region {req.region}: submitting {what} failed: {type(exc).__name__}: "
                                     f"{error_message(exc)}; whether Batch started it is unknown",
                                     "the next tick counts it if Batch did")
            job_id = str(response.get("jobId", ""))
            at = self.clock()
            with self._lock:
                self._recent.setdefault(req.region, {})[job_id] = at
            done = Submitted(req.region, req.queue, req.definition, req.workers, req.job_name, job_id, self.kind)
            try:
                self.store.remember_submission(req.region, job_id, at, RECENT_SECONDS)
            except Exception as exc:  # the array runs anyway; only a restart in the next minutes could miss it
                return done, problem(f"region {req.region}: array {job_id} submitted but not recorded: "
                                     f"{type(exc).__name__}", "a scheduler restarted in the next 5 minutes "
                                     "may count it late")
            return done, None

    def _batch_problem(self, exc: BaseException, region: str, action: str) -> str:
        from hyper.aws.batch import batch_error

        module = type(exc).__module__ or ""
        if not isinstance(exc, HyperError) and not module.startswith(("botocore", "boto3", "urllib3")):
            raise exc
        return str(batch_error(exc, self.host, region, action))
