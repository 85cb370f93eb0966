"""bjobs: jobs in LSF's columns and states (`-a`, `-noheader`, `-o "jobid stat ..."`, `-u`, `-J`, `-q`)."""

from __future__ import annotations

import getpass
import sys
import time
from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS

app = typer.Typer(**APP_SETTINGS)
RECENT = 3600  # LSF's CLEAN_PERIOD: `bjobs -a` shows jobs that finished within the last hour


@app.command()
@cli_errors("bjobs")
def bjobs(
    job_ids: Annotated[Optional[List[str]], typer.Argument(help="Job ids: 12 12[3].")] = None,
    all_jobs: Annotated[bool, typer.Option("-a", help="Finished jobs of the last hour too.")] = False,
    done: Annotated[bool, typer.Option("-d", help="Only jobs finished in the last hour.")] = False,
    noheader: Annotated[bool, typer.Option("-noheader", help="No header line.")] = False,
    fields: Annotated[Optional[str], typer.Option("-o", help="Fields: 'jobid stat queue exit_code'.")] = None,
    user: Annotated[Optional[str], typer.Option("-u", help="A user, or all.")] = None,
    name: Annotated[Optional[str], typer.Option("-J", help="Only jobs of this name.")] = None,
    queue: Annotated[Optional[str], typer.Option("-q", help="Only jobs of this queue.")] = None,
    running: Annotated[bool, typer.Option("-r", help="Only running jobs.")] = False,
    pending: Annotated[bool, typer.Option("-p", help="Only pending jobs.")] = False,
) -> None:
    """Show jobs (LSF's bjobs over hyper): your unfinished ones; with ids, those jobs in any state."""
    from hyper.services.context import open_context
    from qcmds.frontend import select_jobs
    from qcmds.lsf import common

    columns, delimiter = common.parse_fields(fields) if fields else (common.DEFAULT, None)
    users = None if user == "all" else [user or getpass.getuser()]
    ctx = open_context(None)
    found, missing = select_jobs(ctx, job_ids, users=None if job_ids and not user else users,
                                 names=[name] if name else None, queues=[queue] if queue else None,
                                 finished=all_jobs or done)
    if not job_ids:
        recent = time.time() - RECENT
        found = [j for j in found if not j.state.finished or (j.ended or 0) >= recent]
        if done:
            found = [j for j in found if j.state.finished]
    if running or pending:
        found = [j for j in found if (running and common.stat(j) == "RUN")
                 or (pending and common.stat(j) in ("PEND", "PSUSP"))]
    for job_id in missing:
        sys.stderr.write(f"Job <{job_id}> is not found\n")
    if found:
        sys.stdout.write("".join(line + "\n" for line in common.lines(found, columns, delimiter, not noheader)))
    elif not missing:
        sys.stderr.write("No unfinished job found\n" if not (all_jobs or done) else "No job found\n")
    raise typer.Exit(255 if missing else 0)


def main() -> None:
    app(prog_name="bjobs")
