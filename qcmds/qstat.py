"""qstat: show jobs the way PBS does; `--output` for machines, `--only-job-id-out` for `qdel $(...)`."""

from __future__ import annotations

import sys
import time
from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors, print_error, render
from qcmds.common import APP_SETTINGS, HostOption, QCommand, VersionOption, run

app = typer.Typer(**APP_SETTINGS)

COLUMNS = [("job_id", "Job ID"), ("name", "Name"), ("user", "User"), ("time_use", "Time Use"), ("s", "S"),
           ("queue", "Queue")]
QUEUE_COLUMNS = [("queue", "Queue"), ("total", "Total"), ("queued", "Queued"), ("running", "Running"),
                 ("held", "Held"), ("succeeded", "Succeeded"), ("failed", "Failed"), ("deleted", "Deleted")]


def job_row(job, now: float, wide: bool = False) -> dict:
    from hyper.parsing.durations import format_duration
    from hyper.services.owners import display_name
    from hyper.states import pbs_letter

    if job.started is None:
        used = None
    else:
        used = (job.ended if job.ended and job.state.finished else now) - job.started
    cut = None if wide else 16
    return {"job_id": job.job_id, "name": job.name[:cut], "user": display_name(job.user)[:cut],
            "time_use": format_duration(used) if used is not None else "0",
            "s": pbs_letter(job.state, is_array=job.is_array, started=job.array_started > 0),
            "queue": job.queue}


def full_record(job, extra: dict | None = None) -> dict:
    """Every field, PBS-named where PBS has a name, for -f and for --output json/yaml."""
    from hyper.states import pbs_letter, shell_exit_code

    data = job.to_dict()
    spec = data.pop("spec") or {}
    data.pop("logs", None)  # (the current attempt's output is given as log_group, log_stream, log_window_ms)
    data["job_state"] = pbs_letter(job.state, is_array=job.is_array, started=job.array_started > 0)
    for key in ("submitted", "started", "ended", "lease"):
        if data.get(key):
            data[key] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(data[key]))
    for key in ("script_name", "submit_dir", "chdir", "output", "error", "join", "walltime", "vcpus",
                "memory_mib", "gpus", "command", "args"):
        if spec.get(key) not in (None, "", []):
            data[key] = spec[key]
    if not job.is_array:
        for key in ("array", "array_total", "array_started", "array_done", "array_failed", "array_running",
                    "array_deleted"):
            data.pop(key, None)
    data["exit_code"] = shell_exit_code(data.get("exit_code"))  # 128+N for signal N, as qsub --wait exits
    data.update(extra or {})
    return {k: v for k, v in data.items() if v not in (None, "", [])}


def aws_details(ctx, jobs) -> dict[str, dict]:
    """qstat -f on an aws host: where each job runs (worker's machine, region, Batch job) and its log stream."""
    from hyper.services import jobs as svc
    from hyper.worker import identity

    if ctx.host.type != "aws":
        return {}
    workers = {}
    if any(j.worker for j in jobs):
        workers = {w.id: identity.parse_host(w.host) for w in ctx.store.list_workers()}
    out = {}
    for job in jobs:
        extra = {}
        where = workers.get(job.worker or "", {})
        extra["worker_host"] = where.get("host")
        extra["region"] = where.get("region")
        extra["batch_job_id"] = where.get("batch_job")
        location = svc.log_location(ctx, job)
        if location:
            extra["log_group"], extra["log_stream"], window = location
            if window:
                extra["log_window_ms"] = window
        out[job.job_id] = extra
    return out


def print_full(records: list[dict]) -> None:
    """PBS's `qstat -f` layout, in human units: walltime H:MM:SS, memory in GiB/MiB, commands as typed."""
    for rec in records:
        sys.stdout.write(f"Job Id: {rec['job_id']}\n")
        for key, value in rec.items():
            if key != "job_id":
                key, value = human_field(key, value)
                sys.stdout.write(f"    {key} = {value}\n")
        sys.stdout.write("\n")


def human_field(key: str, value) -> tuple[str, str]:
    """One `qstat -f` line for people (json/yaml keep the raw numbers for machines)."""
    import shlex

    from hyper.parsing.durations import format_memory

    if key == "walltime":
        s = int(value)
        return key, f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    if key == "memory_mib":
        return "memory", format_memory(value)
    if key in ("command", "args") and isinstance(value, list):
        return key, shlex.join(str(v) for v in value)
    if isinstance(value, list):
        return key, ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return key, ", ".join(f"{k}={v}" for k, v in value.items())
    return key, str(value)


