"""The aws scheduler: queued jobs -> AWS Batch worker arrays across regions.

End to end against moto's server on 127.0.0.1 (Batch without Docker, DynamoDB for the host's tables) through
boto3 exactly as against AWS; the Batch compute environments, job queues and job definitions are created here
the way provisioning will create them (names from hyper.aws.names). moto marks Batch jobs SUCCEEDED at once,
so live/pending counting (what keeps a restarted scheduler from provisioning twice) is tested on recorded
DescribeJobs/ListJobs responses: through the pure functions, a stub Batch client under BatchApi, and an
in-memory Batch that answers with those shapes.
"""

from __future__ import annotations

import copy
import json
import uuid

import pytest
import requests
from botocore.exceptions import ClientError, EndpointConnectionError
from typer.testing import CliRunner

from hyper.aws import names
from hyper.aws.batch import (ACTIVE_STATUSES, BatchApi, QueueListing, array_sizes, live_workers, parse_job_name,
                             render_submissions)
from hyper.cli.scheduler import app as scheduler_app
from hyper.config import Host
from hyper.models import Cluster, Definition, Queue, Region
from hyper.scheduler.aws import BatchScheduler, TokenBucket, effective_weights, region_cap
from hyper.store.base import StoreDefaults

runner = CliRunner()
HOST = Host(name="prod", type="aws", main_region="us-east-1", table_prefix="hyper-prod-")
REGIONS = ("us-east-1", "eu-west-1")


# ---------------------------------------------------------------- recorded responses and fakes


def recorded_array(job_id: str, name: str, status: str, size: int, summary: dict | None, tags: dict | None,
                   vcpus: int = 1) -> dict:
    """A DescribeJobs entry of an array parent, shaped as AWS Batch returns it."""
    job = {
        "jobArn": f"arn:aws:batch:us-east-1:123456789012:job/{job_id}",
        "jobName": name,
        "jobId": job_id,
        "jobQueue": "arn:aws:batch:us-east-1:123456789012:job-queue/hyper-prod-gpu",
        "status": status,
        "attempts": [],
        "createdAt": 1763900000000,
        "dependsOn": [],
        "jobDefinition": "arn:aws:batch:us-east-1:123456789012:job-definition/hyper-prod-small:3",
        "parameters": {},
        "container": {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/worker:1", "command": [],
                      "volumes": [], "environment": [], "mountPoints": [], "ulimits": [],
                      "resourceRequirements": [{"value": str(vcpus), "type": "VCPU"},
                                               {"value": "2048", "type": "MEMORY"}]},
        "arrayProperties": {"size": size},
        "platformCapabilities": ["EC2"],
        "eksAttempts": [],
    }
    if summary is not None:
        job["arrayProperties"]["statusSummary"] = summary
    if tags is not None:
        job["tags"] = tags
    return job


def summary(**counts: int) -> dict:
    out = {"STARTING": 0, "FAILED": 0, "RUNNING": 0, "SUCCEEDED": 0, "RUNNABLE": 0, "SUBMITTED": 0, "PENDING": 0}
    out.update(counts)
    return out


def plain(job_id: str, name: str, status: str, tags: dict | None, vcpus: int = 1) -> dict:
    job = recorded_array(job_id, name, status, 0, None, tags, vcpus)
    del job["arrayProperties"]
    return job


TAGS = names.batch_job_tags(HOST, "q1", "small")


class FakeStore(StoreDefaults):
    """What the scheduler reads from a Store: resources, the backlog, the expired-lease sweep (the rest: the
    protocol's defaults, e.g. no memory of past submissions)."""

    def __init__(self, resources: list, backlog: dict[tuple[str, str], int]):
        self.resources = resources
        self._backlog = dict(backlog)
        self.sweeps = 0

    def backlog(self):
        return dict(self._backlog)

    def list_resources(self, kind):
        return [r for r in self.resources if r.KIND == kind]

    def requeue_expired(self, now, on_lost=None):
        self.sweeps += 1
        return []

    def list_workers(self, live_since=None):
        return []


def resources(cluster_regions=REGIONS, weights=None, max_vcpus=1024, overrides=None, vcpus=1, gpus=0):
    return [Region(name="us-east-1", main=True), Region(name="eu-west-1"),
            Cluster(name="gpu", type="batch", max_vcpus=max_vcpus, regions=list(cluster_regions),
                    overrides=overrides or {}),
            Queue(name="q1", cluster="gpu", weights=weights if weights is not None else {"us-east-1": 3,
                                                                                         "eu-west-1": 1}),
            Definition(name="small", image="img", vcpus=vcpus, gpus=gpus, memory_mib=2048, ratio=10)]


