"""Waking the local host's agent after something gave it work (a submit, a release, a delete with notices).

A service, not a CLI concern: every front-end (qsub, sbatch, bsub, qrls, qdel) that changes what the agent
should do calls this, and an aws host needs nothing (its scheduler runs elsewhere).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hyper.services.context import Context


def wake_agent(ctx: Context) -> None:
    """On a local host, make sure an agent runs to start queued work (it exits again when idle)."""
    if ctx.host.type == "local":
        from hyper.backends.local import ensure_agent

        ensure_agent(ctx.host)
