"""qlog: a job's output; -f follows it until the job ends.

Local host: the job's output file. aws host: the job attempt's CloudWatch Logs stream (hyper/aws/logs.py).
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS, HostOption, QCommand, VersionOption, run

app = typer.Typer(**APP_SETTINGS)


def tail_lines(path, n: int) -> bytes:
    """The last n lines of a file without reading all of it."""
    from hyper.services.jobs import tail_lines as tail

    return tail(path, n)


@app.command(cls=QCommand)
@cli_errors("qlog")
def qlog(
    job_id: Annotated[str, typer.Argument(help="The job: 12 or 12[3].")],
    stderr: Annotated[bool, typer.Option("-e", "--stderr", help="Show stderr instead of stdout.")] = False,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing until the job ends.")] = False,
    tail: Annotated[Optional[int], typer.Option("--tail", "-n", help="Only the last N lines.")] = None,
    attempt: Annotated[Optional[int], typer.Option("--attempt", help="An earlier run's output (aws hosts).")] = None,
    host: HostOption = None,
    version: VersionOption = False,
) -> None:
    """Print a job's stdout (or stderr with -e)."""
    from hyper.parsing.jobids import parse_job_id
    from hyper.services import jobs as svc
    from hyper.services.context import open_context

    ref = parse_job_id(job_id)
    ctx = open_context(host)
    out = sys.stdout.buffer
    for chunk in svc.read_log(ctx, ref, stderr, tail=tail, follow=follow, attempt=attempt):
        if chunk:
            out.write(chunk)
            out.flush()


def main() -> None:
    run(app, "qlog")
