"""Job states, shared by every store and backend.

One enum, with the PBS letter each state shows in ``qstat``. Backends translate their own states
(AWS Batch, Kubernetes) into these through tables in their modules; nothing else invents states.
"""

from __future__ import annotations

from enum import Enum


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
