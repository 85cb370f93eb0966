"""sacct: jobs past and present, in Slurm's accounting fields (`-j`, `-X`, `-n`, `-P`, `--format`).

hyper has no job steps, so every job is one line (as `-X` asks); State and ExitCode (`N:S`) are Slurm's."""

from __future__ import annotations

import getpass
import sys
import time
from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS

app = typer.Typer(**APP_SETTINGS)


@app.command()
@cli_errors("sacct")
def sacct(
    jobs: Annotated[Optional[List[str]], typer.Option("-j", "--jobs", "--job", help="Job ids: 12,13_2.")] = None,
    allocations: Annotated[bool, typer.Option("-X", "--allocations", help="Jobs only (hyper has no steps).")] = False,
    noheader: Annotated[bool, typer.Option("-n", "--noheader", help="No header lines.")] = False,
    parsable2: Annotated[bool, typer.Option("-P", "--parsable2", help="'|' between fields.")] = False,
    parsable: Annotated[bool, typer.Option("-p", "--parsable", help="'|' after every field.")] = False,
    delimiter: Annotated[str, typer.Option("--delimiter", help="Delimiter of -p/-P.")] = "|",
    fmt: Annotated[Optional[str], typer.Option("-o", "--format", help="Fields: JobID,State%20,ExitCode,...")] = None,
    users: Annotated[Optional[List[str]], typer.Option("-u", "--user", help="Users: a,b.")] = None,
    all_users: Annotated[bool, typer.Option("-a", "--allusers", help="Every user's jobs.")] = False,
    states: Annotated[Optional[List[str]], typer.Option("-s", "--state", help="States: CD,F,CA,TO,R,PD.")] = None,
    names: Annotated[Optional[List[str]], typer.Option("--name", help="Job names.")] = None,
    partitions: Annotated[Optional[List[str]], typer.Option("-r", "--partition", help="Partitions.")] = None,
    since: Annotated[Optional[str], typer.Option(
        "-S", "--starttime", help="Jobs submitted since: 2026-12-01[T08:00[:00]] (default: midnight).")] = None,
    until: Annotated[Optional[str], typer.Option("-E", "--endtime",
                                                 help="Jobs submitted before: a time or now.")] = None,
    clusters: Annotated[Optional[str], typer.Option("-M", "--clusters", help="Accepted (one cluster here).")] = None,
) -> None:
    """Show accounting data of jobs (Slurm's sacct over hyper). Without -j: your jobs submitted today."""
    from hyper.services.context import open_context
    from qcmds.frontend import comma_list, select_jobs
    from qcmds.slurm import common
    from qcmds.slurm.fields import SACCT_DEFAULT, sacct_format, sacct_lines

    wanted = common.parse_states(comma_list(states)) if states else None
    sacct_format(fmt or SACCT_DEFAULT)  # a bad format fails before the store is opened
    ids = comma_list(jobs)
    user_list = comma_list(users) or ([] if all_users or ids else [getpass.getuser()])
    ctx = open_context(None)
    found, _ = select_jobs(ctx, ids, users=user_list, names=comma_list(names), queues=comma_list(partitions),
                           finished=True, elements=True)
    if not ids or since:  # sacct's window: since midnight unless -S says
        start = _since(since, "-S") if since else time.mktime(time.localtime()[:3] + (0, 0, 0, 0, 0, -1))
        found = [j for j in found if (j.submitted or 0) >= start]
    if until and until.lower() != "now":
        end = _since(until, "-E")
        found = [j for j in found if (j.submitted or 0) <= end]
    found = [j for j in found if wanted is None or common.state(j)[0] in wanted]
    delim = delimiter if parsable or parsable2 else None
    lines = sacct_lines(found, fmt or SACCT_DEFAULT, not noheader, delim, trailing=parsable and not parsable2)
    sys.stdout.write("".join(line + "\n" for line in lines))


def _since(text: str, option: str) -> float:
    from datetime import datetime

    from hyper.errors import UsageError

    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(f"{option} {text!r} is not a time", "write 2026-12-01 or 2026-12-01T08:00:00") from None


def main() -> None:
    app(prog_name="sacct")
