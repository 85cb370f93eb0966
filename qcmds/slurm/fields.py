"""The fields squeue (`-o "%.18i %.2t"`) and sacct (`--format=JobID,State%20`) can print, and the format
strings that pick them. One table per command, each field a header and a function of the job."""

from __future__ import annotations

import os
import re
import time
from typing import Callable

from hyper.errors import UsageError
from hyper.models import Job
from qcmds.frontend import fixed
from qcmds.slurm import common

Field = tuple[str, Callable[[Job, float], object]]


def _cpus(job: Job, _: float) -> object:
    return (job.spec.vcpus if job.spec and job.spec.vcpus else None) or 1


def _workdir(job: Job, _: float) -> object:
    return (job.spec.chdir or job.spec.submit_dir) if job.spec else ""


def _limit(job: Job) -> int | None:
    return job.spec.walltime if job.spec and job.spec.walltime else None


def _time_limit(job: Job) -> str:
    limit = _limit(job)
    return common.squeue_time(limit) if limit else "UNLIMITED"


SQUEUE: dict[str, Field] = {
    "i": ("JOBID", lambda j, now: common.job_id(j)),
    "A": ("JOBID", lambda j, now: j.id),
    "F": ("ARRAY_JOB_ID", lambda j, now: j.id),
    "K": ("ARRAY_TASK_ID", lambda j, now: j.index if j.index is not None else (j.array or "N/A")),
    "j": ("NAME", lambda j, now: j.name),
    "T": ("STATE", lambda j, now: common.state(j)[0]),
    "t": ("ST", lambda j, now: common.state(j)[1]),
    "u": ("USER", lambda j, now: j.user),
    "P": ("PARTITION", lambda j, now: j.queue),
    "q": ("QOS", lambda j, now: "normal"),
    "a": ("ACCOUNT", lambda j, now: "(null)"),
    "M": ("TIME", lambda j, now: common.squeue_time(common.elapsed_seconds(j, now))),
    "l": ("TIME_LIMIT", lambda j, now: _time_limit(j)),
    "D": ("NODES", lambda j, now: 1),
    "C": ("CPUS", _cpus),
    "R": ("NODELIST(REASON)", lambda j, now: common.reason(j) if j.state.value == "RUNNING"
          else f"({common.reason(j)})"),
    "r": ("REASON", lambda j, now: common.reason(j) if j.state.value != "RUNNING" else "None"),
    "N": ("NODELIST", lambda j, now: "localhost" if j.state.value == "RUNNING" else ""),
    "Z": ("WORK_DIR", _workdir),
    "V": ("SUBMIT_TIME", lambda j, now: common.timestamp(j.submitted)),
    "S": ("START_TIME", lambda j, now: common.timestamp(j.started) if j.started else "N/A"),
    "p": ("PRIORITY", lambda j, now: j.priority),
}
SQUEUE_DEFAULT = "%.18i %.9P %.8j %.8u %.2t %.10M %.6D %R"
_SQUEUE_SPEC = re.compile(r"%(\.?)(\d*)([A-Za-z])")


def squeue_format(fmt: str) -> list[tuple[str, str | None, bool, int | None]]:
    """`%.18i %t` -> pieces (literal text, field letter or None, right-justified, width)."""
    pieces: list[tuple[str, str | None, bool, int | None]] = []
    pos = 0
    for m in _SQUEUE_SPEC.finditer(fmt):
        if m.start() > pos:
            pieces.append((fmt[pos:m.start()], None, False, None))
        letter = m.group(3)
        if letter not in SQUEUE:
            raise UsageError(f"squeue format field %{letter} is not supported",
                             f"use %{' %'.join(SQUEUE)}")
        pieces.append(("", letter, bool(m.group(1)), int(m.group(2)) if m.group(2) else None))
        pos = m.end()
    if pos < len(fmt):
        pieces.append((fmt[pos:], None, False, None))
    return pieces


def squeue_lines(jobs: list[Job], fmt: str, header: bool, now: float | None = None) -> list[str]:
    now = time.time() if now is None else now
    pieces = squeue_format(fmt)

    def line(value_of: Callable[[str], object]) -> str:
        return "".join(text if letter is None else fixed(value_of(letter), width, right)
                       for text, letter, right, width in pieces).rstrip()

    def row(job: Job) -> str:
        return line(lambda letter: SQUEUE[letter][1](job, now))

    out = [line(lambda letter: SQUEUE[letter][0])] if header else []
    out.extend(row(job) for job in jobs)
    return out


