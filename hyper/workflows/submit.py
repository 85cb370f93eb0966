"""One qsub submission that is a workflow: split input, finaliser, completion notice, staged files.

Everything is validated before anything is written (the split file is counted, stagein files checked, the
finaliser script read); then parts are written to the host's area, stagein files uploaded (aws), the array
and its finaliser submitted. If a later step fails, what the earlier ones wrote is removed again: parts,
staged files, and the array (qdel). The finaliser depends on the whole array (``afterany``/``afterok`` on
``ID[]``), which the store resolves even if the array ended before the finaliser was written.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from hyper.errors import UsageError
from hyper.models import Job
from hyper.parsing.jobids import JobRef
from hyper.workflows import notify, split, staging
from hyper.workflows.area import LocalArea, area_for

if TYPE_CHECKING:
    from hyper.parsing.directives import Directives
    from hyper.services.context import Context

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

    def active(self, d: Directives) -> bool:
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


def _quietly(undo: Callable[..., Any], *args: Any) -> None:
    """Undo what a failed submission wrote; a failing undo must not hide why the submission failed (the
    bucket's lifecycle rule, or the local retention sweep, removes what is left)."""
    from hyper.errors import HyperError

    try:
        undo(*args)
    except (HyperError, OSError):
        pass


def submit_workflow(ctx: Context, d: Directives, opts: WorkflowOptions, *, script: str | None,
                    command: list[str] | None, script_name: str, submit_env: dict[str, str], cwd: str, user: str,
                    sweep: list[dict] | None, retry_on_exit: bool) -> Submitted:
    from hyper.parsing.arrays import parse_array
    from hyper.parsing.directives import parse_directives
    from hyper.services import jobs as svc

    notes = list(opts.notes)
    # 1. validate everything -------------------------------------------------------------------------------
    _check_options(opts, d, sweep)
    if opts.notify:
        note = notify.check_url(opts.notify)
        if note:
            notes.append(note)
    plan = split.plan(opts.split, opts.lines_per_part, opts.parts) if opts.split else None
    final = None
    if opts.finalize:
        final_text = _read_script(opts.finalize)
        final = _Finaliser(opts.finalize, final_text, parse_directives(final_text, opts.finalize))

    area = area_for(ctx.host)
    token = uuid.uuid4().hex[:16]
    ins, outs = staging.prepare(d.stagein, d.stageout, cwd, area, token)
    if final is not None:
        final.ins, final.outs = staging.prepare(final.d.stagein, final.d.stageout, cwd, area, token + "f")

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
        staging.upload_stagein(ins + (final.ins if final else []), area)
        if final is None:
            workflow["notify"] = opts.notify
        jobs = svc.submit(ctx, d, script=script, command=command, script_name=script_name,
                          submit_env=submit_env, cwd=cwd, user=user, sweep=sweep, retry_on_exit=retry_on_exit,
                          workflow=workflow)
        submitted = list(jobs)
        if final is not None:
            final_jobs = _submit_finaliser(ctx, d, opts, final, jobs[0], token, submit_env=submit_env, cwd=cwd,
                                           user=user, retry_on_exit=retry_on_exit)
            submitted += final_jobs
            notes.append(f"finaliser {final_jobs[0].job_id} runs after {jobs[0].job_id} ({opts.finalize_after})")
        if plan is not None and isinstance(area, LocalArea):
            (area.path(parts_prefix) / ".job").write_text(" ".join(str(j.id) for j in submitted) + "\n")
    except BaseException:
        if submitted:
            _quietly(svc.delete_jobs, ctx, [JobRef(j.id, None, j.is_array) for j in submitted])
        for prefix in (parts_prefix, f"stage/{token}", f"stage/{token}f"):
            _quietly(area.delete, prefix)
        raise
    return Submitted(jobs=submitted[:1] if final else submitted, all_jobs=submitted, notes=notes)


def _check_options(opts: WorkflowOptions, d: Directives, sweep: list[dict] | None) -> None:
    """Refuse combinations that make no workflow, before anything is read or written."""
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


@dataclass
class _Finaliser:
    """The --finalize script, its own directives, and its staged files (prepared with the array's)."""

    path: str
    text: str
    d: Directives
    ins: list[dict] = field(default_factory=list)
    outs: list[dict] = field(default_factory=list)


def _submit_finaliser(ctx: Context, d: Directives, opts: WorkflowOptions, final: _Finaliser, array: Job,
                      token: str, *, submit_env: dict[str, str], cwd: str, user: str,
                      retry_on_exit: bool) -> list[Job]:
    """The finaliser: the array's directives less what is the array's own, under its script's; it depends on
    the whole array and carries the completion notice (sent once the whole workflow is over)."""
    from hyper.parsing.directives import Dependency
    from hyper.services import jobs as svc

    fd = svc.merge_directives(dataclasses.replace(d, array=None, name=None, hold=None, depend=[],
                                                  stagein=[], stageout=[], output=None, error=None),
                              final.d)
    fd.name = final.d.name or f"{array.name}.final"
    fd.depend = [Dependency(opts.finalize_after, JobRef(array.id, None, True))]
    workflow: dict = {"stagein": final.ins, "stageout": final.outs, "stage": f"stage/{token}f"} if (
        final.ins or final.outs) else {}
    workflow.update({"notify": opts.notify,
                     "finalizes": {"array": array.id, "parts": array.array_total, "indices": array.array,
                                   "when": opts.finalize_after}})
    return svc.submit(ctx, fd, script=final.text, command=None, script_name=final.path, submit_env=submit_env,
                      cwd=cwd, user=user, retry_on_exit=retry_on_exit, workflow=workflow)