class FakeBatch:
    """An in-memory AWS Batch behind the BatchApi interface, answering with the recorded shapes above."""

    max_pages = 100

    def __init__(self, regions=REGIONS, job_queues=("hyper-prod-gpu",), definitions=("hyper-prod-small",)):
        self.queues = {r: {q: {"jobQueueName": q, "state": "ENABLED", "status": "VALID"} for q in job_queues}
                       for r in regions}
        self.definitions = {(r, d): 3 for r in regions for d in definitions}
        self.jobs: dict[str, list[dict]] = {r: [] for r in regions}
        self.submits: list[tuple[str, dict]] = []
        self.refuse: dict[str, Exception] = {}
        self.throttles = 0  # SubmitJob calls to throttle before accepting

    def job_queues(self, region, queue_names):
        return {n: q for n, q in self.queues.get(region, {}).items() if n in queue_names}

    def definition_revision(self, region, name):
        return self.definitions.get((region, name))

    def active_jobs(self, region, job_queue, also=()):
        return QueueListing([copy.deepcopy(j) for j in self.jobs.get(region, [])
                             if j["status"] in ACTIVE_STATUSES])

    def submit(self, region, request):
        if region in self.refuse:
            raise self.refuse[region]
        if self.throttles:
            self.throttles -= 1
            raise ClientError({"Error": {"Code": "TooManyRequestsException", "Message": "Too Many Requests"},
                               "ResponseMetadata": {"HTTPStatusCode": 429}}, "SubmitJob")
        self.submits.append((region, request))
        job_id = str(uuid.uuid4())
        size = request.get("arrayProperties", {}).get("size")
        if size:
            job = recorded_array(job_id, request["jobName"], "SUBMITTED", size, {}, request["tags"])
        else:
            job = plain(job_id, request["jobName"], "SUBMITTED", request["tags"])
        self.jobs[region].append(job)
        return {"jobArn": job["jobArn"], "jobName": request["jobName"], "jobId": job_id}


def sizes_by_region(batch: FakeBatch) -> dict[str, int]:
    out: dict[str, int] = {}
    for region, request in batch.submits:
        out[region] = out.get(region, 0) + request.get("arrayProperties", {}).get("size", 1)
    return out


# ---------------------------------------------------------------- render (pure)


def test_render_submissions_exact_requests():
    definitions = {"small": Definition(name="small", vcpus=2, memory_mib=4096, gpus=1, ratio=10)}
    out = render_submissions(HOST, {("q1", "small", "eu-west-1"): 25, ("q1", "small", "us-east-1"): 1},
                             definitions, {"q1": "gpu"}, "t20261123154601a3f9",
                             revisions={("eu-west-1", "small"): 7}, worker_idle=60)
    assert [s.to_dict() for s in out] == [
        {"region": "eu-west-1", "queue": "q1", "definition": "small", "workers": 25, "SubmitJob": {
            "jobName": "hyper-prod-q1-small-t20261123154601a3f9",
            "jobQueue": "hyper-prod-gpu",
            "jobDefinition": "hyper-prod-small:7",
            "arrayProperties": {"size": 25},
            "containerOverrides": {
                "environment": [{"name": "HYPER_DEFINITION", "value": "small"},
                                {"name": "HYPER_MAIN_REGION", "value": "us-east-1"},
                                {"name": "HYPER_QUEUE", "value": "q1"},
                                {"name": "HYPER_REGION", "value": "eu-west-1"},
                                {"name": "HYPER_TABLE_PREFIX", "value": "hyper-prod-"},
                                {"name": "HYPER_WORKER_IDLE", "value": "60"}],
                "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"},
                                         {"type": "GPU", "value": "1"}]},
            "tags": {"hyper:host": "prod", "hyper:prefix": "hyper-prod-", "hyper:queue": "q1",
                     "hyper:definition": "small"}}},
        {"region": "us-east-1", "queue": "q1", "definition": "small", "workers": 1, "SubmitJob": {
            "jobName": "hyper-prod-q1-small-t20261123154601a3f9",
            "jobQueue": "hyper-prod-gpu",
            "jobDefinition": "hyper-prod-small",  # no revision known: Batch takes the latest ACTIVE one
            # a single worker is a plain job: Batch arrays have 2..10,000 children
            "containerOverrides": {
                "environment": [{"name": "HYPER_DEFINITION", "value": "small"},
                                {"name": "HYPER_MAIN_REGION", "value": "us-east-1"},
                                {"name": "HYPER_QUEUE", "value": "q1"},
                                {"name": "HYPER_REGION", "value": "us-east-1"},
                                {"name": "HYPER_TABLE_PREFIX", "value": "hyper-prod-"},
                                {"name": "HYPER_WORKER_IDLE", "value": "60"}],
                "resourceRequirements": [{"type": "VCPU", "value": "2"}, {"type": "MEMORY", "value": "4096"},
                                         {"type": "GPU", "value": "1"}]},
            "tags": {"hyper:host": "prod", "hyper:prefix": "hyper-prod-", "hyper:queue": "q1",
                     "hyper:definition": "small"}}},
    ]


