"""Submission: directives merged and checked, a queue and definition chosen, the job spec built and stored.

Why a module of its own: submitting is most of what can go wrong for a user (sizes that never fit, sweeps,
arrays, dependencies, working directories), and every check runs here before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from hyper import diskspace
from hyper.backends import cluster_type
from hyper.errors import DiskFullError, HyperError, UsageError
from hyper.models import Cluster, Definition, Job, JobSpec, Queue
from hyper.parsing.directives import Directives
from hyper.parsing.durations import format_duration
from hyper.parsing.jobids import JobRef
from hyper.services import environment
from hyper.services import submit_checks as checks
from hyper.services.context import DEFAULT_DEFINITION, DEFAULT_QUEUE, Context, host_size
from hyper.store.base import Submission


def merge_directives(script: Directives, cli: Directives) -> Directives:
    """Command-line options override the script's directives, field by field; env lists combine."""
    merged = dataclasses.replace(script)
    for f in dataclasses.fields(Directives):
        value = getattr(cli, f.name)
        if f.name == "env":
            merged.env = {**script.env, **cli.env}
        elif f.name == "ignored":
            merged.ignored = [*script.ignored, *cli.ignored]
        elif f.name == "depend":
            merged.depend = cli.depend or script.depend
        elif f.name == "export_default":  # Slurm's implicit export holds only while nobody says otherwise
            merged.export_default = script.export_default and cli.export_all is None
        elif f.name in ("stagein", "stageout", "args"):
            setattr(merged, f.name, value or getattr(script, f.name))
        elif value is not None:
            setattr(merged, f.name, value)
    return merged


def _queue_and_definition(ctx: Context, d: Directives) -> tuple[Queue, Definition]:
    """The queue, and the definition: the one named with -d, else the default if the request fits it, else
    the smallest definition that fits (a PBS/Slurm user says -l ncpus=4 or --mem, not which definition)."""
    qname = d.queue or DEFAULT_QUEUE
    queue = ctx.store.get_resource("queue", qname)
    if not isinstance(queue, Queue):
        names = ", ".join(q.name for q in ctx.store.list_resources("queue")) or "none"
        raise HyperError(f"unknown queue {qname!r}", f"queues on host {ctx.host.name}: {names}")
    cluster = ctx.store.get_resource("cluster", queue.cluster)
    if not isinstance(cluster, Cluster):  # orphaned by `delete-cluster --force`
        raise HyperError(f"queue {qname!r} has no compute: its cluster {queue.cluster!r} was deleted",
                         f"an admin can fix it with `hyper queues update-queue {qname} --cluster NAME`")
    if d.definition is not None:
        definition = ctx.store.get_resource("definition", d.definition)
        if not isinstance(definition, Definition):
            names = ", ".join(x.name for x in ctx.store.list_resources("definition")) or "none"
            raise HyperError(f"unknown job definition {d.definition!r}",
                             f"definitions on host {ctx.host.name}: {names}")
    else:
        default = ctx.store.get_resource("definition", DEFAULT_DEFINITION)
        definition = default if isinstance(default, Definition) else None
        if definition is None or _shortfall(d, definition):
            definition = _smallest_fitting(ctx, d, queue, cluster, definition)
    if definition.gpus > cluster.gpus_per_instance:  # it would wait forever for a worker that cannot start
        raise HyperError(f"definition {definition.name!r} wants {definition.gpus} GPU(s) per worker but queue "
                         f"{qname!r} runs on cluster {cluster.name!r} with {cluster.gpus_per_instance} per instance",
                         "submit to a GPU queue (-q), or pick a definition with fewer GPUs (-d)")
    never = _never_runs(definition, cluster)
    if never:
        raise HyperError(f"definition {definition.name!r} asks for {never}, so its jobs could never start",
                         "pick a smaller definition with -d NAME (hyper definitions list-definitions)")
    if cluster_type(cluster.type).regional:  # nor one too big for every instance type after the agent's reserve
        from hyper.backends.instances import cluster_fit_problem

        why = cluster_fit_problem(definition, cluster)
        if why:
            raise HyperError(f"queue {qname!r} cannot start it: {why}",
                             "submit to a queue whose cluster has bigger instances (-q), or pick a smaller "
                             "definition (-d)")
    return queue, definition


