"""Slurm's names for hyper's jobs: state names and codes, job ids (`12`, `12_3`, `12_[1-5]`), exit codes in
`N:S` form and durations as squeue and sacct print them."""

from __future__ import annotations

import time

from hyper.models import Job
from hyper.states import JobState

# (long name, compact code) per hyper state; FAILED splits into TIMEOUT when the walltime ended it
STATES = {
    JobState.HELD: ("PENDING", "PD"),
    JobState.QUEUED: ("PENDING", "PD"),
    JobState.RUNNING: ("RUNNING", "R"),
    JobState.SUCCEEDED: ("COMPLETED", "CD"),
    JobState.FAILED: ("FAILED", "F"),
    JobState.DELETED: ("CANCELLED", "CA"),
}
TIMEOUT = ("TIMEOUT", "TO")
ACTIVE_NAMES = ("PENDING", "RUNNING")


def state(job: Job) -> tuple[str, str]:
    """(long name, compact code) of a job, e.g. ("PENDING", "PD")."""
    if job.state is JobState.FAILED and job.reason.startswith("walltime"):
        return TIMEOUT
    return STATES[job.state]


def parse_states(values: list[str]) -> set[str] | None:
    """`-t pd,running` -> {"PENDING", "RUNNING"}; "all" -> None (every state)."""
    from hyper.errors import UsageError

    known = {name for name, _ in [*STATES.values(), TIMEOUT]}
    codes = {code: name for name, code in [*STATES.values(), TIMEOUT]}
    out: set[str] = set()
    for value in values:
        word = value.strip().upper()
        if word == "ALL":
            return None
        if word in codes:
            out.add(codes[word])
        elif word in known:
            out.add(word)
        else:
            raise UsageError(f"invalid job state specified: {value}",
                             "use PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, TIMEOUT (or PD, R, CD, F, CA, TO)")
    return out


def reason(job: Job) -> str:
    """squeue's NODELIST(REASON): the node of a running job, else why it waits, as Slurm words it."""
    if job.state is JobState.RUNNING:
        return "localhost"
    if job.state is JobState.HELD:
        return "JobHeldUser" if job.reason.startswith("held by user") else "Dependency"
    if job.state is JobState.QUEUED:
        return "None" if not job.reason else "Priority"
    return "None"


def job_id(job: Job) -> str:
    """`12`, an array's `12_[1-5]`, an element's `12_3`."""
    if job.index is not None:
        return f"{job.id}_{job.index}"
    if job.array is not None:
        return f"{job.id}_[{job.array}]"
    return str(job.id)


def exit_code(job: Job) -> str:
    """`N:S`: the exit code and the signal that ended the job (hyper records a signal n as 256 + n)."""
    code = job.exit_code
    if code is None:
        return "0:0"
    if code >= 256:
        return f"0:{code - 256}"
    return f"{code}:0"


def elapsed_seconds(job: Job, now: float | None = None) -> int:
    if job.started is None:
        return 0
    end = job.ended if job.state.finished and job.ended else (time.time() if now is None else now)
    return max(0, int(end - job.started))


def squeue_time(seconds: int) -> str:
    """squeue's %M: `0:05`, `12:34`, `1:02:03`, `2-01:02:03`."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}-{hours:02d}:{minutes:02d}:{secs:02d}"
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes}:{secs:02d}"


def sacct_time(seconds: int | None) -> str:
    """sacct's Elapsed and Timelimit: `00:00:05`, `1-02:03:04`."""
    if seconds is None:
        return "UNLIMITED"
    days, rest = divmod(int(seconds), 86400)
    text = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}-{text}" if days else text


def timestamp(epoch: float | None) -> str:
    """sacct's Submit/Start/End: `2026-12-03T08:23:33`, `Unknown` when it has not happened."""
    return "Unknown" if epoch is None else time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(epoch))
