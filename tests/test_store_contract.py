"""The Store contract: every implementation must pass these, SQLite and DynamoDB (moto's server on 127.0.0.1,
talked to with boto3 exactly as AWS is). DynamoDB-specific concurrency, batching and error tests follow."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time
import uuid

import pytest

from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Definition, Job, JobSpec, Queue
from hyper.parsing.arrays import parse_array
from hyper.parsing.jobids import JobRef
from hyper.retry import EXITED, KILLED
from hyper.services.context import bootstrap_local
from hyper.states import JobState
from hyper.store.base import JobFilter, Submission, WorkerInfo

Q, D = "default", "default"


def make_sqlite(request, tmp_path):
    from hyper.store.sqlite import SQLiteStore

    return SQLiteStore(tmp_path / "hyper.db")


def aws_host(endpoint: str, **extra) -> Host:
    """A host with its own tables (a fresh prefix per test); 2 shards each, so sharding is exercised
    while moto, which answers index queries by scanning, stays fast."""
    settings = {"index_shards": 2, "count_shards": 2, "id_shards": 2, "max_attempts": 2, **extra}
    return Host(name="contract", type="aws", main_region="us-east-1", table_prefix=f"t{uuid.uuid4().hex[:12]}-",
                endpoint_url=endpoint, extra=settings)


def make_dynamodb(request, tmp_path):
    from hyper.aws.tables import delete_tables, ensure_tables
    from hyper.store.dynamodb import DynamoStore

    host = aws_host(request.getfixturevalue("moto_endpoint"))
    ensure_tables(host)
    request.addfinalizer(lambda: delete_tables(host))
    return DynamoStore(host)


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request, tmp_path):
    s = {"sqlite": make_sqlite, "dynamodb": make_dynamodb}[request.param](request, tmp_path)
    bootstrap_local(s)
    yield s
    s.close()


@pytest.fixture
def ddb(request, tmp_path, moto_endpoint):
    """A DynamoDB store alone, for the tests only DynamoDB needs (naming moto_endpoint puts them in the e2e
    lane, as every other test that talks to the moto server)."""
    s = make_dynamodb(request, tmp_path)
    bootstrap_local(s)
    yield s
    s.close()


def test_every_store_has_every_member_of_the_protocol(store):
    """Callers use the protocol's members directly (no getattr probing), so each store must have them all."""
    from hyper.store.base import Store

    members = set(Store.__annotations__) | {n for n, v in vars(Store).items() if callable(v) and not n.startswith("_")}
    assert sorted(m for m in members if not hasattr(store, m)) == []
    assert store.IDLE_POLL_CEILING > 0 and store.TOUCH_EVERY > 0 and store.STATE_POLL > 0
    store.remember_submission("us-east-1", "batch-1", time.time(), 60)
    recalled = store.recent_submissions(time.time() - 60)
    assert recalled == ([] if store.host is None else [("us-east-1", "batch-1", pytest.approx(time.time(), abs=5))])


def job(name="j", array=None, retries=0, retry_on_exit=False, queue=Q, user="alice") -> Job:
    return Job(name=name, user=user, queue=queue, definition=D, retries=retries, array=array,
               spec=JobSpec(command=["true"], retry_on_exit=retry_on_exit))


def submit(store, *jobs_, depends=None, hold=False):
    return store.submit([Submission(j, depends or [], hold) for j in jobs_], time.time())


def claim(store, worker="w1"):
    now = time.time()
    return store.claim(Q, D, worker, now + 30, now)


def state_of(store, job_id, index=None):
    jobs, missing = store.get_jobs([JobRef(job_id, None if index is None else parse_array(str(index)), False)])
    assert not missing
    return jobs[0].state


def test_ids_are_sequential_and_unique(store):
    a, b = submit(store, job("a"), job("b"))
    (c,) = submit(store, job("c"))
    assert [a.id, b.id, c.id] == [1, 2, 3]
    assert state_of(store, 1) is JobState.QUEUED


def test_resources_put_if_absent(store):
    with pytest.raises(HyperError, match="queue 'default' already exists"):
        store.put_resource(Queue(name="default"))
    store.put_resource(Queue(name="gpu", cluster="local", priority=5))
    assert store.get_resource("queue", "gpu").priority == 5
    assert [q.name for q in store.list_resources("queue")] == ["default", "gpu"]
    assert store.delete_resource("queue", "gpu") is True
    assert store.get_resource("queue", "gpu") is None


def test_claim_is_exclusive_and_ordered(store):
    submit(store, job("a"), job("b"))
    first, second = claim(store, "w1"), claim(store, "w2")
    assert (first.id, second.id) == (1, 2)
    assert first.worker == "w1" and first.attempts == 1 and first.spec.command == ["true"]
    assert claim(store, "w3") is None


def _race(path, worker, out):
    from hyper.store.sqlite import SQLiteStore

    s = SQLiteStore(path)
    got = []
    while True:
        now = time.time()
        j = s.claim(Q, D, worker, now + 30, now)
        if j is None:
            break
        got.append(j.job_id)
    out.put(got)


