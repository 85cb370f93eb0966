"""The Store protocol: everything the services, scheduler and workers need from where state lives.

SQLite (embedded local host) and DynamoDB (aws host) implement it; one contract suite tests both.
Every state change is a conditional transition, so racing workers, schedulers and `qdel` cannot
overwrite each other: a job is claimed at most once per attempt and a deleted job is never started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Protocol

from hyper.models import Job, Resource
from hyper.parsing.jobids import JobRef
from hyper.states import JobState


@dataclass
class Submission:
    """A job to insert, with its dependencies resolved to (kind, job id, element index or None)."""

    job: Job
    depends: list[tuple[str, int, int | None]] = field(default_factory=list)
    hold: bool = False


@dataclass
class JobFilter:
    queue: str | None = None
    user: str | None = None
    include_finished: bool = False
    elements: bool = False  # list array elements too (qstat -t)
    limit: int | None = None
    with_spec: bool = True  # False: jobs come without their spec (the table view; decoding it dominates at 100k)


@dataclass
class DeleteResult:
    job_id: str
    ok: bool
    message: str = ""


def unknown_job(label: str, detail: str = "") -> DeleteResult:
    """The per-id refusals qdel/qhold/qrls print, worded once for every store (the contract suite compares them)."""
    return DeleteResult(label, False, f"unknown job id {label}" + (f": {detail}" if detail else ""))


def already_finished(label: str, state: str) -> DeleteResult:
    return DeleteResult(label, False, f"job {label} has already finished ({state})")


def not_an_array(label: str, job_id: int) -> DeleteResult:
    return DeleteResult(label, False, f"job {job_id} is not an array; use qdel {job_id}")


def not_whole_job(label: str, job_id: int) -> DeleteResult:
    return DeleteResult(label, False, f"holds apply to whole jobs; name the array as {job_id}[]")


def not_user_held(label: str) -> DeleteResult:
    return DeleteResult(label, False, f"job {label} is not held by a user")


def cannot_hold(label: str, state: str) -> DeleteResult:
    return DeleteResult(label, False, f"job {label} is {state}; only queued jobs can be held")


@dataclass
class WorkerInfo:
    id: str
    queue: str
    definition: str
    host: str = ""
    pid: int | None = None
    started: float = 0.0
    heartbeat: float = 0.0
    state: str = "IDLE"  # IDLE | BUSY | EXITED
    jobs_run: int = 0


@dataclass
class QueueCount:
    queue: str
    definition: str
    state: JobState
    tasks: int


LostHandler = Callable[[Job], None]


class Store(Protocol):
    # resources -------------------------------------------------------------------------------------
    def put_resource(self, resource: Resource, *, replace: bool = False) -> None: ...
    def get_resource(self, kind: str, name: str) -> Resource | None: ...
    def list_resources(self, kind: str) -> list[Resource]: ...
    def delete_resource(self, kind: str, name: str) -> bool: ...

    # jobs --------------------------------------------------------------------------------------------
    def submit(self, submissions: list[Submission], now: float) -> list[Job]: ...
    def get_jobs(self, refs: Iterable[JobRef]) -> tuple[list[Job], list[str]]: ...
    def list_jobs(self, flt: JobFilter) -> Iterator[Job]: ...
    def counts(self) -> list[QueueCount]: ...
    def backlog(self) -> dict[tuple[str, str], int]: ...
    def delete(self, refs: Iterable[JobRef], now: float) -> list[DeleteResult]: ...
    def set_hold(self, refs: Iterable[JobRef], hold: bool, now: float) -> list[DeleteResult]: ...

    # workers -----------------------------------------------------------------------------------------
    def claim(self, queue: str, definition: str, worker: str, lease_until: float, now: float) -> Job | None: ...
    # several at once for a worker that runs them in turn (array elements, one transaction); all but the first
    # are claimed ahead until they start, and ``release`` gives back the ones the worker will not start
    def claim_many(self, queue: str, definition: str, worker: str, lease_until: float, now: float,
                   limit: int) -> list[Job]: ...
    def release(self, job: Job, worker: str, now: float) -> JobState | None: ...
    # ``log``: where this attempt's output is shipped (hyper.aws.logs.LogWindow text), kept per attempt by
    # stores of hosts that ship output (DynamoDB); a store whose jobs' output stays in files ignores it
    def set_pid(self, job: Job, worker: str, pid: int, log: str | None = None) -> None: ...
    def heartbeat(self, job: Job, worker: str, lease_until: float) -> JobState | None: ...
    def peek(self, job: Job, worker: str) -> JobState | None: ...  # state without renewing (cheap qdel check)
    def finish(self, job: Job, worker: str, outcome: str, exit_code: int | None, reason: str,
               now: float, log: str | None = None) -> JobState | None: ...
    def requeue_expired(self, now: float, on_lost: LostHandler | None = None) -> list[Job]: ...
    def requeue_worker(self, worker: str, now: float, on_lost: LostHandler | None = None) -> list[Job]: ...

    # completion notices (hyper/store/notices.py: written with their job, taken by one sender) ------------
    def get_notice(self, job_id: int) -> dict | None: ...
    def open_notices(self) -> list[dict]: ...
    def claim_notice(self, job_id: int, owner: str, lease_until: float, now: float) -> dict | None: ...
    def record_notice(self, job_id: int, owner: str, state: str, *, next_at: float = 0.0,
                      status: int | None = None, error: str = "", now: float | None = None) -> bool: ...

    def register_worker(self, info: WorkerInfo) -> None: ...
    def touch_worker(self, worker: str, now: float, state: str, jobs_run: int) -> None: ...
    def list_workers(self, live_since: float | None = None) -> list[WorkerInfo]: ...

    def close(self) -> None: ...
