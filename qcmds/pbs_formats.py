"""PBS Pro's own output shapes for the tools that parse them: `qstat -f -F json|dsv` and `qstat -a`.

hyper's `--output json` is a list of hyper records; PBS tools (Parsl's PBSProProvider, job dashboards) read
PBS Pro's document instead: ``{"timestamp", "pbs_version", "pbs_server", "Jobs": {"ID.server": {...}}}``
with PBS attribute names (`Job_Name`, `Job_Owner`, `job_state`, `queue`, `Resource_List`, `Exit_status`...).

Keys: PBS Pro names a job `ID.server`, and its qsub prints that same form, so a client finds the key it
was given. hyper's qsub prints the short id (`12`), and Parsl matches keys against what qsub printed
(`printed.startswith(key)`), so a job the caller named without a server suffix is keyed as named; jobs
listed without ids, or named with a suffix, get PBS Pro's `ID.server` key.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Iterable

from hyper.models import Definition, Job

if TYPE_CHECKING:
    from hyper.services.context import Context

PBS_VERSION = "hyper"


def _ctime(epoch: float | None) -> str | None:
    """PBS Pro's time attributes (ctime, qtime, stime, mtime): `Tue Dec  3 08:20:41 2026`, local time."""
    return None if epoch is None else time.strftime("%a %b %e %H:%M:%S %Y", time.localtime(epoch))


def _hms(seconds: float | None) -> str:
    total = max(0, int(seconds or 0))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def job_attributes(job: Job, server: str, definition: Definition | None, now: float) -> dict:
    """One job as PBS Pro's `qstat -f` names its attributes (only those that have a value)."""
    from hyper.states import pbs_letter

    spec = job.spec
    ncpus = (spec.vcpus if spec and spec.vcpus else None) or (definition.vcpus if definition else 1)
    mem = (spec.memory_mib if spec and spec.memory_mib else None) or (definition.memory_mib if definition else None)
    gpus = (spec.gpus if spec and spec.gpus is not None else None)
    if gpus is None and definition is not None:
        gpus = definition.gpus
    walltime = (spec.walltime if spec and spec.walltime else None) or (definition.timeout if definition else None)
    resources: dict = {"ncpus": ncpus, "nodect": 1, "place": "pack", "select": f"1:ncpus={ncpus}"}
    if mem:
        resources["mem"] = f"{mem}mb"
    if gpus:
        resources["ngpus"] = gpus
        resources["select"] += f":ngpus={gpus}"
    if walltime:
        resources["walltime"] = _hms(walltime)
    submit_host = (spec.env.get("PBS_O_HOST") if spec else None) or server
    attrs: dict = {
        "Job_Name": job.name,
        "Job_Owner": f"{job.user}@{submit_host}",
        "job_state": pbs_letter(job.state, is_array=job.is_array, started=job.array_started > 0),
        "queue": job.queue,
        "server": server,
        "ctime": _ctime(job.submitted),
        "qtime": _ctime(job.submitted),
        "stime": _ctime(job.started),
        "mtime": _ctime(job.ended or job.started or job.submitted),
        "Priority": job.priority,
        "Rerunable": "True" if job.retries else "False",
        "Resource_List": resources,
        "run_count": job.attempts,
        "comment": job.reason or None,
        "project": "_pbs_project_default",
    }
    if job.started is not None:
        end = job.ended if job.state.finished and job.ended else now
        attrs["resources_used"] = {"ncpus": ncpus, "walltime": _hms(end - job.started)}
    if spec is not None:
        attrs["Output_Path"] = f"{submit_host}:{spec.output}" if spec.output else None
        attrs["Error_Path"] = f"{submit_host}:{spec.error}" if spec.error else None
        attrs["Join_Path"] = spec.join or "n"
        attrs["Variable_List"] = dict(spec.env) or None
        attrs["jobdir"] = spec.chdir or spec.submit_dir or None
    if job.state.finished and job.exit_code is not None:
        attrs["Exit_status"] = job.exit_code
    if job.depends:
        attrs["depend"] = ",".join(job.depends)
    if job.is_array:
        attrs["array"] = "True"
        attrs["array_indices_submitted"] = job.array
        queued = job.array_total - job.array_done - job.array_running
        attrs["array_state_count"] = (f"Queued:{max(queued, 0)} Running:{job.array_running} Exiting:0 "
                                      f"Expired:{job.array_done} ")
    elif job.index is not None:
        attrs["array_id"] = f"{job.id}[].{server}"
        attrs["array_index"] = job.index
    return {k: v for k, v in attrs.items() if v is not None}


def job_key(job: Job, server: str, named: dict[str, str] | None) -> str:
    """`ID.server`, unless the caller named this job without a suffix (see the module docstring)."""
    if named is not None and job.job_id in named:
        return named[job.job_id]
    return f"{job.job_id}.{server}"


