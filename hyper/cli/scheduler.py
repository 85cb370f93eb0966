"""`hyper scheduler run`: the aws host's scheduler (queued jobs -> AWS Batch worker arrays and EKS worker Jobs
across regions; one generic tick, :mod:`hyper.scheduler.loop`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Optional

import typer

from hyper.cli.common import check_format, cli_errors, print_error, render

if TYPE_CHECKING:
    from types import FrameType

    from hyper.errors import HyperError
    from hyper.scheduler.loop import Scheduler, TickReport

app = typer.Typer(no_args_is_help=True, help="The aws host's scheduler: queued jobs become AWS Batch worker arrays or "
                  "EKS worker Jobs.")
PROG = "hyper scheduler"
COLUMNS = [("queue", "Queue"), ("definition", "Definition"), ("region", "Region"), ("backlog", "Backlog"),
           ("live", "Live"), ("new", "New")]


@app.callback()
def _group() -> None:
    """The aws host's scheduler (a local host's agent does this itself)."""


@app.command("run")
@cli_errors(PROG)
def run(
    once: Annotated[bool, typer.Option("--once", help="One tick, then exit (for cron / EventBridge).")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan and the exact Batch requests and "
                                          "Kubernetes Jobs; send nothing, change nothing (one tick).")] = False,
    interval: Annotated[float, typer.Option("--interval", min=1.0, help="Seconds between ticks.")] = 30.0,
    output: Annotated[str, typer.Option("--output", "-o", help="table (plan table; requests as JSON), json or "
                                        "yaml (the whole report).")] = "table",
    worker_idle: Annotated[Optional[float], typer.Option("--worker-idle", min=0.0, help="Seconds a worker waits "
                                                         "for work before it exits (HYPER_WORKER_IDLE; default: "
                                                         "the host's worker_idle setting, else the worker's).")
                           ] = None,
) -> None:
    """Provision workers for queued jobs: ceil(queued / ratio) minus live workers, split by region weights."""
    from hyper.cli.common import open_cli_context
    from hyper.errors import HyperError

    fmt = check_format(output)
    if fmt == "csv":
        raise HyperError("--output csv is not available here", "use table, json or yaml", 2)
    ctx = open_cli_context()
    if ctx.host.type != "aws":
        raise HyperError(f"host {ctx.host.name!r} is local: its agent starts workers on demand, no scheduler needed",
                         "qsub starts the agent (or run `hyper agent run`); use --host NAME for an aws host")
    from hyper.scheduler.aws import BatchScheduler

    scheduler = BatchScheduler(ctx.host, ctx.store, worker_idle=worker_idle)
    if once or dry_run:
        report = scheduler.tick(dry_run=dry_run)
        _show(report, fmt)
        raise typer.Exit(0 if report.ok else 1)
    _loop(scheduler, interval, fmt)


def _dump(report: TickReport, fmt: str) -> None:
    """The whole report as one JSON or YAML document (plan, requests, submitted jobs, problems)."""
    if fmt == "json":
        import json

        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        import yaml

        typer.echo(yaml.safe_dump(report.to_dict(), sort_keys=False), nl=False)


def _show(report: TickReport, fmt: str) -> None:
    import json

    if fmt in ("json", "yaml"):
        _dump(report, fmt)
    else:
        if report.rows:
            render([r.to_dict() for r in report.rows], COLUMNS, "table")
        else:
            typer.echo("nothing to schedule" + (" (no queued jobs)" if not report.problems else ""))
        if report.dry_run:
            batch = [r for r in report.requests if not hasattr(r, "manifest")]
            kube = [r for r in report.requests if hasattr(r, "manifest")]
            if batch or not kube:
                typer.echo(f"Batch SubmitJob requests (dry run: {len(batch)}, none sent):")
                typer.echo(json.dumps([r.to_dict() for r in batch], indent=2))
            if kube:
                import yaml

                typer.echo(f"Kubernetes Jobs (dry run: {len(kube)}, none sent; `kubectl apply -f -` takes them):")
                typer.echo(yaml.safe_dump_all([r.manifest for r in kube], sort_keys=False), nl=False)
        else:
            _submitted(report)
    for line in report.problems:
        print_error(PROG, line)


def _submitted(report: TickReport) -> None:
    for s in report.submitted:
        what = "Kubernetes Job" if s.backend == "eks" else "Batch job"
        typer.echo(f"submitted {s.job_name} in {s.region}: {s.workers} worker(s) ({what} {s.job_id})")
    if report.requeued:
        typer.echo(f"requeued {report.requeued} job(s) whose worker was lost")


def _loop(scheduler: Scheduler, interval: float, fmt: str) -> None:
    import signal
    import threading
    import time

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()  # the tick in progress finishes its submissions; then the loop ends

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    host = scheduler.host.name
    typer.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} scheduler for host {host}: a tick every {interval:g} s")

    def on_report(report: TickReport) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        if fmt in ("json", "yaml"):
            _dump(report, fmt)
        else:
            backlog = sum({(r.queue, r.definition): r.backlog for r in report.rows}.values())
            new = sum(s.workers for s in report.submitted)
            typer.echo(f"{stamp} tick {report.tick}: {backlog} queued task(s), {new} new worker(s) in "
                       f"{len(report.submitted)} "
                       + ("Batch job(s)" if all(x.backend == "batch" for x in report.submitted) else "job(s)"))
            _submitted(report)
        for line in report.problems:
            print_error(PROG, line)

    def on_error(exc: HyperError) -> None:
        print_error(PROG, f"tick failed: {exc.message}", exc.hint)

    scheduler.run(interval, stop, on_report, on_error)
    typer.echo(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} scheduler for host {host} stopped")