class _QstatCommand(QCommand):
    """`--watch` takes an optional interval: `--watch`, `--watch 5` or `--watch=5` (seconds)."""

    def parse_args(self, ctx, args):
        out = []
        i = 0
        while i < len(args):
            if args[i] == "--watch":
                nxt = args[i + 1] if i + 1 < len(args) else ""
                if nxt.replace(".", "", 1).isdigit():
                    out.append(f"--watch={nxt}")
                    i += 2
                    continue
                out.append(f"--watch={DEFAULT_WATCH}")
            else:
                out.append(args[i])
            i += 1
        return super().parse_args(ctx, out)


DEFAULT_WATCH = 2.0
DEFAULT_SINCE = "24h"
HELP = ("Show jobs (running, queued and held; -x adds those finished in the last 24 hours, --since more). "
        "State letters: Q queued, R running, H held (qhold, or waiting for a dependency), B array begun, "
        "F finished (succeeded or failed), X deleted.")


@app.command(cls=_QstatCommand, help=HELP)
@cli_errors("qstat")
def qstat(
    job_ids: Annotated[Optional[List[str]], typer.Argument(help="Jobs to show: 12, 12[], 12[3], 100-110.")] = None,
    queue: Annotated[Optional[str], typer.Option("-q", "--queue", help="Only jobs of this queue.")] = None,
    user: Annotated[Optional[str], typer.Option("-u", "--user", help="Only jobs of this user.")] = None,
    finished: Annotated[bool, typer.Option("-x", help="Include finished jobs (last 24 h; see --since).")] = False,
    since: Annotated[Optional[str], typer.Option("--since", help="With -x: finished within this long, e.g. 2h, 7d, "
                                                                 "or `all`.")] = None,
    full: Annotated[bool, typer.Option("-f", help="Full record of each job.")] = False,
    queues: Annotated[bool, typer.Option("-Q", help="Summary per queue.")] = False,
    elements: Annotated[bool, typer.Option("-t", help="Every array element, queued ones too.")] = False,
    alternative: Annotated[bool, typer.Option("-a", help="PBS alternative format: requested vCPUs, memory, "
                                                         "walltime and elapsed time.")] = False,
    comment: Annotated[bool, typer.Option("-s", help="Why each job waits (or how it ended), under it.")] = False,
    nodes: Annotated[bool, typer.Option("-n", help="The worker each job runs on.")] = False,
    wide: Annotated[bool, typer.Option("-w", help="Wide: names are not cut.")] = False,
    only_queued: Annotated[bool, typer.Option("-i", help="Only queued and held jobs.")] = False,
    only_running: Annotated[bool, typer.Option("-r", help="Only running jobs.")] = False,
    state: Annotated[Optional[str], typer.Option("--state", "--filter-status",
                                                 help="Only these states: Q,R,H,F,X or names (queued, ...).")] = None,
    job_name: Annotated[Optional[str], typer.Option("--job-name", help="Only jobs with this name.")] = None,
    watch: Annotated[Optional[float], typer.Option("--watch", help="Redraw every SECONDS (default 2) until "
                                                                   "Ctrl-C.", show_default=False)] = None,
    only_ids: Annotated[bool, typer.Option("--only-job-id-out", help="Print job ids only, one per line "
                                                                     "(`--only-job-id-out true|false` too).")] = False,
    output: Annotated[Optional[str], typer.Option("--output", "-o", help="table, json, yaml or csv.")] = None,
    pbs_format: Annotated[Optional[str], typer.Option("-F", help="PBS Pro's json or dsv document (with -f); "
                                                       "table, yaml, csv as --output.")] = None,
    delimiter: Annotated[str, typer.Option("-D", help="Delimiter of -F dsv.")] = "|",
    host: HostOption = None,
    version: VersionOption = False,
) -> None:
    from hyper.cli.common import check_format
    from hyper.errors import EXIT_UNKNOWN_JOB, UsageError
    from hyper.parsing.jobids import parse_job_ids
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
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
    since_at = _since(since, finished)
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
                found = _with_elements(ctx, found)
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

            print_pbs(ctx, found, pbs_format.lower() if pbs_doc else "alternate", job_ids, delimiter)
        else:
            show_jobs(ctx, found, view)
        return EXIT_UNKNOWN_JOB if missing else 0

    if watch is None:
        raise typer.Exit(draw())
    watch_loop(draw, watch)


class View:
    """What the user asked to see."""

    def __init__(self, fmt: str, full: bool, alternative: bool, comment: bool, nodes: bool, wide: bool,
                 only_ids: bool):
        self.fmt, self.full, self.alternative, self.comment = fmt, full, alternative, comment
        self.nodes, self.wide, self.only_ids = nodes, wide, only_ids


def _since(text: str | None, finished: bool) -> float | None:
    """The epoch before which finished jobs are left out (None: no limit)."""
    from hyper.parsing.durations import parse_duration

    if text is not None and text.strip().lower() == "all":
        return None
    if text is None and not finished:
        return None
    return time.time() - parse_duration(text or DEFAULT_SINCE, "s", what="--since")


