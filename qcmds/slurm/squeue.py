"""squeue: queued and running jobs in Slurm's columns (`-o/--format`, `-h`, `-j`, `-u`, `--me`, `-t`)."""

from __future__ import annotations

import getpass
import sys
from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS

app = typer.Typer(**APP_SETTINGS)


@app.command()
@cli_errors("squeue")
def squeue(
    jobs: Annotated[Optional[List[str]], typer.Option("-j", "--jobs", "--job", help="Job ids: 12,13_2.")] = None,
    users: Annotated[Optional[List[str]], typer.Option("-u", "--user", help="Users: a,b.")] = None,
    me: Annotated[bool, typer.Option("--me", help="Only my jobs.")] = False,
    states: Annotated[Optional[List[str]], typer.Option("-t", "--states", help="PD,R,CD,F,CA,TO or all.")] = None,
    partitions: Annotated[Optional[List[str]], typer.Option("-p", "--partition", help="Partitions (queues).")] = None,
    names: Annotated[Optional[List[str]], typer.Option("-n", "--name", help="Job names.")] = None,
    fmt: Annotated[Optional[str], typer.Option("-o", "--format",
                                               help="e.g. '%.18i %.9P %.8j %.8u %.2t %.10M'.")] = None,
    noheader: Annotated[bool, typer.Option("-h", "--noheader", help="No header line.")] = False,
    all_partitions: Annotated[bool, typer.Option("-a", "--all", help="Accepted (every partition is shown).")] = False,
    clusters: Annotated[Optional[str], typer.Option("-M", "--clusters", help="Accepted (one cluster here).")] = None,
    array: Annotated[bool, typer.Option("-r", "--array", help="One line per array element.")] = False,
) -> None:
    """Show queued and running jobs (Slurm's squeue over hyper). With -j, finished jobs show too."""
    from hyper.services.context import open_context
    from qcmds.frontend import comma_list, select_jobs
    from qcmds.slurm import common
    from qcmds.slurm.fields import SQUEUE_DEFAULT, squeue_format, squeue_lines

    wanted = common.parse_states(comma_list(states)) if states else set(common.ACTIVE_NAMES)
    user_list = comma_list(users) + ([getpass.getuser()] if me else [])
    squeue_format(fmt or SQUEUE_DEFAULT)  # a bad format fails before the store is opened
    ctx = open_context(None)
    ids = comma_list(jobs)
    found, _ = select_jobs(ctx, ids, users=user_list, names=comma_list(names), queues=comma_list(partitions),
                           finished=wanted is None or not wanted <= set(common.ACTIVE_NAMES), elements=array)
    if ids and not states:
        wanted = None  # named jobs show in any state, as Slurm shows them while it remembers them
    shown = [j for j in found if wanted is None or common.state(j)[0] in wanted]
    sys.stdout.write("".join(line + "\n" for line in squeue_lines(shown, fmt or SQUEUE_DEFAULT, not noheader)))


def main() -> None:
    app(prog_name="squeue")