def test_large_counts_split_into_arrays_of_at_most_10000():
    assert array_sizes(0) == [] and array_sizes(1) == [1] and array_sizes(2) == [2]
    assert array_sizes(10_000) == [10_000]
    assert array_sizes(10_001) == [5001, 5000]  # never a stray single job after a full array
    assert array_sizes(25_000) == [8334, 8333, 8333]
    out = render_submissions(HOST, {("q1", "small", "us-east-1"): 25_000},
                             {"small": Definition(name="small")}, {"q1": "gpu"}, "t1")
    assert [(s.job_name, s.request["arrayProperties"]["size"]) for s in out] == [
        ("hyper-prod-q1-small-t1p1", 8334), ("hyper-prod-q1-small-t1p2", 8333), ("hyper-prod-q1-small-t1p3", 8333)]
    assert sum(s.workers for s in out) == 25_000


def test_job_names_follow_batch_rules():
    long = Host(name="x", type="aws", main_region="us-east-1", table_prefix="my.team-" + "p" * 60 + "-")
    name = names.batch_job_name(long, "q" * 63, "d" * 63, "t20261123154601a3f9")
    assert len(name) == 128 and name.endswith("-t20261123154601a3f9")
    assert all(c.isalnum() or c in "-_" for c in name) and name[0].isalnum()
    assert names.batch_job_name(HOST, "q1", "small", "t1") == "hyper-prod-q1-small-t1"
    assert names.batch_job_name(Host(name="x", table_prefix="_x."), "q", "d", "t1") == "h_x_q-d-t1"
    with pytest.raises(ValueError):
        render_submissions(HOST, {("q1", "small", "us-east-1"): 2}, {"small": Definition(name="small")},
                           {"q1": "gpu"}, "T-1")


# ---------------------------------------------------------------- live workers (recorded responses)


def test_live_workers_from_recorded_describe_jobs():
    jobs = [
        # an array half done: 75 children, 4 succeeded and 1 failed -> 70 workers still to run or running
        recorded_array("a1", "hyper-prod-q1-small-t1", "PENDING", 75,
                       summary(SUCCEEDED=4, FAILED=1, RUNNING=20, RUNNABLE=50), TAGS),
        # just submitted: no status summary yet -> its whole size
        recorded_array("a2", "hyper-prod-q1-small-t2", "SUBMITTED", 25, {}, TAGS, vcpus=2),
        # a single worker, running
        plain("p1", "hyper-prod-q1-small-t3", "RUNNING", TAGS),
        # an array child (its parent counts it) and a duplicate listing of a1
        dict(plain("a1:3", "hyper-prod-q1-small-t1", "RUNNING", None), arrayProperties={"index": 3}),
        recorded_array("a1", "hyper-prod-q1-small-t1", "PENDING", 75, summary(SUCCEEDED=4), TAGS),
        # finished jobs are not live
        recorded_array("a3", "hyper-prod-q1-small-t4", "SUCCEEDED", 10, summary(SUCCEEDED=10), TAGS),
        # another deployment's worker that landed in this queue, and a foreign job
        plain("o1", "hyper-dev-q1-small-t5", "RUNNABLE", {**TAGS, "hyper:prefix": "hyper-dev-"}),
        plain("f1", "nightly-etl", "RUNNING", None, vcpus=4),
        # tags missing: identified by its name among the known (queue, definition) pairs
        plain("n1", "hyper-prod-q1-small-t6", "STARTING", None),
    ]
    live = live_workers(jobs, "hyper-prod-", [("q1", "small"), ("q2", "small")])
    assert [(j.job_id, j.workers, j.vcpus, j.key) for j in live] == [
        ("a1", 70, 1, ("q1", "small")), ("a2", 25, 2, ("q1", "small")), ("p1", 1, 1, ("q1", "small")),
        ("o1", 1, 1, None), ("f1", 1, 4, None), ("n1", 1, 1, ("q1", "small"))]


def test_job_name_fallback_is_unambiguous_or_nothing():
    pairs = [("a-b", "c"), ("a", "b-c"), ("q1", "small")]
    assert parse_job_name("hyper-prod-q1-small-t1", "hyper-prod-", pairs) == ("q1", "small")
    assert parse_job_name("hyper-prod-a-b-c-t1", "hyper-prod-", pairs) is None  # two pairs fit: tags decide
    assert parse_job_name("hyper-prod-q1-small-t1-x", "hyper-prod-", pairs) is None
    assert parse_job_name("other-q1-small-t1", "hyper-prod-", pairs) is None


class StubBatchClient:
    """Recorded ListJobs pages (with nextToken) and DescribeJobs answers, as a boto3 Batch client gives them."""

    def __init__(self, pages: dict[str, list[list[dict]]], described: dict[str, dict]):
        self.pages = pages
        self.described = described
        self.calls: list[tuple[str, dict]] = []

    def list_jobs(self, **kwargs):
        self.calls.append(("list_jobs", kwargs))
        pages = self.pages.get(kwargs["jobStatus"], [[]])
        n = int(kwargs.get("nextToken") or 0)
        out = {"jobSummaryList": pages[n]}
        if n + 1 < len(pages):
            out["nextToken"] = str(n + 1)
        return out

    def describe_jobs(self, jobs):
        self.calls.append(("describe_jobs", {"jobs": list(jobs)}))
        assert len(jobs) <= 100
        return {"jobs": [self.described[j] for j in jobs if j in self.described]}


