"""The aws host's scheduler: turns queued jobs into AWS Batch worker arrays across regions, one tick at a time.

A tick (``hyper scheduler run --once``, or every ``--interval`` seconds):

1. sweeps expired leases back to QUEUED (workers lost to spot interruptions or killed containers);
2. reads the backlog per (queue, definition) from the store, and refreshes the auto region weights of queues
   with a backlog when they are older than the host setting ``weights_refresh`` (seconds, default 900; 0 turns
   it off; :mod:`hyper.services.weights`; on --dry-run they are computed but not stored);
3. asks Batch, in every region the queues' clusters span, which worker jobs are still unfinished (a crashed and
   restarted scheduler therefore counts what its predecessor started and never provisions twice);
4. plans with :func:`hyper.scheduler.planner.plan_regions`: ceil(backlog / ratio) minus live and pending workers,
   split by the queue's region weights (largest remainder), capped per region by the cluster's max vCPUs;
5. renders the SubmitJob requests (:func:`hyper.aws.batch.render_submissions`) and sends them, at most
   ``submit_rate`` per second across all regions (Batch allows 50 SubmitJob/s per account).

Bad input never stops the tick: a queue whose cluster has no region, a region without the job queue or job
definition, Batch refusing a request, each becomes one line in ``TickReport.problems`` naming the queue or
region and the fix, and everything else is still planned and submitted. Throttled submissions back off and are
retried; one still throttled at the end of the budget is reported, never dropped silently (the next tick plans
it again, since it is not among Batch's live workers).
"""

from __future__ import annotations

import os
import random
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable

from hyper.aws import names
from hyper.aws.batch import BatchApi, LiveJob, SubmitRequest, live_workers, render_submissions
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Queue, Region
from hyper.scheduler.planner import Demand, plan_regions
from hyper.store.base import Store

DEFAULT_SUBMIT_RATE = 50.0  # SubmitJob per second per account (AWS Batch quota)
DISABLED_STATES = ("DISABLED", "DELETING", "DELETED")  # a region resource in these states gets no new workers
RECENT_SECONDS = 300.0  # jobs this process submitted are described directly for this long (ListJobs lags)
DEFINITION_CACHE_SECONDS = 300.0


# ---------------------------------------------------------------- report
@dataclass
class PlanRow:
    queue: str
    definition: str
    region: str
    backlog: int  # queued tasks of the (queue, definition), all regions
    live: int  # unfinished Batch workers of the pair in this region (submitted .. running)
    new: int  # workers this tick starts there

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Submitted:
    region: str
    queue: str
    definition: str
    workers: int
    job_name: str
    job_id: str

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TickReport:
    tick: str
    dry_run: bool = False
    requeued: int = 0
    rows: list[PlanRow] = field(default_factory=list)
    requests: list[SubmitRequest] = field(default_factory=list)
    submitted: list[Submitted] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"tick": self.tick, "dry_run": self.dry_run, "requeued": self.requeued,
                "plan": [r.to_dict() for r in self.rows], "requests": [r.to_dict() for r in self.requests],
                "submitted": [s.to_dict() for s in self.submitted], "problems": list(self.problems)}


def problem(message: str, hint: str | None = None) -> str:
    return message + (f" ({hint})" if hint else "")


def tick_id(now: float) -> str:
    """Lower-case letters and digits only (job names end in it): UTC time plus 4 random hex digits."""
    return time.strftime("t%Y%m%d%H%M%S", time.gmtime(now)) + secrets.token_hex(2)


# ---------------------------------------------------------------- rate limit
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


# ---------------------------------------------------------------- resources -> planner input
def enabled_regions(cluster: Cluster, regions: dict[str, Region]) -> list[str]:
    """The cluster's regions that exist on the host and are not being disabled or deleted."""
    return [r for r in cluster.regions if r in regions and regions[r].status not in DISABLED_STATES]


def effective_weights(queue: Queue, regions: list[str]) -> dict[str, int]:
    """The queue's positive region weights among `regions`.

    ``auto`` (or no weights at all) means the weights provisioning computed (a ``auto_weights`` mapping on
    the queue when present), else equal weights across the regions.
    """
    weights = queue.weights
    if weights == "auto" or not weights:
        computed = getattr(queue, "auto_weights", None)
        weights = computed if isinstance(computed, dict) and computed else {r: 1 for r in regions}
    if not isinstance(weights, dict):
        return {}
    out = {}
    for r in regions:
        try:
            w = int(weights.get(r, 0))
        except (TypeError, ValueError):
            w = 0
        if w > 0:
            out[r] = w
    return out


