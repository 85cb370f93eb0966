"""qstat: show jobs the way PBS does; `--output` for machines, `--only-job-id-out` for `qdel $(...)`."""

from __future__ import annotations

import sys
import time
from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors, print_error, render
from qcmds.common import APP_SETTINGS, HostOption

app = typer.Typer(**APP_SETTINGS)

COLUMNS = [("job_id", "Job ID"), ("name", "Name"), ("user", "User"), ("time_use", "Time Use"), ("s", "S"),
           ("queue", "Queue")]
QUEUE_COLUMNS = [("queue", "Queue"), ("total", "Total"), ("queued", "Queued"), ("running", "Running"),
                 ("held", "Held"), ("succeeded", "Succeeded"), ("failed", "Failed"), ("deleted", "Deleted")]


def job_row(job, now: float) -> dict:
    from hyper.parsing.durations import format_duration
    from hyper.states import pbs_letter

    if job.started is None:
        used = None
    else:
        used = (job.ended if job.ended and job.state.finished else now) - job.started
    return {"job_id": job.job_id, "name": job.name[:16], "user": job.user[:16],
            "time_use": format_duration(used) if used is not None else "0",
            "s": pbs_letter(job.state, is_array=job.is_array, started=job.array_started > 0),
            "queue": job.queue}


def full_record(job, extra: dict | None = None) -> dict:
    """Every field, PBS-named where PBS has a name, for -f and for --output json/yaml."""
    from hyper.states import pbs_letter

    data = job.to_dict()
    spec = data.pop("spec") or {}
    data["job_state"] = pbs_letter(job.state, is_array=job.is_array, started=job.array_started > 0)
    for key in ("submitted", "started", "ended", "lease"):
        if data.get(key):
            data[key] = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(data[key]))
    for key in ("script_name", "submit_dir", "chdir", "output", "error", "join", "walltime", "vcpus",
                "memory_mib", "gpus", "command"):
        if spec.get(key) not in (None, "", []):
            data[key] = spec[key]
    if not job.is_array:
        for key in ("array", "array_total", "array_started", "array_done", "array_failed", "array_running",
                    "array_deleted"):
            data.pop(key, None)
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
            extra["log_group"], extra["log_stream"] = location
        out[job.job_id] = extra
    return out


def print_full(records: list[dict]) -> None:
    for rec in records:
        sys.stdout.write(f"Job Id: {rec['job_id']}\n")
        for key, value in rec.items():
            if key != "job_id":
                sys.stdout.write(f"    {key} = {value}\n")
        sys.stdout.write("\n")


@app.command()
@cli_errors("qstat")
def qstat(
    job_ids: Annotated[Optional[List[str]], typer.Argument(help="Jobs to show: 12, 12[], 12[3], 100-110.")] = None,
    queue: Annotated[Optional[str], typer.Option("-q", "--queue", help="Only jobs of this queue.")] = None,
    user: Annotated[Optional[str], typer.Option("-u", "--user", help="Only jobs of this user.")] = None,
    finished: Annotated[bool, typer.Option("-x", help="Include finished jobs.")] = False,
    full: Annotated[bool, typer.Option("-f", help="Full record of each job.")] = False,
    queues: Annotated[bool, typer.Option("-Q", help="Summary per queue.")] = False,
    elements: Annotated[bool, typer.Option("-t", help="Show array elements too.")] = False,
    only_ids: Annotated[bool, typer.Option("--only-job-id-out", help="Print job ids only, one per line.")] = False,
    output: Annotated[Optional[str], typer.Option("--output", help="table, json, yaml or csv.")] = None,
    pbs_format: Annotated[Optional[str], typer.Option("-F", help="PBS Pro's json or dsv document (with -f); "
                                                       "table, yaml, csv as --output.")] = None,
    delimiter: Annotated[str, typer.Option("-D", help="Delimiter of -F dsv.")] = "|",
    alternate: Annotated[bool, typer.Option("-a", help="PBS Pro's alternative display.")] = False,
    host: HostOption = None,
) -> None:
    """Show jobs (running, queued and held; -x adds finished ones)."""
    from hyper.cli.common import check_format
    from hyper.errors import EXIT_UNKNOWN_JOB
    from hyper.parsing.jobids import parse_job_ids
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from hyper.store.base import JobFilter

    pbs_doc = (pbs_format or "").lower() in ("json", "dsv")
    if pbs_format and not pbs_doc:
        output = output or pbs_format  # -F table|yaml|csv: hyper's formats, as before
    fmt = check_format(output)
    refs = parse_job_ids(job_ids) if job_ids else None
    ctx = open_context(host)
    if queues:
        listed = ctx.store.list_resources("queue")
        rows = queue_summary(ctx.store.counts(), [q.name for q in listed], queue)
        render(rows, QUEUE_COLUMNS, fmt)
        for q in listed:  # the scheduler's note on workers that wait for capacity that never comes
            if (not queue or q.name == queue) and (q.message or "").startswith("stuck workers: "):
                print_error("qstat", f"queue {q.name}: {q.message}")
        return
    missing: list[str] = []
    if refs:
        found, missing = svc.get_jobs(ctx, refs)
        found = [j for j in found if (not queue or j.queue == queue) and (not user or j.user == user)]
    else:
        with_spec = full or pbs_doc or alternate or fmt in ("json", "yaml")
        found = svc.list_jobs(ctx, JobFilter(queue=queue, user=user, include_finished=finished,
                                             elements=elements, with_spec=with_spec))
    for job_id in missing:
        print_error("qstat", f"Unknown Job Id {job_id}")
    if only_ids:
        sys.stdout.write("".join(f"{j.job_id}\n" for j in found))
    elif pbs_doc or alternate:
        from qcmds.pbs_formats import print_pbs  # PBS Pro's shapes, for the tools that parse them

        print_pbs(ctx, found, pbs_format.lower() if pbs_doc else "alternate", job_ids, delimiter)
    elif full:
        details = aws_details(ctx, found)
        if any(j.spec is not None and (j.spec.notify or j.spec.split or j.spec.finalizes or j.spec.stagein
                                       or j.spec.stageout) for j in found):
            from hyper.workflows.display import workflow_details  # notice outcome, parts, finaliser, staging

            for job_id, extra in workflow_details(ctx, found).items():
                details.setdefault(job_id, {}).update(extra)
        records = [full_record(j, details.get(j.job_id)) for j in found]
        if fmt == "table":
            print_full(records)
        else:
            render(records, COLUMNS, fmt)
    else:
        now = time.time()
        rows = [job_row(j, now) for j in found]
        if fmt == "table" and not rows:
            pass  # PBS prints nothing when there is nothing to show
        else:
            render(rows, COLUMNS, fmt, full_rows=[full_record(j) for j in found] if fmt in ("json", "yaml") else None)
    if missing:
        raise typer.Exit(EXIT_UNKNOWN_JOB)


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
    app(prog_name="qstat")
