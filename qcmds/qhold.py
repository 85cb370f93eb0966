"""qhold / qrls: keep queued jobs from starting, and let them go again."""

from __future__ import annotations

from typing import Annotated, List

import typer

from hyper.cli.common import cli_errors, print_error
from hyper.services.agent import wake_agent
from qcmds.common import APP_SETTINGS, HostOption, QCommand, VersionOption, run


def _command(hold: bool, prog: str) -> typer.Typer:
    app = typer.Typer(**APP_SETTINGS)

    @app.command(cls=QCommand, help="Hold queued jobs." if hold else "Release held jobs.")
    @cli_errors(prog)
    def run(job_ids: Annotated[List[str], typer.Argument(help="Jobs: 12 12[] 100-110.")],
            host: HostOption = None, version: VersionOption = False) -> None:
        from hyper.errors import EXIT_ERROR, EXIT_UNKNOWN_JOB
        from hyper.parsing.jobids import parse_job_ids
        from hyper.services import jobs as svc
        from hyper.services.context import open_context
        from hyper.store.base import Refusal

        refs = parse_job_ids(job_ids)
        ctx = open_context(host)
        results = svc.hold_jobs(ctx, refs, hold)
        if not hold and any(r.ok for r in results):
            wake_agent(ctx)  # released jobs are queued: the agent may have gone idle meanwhile
        code = 0
        for r in results:
            if not r.ok:
                print_error(prog, r.message)
                unknown = r.refusal is Refusal.UNKNOWN_JOB  # 153 as in qdel/qstat/qlog (PBSE_UNKJOBID)
                code = EXIT_UNKNOWN_JOB if unknown and code in (0, EXIT_UNKNOWN_JOB) else (code or EXIT_ERROR)
        raise typer.Exit(code)

    return app


def main_hold() -> None:
    run(_command(True, "qhold"), "qhold")


def main_release() -> None:
    run(_command(False, "qrls"), "qrls")
