"""What `qsub` does once its options are known: read the script, merge the command line over its
directives, submit, wake the local agent, print the ids, and wait with --wait (no typer here).

The typer interface (qcmds/qsub.py) and the fast path of plain invocations (qcmds/launch.py) call
`run_qsub` with the same keyword arguments, so both submit the same jobs and print the same.
"""

from __future__ import annotations

import sys


def run_qsub(script: str | None = None, script_args: list[str] | None = None, name: str | None = None,
             queue: str | None = None, definition: str | None = None, array: str | None = None,
             extra: list[str] | None = None, dependency: str | None = None, hold: bool = False,
             output: str | None = None, error: str | None = None, join: str | None = None,
             variables: list[str] | None = None, export_all: bool = False, resources: list[str] | None = None,
             walltime: str | None = None, rerunnable: str | None = None, retries: int | None = None,
             retry_on_exit: bool = False, priority: int | None = None, chdir: str | None = None,
             sweep: str | None = None, wait: bool = False, quiet: bool = False, split: str | None = None,
             lines_per_part: int | None = None, parts: int | None = None, finalize: str | None = None,
             finalize_after: str = "afterany", notify: str | None = None, stagein: list[str] | None = None,
             stageout: list[str] | None = None, args_text: str | None = None, account: str | None = None,
             mail_events: str | None = None, mail_users: str | None = None, shell: str | None = None,
             project: str | None = None, keep: str | None = None, checkpoint: str | None = None,
             interactive: bool = False, x11: bool = False, job_name: str | None = None,
             partition: str | None = None, time_limit: str | None = None, mem: str | None = None,
             cpus: str | None = None, gres: str | None = None, deferred: str | None = None,
             host: str | None = None, version: bool = False, command: list[str] | None = None,
             option_names: set[str] | frozenset[str] = frozenset()) -> int:
    """qsub with its options as the typer command receives them (same names, same defaults), plus what follows
    `--` (`command`) and the command's option names (to note options misplaced after the script). The exit code:
    0, or with --wait the job's."""
    import os

    from hyper.services import jobs as svc
    from hyper.services import owners
    from hyper.services.context import open_context
    from hyper.services.options import SubmitOptions, prepare_submission, wants_block
    from hyper.services.submission import submit_and_wake, wake_for

    _refuse_unsupported(deferred, interactive, x11)
    extra_args, command = _script_arguments(script, script_args, args_text, command, option_names)
    script_text: str | None = None
    script_name = ""
    if command is None:
        script_text, script_name = _read_script(script)
    opts = SubmitOptions(
        name=name, queue=queue, definition=definition, array=array, extra=list(extra or []), dependency=dependency,
        hold=hold, output=output, error=error, join=join, variables=list(variables or []), export_all=export_all,
        resources=list(resources or []), walltime=walltime, rerunnable=rerunnable, retries=retries,
        priority=priority, chdir=chdir, account=account, mail_events=mail_events, mail_users=mail_users,
        shell=shell, project=project, keep=keep, checkpoint=checkpoint, job_name=job_name, partition=partition,
        time_limit=time_limit, mem=mem, cpus=cpus, gres=gres, stagein=list(stagein or []),
        stageout=list(stageout or []), args=extra_args)
    wait = wait or wants_block(opts)
    merged = prepare_submission(opts, script_text, script_name)
    params = svc.load_sweep(sweep) if sweep else None

    ctx = open_context(host)
    submit_env = dict(os.environ)
    from hyper.services.environment import plan_environment

    env_notes = plan_environment(ctx.host, merged, submit_env).notes()
    notes = svc.submission_notes(ctx, merged, script_text, command)
    waited = None
    if (split or finalize or notify or merged.stagein or merged.stageout
            or lines_per_part is not None or parts is not None):
        from hyper.workflows.submit import WorkflowOptions, submit_workflow  # only then: qsub's cold start

        wf = WorkflowOptions(split, lines_per_part, parts, finalize, finalize_after, notify)
        done = submit_workflow(ctx, merged, wf, script=script_text, command=command, script_name=script_name,
                               submit_env=submit_env, cwd=os.getcwd(), user=owners.caller(ctx), sweep=params,
                               retry_on_exit=retry_on_exit)
        jobs, waited = done.jobs, done.all_jobs
        wake_for(ctx, jobs)
        for note in done.notes:
            sys.stderr.write(f"qsub: note: {note}\n")
    else:  # the service wakes the local agent
        jobs = submit_and_wake(ctx, merged, script=script_text, command=command, script_name=script_name,
                      submit_env=submit_env, cwd=os.getcwd(), user=owners.caller(ctx), sweep=params,
                      retry_on_exit=retry_on_exit)
    for note in [*env_notes, *notes]:
        sys.stderr.write(f"qsub: note: {note}\n")
    if merged.ignored:
        sys.stderr.write(f"qsub: note: no effect here, ignored: {', '.join(merged.ignored)}\n")
    if not quiet:
        sys.stdout.write("".join(f"{j.job_id}\n" for j in jobs))
        sys.stdout.flush()
    if wait:
        try:
            return svc.wait_for(ctx, waited or jobs)
        except KeyboardInterrupt:  # Ctrl-C stops the waiting, not the job: say so, as PBS's qsub -W block does
            ids = " ".join(j.job_id for j in jobs)
            sys.stderr.write(f"qsub: stopped waiting; {ids} keeps running (qdel {ids} stops it)\n")
            return 130
    return 0


