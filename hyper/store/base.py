"""The Store protocol: everything the services, scheduler and workers need from where state lives.

SQLite (embedded local host) and DynamoDB (aws host) implement it; one contract suite tests both.
Every state change is a conditional transition, so racing workers, schedulers and `qdel` cannot
overwrite each other: a job is claimed at most once per attempt and a deleted job is never started.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Callable, Iterable, Iterator, Protocol

from hyper.config import Host
from hyper.models import Job, Resource
from hyper.parsing.jobids import JobRef
from hyper.states import JobState, RunOutcome, WorkerActivity


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


class Refusal(StrEnum):
    """Why qdel, qhold or qrls left a job alone. Callers branch on this (e.g. qdel's exit code for an unknown
    id), never on the message, which is for people."""

    UNKNOWN_JOB = "unknown job"
    FINISHED = "already finished"
    NOT_AN_ARRAY = "not an array"
    NOT_WHOLE_JOB = "not a whole job"
    NOT_USER_HELD = "not held by a user"
    CANNOT_HOLD = "cannot be held"
    NOT_OWNER = "not the owner"


@dataclass
class DeleteResult:
    job_id: str
    ok: bool
    message: str = ""
    refusal: Refusal | None = None  # set when not ok


def unknown_job(label: str, detail: str = "") -> DeleteResult:
    """The per-id refusals qdel/qhold/qrls print, worded once for every store (the contract suite compares them)."""
    return DeleteResult(label, False, f"unknown job id {label}" + (f": {detail}" if detail else ""),
                        Refusal.UNKNOWN_JOB)


def already_finished(label: str, state: str) -> DeleteResult:
    return DeleteResult(label, False, f"job {label} has already finished ({state})", Refusal.FINISHED)


def not_an_array(label: str, job_id: int) -> DeleteResult:
    return DeleteResult(label, False, f"job {job_id} is not an array; use qdel {job_id}", Refusal.NOT_AN_ARRAY)


def not_whole_job(label: str, job_id: int) -> DeleteResult:
    return DeleteResult(label, False, f"holds apply to whole jobs; name the array as {job_id}[]",
                        Refusal.NOT_WHOLE_JOB)


def not_user_held(label: str) -> DeleteResult:
    return DeleteResult(label, False, f"job {label} is not held by a user", Refusal.NOT_USER_HELD)


def cannot_hold(label: str, state: str) -> DeleteResult:
    return DeleteResult(label, False, f"job {label} is {state}; only queued jobs can be held", Refusal.CANNOT_HOLD)


def hold_refusal(ref: JobRef, state: str, user_held: bool, hold: bool) -> DeleteResult | None:
    """Why qhold (``hold``) or qrls leaves an existing job ``ref`` alone, or None to go ahead: the rule both
    stores apply, in one order, to what they read inside their own transaction (after ``unknown_job``)."""
    if ref.indices is not None:
        return not_whole_job(ref.text, ref.id)
    if hold and state not in (JobState.QUEUED.value, JobState.HELD.value):
        return cannot_hold(ref.text, state)
    if not hold and not user_held:
        return not_user_held(ref.text)
    return None


@dataclass
class WorkerInfo:
    id: str
    queue: str
    definition: str
    host: str = ""
    pid: int | None = None
    started: float = 0.0
    heartbeat: float = 0.0
    state: WorkerActivity = WorkerActivity.IDLE
    jobs_run: int = 0

    def __post_init__(self) -> None:
        self.state = WorkerActivity(self.state)  # the stores read it back as the stored word


@dataclass
class QueueCount:
    queue: str
    definition: str
    state: JobState
    tasks: int


LostHandler = Callable[[Job], None]


class StoreDefaults:
    """The defaults of the Store protocol's optional members (documented on ``Store`` below). A store, or a test
    double, that inherits this has them all, so callers never probe with ``getattr``; the DynamoDB store sets
    its own values."""

    host: Host | None = None
    IDLE_POLL_CEILING: float = 0.2
    TOUCH_EVERY: float = 1.0
    STATE_POLL: float = 1.0
    MAX_LEASE: float | None = None
    CLAIM_AHEAD: int = 1
    RENEWAL_TOUCHES: bool = False

    def remember_submission(self, region: str, batch_job_id: str, at: float, keep: float) -> None:
        """Keeps nothing: the local host's agent never submits to Batch."""

    def recent_submissions(self, since: float) -> list[tuple[str, str, float]]:
        return []


