"""What `qstat` shows, apart from how it is printed: a job's row, its full record, the per-queue summary,
qstat -a's request columns, qstat -f's extra fields on an aws host, and which jobs a query covers.

These are pure functions of jobs (and the context, for aws details and array elements), so the command
module (qcmds/qstat_run.py) only chooses a layout and prints, and any other front-end (a web view, a
`--output json` consumer's tests) gets the same values. Nothing here imports typer or rich.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from hyper.models import Job, Resource
    from hyper.services.context import Context
    from hyper.store.base import QueueCount

DEFAULT_SINCE = "24h"


class View:
    """What the user asked to see (qstat's display options, none of which changes which jobs are shown).

    A plain class, not a frozen dataclass: creating one of those costs about a millisecond of qstat's start-up
    (issue 15), and qstat only reads the options back."""

    __slots__ = ("fmt", "full", "alternative", "comment", "nodes", "wide", "only_ids")

    def __init__(self, fmt: str = "table", full: bool = False, alternative: bool = False, comment: bool = False,
                 nodes: bool = False, wide: bool = False, only_ids: bool = False) -> None:
        self.fmt, self.full, self.alternative, self.comment = fmt, full, alternative, comment
        self.nodes, self.wide, self.only_ids = nodes, wide, only_ids


def job_rows(jobs: list[Job], now: float, wide: bool = False) -> list[dict]:
    """The lines of the PBS table: names cut to 16 characters unless `wide`, Time Use 0 until a job starts.
    One call for all rows, so the imports and lookups stay out of the loop (qstat's per-row cost)."""
    from hyper.parsing.durations import format_duration
    from hyper.services.owners import display_name
    from hyper.states import pbs_letter

    cut = None if wide else 16
    rows = []
    for job in jobs:
        state, started = job.state, job.started
        if started is None:
            used = "0"
        else:
            used = format_duration((job.ended if job.ended and state.finished else now) - started)
        rows.append({"job_id": job.job_id, "name": job.name[:cut], "user": display_name(job.user)[:cut],
                     "time_use": used, "s": pbs_letter(state, is_array=job.is_array, started=job.array_started > 0),
                     "queue": job.queue})
    return rows


def full_record(job: Job, extra: dict | None = None) -> dict:
    """Every field, PBS-named where PBS has a name, for -f and for --output json/yaml."""
    from hyper.states import pbs_letter, shell_exit_code

    data = job.to_dict()
    spec = data.pop("spec") or {}
    data.pop("logs", None)  # (the current attempt's output is given as log_group, log_stream, log_window_ms)
    data["job_state"] = pbs_letter(job.state, is_array=job.is_array, started=job.array_started > 0)
    for key in ("submitted", "started", "ended", "lease"):
        if data.get(key):
            data[key] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(data[key]))
    for key in ("script_name", "submit_dir", "chdir", "output", "error", "join", "walltime", "vcpus",
                "memory_mib", "gpus", "command", "args"):
        if spec.get(key) not in (None, "", []):
            data[key] = spec[key]
    if not job.is_array:
        for key in ("array", "array_total", "array_started", "array_done", "array_failed", "array_running",
                    "array_deleted"):
            data.pop(key, None)
    data["exit_code"] = shell_exit_code(data.get("exit_code"))  # 128+N for signal N, as qsub --wait exits
    data.update(extra or {})
    return {k: v for k, v in data.items() if v not in (None, "", [])}


def aws_details(ctx: Context, jobs: list[Job]) -> dict[str, dict]:
    """qstat -f on an aws host: where each job runs (worker's machine, region, Batch job) and its log stream."""
    from hyper.services import jobs as svc
    from hyper.placement import parse_host

    if ctx.host.type != "aws":
        return {}
    workers = {}
    if any(j.worker for j in jobs):
        workers = {w.id: parse_host(w.host) for w in ctx.store.list_workers()}
    out = {}
    for job in jobs:
        extra = {}
        where = workers.get(job.worker or "", {})
        extra["worker_host"] = where.get("host")
        extra["region"] = where.get("region")
        extra["batch_job_id"] = where.get("batch_job")
        location = svc.log_location(ctx, job)
        if location:
            extra["log_group"], extra["log_stream"], window = location
            if window:
                extra["log_window_ms"] = window
        out[job.job_id] = extra
    return out


def full_details(ctx: Context, found: list[Job]) -> dict[str, dict]:
    """The fields qstat -f adds to each job's record: output files, why it waits, aws placement, workflow parts."""
    from hyper.services import jobs as svc
    from hyper.services.waiting import waiting_reasons

    details = aws_details(ctx, found)
    for job in found:
        details.setdefault(job.job_id, {}).update(svc.output_files(ctx, job))
    for job_id, why in waiting_reasons(ctx, found).items():
        details.setdefault(job_id, {})["comment"] = why
    if any(j.spec is not None and (j.spec.notify or j.spec.split or j.spec.finalizes or j.spec.stagein
                                   or j.spec.stageout) for j in found):
        from hyper.workflows.display import workflow_details  # notice outcome, parts, finaliser, staging

        for job_id, extra in workflow_details(ctx, found).items():
            details.setdefault(job_id, {}).update(extra)
    return details


def human_field(key: str, value: Any) -> tuple[str, str]:
    """One `qstat -f` line for people (json/yaml keep the raw numbers for machines)."""
    import shlex

    from hyper.parsing.durations import format_memory

    if key == "walltime":
        s = int(value)
        return key, f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if key == "memory_mib":
        return "memory", format_memory(value)
    if key in ("command", "args") and isinstance(value, list):
        return key, shlex.join(str(v) for v in value)
    if isinstance(value, list):
        return key, ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return key, ", ".join(f"{k}={v}" for k, v in value.items())
    return key, str(value)


def alt_fields(job: Job, now: float) -> dict:
    """qstat -a's request and elapsed columns, in PBS's units (walltime HH:MM, memory as gb/mb)."""
    from hyper.parsing.durations import format_memory

    spec = job.spec
    elapsed = None
    if job.started is not None:
        elapsed = (job.ended if job.ended and job.state.finished else now) - job.started
    return {"tsk": str((spec.vcpus if spec else None) or "--"),
            "req_mem": format_memory(spec.memory_mib) if spec and spec.memory_mib else "--",
            "req_time": hhmm(spec.walltime) if spec and spec.walltime else "--",
            "elap_time": hhmm(elapsed) if elapsed is not None else "--"}


def hhmm(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


def since_epoch(text: str | None, finished: bool) -> float | None:
    """The epoch before which finished jobs are left out (None: no limit); `all` means no limit."""
    from hyper.parsing.durations import parse_duration

    if text is not None and text.strip().lower() == "all":
        return None
    if text is None and not finished:
        return None
    return time.time() - parse_duration(text or DEFAULT_SINCE, "s", what="--since")


def with_elements(ctx: Context, found: list[Job]) -> list[Job]:
    """qstat -t 12[]: the array and each of its elements, queued ones included."""
    from hyper.parsing.arrays import parse_array
    from hyper.parsing.jobids import JobRef

    out: list[Job] = []
    for job in found:
        out.append(job)
        if job.is_array and job.array is not None:  # is_array says so; mypy needs the test
            elements, _ = ctx.store.get_jobs([JobRef(job.id, parse_array(job.array), False)])
            out.extend(elements)
    return out


def queue_summary(counts: Iterable[QueueCount], queue_names: list[str], only_queue: str | None) -> list[dict]:
    """Tasks per queue and state, from the store's counters (no scan of the jobs)."""
    from hyper.states import JobState

    names = {JobState.QUEUED: "queued", JobState.RUNNING: "running", JobState.HELD: "held",
             JobState.SUCCEEDED: "succeeded", JobState.FAILED: "failed", JobState.DELETED: "deleted"}

    def empty(name: str) -> dict:
        return {"queue": name, "total": 0, **{v: 0 for v in names.values()}}

    rows = {q: empty(q) for q in queue_names if not only_queue or q == only_queue}
    for c in counts:
        if only_queue and c.queue != only_queue:
            continue
        row = rows.setdefault(c.queue, empty(c.queue))
        row[names[c.state]] += c.tasks
        row["total"] += c.tasks
    return [rows[k] for k in sorted(rows)]


def stuck_notes(queues: Iterable[Resource], only_queue: str | None) -> list[str]:
    """The scheduler's note on queues whose workers wait for capacity that never comes (qstat -Q shows them)."""
    return [f"queue {q.name}: {q.message}" for q in queues
            if (not only_queue or q.name == only_queue) and (q.message or "").startswith("stuck workers: ")]
