"""bkill: kill jobs by id (`bkill 12 13[2]`), all of yours (`bkill 0`), or by `-u`, `-J`, `-q`."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS

app = typer.Typer(**APP_SETTINGS)


@app.command()
@cli_errors("bkill")
def bkill(
    job_ids: Annotated[Optional[List[str]], typer.Argument(help="Job ids: 12 12[3]; 0 = all matching jobs.")] = None,
    user: Annotated[Optional[str], typer.Option("-u", help="A user's jobs, or all.")] = None,
    name: Annotated[Optional[str], typer.Option("-J", help="Jobs of this name.")] = None,
    queue: Annotated[Optional[str], typer.Option("-q", help="Jobs of this queue.")] = None,
) -> None:
    """Kill jobs (LSF's bkill over hyper): pending ones never start; running ones are stopped."""
    from hyper.errors import UsageError
    from hyper.parsing.jobids import parse_job_ids
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from qcmds.frontend import refs_of, select_jobs

    ids = [i for i in job_ids or [] if i != "0"]
    everything = "0" in (job_ids or [])
    if not ids and not everything and not (user or name or queue):
        raise UsageError("no job id given", "bkill 12, bkill 0 (all your jobs), or -u/-J/-q with 0")
    parse_job_ids(ids)  # every id must parse before anything is killed
    users = None if user == "all" else [user or getpass.getuser()]
    ctx = open_context(None)
    found, missing = select_jobs(ctx, ids or None, users=users if not ids or user else None,
                                 names=[name] if name else None, queues=[queue] if queue else None)
    refs = refs_of(found)
    for job_id in missing:
        sys.stderr.write(f"Job <{job_id}>: No matching job found\n")
    for result in svc.delete_jobs(ctx, refs) if refs else []:
        lsf_id = result.job_id.removesuffix("[]")
        if result.ok:
            sys.stdout.write(f"Job <{lsf_id}> is being terminated\n")
        else:
            sys.stderr.write(f"Job <{lsf_id}>: Job has already finished\n")
    if not found and not missing:
        sys.stderr.write("No unfinished job found\n")
    raise typer.Exit(255 if missing else 0)


def main() -> None:
    app(prog_name="bkill")
