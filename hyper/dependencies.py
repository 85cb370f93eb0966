"""Dependency semantics shared by every store: when is `afterok:12` met, pending, or never met."""

from __future__ import annotations

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


def initial_state(hold: bool, pending: str, never: str) -> tuple[JobState, str]:
    """A new job's state and reason from its user hold and what its dependencies say (every store alike)."""
    if hold:
        return JobState.HELD, "held by user (release with qrls)"
    if never:
        return JobState.HELD, f"dependency can never be satisfied: {never}"
    if pending:
        return JobState.HELD, f"waiting for {pending}"
    return JobState.QUEUED, ""
