"""Plain records that cross layers: resources an admin manages and the jobs users submit.

They are dataclasses with ``to_dict``/``from_dict`` so every store can keep them as JSON (SQLite) or as
item attributes (DynamoDB) without knowing their fields, and every renderer can print them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

from hyper.errors import HyperError
from hyper.states import JobState

_FIELDS: dict[type, frozenset[str]] = {}


def _fields(cls: type[Record]) -> frozenset[str]:
    """Field names per class, computed once: listing 100,000 jobs builds 200,000 records."""
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return known


class Record:
    """Serialisation shared by every record: unknown keys are dropped so old rows load in new code."""

    # declared (not set) so the type checker knows every record is a dataclass; @dataclass fills it per subclass
    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = _fields(cls)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Resource(Record):
    """An admin-managed object; ``kind`` names its table section, ``status``/``message`` its deployment."""

    KIND: ClassVar[str] = ""
    name: str = ""
    status: str = "ACTIVE"
    message: str = ""


@dataclass
class Region(Resource):
    """An AWS region the host may run workers in; the main region holds the host's tables and queues."""

    KIND: ClassVar[str] = "region"
    main: bool = False
    vpc_cidr: str = ""
    vpc_id: str = ""
    subnets: list[str] = field(default_factory=list)
    vpc_endpoints: bool = False
    route_tables: list[str] = field(default_factory=list)  # existing VPC: where S3/DynamoDB gateway endpoints go


@dataclass
class Image(Resource):
    """A worker image: built from a directory, or an existing URI; replicated to every enabled region."""

    KIND: ClassVar[str] = "image"
    path: str = ""
    uri: str = ""
    # built images: the tag of the last build (its context's content hash; tags are immutable) and the digest
    # every region's job definition pins (hyper/aws/ecr.py)
    tag: str = ""
    digest: str = ""


@dataclass
class Cluster(Resource):
    KIND: ClassVar[str] = "cluster"
    type: str = "local"  # local | batch | eks
    max_vcpus: int = 0
    min_vcpus: int = 0
    instance_types: list[str] = field(default_factory=list)
    gpus_per_instance: int = 0
    spot: bool = False
    allocation_strategy: str = ""
    regions: list[str] = field(default_factory=list)
    overrides: dict[str, dict] = field(default_factory=dict)  # region -> {max_vcpus: .., instance_types: ..}
    eks_cluster: str = ""  # eks: the EKS cluster's name (the same in every region the hyper cluster spans)
    namespace: str = ""  # eks: where worker Jobs go (default hyper)
    kubeconfig: str = ""  # eks: kubeconfig file (default: $KUBECONFIG, ~/.kube/config)
    context: str = ""  # eks: kubeconfig context (default: the file's current context)
    template: str = ""  # eks: a Jinja2 Job template replacing the packaged one
    create_eks: bool = False  # eks: provisioning also creates the EKS cluster and a GPU node group
    # batch: which compute environment the stacks hold. 0: made before hyper used Batch's service-linked role
    # (a custom service role: no in-place infrastructure updates); 1: the first with the service-linked role;
    # each replacement (hyper.aws.templates.environment_generation) takes the next number and a new name
    environment_generation: int = 0


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
class Definition(Resource):
    KIND: ClassVar[str] = "definition"
    image: str = "local"
    vcpus: int = 1
    memory_mib: int = 1024
    gpus: int = 0
    timeout: int | None = None  # seconds; a job's own walltime may only be shorter
    retries: int = 0
    retry_on: str = "infra"  # what the default retries cover: infra (lost workers) or all (non-zero exits too)
    ratio: int = 1  # jobs per worker: N queued jobs want ceil(N / ratio) workers
    environment: dict[str, str] = field(default_factory=dict)
    job_role: str = ""  # IAM role ARN each job assumes (hyper/worker/credentials.py); "" = no AWS rights
    secrets: dict[str, str] = field(default_factory=dict)  # env NAME -> Secrets Manager / SSM parameter ARN


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


RESOURCE_KINDS: dict[str, type[Resource]] = {c.KIND: c for c in (Region, Cluster, Queue, Image, Definition)}
