"""How an array record's state follows from its counters: the rule both stores settle arrays by.

An array is one record with counters (elements in all, started, running, done, failed, deleted) rather than one
row per element, so its own state is derived: QUEUED while elements wait to start, RUNNING once every element
has started, and ended (FAILED if any element failed, else DELETED if any was deleted, else SUCCEEDED) when every
element has ended. Kept pure and apart from the stores so SQLite and DynamoDB cannot drift apart.
"""

from __future__ import annotations

from hyper.states import JobState


def ended_array(total: int, done: int, failed: int, deleted: int) -> tuple[JobState, str] | None:
    """The final state and reason of an array whose elements have all ended; None while some have not."""
    if done < total:
        return None
    if failed:
        return JobState.FAILED, f"{failed} of {total} elements failed"
    return (JobState.DELETED if deleted else JobState.SUCCEEDED), ""


def unended_state(state: JobState, remaining: int) -> JobState:
    """A QUEUED array becomes RUNNING once no element is left to start (``remaining``: not started yet)."""
    return JobState.RUNNING if state is JobState.QUEUED and remaining == 0 else state


def claimable(state: JobState, remaining: int, running: int, limit: int | None) -> bool:
    """Can a worker start one of its elements now: queued, one left to start, and under its %limit."""
    return state is JobState.QUEUED and remaining > 0 and (limit is None or running < limit)
