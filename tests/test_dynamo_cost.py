"""What the job table costs on DynamoDB (issue 10 §2): listing indexes that carry no scripts, idempotent
claims, heartbeats that rewrite no index key, claims that are one write, renewals that are the registry touch,
the cost of one job's life, and tables of the older layout. Against moto's server on 127.0.0.1 through boto3."""

from __future__ import annotations

import dataclasses
import time

import pytest

from hyper.models import Job, JobSpec
from hyper.retry import EXITED
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
    assert "spec" not in projected["by_queue"] and "by_user" not in projected  # (qstat -u filters by_queue)
    assert {"name", "state", "worker", "exit_code"} <= set(projected["by_queue"])
    entries = ddb.db.query(TableName=ddb.jobs, IndexName="by_queue", KeyConditionExpression="qs = :k",
                           ExpressionAttributeValues={":k": {"S": f"{Q}#ACTIVE#1"}})["Items"]
    assert entries and all("spec" not in e for e in entries)
    # qstat's table needs no spec; qstat -f / --output json still get the whole script, from the base table
    assert [j.spec for j in ddb.list_jobs(JobFilter(with_spec=False))] == [None, None, None]
    listed = list(ddb.list_jobs(JobFilter(with_spec=True, limit=2)))
    assert [(j.id, j.spec.script) for j in listed] == [(1, SCRIPT), (2, SCRIPT)]


@pytest.mark.parametrize("array", [False, True])
def test_claim_whose_response_was_lost_still_belongs_to_its_worker(ddb, array):
    """The claim's first request (an array element's TransactWriteItems; a single job's UpdateItem, schema 2)
    commits in DynamoDB but its answer never arrives; the SDK resends it. The resend must not turn our own
    committed claim into "someone else has it", nor count an attempt twice."""
    from hyper.store.dynamodb import DynamoStore
    from tests.lossy_proxy import LossyProxy

    if array:
        ddb.submit([Submission(Job(name="a", user="alice", queue=Q, definition=D, array="0-3",
                                   spec=JobSpec(command=["true"])))], time.time())
    else:
        _submit(ddb, 1)
    request = "TransactWriteItems" if array else "UpdateItem"
    proxy = LossyProxy(ddb.host.endpoint_url, {request: 1})
    try:
        host = dataclasses.replace(ddb.host, endpoint_url=proxy.url)
        lossy = DynamoStore(host)
        now = time.time()
        got = lossy.claim(Q, D, "w1", now + 60, now)
        assert f"{request}!" in proxy.seen  # the answer to the committed claim was lost
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


def test_a_single_jobs_claim_reads_nothing_and_is_one_write(ddb):
    """Schema 2: queued and running tasks share a counter, so a claim moves no count. With the ready candidates
    cached, a claim is one conditional UpdateItem: no GetItem first, no transaction with a counter shard."""
    _submit(ddb, 2)
    now = time.time()
    assert ddb.claim(Q, D, "w1", now + 60, now).id == 1  # (reads the ready shards: the candidates)
    calls = []
    ddb.db.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    try:
        got = ddb.claim(Q, D, "w2", now + 60, now)
    finally:
        ddb.db.meta.events.unregister("before-call.dynamodb")
    assert calls == ["UpdateItem"]
    assert (got.id, got.worker, got.attempts, got.state) == (2, "w2", 1, JobState.RUNNING)
    assert {c.state.value: c.tasks for c in ddb.counts()} == {"RUNNING": 2}  # RUNNING from the leases index


def test_a_renewal_carries_the_workers_registry_touch(ddb):
    """The worker's item is written by every renewal anyway: with jobs_run it also says BUSY, the count and
    when, so a long job needs no registry touch of its own (RENEWAL_TOUCHES). The job item is not written."""
    from hyper.store.base import WorkerInfo

    _submit(ddb, 1)
    now = time.time()
    ddb.register_worker(WorkerInfo("w1", Q, D, "", 1, now - 100, now - 100, "IDLE"))
    job = ddb.claim(Q, D, "w1", now + 60, now)
    before = ddb._get(1, -1)
    assert ddb.heartbeat(job, "w1", now + 120, jobs_run=3) is JobState.RUNNING
    (w,) = ddb.list_workers(live_since=now - 1)
    assert (w.state, w.jobs_run, w.heartbeat >= now) == ("BUSY", 3, True)
    assert ddb._get(1, -1) == before
    assert ddb.RENEWAL_TOUCHES


def test_one_job_life_costs_under_25_dollars_per_million_hour_jobs(moto_endpoint):
    """Issue 10's target, from the units DynamoDB would bill (scripts/ddb_meter.py), with production shard
    counts: a one-hour job (submit, a claim that reads every ready shard, start, 11 renewals, ~78 qdel peeks,
    finish, one qstat) under $25 per million, and the pieces that get it there."""
    import sys
    import uuid
    from pathlib import Path

    from hyper.aws.tables import delete_tables

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
    import bench_aws

    phases, store = bench_aws.life_units(moto_endpoint, prefix=f"c{uuid.uuid4().hex[:10]}-")
    try:
        def units(phase, kind):
            return sum(v for (_, k), v in phases[phase].items() if k == kind)

        assert units(bench_aws.WARM, "W") == 4 and units(bench_aws.WARM, "R") == 0  # job, ready, by_queue, leases
        assert units("finish", "W") == 7  # the job and a counter shard in one transaction (2 each), 3 index entries
        assert units("submit (qsub, one job)", "W") == 5  # no by_user entry
        assert units("qstat (all queues, active jobs)", "R") <= 9  # 16 ACTIVE shards and the queue registry
        assert units(bench_aws.RENEWAL, "W") == 1 and units(bench_aws.RENEWAL, "R") == 0
        dollars, renewals, peeks = bench_aws.per_million(phases, 3600, 60.0, store.MAX_LEASE, store.STATE_POLL)
        assert (renewals, dollars < 25) == (11, True), (dollars, renewals, peeks)
    finally:
        delete_tables(store.host)


