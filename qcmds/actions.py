"""What `qdel` and `qlog` do once their options are known (no typer here).

The typer interfaces (qcmds/qdel.py, qcmds/qlog.py) and the fast path of plain invocations
(qcmds/launch.py) call these with the same keyword arguments, so both print the same and exit the same.
"""

from __future__ import annotations

import sys

from hyper.cli.common import print_error

SUMMARY_OVER = 5  # more results than this are summed up in one line instead of one line per id


def run_qdel(job_ids: list[str] | None = None, user: str | None = None, state: str | None = None,
             queue: str | None = None, name: str | None = None, host: str | None = None,
             version: bool = False) -> int:
    """Delete jobs: queued ones never start; running ones get SIGTERM, then SIGKILL. Returns the exit code."""
    from hyper.errors import EXIT_ERROR, EXIT_UNKNOWN_JOB
    from hyper.parsing.jobids import parse_job_ids
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from hyper.store.base import Refusal

    refs = parse_job_ids(job_ids or [])  # every id must parse before anything is deleted
    states = svc.parse_states(state) if state else None
    selecting = user is not None or states is not None or queue is not None or name is not None
    if not refs and not selecting:
        return 0  # `qdel $(qstat --only-job-id-out)` with nothing queued: nothing to do, quietly
    ctx = open_context(host)
    if selecting:
        refs = svc.select_jobs(ctx, refs, user=user, states=states, queue=queue, name=name)
    results = svc.delete_jobs(ctx, refs) if refs else []
    if ctx.host.type == "local" and any(r.ok for r in results) and ctx.store.open_notices():
        from hyper.services.agent import wake_agent  # its sweep sends the notices of what was just deleted

        wake_agent(ctx)
    code = 0
    for r in results:
        if not r.ok:
            unknown = r.refusal is Refusal.UNKNOWN_JOB
            code = EXIT_UNKNOWN_JOB if unknown and code in (0, EXIT_UNKNOWN_JOB) else (code or EXIT_ERROR)
    if len(results) > SUMMARY_OVER:
        line = svc.delete_summary(results)
        (print_error("qdel", line) if code else sys.stdout.write(f"qdel: {line}\n"))
    else:
        for r in results:
            if not r.ok:
                print_error("qdel", r.message)
    return code


def run_qlog(job_id: str, stderr: bool = False, follow: bool = False, tail: int | None = None,
             attempt: int | None = None, host: str | None = None, version: bool = False) -> int:
    """Print a job's stdout (or stderr with -e); with follow, until the job ends."""
    from hyper.parsing.jobids import parse_job_id
    from hyper.services import jobs as svc
    from hyper.services.context import open_context

    ref = parse_job_id(job_id)
    ctx = open_context(host)
    out = sys.stdout.buffer
    for chunk in svc.read_log(ctx, ref, stderr, tail=tail, follow=follow, attempt=attempt):
        if chunk:
            out.write(chunk)
            out.flush()
    return 0
