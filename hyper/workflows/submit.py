"""One qsub submission that is a workflow: split input, finaliser, completion notice, staged files.

Everything is validated before anything is written (the split file is counted, stagein files checked, the
finaliser script read); then parts are written to the host's area, stagein files uploaded (aws), the array
and its finaliser submitted. If a later step fails, what the earlier ones wrote is removed again: parts,
staged files, and the array (qdel). The finaliser depends on the whole array (``afterany``/``afterok`` on
``ID[]``), which the store resolves even if the array ended before the finaliser was written.
"""

from __future__ import annotations

import dataclasses
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from hyper.errors import UsageError
from hyper.models import Job
from hyper.parsing.jobids import JobRef
from hyper.workflows import notify, split, staging
from hyper.workflows.area import area_for

FINALIZE_KINDS = ("afterany", "afterok")


@dataclass
class WorkflowOptions:
    split: str | None = None
    lines_per_part: int | None = None
    parts: int | None = None
    finalize: str | None = None
    finalize_after: str = "afterany"
    notify: str | None = None
    notes: list[str] = field(default_factory=list)  # printed by qsub as `qsub: note: ...`

    def active(self, d) -> bool:
        return bool(self.split or self.finalize or self.notify or d.stagein or d.stageout
                    or self.lines_per_part is not None or self.parts is not None)


@dataclass
class Submitted:
    jobs: list[Job]  # what qsub prints (the array, or the jobs)
    all_jobs: list[Job]  # what --wait waits for (with the finaliser)
    notes: list[str]


def _read_script(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read()
    except FileNotFoundError:
        raise UsageError(f"finaliser script {path} does not exist", "give the script: --finalize final.sh") from None
    except IsADirectoryError:
        raise UsageError(f"finaliser script {path} is a directory", "give the script file") from None
    except PermissionError:
        raise UsageError(f"finaliser script {path} is not readable", f"chmod u+r {path}") from None


def _quietly(undo, *args) -> None:
    """Undo what a failed submission wrote; a failing undo must not hide why the submission failed (the
    bucket's lifecycle rule, or the local retention sweep, removes what is left)."""
    from hyper.errors import HyperError

    try:
        undo(*args)
    except (HyperError, OSError):
        pass


def submit_workflow(ctx, d, opts: WorkflowOptions, *, script, command, script_name: str, submit_env: dict,
                    cwd: str, user: str, sweep, retry_on_exit: bool) -> Submitted:
    from hyper.parsing.arrays import parse_array
    from hyper.parsing.directives import Dependency, parse_directives
    from hyper.services import jobs as svc

    notes = list(opts.notes)
    # 1. validate everything -------------------------------------------------------------------------------
    if (opts.lines_per_part is not None or opts.parts is not None) and not opts.split:
        raise UsageError("--lines-per-part/--parts need --split FILE", "e.g. --split data.txt --parts 100")
    if opts.split and d.array is not None:
        raise UsageError("--split makes the array itself (one element per part); do not give -J too",
                         "drop -J, or drop --split and read your input by $PBS_ARRAY_INDEX")
    if opts.split and sweep:
        raise UsageError("--split and --sweep both make many jobs; give one of them", "use --split or --sweep")
    if opts.finalize_after not in FINALIZE_KINDS:
        raise UsageError(f"--finalize-after {opts.finalize_after!r} is not afterany or afterok",
                         "afterany: the finaliser runs however the parts end; afterok: only if all succeeded")
    if opts.finalize and not (opts.split or d.array is not None):
        raise UsageError("--finalize needs an array to finalise", "add --split FILE --parts K, or -J 1-N")
    if opts.finalize and sweep:
        raise UsageError("--finalize applies to one array, not a --sweep", "use -J or --split with --finalize")
    if opts.notify:
        note = notify.check_url(opts.notify)
        if note:
            notes.append(note)
    plan = split.plan(opts.split, opts.lines_per_part, opts.parts) if opts.split else None
    final_text = _read_script(opts.finalize) if opts.finalize else None
    final_d = parse_directives(final_text, opts.finalize) if final_text is not None else None

    area = area_for(ctx.host)
    token = uuid.uuid4().hex[:16]
    ins, outs = staging.prepare(d.stagein, d.stageout, cwd, area, token)
    final_ins, final_outs = ([], [])
    if final_d is not None:
        final_ins, final_outs = staging.prepare(final_d.stagein, final_d.stageout, cwd, area, token + "f")

    # 2. write files, then jobs; undo on failure -------------------------------------------------------------
    workflow: dict = {"stagein": ins, "stageout": outs, "stage": f"stage/{token}"} if ins or outs else {}
    parts_prefix = f"parts/{token}"
    submitted: list[Job] = []
    try:
        if plan is not None:
            source, per_part, count = plan
            made = split.write_parts(source, per_part, area, parts_prefix)
            workflow["split"] = {"area": area.kind, "location": parts_prefix, "parts": made,
                                 "source": str(source.resolve()), "lines_per_part": per_part}
            d = dataclasses.replace(d, array=parse_array(f"1-{made}"))
            if made < (opts.parts or made):
                notes.append(f"{source} has too few lines for {opts.parts} parts: made {made}")
        staging.upload_stagein(ins + final_ins, area)
        if not opts.finalize:
            workflow["notify"] = opts.notify
        jobs = svc.submit(ctx, d, script=script, command=command, script_name=script_name,
                          submit_env=submit_env, cwd=cwd, user=user, sweep=sweep, retry_on_exit=retry_on_exit,
                          workflow=workflow)
        submitted = jobs
        all_jobs = list(jobs)
        if opts.finalize:
            array = jobs[0]
            fd = svc.merge_directives(dataclasses.replace(d, array=None, name=None, hold=None, depend=[],
                                                          stagein=[], stageout=[], output=None, error=None),
                                      final_d)
            fd.name = final_d.name or f"{array.name}.final"
            fd.depend = [Dependency(opts.finalize_after, JobRef(array.id, None, True))]
            final_wf = {"stagein": final_ins, "stageout": final_outs, "stage": f"stage/{token}f"} if (
                final_ins or final_outs) else {}
            final_wf.update({"notify": opts.notify,
                             "finalizes": {"array": array.id, "parts": array.array_total, "indices": array.array,
                                           "when": opts.finalize_after}})
            final_jobs = svc.submit(ctx, fd, script=final_text, command=None, script_name=opts.finalize,
                                    submit_env=submit_env, cwd=cwd, user=user, retry_on_exit=retry_on_exit,
                                    workflow=final_wf)
            submitted = submitted + final_jobs
            all_jobs += final_jobs
            notes.append(f"finaliser {final_jobs[0].job_id} runs after {array.job_id} ({opts.finalize_after})")
        if plan is not None and area.kind == "file":
            (area.path(parts_prefix) / ".job").write_text(" ".join(str(j.id) for j in submitted) + "\n")
    except BaseException:
        if submitted:
            _quietly(svc.delete_jobs, ctx, [JobRef(j.id, None, j.is_array) for j in submitted])
        for prefix in (parts_prefix, f"stage/{token}", f"stage/{token}f"):
            _quietly(area.delete, prefix)
        raise
    return Submitted(jobs=all_jobs[:1] if opts.finalize else all_jobs, all_jobs=all_jobs, notes=notes)
