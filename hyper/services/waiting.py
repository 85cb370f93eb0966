"""Why a job waits, in the words PBS and Slurm users know: Held, Dependency, array limit, Resources, Priority.

qstat -f shows it as `comment`, qstat -s under each job. Worked out when asked, from the store's counters and
resources (no scan of other jobs), so it costs the same on a queue of ten jobs or a million.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

from hyper.dependencies import Hold, hold_of
from hyper.models import Cluster, Definition, Job, Queue
from hyper.states import JobState

if TYPE_CHECKING:
    from hyper.services.context import Context


def waiting_reasons(ctx: Context, jobs: list[Job]) -> dict[str, str]:
    """job_id -> why it is not running yet, for every held or queued job in ``jobs``."""
    waiting = [j for j in jobs if j.state in (JobState.HELD, JobState.QUEUED)]
    if not waiting:
        return {}
    store = ctx.store
    queues = {q.name: q for q in store.list_resources("queue") if isinstance(q, Queue)}
    clusters = {c.name: c for c in store.list_resources("cluster") if isinstance(c, Cluster)}
    definitions = {d.name: d for d in store.list_resources("definition") if isinstance(d, Definition)}
    busy_vcpus: dict[str, int] = {}
    busy_gpus: dict[str, int] = {}
    queued: dict[str, int] = {}
    for count in store.counts():
        queue, definition = queues.get(count.queue), definitions.get(count.definition)
        if queue is None or definition is None:
            continue
        if count.state is JobState.RUNNING:
            busy_vcpus[queue.cluster] = busy_vcpus.get(queue.cluster, 0) + count.tasks * definition.vcpus
            busy_gpus[queue.cluster] = busy_gpus.get(queue.cluster, 0) + count.tasks * definition.gpus
        elif count.state is JobState.QUEUED:
            queued[count.queue] = queued.get(count.queue, 0) + count.tasks
    out: dict[str, str] = {}
    for job in waiting:
        out[job.job_id] = _reason(job, queues.get(job.queue), clusters, definitions.get(job.definition),
                                  busy_vcpus, busy_gpus, queued,
                                  lambda name: [q for q in queues.values() if q.cluster == name])
    return out


def _reason(job: Job, queue: Queue | None, clusters: dict[str, Cluster], definition: Definition | None,
            busy_vcpus: dict[str, int], busy_gpus: dict[str, int], queued: dict[str, int],
            queues_on: Callable[[str], list[Queue]]) -> str:
    if job.state is JobState.HELD:
        if hold_of(job.reason) is Hold.WAITING:
            return f"Dependency: {job.reason}"
        return f"Held: {job.reason}" if job.reason else "Held: by qhold or qsub -h (release it with qrls)"
    if job.is_array and job.array and "%" in job.array:
        limit = int(job.array.rsplit("%", 1)[1])
        if job.array_running >= limit:
            return f"array limit: {job.array_running} of at most {limit} elements running"
    cluster = clusters.get(queue.cluster) if queue else None
    if queue is None or cluster is None or definition is None:  # no queue means no cluster: said for mypy
        return "waiting for a worker"
    first = [q for q in queues_on(cluster.name) if q.priority > queue.priority and queued.get(q.name, 0)]
    if first:
        top = max(first, key=lambda q: q.priority)
        return (f"Priority: queue {top.name} (priority {top.priority}) has {queued[top.name]} queued task(s) "
                f"on cluster {cluster.name}")
    capacity = _capacity(cluster)
    used = busy_vcpus.get(cluster.name, 0)
    if capacity and used + definition.vcpus > capacity:
        return f"Resources: {used} of {capacity} vCPUs of cluster {cluster.name} are busy"
    if definition.gpus and busy_gpus.get(cluster.name, 0) + definition.gpus > cluster.gpus_per_instance > 0 \
            and cluster.type == "local":
        return f"Resources: all {cluster.gpus_per_instance} GPUs of cluster {cluster.name} are busy"
    return "waiting for a worker to start"


def _capacity(cluster: Cluster) -> int:
    if cluster.type == "local":
        import os

        return cluster.max_vcpus or os.cpu_count() or 1
    return 0  # cloud clusters grow to their max-vcpus per region; the scheduler's stuck-worker note covers them
