"""bpeek: the output of a job so far (`-f` follows it until the job ends), LSF's way to read a running job."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS

app = typer.Typer(**APP_SETTINGS)


@app.command()
@cli_errors("bpeek")
def bpeek(
    job_id: Annotated[Optional[str], typer.Argument(help="The job: 12 or 12[3] (default: your latest).")] = None,
    follow: Annotated[bool, typer.Option("-f", help="Keep printing until the job ends.")] = False,
    name: Annotated[Optional[str], typer.Option("-J", help="The latest job of this name.")] = None,
) -> None:
    """Show a job's stdout so far (LSF's bpeek over hyper)."""
    from hyper.errors import HyperError
    from hyper.parsing.jobids import JobRef, parse_job_id
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from qcmds.frontend import select_jobs

    ctx = open_context(None)
    if job_id is not None:
        ref = parse_job_id(job_id)
    else:
        mine, _ = select_jobs(ctx, None, users=[getpass.getuser()], names=[name] if name else None, finished=True)
        mine = [j for j in mine if not j.is_array]
        if not mine:
            raise HyperError("No unfinished job found" if not name else f"no job named {name!r}",
                             "give a job id: bpeek 12")
        ref = JobRef(mine[-1].id)
    sys.stdout.write("<< output from stdout >>\n")
    sys.stdout.flush()
    out = sys.stdout.buffer
    for chunk in svc.read_log(ctx, ref, False, follow=follow):
        if chunk:
            out.write(chunk)
            out.flush()


def main() -> None:
    app(prog_name="bpeek")
