"""Job use cases behind qsub, qstat, qdel, qlog, qhold and qrls.

Each function validates, calls the store once (or a few times for reads), and returns records; the
CLI renders them. Everything a user can get wrong raises HyperError before anything is written.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from pathlib import Path
from typing import Iterator

from hyper import diskspace
from hyper.backends import cluster_type
from hyper.errors import DiskFullError, HyperError, UnknownJobError, UsageError
from hyper.models import Cluster, Definition, Job, JobSpec, Queue
from hyper.parsing.directives import Directives
from hyper.parsing.durations import format_duration
from hyper.parsing.jobids import JobRef
from hyper.services import environment, owners
from hyper.services import submit_checks as checks
from hyper.services.context import DEFAULT_DEFINITION, DEFAULT_QUEUE, Context, host_size
from hyper.states import JobState, shell_exit_code
from hyper.store.base import DeleteResult, JobFilter, Submission


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
        definition = ctx.store.get_resource("definition", DEFAULT_DEFINITION)
        if not isinstance(definition, Definition) or _shortfall(d, definition):
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
    out = []
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
    from hyper.worker.runner import PER_ELEMENT_PATTERNS

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
    chdir = d.chdir
    if chdir is None and local and d.family in RUNS_IN_SUBMIT_DIR:
        chdir = cwd
    if chdir and not os.path.isabs(chdir):
        chdir = os.path.normpath(os.path.join(cwd, chdir))
    if chdir:
        checks.check_chdir(chdir, local)
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
    depend_text = [f"{dep.kind}:{_ref_text(dep.ref)}" for dep in d.depend]
    subs = []
    for values in sweep or [None]:
        job_spec = spec
        if values is not None:
            job_spec = dataclasses.replace(
                spec, script=substitute(script, values, script_name or "the script", runs_in_a_shell(script))
                if script else None,
                command=[substitute(a, values, "the command") for a in command] if command else None,
                env={**spec.env, **{f"HYPER_PARAM_{k}": str(v) for k, v in values.items()}})
        job = Job(name=name, user=user, queue=queue.name, definition=definition.name,
                  priority=d.priority or 0, retries=retries, spec=job_spec,
                  array=d.array.text if d.array else None, depends=depend_text)
        subs.append(Submission(job, depends, hold=bool(d.hold)))
    return ctx.store.submit(subs, time.time() if now is None else now)


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


def _ref_text(ref: JobRef) -> str:
    if ref.indices is not None:
        return f"{ref.id}[{ref.indices.text}]"
    return f"{ref.id}[]" if ref.whole_array else str(ref.id)


_STATE_WORDS = {
    "Q": {JobState.QUEUED}, "R": {JobState.RUNNING}, "H": {JobState.HELD}, "X": {JobState.DELETED},
    "F": {JobState.SUCCEEDED, JobState.FAILED, JobState.DELETED}, "B": {JobState.QUEUED, JobState.RUNNING},
    "PD": {JobState.QUEUED, JobState.HELD}, "PENDING": {JobState.QUEUED, JobState.HELD}, "CD": {JobState.SUCCEEDED},
    "COMPLETED": {JobState.SUCCEEDED}, "CA": {JobState.DELETED}, "CANCELLED": {JobState.DELETED},
    "FINISHED": {JobState.SUCCEEDED, JobState.FAILED, JobState.DELETED}, "ACTIVE": {JobState.QUEUED,
                                                                                   JobState.RUNNING, JobState.HELD},
    **{s.value: {s} for s in JobState},
}


def parse_states(text: str) -> set[JobState]:
    """`Q,R`, `queued,held`, Slurm's `PD`/`CD`: the states `--state` and the seed's `--filter-status` select."""
    out: set[JobState] = set()
    for word in filter(None, (w.strip().upper() for w in text.replace(" ", ",").split(","))):
        if word not in _STATE_WORDS:
            raise UsageError(f"state {word!r} is not known",
                             "use PBS letters Q R H F X, or queued, running, held, succeeded, failed, deleted")
        out |= _STATE_WORDS[word]
    if not out:
        raise UsageError(f"--state {text!r} names no state", "e.g. --state Q,R")
    return out


def _matches(job: Job, user: str | None, states: set[JobState] | None, queue: str | None,
             name: str | None) -> bool:
    return ((user is None or job.user == user) and (states is None or job.state in states)
            and (queue is None or job.queue == queue) and (name is None or job.name == name))


def select_jobs(ctx: Context, refs: list[JobRef], *, user: str | None = None, states: set[JobState] | None = None,
                queue: str | None = None, name: str | None = None) -> list[JobRef]:
    """What `qdel -u USER --state Q -q QUEUE -j NAME [IDS]` means: the named jobs (every active job when none
    are named) that match every selector. Ids that name no job stay, so they are reported as unknown."""
    if queue is not None:
        check_queue(ctx, queue)
    if not refs:
        jobs = ctx.store.list_jobs(JobFilter(queue=queue, user=user, with_spec=False))
        return [_whole_ref(j) for j in jobs if _matches(j, user, states, queue, name)]
    found, _ = ctx.store.get_jobs(refs)
    known = {j.id for j in found}
    keep = [_whole_ref(j) for j in found if _matches(j, user, states, queue, name)]
    return keep + [r for r in refs if r.id not in known]  # so qdel reports them as unknown, in the store's words


def _whole_ref(job: Job) -> JobRef:
    if job.index is not None:
        from hyper.parsing.arrays import parse_array

        return JobRef(job.id, parse_array(str(job.index)), False)
    return JobRef(job.id, None, job.is_array)


def check_queue(ctx: Context, name: str) -> None:
    """An unknown queue is an error (a typo must not look like an empty queue)."""
    if ctx.store.get_resource("queue", name) is None:
        names = ", ".join(q.name for q in ctx.store.list_resources("queue")) or "none"
        raise HyperError(f"unknown queue {name!r}", f"queues on host {ctx.host.name}: {names}")


def delete_summary(results: list[DeleteResult]) -> str:
    """One line for many deletions: `deleted 10,000 jobs; 12 had finished; 3 unknown ids`."""
    done = sum(1 for r in results if r.ok)
    finished = sum(1 for r in results if not r.ok and "has already finished" in r.message)
    unknown = sum(1 for r in results if not r.ok and r.message.startswith("unknown job id"))
    other = [r for r in results if not r.ok and "has already finished" not in r.message
             and not r.message.startswith("unknown job id")]
    parts = [f"deleted {done:,} job{'s' if done != 1 else ''}"]
    if finished:
        parts.append(f"{finished:,} had finished")
    if unknown:
        parts.append(f"{unknown:,} unknown id{'s' if unknown != 1 else ''}")
    if other:
        parts.append(f"{len(other):,} refused (first: {other[0].message})")
    return "; ".join(parts)


def get_jobs(ctx: Context, refs: list[JobRef]) -> tuple[list[Job], list[str]]:
    return ctx.store.get_jobs(refs)


def list_jobs(ctx: Context, flt: JobFilter, *, states: set[JobState] | None = None, name: str | None = None,
              since: float | None = None) -> list[Job]:
    """Jobs as qstat lists them: filtered by state and name, finished ones only if they ended after ``since``.

    With ``flt.elements`` (qstat -t) an active array lists every element, those not started yet included
    (as PBS does), as QUEUED (HELD while the array is held).
    """
    if flt.queue is not None:
        check_queue(ctx, flt.queue)
    out: list[Job] = []
    group: list[Job] = []

    def flush() -> None:
        if not group:
            return
        parent = group[0]
        if since is not None and parent.state.finished and (parent.ended or 0) < since:
            group.clear()
            return
        elements = group[1:]
        if flt.elements and parent.is_array:
            elements += _unlisted_elements(ctx, parent, group[1:], flt.include_finished)
        members = [parent, *sorted(elements, key=lambda j: j.index)]
        out.extend(j for j in members if (states is None or j.state in states) and (name is None or j.name == name))
        group.clear()

    for job in ctx.store.list_jobs(flt):
        if job.index is None:
            flush()
        group.append(job)
    flush()
    return out


def _unlisted_elements(ctx: Context, parent: Job, listed: list[Job], include_finished: bool) -> list[Job]:
    """The elements of an active array the store did not list: not started yet (the store keeps them as one
    record), shown QUEUED, or HELD while the array is held. When some elements have finished and only active
    ones were listed, the rest are looked up, so a finished or deleted element is never shown as queued."""
    if parent.state.finished or parent.array is None:
        return []
    from hyper.parsing.arrays import parse_array

    seen = {j.index for j in listed}
    unseen = [i for i in parse_array(parent.array) if i not in seen]
    if not unseen:
        return []
    if not include_finished and (parent.array_done or parent.array_deleted):
        found, _ = ctx.store.get_jobs([JobRef(parent.id, parse_array(_ranges_text(unseen)), False)])
        return [j for j in found if not j.state.finished]
    state = JobState.HELD if parent.state is JobState.HELD else JobState.QUEUED
    return [Job(id=parent.id, index=i, name=parent.name, user=parent.user, queue=parent.queue,
                definition=parent.definition, state=state, priority=parent.priority, submitted=parent.submitted,
                retries=parent.retries, spec=parent.spec, array=parent.array) for i in unseen]


def _ranges_text(indices: list[int]) -> str:
    """[1, 2, 3, 7] -> "1-3,7": an array range the parser reads back."""
    parts, start = [], None
    for i, index in enumerate(indices):
        if start is None:
            start = index
        if i + 1 == len(indices) or indices[i + 1] != index + 1:
            parts.append(str(start) if start == index else f"{start}-{index}")
            start = None
    return ",".join(parts)


def delete_jobs(ctx: Context, refs: list[JobRef]) -> list[DeleteResult]:
    """qdel: the caller's own jobs (an admin's: anyone's); the others' come back refused, untouched."""
    allowed, refused = owners.split_owned(ctx, refs, "delete")
    return refused + (ctx.store.delete(allowed, time.time()) if allowed else [])


def hold_jobs(ctx: Context, refs: list[JobRef], hold: bool) -> list[DeleteResult]:
    allowed, refused = owners.split_owned(ctx, refs, "hold" if hold else "release")
    return refused + (ctx.store.set_hold(allowed, hold, time.time()) if allowed else [])


def _log_job(ctx: Context, ref: JobRef, stderr: bool) -> Job:
    jobs, missing = ctx.store.get_jobs([ref])
    if missing or not jobs:
        raise UnknownJobError(missing[0] if missing else str(ref.id))
    job = jobs[0]
    owners.check_owner(ctx, job.user, job.job_id, "read the output of")
    if job.is_array:
        raise UsageError(f"job {job.job_id} is an array; logs belong to its elements",
                         f"name one element, e.g. qlog {job.id}[{job.array.split('-')[0].split(',')[0]}]")
    if stderr and job.spec is not None and job.spec.join in ("oe", "eo"):
        raise UsageError(f"job {job.job_id} joined stderr into stdout (-j {job.spec.join})",
                         "read it with qlog without -e")
    return job


def log_path(ctx: Context, ref: JobRef, stderr: bool = False) -> tuple[Job, Path]:
    """The file holding a job's stdout (or stderr) on a local host; arrays need an element (123[4])."""
    from hyper.worker.runner import output_paths  # the worker's module: only for log paths (q-command start-up)

    job = _log_job(ctx, ref, stderr)
    out, err = output_paths(job, ctx.logs_dir)
    if stderr:
        if err is None:
            raise UsageError(f"job {job.job_id} joined stderr into stdout (-j {job.spec.join})",
                             "read it with qlog without -e")
        return job, err
    return job, out