def _with_elements(ctx, found):
    """qstat -t 12[]: the array and each of its elements, queued ones included."""
    from hyper.parsing.arrays import parse_array
    from hyper.parsing.jobids import JobRef

    out = []
    for job in found:
        out.append(job)
        if job.is_array:
            elements, _ = ctx.store.get_jobs([JobRef(job.id, parse_array(job.array), False)])
            out.extend(elements)
    return out


def show_queues(ctx, queue, fmt) -> None:
    listed = ctx.store.list_resources("queue")
    rows = queue_summary(ctx.store.counts(), [q.name for q in listed], queue)
    render(rows, QUEUE_COLUMNS, fmt)
    for q in listed:  # the scheduler's note on workers that wait for capacity that never comes
        if (not queue or q.name == queue) and (q.message or "").startswith("stuck workers: "):
            print_error("qstat", f"queue {q.name}: {q.message}")


def show_jobs(ctx, found, view: View) -> None:
    from hyper.services import jobs as svc
    from hyper.services.waiting import waiting_reasons

    if view.only_ids:
        sys.stdout.write("".join(f"{j.job_id}\n" for j in found))
        return
    if view.full:
        details = aws_details(ctx, found)
        for job in found:
            details.setdefault(job.job_id, {}).update(svc.output_files(ctx, job))
        for job_id, why in waiting_reasons(ctx, found).items():
            details.setdefault(job_id, {})["comment"] = why
        if any(j.spec is not None and (j.spec.notify or j.spec.split or j.spec.finalizes or j.spec.stagein
                                       or j.spec.stageout) for j in found):
            from hyper.workflows.display import workflow_details  # notice outcome, parts, finaliser, staging

            for job_id, extra in workflow_details(ctx, found).items():
                details.setdefault(job_id, {}).update(extra)
        records = [full_record(j, details.get(j.job_id)) for j in found]
        if view.fmt == "table":
            print_full(records)
        else:
            render(records, COLUMNS, view.fmt)
        return
    now = time.time()
    reasons = waiting_reasons(ctx, found) if view.comment else {}
    rows = [job_row(j, now, wide=view.wide) for j in found]
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
        columns = [*columns, ("comment", "Comment")]
        for row, job in zip(rows, found):
            row["comment"] = reasons.get(job.job_id) or (job.reason if job.state.finished else "") or ""
    if view.fmt == "table" and not rows:
        return  # PBS prints nothing when there is nothing to show
    render(rows, columns, view.fmt,
           full_rows=[full_record(j) for j in found] if view.fmt in ("json", "yaml") else None)


ALT_COLUMNS = [("job_id", "Job ID"), ("user", "Username"), ("queue", "Queue"), ("name", "Jobname"),
               ("tsk", "TSK"), ("req_mem", "Req'd Memory"), ("req_time", "Req'd Time"), ("s", "S"),
               ("elap_time", "Elap Time")]


def alt_fields(job, now: float) -> dict:
    """qstat -a's request and elapsed columns, in PBS's units (walltime HH:MM, memory as gb/mb)."""
    from hyper.parsing.durations import format_memory

    spec = job.spec
    elapsed = None
    if job.started is not None:
        elapsed = (job.ended if job.ended and job.state.finished else now) - job.started
    return {"tsk": str((spec.vcpus if spec else None) or "--"),
            "req_mem": format_memory(spec.memory_mib) if spec and spec.memory_mib else "--",
            "req_time": _hhmm(spec.walltime) if spec and spec.walltime else "--",
            "elap_time": _hhmm(elapsed) if elapsed is not None else "--"}


def _hhmm(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


def watch_loop(draw, interval: float) -> None:
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


def queue_summary(counts, queue_names: list[str], only_queue: str | None) -> list[dict]:
    """Tasks per queue and state, from the store's counters (no scan of the jobs)."""
    from hyper.states import JobState

    names = {JobState.QUEUED: "queued", JobState.RUNNING: "running", JobState.HELD: "held",
             JobState.SUCCEEDED: "succeeded", JobState.FAILED: "failed", JobState.DELETED: "deleted"}
    def empty(name: str) -> dict:
        return {"queue": name, "total": 0, **{v: 0 for v in names.values()}}

    rows = {q: empty(q) for q in queue_names if not only_queue or q == only_queue}
    for c in counts:
        if only_queue and c.queue != only_queue:
            continue
        row = rows.setdefault(c.queue, empty(c.queue))
        row[names[c.state]] += c.tasks
        row["total"] += c.tasks
    return [rows[k] for k in sorted(rows)]


def main() -> None:
    run(app, "qstat")
