"""File staging: PBS ``-W stagein=``/``-W stageout=`` (and ``#HYPER --stagein/--stageout``).

Syntax as PBS: ``exec_path@host:submit_path`` (several joined by commas), where ``exec_path`` is relative to
the job's working directory and ``submit_path`` is on the submit machine (relative to where qsub ran); a
plain ``path`` means the same relative path on both sides. ``host`` is informational: the submit machine is
the one qsub ran on. Paths may use the -o patterns (``%a``, ``^array_index^``...), so array elements stage
out to their own files.

aws host: stagein files are uploaded to the host's bucket at submit (the submit directory does not exist on
a cloud worker) and downloaded before the job starts; stageout files are uploaded after the job and fetched
with ``qget JOB``. Local host: the worker shares the machine, so stagein copies the file into the work
directory when the job starts and stageout copies results back when it ends (``qget`` has nothing to fetch).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hyper.errors import HyperError, UsageError
from hyper.models import Job
from hyper.workflows.area import Area, S3Area


def parse(items: list[str], cwd: str, what: str) -> list[tuple[str, str]]:
    """[(exec path, absolute submit path)] from PBS staging specs."""
    out = []
    for item in items:
        for spec in (s.strip() for s in item.split(",")):
            if not spec:
                continue
            if "@" in spec:
                job_path, _, rest = spec.partition("@")
                _, sep, submit_path = rest.partition(":")
                if not sep or not job_path or not submit_path:
                    raise UsageError(f"{what} {spec!r} does not parse",
                                     f"write -W {what}=EXEC_PATH@HOST:SUBMIT_PATH, e.g. data.csv@here:data/in.csv")
            else:
                job_path = submit_path = spec
            if os.path.isabs(job_path) or ".." in Path(job_path).parts:
                raise UsageError(f"{what} {spec!r}: {job_path} must be relative to the job's directory",
                                 "name the file inside the job's working directory, e.g. data.csv")
            out.append((job_path, os.path.normpath(os.path.join(cwd, os.path.expanduser(submit_path)))))
    return out


def prepare(stagein: list[str], stageout: list[str], cwd: str, area: Area, token: str
            ) -> tuple[list[dict], list[dict]]:
    """Check (and on an aws host upload) the stagein files at submit; records for the job's spec."""
    ins: list[dict] = []
    outs: list[dict] = []
    for n, (job_path, src) in enumerate(parse(stagein, cwd, "stagein")):
        if "%" not in src and "^" not in src:
            p = Path(src)
            if not p.is_file():
                what = "is a directory (stage files, e.g. a tar of it)" if p.is_dir() else "does not exist"
                raise UsageError(f"stagein file {src} {what}", "check the path; it is read when you submit")
            if not os.access(p, os.R_OK):
                raise UsageError(f"stagein file {src} is not readable", f"chmod u+r {src}")
        ins.append({"job": job_path, "src": src, "key": f"stage/{token}/in/{n}-{Path(job_path).name}"})
    for n, (job_path, dest) in enumerate(parse(stageout, cwd, "stageout")):
        outs.append({"job": job_path, "dest": dest, "key": f"stage/{token}/out/{{element}}/{n}-{Path(job_path).name}"})
    return ins, outs


def upload_stagein(ins: list[dict], area: Area) -> None:
    if area.kind == "s3":
        for item in ins:
            area.put(Path(item["src"]), item["key"])


def _expand(path: str, job: Job) -> str:
    from hyper.outputs import expand_path

    return expand_path(path, job)


def out_key(item: dict, job: Job) -> str:
    return item["key"].replace("{element}", "job" if job.index is None else str(job.index))


def stage_in(job: Job, cwd: Path, area: Area) -> None:
    """Before the job: its stagein files into its working directory (copy locally, download on aws)."""
    for item in job.require_spec().stagein:
        dest = cwd / _expand(item["job"], job)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if area.kind == "s3":
            area.get(item["key"], dest)
            continue
        src = _expand(item["src"], job)
        try:
            shutil.copyfile(src, dest)
        except OSError as exc:
            raise HyperError(f"stagein of {src} failed: {exc.strerror}", "the file moved after qsub") from None


def stage_out(job: Job, cwd: Path, area: Area) -> list[str]:
    """After the job: results back (copy locally, upload on aws). Returns warnings for missing results."""
    warnings = []
    for item in job.require_spec().stageout:
        src = cwd / _expand(item["job"], job)
        if not src.is_file():
            warnings.append(f"stageout: {src} was not produced by the job")
            continue
        try:
            if area.kind == "s3":
                area.put(src, out_key(item, job))
            else:
                dest = Path(_expand(item["dest"], job))
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
        except (OSError, HyperError) as exc:
            warnings.append(f"stageout of {src} failed: {getattr(exc, 'message', None) or exc}")
    return warnings


def fetch(job: Job, elements: list[Job], area: Area, dest_dir: str | None) -> list[tuple[str, str]]:
    """``qget``: download a finished job's stageout files; [(source, local path)]."""
    got = []
    for element in elements or [job]:
        for item in job.require_spec().stageout:
            dest = Path(_expand(item["dest"], element))
            if dest_dir:
                dest = Path(dest_dir) / dest.name
            if isinstance(area, S3Area):
                key = out_key(item, element)
                if not area.exists(key):
                    continue
                area.get(key, dest)
                got.append((area.url(key), str(dest)))
            else:
                src = Path(_expand(item["dest"], element))
                if not src.exists():
                    continue
                if dest != src:
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(src, dest)
                got.append((str(src), str(dest)))
    return got
