"""What `qstat` does once its options are known: pick the jobs, then print them in the chosen layout.

No typer here: the typer interface (qcmds/qstat.py) and the fast path of plain invocations
(qcmds/launch.py) both call `run_qstat` with the same keyword arguments, so they cannot differ in what
they print. The values shown come from hyper/services/views.py; this module only lays them out.
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Callable

from hyper.cli.common import print_error, render
from hyper.services.views import View, alt_fields, full_details, full_record, human_field, job_rows

if TYPE_CHECKING:
    from hyper.models import Job
    from hyper.services.context import Context

COLUMNS = [("job_id", "Job ID"), ("name", "Name"), ("user", "User"), ("time_use", "Time Use"), ("s", "S"),
           ("queue", "Queue")]
QUEUE_COLUMNS = [("queue", "Queue"), ("total", "Total"), ("queued", "Queued"), ("running", "Running"),
                 ("held", "Held"), ("succeeded", "Succeeded"), ("failed", "Failed"), ("deleted", "Deleted")]
ALT_COLUMNS = [("job_id", "Job ID"), ("user", "Username"), ("queue", "Queue"), ("name", "Jobname"),
               ("tsk", "TSK"), ("req_mem", "Req'd Memory"), ("req_time", "Req'd Time"), ("s", "S"),
               ("elap_time", "Elap Time")]
DEFAULT_WATCH = 2.0


def run_qstat(job_ids: list[str] | None = None, queue: str | None = None, user: str | None = None,
              finished: bool = False, since: str | None = None, full: bool = False, queues: bool = False,
              elements: bool = False, alternative: bool = False, comment: bool = False, nodes: bool = False,
              wide: bool = False, only_queued: bool = False, only_running: bool = False, state: str | None = None,
              job_name: str | None = None, watch: float | None = None, only_ids: bool = False,
              output: str | None = None, pbs_format: str | None = None, delimiter: str = "|",
              host: str | None = None, version: bool = False) -> int:
    """qstat with its options as the typer command receives them (same names, same defaults); the exit code."""
    from hyper.cli.common import check_format
    from hyper.errors import EXIT_UNKNOWN_JOB, UsageError
    from hyper.parsing.jobids import parse_job_ids
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from hyper.services.views import since_epoch, with_elements
    from hyper.states import JobState
    from hyper.store.base import JobFilter

    pbs_doc = (pbs_format or "").lower() in ("json", "dsv")
    if pbs_format and not pbs_doc:
        output = output or pbs_format  # -F table|yaml|csv: hyper's formats, as before
    fmt = check_format(output)
    refs = parse_job_ids(job_ids) if job_ids else None
    states = svc.parse_states(state) if state else None
    if only_queued or only_running:
        states = (states or set(JobState)) & (({JobState.QUEUED, JobState.HELD} if only_queued else set())
                                              | ({JobState.RUNNING} if only_running else set()))
    if states and states & {JobState.SUCCEEDED, JobState.FAILED, JobState.DELETED}:
        finished = True  # asking for finished states means showing them
    finished = finished or since is not None  # --since 2h means "and what finished in the last 2 h"
    since_at = since_epoch(since, finished)
    if watch is not None and watch <= 0:
        raise UsageError(f"--watch {watch:g} is not a positive interval", "e.g. --watch 2")
    ctx = open_context(host)
    if queue is not None:
        svc.check_queue(ctx, queue)
    view = View(fmt, full, alternative, comment, nodes, wide, only_ids)

    def draw() -> int:
        if queues:
            show_queues(ctx, queue, fmt)
            return 0
        missing: list[str] = []
        if refs:
            found, missing = svc.get_jobs(ctx, refs)
            if elements:
                found = with_elements(ctx, found)
            found = [j for j in found if (not queue or j.queue == queue) and (not user or j.user == user)
                     and (states is None or j.state in states) and (not job_name or j.name == job_name)]
        else:
            flt = JobFilter(queue=queue, user=user, include_finished=finished, elements=elements,
                            with_spec=full or pbs_doc or alternative or fmt in ("json", "yaml"))
            found = svc.list_jobs(ctx, flt, states=states, name=job_name, since=since_at)
        for job_id in missing:
            print_error("qstat", f"Unknown Job Id {job_id}")
        if pbs_doc or (alternative and fmt == "table" and not only_ids):
            from qcmds.pbs_formats import print_pbs  # PBS Pro's shapes, for the tools that parse them

            print_pbs(ctx, found, pbs_format.lower() if pbs_format and pbs_doc else "alternate", job_ids, delimiter)
        else:
            show_jobs(ctx, found, view)
        return EXIT_UNKNOWN_JOB if missing else 0

    if watch is None:
        return draw()
    watch_loop(draw, watch)
    return 0


def show_queues(ctx: Context, queue: str | None, fmt: str) -> None:
    from hyper.services.views import queue_summary, stuck_notes

    listed = ctx.store.list_resources("queue")
    render(queue_summary(ctx.store.counts(), [q.name for q in listed], queue), QUEUE_COLUMNS, fmt)
    for note in stuck_notes(listed, queue):
        print_error("qstat", note)


def show_jobs(ctx: Context, found: list[Job], view: View) -> None:
    if view.only_ids:
        sys.stdout.write("".join(f"{j.job_id}\n" for j in found))
        return
    if view.full:
        details = full_details(ctx, found)
        records = [full_record(j, details.get(j.job_id)) for j in found]
        if view.fmt == "table":
            print_full(records)
        else:
            render(records, COLUMNS, view.fmt)
        return
    now = time.time()
    rows = job_rows(found, now, wide=view.wide)
    columns = list(COLUMNS)
    if view.alternative:
        columns = ALT_COLUMNS
        for row, job in zip(rows, found):
            row.update(alt_fields(job, now))
    if view.nodes:
        columns = [*columns, ("worker", "Worker")]
        for row, job in zip(rows, found):
            row["worker"] = job.worker or "--"
    if view.comment:
        from hyper.services.waiting import waiting_reasons

        reasons = waiting_reasons(ctx, found)
        columns = [*columns, ("comment", "Comment")]
        for row, job in zip(rows, found):
            row["comment"] = reasons.get(job.job_id) or (job.reason if job.state.finished else "") or ""
    if view.fmt == "table" and not rows:
        return  # PBS prints nothing when there is nothing to show
    render(rows, columns, view.fmt,
           full_rows=[full_record(j) for j in found] if view.fmt in ("json", "yaml") else None)


def print_full(records: list[dict]) -> None:
    """PBS's `qstat -f` layout, in human units: walltime H:MM:SS, memory in GiB/MiB, commands as typed."""
    for rec in records:
        sys.stdout.write(f"Job Id: {rec['job_id']}\n")
        for key, value in rec.items():
            if key != "job_id":
                key, value = human_field(key, value)
                sys.stdout.write(f"    {key} = {value}\n")
        sys.stdout.write("\n")


def watch_loop(draw: Callable[[], int], interval: float) -> None:
    """Redraw until Ctrl-C: a live table on a terminal (rich), a stamped table per interval when piped."""
    if sys.stdout.isatty():
        import io
        from contextlib import redirect_stdout

        from rich.live import Live
        from rich.text import Text

        with Live(auto_refresh=False) as live:
            while True:
                buf = io.StringIO()
                with redirect_stdout(buf):
                    draw()
                live.update(Text(time.strftime("%H:%M:%S ") + f"every {interval:g}s (Ctrl-C ends)\n"
                                 + buf.getvalue()), refresh=True)
                time.sleep(interval)
    while True:
        sys.stdout.write(time.strftime("--- %Y-%m-%d %H:%M:%S ---\n"))
        draw()
        sys.stdout.flush()
        time.sleep(interval)
