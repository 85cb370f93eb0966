"""AWS Batch for the scheduler: per-region clients, the SubmitJob requests (pure), live workers (pure), calls.

Worker contract. A worker is one Batch job (or one child of a Batch array job) running the worker image
(``example-worker-image/start.sh``); its container environment says where the jobs are and which ones to take:
``HYPER_TABLE_PREFIX``, ``HYPER_MAIN_REGION``, ``HYPER_QUEUE``, ``HYPER_DEFINITION``, ``HYPER_REGION`` (where
it runs; ``qstat -f`` shows it) and ``HYPER_WORKER_IDLE``, ``AWS_ENDPOINT_URL`` when the host sets them. The job
definition (provisioning) adds ``HYPER_MAX_JOBS`` (the ratio) and the definition's own environment. Workers
claim jobs from DynamoDB with conditional updates, so starting a worker never hands it a particular job: a
worker too many idles out, a job is never run twice.

Names (``hyper.aws.names``): the job queue of cluster C in every region is ``<prefix>C``, the job definition of
definition D is ``<prefix>D`` (latest ACTIVE revision), a worker array is ``<prefix><queue>-<definition>-<tick>``
tagged ``hyper:prefix``/``hyper:queue``/``hyper:definition``. The tags let a restarted scheduler count the
workers it (or a crashed predecessor) already asked for, so it never provisions twice.

Nothing here imports boto3 at module import time; the pure functions run without it (``--dry-run``, tests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Iterable

from hyper.aws import names
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Definition

if TYPE_CHECKING:
    from hyper.aws.session import AwsClient

MAX_ARRAY_SIZE = 10_000  # Batch: array jobs have 2..10,000 children


class BatchStatus(StrEnum):
    """AWS Batch's job statuses, as its API spells them (hyper/backends/batch.py maps them onto the worker
    states). A StrEnum: they compare equal to, and are sent as, the API's words."""

    SUBMITTED = "SUBMITTED"
    PENDING = "PENDING"
    RUNNABLE = "RUNNABLE"
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"


ACTIVE_STATUSES = (BatchStatus.SUBMITTED, BatchStatus.PENDING, BatchStatus.RUNNABLE, BatchStatus.STARTING,
                   BatchStatus.RUNNING)  # listed in this order: see live
FINISHED_STATUSES = (BatchStatus.SUCCEEDED, BatchStatus.FAILED)
PAGE_SIZE = 100  # ListJobs maxResults
DESCRIBE_CHUNK = 100  # DescribeJobs takes at most 100 ids
DEFAULT_MAX_PAGES = 100  # per (region, job queue, status): 10,000 jobs before a listing counts as truncated
TICK_PATTERN = re.compile(r"^[0-9a-z]+$")


# ---------------------------------------------------------------- clients per region
def regional_client(host: Host, service: str, region: str, *, max_attempts: int | None = None) -> AwsClient:
    """A client for `service` in `region` (see hyper.aws.session.client)."""
    from hyper.aws.session import client

    return client(host, service, region=region, max_attempts=max_attempts)


# ---------------------------------------------------------------- SubmitJob requests (pure)
@dataclass
class SubmitRequest:
    """One SubmitJob call: where it goes, what it is for, and the exact request parameters."""

    region: str
    queue: str
    definition: str
    workers: int
    request: dict

    @property
    def job_name(self) -> str:
        return self.request["jobName"]

    def to_dict(self) -> dict:
        return {"region": self.region, "queue": self.queue, "definition": self.definition,
                "workers": self.workers, "SubmitJob": self.request}


