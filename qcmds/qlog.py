"""qlog: a job's output; -f follows it until the job ends.

Local host: the job's output file. aws host: the job attempt's CloudWatch Logs stream (hyper/aws/logs.py).
"""

from __future__ import annotations

import os
from typing import Annotated, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.actions import run_qlog
from qcmds.common import APP_SETTINGS, HostOption, QCommand, VersionOption, run

app = typer.Typer(**APP_SETTINGS)


def tail_lines(path: str | os.PathLike[str], n: int) -> bytes:
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
    args = dict(locals())  # exactly the options above: run_qlog takes the same names (tests/test_fastpath.py)
    raise typer.Exit(run_qlog(**args))


def main() -> None:
    run(app, "qlog")
