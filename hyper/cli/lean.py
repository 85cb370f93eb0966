"""The two commands the local agent starts by itself, ``hyper agent run`` and ``hyper worker run``, read without
typer when their argument list is the plain one the agent writes (``--host NAME`` first, then each option
followed by its value).

Why: a local worker is started for every burst of work, and importing typer, click and the admin commands cost
it ~110 ms of CPU before it claimed its first job (about half its start-up; the agent pays the same after a
``qsub`` woke it). Anything else (``--help``, ``--idle=5``, an unknown or malformed option) goes to the typer
application, which reads and reports it as before.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from hyper.cli.common import HOST_CHOICE, cli_errors, open_cli_context
from hyper.errors import HyperError

if TYPE_CHECKING:
    from hyper.services.context import Context

WORKER_OPTIONS: dict[str, tuple[str, Callable[[str], object]]] = {
    "--queue": ("queue", str), "-q": ("queue", str), "--definition": ("definition", str), "-d": ("definition", str),
    "--worker-id": ("worker_id", str), "--workdir": ("workdir", str), "--idle": ("idle", float),
    "--max-jobs": ("max_jobs", int), "--gpus": ("gpus", str),
}


def run_lean(argv: list[str]) -> int | None:
    """Run ``[--host NAME] agent run`` or ``[--host NAME] worker run OPTIONS`` and return the exit code; None when
    the argument list is anything else (the caller hands it to typer)."""
    args = list(argv)
    if args[:1] == ["--host"] and len(args) > 1 and not args[1].startswith("-"):
        HOST_CHOICE["host"] = args[1]
        args = args[2:]
    if args == ["agent", "run"]:
        return _agent()
    if args[:2] != ["worker", "run"]:
        return None
    options = _worker_options(args[2:])
    if options is None or "queue" not in options or "definition" not in options:
        return None
    return _worker(options)


def _worker_options(words: list[str]) -> dict[str, object] | None:
    if len(words) % 2:
        return None
    options: dict[str, object] = {}
    for flag, value in zip(words[::2], words[1::2]):
        known = WORKER_OPTIONS.get(flag)
        if known is None or value.startswith("-") or known[0] in options:
            return None
        name, convert = known
        try:
            options[name] = convert(value)
        except ValueError:
            return None  # typer says what is wrong with it
    return options


@cli_errors("hyper agent run")
def _agent() -> int:
    return run_agent(open_cli_context())


@cli_errors("hyper worker run")
def _worker(options: dict[str, object]) -> int:
    return run_worker(open_cli_context(), **options)  # type: ignore[arg-type]


# what `hyper agent run` and `hyper worker run` do, for the typer commands (hyper/cli/app.py) and the lean start
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
