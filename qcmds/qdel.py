"""qdel: delete many jobs at once (`qdel $(qstat --only-job-id-out)`), arrays, elements and ranges, or every
job matching a selector (-u USER, --state Q, the seed's -q QUEUE and -j NAME)."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors, print_error
from qcmds.common import APP_SETTINGS, HostOption, QCommand, VersionOption, run

app = typer.Typer(**APP_SETTINGS)

SUMMARY_OVER = 5  # more results than this are summed up in one line instead of one line per id


@app.command(cls=QCommand)
@cli_errors("qdel")
def qdel(
    job_ids: Annotated[Optional[List[str]], typer.Argument(help="Jobs: 12 13 12[] 12[3] 12[1-5] 100-110. None "
                                                                "(an empty `$(qstat ...)`): nothing.")] = None,
    user: Annotated[Optional[str], typer.Option("-u", "--user", help="Every active job of this user.")] = None,
    state: Annotated[Optional[str], typer.Option("--state", help="Only jobs in these states: Q,H,R or names.")] = None,
    queue: Annotated[Optional[str], typer.Option("-q", "--queue", help="Only jobs of this queue (the seed's "
                                                                       "qdel -q Q $(qstat -q Q ...)).")] = None,
    name: Annotated[Optional[str], typer.Option("-j", "--job-name", help="Every active job with this name.")] = None,
    host: HostOption = None,
    version: VersionOption = False,
) -> None:
    """Delete jobs: queued ones never start; running ones get SIGTERM, then SIGKILL."""
    import sys

    from hyper.errors import EXIT_ERROR, EXIT_UNKNOWN_JOB
    from hyper.parsing.jobids import parse_job_ids
    from hyper.services import jobs as svc
    from hyper.services.context import open_context

    refs = parse_job_ids(job_ids or [])  # every id must parse before anything is deleted
    states = svc.parse_states(state) if state else None
    selecting = user is not None or states is not None or queue is not None or name is not None
    if not refs and not selecting:
        raise typer.Exit(0)  # `qdel $(qstat --only-job-id-out)` with nothing queued: nothing to do, quietly
    ctx = open_context(host)
    if selecting:
        refs = svc.select_jobs(ctx, refs, user=user, states=states, queue=queue, name=name)
    results = svc.delete_jobs(ctx, refs) if refs else []
    if ctx.host.type == "local" and any(r.ok for r in results) and ctx.store.open_notices():
        from qcmds.common import wake_agent  # its sweep sends the notices of what was just deleted

        wake_agent(ctx)
    code = 0
    for r in results:
        if not r.ok:
            unknown = r.message.startswith("unknown job id")
            code = EXIT_UNKNOWN_JOB if unknown and code in (0, EXIT_UNKNOWN_JOB) else (code or EXIT_ERROR)
    if len(results) > SUMMARY_OVER:
        line = svc.delete_summary(results)
        (print_error("qdel", line) if code else sys.stdout.write(f"qdel: {line}\n"))
    else:
        for r in results:
            if not r.ok:
                print_error("qdel", r.message)
    raise typer.Exit(code)


def main() -> None:
    run(app, "qdel")
