"""What the worker does around a job attempt for workflows; small calls from hyper/worker/loop.py.

- ``before_job``: an element of a split array gets its part (a path in the local area, or downloaded from
  S3 into the work directory); a finaliser gets the list of part outputs in part order; stagein files are
  put in the job's working directory. Returns the variables to add to the job's environment. A failure
  raises HyperError: the worker records the attempt as failed with that reason (the job never starts
  without its inputs).
- ``after_job``: stageout, and on an aws host the element's stdout goes to the bucket for the finaliser;
  before the end is recorded, so whoever sees the job ended finds its results.
- ``job_ended``: after the end is recorded: the completion notice, when the job (or its array) ended.
- ``sweep``: the agent's / scheduler's periodic pass: notices nobody sent (qdel, lost workers, retries), and
  on a local host the parts of jobs whose retention passed.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, TypeVar

from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Job
from hyper.parsing.jobids import JobRef
from hyper.workflows import notify, staging
from hyper.workflows.area import Area, LocalArea, area_for
from hyper.workflows.split import part_name

if TYPE_CHECKING:
    from hyper.states import JobState
    from hyper.store.base import Store

T = TypeVar("T")

RETENTION = "HYPER_PART_RETENTION"  # seconds a local host keeps parts and staged files after the job ended


def _cwd(job: Job, workdir: Path) -> Path:
    chdir = job.require_spec().chdir
    return Path(chdir) if chdir else workdir


def _private(workdir: Path, job: Job) -> Path:
    return workdir / ".hyper" / f"wf-{job.id}{'' if job.index is None else '.' + str(job.index)}"


def needs_hooks(job: Job) -> bool:
    spec = job.spec
    return spec is not None and bool(spec.split or spec.finalizes or spec.stagein or spec.stageout or spec.notify)


def output_key(array_id: int, index: int) -> str:
    return f"outputs/{array_id}/{index}.out"


def with_lease(work: Callable[[], T], check: Callable[[], JobState | None], every: float) -> T | None:
    """Run ``work()`` in a thread while renewing the job's lease with ``check()`` every ``every`` seconds.

    Returns what ``work`` returned, or None when the job was deleted or lost to another worker meanwhile (its
    inputs are then not used); re-raises what ``work`` raised."""
    import threading

    from hyper.states import JobState

    box: dict[str, T] = {}
    failed: list[BaseException] = []

    def run() -> None:
        try:
            box["value"] = work()
        except BaseException as exc:  # handed to the caller's thread below
            failed.append(exc)

    thread = threading.Thread(target=run, name="hyper-job-inputs", daemon=True)
    thread.start()
    alive = True
    while True:
        thread.join(every)
        if not thread.is_alive():
            break
        state = check()
        alive = alive and state is not None and state is not JobState.DELETED
    if failed:
        raise failed[0]
    return box.get("value") if alive else None


def before_job(store: Store, host: Host, job: Job, workdir: Path, logs_dir: Path) -> dict[str, str]:
    spec = job.require_spec()
    if not (spec.split or spec.finalizes or spec.stagein):
        return {}
    for stale in (workdir / ".hyper").glob("wf-*"):  # left by attempts that were deleted or lost mid-run
        shutil.rmtree(stale, ignore_errors=True)
    try:
        return _inputs(store, host, job, workdir, logs_dir)
    except OSError as exc:  # a full disk, a permission: the attempt fails with the reason, the worker goes on
        raise HyperError(f"cannot prepare the inputs of job {job.job_id}: {exc.strerror or exc}",
                         "check the worker's disk and permissions") from None


def _inputs(store: Store, host: Host, job: Job, workdir: Path, logs_dir: Path) -> dict[str, str]:
    spec = job.require_spec()
    env: dict[str, str] = {}
    area = area_for(host)
    if spec.split and job.index is not None:
        key = f"{spec.split['location']}/{part_name(job.index)}"
        if isinstance(area, LocalArea):
            path = area.path(key)
            if not path.exists():
                raise HyperError(f"part {job.index} of job {job.id} ({path}) is missing",
                                 "it was removed with the job's retention; submit the split again")
        else:
            path = _private(workdir, job) / part_name(job.index)
            area.get(key, path)
        env.update(HYPER_PART_FILE=str(path), HYPER_PART_INDEX=str(job.index), HYPER_PARTS=str(spec.split["parts"]))
    if spec.finalizes:
        env.update(_finaliser_inputs(store, host, job, workdir, logs_dir, area))
    if spec.stagein:
        staging.stage_in(job, _cwd(job, workdir), area)
    return env


def _finaliser_inputs(store: Store, host: Host, job: Job, workdir: Path, logs_dir: Path, area: Area
                      ) -> dict[str, str]:
    """HYPER_PART_OUTPUTS: a file naming every part's stdout, one path a line, in part order (1..N)."""
    from hyper.parsing.arrays import parse_array
    from hyper.outputs import output_paths

    final = job.require_spec().finalizes or {}  # called for finalisers only
    array_id, parts = int(final["array"]), int(final["parts"])
    indices = parse_array(final.get("indices") or f"1-{parts}")  # a split's 1..N, or the -J array's own
    found, _ = store.get_jobs([JobRef(array_id, indices, False)])
    private = _private(workdir, job)
    private.mkdir(parents=True, exist_ok=True)
    paths = []
    elements = {e.index: e for e in found if e.index is not None}  # get_jobs of indices: elements only
    for index, element in sorted(elements.items()):
        if area.kind == "s3":
            local = private / "outputs" / f"{index}.out"
            try:
                area.get(output_key(array_id, index), local)
            except HyperError:
                if element.state.value == "SUCCEEDED":
                    raise
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_bytes(b"")  # a part that never ran (deleted/failed before output) has no output
            paths.append(str(local))
        else:
            paths.append(str(output_paths(element, logs_dir)[0]))
    listing = private / "part-outputs.txt"
    listing.write_text("".join(p + "\n" for p in paths))
    states: dict[str, int] = {}
    for element in found:
        states[element.state.value] = states.get(element.state.value, 0) + 1
    return {"HYPER_PART_OUTPUTS": str(listing), "HYPER_PARTS": str(parts), "HYPER_ARRAY_JOB_ID": f"{array_id}[]",
            "HYPER_PARTS_SUCCEEDED": str(states.get("SUCCEEDED", 0))}