def array_sizes(n: int) -> list[int]:
    """Split n workers into Batch jobs of at most 10,000, as evenly as possible (never a stray 1 after 10,000)."""
    if n <= 0:
        return []
    parts = -(-n // MAX_ARRAY_SIZE)
    return [n // parts + (1 if i < n % parts else 0) for i in range(parts)]


def worker_environment(host: Host, queue: str, definition: str, region: str, worker_idle: float | None = None
                       ) -> list[dict[str, str]]:
    """The container environment of a worker (start.sh reads it); HYPER_REGION is where the worker runs."""
    env = {"HYPER_TABLE_PREFIX": names.prefix(host), "HYPER_MAIN_REGION": host.main_region or "",
           "HYPER_QUEUE": queue, "HYPER_DEFINITION": definition, "HYPER_REGION": region}
    if worker_idle is not None:
        env["HYPER_WORKER_IDLE"] = f"{worker_idle:g}"
    if host.endpoint_url:  # an emulator or private endpoint: workers must talk to the same place
        env["AWS_ENDPOINT_URL"] = host.endpoint_url
    return [{"name": k, "value": v} for k, v in sorted(env.items())]


def resource_requirements(definition: Definition) -> list[dict[str, str]]:
    out = [{"type": "VCPU", "value": str(max(1, definition.vcpus))},
           {"type": "MEMORY", "value": str(max(1, definition.memory_mib))}]
    if definition.gpus:
        out.append({"type": "GPU", "value": str(definition.gpus)})
    return out


def render_submissions(host: Host, counts: dict[tuple[str, str, str], int], definitions: dict[str, Definition],
                       clusters: dict[str, str], tick: str, *, revisions: dict[tuple[str, str], int] | None = None,
                       worker_idle: float | None = None) -> list[SubmitRequest]:
    """The SubmitJob requests for new workers per (queue, definition, region) (pure; --dry-run prints them).

    One array job per (queue, definition, region) per tick (size 2..10,000; larger counts become several
    arrays), a plain job for a single worker. ``clusters`` maps each queue to its cluster (the job queue);
    ``revisions`` pins the latest ACTIVE revision of a job definition per (region, definition) when known.
    """
    if not TICK_PATTERN.match(tick):
        raise ValueError(f"tick id {tick!r} must be lower-case letters and digits")
    revisions = revisions or {}
    out = []
    for (queue, definition, region), n in sorted(counts.items(), key=lambda kv: (kv[0][2], kv[0][0], kv[0][1])):
        if n <= 0:
            continue
        d = definitions[definition]
        job_definition = names.job_definition(host, definition)
        if (region, definition) in revisions:
            job_definition = f"{job_definition}:{revisions[(region, definition)]}"
        sizes = array_sizes(n)
        for i, size in enumerate(sizes):
            part = tick if len(sizes) == 1 else f"{tick}p{i + 1}"
            request: dict[str, Any] = {
                "jobName": names.batch_job_name(host, queue, definition, part),
                "jobQueue": names.job_queue(host, clusters[queue]),
                "jobDefinition": job_definition,
            }
            if size > 1:
                request["arrayProperties"] = {"size": size}
            request["containerOverrides"] = {
                "environment": worker_environment(host, queue, definition, region, worker_idle),
                "resourceRequirements": resource_requirements(d),
            }
            request["tags"] = names.batch_job_tags(host, queue, definition)
            out.append(SubmitRequest(region, queue, definition, size, request))
    return out


# ---------------------------------------------------------------- live workers (pure)
@dataclass
class LiveJob:
    """A Batch job in one of our job queues that is not finished: how many workers it still stands for."""

    job_id: str
    name: str
    status: str
    workers: int  # 1 for a plain job; for an array, its size minus finished children
    vcpus: int  # per worker, as Batch reports it (0: unknown)
    queue: str | None = None  # None: not one of this deployment's worker jobs
    definition: str | None = None

    @property
    def key(self) -> tuple[str, str] | None:
        return (self.queue, self.definition) if self.queue is not None and self.definition is not None else None


def parse_job_name(name: str, prefix: str, pairs: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """The (queue, definition) a worker job name stands for, when exactly one known pair fits it."""
    found = []
    for queue, definition in pairs:
        head = names._batch_safe(f"{prefix}{queue}-{definition}-")
        if name.startswith(head) and TICK_PATTERN.match(name[len(head):]):
            found.append((queue, definition))
    return found[0] if len(found) == 1 else None


def identify(job: dict, prefix: str, pairs: Iterable[tuple[str, str]]) -> tuple[str, str] | None:
    """Whose worker a described job is: by its tags, else (tags missing) by its name."""
    tags = job.get("tags") or {}
    if names.TAG_QUEUE in tags and names.TAG_DEFINITION in tags:
        if tags.get(names.TAG_PREFIX, prefix) != prefix:
            return None  # another deployment's worker in a queue of ours
        return tags[names.TAG_QUEUE], tags[names.TAG_DEFINITION]
    return parse_job_name(str(job.get("jobName", "")), prefix, pairs)


def is_child(job: dict) -> bool:
    """An array child (``<parent id>:<index>``): its parent already counts it."""
    return ":" in str(job.get("jobId", "")) or "index" in (job.get("arrayProperties") or {})


def job_vcpus(job: dict) -> int:
    container = job.get("container") or {}
    for req in container.get("resourceRequirements") or []:
        if req.get("type") == "VCPU":
            try:
                return max(0, int(float(req.get("value", 0))))
            except (TypeError, ValueError):
                return 0
    try:
        return max(0, int(container.get("vcpus") or 0))
    except (TypeError, ValueError):
        return 0


def workers_of(job: dict) -> int:
    """Workers a job still stands for: 1, or an array's size minus its finished children (never negative)."""
    if job.get("status") not in ACTIVE_STATUSES:
        return 0
    array = job.get("arrayProperties") or {}
    if "size" not in array:
        return 1
    summary = array.get("statusSummary") or {}
    finished = sum(int(summary.get(s) or 0) for s in FINISHED_STATUSES)
    return max(0, int(array["size"]) - finished)


def live_workers(jobs: Iterable[dict], prefix: str, pairs: Iterable[tuple[str, str]]) -> list[LiveJob]:
    """Unfinished jobs among DescribeJobs results (children skipped, duplicates once), identified when ours."""
    pairs = list(pairs)
    seen = set()
    out = []
    for job in jobs:
        job_id = str(job.get("jobId", ""))
        if job_id in seen or is_child(job):
            continue
        seen.add(job_id)
        n = workers_of(job)
        if n <= 0:
            continue
        key = identify(job, prefix, pairs)
        out.append(LiveJob(job_id, str(job.get("jobName", "")), str(job.get("status")), n, job_vcpus(job),
                           key[0] if key else None, key[1] if key else None))
    return out


# ---------------------------------------------------------------- errors
def error_code(exc: BaseException) -> str:
    from hyper.aws.session import error_code as code

    return code(exc)


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    text = (response.get("Error") or {}).get("Message") or str(exc)
    return " ".join(str(text).split())


def is_throttling(exc: BaseException) -> bool:
    from hyper.aws.session import THROTTLING_CODES

    status = ((getattr(exc, "response", None) or {}).get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return error_code(exc) in THROTTLING_CODES or status == 429


def never_sent(exc: BaseException) -> bool:
    """The request did not reach AWS (so retrying it cannot start a second array)."""
    import botocore.exceptions as bx

    return isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ProxyConnectionError))


def batch_error(exc: BaseException, host: Host, region: str, action: str) -> HyperError:
    """A Batch failure in one region as a one-line HyperError naming the region and Batch's own message."""
    if isinstance(exc, HyperError):
        return exc
    import botocore.exceptions as bx

    if isinstance(exc, bx.ClientError):
        from hyper.aws.session import CREDENTIAL_CODES, DENIED_CODES, translate

        code = error_code(exc)
        if code in CREDENTIAL_CODES or code in DENIED_CODES:
            err = translate(exc, host, "batch", f"{action} in {region}")
            return err
        if is_throttling(exc):
            return HyperError(f"AWS Batch {action} in {region} was throttled after every retry ({code})",
                              "Batch allows 50 SubmitJob/s per account; the next tick tries again")
        return HyperError(f"AWS Batch {action} in {region} failed: {code}: {error_message(exc)}",
                          "run with HYPER_DEBUG=1 for the full response")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionClosedError,
                        bx.ReadTimeoutError, bx.SSLError, bx.ProxyConnectionError)):
        at = f" at {host.endpoint_url}" if host.endpoint_url else ""
        return HyperError(f"cannot reach AWS Batch in {region}{at} for {action} (host {host.name!r}): "
                          f"{type(exc).__name__}", "check the network and that the region is enabled for the "
                          "account; the other regions are still scheduled")
    from hyper.aws.session import translate

    return translate(exc, host, "batch", f"{action} in {region}")


