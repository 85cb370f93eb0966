"""`hyper`: the admin command. Thin: parse, call one service, render."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hyper.cli.common import HOST_CHOICE, cli_errors, open_cli_context, show_version

app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="hyper: an HPC job system for the cloud (admin command). Users run qsub, qstat, qdel, qlog.")
agent_app = typer.Typer(no_args_is_help=True, help="The local host's agent (scheduler + worker supervisor).")
worker_app = typer.Typer(no_args_is_help=True, help="Workers: claim and run jobs.")
app.add_typer(agent_app, name="agent")
app.add_typer(worker_app, name="worker")


def _register_admin() -> None:
    from hyper.cli import hosts as hosts_cli
    from hyper.cli import iam as iam_cli
    from hyper.cli import scheduler as scheduler_cli
    from hyper.cli import shims as shims_cli
    from hyper.cli.resources import kind_app
    from hyper.services.resources import KIND_ORDER, PLURAL

    app.add_typer(hosts_cli.app, name="hosts")
    for kind in KIND_ORDER:
        app.add_typer(kind_app(kind), name=PLURAL[kind])
    app.add_typer(iam_cli.app, name="iam")
    app.add_typer(scheduler_cli.app, name="scheduler")
    app.add_typer(shims_cli.app, name="shims")


_register_admin()

@app.callback()
def _global(host: Annotated[Optional[str], typer.Option("--host", help="Host to use (else $HYPER_HOST, "
                                                         "else the selected one).")] = None,
            version: Annotated[bool, typer.Option("--version", callback=show_version, is_eager=True,
                                                  help="Print hyper's version and exit.")] = False) -> None:
    HOST_CHOICE["host"] = host


_ctx = open_cli_context


@app.command("apply")
@cli_errors("hyper apply")
def apply_cmd(
    files: Annotated[list[str], typer.Option("--filename", "-f", help="YAML file or directory (repeatable).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate and print the plan; write nothing.")] = False,
) -> None:
    """Create or update every resource in YAML files (validated as a whole before anything is written)."""
    from hyper.services import declarative

    changes = declarative.apply(_ctx(), files, dry_run=dry_run)
    verb = {"create": "would create", "update": "would update"} if dry_run else {"create": "created",
                                                                                 "update": "updated"}
    for change in changes:
        r = change.resource
        line = f"{r.KIND} {r.name}: {verb.get(change.action, change.action)}"
        if change.steps:
            line += f" ({', '.join(s.describe() for s in change.steps)})" if dry_run else f" ({r.status})"
        if not dry_run and r.status == "FAILED":
            line += f": {r.message}"
        typer.echo(line)
    made = sum(c.action != "unchanged" for c in changes)
    failed = sum(c.resource.status == "FAILED" for c in changes if not dry_run and c.action != "unchanged")
    typer.echo(f"{len(changes)} resources, {made} {'to change' if dry_run else 'changed'}"
               + (f", {failed} failed to deploy" if failed else ""))
    if failed:
        raise typer.Exit(1)


@app.command("export")
@cli_errors("hyper export")
def export_cmd(
    output: Annotated[Optional[Path], typer.Option("--file", "-f", help="Write here instead of stdout.")] = None,
) -> None:
    """Print every resource of the host as YAML that `hyper apply -f` takes back."""
    from hyper.services import declarative

    text = declarative.export(_ctx())
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)
        typer.echo(f"wrote {output}")


@agent_app.command("run")
@cli_errors("hyper agent run")
def agent_run() -> None:
    """Run the local agent in the foreground (qsub starts it in the background on demand)."""
    from hyper.cli.lean import run_agent

    raise typer.Exit(run_agent(_ctx()))


@agent_app.command("status")
@cli_errors("hyper agent status")
def agent_status() -> None:
    """Say whether the local agent runs, and list live workers."""
    import time

    from hyper.backends.local import agent_running, lock_path

    ctx = _ctx()
    if agent_running(ctx.host):
        pid = lock_path(ctx.host).read_text().strip()
        typer.echo(f"agent running (pid {pid}) for host {ctx.host.name}")
    else:
        typer.echo(f"no agent running for host {ctx.host.name}")
    for w in ctx.store.list_workers(live_since=time.time() - 60):
        typer.echo(f"worker {w.id} pid {w.pid} {w.state} queue={w.queue} definition={w.definition} "
                   f"jobs={w.jobs_run}")


@worker_app.command("run")
@cli_errors("hyper worker run")
def worker_run(
    queue: Annotated[str, typer.Option("--queue", "-q", help="Queue to take jobs from.")],
    definition: Annotated[str, typer.Option("--definition", "-d", help="Job definition to run.")],
    worker_id: Annotated[Optional[str], typer.Option("--worker-id", help="Id (default: generated).")] = None,
    workdir: Annotated[Optional[Path], typer.Option("--workdir", help="Reused work directory.")] = None,
    idle: Annotated[Optional[float], typer.Option("--idle", help="Exit after this many idle seconds.")] = None,
    max_jobs: Annotated[Optional[int], typer.Option("--max-jobs", help="Exit after this many jobs.")] = None,
    gpus: Annotated[Optional[str], typer.Option("--gpus", help="GPU ids for CUDA_VISIBLE_DEVICES.")] = None,
) -> None:
    """Claim and run jobs of one (queue, definition) until idle."""
    from hyper.cli.lean import run_worker

    raise typer.Exit(run_worker(_ctx(), queue, definition, worker_id, workdir, idle, max_jobs, gpus))


def main() -> None:
    import os
    import sys

    # typer's completion support costs ~30 ms of imports: only when it can be used (as in qcmds.common.run)
    wanted = ("--install-completion", "--show-completion", "--help", "-h")
    app._add_completion = (any(a in wanted for a in sys.argv[1:]) or len(sys.argv) == 1
                           or "_HYPER_COMPLETE" in os.environ)
    app(prog_name="hyper")