class StubApi(BatchApi):
    def __init__(self, client, max_pages=100):
        super().__init__(HOST, max_pages=max_pages)
        self.stub = client

    def client(self, region, *, submit=False):
        return self.stub


def summary_of(job: dict) -> dict:
    out = {k: job[k] for k in ("jobArn", "jobId", "jobName", "createdAt", "status")}
    if "arrayProperties" in job:
        out["arrayProperties"] = {k: v for k, v in job["arrayProperties"].items() if k in ("size", "index")}
    return out


def test_batch_api_lists_every_active_status_pages_and_describes_in_chunks():
    arrays = [recorded_array(f"a{i}", f"hyper-prod-q1-small-t{i}", "PENDING", 10, summary(RUNNING=10), TAGS)
              for i in range(150)]
    child = dict(plain("a0:1", "hyper-prod-q1-small-t0", "RUNNING", None), arrayProperties={"index": 1})
    runner_job = plain("p1", "hyper-prod-q1-small-tx", "RUNNING", TAGS)
    pages = {"PENDING": [[summary_of(j) for j in arrays[:100]], [summary_of(j) for j in arrays[100:]]],
             "RUNNING": [[summary_of(child), summary_of(runner_job), summary_of(arrays[0])]]}
    stub = StubBatchClient(pages, {j["jobId"]: j for j in arrays + [runner_job]})
    listing = StubApi(stub).active_jobs("us-east-1", "hyper-prod-gpu", also=["a5", "recent1"])
    assert not listing.truncated
    assert [c[1]["jobStatus"] for c in stub.calls if c[0] == "list_jobs"] == [
        "SUBMITTED", "PENDING", "PENDING", "RUNNABLE", "STARTING", "RUNNING"]  # earliest status first
    assert all(c[1]["maxResults"] == 100 for c in stub.calls if c[0] == "list_jobs")
    described = [c[1]["jobs"] for c in stub.calls if c[0] == "describe_jobs"]
    assert [len(d) for d in described] == [100, 52]  # 150 arrays + p1 + the recent id ListJobs did not show
    assert described[-1][-1] == "recent1"
    live = live_workers(listing.jobs, "hyper-prod-", [("q1", "small")])
    assert sum(j.workers for j in live) == 150 * 10 + 1

    # bounded: more pages than max_pages makes the listing a lower bound, and says so
    stub = StubBatchClient(pages, {j["jobId"]: j for j in arrays})
    assert StubApi(stub, max_pages=1).active_jobs("us-east-1", "hyper-prod-gpu").truncated


# ---------------------------------------------------------------- the tick on an in-memory Batch


def scheduler(store, batch, **kwargs) -> BatchScheduler:
    sleeps = []
    s = BatchScheduler(HOST, store, api=batch, sleep=sleeps.append, **kwargs)
    s.sleeps = sleeps
    return s


def test_tick_splits_by_weights_and_a_restarted_scheduler_does_not_double_provision():
    store = FakeStore(resources(), {("q1", "small"): 1000})
    batch = FakeBatch()
    report = scheduler(store, batch).tick()
    assert report.problems == [] and store.sweeps == 1
    assert sizes_by_region(batch) == {"us-east-1": 75, "eu-west-1": 25}
    assert [(r.region, r.backlog, r.live, r.new) for r in report.rows] == [
        ("eu-west-1", 1000, 0, 25), ("us-east-1", 1000, 0, 75)]
    assert {s.region: s.workers for s in report.submitted} == {"us-east-1": 75, "eu-west-1": 25}

    # a new scheduler process (the old one crashed): Batch still shows both arrays pending -> nothing new
    again = scheduler(store, batch).tick()
    assert again.problems == [] and again.requests == [] and len(batch.submits) == 2
    assert [(r.region, r.live, r.new) for r in again.rows] == [("eu-west-1", 25, 0), ("us-east-1", 75, 0)]

    # 10 of eu-west-1's workers were lost (FAILED children): only the difference is started, split 3:1
    eu = batch.jobs["eu-west-1"][0]
    eu["status"] = "PENDING"
    eu["arrayProperties"]["statusSummary"] = summary(FAILED=10, RUNNING=15)
    third = scheduler(store, batch).tick()
    assert [(r.region, r.live, r.new) for r in third.rows] == [("eu-west-1", 15, 2), ("us-east-1", 75, 8)]


def test_caps_per_region_count_what_already_runs_there():
    store = FakeStore(resources(max_vcpus=40, overrides={"eu-west-1": {"max_vcpus": 4}}, vcpus=2),
                      {("q1", "small"): 1000})
    batch = FakeBatch()
    # 5 workers of 2 vCPUs already run in us-east-1, plus a foreign 4-vCPU job in the same job queue
    batch.jobs["us-east-1"] = [recorded_array("a1", "hyper-prod-q1-small-t1", "PENDING", 5, summary(RUNNING=5),
                                              TAGS, vcpus=2),
                               plain("f1", "nightly", "RUNNING", None, vcpus=4)]
    report = scheduler(store, batch).tick()
    # wanted 100 - 5 = 95; us-east-1 room (40 - 10 - 4) / 2 = 13, eu-west-1 4 / 2 = 2
    assert sizes_by_region(batch) == {"us-east-1": 13, "eu-west-1": 2}
    assert report.problems == []
    assert region_cap(store.list_resources("cluster")[0], "eu-west-1") == 4


