"""What the job table costs on DynamoDB (issue 10 §2): listing indexes that carry no scripts, idempotent
claims, heartbeats that rewrite no index key. Against moto's server on 127.0.0.1 through boto3."""

from __future__ import annotations

import dataclasses
import time

import pytest

from hyper.models import Job, JobSpec
from hyper.states import JobState
from hyper.store.base import JobFilter, Submission
from tests.test_store_contract import D, Q, ddb  # noqa: F401  (the DynamoDB store fixture, e2e lane)

SCRIPT = "#!/bin/sh\n" + "echo a line of a long script\n" * 40  # ~1.2 KB: inline, not a separate spec item


def _submit(store, n=1, script=SCRIPT, retries=0):
    jobs = [Job(name=f"j{i}", user="alice", queue=Q, definition=D, retries=retries, spec=JobSpec(script=script))
            for i in range(n)]
    return store.submit([Submission(j) for j in jobs], time.time())


def test_listing_indexes_carry_no_script(ddb):
    _submit(ddb, 3)
    table = ddb.db.describe_table(TableName=ddb.jobs)["Table"]
    projected = {g["IndexName"]: g["Projection"].get("NonKeyAttributes", []) for g in table["GlobalSecondaryIndexes"]}
    assert "spec" not in projected["by_queue"] and "spec" not in projected["by_user"]
    assert {"name", "state", "worker", "exit_code"} <= set(projected["by_queue"])
    entries = ddb.db.query(TableName=ddb.jobs, IndexName="by_queue", KeyConditionExpression="qs = :k",
                           ExpressionAttributeValues={":k": {"S": f"{Q}#QUEUED#1"}})["Items"]
    assert entries and all("spec" not in e for e in entries)
    # qstat's table needs no spec; qstat -f / --output json still get the whole script, from the base table
    assert [j.spec for j in ddb.list_jobs(JobFilter(with_spec=False))] == [None, None, None]
    listed = list(ddb.list_jobs(JobFilter(with_spec=True, limit=2)))
    assert [(j.id, j.spec.script) for j in listed] == [(1, SCRIPT), (2, SCRIPT)]


@pytest.mark.parametrize("array", [False, True])
def test_claim_whose_response_was_lost_still_belongs_to_its_worker(ddb, array):
    """The first TransactWriteItems of the claim commits in DynamoDB but its answer never arrives; the SDK
    resends it. The resend must not turn our own committed claim into "someone else has it"."""
    from hyper.store.dynamodb import DynamoStore
    from tests.lossy_proxy import LossyProxy

    if array:
        ddb.submit([Submission(Job(name="a", user="alice", queue=Q, definition=D, array="0-3",
                                   spec=JobSpec(command=["true"])))], time.time())
    else:
        _submit(ddb, 1)
    proxy = LossyProxy(ddb.host.endpoint_url, {"TransactWriteItems": 1})
    try:
        host = dataclasses.replace(ddb.host, endpoint_url=proxy.url)
        lossy = DynamoStore(host)
        now = time.time()
        got = lossy.claim(Q, D, "w1", now + 60, now)
        assert "TransactWriteItems!" in proxy.seen  # the answer to the committed claim was lost
    finally:
        proxy.stop()
    assert got is not None and got.id == 1 and got.worker == "w1" and got.attempts == 1
    assert got.index == (0 if array else None)
    (rec,), _ = ddb.get_jobs([_ref(got)])
    assert (rec.state.value, rec.worker, rec.attempts) == ("RUNNING", "w1", 1)
    assert {c.state.value: c.tasks for c in ddb.counts()} == ({"RUNNING": 1, "QUEUED": 3} if array else {"RUNNING": 1})


def _ref(job):
    from hyper.parsing.arrays import parse_array
    from hyper.parsing.jobids import JobRef

    return JobRef(job.id, None if job.index is None else parse_array(str(job.index)), False)


def test_heartbeat_of_a_registered_worker_rewrites_no_index_key(ddb):
    """A beat renews the worker's registry item only: the job item, and so the leases index, stay as claimed.
    The sweep still finds the job once the worker's lease (plus the margin) is past, and not before."""
    from hyper.store.base import WorkerInfo

    _submit(ddb, 1, retries=1)
    now = time.time()
    ddb.register_worker(WorkerInfo("w1", Q, D, "", 1, now, now, "BUSY"))
    job = ddb.claim(Q, D, "w1", now + 5, now)
    before = ddb._get(1, -1)
    index = ddb.db.query(TableName=ddb.jobs, IndexName="leases", KeyConditionExpression="ls = :s",
                         ExpressionAttributeValues={":s": {"S": before["ls"]}})["Items"]
    assert ddb.heartbeat(job, "w1", now + 60) is JobState.RUNNING
    assert ddb._get(1, -1) == before  # not one attribute of the job item changed
    assert ddb.db.query(TableName=ddb.jobs, IndexName="leases", KeyConditionExpression="ls = :s",
                        ExpressionAttributeValues={":s": {"S": before["ls"]}})["Items"] == index
    assert ddb.requeue_expired(now + 30) == []  # the claim's lease is past, the worker's is not
    assert ddb.requeue_expired(now + 60 + ddb.lease_margin - 1) == []  # the margin: the worker stops it first
    lost = ddb.requeue_expired(now + 60 + ddb.lease_margin + 1)
    assert [(j.job_id, j.state) for j in lost] == [("1", JobState.QUEUED)]
    assert ddb.heartbeat(job, "w1", now + 120) is None  # the late worker is fenced


def test_peek_reads_state_and_ownership_without_writing(ddb):
    _submit(ddb, 1)
    now = time.time()
    job = ddb.claim(Q, D, "w1", now + 60, now)
    before = ddb._get(1, -1)
    assert ddb.peek(job, "w1") is JobState.RUNNING and ddb.peek(job, "w2") is None
    assert ddb._get(1, -1) == before