def named_forms(words: Iterable[str]) -> dict[str, str]:
    """Job id -> the form the caller typed, for each id typed without a server suffix (`12`, `12[]`)."""
    from hyper.parsing.jobids import parse_job_ids

    forms = {}
    for word in words:
        for part in word.replace(",", " ").split():
            if "." in part:
                continue
            for ref in parse_job_ids([part]):
                forms[ref.text] = ref.text
    return forms


def document(jobs: list[Job], server: str, definitions: dict[str, Definition],
             named: dict[str, str] | None = None, now: float | None = None) -> dict:
    """The whole `qstat -f -F json` document."""
    now = time.time() if now is None else now
    return {"timestamp": int(now), "pbs_version": PBS_VERSION, "pbs_server": server,
            "Jobs": {job_key(j, server, named): job_attributes(j, server, definitions.get(j.definition), now)
                     for j in jobs}}


def _flat(prefix: str, value: object) -> Iterable[tuple[str, object]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _flat(f"{prefix}.{key}" if prefix else key, inner)
    else:
        yield prefix, value


def _escape(text: str, delimiter: str) -> str:
    """PBS Pro escapes the delimiter (and newlines) inside values with a backslash."""
    return text.replace("\\", "\\\\").replace(delimiter, "\\" + delimiter).replace("\n", "\\n")


def dsv_lines(doc: dict, delimiter: str = "|") -> list[str]:
    """`qstat -f -F dsv`: one line per job, `Job Id: ID` then `attr=value` fields; nested ones dotted
    (`Resource_List.ncpus=1`, `Variable_List.PBS_O_HOME=/root`)."""
    lines = []
    for key, attrs in doc["Jobs"].items():
        fields = [f"Job Id: {_escape(key, delimiter)}"]
        for name, value in _flat("", attrs):
            if name.startswith("Variable_List."):
                continue
            fields.append(f"{name}={_escape(str(value), delimiter)}")
        if "Variable_List" in attrs:  # PBS Pro prints it as one attribute: NAME=value,NAME=value
            joined = ",".join(f"{k}={v}" for k, v in attrs["Variable_List"].items())
            fields.append(f"Variable_List={_escape(joined, delimiter)}")
        lines.append(delimiter.join(fields))
    return lines


ALTERNATE_HEADER = (
    "                                                            Req'd  Req'd   Elap\n"
    "Job ID          Username Queue    Jobname    SessID NDS TSK Memory Time  S Time\n"
    "--------------- -------- -------- ---------- ------ --- --- ------ ----- - -----\n")


def _hhmm(seconds: float | None) -> str:
    if not seconds:
        return "--"
    total = int(seconds) // 60
    return f"{total // 60:02d}:{total % 60:02d}"


def alternate_lines(jobs: list[Job], server: str, definitions: dict[str, Definition], now: float) -> str:
    """`qstat -a`: PBS Pro's alternative display (fixed columns, truncated as PBS truncates them)."""
    out = [f"\n{server}: \n", ALTERNATE_HEADER]
    for job in jobs:
        attrs = job_attributes(job, server, definitions.get(job.definition), now)
        resources = attrs["Resource_List"]
        elapsed = None
        if job.started is not None:
            elapsed = (job.ended if job.state.finished and job.ended else now) - job.started
        walltime = resources.get("walltime")
        req_time = walltime[:-3] if walltime else "--"
        out.append(f"{job.job_id[:15]:<15} {job.user[:8]:<8} {job.queue[:8]:<8} {job.name[:10]:<10} "
                   f"{str(job.pid or '--')[:6]:>6} {1:>3} {resources['ncpus']:>3} "
                   f"{str(resources.get('mem', '--'))[:6]:>6} {req_time[:5]:>5} {attrs['job_state']} "
                   f"{_hhmm(elapsed) if elapsed is not None else '--':>5}\n")
    return "".join(out)


def print_pbs(ctx: Context, jobs: list[Job], shape: str, job_ids: list[str] | None, delimiter: str = "|") -> None:
    """Write `jobs` in one of PBS Pro's shapes: "json", "dsv" (`qstat -f -F ...`) or "alternate" (`-a`)."""
    import json
    import sys

    from hyper.errors import UsageError

    if shape == "dsv" and (len(delimiter) != 1 or delimiter in "=\\\n"):
        raise UsageError(f"-D {delimiter!r} is not a usable delimiter", "give one character, e.g. -D ','")
    server = ctx.host.name
    definitions = {d.name: d for d in ctx.store.list_resources("definition") if isinstance(d, Definition)}
    now = time.time()
    if shape == "alternate":
        sys.stdout.write(alternate_lines(jobs, server, definitions, now) if jobs else "")
        return
    doc = document(jobs, server, definitions, named_forms(job_ids or []), now)
    if shape == "json":
        json.dump(doc, sys.stdout, indent=4)
        sys.stdout.write("\n")
    else:
        sys.stdout.write("".join(line + "\n" for line in dsv_lines(doc, delimiter)))