def _shortfall(d: Directives, definition: Definition) -> str:
    """What of the request `definition` cannot give ("" when it fits): as a PBS queue's resources_max."""
    from hyper.parsing.durations import format_memory

    if d.vcpus is not None and d.vcpus > definition.vcpus:
        return f"{d.vcpus} vCPUs but definition {definition.name!r} gives {definition.vcpus}"
    if d.gpus is not None and d.gpus > definition.gpus:
        return f"{d.gpus} GPUs but definition {definition.name!r} gives {definition.gpus}"
    if d.memory_mib is not None and d.memory_mib > definition.memory_mib:
        return (f"{format_memory(d.memory_mib)} of memory but definition {definition.name!r} gives "
                f"{format_memory(definition.memory_mib)}")
    if d.walltime is not None and definition.timeout and d.walltime > definition.timeout:
        return (f"walltime {format_duration(d.walltime)} but definition {definition.name!r} allows "
                f"{format_duration(definition.timeout)}")
    return ""


def _never_runs(definition: Definition, cluster: Cluster) -> str:
    """Why no worker of `definition` can ever start on `cluster` ("" when one can)."""
    from hyper.parsing.durations import format_memory

    if cluster.type == "local":
        cores, memory = host_size()
        cores = min(cores, cluster.max_vcpus or cores)
        if definition.vcpus > cores:
            return f"{definition.vcpus} vCPUs and host {cluster.name!r} has {cores}"
        if memory and definition.memory_mib > memory:
            return f"{format_memory(definition.memory_mib)} and this machine has {format_memory(memory)}"
    elif cluster.max_vcpus and definition.vcpus > cluster.max_vcpus:
        return f"{definition.vcpus} vCPUs and cluster {cluster.name!r} has at most {cluster.max_vcpus} per region"
    return ""


def _smallest_fitting(ctx: Context, d: Directives, queue: Queue, cluster: Cluster,
                      default: Definition | None) -> Definition:
    usable = [x for x in ctx.store.list_resources("definition") if isinstance(x, Definition)
              and x.status == "ACTIVE" and x.gpus <= cluster.gpus_per_instance and not _never_runs(x, cluster)
              and (x.image == "local") == (ctx.host.type == "local")]
    fitting = [x for x in usable if not _shortfall(d, x)]
    if fitting:
        return min(fitting, key=lambda x: (x.gpus, x.vcpus, x.memory_mib, x.timeout or 0, x.name))
    what = _shortfall(d, default) if default is not None else "more than any definition gives"
    if not usable:
        raise HyperError(f"the job asks for {what}, and no definition can run on queue {queue.name!r}",
                         "an admin adds one with `hyper definitions add-definition`")
    from hyper.parsing.durations import format_memory

    # the largest in what the job is short of: memory first for a memory request, and so on
    order = {"vCPUs": ("vcpus", "memory_mib", "gpus"), "GPUs": ("gpus", "vcpus", "memory_mib"),
             "memory": ("memory_mib", "vcpus", "gpus"), "walltime": ("timeout", "vcpus", "memory_mib")}
    keys = next((v for k, v in order.items() if k in what.split(" but ")[0]), order["vCPUs"])
    big = max(usable, key=lambda x: tuple(getattr(x, k) or 0 for k in keys))
    raise HyperError(f"the job asks for {what}; no definition on queue {queue.name!r} fits, the largest is "
                     f"{big.name!r} ({big.vcpus} vCPUs, {format_memory(big.memory_mib)}, {big.gpus} GPUs"
                     + (f", walltime {format_duration(big.timeout)}" if big.timeout else "") + ")",
                     "ask for less, or an admin adds a bigger definition with `hyper definitions add-definition`")


