"""qsub: submit a script, stdin, or `-- command args`, with PBS options (and #PBS/#SBATCH/#BSUB/#HYPER
directives in the script, which the command line overrides)."""

from __future__ import annotations

import sys
from typing import Annotated, List, Optional

import typer
from typer.core import TyperCommand

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS, HostOption, wake_agent

app = typer.Typer(**APP_SETTINGS)


class _DashDash(TyperCommand):
    """Keeps what follows `--` as the job's command: click would otherwise fold it into the arguments."""

    def parse_args(self, ctx, args):
        if "--" in args:
            cut = args.index("--")
            ctx.meta["qsub_command"] = args[cut + 1:]
            args = args[:cut]
        return super().parse_args(ctx, args)


@app.command(cls=_DashDash)
@cli_errors("qsub")
def qsub(
    context: typer.Context,
    script: Annotated[Optional[str], typer.Argument(help="Job script (default: read from stdin). "
                                                         "Or `-- command args`.")] = None,
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
    resources: Annotated[Optional[List[str]], typer.Option("-l", help="walltime=1:00:00, select=1:ncpus=2:ngpus=1:mem=4gb.")] = None,
    walltime: Annotated[Optional[str], typer.Option("--walltime", help="Walltime, e.g. 1:30:00.")] = None,
    rerunnable: Annotated[Optional[str], typer.Option("-r", help="y|n: may rerun after a lost worker.")] = None,
    retries: Annotated[Optional[int], typer.Option("--retries", help="Reruns after failures (2 = at most 3 runs).")] = None,
    retry_on_exit: Annotated[bool, typer.Option("--retry-on-exit", help="Count non-zero exits as failures to retry.")] = False,
    priority: Annotated[Optional[int], typer.Option("-p", "--priority", help="-1024..1023, higher first.")] = None,
    chdir: Annotated[Optional[str], typer.Option("--chdir", "-D", help="Run in this directory.")] = None,
    sweep: Annotated[Optional[str], typer.Option("--sweep", help="JSON-lines file: one job per line, {key} substituted.")] = None,
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
    account: Annotated[Optional[str], typer.Option("-A", help="Account (accepted; no effect here).")] = None,
    deferred: Annotated[Optional[str], typer.Option("-a", hidden=True)] = None,
    host: HostOption = None,
) -> None:
    """Submit a job. Prints its id."""
    import getpass
    import os

    from hyper.errors import UsageError
    from hyper.parsing.directives import Directives, parse_dependency, parse_directives, parse_options
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from hyper.states import JobState

    command = context.meta.get("qsub_command")
    if deferred is not None:
        raise UsageError("-a (PBS deferred start time) is not supported",
                         "submit later with `at`/cron, or use --sweep FILE for parameter sweeps")
    if command is not None and script is not None:
        raise UsageError(f"give either a script ({script}) or a command after --, not both",
                         "e.g. qsub job.sh or qsub -- python train.py")
    if command is not None and not command:
        raise UsageError("nothing follows --", "e.g. qsub -- python train.py")
    script_text, script_name = None, ""
    if command is None:
        if script is None or script == "-":
            if sys.stdin is None or sys.stdin.isatty():
                raise UsageError("no job script given", "qsub job.sh, qsub -- cmd args, or pipe a script in")
            script_text, script_name = sys.stdin.read(), "STDIN"
        else:
            try:
                with open(script, encoding="utf-8", errors="surrogateescape") as fh:
                    script_text = fh.read()
            except FileNotFoundError:
                raise UsageError(f"job script {script} does not exist",
                                 "check the path, or run a command with qsub -- cmd args") from None
            except IsADirectoryError:
                raise UsageError(f"job script {script} is a directory", "give the script file") from None
            except PermissionError:
                raise UsageError(f"job script {script} is not readable", f"chmod u+r {script}") from None
            script_name = script
    from_script = parse_directives(script_text, script_name) if script_text is not None else Directives()

    words: list[str] = []
    wait = wait or any(w.strip().lower() in ("block=true", "block=t") for w in extra or [])
    for value in extra or []:
        if value.strip().lower() not in ("block=true", "block=t", "block=false", "block=f"):
            words += ["-W", value]
    for flag, value in (("-N", name), ("-q", queue), ("-J", array), ("-o", output), ("-e", error),
                        ("-j", join), ("-r", rerunnable), ("-A", account), ("-p", None if priority is None else str(priority))):
        if value is not None:
            words += [flag, value]
    for value in variables or []:
        words += ["-v", value]
    for value in resources or []:
        words += ["-l", value]
    if walltime is not None:
        words += ["-l", f"walltime={walltime}"]
    if hold:
        words.append("-h")
    if export_all:
        words.append("-V")
    cli = parse_options(words, "PBS")
    if dependency:
        cli.depend = parse_dependency(dependency, "SBATCH")
    if definition is not None:
        cli.definition = definition
    if retries is not None:
        if retries < 0:
            raise UsageError(f"--retries {retries} is negative", "give 0 or more")
        cli.retries = retries
    if chdir is not None:
        cli.chdir = chdir
    cli.stagein += stagein or []
    cli.stageout += stageout or []
    merged = svc.merge_directives(from_script, cli)
    params = svc.load_sweep(sweep) if sweep else None

    ctx = open_context(host)
    waited = None
    if (split or finalize or notify or merged.stagein or merged.stageout
            or lines_per_part is not None or parts is not None):
        from hyper.workflows.submit import WorkflowOptions, submit_workflow  # only then: qsub's cold start

        wf = WorkflowOptions(split, lines_per_part, parts, finalize, finalize_after, notify)
        done = submit_workflow(ctx, merged, wf, script=script_text, command=command, script_name=script_name,
                               submit_env=dict(os.environ), cwd=os.getcwd(), user=getpass.getuser(), sweep=params,
                               retry_on_exit=retry_on_exit)
        jobs, waited = done.jobs, done.all_jobs
        for note in done.notes:
            sys.stderr.write(f"qsub: note: {note}\n")
    else:
        jobs = svc.submit(ctx, merged, script=script_text, command=command, script_name=script_name,
                          submit_env=dict(os.environ), cwd=os.getcwd(), user=getpass.getuser(), sweep=params,
                          retry_on_exit=retry_on_exit)
    if any(j.state is not JobState.HELD for j in jobs):  # held jobs wait for qrls or their dependencies
        wake_agent(ctx)
    if merged.ignored:
        sys.stderr.write(f"qsub: note: no effect here, ignored: {', '.join(merged.ignored)}\n")
    if not quiet:
        sys.stdout.write("".join(f"{j.job_id}\n" for j in jobs))
        sys.stdout.flush()
    if wait:
        raise typer.Exit(svc.wait_for(ctx, waited or jobs))


def main() -> None:
    app(prog_name="qsub")
