"""Dependency semantics shared by every store: when is `afterok:12` met, pending, or never met."""

from __future__ import annotations

from enum import StrEnum

from hyper.states import JobState

KINDS = ("afterok", "afternotok", "afterany")

MET, PENDING, NEVER = "met", "pending", "never"


def dependency_status(kind: str, target: JobState) -> str:
    """PBS/Slurm meaning: afterok needs success, afternotok a failure, afterany any end.

    A deleted target never ran, so it satisfies only ``afterany`` (Slurm treats a cancelled job the same).
    """
    if not target.finished:
        return PENDING
    if kind == "afterany":
        return MET
    if kind == "afterok":
        return MET if target is JobState.SUCCEEDED else NEVER
    if kind == "afternotok":
        return MET if target is JobState.FAILED else NEVER
    raise ValueError(f"unknown dependency kind {kind}")


class Hold(StrEnum):
    """Why a HELD job is held. The stores keep the reason as text (``Job.reason``, what qstat -f shows), made
    by ``hold_reason``; ``hold_of`` reads it back, so no caller parses the words itself."""

    USER = "held by user (release with qrls)"  # qhold or qsub -h
    NEVER = "dependency can never be satisfied"  # e.g. afterok on a job that failed
    WAITING = "waiting for"  # a dependency has not ended yet


def hold_reason(hold: Hold, detail: str = "") -> str:
    """The stored reason: ``waiting for afterok:12``, ``dependency can never be satisfied: afterok:12 ended
    FAILED``, or the user hold's fixed words."""
    if hold is Hold.USER:
        return hold.value
    if hold is Hold.NEVER:
        return f"{hold.value}: {detail}"
    return f"{hold.value} {detail}"


def hold_of(reason: str) -> Hold | None:
    """Which hold a stored reason states (None: not a hold reason)."""
    if reason == Hold.USER.value:
        return Hold.USER
    if reason.startswith(Hold.NEVER.value):
        return Hold.NEVER
    if reason.startswith(Hold.WAITING.value + " "):
        return Hold.WAITING
    return None


def initial_state(hold: bool, pending: str, never: str) -> tuple[JobState, str]:
    """A new job's state and reason from its user hold and what its dependencies say (every store alike)."""
    if hold:
        return JobState.HELD, hold_reason(Hold.USER)
    if never:
        return JobState.HELD, hold_reason(Hold.NEVER, never)
    if pending:
        return JobState.HELD, hold_reason(Hold.WAITING, pending)
    return JobState.QUEUED, ""