def output_files(ctx: Context, job: Job) -> dict[str, str]:
    """Where a job's stdout and stderr files are on a local host (qstat -f); an array shows its elements' pattern."""
    if ctx.host.type != "local" or job.spec is None:
        return {}
    if job.is_array:
        return {"output_path": job.spec.output or f"{ctx.logs_dir}/{job.id}.INDEX.out",
                "error_path": "(joined into output)" if job.spec.join else
                job.spec.error or f"{ctx.logs_dir}/{job.id}.INDEX.err"}
    from hyper.worker.runner import output_paths

    out, err = output_paths(job, ctx.logs_dir)
    return {"output_path": str(out), "error_path": str(err) if err else "(joined into output)"}


def log_location(ctx: Context, job: Job, stderr: bool = False, attempt: int | None = None) -> tuple[str, str] | None:
    """(log group, stream) of a job attempt's output on an aws host (None elsewhere or before it started)."""
    if ctx.host.type != "aws" or job.is_array or not (attempt or job.attempts):
        return None
    from hyper.aws import logs

    which = "stderr" if stderr else "stdout"
    return logs.group_name(ctx.host), logs.stream_name(job.id, job.index, attempt or job.attempts, which)


def tail_lines(path, n: int) -> bytes:
    """The last n lines of a file without reading all of it."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        pos = fh.tell()
        data = b""
        while pos > 0 and data.count(b"\n") <= n:
            step = min(65536, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
        lines = data.splitlines(keepends=True)
        return b"".join(lines[-n:]) if n else b""


def read_log(ctx: Context, ref: JobRef, stderr: bool = False, tail: int | None = None, follow: bool = False,
             attempt: int | None = None, poll: float = 0.25) -> Iterator[bytes]:
    """A job's stdout (or stderr) as chunks of bytes; ``follow`` keeps going until the job ends.

    Local host: the job's output file. aws host: the attempt's CloudWatch Logs stream (hyper/aws/logs.py),
    the latest attempt unless ``attempt`` names one; following switches to a rerun's stream when the job
    is requeued and started again.
    """
    if ctx.host.type == "aws":
        yield from _read_cloud_log(ctx, ref, stderr, tail, follow, attempt, max(poll, 1.0))
        return
    if attempt is not None:
        raise UsageError("--attempt applies to aws hosts only", "a local host keeps the latest attempt's output")
    job, path = log_path(ctx, ref, stderr)
    if not path.exists() and not follow:
        if job.started is None:
            raise HyperError(f"job {job.job_id} has not started yet, so it has no output",
                             f"follow it with qlog -f {job.job_id}")
        raise HyperError(f"the output file {path} of job {job.job_id} is missing",
                         "it was moved or deleted after the job ran")
    offset = 0
    if path.exists():
        if tail is not None:
            yield tail_lines(path, tail)
            offset = path.stat().st_size
        else:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    yield chunk
            offset = path.stat().st_size
    if not follow:
        return
    while True:
        jobs, _ = ctx.store.get_jobs([ref])
        done = not jobs or jobs[0].state.finished
        if path.exists() and path.stat().st_size > offset:
            with open(path, "rb") as fh:
                fh.seek(offset)
                chunk = fh.read()
                offset += len(chunk)
                yield chunk
        if done:
            break
        time.sleep(poll)


def _read_cloud_log(ctx: Context, ref: JobRef, stderr: bool, tail: int | None, follow: bool,
                    attempt: int | None, poll: float) -> Iterator[bytes]:
    from hyper.aws import logs

    job = _log_job(ctx, ref, stderr)
    which = "stderr" if stderr else "stdout"
    if attempt is not None and not 1 <= attempt <= max(job.attempts, 0):
        raise UsageError(f"job {job.job_id} has no attempt {attempt}",
                         f"it has run {job.attempts} time(s)" if job.attempts else "it has not started yet")
    current = attempt or job.attempts
    if not current:
        if not follow:
            raise HyperError(f"job {job.job_id} has not started yet, so it has no output",
                             f"follow it with qlog -f {job.job_id}")
        while not current:  # wait for the first attempt (or for the job to end without one: deleted)
            if job.state.finished:
                return
            time.sleep(poll)
            job = _log_job(ctx, ref, stderr)
            current = job.attempts
    reader = logs.StreamReader(ctx.host, logs.stream_name(job.id, job.index, current, which))
    if tail is not None:
        yield reader.tail(tail)
    else:
        yield from reader.pages()
    if not follow or attempt is not None:
        return
    while not job.state.finished:
        time.sleep(poll)
        job = _log_job(ctx, ref, stderr)
        yield from reader.pages()
        if job.attempts > current and job.started is not None:  # requeued and running again: its new stream
            current = job.attempts
            reader = logs.StreamReader(ctx.host, logs.stream_name(job.id, job.index, current, which))
            yield from reader.pages()
    if job.ended is not None and time.time() - job.ended < 5:
        time.sleep(min(poll, 1.0))  # CloudWatch shows new events within about a second
        yield from reader.pages()


def wait_for(ctx: Context, jobs: list[Job], poll: float = 0.1) -> int:
    """Block until every job ends; the exit code is the first non-zero one (PBS qsub -W block=true)."""
    refs = [JobRef(j.id, None, j.is_array) for j in jobs]
    while True:
        current, _ = ctx.store.get_jobs(refs)
        if all(j.state.finished for j in current):
            break
        time.sleep(poll)
        poll = min(poll * 1.5, 1.0)
    code = 0
    for job in current:
        if job.is_array:
            elements, _ = ctx.store.get_jobs([JobRef(job.id, _array_spec(job), False)])
            codes = [e.exit_code for e in elements if e.exit_code]
            if codes:
                return min(shell_exit_code(codes[0]), 255)
            if job.state.value != "SUCCEEDED":
                return 1
            continue
        if job.exit_code:
            return min(shell_exit_code(job.exit_code), 255)
        if job.state.value != "SUCCEEDED":
            code = code or 1
    return code


def _array_spec(job: Job):
    from hyper.parsing.arrays import parse_array

    return parse_array(job.array)
