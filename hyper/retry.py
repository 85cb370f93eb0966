"""Retry policy, one place for every store: `retries=2` means at most three runs, counted exactly.

``attempts`` is incremented when a worker claims the job, so after the n-th run attempts == n.
"""

from __future__ import annotations

from hyper.states import JobState, RunOutcome

LOST, EXITED, KILLED = RunOutcome.LOST, RunOutcome.EXITED, RunOutcome.KILLED  # what each means: hyper/states.py
RELEASED = RunOutcome.RELEASED


def next_state(outcome: RunOutcome | str, exit_code: int | None, attempts: int, retries: int, retry_on_exit: bool,
               reason: str = "") -> tuple[JobState, str]:
    """The state a run's outcome leads to, and the reason qstat -f shows for it."""
    runs = f"run {attempts} of {retries + 1}"
    if outcome == RELEASED:  # it never ran: back to the queue, no attempt spent
        return JobState.QUEUED, ""
    if outcome == EXITED and exit_code == 0:
        return JobState.SUCCEEDED, ""
    retryable = outcome == LOST or (outcome == EXITED and retry_on_exit)
    what = reason or (f"exit code {exit_code}" if outcome == EXITED else "worker lost")
    if retryable and attempts < retries + 1:
        return JobState.QUEUED, f"{what} ({runs}); requeued"
    if retryable and retries:
        return JobState.FAILED, f"{what} ({runs}); no retries left"
    return JobState.FAILED, what