def _refuse_unsupported(deferred: str | None, interactive: bool, x11: bool) -> None:
    """PBS options hyper cannot honour fail before anything is read or submitted, naming what to do instead."""
    from hyper.errors import UsageError

    if deferred is not None:
        raise UsageError("-a (PBS deferred start time) is not supported",
                         "submit later with `at`/cron, or use --sweep FILE for parameter sweeps")
    if interactive or x11:
        raise UsageError(f"{'-I (interactive job)' if interactive else '-X (X11 forwarding)'} is not supported",
                         "hyper runs batch jobs: run the command directly, or qsub --wait job.sh")


def _script_arguments(script: str | None, script_args: list[str] | None, args_text: str | None,
                      command: list[str] | None,
                      option_names: set[str] | frozenset[str]) -> tuple[list[str], list[str] | None]:
    """The script's arguments (after the script, -F "a b", or `qsub job.sh -- a b`) and the job's command
    (what follows `--` when no script is given, else None). Apart from run_qsub so that the three ways of
    passing arguments, and the note on options misplaced after the script, read in one place."""
    import shlex

    from hyper.errors import UsageError

    extra_args = list(script_args or [])
    if args_text is not None:
        try:
            extra_args += shlex.split(args_text)
        except ValueError as exc:
            raise UsageError(f'-F "{args_text}": {exc}', 'quote the arguments like a shell: -F "a \'b c\'"') from None
    misplaced = [a for a in script_args or [] if a in option_names]
    if misplaced:  # sbatch's rule, but a PBS habit may put options last: say where they went
        sys.stderr.write(f"qsub: note: {' '.join(misplaced)} after the script are the script's arguments; put qsub "
                         "options before the script\n")
    if command is not None and script is not None:  # qsub job.sh -- a b: the script's arguments
        extra_args += command
        command = None
    elif command is not None and not command:
        raise UsageError("nothing follows --", "e.g. qsub -- python train.py")
    return extra_args, command


def _read_script(script: str | None) -> tuple[str, str]:
    """The job script's text and the name it is known by (STDIN when piped), with a one-line error naming the
    fix when it cannot be read: kept apart from run_qsub, which only decides whether there is a script."""
    from hyper.errors import UsageError

    if script is None or script == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no job script given", "qsub job.sh, qsub -- cmd args, or pipe a script in")
        return sys.stdin.read(), "STDIN"
    try:
        with open(script, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read(), script
    except FileNotFoundError:
        raise UsageError(f"job script {script} does not exist",
                         "check the path, or run a command with qsub -- cmd args") from None
    except IsADirectoryError:
        raise UsageError(f"job script {script} is a directory", "give the script file") from None
    except PermissionError:
        raise UsageError(f"job script {script} is not readable", f"chmod u+r {script}") from None
