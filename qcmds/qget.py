"""qget: fetch a finished job's stageout files (`-W stageout=...`) to the submit machine.

aws host: from the host's S3 bucket, where the worker put them when the job ended. Local host: the worker
already copied them to their destinations; qget lists them (or copies them into ``-d DIR``).
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS, HostOption, QCommand, VersionOption, run

app = typer.Typer(**APP_SETTINGS)


@app.command(cls=QCommand)
@cli_errors("qget")
def qget(
    job_id: Annotated[str, typer.Argument(help="The job: 12, 12[] (every element) or 12[3].")],
    dest: Annotated[Optional[str], typer.Option("-d", "--dest", help="Put the files in this directory.")] = None,
    host: HostOption = None,
    version: VersionOption = False,
) -> None:
    """Download a job's stageout files; prints one `source -> file` line per file."""
    from hyper.parsing.jobids import parse_job_id
    from hyper.services.context import open_context
    from hyper.workflows.results import fetch_results

    ctx = open_context(host)
    for source, local in fetch_results(ctx, parse_job_id(job_id), dest):
        sys.stdout.write(f"{source} -> {local}\n" if source != local else f"{local}\n")


def main() -> None:
    run(app, "qget")
