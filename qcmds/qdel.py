"""qdel: delete many jobs at once (`qdel $(qstat --only-job-id-out)`), arrays, elements and ranges."""

from __future__ import annotations

from typing import Annotated, List

import typer

from hyper.cli.common import cli_errors, print_error
from qcmds.common import APP_SETTINGS, HostOption

app = typer.Typer(**APP_SETTINGS)


@app.command()
@cli_errors("qdel")
def qdel(
    job_ids: Annotated[List[str], typer.Argument(help="Jobs: 12 13 12[] 12[3] 12[1-5] 100-110.")],
    host: HostOption = None,
) -> None:
    """Delete jobs: queued ones never start; running ones get SIGTERM, then SIGKILL."""
    from hyper.errors import EXIT_ERROR, EXIT_UNKNOWN_JOB
    from hyper.parsing.jobids import parse_job_ids
    from hyper.services import jobs as svc
    from hyper.services.context import open_context

    refs = parse_job_ids(job_ids)  # every id must parse before anything is deleted
    ctx = open_context(host)
    results = svc.delete_jobs(ctx, refs)
    if ctx.host.type == "local" and any(r.ok for r in results) and ctx.store.open_notices():
        from qcmds.common import wake_agent  # its sweep sends the notices of what was just deleted

        wake_agent(ctx)
    code = 0
    for r in results:
        if not r.ok:
            print_error("qdel", r.message)
            unknown = r.message.startswith("unknown job id")
            code = EXIT_UNKNOWN_JOB if unknown and code in (0, EXIT_UNKNOWN_JOB) else (code or EXIT_ERROR)
    raise typer.Exit(code)


def main() -> None:
    app(prog_name="qdel")
