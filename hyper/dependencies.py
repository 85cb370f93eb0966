"""Dependency semantics shared by every store: when is `afterok:12` met, pending, or never met."""

from __future__ import annotations

from enum import StrEnum
from typing import Iterable

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


def effective_state(target_state: str | None, array_state: str | None) -> JobState:
    """A dependency target's state for the rule: its own when it has a record; an array element without one
    never started, so it is DELETED once its array ended, else still QUEUED."""
    if target_state:
        return JobState(target_state)
    if array_state and JobState(array_state).finished:
        return JobState.DELETED
    return JobState.QUEUED


def blockers(deps: Iterable[tuple[str, int, int, JobState]]) -> tuple[str, str]:
    """(pending, never) of a job's dependencies ``(kind, target id, target index or -1, target's effective
    state)``: the first one still waited for (``afterok:12``) and the first that can never be met
    (``afterok:12[3] ended FAILED``); "" where there is none."""
    pending = never = ""
    for kind, tid, tidx, effective in deps:
        target = str(tid) if tidx < 0 else f"{tid}[{tidx}]"
        status = dependency_status(kind, effective)
        if status == NEVER and not never:
            never = f"{kind}:{target} ended {effective.value}"
        elif status == PENDING and not pending:
            pending = f"{kind}:{target}"
    return pending, never


def still_held(pending: str, never: str, user_held: bool) -> str:
    """Why a held job stays held once its dependencies were looked at again ("" : release it). A dependency
    that can never be met comes first (it needs the user's attention), then the user's own hold."""
    if never:
        return hold_reason(Hold.NEVER, never)
    if user_held:
        return hold_reason(Hold.USER)
    if pending:
        return hold_reason(Hold.WAITING, pending)
    return ""
