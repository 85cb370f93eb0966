"""What the job table costs on DynamoDB (issue 10 §2): listing indexes that carry no scripts, idempotent
claims, heartbeats that rewrite no index key. Against moto's server on 127.0.0.1 through boto3."""

from __future__ import annotations

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
