"""Job use cases behind qsub, qstat, qdel, qlog, qhold and qrls.

Each function validates, calls the store once (or a few times for reads), and returns records; the
CLI renders them. Everything a user can get wrong raises HyperError before anything is written.

Submission lives in hyper/services/submission.py and output in hyper/services/joblogs.py; their functions
are re-exported here because the commands reach every job use case as ``hyper.services.jobs``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hyper.errors import HyperError, UsageError
from hyper.models import Job
from hyper.parsing.jobids import JobRef
from hyper.services import owners
from hyper.services.context import Context
from hyper.states import JobState, shell_exit_code
from hyper.store.base import DeleteResult, JobFilter, Refusal
from hyper.services.joblogs import log_location, output_files, read_log, tail_lines

if TYPE_CHECKING:
    from hyper.parsing.arrays import ArraySpec
    from hyper.services.submission import load_sweep, merge_directives, submission_notes, submit

__all__ = ["check_queue", "delete_jobs", "delete_summary", "get_jobs", "hold_jobs", "list_jobs", "load_sweep",
           "log_location", "merge_directives", "output_files", "parse_states", "read_log", "select_jobs",
           "submission_notes", "submit", "tail_lines", "wait_for"]

_SUBMISSION = frozenset({"load_sweep", "merge_directives", "submission_notes", "submit"})


def __getattr__(name: str) -> object:
    """The submission functions, imported on first use: qstat, qdel and qlog reach this module too, and
    submission's imports (directive parsing, environment planning, backends, json) cost them a sizeable
    share of their cold start (issue 15). Module attributes still read as before: `svc.submit(...)`."""
    if name in _SUBMISSION:
        from hyper.services import submission

        return getattr(submission, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_STATE_WORDS = {
    "Q": {JobState.QUEUED}, "R": {JobState.RUNNING}, "H": {JobState.HELD}, "X": {JobState.DELETED},
    "F": {JobState.SUCCEEDED, JobState.FAILED, JobState.DELETED}, "B": {JobState.QUEUED, JobState.RUNNING},
    "PD": {JobState.QUEUED, JobState.HELD}, "PENDING": {JobState.QUEUED, JobState.HELD}, "CD": {JobState.SUCCEEDED},
    "COMPLETED": {JobState.SUCCEEDED}, "CA": {JobState.DELETED}, "CANCELLED": {JobState.DELETED},
    "FINISHED": {JobState.SUCCEEDED, JobState.FAILED, JobState.DELETED}, "ACTIVE": {JobState.QUEUED,
                                                                                   JobState.RUNNING, JobState.HELD},
    **{s.value: {s} for s in JobState},
}


def parse_states(text: str) -> set[JobState]:
    """`Q,R`, `queued,held`, Slurm's `PD`/`CD`: the states `--state` and the seed's `--filter-status` select."""
    out: set[JobState] = set()
    for word in filter(None, (w.strip().upper() for w in text.replace(" ", ",").split(","))):
        if word not in _STATE_WORDS:
            raise UsageError(f"state {word!r} is not known",
                             "use PBS letters Q R H F X, or queued, running, held, succeeded, failed, deleted")
        out |= _STATE_WORDS[word]
    if not out:
        raise UsageError(f"--state {text!r} names no state", "e.g. --state Q,R")
    return out


def _matches(job: Job, user: str | None, states: set[JobState] | None, queue: str | None,
             name: str | None) -> bool:
    return ((user is None or job.user == user) and (states is None or job.state in states)
            and (queue is None or job.queue == queue) and (name is None or job.name == name))


def select_jobs(ctx: Context, refs: list[JobRef], *, user: str | None = None, states: set[JobState] | None = None,
                queue: str | None = None, name: str | None = None) -> list[JobRef]:
    """What `qdel -u USER --state Q -q QUEUE -j NAME [IDS]` means: the named jobs (every active job when none
    are named) that match every selector. Ids that name no job stay, so they are reported as unknown."""
    if queue is not None:
        check_queue(ctx, queue)
    if not refs:
        jobs = ctx.store.list_jobs(JobFilter(queue=queue, user=user, with_spec=False))
        return [_whole_ref(j) for j in jobs if _matches(j, user, states, queue, name)]
    found, _ = ctx.store.get_jobs(refs)
    known = {j.id for j in found}
    keep = [_whole_ref(j) for j in found if _matches(j, user, states, queue, name)]
    return keep + [r for r in refs if r.id not in known]  # so qdel reports them as unknown, in the store's words


def _whole_ref(job: Job) -> JobRef:
    if job.index is not None:
        from hyper.parsing.arrays import parse_array

        return JobRef(job.id, parse_array(str(job.index)), False)
    return JobRef(job.id, None, job.is_array)


def check_queue(ctx: Context, name: str) -> None:
    """An unknown queue is an error (a typo must not look like an empty queue)."""
    if ctx.store.get_resource("queue", name) is None:
        names = ", ".join(q.name for q in ctx.store.list_resources("queue")) or "none"
        raise HyperError(f"unknown queue {name!r}", f"queues on host {ctx.host.name}: {names}")


def delete_summary(results: list[DeleteResult]) -> str:
    """One line for many deletions: `deleted 10,000 jobs; 12 had finished; 3 unknown ids`."""
    done = sum(1 for r in results if r.ok)
    finished = sum(1 for r in results if r.refusal is Refusal.FINISHED)
    unknown = sum(1 for r in results if r.refusal is Refusal.UNKNOWN_JOB)
    other = [r for r in results if not r.ok and r.refusal not in (Refusal.FINISHED, Refusal.UNKNOWN_JOB)]
    parts = [f"deleted {done:,} job{'s' if done != 1 else ''}"]
    if finished:
        parts.append(f"{finished:,} had finished")
    if unknown:
        parts.append(f"{unknown:,} unknown id{'s' if unknown != 1 else ''}")
    if other:
        parts.append(f"{len(other):,} refused (first: {other[0].message})")
    return "; ".join(parts)


def get_jobs(ctx: Context, refs: list[JobRef]) -> tuple[list[Job], list[str]]:
    return ctx.store.get_jobs(refs)


def list_jobs(ctx: Context, flt: JobFilter, *, states: set[JobState] | None = None, name: str | None = None,
              since: float | None = None) -> list[Job]:
    """Jobs as qstat lists them: filtered by state and name, finished ones only if they ended after ``since``.

    With ``flt.elements`` (qstat -t) an active array lists every element, those not started yet included
    (as PBS does), as QUEUED (HELD while the array is held).
    """
    if flt.queue is not None:
        check_queue(ctx, flt.queue)
    out: list[Job] = []
    group: list[Job] = []

    def flush() -> None:
        if not group:
            return
        parent = group[0]
        if since is not None and parent.state.finished and (parent.ended or 0) < since:
            group.clear()
            return
        elements = group[1:]
        if flt.elements and parent.is_array:
            elements += _unlisted_elements(ctx, parent, group[1:], flt.include_finished)
        members = [parent, *sorted(elements, key=lambda j: j.index or 0)]  # elements: index set
        out.extend(j for j in members if (states is None or j.state in states) and (name is None or j.name == name))
        group.clear()

    for job in ctx.store.list_jobs(flt):
        if job.index is None:
            flush()
        group.append(job)
    flush()
    return out


def _unlisted_elements(ctx: Context, parent: Job, listed: list[Job], include_finished: bool) -> list[Job]:
    """The elements of an active array the store did not list: not started yet (the store keeps them as one
    record), shown QUEUED, or HELD while the array is held. When some elements have finished and only active
    ones were listed, the rest are looked up, so a finished or deleted element is never shown as queued."""
    if parent.state.finished or parent.array is None:
        return []
    from hyper.parsing.arrays import parse_array

    seen = {j.index for j in listed}
    unseen = [i for i in parse_array(parent.array) if i not in seen]
    if not unseen:
        return []
    if not include_finished and (parent.array_done or parent.array_deleted):
        found, _ = ctx.store.get_jobs([JobRef(parent.id, parse_array(_ranges_text(unseen)), False)])
        return [j for j in found if not j.state.finished]
    state = JobState.HELD if parent.state is JobState.HELD else JobState.QUEUED
    return [Job(id=parent.id, index=i, name=parent.name, user=parent.user, queue=parent.queue,
                definition=parent.definition, state=state, priority=parent.priority, submitted=parent.submitted,
                retries=parent.retries, spec=parent.spec, array=parent.array) for i in unseen]


def _ranges_text(indices: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3,7": an array range the parser reads back."""
    parts, start = [], None
    for i, index in enumerate(indices):
        if start is None:
            start = index
        if i + 1 == len(indices) or indices[i + 1] != index + 1:
            parts.append(str(start) if start == index else f"{start}-{index}")
            start = None
    return ",".join(parts)


