"""What `qstat -f` adds for workflow jobs: the notice's outcome, the parts, the finaliser, staged files."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from hyper.workflows import notify

if TYPE_CHECKING:
    from hyper.models import Job
    from hyper.services.context import Context


def workflow_details(ctx: Context, jobs: Iterable[Job]) -> dict[str, dict]:
    out: dict[str, dict] = {}
    for job in jobs:
        spec = job.spec
        if spec is None:
            continue
        extra: dict = {}
        if spec.notify and job.index is None:
            extra["notify"] = notify.describe(ctx.store.get_notice(job.id)) or f"NOT RECORDED {spec.notify}"
        if spec.split:
            extra["split"] = (f"{spec.split['parts']} parts of {spec.split['lines_per_part']} lines from "
                              f"{spec.split['source']}")
        if spec.finalizes:
            extra["finalizes"] = f"{spec.finalizes['array']}[] ({spec.finalizes['when']})"
        if spec.stagein:
            extra["stagein"] = ",".join(f"{i['job']}@{i['src']}" for i in spec.stagein)
        if spec.stageout:
            extra["stageout"] = ",".join(f"{o['job']}@{o['dest']}" for o in spec.stageout)
        if extra:
            out[job.job_id] = extra
    return out
