"""qsub: submit a script, stdin, or `-- command args`, with PBS options (and #PBS/#SBATCH/#BSUB/#HYPER
directives in the script, which the command line overrides)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS, HostOption, QCommand, VersionOption, run
from qcmds.qsub_run import run_qsub

if TYPE_CHECKING:
    from typer._click import Context as ClickContext  # the click typer vendors: the base class declares this type

app = typer.Typer(**APP_SETTINGS)


class _DashDash(QCommand):
    """Keeps what follows `--` as the job's command (or, after a script, the script's arguments): click would
    otherwise fold it into the arguments."""

    def parse_args(self, ctx: ClickContext, args: list[str]) -> list[str]:
        if "--" in args:
            cut = args.index("--")
            ctx.meta["qsub_command"] = args[cut + 1:]
            args = args[:cut]
        return super().parse_args(ctx, args)


HELP = "\n\n".join((
    "Submit a job. Prints its id.",
    "Where it runs on a local host: a script with #SBATCH or #BSUB directives runs in the directory it was "
    "submitted from (Slurm's and LSF's default); #PBS, #HYPER, plain scripts and `-- command` run in their "
    "worker's reused work directory (PBS_O_WORKDIR names the submit directory). -D DIR overrides both.",
    "Default output on a local host: #SBATCH writes slurm-%j.out (slurm-%A_%a.out per array element) in the "
    "submit directory, #PBS writes NAME.oID and NAME.eID (NAME.oID.INDEX per element) there; others write under "
    "$HYPER_HOME/local/logs. `qlog ID` reads any of them, `qstat -f ID` shows where. Patterns in -o/-e: Slurm "
    "%j %A %a %x %u %N, LSF %J %I, PBS ^array_index^.",
    "Options stop at the script: what follows it is the script's arguments (`qsub job.sh a b`, or -F \"a b\").",
))


@app.command(cls=_DashDash, help=HELP,
             context_settings={**APP_SETTINGS["context_settings"], "allow_interspersed_args": False})
@cli_errors("qsub")
def qsub(
    context: typer.Context,
    script: Annotated[Optional[str], typer.Argument(help="Job script (default: read from stdin). "
                                                         "Or `-- command args`.")] = None,
    script_args: Annotated[Optional[List[str]], typer.Argument(help="Arguments for the script.",
                                                               show_default=False)] = None,
    name: Annotated[Optional[str], typer.Option("-N", "--name", help="Job name.")] = None,
    queue: Annotated[Optional[str], typer.Option("-q", "--queue", help="Queue.")] = None,
    definition: Annotated[Optional[str], typer.Option("-d", "--definition", help="Job definition.")] = None,
    array: Annotated[Optional[str], typer.Option("-J", "--array", "-t", help="Array: 1-100:2%10 or 0-15,20.")] = None,
    extra: Annotated[Optional[List[str]], typer.Option("-W", help="depend=afterok:12 | block=true.")] = None,
    dependency: Annotated[Optional[str], typer.Option("--dependency", help="afterok:12:13,afterany:14.")] = None,
    hold: Annotated[bool, typer.Option("-h", "--hold", help="Submit held (release with qrls).")] = False,
    output: Annotated[Optional[str], typer.Option("-o", "--output", help="stdout file (%j, %a patterns).")] = None,
    error: Annotated[Optional[str], typer.Option("-e", "--error", help="stderr file.")] = None,
    join: Annotated[Optional[str], typer.Option("-j", help="oe: stderr into stdout; eo: the reverse.")] = None,
    variables: Annotated[Optional[List[str]], typer.Option("-v", help="Environment: A=1,B (B from here).")] = None,
    export_all: Annotated[bool, typer.Option("-V", help="Export this whole environment.")] = False,
    resources: Annotated[Optional[List[str]],
                         typer.Option("-l", help="walltime=1:00:00, select=1:ncpus=2:ngpus=1:mem=4gb.")] = None,
    walltime: Annotated[Optional[str], typer.Option("--walltime", help="Walltime, e.g. 1:30:00.")] = None,
    rerunnable: Annotated[Optional[str], typer.Option("-r", help="y|n: may rerun after a lost worker.")] = None,
    retries: Annotated[Optional[int],
                       typer.Option("--retries", help="Reruns after failures (2 = at most 3 runs).")] = None,
    retry_on_exit: Annotated[bool, typer.Option("--retry-on-exit",
                                                help="Count non-zero exits as failures to retry.")] = False,
    priority: Annotated[Optional[int], typer.Option("-p", "--priority", help="-1024..1023, higher first.")] = None,
    chdir: Annotated[Optional[str], typer.Option("--chdir", "-D", help="Run in this directory.")] = None,
    sweep: Annotated[Optional[str],
                     typer.Option("--sweep", help="JSON-lines file: one job per line, {key} substituted.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the job and exit with its exit code.")] = False,
    quiet: Annotated[bool, typer.Option("-z", "--quiet", help="Do not print the job id.")] = False,
    split: Annotated[Optional[str], typer.Option("--split", help="Input file: one array element per part.")] = None,
    lines_per_part: Annotated[Optional[int], typer.Option("--lines-per-part", help="Lines per part.")] = None,
    parts: Annotated[Optional[int], typer.Option("--parts", help="Number of --split parts.")] = None,
    finalize: Annotated[Optional[str], typer.Option("--finalize",
                                                    help="Script run after the array ($HYPER_PART_OUTPUTS).")] = None,
    finalize_after: Annotated[str, typer.Option("--finalize-after", help="afterany | afterok.")] = "afterany",
    notify: Annotated[Optional[str], typer.Option("--notify", help="URL to POST to when the job ends.")] = None,
    stagein: Annotated[Optional[List[str]], typer.Option("--stagein", help="EXEC_PATH@HOST:SUBMIT_PATH.")] = None,
    stageout: Annotated[Optional[List[str]], typer.Option("--stageout", help="EXEC_PATH@HOST:SUBMIT_PATH.")] = None,
    args_text: Annotated[Optional[str], typer.Option("-F", help='Arguments for the script, e.g. -F "a b".')] = None,
    account: Annotated[Optional[str], typer.Option("-A", "--account", help="Account (noted, no effect).")] = None,
    mail_events: Annotated[Optional[str], typer.Option("-m", help="Mail events abe|n (noted, no effect).")] = None,
    mail_users: Annotated[Optional[str], typer.Option("-M", help="Mail addresses (noted, no effect).")] = None,
    shell: Annotated[Optional[str], typer.Option("-S", help="Shell (noted; the script's #! line decides).")] = None,
    project: Annotated[Optional[str], typer.Option("-P", help="Project (noted, no effect).")] = None,
    keep: Annotated[Optional[str], typer.Option("-k", help="Keep output on the host oe|n (noted, no effect).")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("-c", help="Checkpoint (noted, no effect).")] = None,
    interactive: Annotated[bool, typer.Option("-I", help="Refused: hyper jobs are batch jobs.")] = False,
    x11: Annotated[bool, typer.Option("-X", help="Refused: X11 needs an interactive job.")] = False,
    job_name: Annotated[Optional[str], typer.Option("--job-name", help="Slurm: the job name (as -N).")] = None,
    partition: Annotated[Optional[str], typer.Option("--partition", help="Slurm: the queue (as -q).")] = None,
    time_limit: Annotated[Optional[str], typer.Option("--time", help="Slurm: walltime, 90 (min) or 1:30:00.")] = None,
    mem: Annotated[Optional[str], typer.Option("--mem", help="Slurm: memory, e.g. 4G (MB without a unit).")] = None,
    cpus: Annotated[Optional[str], typer.Option("--cpus-per-task", help="Slurm: vCPUs.")] = None,
    gres: Annotated[Optional[str], typer.Option("--gres", help="Slurm: gpu:N.")] = None,
    deferred: Annotated[Optional[str], typer.Option("-a", hidden=True)] = None,
    host: HostOption = None,
    version: VersionOption = False,
) -> None:
    args = dict(locals())  # exactly the options above: run_qsub takes the same names (tests/test_fastpath.py)
    del args["context"]
    command = context.meta.get("qsub_command")
    raise typer.Exit(run_qsub(**args, command=command, option_names=_option_names(context)))


def _option_names(context: typer.Context) -> set[str]:
    return {name for param in context.command.params for name in getattr(param, "opts", [])
            if name.startswith("-")}


def main() -> None:
    run(app, "qsub")