# ---------------------------------------------------------------- calls
@dataclass
class QueueListing:
    """The unfinished jobs of one job queue in one region, described."""

    jobs: list[dict] = field(default_factory=list)
    truncated: bool = False  # more pages than max_pages: the count is a lower bound


class BatchApi:
    """The Batch calls the scheduler makes, per region; every method raises botocore errors as they come."""

    def __init__(self, host: Host, *, max_pages: int = DEFAULT_MAX_PAGES):
        self.host = host
        self.max_pages = max_pages

    def client(self, region: str, *, submit: bool = False) -> AwsClient:
        # SubmitJob has no idempotency token: botocore must not resend one whose answer was lost (a second
        # array would start). Throttled or never-sent submissions are retried by the scheduler instead.
        return regional_client(self.host, "batch", region, max_attempts=1 if submit else None)

    def job_queues(self, region: str, queue_names: list[str]) -> dict[str, dict]:
        """The job queues among `queue_names` that exist in `region`, by name."""
        batch = self.client(region)
        found: dict[str, dict] = {}
        wanted = sorted(set(queue_names))
        for i in range(0, len(wanted), 100):
            kwargs: dict[str, Any] = {"jobQueues": wanted[i:i + 100]}
            for _ in range(self.max_pages):
                page = batch.describe_job_queues(**kwargs)
                for q in page.get("jobQueues", []):
                    if q.get("jobQueueName") in wanted:
                        found[q["jobQueueName"]] = q
                if not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]
        return found

    def definition_revision(self, region: str, name: str) -> int | None:
        """The latest ACTIVE revision of a job definition in `region`, or None when it has none."""
        batch = self.client(region)
        kwargs: dict[str, Any] = {"jobDefinitionName": name, "status": "ACTIVE", "maxResults": 100}
        best = None
        for _ in range(self.max_pages):
            page = batch.describe_job_definitions(**kwargs)
            for d in page.get("jobDefinitions", []):
                if d.get("jobDefinitionName") == name and d.get("status", "ACTIVE") == "ACTIVE":
                    best = max(best or 0, int(d.get("revision", 0)))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        return best

    def active_jobs(self, region: str, job_queue: str, also: Iterable[str] = ()) -> QueueListing:
        """Unfinished jobs of a job queue, described (tags, array status summaries).

        Statuses are listed from the earliest to the latest: a job moving on between two calls is seen again
        (and counted once), never skipped. ``also`` are ids of jobs just submitted, which ListJobs may not show
        yet (it is eventually consistent); they are described directly.
        """
        batch = self.client(region)
        listing = QueueListing()
        ids: list[str] = []
        seen = set()
        for status in ACTIVE_STATUSES:
            kwargs: dict[str, Any] = {"jobQueue": job_queue, "jobStatus": status, "maxResults": PAGE_SIZE}
            for page_no in range(self.max_pages):
                page = batch.list_jobs(**kwargs)
                for summary in page.get("jobSummaryList", []):
                    job_id = summary.get("jobId")
                    if job_id and job_id not in seen and not is_child(summary):
                        seen.add(job_id)
                        ids.append(job_id)
                token = page.get("nextToken")
                if not token:
                    break
                if page_no == self.max_pages - 1:
                    listing.truncated = True
                kwargs["nextToken"] = token
        ids.extend(j for j in also if j not in seen)
        listing.jobs = self.describe(region, ids)
        return listing

    def describe(self, region: str, job_ids: list[str]) -> list[dict]:
        batch = self.client(region)
        out = []
        for i in range(0, len(job_ids), DESCRIBE_CHUNK):
            out.extend(batch.describe_jobs(jobs=job_ids[i:i + DESCRIBE_CHUNK]).get("jobs", []))
        return out

    def submit(self, region: str, request: dict) -> dict:
        return self.client(region, submit=True).submit_job(**request)

    def terminate(self, region: str, job_id: str, reason: str) -> None:
        self.client(region).terminate_job(jobId=job_id, reason=reason)
