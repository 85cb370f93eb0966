"""The Store contract: every implementation must pass these (SQLite now; DynamoDB plugs into `store`)."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from hyper.errors import HyperError
from hyper.models import Definition, Job, JobSpec, Queue
from hyper.parsing.arrays import parse_array
from hyper.parsing.jobids import JobRef
from hyper.retry import EXITED, KILLED, LOST
from hyper.services.context import bootstrap_local
from hyper.states import JobState
from hyper.store.base import JobFilter, Submission, WorkerInfo

Q, D = "default", "default"


def make_sqlite(tmp_path):
    from hyper.store.sqlite import SQLiteStore

    return SQLiteStore(tmp_path / "hyper.db")


@pytest.fixture(params=["sqlite"])
def store(request, tmp_path):
    s = {"sqlite": make_sqlite}[request.param](tmp_path)
    bootstrap_local(s)
    yield s
    s.close()


def job(name="j", array=None, retries=0, retry_on_exit=False, queue=Q) -> Job:
    return Job(name=name, user="alice", queue=queue, definition=D, retries=retries, array=array,
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


@pytest.mark.parametrize("n_workers", [4])
def test_racing_claimers_never_share_a_job(store, tmp_path, n_workers):
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


def test_definition_roundtrip(store):
    store.put_resource(Definition(name="big", vcpus=8, gpus=1, ratio=10, environment={"A": "1"}))
    d = store.get_resource("definition", "big")
    assert (d.vcpus, d.gpus, d.ratio, d.environment) == (8, 1, 10, {"A": "1"})