def _check_resources(d: Directives, definition: Definition) -> None:
    """A job may ask for at most what its definition's workers have (as a PBS queue's resource max)."""
    short = _shortfall(d, definition)
    if short:
        raise HyperError(f"the job asks for {short}", "pick a bigger definition with -d NAME or ask for less")


def _dependencies(d: Directives) -> list[tuple[str, int, int | None]]:
    out: list[tuple[str, int, int | None]] = []
    for dep in d.depend:
        ref = dep.ref
        if ref.indices is None:
            out.append((dep.kind, ref.id, None))
        else:
            out.extend((dep.kind, ref.id, i) for i in ref.indices)
    return out


_PARAM = re.compile(r"(?<!\$)\{(\w+)\}")


def load_sweep(path: str) -> list[dict[str, object]]:
    """Parameter sets from a JSON-lines file: one JSON object per line, blank lines and # comments skipped."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise UsageError(f"cannot read parameter file {path}: {exc.strerror}", "give a JSON-lines file") from None
    params = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(f"{path}:{number}: not JSON ({exc.msg})",
                             'write one object per line, e.g. {"lr": 0.1, "seed": 1}') from None
        if not isinstance(value, dict):
            raise UsageError(f"{path}:{number}: expected a JSON object, got {type(value).__name__}",
                             'write one object per line, e.g. {"lr": 0.1, "seed": 1}')
        params.append(value)
    if not params:
        raise UsageError(f"{path} holds no parameter sets", 'add lines like {"lr": 0.1}')
    return params


SHELLS = ("sh", "bash", "dash", "ksh", "zsh", "ash", "mksh")


def runs_in_a_shell(script: str) -> bool:
    """A script without a shebang runs under bash or sh (runner._prepare_command); else its interpreter's."""
    first = script.split("\n", 1)[0]
    if not first.startswith("#!"):
        return True
    words = first[2:].split()
    if not words:
        return True
    program = words[0].rsplit("/", 1)[-1]
    if program == "env":  # #!/usr/bin/env [-S] bash
        rest = [w for w in words[1:] if not w.startswith("-")]
        program = rest[0].rsplit("/", 1)[-1] if rest else ""
    return program in SHELLS


def substitute(text: str, values: dict[str, object], where: str, shell: bool = False) -> str:
    """Replace {key} (not ${key}, which is the shell's) with the parameter's value.

    In a shell script ``shell``, {key} becomes ``${HYPER_PARAM_key}`` instead: the shell expands the value
    from the job's environment, so a value is never read as shell syntax (a parameter file's
    ``"0.1; rm -rf ~"`` stays a value). Elsewhere (a command's argv, which no shell parses, or a Python
    script) the value goes in as it is.
    """
    def repl(m: re.Match) -> str:
        key = m.group(1)
        if key not in values:
            raise UsageError(f"{where} uses {{{key}}} but the parameter set has no {key!r}",
                             "add the key to every line of the parameter file or escape the braces")
        return f"${{HYPER_PARAM_{key}}}" if shell else str(values[key])

    return _PARAM.sub(repl, text)


RUNS_IN_SUBMIT_DIR = ("SBATCH", "BSUB")  # Slurm and LSF run a job where it was submitted; PBS in the worker's dir


def retry_policy(d: Directives, definition: Definition, retry_on_exit: bool = False) -> tuple[int, bool]:
    """(retries, whether a non-zero exit is retried), as AWS Batch and the Cyclone seed mean them.

    A job's own count (`#HYPER -r N`, `qsub --retries N`) covers every failed attempt, non-zero exits
    included. A definition's default covers lost workers only, unless the definition says `retry-on: all`.
    PBS `-r n` (not rerunnable) drops the default, so a lost worker fails the job instead of rerunning it.
    """
    if d.retries is not None:
        return d.retries, retry_on_exit or d.retries > 0 or bool(d.retry_on_exit)
    if d.rerunnable is False:
        return 0, False
    return definition.retries, retry_on_exit or bool(d.retry_on_exit) or definition.retry_on == "all"


