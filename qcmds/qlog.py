"""qlog: a job's output; -f follows it until the job ends."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Optional

import typer

from hyper.cli.common import cli_errors
from qcmds.common import APP_SETTINGS, HostOption

app = typer.Typer(**APP_SETTINGS)


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


@app.command()
@cli_errors("qlog")
def qlog(
    job_id: Annotated[str, typer.Argument(help="The job: 12 or 12[3].")],
    stderr: Annotated[bool, typer.Option("-e", "--stderr", help="Show stderr instead of stdout.")] = False,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing until the job ends.")] = False,
    tail: Annotated[Optional[int], typer.Option("--tail", "-n", help="Only the last N lines.")] = None,
    host: HostOption = None,
) -> None:
    """Print a job's stdout (or stderr with -e)."""
    from hyper.errors import HyperError
    from hyper.parsing.jobids import parse_job_id
    from hyper.services import jobs as svc
    from hyper.services.context import open_context

    ref = parse_job_id(job_id)
    ctx = open_context(host)
    job, path = svc.log_path(ctx, ref, stderr)
    out = sys.stdout.buffer
    if not path.exists() and not follow:
        if job.started is None:
            raise HyperError(f"job {job.job_id} has not started yet, so it has no output",
                             f"follow it with qlog -f {job.job_id}")
        raise HyperError(f"the output file {path} of job {job.job_id} is missing",
                         "it was moved or deleted after the job ran")
    offset = 0
    if path.exists():
        if tail is not None:
            out.write(tail_lines(path, tail))
            offset = path.stat().st_size
        else:
            with open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    out.write(chunk)
            offset = path.stat().st_size
        out.flush()
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
                out.write(chunk)
                out.flush()
        if done:
            break
        time.sleep(0.25)


def main() -> None:
    app(prog_name="qlog")
