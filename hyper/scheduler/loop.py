"""One scheduler tick for every worker backend (AWS Batch, EKS, local processes).

A tick (``hyper scheduler run --once``, or every ``--interval`` seconds; the local agent runs the same tick
with its local backend):

1. sweeps expired leases back to QUEUED (workers lost to spot interruptions or killed containers);
2. reads the backlog per (queue, definition) from the store, and refreshes stale auto region weights of queues
   with a backlog (host setting ``weights_refresh``, seconds, default 900; 0 turns it off; on --dry-run they
   are computed but not stored);
3. groups the pairs by their cluster's type and asks each type's backend (:mod:`hyper.backends`) for its
   inventory: live workers per (queue, definition, region), usable regions, capacity in use, stuck workers;
4. plans with the pure :func:`hyper.scheduler.planner.plan_regions` (ceil(backlog / ratio) minus live
   workers, split by region weights, capped by each cluster's vCPUs per region), then holds every queue with
   ``max_cost_per_hour`` to its budget (:func:`hyper.scheduler.planner.cap_by_cost`);
5. lets each backend render its requests (pure: ``--dry-run`` prints exactly these) and submit them.

Bad input never stops the tick: each fault becomes one line in ``TickReport.problems`` naming the queue or
region and the fix, and everything else is still planned and submitted.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from hyper.backends import BACKENDS, backend_class, cluster_type
from hyper.backends.base import Inventory, Pair, Stuck, Submitted, WorkerBackend, problem
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Queue, Region
from hyper.scheduler.regions import DISABLED_STATES, effective_weights, enabled_regions, region_cap  # noqa: F401
from hyper.scheduler.planner import Demand, cap_by_cost, cap_gpus, plan_regions
from hyper.store.base import Store

STUCK_NOTE = "stuck workers: "  # a queue's message while some of its workers are stuck (qstat -Q shows it)


# ---------------------------------------------------------------- report
@dataclass
class PlanRow:
    queue: str
    definition: str
    region: str
    backlog: int  # queued tasks of the (queue, definition), all regions
    live: int  # unfinished workers of the pair in this region (submitted .. running; stuck ones excluded)
    new: int  # workers this tick starts there
    backend: str = "batch"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class TickReport:
    tick: str
    dry_run: bool = False
    requeued: int = 0
    rows: list[PlanRow] = field(default_factory=list)
    requests: list[Any] = field(default_factory=list)  # each backend's request objects (to_dict())
    submitted: list[Submitted] = field(default_factory=list)
    stuck: list[Stuck] = field(default_factory=list)
    queues: list[dict] = field(default_factory=list)  # the queue-scaler view: backlog, live, plan, prices
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {"tick": self.tick, "dry_run": self.dry_run, "requeued": self.requeued,
                "plan": [r.to_dict() for r in self.rows], "requests": [r.to_dict() for r in self.requests],
                "submitted": [s.to_dict() for s in self.submitted], "stuck": [s.to_dict() for s in self.stuck],
                "queues": list(self.queues), "problems": list(self.problems)}


def tick_id(now: float) -> str:
    """Lower-case letters and digits only (job names end in it): UTC time plus 4 random hex digits."""
    return time.strftime("t%Y%m%d%H%M%S", time.gmtime(now)) + secrets.token_hex(2)


# ---------------------------------------------------------------- resources -> planner input
# ---------------------------------------------------------------- the scheduler
class Scheduler:
    """The generic tick over the backends of `kinds` (default: batch and eks on an aws host, local on a
    local one). ``backends`` gives ready instances (tests pass fakes at their API boundary); the others are
    built from the registry on first use."""

    def __init__(self, host: Host, store: Store, *, backends: dict[str, Any] | None = None,
                 kinds: Iterable[str] | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, worker_idle: float | None = None,
                 weights_clients: Callable[[str], Any] | None = None, sweep: bool = True):
        from hyper.backends.base import setting

        self.host = host
        self.store = store
        self.clock = clock
        self.sleep = sleep
        self.worker_idle = worker_idle
        self.sweep = sweep
        self.backends: dict[str, Any] = dict(backends or {})
        self.kinds = tuple(kinds) if kinds is not None else (
            tuple(k for k in BACKENDS if cluster_type(k).host == host.type))
        self.weights_clients = weights_clients  # region -> EC2 client for auto weights (default: the host's)
        self.weights_refresh = setting(host.extra or {}, "weights_refresh", 900.0) or 0.0
        self._weights_tried: dict[str, float] = {}  # queue -> when this process last tried to refresh it
        self._lock = threading.Lock()

    def backend(self, kind: str) -> WorkerBackend:
        if kind not in self.backends:
            self.backends[kind] = backend_class(kind)(self.host, self.store, clock=self.clock, sleep=self.sleep,
                                                      worker_idle=self.worker_idle)
        return self.backends[kind]

    def _requeue_ended(self, now: float, report: TickReport) -> int:
        """Requeue the jobs of workers their backend saw end (a Batch job FAILED, a pod Failed) now, not when
        their lease runs out: a long job's lease grows with its age (hyper/worker/fence.py), up to the store's
        MAX_LEASE, so a reclaimed spot worker would otherwise hold its job for up to that long."""
        workers = [w for w in self.store.list_workers() if w.state != "EXITED"]
        if not workers:
            return 0
        requeued = 0
        for kind in self.kinds:
            try:
                gone = self.backend(kind).ended(workers)
            except HyperError as exc:
                report.problems.append(problem(f"{kind} workers that ended: {exc.message}", exc.hint))
                continue
            for wid in gone:
                requeued += len(self.store.requeue_worker(wid, now))
        return requeued

    # -- one tick ------------------------------------------------------------------------------------
    def tick(self, dry_run: bool = False, backlog: dict[tuple[str, str], int] | None = None) -> TickReport:
        """One pass of the steps in the module docstring; each fault is a line in the report, never an exception."""
        now = self.clock()
        report = TickReport(tick_id(now), dry_run)
        if not dry_run and self.sweep:
            self._sweep(now, report)
        backlog = self.store.backlog() if backlog is None else backlog
        if not backlog:
            if not dry_run:  # nothing queued: no worker is waiting for anything, so no note stays
                queues = {q.name: q for q in self.store.list_resources("queue") if isinstance(q, Queue)}
                self._note_stuck(queues, list(queues), [])
            return report
        regions = {r.name: r for r in self.store.list_resources("region") if isinstance(r, Region)}
        clusters = {c.name: c for c in self.store.list_resources("cluster") if isinstance(c, Cluster)}
        queues = {q.name: q for q in self.store.list_resources("queue") if isinstance(q, Queue)}
        definitions = {d.name: d for d in self.store.list_resources("definition") if isinstance(d, Definition)}
        self._refresh_weights(backlog, queues, clusters, regions, report, now)

        pairs = self._pairs(backlog, regions, clusters, queues, definitions, report)
        if not pairs:
            return report
        kinds = sorted({p.cluster.type for p in pairs.values()})
        inv = self._inventory(kinds, pairs, [(q, d) for q in queues for d in definitions], report)
        self._report_stuck(inv, pairs, report)
        if not dry_run:
            self._note_stuck(queues, pairs, report.stuck)

        demands, room, gpu_room = self._demands(pairs, inv, report)
        self._prepare(kinds, pairs, demands, report)
        weights = {k: p.weights for k, p in pairs.items()}
        counts = cap_gpus(plan_regions(demands, weights, room), demands, gpu_room)
        counts = self._spend_limits(counts, pairs, inv.live, report)
        self._report_unplaced(demands, pairs, report)
        report.rows.extend(self._plan_rows(pairs, inv.live, counts))
        by_kind = self._render(kinds, pairs, counts, report)
        if not dry_run:
            self._submit(by_kind, report)
        report.queues = self._queue_view(pairs, inv.live, counts)
        return report

    def _sweep(self, now: float, report: TickReport) -> None:
        """Step 1: requeue the jobs of lost workers (expired leases, workers their backend saw end) and send the
        completion notices nobody sent (qdel, lost workers), so the backlog read next is current."""
        report.requeued = len(self.store.requeue_expired(now)) + self._requeue_ended(now, report)
        from hyper.workflows.hooks import sweep as workflow_sweep  # notices nobody sent: qdel, lost workers

        try:
            workflow_sweep(self.store, self.host, f"scheduler-{os.getpid()}", now)
        except HyperError as exc:  # (each notice's own failures are recorded on it; this is the store)
            report.problems.append(problem(f"completion notices: {exc.message}", exc.hint))

    def _inventory(self, kinds: list[str], pairs: dict[tuple[str, str], Pair],
                   known_pairs: list[tuple[str, str]], report: TickReport) -> Inventory:
        """Step 3: every backend's inventory of its own pairs, added up; a backend that cannot say is a problem
        line, and its pairs then have no known regions (so they start no workers this tick)."""
        inv = Inventory()
        for kind in kinds:
            mine = [p for p in pairs.values() if p.cluster.type == kind]
            try:
                got = self.backend(kind).inventory(mine, known_pairs)
            except HyperError as exc:
                report.problems.append(problem(f"{kind} workers unknown: {exc.message}", exc.hint))
                continue
            inv.merge(got)
        report.problems.extend(inv.problems)
        return inv

    def _report_stuck(self, inv: Inventory, pairs: dict[tuple[str, str], Pair], report: TickReport) -> None:
        """Stuck workers: a problem line each, and their region loses its weight for the pair, so this tick starts
        no more workers where they cannot start."""
        report.stuck = sorted(inv.stuck, key=lambda s: (s.queue, s.definition, s.region))
        for s in report.stuck:
            p = pairs.get((s.queue, s.definition))
            report.problems.append(problem(
                f"queue {s.queue} / definition {s.definition}: {s.workers} worker(s) in {s.region} stuck: "
                f"{s.reason}; not counted as live, no new ones there this tick",
                "fix the definition or the cluster's instance types, then cancel the stuck workers"))
            if p is not None:
                p.weights.pop(s.region, None)

    def _demands(self, pairs: dict[tuple[str, str], Pair], inv: Inventory, report: TickReport
                 ) -> tuple[list[Demand], dict[tuple[str, str], int], dict[tuple[str, str], int]]:
        """Step 4's input: each pair's demand, with the vCPU and GPU room of each (cluster, region) it may use.

        A pair with a region whose live workers are unknown is dropped from ``pairs`` (it could start workers
        twice); a region with no job queue / namespace loses its weight, so its share goes to the others."""
        room: dict[tuple[str, str], int] = {}
        gpu_room: dict[tuple[str, str], int] = {}
        demands: list[Demand] = []
        for key, p in list(pairs.items()):
            c = p.cluster.name
            unknown = [r for r in p.enabled if (c, r) not in inv.known]
            if unknown:
                report.problems.append(problem(
                    f"queue {key[0]} / definition {key[1]}: live workers in {', '.join(unknown)} are unknown, "
                    f"so no new workers this tick", "see the message for that region above"))
                del pairs[key]
                continue
            self._room(p, inv, room, gpu_room)
            total_live = sum(inv.live.get((key[0], key[1], r), 0) for r in p.enabled)
            d = p.definition
            demands.append(Demand(key[0], key[1], c, p.backlog, d.ratio, d.vcpus, d.gpus, total_live,
                                  p.queue.priority))
        return demands, room, gpu_room

    def _room(self, p: Pair, inv: Inventory, room: dict[tuple[str, str], int],
              gpu_room: dict[tuple[str, str], int]) -> None:
        """The free vCPUs (and GPUs, where the cluster type counts them) of the pair's usable regions, into
        ``room`` and ``gpu_room``; its unusable regions lose their weight."""
        c = p.cluster.name
        for r in list(p.weights):
            if (c, r) not in inv.usable:
                del p.weights[r]  # no job queue / namespace there: its share goes to the other regions
            else:
                vcpus, gpus = self.backend(p.cluster.type).capacity(p.cluster, r)
                room[(c, r)] = vcpus - inv.used.get((c, r), 0)
                if gpus is not None:
                    gpu_room[(c, r)] = gpus - inv.used_gpus.get((c, r), 0)

    def _prepare(self, kinds: list[str], pairs: dict[tuple[str, str], Pair], demands: list[Demand],
                 report: TickReport) -> None:
        """Let each backend get ready for the workers its pairs want (before planning: it may drop regions)."""
        wanted = {d.key: d.wanted for d in demands}
        for kind in kinds:
            mine = {k: p for k, p in pairs.items() if p.cluster.type == kind}
            if mine:
                report.problems.extend(self.backend(kind).prepare(mine, {k: wanted.get(k, 0) for k in mine}))

    @staticmethod
    def _report_unplaced(demands: list[Demand], pairs: dict[tuple[str, str], Pair], report: TickReport) -> None:
        """A pair that wants workers but has no region left to start them in is a problem line of its own."""
        for d in demands:
            if d.wanted > 0 and not pairs[d.key].weights:
                report.problems.append(problem(
                    f"queue {d.queue} / definition {d.definition}: {d.wanted} worker(s) wanted but no region can "
                    f"start them", "see the messages for its regions"))

    @staticmethod
    def _plan_rows(pairs: dict[tuple[str, str], Pair], live: dict[tuple[str, str, str], int],
                   counts: dict[tuple[str, str, str], int]) -> list[PlanRow]:
        """The plan as the report shows it: weighted regions, and others where the pair's workers still run."""
        rows = []
        for key, p in sorted(pairs.items()):
            for r in sorted(p.enabled):
                n_live = live.get((key[0], key[1], r), 0)
                if r in p.regions or n_live:  # weighted regions, and others where its workers still run
                    rows.append(PlanRow(key[0], key[1], r, p.backlog, n_live,
                                        counts.get((key[0], key[1], r), 0), p.cluster.type))
        return rows

    def _render(self, kinds: list[str], pairs: dict[tuple[str, str], Pair], counts: dict[tuple[str, str, str], int],
                report: TickReport) -> dict[str, list[Any]]:
        """Step 5, pure: each backend's requests for its part of the plan (what --dry-run prints)."""
        by_kind: dict[str, list[Any]] = {}
        for kind in kinds:
            mine = {k: p for k, p in pairs.items() if p.cluster.type == kind}
            part = {k: n for k, n in counts.items() if (k[0], k[1]) in mine}
            if part:
                try:
                    by_kind[kind] = self.backend(kind).render(part, mine, report.tick)
                except HyperError as exc:  # e.g. a template that renders invalid YAML: nothing of it is sent
                    report.problems.append(problem(f"{kind}: {exc.message}", exc.hint))
                    continue
                report.requests.extend(by_kind[kind])
        return by_kind

    def _submit(self, by_kind: dict[str, list[Any]], report: TickReport) -> None:
        """Step 5: send the rendered requests; each failed one is a problem line, the others still go."""
        for kind, requests in by_kind.items():
            for done, err in self.backend(kind).submit(requests):
                if done is not None:
                    report.submitted.append(done)
                if err is not None:
                    report.problems.append(err)

    def _note_stuck(self, queues: dict[str, Queue], names: Iterable, stuck: list[Stuck]) -> None:
        """Keep each scheduled queue's message saying which of its workers are stuck and why (cleared when none
        are), so `qstat -Q` and `hyper queues list-queues` show it; a provisioning message is never overwritten.
        ``names``: the queues scheduled this tick (pair keys or queue names)."""
        for name in sorted({k[0] if isinstance(k, tuple) else k for k in names}):
            queue = queues[name]
            lines = [f"{s.workers} {s.definition} worker(s) in {s.region}: {s.reason}" for s in stuck
                     if s.queue == name]
            note = STUCK_NOTE + "; ".join(lines) if lines else ""
            if queue.message != note and (not queue.message or queue.message.startswith(STUCK_NOTE)):
                queue.message = note
                try:
                    self.store.put_resource(queue, replace=True)
                except Exception:  # a note is not worth failing the tick; the report still has it
                    pass

    def _spend_limits(self, counts: dict[tuple[str, str, str], int], pairs: dict[tuple[str, str], Pair],
                      live: dict[tuple[str, str, str], int], report: TickReport) -> dict[tuple[str, str, str], int]:
        """Hold queues with max_cost_per_hour to it: live workers' price plus new ones', cheapest regions first."""
        budgets = {p.queue.name: float(p.queue.max_cost_per_hour) for p in pairs.values()
                   if getattr(p.queue, "max_cost_per_hour", 0)}
        if not budgets:
            return counts
        prices: dict[tuple[str, str, str], float | None] = {}
        for key, p in pairs.items():
            if p.queue.name in budgets:
                for r in set(p.enabled) | set(p.weights):
                    prices[(key[0], key[1], r)] = self.backend(p.cluster.type).hourly_price(p, r)
        kept, notes = cap_by_cost(counts, prices, live, budgets)
        for line in notes:
            report.problems.append(problem(line, "raise it with `hyper queues update-queue QUEUE "
                                                 "--max-cost-per-hour USD`, or wait for workers to finish"))
        return kept

    def _queue_view(self, pairs: dict[tuple[str, str], Pair], live: dict[tuple[str, str, str], int],
                    counts: dict[tuple[str, str, str], int]) -> list[dict]:
        """Per queue, as queue-scaler shows it: backlog, live workers by backend and region, the plan, and the
        cluster's instance types by price (spot price history for spot clusters, else on-demand)."""
        out: dict[str, dict] = {}
        for key, p in sorted(pairs.items()):
            q = out.setdefault(p.queue.name, {
                "queue": p.queue.name, "cluster": p.cluster.name, "backend": p.cluster.type, "backlog": 0,
                "live": {}, "plan": {}, "max_cost_per_hour": getattr(p.queue, "max_cost_per_hour", 0) or None,
                "instance_types": []})
            q["backlog"] += p.backlog
            for r in sorted(set(p.enabled) | set(p.regions)):
                n = live.get((key[0], key[1], r), 0)
                if n:
                    by = q["live"].setdefault(p.cluster.type, {})
                    by[r] = by.get(r, 0) + n
                k = counts.get((key[0], key[1], r), 0)
                if k:
                    q["plan"][f"{key[1]}@{r}"] = k
            if not q["instance_types"]:
                q["instance_types"] = self._price_list(p)
        return list(out.values())

    def _price_list(self, p: Pair) -> list[dict]:
        backend = self.backend(p.cluster.type)
        book = getattr(backend, "prices", None)
        if book is None or not hasattr(book, "prices"):
            return []
        rows = []
        for r in sorted(p.weights or p.enabled):
            for itype, price in book.prices(p.cluster, r).items():
                rows.append({"region": r, "type": itype, "usd_per_hour": round(price, 4),
                             "price": getattr(book, "sources", {}).get((r, itype), "on-demand")})
        return sorted(rows, key=lambda x: (x["usd_per_hour"], x["region"], x["type"]))

    def _pairs(self, backlog: dict[tuple[str, str], int], regions: dict[str, Region], clusters: dict[str, Cluster],
               queues: dict[str, Queue], definitions: dict[str, Definition],
               report: TickReport) -> dict[tuple[str, str], Pair]:
        pairs: dict[tuple[str, str], Pair] = {}
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
            if cluster.type not in self.kinds:
                report.problems.append(problem(
                    f"{where}: cluster {cluster.name} is of type {cluster.type}, which this scheduler does not "
                    f"run (it runs {', '.join(self.kinds)})",
                    "use a cluster of type " + " or ".join(self.kinds) + " for this queue"))
                continue
            place = getattr(backend_class(cluster.type), "place", None)
            enabled = [place] if place else enabled_regions(cluster, regions)
            weights = {place: 1} if place else effective_weights(queue, enabled)
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
            pairs[(qname, dname)] = Pair(queue, definition, cluster, tasks, sorted(weights), dict(weights), enabled)
        return pairs

    def _refresh_weights(self, backlog: dict[tuple[str, str], int], queues: dict[str, Queue],
                         clusters: dict[str, Cluster], regions: dict[str, Region], report: TickReport,
                         now: float) -> None:
        """Recompute stale auto weights of queues with a backlog; the queue objects get them in place, so this
        tick plans with them. Never fails the tick: whatever goes wrong becomes a line in the report."""
        if self.weights_refresh <= 0 or self.host.type != "aws":
            return
        due = []
        for name in sorted({q for q, _ in backlog}):
            queue = queues.get(name)
            cluster = clusters.get(queue.cluster) if queue is not None else None
            if queue is None or queue.weights != "auto" or cluster is None or not cluster_type(cluster.type).regional:
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
