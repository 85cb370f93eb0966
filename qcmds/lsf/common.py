"""LSF's names for hyper's jobs: states (PEND RUN DONE EXIT PSUSP), the fields `bjobs -o` prints, and the
messages LSF users and tools know (`Job <12> is submitted to queue <normal>.`)."""

from __future__ import annotations

import os
import time
from typing import Callable

from hyper.errors import UsageError
from hyper.models import Job
from hyper.states import JobState
from qcmds.frontend import fixed


def stat(job: Job) -> str:
    """LSF's STAT: a user hold is PSUSP, waiting (dependencies too) PEND, a killed job EXIT as in LSF."""
    if job.state is JobState.HELD:
        return "PSUSP" if job.reason.startswith("held by user") else "PEND"
    return {JobState.QUEUED: "PEND", JobState.RUNNING: "RUN", JobState.SUCCEEDED: "DONE",
            JobState.FAILED: "EXIT", JobState.DELETED: "EXIT"}[job.state]


def _time(epoch: float | None) -> str:
    """bjobs' times: `Dec  3 08:30`; `-` when it has not happened."""
    return "-" if epoch is None else time.strftime("%b %e %H:%M", time.localtime(epoch))


def _run_time(job: Job) -> str:
    if job.started is None:
        return "0 second(s)"
    end = job.ended if job.state.finished and job.ended else time.time()
    return f"{max(0, int(end - job.started))} second(s)"


def _exit_code(job: Job) -> str:
    if job.state is JobState.SUCCEEDED or job.exit_code is None:
        return "-"
    return str(job.exit_code - 128 if job.exit_code >= 256 else job.exit_code)  # a signal n: 128 + n


def _exec_host(job: Job) -> str:
    return "localhost" if job.started is not None else "-"


FIELDS: dict[str, tuple[str, Callable[[Job], object]]] = {
    "jobid": ("JOBID", lambda j: j.id),
    "jobindex": ("JOBINDEX", lambda j: j.index if j.index is not None else 0),
    "stat": ("STAT", stat),
    "user": ("USER", lambda j: j.user),
    "queue": ("QUEUE", lambda j: j.queue),
    "job_name": ("JOB_NAME", lambda j: j.name if j.index is None else f"{j.name}[{j.index}]"),
    "name": ("JOB_NAME", lambda j: j.name if j.index is None else f"{j.name}[{j.index}]"),
    "from_host": ("FROM_HOST", lambda j: (j.spec.env.get("PBS_O_HOST") if j.spec else None) or os.uname().nodename),
    "exec_host": ("EXEC_HOST", _exec_host),
    "submit_time": ("SUBMIT_TIME", lambda j: _time(j.submitted)),
    "start_time": ("START_TIME", lambda j: _time(j.started)),
    "finish_time": ("FINISH_TIME", lambda j: _time(j.ended if j.state.finished else None)),
    "exit_code": ("EXIT_CODE", _exit_code),
    "run_time": ("RUN_TIME", _run_time),
    "nalloc_slot": ("NALLOC_SLOT", lambda j: (j.spec.vcpus if j.spec and j.spec.vcpus else 1)),
    "slots": ("SLOTS", lambda j: (j.spec.vcpus if j.spec and j.spec.vcpus else 1)),
    "exit_reason": ("EXIT_REASON", lambda j: j.reason or "-"),
    "pend_reason": ("PEND_REASON", lambda j: j.reason if j.state in (JobState.QUEUED, JobState.HELD) else "-"),
    "priority": ("PRIORITY", lambda j: j.priority),
}
DEFAULT: list[tuple[str, int | None]] = [("jobid", 7), ("user", 7), ("stat", 5), ("queue", 10), ("from_host", 11),
                                         ("exec_host", 11), ("job_name", 10), ("submit_time", 12)]


def parse_fields(spec: str) -> tuple[list[tuple[str, int | None]], str | None]:
    """`-o "jobid stat:6 queue delimiter=','"` -> ([(jobid, None), (stat, 6), (queue, None)], ",")."""
    fields, delimiter = [], None
    for word in spec.replace(",", " ").split() if "delimiter=" not in spec else _words(spec):
        if word.startswith("delimiter="):
            delimiter = word.partition("=")[2].strip("'\"") or " "
            continue
        name, _, width = word.partition(":")
        key = name.lower()
        if key not in FIELDS:
            raise UsageError(f"bjobs field {name!r} is not supported", f"use {', '.join(FIELDS)}")
        width = width.split(":")[0].rstrip("-")
        if width and not (width.isascii() and width.isdigit()):
            raise UsageError(f"bjobs field width {word!r} is not a number", "write e.g. stat:6")
        fields.append((key, int(width) if width else None))
    if not fields:
        raise UsageError("-o names no field", "e.g. -o 'jobid stat queue'")
    return fields, delimiter


def _words(spec: str) -> list[str]:
    import shlex

    return shlex.split(spec)


def lines(jobs: list[Job], fields: list[tuple[str, int | None]], delimiter: str | None, header: bool) -> list[str]:
    """bjobs' columns: padded to their widths (LSF's default widths when -o gives none), or delimited."""
    def line(values: list[object]) -> str:
        if delimiter is not None:
            return delimiter.join(str(v) for v in values)
        return " ".join(fixed(v, w, False) for v, (_, w) in zip(values, fields)).rstrip()

    out = [line([FIELDS[k][0] for k, _ in fields])] if header else []
    out.extend(line([FIELDS[k][1](job) for k, _ in fields]) for job in jobs)
    return out
