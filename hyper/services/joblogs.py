"""A job's output: where its files are (local host) or its CloudWatch streams (aws host), read or followed.

Behind qlog, bpeek and qstat -f's output paths; the paths come from hyper/outputs.py, the same rule the worker
writes by.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from hyper.errors import HyperError, UnknownJobError, UsageError
from hyper.models import Job
from hyper.parsing.jobids import JobRef
from hyper.services import owners
from hyper.services.context import Context
from hyper.outputs import output_paths

if TYPE_CHECKING:
    from hyper.aws.log_reading import StreamReader
    from hyper.aws.logs import LogWindow


def _log_job(ctx: Context, ref: JobRef, stderr: bool) -> Job:
    jobs, missing = ctx.store.get_jobs([ref])
    if missing or not jobs:
        raise UnknownJobError(missing[0] if missing else str(ref.id))
    job = jobs[0]
    owners.check_owner(ctx, job.user, job.job_id, "read the output of")
    if job.is_array and job.array is not None:  # is_array says so; mypy needs the test
        raise UsageError(f"job {job.job_id} is an array; logs belong to its elements",
                         f"name one element, e.g. qlog {job.id}[{job.array.split('-')[0].split(',')[0]}]")
    if stderr and job.spec is not None and job.spec.join in ("oe", "eo"):
        raise UsageError(f"job {job.job_id} joined stderr into stdout (-j {job.spec.join})",
                         "read it with qlog without -e")
    return job


def log_path(ctx: Context, ref: JobRef, stderr: bool = False) -> tuple[Job, Path]:
    """The file holding a job's stdout (or stderr) on a local host; arrays need an element (123[4])."""
    job = _log_job(ctx, ref, stderr)
    out, err = output_paths(job, ctx.logs_dir)
    if stderr:
        if err is None:
            raise UsageError(f"job {job.job_id} joined stderr into stdout (-j {job.require_spec().join})",
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
    out, err = output_paths(job, ctx.logs_dir)
    return {"output_path": str(out), "error_path": str(err) if err else "(joined into output)"}


def log_location(ctx: Context, job: Job, stderr: bool = False,
                 attempt: int | None = None) -> tuple[str, str, str | None] | None:
    """(log group, stream, window) of a job attempt's output on an aws host (None elsewhere or before it
    started): the worker's shared stream and the attempt's time window in it as "<first ms>..<last ms>"
    ("<first ms>.." while it runs), or the attempt's own stream and None for records from older workers."""
    if ctx.host.type != "aws" or job.is_array or not (attempt or job.attempts):
        return None
    from hyper.aws import logs

    stream, window = _cloud_stream(job, attempt or job.attempts, "stderr" if stderr else "stdout")
    span = None if window is None else f"{window.start}..{'' if window.end is None else window.end}"
    return logs.group_name(ctx.host), stream, span


def _cloud_stream(job: Job, attempt: int, which: str) -> tuple[str, LogWindow | None]:
    """(stream name, LogWindow or None) of one attempt's output."""
    from hyper.aws import logs

    window = logs.LogWindow.parse(job.logs.get(str(attempt), ""))
    if window is None:
        return logs.stream_name(job.id, job.index, attempt, which), None
    return window.stream(which), window


def tail_lines(path: str | os.PathLike[str], n: int) -> bytes:
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
    from hyper.aws.log_reading import StreamReader

    def reader_for(job: Job, number: int) -> StreamReader:
        stream, window = _cloud_stream(job, number, which)
        return StreamReader(ctx.host, stream, window)

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
    reader = reader_for(job, current)
    if tail is not None:
        yield reader.tail(tail)
    else:
        yield from reader.pages()
    if not follow or attempt is not None:
        return
    while not job.state.finished:
        time.sleep(poll)
        job = _log_job(ctx, ref, stderr)
        reader = _refresh(reader, job, current, which)
        yield from reader.pages()
        if job.attempts > current and job.started is not None:  # requeued and running again: its new stream
            current = job.attempts
            reader = reader_for(job, current)
            yield from reader.pages()
    reader = _refresh(reader, job, current, which)
    if job.ended is not None and time.time() - job.ended < 5:
        time.sleep(min(poll, 1.0))  # CloudWatch shows new events within about a second
        yield from reader.pages()


def _refresh(reader: StreamReader, job: Job, attempt: int, which: str) -> StreamReader:
    """The reader for an attempt as its record now says: its window once the worker wrote it (a claim records
    the attempt before the job starts and says where its output goes), bounded once its end is recorded."""
    from hyper.aws.log_reading import StreamReader

    stream, window = _cloud_stream(job, attempt, which)
    if window is None:
        return reader
    if reader.window is None or stream != reader.name:
        return StreamReader(reader.host, stream, window)
    if window.end is not None:
        reader.bounded(window)
    return reader
