"""qdel: delete many jobs at once (`qdel $(qstat --only-job-id-out)`), arrays, elements and ranges, or every
job matching a selector (-u USER, --state Q, the seed's -q QUEUE and -j NAME)."""

from __future__ import annotations

from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.actions import run_qdel
from qcmds.common import APP_SETTINGS, HostOption, QCommand, VersionOption, run

app = typer.Typer(**APP_SETTINGS)


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
    args = dict(locals())  # exactly the options above: run_qdel takes the same names (tests/test_fastpath.py)
    raise typer.Exit(run_qdel(**args))


def main() -> None:
    run(app, "qdel")