def test_workers_in_a_region_without_weight_still_count():
    store = FakeStore(resources(weights={"us-east-1": 1}), {("q1", "small"): 1000})
    batch = FakeBatch()
    batch.jobs["eu-west-1"] = [recorded_array("a1", "hyper-prod-q1-small-t1", "RUNNABLE", 40, summary(), TAGS)]
    report = scheduler(store, batch).tick()
    assert [(r.region, r.live, r.new) for r in report.rows] == [("eu-west-1", 40, 0), ("us-east-1", 0, 60)]
    assert sizes_by_region(batch) == {"us-east-1": 60}


def test_zero_backlog_touches_nothing():
    store = FakeStore(resources(), {})
    batch = FakeBatch()
    report = scheduler(store, batch).tick()
    assert (report.rows, report.requests, report.problems, batch.submits) == ([], [], [], [])


def test_queue_without_an_enabled_region_is_reported_and_others_still_planned():
    res = resources() + [Cluster(name="empty", type="batch", max_vcpus=64, regions=[]),
                         Queue(name="q2", cluster="empty"),
                         Cluster(name="gone", type="batch", max_vcpus=64, regions=["ap-south-1"]),
                         Queue(name="q3", cluster="gone"),
                         Queue(name="q4", cluster="gpu", weights={"us-east-1": 0, "eu-west-1": 0})]
    store = FakeStore(res, {("q1", "small"): 100, ("q2", "small"): 50, ("q3", "small"): 5, ("q4", "small"): 5})
    batch = FakeBatch()
    report = scheduler(store, batch).tick()
    assert report.problems == [
        "queue q2: cluster empty has no region enabled; 50 queued task(s) wait (add regions: "
        "`hyper clusters update-cluster empty --regions us-east-1,...`)",
        "queue q3: cluster gone has no region enabled (its regions ap-south-1 are not usable on this host); "
        "5 queued task(s) wait (add the regions with `hyper regions add-region` or change the cluster's regions)",
        "queue q4: no region of cluster gpu (us-east-1, eu-west-1) has a positive weight for this queue; 5 queued "
        "task(s) wait (`hyper queues update-queue q4 --weights us-east-1=1` (or auto))",
    ]
    assert sizes_by_region(batch) == {"us-east-1": 8, "eu-west-1": 2}


def test_missing_job_definition_in_a_region_sends_its_share_elsewhere():
    store = FakeStore(resources(), {("q1", "small"): 1000})
    batch = FakeBatch()
    del batch.definitions[("eu-west-1", "hyper-prod-small")]
    report = scheduler(store, batch).tick()
    assert report.problems == [
        "region eu-west-1: Batch job definition hyper-prod-small (definition small) has no ACTIVE revision; no "
        "workers for it there (provision definition small with hyper (it registers the job definition in every "
        "region of the cluster))"]
    assert sizes_by_region(batch) == {"us-east-1": 100}
    assert {r.request["jobDefinition"] for r in report.requests} == {"hyper-prod-small:3"}


def test_batch_refusing_a_request_names_region_queue_and_message_and_others_go_through():
    store = FakeStore(resources(), {("q1", "small"): 1000})
    batch = FakeBatch()
    batch.refuse["eu-west-1"] = ClientError(
        {"Error": {"Code": "ClientException", "Message": "Job Queue is not in VALID state"}}, "SubmitJob")
    report = scheduler(store, batch).tick()
    assert len(report.problems) == 1
    assert report.problems[0] == (
        f"region eu-west-1: Batch refused hyper-prod-q1-small-{report.tick} (25 worker(s) for queue q1, definition "
        "small): ClientException: Job Queue is not in VALID state (fix the job queue or definition in that region; "
        "other regions were still submitted)")
    assert sizes_by_region(batch) == {"us-east-1": 75}


def test_throttling_backs_off_and_never_drops_silently():
    store = FakeStore(resources(), {("q1", "small"): 1000})
    batch = FakeBatch()
    batch.throttles = 3
    s = scheduler(store, batch)
    report = s.tick()
    assert report.problems == [] and sizes_by_region(batch) == {"us-east-1": 75, "eu-west-1": 25}
    assert len(s.sleeps) == 3 and s.sleeps[0] <= 0.5 < s.sleeps[2] <= 2.0  # exponential backoff with jitter

    # throttled past the budget: reported, not dropped silently (and the next tick plans them again)
    batch = FakeBatch()
    batch.throttles = 10**9
    s = scheduler(store, batch, throttle_budget=0.0)
    report = s.tick()
    assert report.submitted == [] and len(report.problems) == 2
    assert report.problems[0] == (
        f"region eu-west-1: Batch did not accept hyper-prod-q1-small-{report.tick} (25 worker(s) for queue q1, "
        "definition small) within 0 s (TooManyRequestsException); not submitted (the next tick plans these workers "
        "again)")