def test_tables_made_before_schema_2_keep_their_layout(ddb):
    """A host whose tables were made before schema 2 (config item schema 1) keeps its by_queue keys per state,
    its RUNNING counter, and finds queues from the counters (its users' IAM policies may not write a queue
    registry), so the jobs already in it stay listed and counted."""
    from hyper.store.dynamodb import DynamoStore
    from hyper.store.dynamodb.keys import QUEUES_KEY

    ddb.db.update_item(TableName=ddb.meta, Key={"pk": {"S": "config"}, "sk": {"S": "config"}},
                       UpdateExpression="SET #s = :one", ExpressionAttributeNames={"#s": "schema"},
                       ExpressionAttributeValues={":one": {"N": "1"}})
    old = DynamoStore(ddb.host)
    assert old.schema == 1
    old.submit([Submission(Job(name="a", user="ann", queue="q1", definition=D, spec=JobSpec(command=["true"]))),
                Submission(Job(name="b", user="bob", queue="q2", definition=D, array="0-2",
                               spec=JobSpec(command=["true"])))], time.time())
    now = time.time()
    job = old.claim("q1", D, "w1", now + 60, now)
    assert old._get(1, -1)["qs"].startswith("q1#RUNNING#")  # the per-state key its index has always had
    counts = {(c.queue, c.state.value): c.tasks for c in old.counts()}
    assert counts == {("q1", "RUNNING"): 1, ("q2", "QUEUED"): 3}
    listed = [(j.id, j.queue, j.state.value) for j in old.list_jobs(JobFilter(with_spec=False))]
    assert listed == [(1, "q1", "RUNNING"), (2, "q2", "QUEUED")]
    assert "Item" not in old.db.get_item(TableName=old.meta, Key=QUEUES_KEY, ConsistentRead=True)
    assert [j.id for j in old.list_jobs(JobFilter(user="bob", with_spec=False))] == [2]
    assert old.finish(job, "w1", EXITED, 0, "", time.time()) is JobState.SUCCEEDED
    assert {(c.queue, c.state.value): c.tasks for c in old.counts()} == {("q1", "SUCCEEDED"): 1,
                                                                         ("q2", "QUEUED"): 3}


def test_qstat_finds_queues_in_the_registry_submissions_keep(ddb):
    """Schema 2: qstat reads one registry item for the queues to list, not every counter shard. A submission
    notes its queue there before anything else is written; a registry that is missing or not complete yet
    (a new host, jobs from before it) is made at the first qstat from the queue resources and the counters."""
    from hyper.store.dynamodb import DynamoStore
    from hyper.store.dynamodb.keys import QUEUES_KEY

    def queues() -> set[str]:
        item = ddb.db.get_item(TableName=ddb.meta, Key=QUEUES_KEY, ConsistentRead=True).get("Item", {})
        return set(item.get("names", {}).get("SS", [])) | ({"(complete)"} if "complete" in item else set())

    def listed(store) -> list[tuple[int, str]]:
        return [(j.id, j.queue) for j in store.list_jobs(JobFilter(with_spec=False))]

    one = Job(name="a", user="ann", queue="nores", definition=D, spec=JobSpec(command=["true"]))
    ddb.submit([Submission(one)], time.time())
    assert queues() == {"nores"}  # noted, not complete yet
    ddb.db.delete_item(TableName=ddb.meta, Key=QUEUES_KEY)  # as if submitted before the registry existed
    assert listed(ddb) == [(1, "nores")]  # found through the counters
    assert queues() == {"nores", Q, "(complete)"}  # ... and remembered with the queue resources
    fresh = DynamoStore(ddb.host)  # another process: qsub -q later
    fresh.submit([Submission(Job(name="b", user="ann", queue="later", definition=D,
                                 spec=JobSpec(command=["true"])))], time.time())
    assert queues() == {"nores", Q, "later", "(complete)"}
    calls = []
    fresh.db.meta.events.register("before-call.dynamodb", lambda model, **_: calls.append(model.name))
    assert listed(fresh) == [(1, "nores"), (2, "later")]
    assert calls.count("GetItem") == 1 and "Query" in calls and len(calls) == 1 + 3 * ddb.index_shards


def test_the_jobs_of_workers_that_ended_in_one_tick_take_one_read_of_the_leases_index(ddb):
    """Schema 2 has no by_worker index: a dead worker's jobs are found in the leases index. The scheduler
    requeues every worker that ended in one tick with that tick's time, and one read of the index serves
    them all (not one read of every running job per worker); a later tick reads it again."""
    _submit(ddb, 3, retries=1)
    now = time.time()
    for worker in ("w1", "w2", "w3"):
        ddb.claim(Q, D, worker, now + 60, now)
    calls = []
    ddb.db.meta.events.register("before-parameter-build.dynamodb.Query",
                                lambda params, **_: calls.append(params.get("IndexName")))
    lost = ddb.requeue_worker("w1", now + 1) + ddb.requeue_worker("w2", now + 1)
    assert [(j.job_id, j.state) for j in lost] == [("1", JobState.QUEUED), ("2", JobState.QUEUED)]
    assert calls.count("leases") == ddb.index_shards  # one read for both
    assert ddb.requeue_worker("w3", now + 2)[0].job_id == "3" and calls.count("leases") == 2 * ddb.index_shards
