"""qstat's interface: its options and help (typer). What it does is qcmds/qstat_run.py, what it shows
hyper/services/views.py; plain invocations skip typer altogether (qcmds/launch.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS, HostOption, QCommand, VersionOption, run
from qcmds.qstat_run import DEFAULT_WATCH, run_qstat

if TYPE_CHECKING:
    from typer._click import Context as ClickContext  # the click typer vendors: the base class declares this type

app = typer.Typer(**APP_SETTINGS)


class _QstatCommand(QCommand):
    """`--watch` takes an optional interval: `--watch`, `--watch 5` or `--watch=5` (seconds)."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        out = []
        i = 0
        while i < len(args):
            if args[i] == "--watch":
                nxt = args[i + 1] if i + 1 < len(args) else ""
                if nxt.replace(".", "", 1).isdigit():
                    out.append(f"--watch={nxt}")
                    i += 2
                    continue
                out.append(f"--watch={DEFAULT_WATCH}")
            else:
                out.append(args[i])
            i += 1
        return super().parse_args(ctx, out)


HELP = ("Show jobs (running, queued and held; -x adds those finished in the last 24 hours, --since more). "
        "State letters: Q queued, R running, H held (qhold, or waiting for a dependency), B array begun, "
        "F finished (succeeded or failed), X deleted.")


@app.command(cls=_QstatCommand, help=HELP)
@cli_errors("qstat")
def qstat(
    job_ids: Annotated[Optional[List[str]], typer.Argument(help="Jobs to show: 12, 12[], 12[3], 100-110.")] = None,
    queue: Annotated[Optional[str], typer.Option("-q", "--queue", help="Only jobs of this queue.")] = None,
    user: Annotated[Optional[str], typer.Option("-u", "--user", help="Only jobs of this user.")] = None,
    finished: Annotated[bool, typer.Option("-x", help="Include finished jobs (last 24 h; see --since).")] = False,
    since: Annotated[Optional[str], typer.Option("--since", help="With -x: finished within this long, e.g. 2h, 7d, "
                                                                 "or `all`.")] = None,
    full: Annotated[bool, typer.Option("-f", help="Full record of each job.")] = False,
    queues: Annotated[bool, typer.Option("-Q", help="Summary per queue.")] = False,
    elements: Annotated[bool, typer.Option("-t", help="Every array element, queued ones too.")] = False,
    alternative: Annotated[bool, typer.Option("-a", help="PBS alternative format: requested vCPUs, memory, "
                                                         "walltime and elapsed time.")] = False,
    comment: Annotated[bool, typer.Option("-s", help="Why each job waits (or how it ended), under it.")] = False,
    nodes: Annotated[bool, typer.Option("-n", help="The worker each job runs on.")] = False,
    wide: Annotated[bool, typer.Option("-w", help="Wide: names are not cut.")] = False,
    only_queued: Annotated[bool, typer.Option("-i", help="Only queued and held jobs.")] = False,
    only_running: Annotated[bool, typer.Option("-r", help="Only running jobs.")] = False,
    state: Annotated[Optional[str], typer.Option("--state", "--filter-status",
                                                 help="Only these states: Q,R,H,F,X or names (queued, ...).")] = None,
    job_name: Annotated[Optional[str], typer.Option("--job-name", help="Only jobs with this name.")] = None,
    watch: Annotated[Optional[float], typer.Option("--watch", help="Redraw every SECONDS (default 2) until "
                                                                   "Ctrl-C.", show_default=False)] = None,
    only_ids: Annotated[bool, typer.Option("--only-job-id-out", help="Print job ids only, one per line "
                                                                     "(`--only-job-id-out true|false` too).")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="table, json, yaml or csv.")] = None,
    pbs_format: Annotated[Optional[str], typer.Option("-F", help="PBS Pro's json or dsv document (with -f); "
                                                       "table, yaml, csv as --output.")] = None,
    delimiter: Annotated[str, typer.Option("-D", help="Delimiter of -F dsv.")] = "|",
    host: HostOption = None,
    version: VersionOption = False,
) -> None:
    args = dict(locals())  # exactly the options above: run_qstat takes the same names (tests/test_fastpath.py)
    raise typer.Exit(run_qstat(**args))


def main() -> None:
    run(app, "qstat")
