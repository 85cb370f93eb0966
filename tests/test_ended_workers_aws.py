"""A worker whose backend saw it end gives its jobs back at the next scheduler tick, not at its lease's end.

On DynamoDB a long job's lease grows with its age (up to the store's MAX_LEASE, hyper/worker/fence.py), so a
spot-reclaimed worker would hold its job for up to that long. The tick asks each backend which registered
workers ended (Batch: the worker's own child job SUCCEEDED/FAILED; EKS: its pod Succeeded/Failed) and requeues
their jobs at once. The store is DynamoDB on moto's server; Batch's DescribeJobs answers are recorded shapes
(moto's Batch marks every job SUCCEEDED at once without Docker, so it cannot show a child failing while its
siblings run).
"""

from __future__ import annotations

import time
import zlib

from hyper.aws.tables import ensure_tables
from hyper.backends.batch import BatchBackend
from hyper.backends.kubernetes import KubernetesBackend
from hyper.config import Host
from hyper.models import Cluster, Definition, Job, JobSpec, Queue
from hyper.scheduler.aws import BatchScheduler
from hyper.store.base import Submission, WorkerInfo
from hyper.store.dynamodb import DynamoStore
from tests.test_scheduler_aws import StubApi, StubBatchClient


def _store(endpoint: str, name: str) -> DynamoStore:
    host = Host(name="t", type="aws", main_region="us-east-1", endpoint_url=endpoint,
                table_prefix=f"end{zlib.crc32(name.encode()) % 10**6}-", extra={"index_shards": 2, "count_shards": 2})
    ensure_tables(host)
    store = DynamoStore(host)
    for resource in (Cluster(name="c", type="batch", max_vcpus=64), Queue(name="q", cluster="c"),
                     Definition(name="d", image="img")):
        store.put_resource(resource, replace=True)
    return store


def _running(store: DynamoStore, worker: str, batch_job: str, now: float, lease: float) -> Job:
    """A job claimed by a registered Batch worker that renewed a grown lease (``lease`` seconds ahead)."""
    store.register_worker(WorkerInfo(worker, "q", "d", f"ip-10-0-0-1 region=us-east-1 batch_job={batch_job}",
                                     1, now, now, "BUSY"))
    store.submit([Submission(Job(name="long", user="u", queue="q", definition="d", retries=1,
                                 spec=JobSpec(command=["sleep", "3600"])))], now)
    job = store.claim("q", "d", worker, now + 60, now)
    assert job is not None
    assert store.heartbeat(job, worker, now + lease) is not None
    return job


def _described(job_id: str, status: str) -> dict:
    return {"jobArn": f"arn:aws:batch:us-east-1:123456789012:job/{job_id}", "jobId": job_id,
            "jobName": "hyper-t-q-d-t1", "status": status, "createdAt": 1, "arrayProperties": {"index": 3}}


def test_a_worker_whose_batch_job_failed_gives_its_job_back_at_the_next_tick(moto_endpoint, request):
    store = _store(moto_endpoint, request.node.name)
    now = time.time()
    lost = _running(store, "arr1-3", "arr1:3", now, lease=900)
    kept = _running(store, "arr1-4", "arr1:4", now, lease=900)
    # the lease sweep alone leaves both: their (grown) leases hold for 15 minutes
    assert store.requeue_expired(now + 120) == []
    client = StubBatchClient({}, {"arr1:3": _described("arr1:3", "FAILED"),
                                  "arr1:4": _described("arr1:4", "RUNNING")})
    scheduler = BatchScheduler(store.host, store, api=StubApi(client), sleep=lambda s: None)
    report = scheduler.tick()
    assert report.requeued == 1
    (after_lost,), _ = store.get_jobs([_ref(lost)])
    (after_kept,), _ = store.get_jobs([_ref(kept)])
    assert (after_lost.state.value, after_lost.worker, after_lost.attempts) == ("QUEUED", None, 1)
    assert "arr1-3" in after_lost.reason
    assert (after_kept.state.value, after_kept.worker) == ("RUNNING", "arr1-4")
    described = [c[1]["jobs"] for c in client.calls if c[0] == "describe_jobs"]
    assert described and sorted(described[0]) == ["arr1:3", "arr1:4"]  # one DescribeJobs for both workers
    # the ended worker is marked EXITED: the next tick asks Batch about the live one only
    assert {w.id: w.state for w in store.list_workers()}["arr1-3"] == "EXITED"
    client.calls.clear()
    assert scheduler.tick().requeued == 0
    assert [sorted(c[1]["jobs"]) for c in client.calls if c[0] == "describe_jobs"][0] == ["arr1:4"]


def test_the_batch_backend_names_only_workers_whose_own_batch_job_ended():
    host = Host(name="t", type="aws", main_region="us-east-1", table_prefix="hyper-t-")
    workers = [WorkerInfo("a-1", "q", "d", "ip-1 region=us-east-1 batch_job=a:1"),
               WorkerInfo("a-2", "q", "d", "ip-2 region=us-east-1 batch_job=a:2"),
               WorkerInfo("b-0", "q", "d", "ip-3 region=eu-west-1 batch_job=b:0"),
               WorkerInfo("by-hand", "q", "d", "laptop")]  # no Batch job recorded: never asked about
    client = StubBatchClient({}, {"a:1": _described("a:1", "SUCCEEDED"), "a:2": _described("a:2", "RUNNING"),
                                  "b:0": _described("b:0", "FAILED")})
    assert BatchBackend(host, None, api=StubApi(client)).ended(workers) == ["a-1", "b-0"]
    assert all("by-hand" not in c[1]["jobs"] for c in client.calls)
    assert KubernetesBackend(host, None).ended(workers) == []  # no inventory yet: no pod seen ending


def _ref(job: Job):
    from hyper.parsing.jobids import JobRef

    return JobRef(job.id, None, False)