def default_output_files(family: str | None, name: str, is_array: bool, output: str | None,
                         error: str | None) -> tuple[str | None, str | None]:
    """The files a family writes when the script names none (relative: in the submit directory).

    Slurm: slurm-%j.out (slurm-%A_%a.out for arrays), stderr joined unless -e says otherwise. PBS: NAME.oID and
    NAME.eID (NAME.oID.INDEX per array element). LSF without -o, #HYPER and plain commands: hyper's logs
    directory (qlog reads it), which is what None means here.
    """
    if family == "SBATCH" and output is None:
        output = "slurm-%A_%a.out" if is_array else "slurm-%j.out"
    elif family == "PBS":
        stem, suffix = name.replace("%", "%%"), (".^array_index^" if is_array else "")
        output = output if output is not None else f"{stem}.o%A{suffix}"
        error = error if error is not None else f"{stem}.e%A{suffix}"  # -j oe/eo then picks the one file
    return output, error


_SUBMIT_DIR_NAMES = ("PBS_O_WORKDIR", "SLURM_SUBMIT_DIR", "LS_SUBCWD", "HYPER_SUBMIT_DIR")


def submission_notes(ctx: Context, d: Directives, script: str | None, command: list[str] | None) -> list[str]:
    """What qsub says once about a submission that is valid but may not do what its author expects."""
    from hyper.outputs import PER_ELEMENT_PATTERNS

    notes = []
    text = script or " ".join(command or [])
    if ctx.host.type != "local" and ((d.family in RUNS_IN_SUBMIT_DIR and d.chdir is None)
                                     or any(n in text for n in _SUBMIT_DIR_NAMES)):
        notes.append(f"on {ctx.host.type} host {ctx.host.name} a job runs in its worker's work directory, which "
                     "cannot see the submit directory; copy files in with -W stagein=FILE@HOST:PATH")
    if d.array is not None:
        for flag, path in (("-o", d.output), ("-e", None if d.join else d.error)):
            if path and not any(p in path for p in PER_ELEMENT_PATTERNS) and not path.endswith("/"):
                notes.append(f"every element of the array writes {flag} {path}, so each overwrites the last; add "
                             "^array_index^ (PBS), %a (Slurm) or %I (LSF) to the name")
    return notes


def submit(ctx: Context, d: Directives, *, script: str | None, command: list[str] | None, script_name: str,
           submit_env: dict[str, str], cwd: str, user: str, sweep: list[dict] | None = None,
           retry_on_exit: bool = False, now: float | None = None, workflow: dict | None = None) -> list[Job]:
    """Validate a submission and write it: one job, one array record, or one job per sweep line."""
    if (script is None) == (command is None):
        raise UsageError("give a job script or a command after --, not both", "e.g. qsub job.sh or qsub -- cmd")
    _check_input(ctx, d, script, script_name, command, sweep)
    if ctx.host.type == "local" and diskspace.is_full(ctx.host.data_dir):
        raise DiskFullError(f"the disk holding {ctx.host.data_dir} is full (less than "
                            f"{diskspace.reserve() // 1024} KiB free): no new jobs are accepted",
                            "free some space there; the jobs already stored are kept and run once there is room")
    queue, definition = _queue_and_definition(ctx, d)
    _check_resources(d, definition)
    retries, retry_on_exit = retry_policy(d, definition, retry_on_exit)
    name = d.name or checks.derived_name(Path(script_name).name if script_name else Path(command[0]).name
                                         if command else "STDIN")
    env = environment.plan_environment(ctx.host, d, submit_env).env
    local = ctx.host.type == "local"
    chdir = _working_dir(d, cwd, local)
    join = d.join if d.join != "n" else None
    output, error = d.output, d.error
    if local:
        output, error = default_output_files(d.family, name, d.array is not None, output, error)
    spec = JobSpec(command=command, script=script, script_name=script_name, env=env, submit_dir=cwd,
                   chdir=chdir, output=output, error=error, join=join,
                   walltime=d.walltime, retry_on_exit=retry_on_exit, vcpus=d.vcpus, memory_mib=d.memory_mib,
                   gpus=d.gpus, host=ctx.host.name, family=d.family, args=list(d.args))
    if workflow:  # split parts, finaliser, staging, notice: hyper/workflows/submit.py
        spec = dataclasses.replace(spec, **workflow)
    depends = _dependencies(d)
    depend_text = [f"{dep.kind}:{dep.ref.text}" for dep in d.depend]
    subs = []
    cases: list[dict | None] = list(sweep) if sweep else [None]  # no sweep: one job, the spec as given
    for values in cases:
        job_spec = spec if values is None else _swept(spec, values)
        job = Job(name=name, user=user, queue=queue.name, definition=definition.name,
                  priority=d.priority or 0, retries=retries, spec=job_spec,
                  array=d.array.text if d.array else None, depends=depend_text)
        subs.append(Submission(job, depends, hold=bool(d.hold)))
    return ctx.store.submit(subs, time.time() if now is None else now)