class Store(Protocol):
    """Where a host's state lives; documented here once, for both stores (SQLiteStore, DynamoStore).

    The tuning constants, ``host`` and the scheduler's memory have defaults in ``StoreDefaults``.
    """

    # tuning: what a poll costs on this store (SQLite: nothing; DynamoDB: a query per ready shard) ----------
    # (read-only properties here: a store may narrow them, e.g. DynamoDB's host is never None)
    @property
    def host(self) -> Host | None:
        """The host whose state this is (None: the local store, opened by path)."""
        ...

    @property
    def IDLE_POLL_CEILING(self) -> float:  # noqa: N802  (a constant of the store's kind)
        """Longest wait between an idle worker's empty claims, in seconds."""
        ...

    @property
    def TOUCH_EVERY(self) -> float:  # noqa: N802
        """A worker's IDLE/BUSY registry write at most this often (liveness is the lease)."""
        ...

    @property
    def STATE_POLL(self) -> float:  # noqa: N802
        """Longest wait between a running worker's qdel checks (``peek``)."""
        ...

    @property
    def RENEWAL_TOUCHES(self) -> bool:  # noqa: N802
        """Whether ``heartbeat(..., jobs_run=n)`` also records the worker as BUSY with n jobs run, in the same
        write (DynamoDB: the renewal writes the worker's item anyway), so a job that renewed needs no registry
        touch of its own when it ends."""
        ...

    @property
    def MAX_LEASE(self) -> float | None:  # noqa: N802
        """A long job's lease grows with its age up to this (renewals are writes); None: a fixed lease."""
        ...

    @property
    def CLAIM_AHEAD(self) -> int:  # noqa: N802
        """Jobs a worker may claim at once while its jobs are short (``claim_many``); 1: one at a time."""
        ...

    # resources -------------------------------------------------------------------------------------
    def put_resource(self, resource: Resource, *, replace: bool = False) -> None:
        """Write a region, cluster, image, queue or definition; without ``replace`` an existing name is an
        error (of two racing ``add``s one wins, the other is told it exists)."""
        ...

    def get_resource(self, kind: str, name: str) -> Resource | None:
        ...

    def list_resources(self, kind: str) -> list[Resource]:
        """Every resource of a kind, by name."""
        ...

    def delete_resource(self, kind: str, name: str) -> bool:
        """True when there was one to delete."""
        ...

    # jobs --------------------------------------------------------------------------------------------
    def submit(self, submissions: list[Submission], now: float) -> list[Job]:
        """Write jobs (an array as one record) with their ids, states and reasons set; a dependency that
        names no job writes nothing at all."""
        ...

    def get_jobs(self, refs: Iterable[JobRef]) -> tuple[list[Job], list[str]]:
        """Jobs for the given ids, in order; ids that name no job come back in the second list."""
        ...

    def list_jobs(self, flt: JobFilter) -> Iterator[Job]:
        """Jobs and arrays by id (elements after their array with ``flt.elements``)."""
        ...

    def counts(self) -> list[QueueCount]:
        """Tasks per (queue, definition, state); an array counts its elements."""
        ...

    def backlog(self) -> dict[tuple[str, str], int]:
        """QUEUED tasks per (queue, definition): what the scheduler provisions workers for."""
        ...

    def running_tasks(self) -> dict[tuple[str, str], int]:
        """RUNNING tasks per (queue, definition)."""
        ...

    def delete(self, refs: Iterable[JobRef], now: float) -> list[DeleteResult]:
        """Mark jobs DELETED; running ones are stopped by their worker, which sees the state change."""
        ...

    def set_hold(self, refs: Iterable[JobRef], hold: bool, now: float) -> list[DeleteResult]:
        """qhold / qrls on whole jobs: a held job keeps its place but is not started."""
        ...

    # workers -----------------------------------------------------------------------------------------
    def claim(self, queue: str, definition: str, worker: str, lease_until: float, now: float) -> Job | None:
        """Take the next ready job of (queue, definition) for this worker (priority, then id), or None."""
        ...

    def claim_many(self, queue: str, definition: str, worker: str, lease_until: float, now: float,
                   limit: int) -> list[Job]:
        """Up to ``limit`` jobs for a worker that runs them in turn (array elements in one transaction where
        claims are costly, see ``CLAIM_AHEAD``); all but the first are claimed ahead until they start."""
        ...

    def release(self, job: Job, worker: str, now: float) -> JobState | None:
        """Give back a job claimed ahead that this worker did not start: QUEUED again, no attempt spent;
        None once it started or when it is not this worker's."""
        ...

    def set_pid(self, job: Job, worker: str, pid: int, log: str | None = None) -> None:
        """The attempt's process; ``log`` says where its output is shipped (hyper.aws.logs.LogWindow text),
        kept per attempt by stores of hosts that ship output (DynamoDB); a local store ignores it."""
        ...

    def heartbeat(self, job: Job, worker: str, lease_until: float, jobs_run: int | None = None) -> JobState | None:
        """Extend the lease; returns the job's state, or None if this worker no longer owns the job.
        ``jobs_run``: see ``RENEWAL_TOUCHES`` (a store without it ignores it)."""
        ...

    def peek(self, job: Job, worker: str) -> JobState | None:
        """The job's state without renewing anything (the cheap qdel check between renewals)."""
        ...

    def finish(self, job: Job, worker: str, outcome: RunOutcome, exit_code: int | None, reason: str,
               now: float, log: str | None = None) -> JobState | None:
        """Record a run's end if this worker still owns it; applies the retry policy (hyper/retry.py)."""
        ...

    def requeue_expired(self, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """Return jobs whose lease ran out to the queue (or fail them when their retries are spent); each is
        handed to ``on_lost`` first, before anyone may start it again."""
        ...

    def requeue_worker(self, worker: str, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """A worker is known dead (its process exited): requeue its jobs at once, not at lease expiry."""
        ...

    # completion notices (hyper/store/notices.py: written with their job, taken by one sender) ------------
    def get_notice(self, job_id: int) -> dict | None:
        ...

    def open_notices(self) -> list[dict]:
        ...

    def claim_notice(self, job_id: int, owner: str, lease_until: float, now: float) -> dict | None:
        ...

    def record_notice(self, job_id: int, owner: str, state: str, *, next_at: float = 0.0,
                      status: int | None = None, error: str = "", now: float | None = None) -> bool:
        ...

    def register_worker(self, info: WorkerInfo) -> None:
        ...

    def touch_worker(self, worker: str, now: float, state: WorkerActivity, jobs_run: int) -> None:
        ...

    def list_workers(self, live_since: float | None = None) -> list[WorkerInfo]:
        """Registered workers; with ``live_since``, those not EXITED that beat since then."""
        ...

    def prune_workers(self, before: float) -> None:
        """Forget EXITED workers last seen before ``before``."""
        ...

    # the scheduler's memory --------------------------------------------------------------------------
    def remember_submission(self, region: str, batch_job_id: str, at: float, keep: float) -> None:
        """Record a worker array the scheduler submitted, kept ``keep`` seconds, so a restarted scheduler
        counts its workers before Batch lists it (the local store keeps nothing)."""
        ...

    def recent_submissions(self, since: float) -> list[tuple[str, str, float]]:
        """(region, Batch job id, submitted at) of the worker arrays remembered since ``since``."""
        ...

    def close(self) -> None:
        ...