def test_unreachable_region_is_reported_and_its_pairs_wait():
    class Unreachable(FakeBatch):
        def job_queues(self, region, queue_names):
            if region == "eu-west-1":
                raise EndpointConnectionError(endpoint_url="https://batch.eu-west-1.amazonaws.com/")
            return super().job_queues(region, queue_names)

    store = FakeStore(resources(), {("q1", "small"): 1000})
    batch = Unreachable()
    report = scheduler(store, batch).tick()
    assert report.problems[0] == (
        "cannot reach AWS Batch in eu-west-1 for DescribeJobQueues (host 'prod'): EndpointConnectionError (check "
        "the network and that the region is enabled for the account; the other regions are still scheduled)")
    assert report.problems[1] == ("queue q1 / definition small: live workers in eu-west-1 are unknown, so no new "
                                  "workers this tick (see the message for that region above)")
    assert batch.submits == []  # unknown live count: never guess (a double provision costs money)


def test_auto_weights_are_equal_until_provisioning_computes_them():
    q = Queue(name="q", cluster="c", weights="auto")
    assert effective_weights(q, ["us-east-1", "eu-west-1"]) == {"us-east-1": 1, "eu-west-1": 1}
    q.auto_weights = {"us-east-1": 5, "eu-west-1": 0}
    assert effective_weights(q, ["us-east-1", "eu-west-1"]) == {"us-east-1": 5}
    assert effective_weights(Queue(name="q", weights={"us-east-1": 2, "ap-south-1": 1}),
                             ["us-east-1", "eu-west-1"]) == {"us-east-1": 2}


def test_token_bucket_holds_50_per_second_across_threads():
    now = [0.0]

    def sleep(s):
        now[0] += s

    bucket = TokenBucket(50, clock=lambda: now[0], sleep=sleep)
    for _ in range(150):
        bucket.take()
    assert now[0] == pytest.approx(2.0)  # a burst of 50, then 50/s


def test_a_local_host_has_no_scheduler(home):
    result = runner.invoke(scheduler_app, ["run", "--once"])
    assert result.exit_code == 1
    assert result.stderr == ("hyper scheduler: host 'local' is local: its agent starts workers on demand, no "
                             "scheduler needed (qsub starts the agent (or run `hyper agent run`); use --host NAME "
                             "for an aws host)\n")
    with pytest.raises(Exception, match="local host"):
        BatchScheduler(Host(), FakeStore([], {}))


# ---------------------------------------------------------------- end to end on moto's server


@pytest.fixture(scope="module")
def batch_role(moto_server):
    """Batch without Docker (jobs end at once), and the service role compute environments need."""
    import boto3

    requests.post(f"{moto_server}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    iam = boto3.client("iam", endpoint_url=moto_server, region_name="us-east-1", aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    return iam.create_role(RoleName=f"hyper-batch-{uuid.uuid4().hex[:8]}",
                           AssumeRolePolicyDocument="{}")["Role"]["Arn"]


def batch_client(url: str, region: str):
    import boto3

    return boto3.client("batch", endpoint_url=url, region_name=region)


