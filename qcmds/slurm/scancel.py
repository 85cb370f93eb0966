"""scancel: cancel jobs by id (`12 13_2 14_[1-3]`), or every job matching `-u`, `-n`, `-t`, `-p`."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS

app = typer.Typer(**APP_SETTINGS)


@app.command()
@cli_errors("scancel")
def scancel(
    job_ids: Annotated[Optional[List[str]], typer.Argument(help="Job ids: 12 12_3 12_[1-3].")] = None,
    users: Annotated[Optional[str], typer.Option("-u", "--user", help="Only jobs of this user.")] = None,
    me: Annotated[bool, typer.Option("--me", help="Only my jobs.")] = False,
    name: Annotated[Optional[str], typer.Option("-n", "--name", "--jobname", help="Only jobs of this name.")] = None,
    state: Annotated[Optional[str], typer.Option("-t", "--state",
                                                 help="Only jobs in this state: PENDING, RUNNING.")] = None,
    partition: Annotated[Optional[str], typer.Option("-p", "--partition", help="Only jobs of this partition.")] = None,
    clusters: Annotated[Optional[str], typer.Option("-M", "--clusters", help="Accepted (one cluster here).")] = None,
    quiet: Annotated[bool, typer.Option("-Q", "--quiet", help="No message for jobs already finished.")] = False,
) -> None:
    """Cancel jobs (Slurm's scancel over hyper): queued ones never start; running ones are stopped."""
    from hyper.errors import UsageError
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from qcmds.frontend import comma_list, refs_of, select_jobs
    from qcmds.slurm import common

    wanted = common.parse_states([state]) if state else None
    user_list = comma_list([users] if users else []) + ([getpass.getuser()] if me else [])
    if not job_ids and not (user_list or name or state or partition):
        raise UsageError("no job identification provided", "give job ids, or filter with -u, -n, -t or -p")
    ctx = open_context(None)
    found, missing = select_jobs(ctx, comma_list(job_ids), users=user_list, names=comma_list([name] if name else []),
                                 queues=comma_list([partition] if partition else []))
    found = [j for j in found if wanted is None or common.state(j)[0] in wanted]
    refs = refs_of(found)
    code = 0
    for job_id in missing:
        sys.stderr.write(f"scancel: error: Kill job error on job id {job_id}: Invalid job id specified\n")
        code = 1
    for result in svc.delete_jobs(ctx, refs) if refs else []:
        if not result.ok and not quiet:
            sys.stderr.write(f"scancel: error: Kill job error on job id {result.job_id}: {result.message}\n")
    raise typer.Exit(code)


def main() -> None:
    app(prog_name="scancel")