def region_cap(cluster: Cluster, region: str) -> int:
    """The cluster's vCPU cap in a region: its per-region override, else its max_vcpus."""
    override = (cluster.overrides or {}).get(region) or {}
    value = override.get("max_vcpus")
    return int(value) if value not in (None, "") else int(cluster.max_vcpus or 0)


@dataclass
class _Pair:
    queue: Queue
    definition: Definition
    cluster: Cluster
    backlog: int
    regions: list[str]  # regions shown in the plan (the queue's weighted regions)
    weights: dict[str, int]  # weights still usable this tick
    enabled: list[str]  # every usable region of the cluster: workers there count as live whatever the weights


@dataclass
class _RegionState:
    usable: set = field(default_factory=set)  # clusters whose job queue is there and ENABLED/VALID
    known: set = field(default_factory=set)  # clusters whose live workers in this region are known
    live: list[tuple[str, LiveJob]] = field(default_factory=list)  # (cluster, job)
    problems: list[str] = field(default_factory=list)


def _seconds(extra: dict, key: str, default: float | None) -> float | None:
    raw = extra.get(key)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise HyperError(f"host setting {key}={raw!r} is not a number", f"set it like {key}: 60") from None


# ---------------------------------------------------------------- the scheduler
class BatchScheduler:
    def __init__(self, host: Host, store: Store, *, api: BatchApi | None = None,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                 submit_rate: float | None = None, worker_idle: float | None = None,
                 throttle_budget: float = 120.0, max_threads: int = 16,
                 weights_clients: Callable[[str], Any] | None = None):
        if host.type != "aws":
            raise HyperError(f"host {host.name!r} is a local host: its agent schedules workers itself",
                             "`hyper scheduler run` is for aws hosts; on a local host qsub starts the agent "
                             "(or run `hyper agent run`)")
        self.host = host
        self.store = store
        self.api = api or BatchApi(host)
        self.clock = clock
        self.sleep = sleep
        extra = host.extra or {}
        rate = submit_rate if submit_rate is not None else _seconds(extra, "batch_submit_rate", DEFAULT_SUBMIT_RATE)
        if not rate or rate <= 0:
            raise HyperError(f"host setting batch_submit_rate={rate!r} must be positive", "e.g. batch_submit_rate: 50")
        self.bucket = TokenBucket(rate, sleep=sleep)
        self.worker_idle = worker_idle if worker_idle is not None else _seconds(extra, "worker_idle", None)
        self.throttle_budget = throttle_budget
        self.max_threads = max_threads
        self.prefix = names.prefix(host)
        self._recent: dict[str, dict[str, float]] = {}  # region -> {job id: submitted at}
        self._recalled = False  # recent submissions of an earlier scheduler process read from the store yet
        self._revisions: dict[tuple[str, str], tuple[int, float]] = {}  # (region, batch def) -> (rev, checked at)
        self._lock = threading.Lock()
        self.weights_clients = weights_clients  # region -> EC2 client for auto weights (default: the host's)
        self.weights_refresh = _seconds(extra, "weights_refresh", 900.0) or 0.0
        self._weights_tried: dict[str, float] = {}  # queue -> when this process last tried to refresh it

    # -- one tick ------------------------------------------------------------------------------------
    def tick(self, dry_run: bool = False) -> TickReport:
        now = self.clock()
        report = TickReport(tick_id(now), dry_run)
        with self._lock:
            if not self._recalled:  # a restarted scheduler first recalls what its predecessor submitted
                self._recalled = True
                recall = getattr(self.store, "recent_submissions", None)
                for region, job_id, at in (recall(now - RECENT_SECONDS) if recall else []):
                    self._recent.setdefault(region, {}).setdefault(job_id, at)
            for ids in self._recent.values():
                for job_id in [j for j, t in ids.items() if now - t >= RECENT_SECONDS]:
                    del ids[job_id]
        if not dry_run:
            report.requeued = len(self.store.requeue_expired(now))
            from hyper.workflows.hooks import sweep as workflow_sweep  # notices nobody sent: qdel, lost workers

            try:
                workflow_sweep(self.store, self.host, f"scheduler-{os.getpid()}", now)
            except HyperError as exc:  # (each notice's own failures are recorded on it; this is the store)
                report.problems.append(problem(f"completion notices: {exc.message}", exc.hint))
        backlog = self.store.backlog()
        if not backlog:
            return report
        regions = {r.name: r for r in self.store.list_resources("region") if isinstance(r, Region)}
        clusters = {c.name: c for c in self.store.list_resources("cluster") if isinstance(c, Cluster)}
        queues = {q.name: q for q in self.store.list_resources("queue") if isinstance(q, Queue)}
        definitions = {d.name: d for d in self.store.list_resources("definition") if isinstance(d, Definition)}
        self._refresh_weights(backlog, queues, clusters, regions, report, now)

        pairs = self._pairs(backlog, regions, clusters, queues, definitions, report)
        if not pairs:
            return report
        known_pairs = [(q, d) for q in queues for d in definitions]
        by_region: dict[str, set[str]] = {}
        for p in pairs.values():
            for r in p.enabled:
                by_region.setdefault(r, set()).add(p.cluster.name)
        states = self._in_parallel(lambda r: self._inspect(r, by_region[r], known_pairs), sorted(by_region))

        live: dict[tuple[str, str, str], int] = {}
        used: dict[tuple[str, str], int] = {}
        for region, state in states.items():
            report.problems.extend(state.problems)
            for cluster, job in state.live:
                vcpus = job.vcpus
                if job.key is not None:
                    k = (job.queue, job.definition, region)
                    live[k] = live.get(k, 0) + job.workers
                    if job.definition in definitions:
                        vcpus = definitions[job.definition].vcpus
                used[(cluster, region)] = used.get((cluster, region), 0) + job.workers * max(1, vcpus)

        room: dict[tuple[str, str], int] = {}
        demands: list[Demand] = []
        for key, p in list(pairs.items()):
            c = p.cluster.name
            unknown = [r for r in p.enabled if c not in states[r].known]
            if unknown:
                report.problems.append(problem(
                    f"queue {key[0]} / definition {key[1]}: live workers in {', '.join(unknown)} are unknown, "
                    f"so no new workers this tick", "see the message for that region above"))
                del pairs[key]
                continue
            for r in list(p.weights):
                if c not in states[r].usable:
                    del p.weights[r]  # no job queue there: its share goes to the other regions
                else:
                    room[(c, r)] = region_cap(p.cluster, r) - used.get((c, r), 0)
            total_live = sum(live.get((key[0], key[1], r), 0) for r in p.enabled)
            d = p.definition
            demands.append(Demand(key[0], key[1], c, p.backlog, d.ratio, d.vcpus, d.gpus, total_live,
                                  p.queue.priority))

        revisions = self._check_definitions(demands, pairs, report)
        weights = {k: p.weights for k, p in pairs.items()}
        counts = plan_regions(demands, weights, room)
        for d in demands:
            if d.wanted > 0 and not pairs[d.key].weights:
                report.problems.append(problem(
                    f"queue {d.queue} / definition {d.definition}: {d.wanted} worker(s) wanted but no region can "
                    f"start them", "see the messages for its regions"))
        for key, p in sorted(pairs.items()):
            for r in sorted(p.enabled):
                n_live = live.get((key[0], key[1], r), 0)
                if r in p.regions or n_live:  # weighted regions, and others where its workers still run
                    report.rows.append(PlanRow(key[0], key[1], r, p.backlog, n_live,
                                               counts.get((key[0], key[1], r), 0)))
        report.requests = render_submissions(self.host, counts, definitions,
                                             {q: queues[q].cluster for q, _, _ in counts}, report.tick,
                                             revisions=revisions, worker_idle=self.worker_idle)
        if not dry_run and report.requests:
            self._submit_all(report)
        return report

    def _pairs(self, backlog, regions, clusters, queues, definitions, report) -> dict[tuple[str, str], _Pair]:
        pairs = {}
        for (qname, dname), tasks in sorted(backlog.items()):
            where = f"queue {qname}"
            queue, definition = queues.get(qname), definitions.get(dname)
            if queue is None:
                report.problems.append(problem(f"{where}: {tasks} queued task(s) but the queue does not exist",
                                               f"add it again with `hyper queues add-queue {qname}` or qdel them"))
                continue
            if definition is None:
                report.problems.append(problem(f"{where}: {tasks} queued task(s) of definition {dname}, which does "
                                               "not exist", f"add it with `hyper definitions add-definition {dname}`"
                                               " or qdel them"))
                continue
            cluster = clusters.get(queue.cluster)
            if cluster is None:
                report.problems.append(problem(f"{where}: its cluster {queue.cluster} does not exist",
                                               f"point the queue at a cluster: `hyper queues update-queue {qname} "
                                               "--cluster NAME`"))
                continue
            if cluster.type != "batch":
                report.problems.append(problem(f"{where}: cluster {cluster.name} is of type {cluster.type}; "
                                               "`hyper scheduler run` starts AWS Batch workers only",
                                               "use a cluster of type batch for this queue"))
                continue
            enabled = enabled_regions(cluster, regions)
            weights = effective_weights(queue, enabled)
            if not weights:
                if not cluster.regions:
                    why = f"cluster {cluster.name} has no region enabled"
                    fix = f"add regions: `hyper clusters update-cluster {cluster.name} --regions us-east-1,...`"
                elif not enabled:
                    why = (f"cluster {cluster.name} has no region enabled (its regions "
                           f"{', '.join(cluster.regions)} are not usable on this host)")
                    fix = "add the regions with `hyper regions add-region` or change the cluster's regions"
                else:
                    why = (f"no region of cluster {cluster.name} ({', '.join(enabled)}) has a positive weight "
                           "for this queue")
                    fix = f"`hyper queues update-queue {qname} --weights {enabled[0]}=1` (or auto)"
                report.problems.append(problem(f"{where}: {why}; {tasks} queued task(s) wait", fix))
                continue
            pairs[(qname, dname)] = _Pair(queue, definition, cluster, tasks, sorted(weights), dict(weights),
                                          enabled)
        return pairs

    def _refresh_weights(self, backlog, queues, clusters, regions, report: TickReport, now: float) -> None:
        """Recompute stale auto weights of queues with a backlog; the queue objects get them in place, so this
        tick plans with them. Never fails the tick: whatever goes wrong becomes a line in the report."""
        if self.weights_refresh <= 0:
            return
        due = []
        for name in sorted({q for q, _ in backlog}):
            queue = queues.get(name)
            cluster = clusters.get(queue.cluster) if queue is not None else None
            if queue is None or queue.weights != "auto" or cluster is None or cluster.type != "batch":
                continue  # _pairs reports missing queues and clusters
            if now - self._weights_tried.get(name, float("-inf")) < self.weights_refresh:
                continue  # tried lately (and perhaps failed): not again every tick
            moved = set(enabled_regions(cluster, regions)) != set(queue.auto_weights or {})
            if moved or now - (queue.auto_weights_at or 0.0) >= self.weights_refresh:
                due.append(queue)
        if not due:
            return
        for queue in due:
            self._weights_tried[queue.name] = now
        try:
            from hyper.services.weights import refresh_queues

            results = refresh_queues(self.host, self.store, due, clusters, regions, clients=self.weights_clients,
                                     now=now, write=not report.dry_run)
        except HyperError as exc:
            report.problems.append(problem(f"auto weights not refreshed: {exc.message}", exc.hint))
            return
        except Exception as exc:  # a store or client failure must not stop scheduling
            report.problems.append(problem(f"auto weights not refreshed: {type(exc).__name__}: {exc}",
                                           "the queues keep their last weights; set HYPER_DEBUG=1 for details"))
            return
        for r in results:
            if r.problem:
                report.problems.append(problem(f"queue {r.queue}: auto weights not refreshed: {r.note}",
                                               r.hint or None))

    def _in_parallel(self, fn: Callable[[str], Any], regions: list[str]) -> dict[str, Any]:
        if len(regions) <= 1:
            return {r: fn(r) for r in regions}
        with ThreadPoolExecutor(max_workers=min(self.max_threads, len(regions)),
                                thread_name_prefix="hyper-batch") as pool:
            return dict(zip(regions, pool.map(fn, regions)))

    def _inspect(self, region: str, cluster_names: set[str], known_pairs) -> _RegionState:
        """Which job queues exist in a region, and the unfinished worker jobs in them."""
        state = _RegionState()
        wanted = {names.job_queue(self.host, c): c for c in sorted(cluster_names)}
        try:
            found = self.api.job_queues(region, list(wanted))
        except Exception as exc:
            state.problems.append(self._batch_problem(exc, region, "DescribeJobQueues"))
            return state
        now = self.clock()
        for qname, cluster in wanted.items():
            jq = found.get(qname)
            if jq is None:
                state.known.add(cluster)  # no job queue: nothing of ours runs there
                state.problems.append(problem(
                    f"region {region}: Batch job queue {qname} (cluster {cluster}) does not exist",
                    f"provision cluster {cluster} in {region} with hyper (its stack creates the job queue), or "
                    f"remove {region} from the cluster's regions; the other regions are still scheduled"))
                continue
            if jq.get("state") == "ENABLED" and jq.get("status") in (None, "VALID", "UPDATING"):
                state.usable.add(cluster)
            else:
                why = jq.get("statusReason") or ""
                state.problems.append(problem(
                    f"region {region}: Batch job queue {qname} is {jq.get('state')}/{jq.get('status')}"
                    + (f": {why}" if why else "") + "; no new workers there",
                    f"enable it or re-provision cluster {cluster} in {region}"))
            with self._lock:
                recent = [j for j, t in self._recent.get(region, {}).items() if now - t < RECENT_SECONDS]
            try:
                listing = self.api.active_jobs(region, qname, also=recent)
            except Exception as exc:
                state.usable.discard(cluster)
                state.problems.append(self._batch_problem(exc, region, f"ListJobs on {qname}"))
                continue
            if listing.truncated:
                state.usable.discard(cluster)
                state.problems.append(problem(
                    f"region {region}: job queue {qname} lists more unfinished jobs than the scheduler reads "
                    f"({self.api.max_pages} pages per status); live workers unknown",
                    "raise BatchApi max_pages or cancel stale jobs"))
                continue
            state.known.add(cluster)
            state.live.extend((cluster, job) for job in live_workers(listing.jobs, self.prefix, known_pairs))
        return state

    def _check_definitions(self, demands: list[Demand], pairs: dict, report: TickReport
                           ) -> dict[tuple[str, str], int]:
        """Latest ACTIVE revision of each needed job definition per region; regions without it are dropped."""
        needed: dict[str, set[str]] = {}
        for d in demands:
            if d.wanted > 0:
                for r in pairs[d.key].weights:
                    needed.setdefault(r, set()).add(d.definition)
        if not needed:
            return {}
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

        results = self._in_parallel(check, sorted(needed))
        revisions = {}
        for region, (found, problems) in results.items():
            report.problems.extend(problems)
            for dname, rev in found.items():
                if rev is None:
                    for key, p in pairs.items():
                        if key[1] == dname:
                            p.weights.pop(region, None)
                else:
                    revisions[(region, dname)] = rev
        return revisions

    # -- submitting ----------------------------------------------------------------------------------
    def _submit_all(self, report: TickReport) -> None:
        by_region: dict[str, list[SubmitRequest]] = {}
        for req in report.requests:
            by_region.setdefault(req.region, []).append(req)

        def run(region: str) -> list[tuple[Submitted | None, str | None]]:
            return [self._submit_one(req) for req in by_region[region]]

        for region, results in sorted(self._in_parallel(run, sorted(by_region)).items()):
            for done, err in results:
                if done is not None:
                    report.submitted.append(done)
                if err is not None:
                    report.problems.append(err)

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
            remember = getattr(self.store, "remember_submission", None)
            if remember is not None:
                try:
                    remember(req.region, job_id, at, RECENT_SECONDS)
                except Exception as exc:  # the array runs anyway; only a restart in the next minutes could miss it
                    return Submitted(req.region, req.queue, req.definition, req.workers, req.job_name, job_id), \
                        problem(f"region {req.region}: array {job_id} submitted but not recorded: "
                                f"{type(exc).__name__}", "a scheduler restarted in the next 5 minutes may "
                                "count it late")
            return Submitted(req.region, req.queue, req.definition, req.workers, req.job_name, job_id), None

    def _batch_problem(self, exc: BaseException, region: str, action: str) -> str:
        from hyper.aws.batch import batch_error

        module = type(exc).__module__ or ""
        if not isinstance(exc, HyperError) and not module.startswith(("botocore", "boto3", "urllib3")):
            raise exc
        return str(batch_error(exc, self.host, region, action))

    # -- the loop ------------------------------------------------------------------------------------
    def run(self, interval: float, stop: threading.Event, on_report: Callable[[TickReport], None],
            on_error: Callable[[HyperError], None]) -> None:
        """Tick every `interval` seconds until `stop` is set (SIGTERM/SIGINT); a failed tick is reported, not fatal."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                on_report(self.tick())
            except HyperError as exc:
                on_error(exc)
            stop.wait(max(0.0, interval - (time.monotonic() - started)))