def _race_threads(store, n_workers: int) -> list[str]:
    """Workers in threads, each with its own DynamoStore (own connections), as separate hosts would be."""
    from hyper.store.dynamodb import DynamoStore

    results: list[list[str]] = []
    start = threading.Barrier(n_workers)

    def run(worker):
        s = DynamoStore(store.host)
        got = []
        start.wait()
        while True:
            now = time.time()
            j = s.claim(Q, D, worker, now + 30, now)
            if j is None:
                break
            got.append(j.job_id)
        results.append(got)

    threads = [threading.Thread(target=run, args=(f"w{i}",)) for i in range(n_workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    return [x for got in results for x in got]


@pytest.mark.parametrize("n_workers", [4])
def test_racing_claimers_never_share_a_job(store, tmp_path, n_workers):
    if store.host is None:  # SQLite: separate processes on one file
        submit(store, *[job(str(i)) for i in range(200)], job("arr", array="0-299"))
        out = multiprocessing.get_context("fork").Queue()
        procs = [multiprocessing.get_context("fork").Process(target=_race, args=(tmp_path / "hyper.db", f"w{i}", out))
                 for i in range(n_workers)]
        for p in procs:
            p.start()
        claimed = [x for _ in procs for x in out.get(timeout=60)]
        for p in procs:
            p.join()
        assert len(claimed) == 500 and len(set(claimed)) == 500
        return
    # DynamoDB: fewer jobs (moto answers every index query by scanning the table)
    submit(store, *[job(str(i)) for i in range(20)], job("arr", array="0-29"))
    claimed = _race_threads(store, n_workers)
    assert len(claimed) == 50 and len(set(claimed)) == 50
    assert {c.state: c.tasks for c in store.counts()} == {JobState.RUNNING: 50}


def test_finish_only_by_owner(store):
    submit(store, job())
    j = claim(store, "w1")
    assert store.finish(j, "w2", EXITED, 0, "", time.time()) is None
    assert store.finish(j, "w1", EXITED, 0, "", time.time()) is JobState.SUCCEEDED
    assert store.finish(j, "w1", EXITED, 0, "", time.time()) is None  # second report is a no-op


def test_retries_are_counted_exactly(store):
    submit(store, job(retries=2, retry_on_exit=True))
    states = []
    for _ in range(3):
        j = claim(store)
        states.append((j.attempts, store.finish(j, "w1", EXITED, 3, "", time.time())))
    assert states == [(1, JobState.QUEUED), (2, JobState.QUEUED), (3, JobState.FAILED)]
    assert claim(store) is None
    (final,), _ = store.get_jobs([JobRef(1, None, False)])
    assert final.attempts == 3 and final.exit_code == 3 and "no retries left" in final.reason


def test_exit_codes_not_retried_unless_asked(store):
    submit(store, job(retries=2))
    j = claim(store)
    assert store.finish(j, "w1", EXITED, 1, "", time.time()) is JobState.FAILED


def test_walltime_kill_is_not_retried(store):
    submit(store, job(retries=2, retry_on_exit=True))
    j = claim(store)
    assert store.finish(j, "w1", KILLED, 271, "walltime 00:00:01 exceeded", time.time()) is JobState.FAILED


def test_expired_lease_requeues_and_calls_handler(store):
    submit(store, job(retries=1))
    now = time.time()
    j = store.claim(Q, D, "w1", now + 1, now)
    seen = []
    lost = store.requeue_expired(now + 2, seen.append)
    assert [x.job_id for x in lost] == ["1"] and [x.job_id for x in seen] == ["1"]
    assert lost[0].state is JobState.QUEUED
    again = claim(store, "w2")
    assert again.attempts == 2
    # the first worker comes back late: it no longer owns the job
    assert store.heartbeat(j, "w1", now + 60) is None
    assert store.finish(j, "w1", EXITED, 0, "", time.time()) is None
    assert store.requeue_worker("w2", time.time())[0].state is JobState.FAILED  # retries=1: two runs at most


def test_delete_queued_never_starts(store):
    submit(store, job(), job())
    results = store.delete([JobRef(1, None, False), JobRef(99, None, False)], time.time())
    assert [(r.job_id, r.ok) for r in results] == [("1", True), ("99", False)]
    assert claim(store).id == 2
    assert claim(store) is None


def test_delete_running_is_seen_by_heartbeat(store):
    submit(store, job())
    j = claim(store)
    store.delete([JobRef(1, None, False)], time.time())
    assert store.heartbeat(j, "w1", time.time() + 30) is JobState.DELETED
    assert store.finish(j, "w1", EXITED, 143, "", time.time()) is None
    assert state_of(store, 1) is JobState.DELETED


def test_array_is_one_record_until_elements_start(store):
    (arr,) = submit(store, job(array="1-1000000:2%3"))
    assert arr.array_total == 500000
    assert store.backlog() == {(Q, D): 500000}
    got = [claim(store, f"w{i}") for i in range(4)]
    assert [g.index for g in got[:3]] == [1, 3, 5] and got[3] is None  # %3 limit
    store.finish(got[0], "w0", EXITED, 0, "", time.time())
    assert claim(store, "w9").index == 7
    assert store.backlog() == {(Q, D): 500000 - 4}
    counts = {(c.state): c.tasks for c in store.counts()}
    assert counts[JobState.RUNNING] == 3 and counts[JobState.SUCCEEDED] == 1


def test_array_completes_and_reports_failures(store):
    submit(store, job(array="0-3"))
    for _ in range(4):
        e = claim(store)
        store.finish(e, "w1", EXITED, 1 if e.index == 2 else 0, "", time.time())
    (arr,), _ = store.get_jobs([JobRef(1, None, True)])
    assert arr.state is JobState.FAILED and arr.array_done == 4 and arr.array_failed == 1
    assert "1 of 4 elements failed" in arr.reason


def test_delete_elements_before_and_after_start(store):
    submit(store, job(array="0-4"))
    e0 = claim(store)
    results = store.delete([JobRef(1, parse_array("0,2"), False)], time.time())
    assert all(r.ok for r in results)
    assert store.heartbeat(e0, "w1", time.time() + 30) is JobState.DELETED
    indices = []
    while (e := claim(store)) is not None:
        indices.append(e.index)
        store.finish(e, "w1", EXITED, 0, "", time.time())
    assert indices == [1, 3, 4]
    (arr,), _ = store.get_jobs([JobRef(1, None, True)])
    assert arr.state is JobState.DELETED and arr.array_done == 5
    assert store.backlog() == {}


def test_delete_whole_array(store):
    submit(store, job(array="1-100"))
    e = claim(store)
    (r,) = store.delete([JobRef(1, None, True)], time.time())
    assert r.ok and claim(store) is None
    assert store.heartbeat(e, "w1", time.time() + 30) is JobState.DELETED
    assert {c.state: c.tasks for c in store.counts()} == {JobState.DELETED: 100}


def test_requeued_element_waits_for_its_array_limit(store):
    submit(store, job(array="0-2%1", retries=1))
    now = time.time()
    e0 = store.claim(Q, D, "w0", now + 1, now)
    assert [j.job_id for j in store.requeue_expired(now + 2)] == ["1[0]"]
    e1 = claim(store, "w1")
    assert e1.index == 1 and claim(store, "w2") is None  # the requeued element waits for the %1 limit
    store.finish(e1, "w1", EXITED, 0, "", time.time())
    e2 = claim(store, "w1")
    assert e2.index == 2
    store.finish(e2, "w1", EXITED, 0, "", time.time())
    again = claim(store, "w3")
    assert (again.index, again.attempts) == (0, 2) and store.heartbeat(e0, "w0", now + 60) is None
    assert store.finish(again, "w3", EXITED, 0, "", time.time()) is JobState.SUCCEEDED
    (arr,), _ = store.get_jobs([JobRef(1, None, True)])
    assert arr.state is JobState.SUCCEEDED and arr.array_done == 3 and arr.array_running == 0
    assert {c.state: c.tasks for c in store.counts()} == {JobState.SUCCEEDED: 3}


def test_hold_array_and_dependency_on_element(store):
    (arr,) = submit(store, job(array="0-3"))
    (dep,) = submit(store, job("after"), depends=[("afterok", arr.id, 2)])
    assert dep.state is JobState.HELD and dep.reason == "waiting for afterok:1[2]"
    e0 = claim(store)
    assert store.set_hold([JobRef(arr.id, None, True)], True, time.time())[0].ok
    assert claim(store) is None
    assert {c.state: c.tasks for c in store.counts()} == {JobState.HELD: 4, JobState.RUNNING: 1}
    assert store.set_hold([JobRef(arr.id, None, True)], False, time.time())[0].ok
    got = [claim(store) for _ in range(3)]
    assert [g.index for g in got] == [1, 2, 3]
    store.finish(got[1], "w1", EXITED, 0, "", time.time())
    assert state_of(store, dep.id) is JobState.QUEUED
    assert [j.job_id for j in store.list_jobs(JobFilter(elements=True))] == ["1[]", "1[0]", "1[1]", "1[3]", "2"]
    assert store.backlog() == {(Q, D): 1}
    store.finish(e0, "w1", EXITED, 0, "", time.time())


def test_dependencies_release_and_never(store):
    a, b = submit(store, job("a"), job("b"))
    (c,) = submit(store, job("c"), depends=[("afterok", a.id, None)])
    (d,) = submit(store, job("d"), depends=[("afterok", b.id, None)])
    (e,) = submit(store, job("e"), depends=[("afternotok", b.id, None)])
    assert c.state is JobState.HELD and "waiting for afterok:1" in c.reason
    ja, jb = claim(store), claim(store)
    store.finish(ja, "w1", EXITED, 0, "", time.time())
    store.finish(jb, "w1", EXITED, 1, "", time.time())
    jobs, _ = store.get_jobs([JobRef(x, None, False) for x in (c.id, d.id, e.id)])
    assert [j.state for j in jobs] == [JobState.QUEUED, JobState.HELD, JobState.QUEUED]
    assert jobs[1].reason == "dependency can never be satisfied: afterok:2 ended FAILED"


def test_refusals_and_hold_reasons_are_typed(store):
    """qdel/qhold callers branch on Refusal and Hold, never on message text: every store sets them alike."""
    from hyper.dependencies import Hold, hold_of
    from hyper.store.base import Refusal

    a, b = submit(store, job("a"), job("b"))
    (c,) = submit(store, job("c"), depends=[("afterok", a.id, None)])
    (h,) = submit(store, job("h"), hold=True)
    assert (hold_of(c.reason), hold_of(h.reason)) == (Hold.WAITING, Hold.USER)
    ja, jb = claim(store, "w1"), claim(store, "w1")
    assert (ja.id, jb.id) == (a.id, b.id)
    store.finish(ja, "w1", EXITED, 1, "", time.time())
    (c_now,), _ = store.get_jobs([JobRef(c.id)])
    assert hold_of(c_now.reason) is Hold.NEVER and hold_of("") is None
    now = time.time()
    refusals = [r.refusal for r in store.delete([JobRef(99), JobRef(a.id), JobRef(b.id, parse_array("1"))], now)]
    assert refusals == [Refusal.UNKNOWN_JOB, Refusal.FINISHED, Refusal.NOT_AN_ARRAY]
    held = store.set_hold([JobRef(99), JobRef(jb.id), JobRef(c.id)], False, now)
    assert [r.refusal for r in held] == [Refusal.UNKNOWN_JOB, Refusal.NOT_USER_HELD, Refusal.NOT_USER_HELD]
    assert [r.refusal for r in store.set_hold([JobRef(jb.id)], True, now)] == [Refusal.CANNOT_HOLD]
    assert all(r.refusal is None for r in store.delete([JobRef(b.id)], now))


def test_dependency_on_unknown_job_writes_nothing(store):
    with pytest.raises(HyperError, match="dependency afterok:42 names no job"):
        store.submit([Submission(job("a")), Submission(job("b"), [("afterok", 42, None)])], time.time())
    assert list(store.list_jobs(JobFilter(include_finished=True))) == []
    assert store.backlog() == {}


def test_dependency_on_array(store):
    submit(store, job(array="0-1"))
    (dep,) = submit(store, job("after"), depends=[("afterany", 1, None)])
    for _ in range(2):
        e = claim(store)
        store.finish(e, "w1", EXITED, 0, "", time.time())
    assert claim(store).id == dep.id


DELETED_ELEMENT_OUTCOMES = [  # hyper/dependencies.py: a deleted target never ran, so only afterany is met
    ("afterok", JobState.HELD, "dependency can never be satisfied: afterok:{t} ended DELETED"),
    ("afternotok", JobState.HELD, "dependency can never be satisfied: afternotok:{t} ended DELETED"),
    ("afterany", JobState.QUEUED, ""),
]


@pytest.mark.parametrize("whole", [True, False], ids=["qdel-array", "qdel-element"])
@pytest.mark.parametrize("kind, expected, reason", DELETED_ELEMENT_OUTCOMES)
def test_deleting_array_resolves_dependents_of_unstarted_element(store, kind, expected, reason, whole):
    """`afterok:1[3]` while element 3 has not started: qdel 1[] (or 1[3]) ends the wait either way."""
    (arr,) = submit(store, job(array="0-3"))
    (dep,) = submit(store, job("after"), depends=[(kind, arr.id, 3)])
    assert dep.state is JobState.HELD and dep.reason == f"waiting for {kind}:1[3]"
    e0 = claim(store)  # the array has begun, element 3 has not
    assert e0.index == 0
    (r,) = store.delete([JobRef(arr.id, None if whole else parse_array("3"), whole)], time.time())
    assert r.ok and state_of(store, arr.id, 3) is JobState.DELETED
    (got,), _ = store.get_jobs([JobRef(dep.id)])
    assert (got.state, got.reason) == (expected, reason.format(t="1[3]"))
    claimed = {j.id for j in iter(lambda: claim(store), None)}
    assert (dep.id in claimed) is (expected is JobState.QUEUED)


@pytest.mark.parametrize("kind, expected, reason", DELETED_ELEMENT_OUTCOMES)
def test_deleting_array_resolves_dependents_of_started_element(store, kind, expected, reason):
    (arr,) = submit(store, job(array="0-3"))
    e0 = claim(store)
    (dep,) = submit(store, job("after"), depends=[(kind, arr.id, 0)])
    assert dep.state is JobState.HELD and dep.reason == f"waiting for {kind}:1[0]"
    (r,) = store.delete([JobRef(arr.id, None, True)], time.time())
    assert r.ok and store.heartbeat(e0, "w1", time.time() + 30) is JobState.DELETED
    (got,), _ = store.get_jobs([JobRef(dep.id)])
    assert (got.state, got.reason) == (expected, reason.format(t="1[0]"))


def test_deleted_array_element_dependency_already_ended_at_submit(store):
    (arr,) = submit(store, job(array="0-3"))
    store.delete([JobRef(arr.id, None, True)], time.time())
    (ok,) = submit(store, job("ok"), depends=[("afterok", arr.id, 2)])
    (any_,) = submit(store, job("any"), depends=[("afterany", arr.id, 2)])
    assert (ok.state, ok.reason) == (JobState.HELD, "dependency can never be satisfied: afterok:1[2] ended DELETED")
    assert any_.state is JobState.QUEUED and claim(store).id == any_.id


def test_held_array_keeps_its_requeued_elements(store):
    submit(store, job(array="0-2", retries=1))
    now = time.time()
    store.claim(Q, D, "w0", now + 1, now)
    assert [j.job_id for j in store.requeue_expired(now + 2)] == ["1[0]"]
    assert store.set_hold([JobRef(1, None, True)], True, time.time())[0].ok
    assert claim(store) is None  # a held array starts nothing, not even its requeued element
    assert state_of(store, 1) is JobState.HELD
    assert store.set_hold([JobRef(1, None, True)], False, time.time())[0].ok
    got = sorted((j.index, j.attempts) for j in (claim(store, f"w{i}") for i in range(4)) if j is not None)
    assert got == [(0, 2), (1, 1), (2, 1)]
    assert state_of(store, 1) is JobState.RUNNING


def test_released_array_with_every_element_started_is_running(store):
    submit(store, job(array="0-2"))
    e0 = claim(store)
    assert store.set_hold([JobRef(1, None, True)], True, time.time())[0].ok
    assert all(r.ok for r in store.delete([JobRef(1, parse_array("1-2"), False)], time.time()))
    assert store.set_hold([JobRef(1, None, True)], False, time.time())[0].ok
    (arr,), _ = store.get_jobs([JobRef(1, None, True)])
    assert arr.state is JobState.RUNNING and arr.array_running == 1 and claim(store) is None
    assert store.finish(e0, "w1", EXITED, 0, "", time.time()) is JobState.SUCCEEDED
    assert state_of(store, 1) is JobState.DELETED  # two of its elements were deleted


def test_claimed_job_reads_back_as_claimed(store):
    """What claim hands a worker is the record get_jobs then shows, not what the last run left behind."""
    submit(store, job(retries=1, retry_on_exit=True), job(array="0-1"))
    j = claim(store)
    store.set_pid(j, "w1", 4242)
    assert store.finish(j, "w1", EXITED, 3, "", time.time()) is JobState.QUEUED
    again = claim(store, "w2")
    assert (again.attempts, again.exit_code, again.ended, again.pid) == (2, None, None, None)
    element = claim(store, "w3")
    assert (element.job_id, element.array) == ("2[0]", None)
    back, _ = store.get_jobs([JobRef(1), JobRef(2, parse_array("0"))])
    assert back == [again, element]


def test_element_deleted_before_start_keeps_its_array_fields(store):
    arr = job(array="0-3")
    arr.priority = 5
    submit(store, arr)
    assert store.delete([JobRef(1, parse_array("2"))], time.time())[0].ok
    (el,), _ = store.get_jobs([JobRef(1, parse_array("2"))])
    assert (el.state, el.priority, el.reason, el.attempts) == (JobState.DELETED, 5, "deleted by qdel", 0)


def test_lost_jobs_come_back_in_id_order(store):
    submit(store, job("a", retries=1), job("b", retries=1))
    now = time.time()
    store.claim(Q, D, "w1", now + 5, now)
    store.claim(Q, D, "w1", now + 1, now)  # the later job's lease runs out first
    assert [j.job_id for j in store.requeue_expired(now + 10)] == ["1", "2"]
    store.claim(Q, D, "w1", now + 1, now)
    store.claim(Q, D, "w1", now + 5, now)
    assert [j.job_id for j in store.requeue_worker("w1", now + 10)] == ["1", "2"]


def test_holding_a_held_job_again_keeps_counts(store):
    submit(store, job("a"), hold=True)
    submit(store, job("arr", array="0-3"))
    assert store.set_hold([JobRef(2, None, True)], True, time.time())[0].ok
    assert all(r.ok for r in store.set_hold([JobRef(1), JobRef(2, None, True)], True, time.time()))
    assert {c.state: c.tasks for c in store.counts()} == {JobState.HELD: 5}


def test_lost_element_is_handed_over_with_its_array_spec(store):
    submit(store, job(array="0-1", retries=1))
    now = time.time()
    store.claim(Q, D, "w0", now + 1, now)
    seen = []
    lost = store.requeue_expired(now + 2, seen.append)
    assert [j.job_id for j in seen] == ["1[0]"] and seen[0].spec.command == ["true"]
    assert lost[0].spec.command == ["true"] and lost[0].state is JobState.QUEUED


def test_list_limit_counts_jobs_not_elements(store):
    submit(store, job("arr", array="0-2"), job("b"), job("c"))
    e0 = claim(store)
    store.finish(e0, "w1", EXITED, 0, "", time.time())
    claim(store)
    assert [j.job_id for j in store.list_jobs(JobFilter(elements=True, limit=2))] == ["1[]", "1[1]", "2"]
    flt = JobFilter(include_finished=True, elements=True, limit=2)
    assert [j.job_id for j in store.list_jobs(flt)] == ["1[]", "1[0]", "1[1]", "2"]


def test_hold_and_release(store):
    (a,) = submit(store, job(), hold=True)
    assert a.state is JobState.HELD and claim(store) is None
    assert store.set_hold([JobRef(a.id, None, False)], False, time.time())[0].ok
    assert claim(store).id == a.id


def test_list_filters(store):
    store.put_resource(Queue(name="gpu", cluster="local"))
    submit(store, job("a"), job("b", queue="gpu"))
    e = claim(store)
    store.finish(e, "w1", EXITED, 0, "", time.time())
    assert [j.name for j in store.list_jobs(JobFilter())] == ["b"]
    assert [j.name for j in store.list_jobs(JobFilter(include_finished=True))] == ["a", "b"]
    assert [j.name for j in store.list_jobs(JobFilter(queue="default", include_finished=True))] == ["a"]


def test_workers_registry(store):
    now = time.time()
    store.register_worker(WorkerInfo("w1", Q, D, "h", 1, now, now, "IDLE"))
    store.touch_worker("w1", now + 1, "BUSY", 3)
    (w,) = store.list_workers(live_since=now)
    assert (w.state, w.jobs_run) == ("BUSY", 3)
    store.touch_worker("w1", now + 2, "EXITED", 3)
    assert store.list_workers(live_since=now) == []


def test_workers_listed_by_start_then_id(store):
    now = time.time()
    for wid in ("w2", "w1", "w0"):
        store.register_worker(WorkerInfo(wid, Q, D, "h", 1, now if wid != "w0" else now + 1, now, "IDLE"))
    assert [w.id for w in store.list_workers()] == ["w1", "w2", "w0"]


def test_definition_roundtrip(store):
    store.put_resource(Definition(name="big", vcpus=8, gpus=1, ratio=10, environment={"A": "1"}))
    d = store.get_resource("definition", "big")
    assert (d.vcpus, d.gpus, d.ratio, d.environment) == (8, 1, 10, {"A": "1"})


# DynamoDB only: races, conditional conflicts, batching, item sizes, ids, errors -------------------------
def _both(fn, *args):
    """Run fn in two threads released at the same instant; returns both results."""
    gate, out = threading.Barrier(2), [None, None]

    def run(i):
        gate.wait()
        out[i] = fn(i, *args)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return out


def test_two_claimers_race_for_one_job(ddb):
    from hyper.store.dynamodb import DynamoStore

    stores = [DynamoStore(ddb.host), DynamoStore(ddb.host)]
    for round_ in range(5):
        (j,) = submit(ddb, job(f"r{round_}"))
        now = time.time()
        got = _both(lambda i: stores[i].claim(Q, D, f"w{i}", now + 30, now))
        winners = [g for g in got if g is not None]
        assert len(winners) == 1 and winners[0].id == j.id and winners[0].attempts == 1
        (rec,), _ = ddb.get_jobs([JobRef(j.id)])
        assert rec.state is JobState.RUNNING and rec.worker == winners[0].worker and rec.attempts == 1
    assert {c.state: c.tasks for c in ddb.counts()} == {JobState.RUNNING: 5}


def test_racing_element_claims_advance_the_cursor_once_each(ddb):
    from hyper.store.dynamodb import DynamoStore

    stores = [DynamoStore(ddb.host), DynamoStore(ddb.host)]
    submit(ddb, job(array="0-5"))
    claimed = []
    for _ in range(3):
        now = time.time()
        claimed += [g.index for g in _both(lambda i: stores[i].claim(Q, D, f"w{i}", now + 30, now)) if g]
    assert sorted(claimed) == [0, 1, 2, 3, 4, 5]
    (arr,), _ = ddb.get_jobs([JobRef(1, None, True)])
    assert arr.array_started == 6 and arr.array_running == 6 and arr.state is JobState.RUNNING
    assert ddb.backlog() == {}


def test_conditional_update_conflicts(ddb):
    from hyper.store.dynamodb import _Expr, _jkey, _update

    submit(ddb, job(retries=1))
    now = time.time()
    # a stale candidate (an index entry read before another worker took the job) fails its condition
    first = ddb._claim_item(1, -1, Q, D, "w1", now + 30, now)
    assert first is not None
    assert ddb._claim_item(1, -1, Q, D, "w2", now + 30, now) is None
    # a transaction whose condition fails writes nothing, counters in the other table included
    before = ddb.counts()
    e = _Expr()
    op = _update(ddb.jobs, _jkey(1, -1), e, set_={"reason": "x"}, cond=e.eq(state="QUEUED"))
    result = ddb._transact([("Update", op)], {(Q, D, "RUNNING"): 100})
    assert not result and result.failed == {0}
    assert ddb.counts() == before
    (rec,), _ = ddb.get_jobs([JobRef(1)])
    assert rec.reason == "" and rec.worker == "w1"
    # the lease sweep fences the job before requeueing it: the late owner is told it lost it
    lost = ddb.requeue_expired(now + 60)
    assert [(j.job_id, j.worker, j.state) for j in lost] == [("1", "w1", JobState.QUEUED)]
    assert ddb.heartbeat(first, "w1", now + 90) is None
    assert ddb.finish(first, "w1", EXITED, 0, "", now + 91) is None


def test_lease_sweep_skips_a_job_whose_lease_moved(ddb):
    submit(ddb, job(retries=1))
    now = time.time()
    j = ddb.claim(Q, D, "w1", now + 1, now)
    assert ddb.heartbeat(j, "w1", now + 120) is JobState.RUNNING  # renewed before the sweep
    assert ddb.requeue_expired(now + 2) == []
    assert ddb.finish(j, "w1", EXITED, 0, "", time.time()) is JobState.SUCCEEDED


def test_batch_write_retries_unprocessed_items(ddb):
    from hyper.store.dynamodb import batch_write

    calls, sleeps = [], []

    def throttled_twice(body):
        """A real BatchWriteItem that, like a throttled partition, takes only 5 items the first two times."""
        ((table, requests),) = body.items()
        calls.append(len(requests))
        if len(calls) <= 2:
            ddb.db.batch_write_item(RequestItems={table: requests[:5]})
            return {"UnprocessedItems": {table: requests[5:]}}
        return ddb.db.batch_write_item(RequestItems=body)

    requests = [(ddb.meta, {"PutRequest": {"Item": {"pk": {"S": "t"}, "sk": {"S": f"{i:03d}"}}}}) for i in range(30)]
    assert batch_write(throttled_twice, requests, sleep=sleeps.append) == []
    assert calls == [25, 20, 15, 5] and len(sleeps) == 2
    items = list(ddb._query_all(table=ddb.meta, key="pk", value="t", consistent=True))
    assert [it["sk"] for it in items] == [f"{i:03d}" for i in range(30)]


def test_throttled_submission_is_an_error_never_a_silent_loss(ddb):
    ddb.batch_attempts = 2
    sent = []

    def jobs_half_throttled(body):
        """Spec items and edges land; of the job items, only the first one is ever accepted."""
        ((table, requests),) = body.items()
        if table != ddb.jobs or not sent:
            sent.extend(requests[:1] if table == ddb.jobs else [])
            keep, rest = (requests[:1], requests[1:]) if table == ddb.jobs else (requests, [])
            ddb.db.batch_write_item(RequestItems={table: keep})
            return {"UnprocessedItems": {table: rest} if rest else {}}
        return {"UnprocessedItems": body}

    ddb._send_batch = jobs_half_throttled
    with pytest.raises(HyperError, match=r"throttled the submission .*: 1 of 3 jobs were written; 2 were not "
                                         r"\(ids 2, 3\)") as info:
        submit(ddb, job("a"), job("b"), job("c"))
    assert "\n" not in str(info.value) and "submit them again" in info.value.hint
    assert [j.name for j in ddb.list_jobs(JobFilter(include_finished=True))] == ["a"]
    assert ddb.backlog() == {(Q, D): 1}  # counts of the jobs not written were taken back


def test_large_scripts_are_compressed_into_their_own_item(ddb):
    script = "#!/bin/sh\n" + "".join(f"echo line {i} of a long generated script\n" for i in range(3000))
    big = Job(name="big", user="alice", queue=Q, definition=D, array="0-1",
              spec=JobSpec(script=script, env={"A": "1" * 100}))
    (b,) = submit(ddb, big)
    parent = ddb._get(b.id, -1)
    stored = ddb._get(b.id, -2)
    assert parent["big"] and '"script": null' in parent["spec"] and len(parent["spec"]) < 2048
    assert isinstance(stored["specz"], bytes) and len(stored["specz"]) < len(script) / 10
    assert claim(ddb).spec.script == script  # an element gets its array's whole spec
    (got,), _ = ddb.get_jobs([JobRef(b.id, None, True)])
    assert got.spec.script == script and got.spec.env == {"A": "1" * 100}
    listed = next(iter(ddb.list_jobs(JobFilter())))
    assert listed.spec.script is None  # qstat reads the summary only


def test_script_too_large_for_an_item_writes_nothing(ddb):
    noise = os.urandom(400_000).hex()
    with pytest.raises(HyperError, match="more than a DynamoDB item holds"):
        submit(ddb, Job(name="huge", user="alice", queue=Q, definition=D, spec=JobSpec(script=noise)))
    assert list(ddb.list_jobs(JobFilter(include_finished=True))) == [] and ddb.backlog() == {}
    assert [j.id for j in submit(ddb, job())] == [1]  # no id was taken either


def test_ids_come_from_shard_zero_and_spill_to_disjoint_blocks(ddb):
    from hyper.store.dynamodb import ID_BLOCK

    assert [j.id for j in submit(ddb, job(), job())] == [1, 2]
    spilled = ddb._allocate_ids(3, shard=1)  # what a submitter gets when shard 0 is throttled
    assert spilled == [ID_BLOCK + 1, ID_BLOCK + 2, ID_BLOCK + 3]
    assert [j.id for j in submit(ddb, job())] == [3]
    seen = {ddb._id_at(k, p) for k in range(2) for p in (*range(3), *range(ID_BLOCK - 2, ID_BLOCK + 3))}
    assert len(seen) == 2 * 8  # the shards' id spaces never overlap, across block boundaries too


def test_finished_jobs_expire_and_keys_spread_over_shards(ddb):
    submit(ddb, job(), job(array="0-3"))
    running = [claim(ddb, f"w{i}") for i in range(5)]
    items = [ddb._get(j.id, -1 if j.index is None else j.index) for j in running]
    assert {it["ls"] for it in items} == {"0", "1"}  # lease index: elements of one array on every shard
    assert all("qs" not in it for it in items if it["idx"] >= 0)  # elements are never in the queue index
    assert all("expires" not in it for it in items)
    ended = time.time()
    ddb.finish(running[0], "w0", EXITED, 0, "", ended)
    assert abs(ddb._get(1, -1)["expires"] - (ended + 30 * 86400)) < 2


def test_tables_are_idempotent_with_ttl(ddb):
    from hyper.aws.tables import delete_tables, ensure_tables, table_names, tables_exist

    host = ddb.host
    assert ensure_tables(host) == [] and tables_exist(host)
    for name in table_names(host).values():
        ttl = ddb.db.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert ttl["TimeToLiveStatus"] == "ENABLED" and ttl["AttributeName"] == "expires"
        table = ddb.db.describe_table(TableName=name)["Table"]
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert table["DeletionProtectionEnabled"] is True  # purge must turn it off (delete_tables below)
        assert table["SSEDescription"]["Status"] == "ENABLED"
        backups = ddb.db.describe_continuous_backups(TableName=name)["ContinuousBackupsDescription"]
        assert backups["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"
    gsis = ddb.db.describe_table(TableName=ddb.jobs)["Table"]["GlobalSecondaryIndexes"]
    assert sorted(g["IndexName"] for g in gsis) == ["by_queue", "leases", "ready"]  # schema 2
    assert delete_tables(host) == list(table_names(host).values()) and not tables_exist(host)


def test_tables_use_the_hosts_kms_key():
    """Host setting kms_key: both tables are encrypted with that key (pure: the create_table requests)."""
    from hyper.aws.tables import table_definitions
    from hyper.config import Host

    plain = Host(name="k", type="aws")
    keyed = Host(name="k", type="aws", extra={"kms_key": "alias/hyper"})
    assert all(d["SSESpecification"] == {"Enabled": True} for d in table_definitions(plain))
    assert all(d["SSESpecification"] == {"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": "alias/hyper"}
               for d in table_definitions(keyed))


def test_aws_failures_are_one_line_errors(moto_endpoint, monkeypatch):
    from hyper.store.dynamodb import DynamoStore

    def fails(host, *words):
        with pytest.raises(HyperError) as info:
            DynamoStore(host)
        text = str(info.value)
        assert "\n" not in text and "Traceback" not in text and info.value.hint
        for word in words:
            assert word in text
        return info.value

    fails(aws_host(moto_endpoint), "do not exist", "region us-east-1")
    err = fails(aws_host("http://127.0.0.1:9", max_attempts=1), "cannot reach http://127.0.0.1:9")
    assert "endpoint" in err.hint
    err = fails(Host(name="p", type="aws", main_region="us-east-1", profile="no-such-profile",
                     endpoint_url=moto_endpoint), "'no-such-profile'")
    assert "aws configure --profile no-such-profile" in err.hint
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
        monkeypatch.delenv(key)
    fails(aws_host(moto_endpoint), "no usable AWS credentials", "default credential chain")
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    fails(Host(name="r", type="aws", endpoint_url=moto_endpoint), "no AWS region")


def _client_error(code: str, operation: str, **extra):
    from hyper.store.dynamodb import bx

    return bx.ClientError({"Error": {"Code": code, "Message": "simulated"}, **extra}, operation)


class _InFront:
    """The real client, with chosen calls answered first by a stand-in (DynamoDB behaviour moto lacks)."""

    def __init__(self, real, **overrides):
        self._real, self._overrides = real, overrides

    def __getattr__(self, name):
        return self._overrides.get(name) or getattr(self._real, name)


def test_throttled_id_counter_spills_to_another_shard(ddb):
    from hyper.store.dynamodb import ID_BLOCK

    def throttled(**kwargs):
        raise _client_error("ProvisionedThroughputExceededException", "UpdateItem")

    ddb.fast = _InFront(ddb.fast, update_item=throttled)
    a, b = submit(ddb, job("a"), job("b"))
    assert (a.id, b.id) == (ID_BLOCK + 1, ID_BLOCK + 2)  # shard 1 of 2 owns the second block
    assert [j.name for j in ddb.list_jobs(JobFilter())] == ["a", "b"] and claim(ddb).id == a.id


def test_transaction_conflicts_are_retried(ddb):
    """A finish (the job and a counter shard in one transaction) that meets a TransactionConflict is sent
    again, on fresh counter shards, and counted once. (A single job's claim is one UpdateItem: schema 2.)"""
    submit(ddb, job())
    j = claim(ddb)
    conflicts = []

    def conflict_once(**kwargs):
        if not conflicts:
            conflicts.append(kwargs)
            raise _client_error("TransactionCanceledException", "TransactWriteItems",
                                CancellationReasons=[{"Code": "None"}, {"Code": "TransactionConflict"}])
        return ddb.db._real.transact_write_items(**kwargs)

    ddb.db = _InFront(ddb.db, transact_write_items=conflict_once)
    assert ddb.finish(j, "w1", EXITED, 0, "", time.time()) is JobState.SUCCEEDED and len(conflicts) == 1
    assert {c.state: c.tasks for c in ddb.counts()} == {JobState.SUCCEEDED: 1}  # counted once, not twice


def test_local_path_never_imports_boto3():
    code = ("import sys, hyper.store.sqlite, hyper.services.context, hyper.aws.tables, hyper.aws.session; "
            "bad = [m for m in ('boto3', 'botocore') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr



def test_list_by_user_with_and_without_a_queue(store):
    """qstat -u: only that user's jobs and arrays, active or (with -x) finished, in any queue or in one."""
    submit(store, job("a", user="ann"), job("b"), job("c", queue="other"), job("d", array="0-2"))

    def rows(**flt):
        return [(j.id, j.state.value) for j in store.list_jobs(JobFilter(with_spec=False, **flt))]

    assert rows(user="alice") == [(2, "QUEUED"), (3, "QUEUED"), (4, "QUEUED")]
    assert rows(user="alice", queue="other") == [(3, "QUEUED")]
    assert rows(user="ann") == [(1, "QUEUED")] and rows(user="nobody") == []
    j = claim(store)
    assert (j.id, rows(user="ann")) == (1, [(1, "RUNNING")])
    store.finish(j, "w1", EXITED, 0, "", time.time())
    assert rows(user="ann") == [] and rows(user="ann", include_finished=True) == [(1, "SUCCEEDED")]
    assert rows(user="alice", include_finished=True) == [(2, "QUEUED"), (3, "QUEUED"), (4, "QUEUED")]