def after_job(host: Host, job: Job, workdir: Path, logs_dir: Path) -> list[str]:
    """Stageout and part outputs; returns warnings (the job's own outcome stands)."""
    spec = job.require_spec()
    warnings: list[str] = []
    if not (spec.split or spec.stageout or spec.finalizes):
        return warnings
    area = area_for(host)
    if spec.stageout:
        warnings += staging.stage_out(job, _cwd(job, workdir), area)
    if spec.split and job.index is not None and area.kind == "s3":
        from hyper.outputs import output_paths

        out = output_paths(job, logs_dir)[0]
        try:
            area.put(out, output_key(job.id, job.index))
        except (HyperError, OSError) as exc:
            warnings.append(f"part output upload failed: {getattr(exc, 'message', None) or exc}")
    shutil.rmtree(_private(workdir, job), ignore_errors=True)
    return warnings


def job_ended(store: Store, host: Host, job: Job, state: JobState | None, owner: str) -> None:
    """After the end is recorded: notify when the job, or the whole array of this element, has ended."""
    if state is None or not state.finished or job.spec is None or not job.spec.notify:
        return
    try:
        notify.deliver(store, host, job.id, owner)
    except HyperError as exc:  # the store refused: the sweep sends it; nothing is lost
        import sys

        sys.stderr.write(f"hyper worker {owner}: notice of job {job.id} left to the sweep: {exc.message}\n")


def sweep(store: Store, host: Host, owner: str, now: float | None = None) -> int:
    """Send due notices; on a local host also remove expired parts. Returns notices still to retry."""
    now = time.time() if now is None else now
    if not hasattr(store, "open_notices"):  # a store without notices (test doubles of the scheduler)
        return 0
    waiting = notify.sweep(store, host, owner, now)
    if host.type == "local":
        _expire_local(store, host, now)
    return waiting


_last_expiry: dict[str, float] = {}


def _expire_local(store: Store, host: Host, now: float) -> None:
    """Parts and staging copies of jobs that ended more than HYPER_PART_RETENTION ago (default 7 days)."""
    try:
        keep = float(os.environ.get(RETENTION, 7 * 86400))
    except ValueError:
        keep = 7 * 86400.0
    if now - _last_expiry.get(host.name, 0.0) < min(60.0, keep):  # a look a minute is plenty for days
        return
    _last_expiry[host.name] = now
    area = LocalArea(host)  # sweep calls this for local hosts only
    root = area.root / "parts"
    if not root.is_dir():
        return
    for entry in root.iterdir():
        owner_file = entry / ".job"
        if not owner_file.exists():
            if now - entry.stat().st_mtime > 3600:  # a submission that died before it recorded its job
                area.delete(f"parts/{entry.name}")
            continue
        ids = [int(x) for x in owner_file.read_text().split() if x.isdigit()]
        found, _ = store.get_jobs([JobRef(i) for i in ids])
        if all(j.state.finished and (j.ended or 0) + keep < now for j in found):
            area.delete(f"parts/{entry.name}")