def delete_jobs(ctx: Context, refs: list[JobRef]) -> list[DeleteResult]:
    """qdel: the caller's own jobs (an admin's: anyone's); the others' come back refused, untouched."""
    allowed, refused = owners.split_owned(ctx, refs, "delete")
    return refused + (ctx.store.delete(allowed, time.time()) if allowed else [])


def hold_jobs(ctx: Context, refs: list[JobRef], hold: bool) -> list[DeleteResult]:
    allowed, refused = owners.split_owned(ctx, refs, "hold" if hold else "release")
    return refused + (ctx.store.set_hold(allowed, hold, time.time()) if allowed else [])


def wait_for(ctx: Context, jobs: list[Job], poll: float = 0.1) -> int:
    """Block until every job ends; the exit code is the first non-zero one (PBS qsub -W block=true)."""
    refs = [JobRef(j.id, None, j.is_array) for j in jobs]
    while True:
        current, _ = ctx.store.get_jobs(refs)
        if all(j.state.finished for j in current):
            break
        time.sleep(poll)
        poll = min(poll * 1.5, 1.0)
    code = 0
    for job in current:
        if job.is_array:
            elements, _ = ctx.store.get_jobs([JobRef(job.id, _array_spec(job), False)])
            codes = [c for c in (e.exit_code for e in elements) if c]
            if codes:
                return _wait_exit_code(codes[0])
            if job.state is not JobState.SUCCEEDED:
                return 1
            continue
        if job.exit_code:
            return _wait_exit_code(job.exit_code)
        if job.state is not JobState.SUCCEEDED:
            code = code or 1
    return code


def _wait_exit_code(code: int) -> int:
    """`qsub --wait`'s exit code for a job's non-zero one: the shell's form (128+N for signal N) within 0-255.
    shell_exit_code only returns None for None, which a non-zero code is not."""
    return min(shell_exit_code(code) or 0, 255)


def _array_spec(job: Job) -> ArraySpec:
    """The element range of an array job (wait_for only asks for arrays: a plain job here is a bug)."""
    from hyper.parsing.arrays import parse_array

    if job.array is None:
        raise HyperError(f"job {job.job_id} is not an array", "report this as a bug in hyper")
    return parse_array(job.array)
