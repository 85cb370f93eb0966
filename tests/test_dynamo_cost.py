"""What the job table costs on DynamoDB (issue 10 §2): listing indexes that carry no scripts, idempotent
claims, heartbeats that rewrite no index key. Against moto's server on 127.0.0.1 through boto3."""

from __future__ import annotations

import dataclasses
import time

import pytest

from hyper.models import Job, JobSpec
from hyper.store.base import JobFilter, Submission
from tests.test_store_contract import D, Q, make_dynamodb

SCRIPT = "#!/bin/sh\n" + "echo a line of a long script\n" * 40  # ~1.2 KB: inline, not a separate spec item


@pytest.fixture
def ddb(request, tmp_path):
    from hyper.services.context import bootstrap_local

    s = make_dynamodb(request, tmp_path)
    bootstrap_local(s)
    yield s
    s.close()


def _submit(store, n=1, script=SCRIPT):
    jobs = [Job(name=f"j{i}", user="alice", queue=Q, definition=D, spec=JobSpec(script=script))
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