def provision_batch(url: str, host: Host, role: str, regions, *, cluster="gpu", definition="small") -> None:
    """What provisioning creates per region: compute environment, job queue, job definition (names.py)."""
    for region in regions:
        b = batch_client(url, region)
        ce = b.create_compute_environment(computeEnvironmentName=names.compute_environment(host, cluster),
                                          type="UNMANAGED", state="ENABLED", serviceRole=role)
        b.create_job_queue(jobQueueName=names.job_queue(host, cluster), state="ENABLED", priority=1,
                           computeEnvironmentOrder=[{"order": 1, "computeEnvironment": ce["computeEnvironmentArn"]}])
        if definition:
            b.register_job_definition(jobDefinitionName=names.job_definition(host, definition), type="container",
                                      containerProperties={"image": "worker", "resourceRequirements": [
                                          {"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}]})


def worker_jobs(url: str, host: Host, region: str) -> list[dict]:
    """The host's worker jobs in a region (array parents and plain jobs, not children), described."""
    b = batch_client(url, region)
    try:
        found = b.list_jobs(jobQueue=names.job_queue(host, "gpu"),
                            filters=[{"name": "JOB_NAME", "values": [f"{names.prefix(host)}*"]}])["jobSummaryList"]
    except b.exceptions.ClientException:
        return []
    ids = [j["jobId"] for j in found if ":" not in j["jobId"]]
    return b.describe_jobs(jobs=ids)["jobs"] if ids else []


@pytest.fixture
def aws_host(home, moto_endpoint, batch_role):
    """An aws host on moto: regions us-east-1 and eu-west-1, cluster gpu, queue q1 (3:1), definition small."""
    from hyper.aws.tables import delete_tables
    from hyper.services import hosts
    from hyper.services import resources as res
    from hyper.services.context import open_context

    def record(kind: str, name: str, values: dict) -> None:
        """Validated and recorded as deployed; the Batch side is created by provision_batch (not CloudFormation)."""
        resource = res.build(kind, name, values)
        res.validate(resource, res.ResourceView(ctx.store), "aws")
        resource.status, resource.message = "ACTIVE", ""
        ctx.store.put_resource(resource)

    prefix = f"t{uuid.uuid4().hex[:8]}-"
    host = hosts.create_host("t", "aws", main_region="us-east-1", endpoint_url=moto_endpoint, table_prefix=prefix)
    ctx = open_context("t")
    main = ctx.store.get_resource("region", "us-east-1")  # create-host records it PENDING (no network yet)
    main.status, main.message = "ACTIVE", ""
    ctx.store.put_resource(main, replace=True)
    record("region", "eu-west-1", {"vpc-cidr": "10.20.0.0/16"})
    record("cluster", "gpu", {"type": "batch", "regions": "us-east-1,eu-west-1", "max-vcpus": "1024"})
    record("queue", "q1", {"cluster": "gpu", "weights": "us-east-1=3,eu-west-1=1"})
    record("image", "img", {"uri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/worker:1"})
    record("definition", "small", {"image": "img", "ratio": "10", "vcpus": "1", "memory": "2GiB"})
    yield host
    delete_tables(host)


def qsub_array(n: int = 1000) -> None:
    from qcmds import qsub

    result = runner.invoke(qsub.app, ["-q", "q1", "-d", "small", "-J", f"1-{n}", "--", "echo", "hi"])
    assert (result.exit_code, result.stdout) == (0, "1[]\n"), result.stderr


def test_once_submits_arrays_split_75_25_with_the_worker_environment(aws_host, moto_endpoint, batch_role):
    provision_batch(moto_endpoint, aws_host, batch_role, REGIONS)
    qsub_array(1000)
    result = runner.invoke(scheduler_app, ["run", "--once"])
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:4] == ["Queue Definition Region    Backlog Live New",
                         "----- ---------- --------- ------- ---- ---",
                         "q1    small      eu-west-1 1000    0    25",
                         "q1    small      us-east-1 1000    0    75"]
    assert [line.split(" (Batch job")[0].split(": ", 1)[1] for line in lines[4:]] == ["25 worker(s)", "75 worker(s)"]

    prefix = names.prefix(aws_host)
    sizes = {}
    for region in REGIONS:
        jobs = worker_jobs(moto_endpoint, aws_host, region)
        assert len(jobs) == 1, jobs
        job = jobs[0]
        sizes[region] = job["arrayProperties"]["size"]
        assert job["jobName"].startswith(f"{prefix}q1-small-t")
        assert job["tags"] == {"hyper:host": "t", "hyper:prefix": prefix, "hyper:queue": "q1",
                               "hyper:definition": "small"}
        env = {e["name"]: e["value"] for e in job["container"]["environment"]}
        assert {k: v for k, v in env.items() if k.startswith("HYPER_")} == {
            "HYPER_TABLE_PREFIX": prefix, "HYPER_MAIN_REGION": "us-east-1", "HYPER_QUEUE": "q1",
            "HYPER_DEFINITION": "small", "HYPER_REGION": region}
        assert env["AWS_ENDPOINT_URL"] == moto_endpoint
    assert sizes == {"us-east-1": 75, "eu-west-1": 25}


def test_dry_run_prints_plan_and_requests_and_sends_nothing(aws_host, moto_endpoint, batch_role):
    provision_batch(moto_endpoint, aws_host, batch_role, REGIONS)
    qsub_array(1000)
    result = runner.invoke(scheduler_app, ["run", "--dry-run"])
    assert result.exit_code == 0, result.stderr
    head, _, body = result.stdout.partition("Batch SubmitJob requests (dry run: 2, none sent):\n")
    assert head == ("Queue Definition Region    Backlog Live New\n"
                    "----- ---------- --------- ------- ---- ---\n"
                    "q1    small      eu-west-1 1000    0    25\n"
                    "q1    small      us-east-1 1000    0    75\n")
    requests_ = json.loads(body)
    assert [(r["region"], r["SubmitJob"]["arrayProperties"]["size"], r["SubmitJob"]["jobQueue"],
             r["SubmitJob"]["jobDefinition"]) for r in requests_] == [
        ("eu-west-1", 25, f"{names.prefix(aws_host)}gpu", f"{names.prefix(aws_host)}small:1"),
        ("us-east-1", 75, f"{names.prefix(aws_host)}gpu", f"{names.prefix(aws_host)}small:1")]
    assert all(worker_jobs(moto_endpoint, aws_host, r) == [] for r in REGIONS)

    as_json = json.loads(runner.invoke(scheduler_app, ["run", "--dry-run", "-o", "json"]).stdout)
    assert [(p["region"], p["new"]) for p in as_json["plan"]] == [("eu-west-1", 25), ("us-east-1", 75)]
    assert as_json["submitted"] == [] and as_json["dry_run"] is True
    assert all(worker_jobs(moto_endpoint, aws_host, r) == [] for r in REGIONS)


def test_missing_job_queue_in_a_region_is_named_and_the_other_region_runs(aws_host, moto_endpoint, batch_role):
    provision_batch(moto_endpoint, aws_host, batch_role, ["us-east-1"])
    qsub_array(1000)
    result = runner.invoke(scheduler_app, ["run", "--once"])
    assert result.exit_code == 1
    queue = names.job_queue(aws_host, "gpu")
    assert result.stderr == (
        f"hyper scheduler: region eu-west-1: Batch job queue {queue} (cluster gpu) does not exist (provision cluster "
        "gpu in eu-west-1 with hyper (its stack creates the job queue), or remove eu-west-1 from the cluster's "
        "regions; the other regions are still scheduled)\n")
    assert [j["arrayProperties"]["size"] for j in worker_jobs(moto_endpoint, aws_host, "us-east-1")] == [100]
    assert worker_jobs(moto_endpoint, aws_host, "eu-west-1") == []


def test_loop_ticks_until_sigterm(aws_host, moto_endpoint, batch_role):
    import signal
    import subprocess
    import sys
    import time

    provision_batch(moto_endpoint, aws_host, batch_role, REGIONS)
    qsub_array(40)
    proc = subprocess.Popen([sys.executable, "-c", "from hyper.cli.scheduler import app; app()", "run",
                             "--interval", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline(), proc.stdout.readline()]
        assert lines[0].endswith(" scheduler for host t: a tick every 1 s\n"), lines
        assert " tick t" in lines[1] and lines[1].endswith(": 40 queued task(s), 4 new worker(s) in 2 Batch job(s)\n")
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert err == "" and out.splitlines()[-1].endswith(" scheduler for host t stopped")


def test_end_to_end_scheduler_arrays_then_batch_style_workers_run_every_element_once(
        aws_host, moto_endpoint, batch_role, tmp_path):
    """qsub -> scheduler --once -> the Batch array jobs' own container environment starts start.sh (as Batch
    would, one container per region here) -> every element runs exactly once -> qlog reads CloudWatch."""
    import os
    import subprocess
    from pathlib import Path

    from tests.conftest import BIN, cli

    provision_batch(moto_endpoint, aws_host, batch_role, REGIONS)
    qsub_array(60)
    result = runner.invoke(scheduler_app, ["run", "--once"])
    assert result.exit_code == 0, result.stderr
    sizes, procs = {}, []
    start_sh = Path(__file__).resolve().parent.parent / "example-worker-image" / "start.sh"
    for region in REGIONS:
        (job,) = worker_jobs(moto_endpoint, aws_host, region)
        sizes[region] = job.get("arrayProperties", {}).get("size", 1)  # one worker: a plain job
        container = {e["name"]: e["value"] for e in job["container"]["environment"]}
        home = tmp_path / region
        home.mkdir()
        env = {**os.environ, **container, "PATH": f"{BIN}:{os.environ['PATH']}", "HYPER_HOME": str(home / ".hyper"),
               "AWS_BATCH_JOB_ID": job["jobId"], "AWS_BATCH_JOB_ARRAY_INDEX": "0", "HYPER_WORKER_IDLE": "1"}
        env.pop("HYPER_HOST", None)
        procs.append(subprocess.Popen(["sh", str(start_sh)], cwd=home, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    assert sizes == {"us-east-1": 5, "eu-west-1": 1}  # ceil(60 / 10) = 6 workers, 3:1 by largest remainder
    for proc in procs:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    rows = [line.split(",") for line in cli("qstat", "-x", "-t", "--output", "csv", check=True).stdout.splitlines()[1:]]
    elements = [r for r in rows if r[0] != "1[]"]
    assert sorted(int(r[0][2:-1]) for r in elements) == list(range(1, 61))
    assert {r[4] for r in elements} == {"F"}
    records = json.loads(cli("qstat", "-x", "-f", "1[1-60]", "--output", "json", check=True).stdout)
    assert {(r["state"], r["attempts"], r["exit_code"]) for r in records} == {("SUCCEEDED", 1, 0)}
    assert {r["worker"].split("-")[0] for r in records} <= {w["jobId"].split("-")[0] for region in REGIONS
                                                           for w in worker_jobs(moto_endpoint, aws_host, region)}
    assert cli("qlog", "1[42]", check=True).stdout == "hi\n"


def test_a_restarted_scheduler_recalls_the_arrays_its_predecessor_submitted(aws_host, moto_endpoint, batch_role):
    """ListJobs lags behind SubmitJob: what a tick submitted is recorded in the store (TTL), and a new
    scheduler process describes those arrays directly on its first tick, so it cannot provision them twice."""
    from hyper.services.context import open_context

    provision_batch(moto_endpoint, aws_host, batch_role, REGIONS)
    qsub_array(1000)
    assert runner.invoke(scheduler_app, ["run", "--once"]).exit_code == 0
    store = open_context("t").store
    submitted = {(region, job["jobId"]) for region in REGIONS for job in worker_jobs(moto_endpoint, aws_host, region)}
    assert {(region, job) for region, job, _ in store.recent_submissions(0)} == submitted
    successor = BatchScheduler(aws_host, store)
    successor.tick(dry_run=True)
    assert {(region, job) for region, ids in successor.backend("batch")._recent.items() for job in ids} == submitted