def _working_dir(d: Directives, cwd: str, local: bool) -> str | None:
    """The job's working directory (-d / --chdir / -cwd), absolute and checked; Slurm and LSF jobs on a local
    host run where they were submitted, as they do under Slurm and LSF."""
    chdir = d.chdir
    if chdir is None and local and d.family in RUNS_IN_SUBMIT_DIR:
        chdir = cwd
    if chdir and not os.path.isabs(chdir):
        chdir = os.path.normpath(os.path.join(cwd, chdir))
    if chdir:
        checks.check_chdir(chdir, local)
    return chdir


def _swept(spec: JobSpec, values: dict) -> JobSpec:
    """One sweep line's job: its values substituted into the script or command, and exported as HYPER_PARAM_*."""
    script, command = spec.script, spec.command
    return dataclasses.replace(
        spec, script=substitute(script, values, spec.script_name or "the script", runs_in_a_shell(script))
        if script else None,
        command=[substitute(a, values, "the command") for a in command] if command else None,
        env={**spec.env, **{f"HYPER_PARAM_{k}": str(v) for k, v in values.items()}})


def _check_input(ctx: Context, d: Directives, script: str | None, script_name: str, command: list[str] | None,
                 sweep: list[dict] | None) -> None:
    """Refuse what would crash, never run, or silently mean something else (hyper/services/submit_checks.py)."""
    if d.name is not None:
        checks.check_name(d.name)
    if d.retries is not None:
        checks.check_retries(d.retries)
    if script is not None:
        checks.check_script(script, script_name)
    for what, value in (("the queue name", d.queue), ("the definition name", d.definition)):
        checks.check_text(what, value)
    if d.array is not None:
        if sweep is not None:
            raise UsageError("-J and --sweep both make many jobs from one submission: give one of them",
                             "use -J for an index range, or --sweep FILE for one job per parameter line")
        checks.check_array_size(d.array.count, checks.max_array_size(ctx.host.extra), ctx.host.name)
    for dep in d.depend:
        if dep.ref.whole_array and dep.ref.indices is None:
            found, _ = ctx.store.get_jobs([JobRef(dep.ref.id)])
            if found and not found[0].is_array:
                raise UsageError(f"dependency {dep.kind}:{dep.ref.id}[] names an array, but job {dep.ref.id} is "
                                 "not an array", f"depend on the job itself: {dep.kind}:{dep.ref.id}")


def submit_and_wake(ctx: Context, merged: Directives, **kwargs: Any) -> list[Job]:
    """``submit``, then the local agent is woken unless every job waits (held, or for its dependencies): the
    one place a front-end's submission (qsub, sbatch, bsub) starts work."""
    jobs = submit(ctx, merged, **kwargs)
    wake_for(ctx, jobs)
    return jobs


def wake_for(ctx: Context, jobs: list[Job]) -> None:
    """Wake the agent if any of `jobs` can start now (held jobs wait for qrls or their dependencies)."""
    from hyper.services.agent import wake_agent
    from hyper.states import JobState

    if any(j.state is not JobState.HELD for j in jobs):
        wake_agent(ctx)
