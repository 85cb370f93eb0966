"""Job states, shared by every store and backend.

One enum, with the PBS letter each state shows in ``qstat``. Backends translate their own states
(AWS Batch, Kubernetes) into these through tables in their modules; nothing else invents states.
"""

from __future__ import annotations

from enum import Enum, StrEnum


class JobState(str, Enum):
    HELD = "HELD"  # waiting for a user release or for dependencies
    QUEUED = "QUEUED"  # ready to be claimed by a worker (array: elements left to start)
    RUNNING = "RUNNING"  # claimed by a worker (array: every element started, some still running)
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    DELETED = "DELETED"

    @property
    def finished(self) -> bool:
        return self in FINISHED

    @property
    def letter(self) -> str:
        return PBS_LETTERS[self]


class RunOutcome(StrEnum):
    """How one run of a job ended, as the worker tells the store (``Store.finish``) and the retry rule reads it
    (hyper/retry.py). A StrEnum (unlike JobState): the values are formatted into messages as plain words."""

    EXITED = "exited"  # the job's process ended by itself with an exit code
    KILLED = "killed"  # we ended it: walltime, memory or disk (never retried: it would only happen again)
    LOST = "lost"  # the worker vanished (killed, spot interruption, lease expired): an infrastructure failure
    DELETED = "deleted"  # qdel stopped it: the store already says DELETED, nothing is recorded
    DISOWNED = "disowned"  # the lease went to another worker: the end is not this worker's to record
    RELEASED = "released"  # claimed ahead (several array elements at once) and given back before it started

    @property
    def recorded(self) -> bool:
        """The worker records this end with ``Store.finish``."""
        return self in (RunOutcome.EXITED, RunOutcome.KILLED, RunOutcome.LOST)


class WorkerActivity(StrEnum):
    """What a registered worker is doing, as the worker registry (``Store.register_worker`` / ``touch_worker``)
    keeps it; stored as these words. Backends map it onto their worker states (hyper/backends/processes.py)."""

    STARTING = "STARTING"  # spawned by the local agent, not yet claiming
    IDLE = "IDLE"  # claiming, nothing to run
    BUSY = "BUSY"  # running a job
    EXITED = "EXITED"  # gone


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.DELETED})
ACTIVE = frozenset({JobState.HELD, JobState.QUEUED, JobState.RUNNING})

# PBS: Q queued, R running, H held, F finished, X finished subjob/deleted, B array begun, E exiting.
PBS_LETTERS = {
    JobState.HELD: "H",
    JobState.QUEUED: "Q",
    JobState.RUNNING: "R",
    JobState.SUCCEEDED: "F",
    JobState.FAILED: "F",
    JobState.DELETED: "X",
}


def pbs_letter(state: JobState, *, is_array: bool = False, started: bool = False) -> str:
    """The letter qstat shows: an array that has begun is ``B`` as in PBS Pro, whatever its record says."""
    if is_array and not state.finished and started:
        return "B"
    return PBS_LETTERS[state]


def shell_exit_code(code: int | None) -> int | None:
    """The one exit code every view shows: a job killed by signal N is 128+N, as the shell (and `qsub --wait`,
    which can only exit 0-255) says it; the runner records it PBS-style as 256+N."""
    if code is None or code < 256:
        return code
    return 128 + (code - 256)
