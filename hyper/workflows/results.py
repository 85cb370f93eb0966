"""`qget`: a job's stageout files, from wherever its worker put them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hyper.errors import HyperError, UnknownJobError, UsageError
from hyper.parsing.jobids import JobRef
from hyper.workflows import staging
from hyper.workflows.area import area_for

if TYPE_CHECKING:
    from hyper.models import Job
    from hyper.services.context import Context


def fetch_results(ctx: Context, ref: JobRef, dest_dir: str | None) -> list[tuple[str, str]]:
    from hyper.parsing.arrays import parse_array

    jobs, missing = ctx.store.get_jobs([JobRef(ref.id, None, ref.whole_array)])
    if missing or not jobs:
        raise UnknownJobError(missing[0] if missing else str(ref.id))
    job = jobs[0]
    if job.spec is None or not job.spec.stageout:
        raise UsageError(f"job {job.job_id} stages nothing out",
                         "submit with -W stageout=RESULT@HOST:PATH (or #HYPER --stageout) to get files back")
    elements: list[Job] = []
    if job.array is not None and job.index is None:  # job.is_array, told to the type checker
        elements, _ = ctx.store.get_jobs([JobRef(job.id, ref.indices or parse_array(job.array), False)])
        elements = [e for e in elements if e.state.finished]
    elif not job.state.finished:
        raise HyperError(f"job {job.job_id} has not finished ({job.state.value})",
                         f"wait for it: qstat {job.job_id}, or qsub --wait next time")
    got = staging.fetch(job, elements, area_for(ctx.host), dest_dir)
    if not got:
        raise HyperError(f"job {job.job_id} left no stageout files",
                         f"the job did not write them; see its output with qlog {job.job_id} and qstat -f")
    return got
