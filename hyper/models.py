"""Plain records that cross layers: resources an admin manages and the jobs users submit.

They are dataclasses with ``to_dict``/``from_dict`` so every store can keep them as JSON (SQLite) or as
item attributes (DynamoDB) without knowing their fields, and every renderer can print them.

The records' base is in hyper/records.py; regions, images, clusters and definitions are in
hyper/resource_records.py and created on first use through this module, so a qstat never pays for them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from hyper.errors import HyperError
from hyper.records import Record, Resource
from hyper.states import JobState

if TYPE_CHECKING:
    from hyper.resource_records import Cluster, Definition, Image, Region

    RESOURCE_KINDS: dict[str, type[Resource]]  # kind -> class, every kind

__all__ = ["RESOURCE_KINDS", "Cluster", "Definition", "Image", "Job", "JobSpec", "Queue", "Record", "Region",
           "Resource", "resource_class"]
_LAZY = frozenset({"Region", "Image", "Cluster", "Definition", "RESOURCE_KINDS"})


def __getattr__(name: str) -> object:
    """Regions, images, clusters, definitions and RESOURCE_KINDS, from hyper/resource_records.py on first use."""
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return _load_resource_kinds()[name]


def _load_resource_kinds() -> dict[str, Any]:
    from hyper import resource_records as rr

    kinds: dict[str, type[Resource]] = {c.KIND: c for c in (rr.Region, rr.Cluster, Queue, rr.Image, rr.Definition)}
    loaded = dict(Region=rr.Region, Image=rr.Image, Cluster=rr.Cluster, Definition=rr.Definition,
                  RESOURCE_KINDS=kinds)
    globals().update(loaded)  # later lookups find them without coming back here
    return loaded


def resource_class(kind: str) -> type[Resource]:
    """RESOURCE_KINDS[kind], without creating the other kinds when a queue is read (every local store open
    reads the default queue)."""
    return Queue if kind == "queue" else _load_resource_kinds()["RESOURCE_KINDS"][kind]


@dataclass
class Queue(Resource):
    KIND: ClassVar[str] = "queue"
    cluster: str = "local"
    weights: dict[str, int] | str = field(default_factory=dict)  # region -> weight, or "auto"
    priority: int = 0
    auto_weights: dict[str, int] = field(default_factory=dict)  # computed for "auto" (spot scores, prices)
    auto_weights_at: float = 0.0  # when they were computed (epoch seconds); 0 = never
    auto_weights_note: str = ""  # where they came from, or why the last refresh kept the old ones
    max_cost_per_hour: float = 0.0  # USD/h the queue's workers may cost together; 0 = no limit


@dataclass
class JobSpec(Record):
    """What a submission asked for; written once at submit, shared by every element of an array."""

    command: list[str] | None = None  # argv, run without a shell (`qsub -- cmd args`)
    script: str | None = None  # script text, run by its shebang interpreter or /bin/sh
    script_name: str = ""
    env: dict[str, str] = field(default_factory=dict)
    submit_dir: str = ""
    chdir: str | None = None
    output: str | None = None
    error: str | None = None
    join: str | None = None  # "oe": stderr into stdout, "eo": the reverse
    walltime: int | None = None  # seconds
    retry_on_exit: bool = False  # count non-zero exits against retries too, not just lost workers
    vcpus: int | None = None
    memory_mib: int | None = None
    gpus: int | None = None
    host: str = "local"
    family: str | None = None  # the script's directive family (PBS, SBATCH, BSUB, HYPER), as submitted
    args: list[str] = field(default_factory=list)  # arguments after the script (`qsub job.sh a b`, PBS -F)
    # data-parallel workflows (hyper/workflows): where an array's parts are, the array a finaliser closes,
    # files copied in and out through the host's staging area, and who is told when the job ends
    split: dict | None = None  # {"area": "file"|"s3", "location": dir or key prefix, "parts": N, "source": name}
    finalizes: dict | None = None  # {"array": id, "parts": N, "split": {...} or None, "when": "afterany"}
    stagein: list[dict] = field(default_factory=list)  # {"job": path in the work dir, "src": submit path, "key": ..}
    stageout: list[dict] = field(default_factory=list)  # {"job": path in the work dir, "dest": submit path}
    stage: str | None = None  # the staging area's location for this job (dir or key prefix)
    notify: str | None = None  # URL to POST the end-of-job document to


@dataclass
class Job(Record):
    """One row: a single job, an array parent (``array`` set, ``index`` None) or an array element."""

    id: int = 0
    index: int | None = None
    name: str = ""
    user: str = ""
    queue: str = ""
    definition: str = ""
    state: JobState = JobState.QUEUED
    reason: str = ""
    priority: int = 0
    submitted: float | None = None
    started: float | None = None
    ended: float | None = None
    exit_code: int | None = None
    attempts: int = 0
    retries: int = 0
    worker: str | None = None
    lease: float | None = None
    pid: int | None = None
    spec: JobSpec | None = None
    array: str | None = None  # canonical array text on parents
    array_total: int = 0
    array_started: int = 0  # elements materialised so far
    array_done: int = 0  # elements finished (incl. deleted before start)
    array_failed: int = 0
    array_running: int = 0
    array_deleted: int = 0  # elements deleted (before or while running)
    depends: list[str] = field(default_factory=list)  # "afterok:12" as submitted
    # attempt number (as text) -> where its output is in CloudWatch Logs (hyper.aws.logs.LogWindow text);
    # aws hosts only: a local job's output is its files
    logs: dict[str, str] = field(default_factory=dict)

    @property
    def is_array(self) -> bool:
        return self.array is not None and self.index is None

    def require_spec(self) -> JobSpec:
        """The spec of a job read with it (claimed, or fetched whole): the worker's hooks and the workflow
        commands only see such jobs, so a row without one is a bug, reported as one line rather than a crash."""
        if self.spec is None:
            raise HyperError(f"job {self.job_id} was read without its spec", "report this as a bug in hyper")
        return self.spec

    @property
    def job_id(self) -> str:
        if self.index is not None:
            return f"{self.id}[{self.index}]"
        return f"{self.id}[]" if self.array is not None else str(self.id)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data["state"] = self.state.value
        data["job_id"] = self.job_id
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Job":
        job = super().from_dict(data)
        job.state = JobState(job.state)
        if isinstance(job.spec, dict):
            job.spec = JobSpec.from_dict(job.spec)
        return job
