"""Where a job's stdout and stderr go: -o/-e paths with their filename patterns, and the defaults.

Why a module of its own: the worker writes the files and the job services (qlog, qstat -f, qsub's notes) find
them again, by the same rule; neither side should import the other for it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hyper.models import Job

_PATTERN = re.compile(r"%(%|[jAaxuNJI])")


def expand_path(pattern: str, job: Job) -> str:
    """Filename patterns in -o/-e paths, so array elements never share one file.

    Slurm: %j (job id; id_index for an element), %A (array's id), %a (index), %x (name), %u (user), %N (host).
    LSF: %J (job id), %I (index, 0 outside arrays). PBS: ^array_index^. %% is a literal %.
    """
    index = "" if job.index is None else str(job.index)
    values = {"%": "%", "j": str(job.id) if job.index is None else f"{job.id}_{index}", "A": str(job.id),
              "a": index, "x": job.name, "u": job.user, "N": os.uname().nodename.split(".")[0],
              "J": str(job.id), "I": index or "0"}
    out = _PATTERN.sub(lambda m: values[m.group(1)], pattern)
    return out.replace("^array_index^", index)


PER_ELEMENT_PATTERNS = ("%a", "%j", "%I", "^array_index^")  # any one keeps array elements apart


def output_paths(job: Job, logs_dir: Path) -> tuple[Path, Path | None]:
    """Where this job's stdout and stderr go; stderr is None when joined into stdout (-j oe)."""
    spec = job.require_spec()
    base = str(job.id) if job.index is None else f"{job.id}.{job.index}"

    def resolve(path: str | None, default: str) -> Path:
        if not path:
            return logs_dir / default
        p = Path(expand_path(path, job))
        if not p.is_absolute():  # Slurm and LSF: relative to the job's working directory; PBS: the submit dir
            p = Path(spec.chdir if spec.family in ("SBATCH", "BSUB") and spec.chdir else spec.submit_dir) / p
        if p.is_dir():  # PBS: a directory gets the default file name inside it
            p = p / default
        return p

    out = resolve(spec.output, f"{base}.out")
    err = resolve(spec.error, f"{base}.err")
    if spec.join == "oe":
        return out, None
    if spec.join == "eo":
        return err, None
    return out, err
