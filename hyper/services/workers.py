"""Running the local agent and a worker in this process: what ``hyper agent run`` and ``hyper worker run`` do,
shared by the typer commands (hyper/cli/app.py) and the lean start the agent uses (hyper/cli/lean.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from hyper.errors import HyperError

if TYPE_CHECKING:
    from hyper.services.context import Context


def run_agent(ctx: Context) -> int:
    """The local agent in the foreground until it is idle; 0 at once if another agent already runs this host."""
    from hyper.backends.local import LocalAgent

    if ctx.host.type != "local":
        raise HyperError(f"host {ctx.host.name!r} is not local; its scheduler is `hyper scheduler run`")
    agent = LocalAgent(ctx.host, ctx.store, ctx.settings)
    if not agent.acquire():
        sys.stderr.write(f"an agent already runs for host {ctx.host.name}\n")
        return 0
    return agent.run()


def run_worker(ctx: Context, queue: str, definition: str, worker_id: str | None = None,
               workdir: str | Path | None = None, idle: float | None = None, max_jobs: int | None = None,
               gpus: str | None = None) -> int:
    """Claim and run jobs of one (queue, definition) until idle (or ``max_jobs``); the worker's exit code."""
    import uuid

    from hyper.worker.loop import Worker

    wid = worker_id or f"w{uuid.uuid4().hex[:10]}"
    worker = Worker(ctx.store, wid, queue, definition, Path(workdir) if workdir else ctx.host.data_dir / "work" / wid,
                    ctx.logs_dir, idle if idle is not None else ctx.settings.worker_idle, ctx.settings.lease,
                    ctx.settings.kill_grace, gpu_ids=gpus, max_jobs=max_jobs, host=ctx.host)
    return worker.run()