def _state_long(job: Job, _: float) -> str:
    return common.state(job)[0]


SACCT: dict[str, tuple[str, int, Callable[[Job, float], object]]] = {
    "jobid": ("JobID", 12, lambda j, now: common.job_id(j)),
    "jobidraw": ("JobIDRaw", 12, lambda j, now: j.id if j.index is None else f"{j.id}_{j.index}"),
    "jobname": ("JobName", 10, lambda j, now: j.name),
    "partition": ("Partition", 10, lambda j, now: j.queue),
    "account": ("Account", 10, lambda j, now: ""),
    "alloccpus": ("AllocCPUS", 10, _cpus),
    "ncpus": ("NCPUS", 10, _cpus),
    "reqcpus": ("ReqCPUS", 8, _cpus),
    "nnodes": ("NNodes", 8, lambda j, now: 1),
    "nodelist": ("NodeList", 15, lambda j, now: "localhost" if j.started else "None assigned"),
    "state": ("State", 10, _state_long),
    "exitcode": ("ExitCode", 8, lambda j, now: common.exit_code(j)),
    "derivedexitcode": ("DerivedExitCode", 15, lambda j, now: common.exit_code(j)),
    "elapsed": ("Elapsed", 10, lambda j, now: common.sacct_time(common.elapsed_seconds(j, now))),
    "elapsedraw": ("ElapsedRaw", 10, lambda j, now: common.elapsed_seconds(j, now)),
    "timelimit": ("Timelimit", 10, lambda j, now: common.sacct_time(_limit(j))),
    "submit": ("Submit", 19, lambda j, now: common.timestamp(j.submitted)),
    "start": ("Start", 19, lambda j, now: common.timestamp(j.started)),
    "end": ("End", 19, lambda j, now: common.timestamp(j.ended if j.state.finished else None)),
    "user": ("User", 9, lambda j, now: j.user),
    "uid": ("UID", 8, lambda j, now: os.getuid()),
    "workdir": ("WorkDir", 20, _workdir),
    "priority": ("Priority", 10, lambda j, now: j.priority),
    "reason": ("Reason", 10, lambda j, now: common.reason(j)),
    "comment": ("Comment", 10, lambda j, now: j.reason),
}
LEFT = frozenset({"jobid", "jobidraw"})  # sacct left-justifies ids, right-justifies the rest
SACCT_DEFAULT = "JobID,JobName,Partition,Account,AllocCPUS,State,ExitCode"


def sacct_format(fmt: str) -> list[tuple[str, int]]:
    """`jobid,state%20` -> [("jobid", 12), ("state", 20)]."""
    fields = []
    for item in filter(None, (x.strip() for x in fmt.split(","))):
        name, _, width = item.partition("%")
        key = name.lower()
        if key not in SACCT:
            raise UsageError(f"sacct field {name!r} is not supported", f"use {', '.join(v[0] for v in SACCT.values())}")
        if width and not (width.isascii() and width.isdigit()):
            raise UsageError(f"sacct field width {item!r} is not a number", "write e.g. State%20")
        fields.append((key, int(width) if width else SACCT[key][1]))
    if not fields:
        raise UsageError("--format names no field", f"e.g. --format={SACCT_DEFAULT}")
    return fields


def sacct_lines(jobs: list[Job], fmt: str, header: bool, delimiter: str | None, trailing: bool,
                now: float | None = None) -> list[str]:
    """Fixed columns (right-justified, a `+` marks a cut value) or, with a delimiter, parsable output."""
    now = time.time() if now is None else now
    fields = sacct_format(fmt)

    def cell(text: str, width: int, key: str) -> str:
        if len(text) > width:
            return text[:width - 1] + "+"
        return text.ljust(width) if key in LEFT else text.rjust(width)

    def line(values: list[str]) -> str:
        if delimiter is not None:
            return delimiter.join(values) + (delimiter if trailing else "")
        return " ".join(cell(v, w, k) for v, (k, w) in zip(values, fields)) + " "

    out = []
    if header:
        out.append(line([SACCT[k][0] for k, _ in fields]))
        if delimiter is None:
            out.append(" ".join("-" * w for _, w in fields) + " ")
    for job in jobs:
        out.append(line(["" if (v := SACCT[k][2](job, now)) is None else str(v) for k, _ in fields]))
    return out
