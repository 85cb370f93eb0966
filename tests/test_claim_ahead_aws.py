"""Claiming array elements several at a time on DynamoDB (issue 10 §3), against moto's server on 127.0.0.1.

``claim_many`` takes k elements of one array in one transaction; all but the first are claimed ahead until they
start. What must hold: a claimed-ahead element never spends an attempt it did not run, whether its worker gives
it back (``release``) or dies holding it (the sweep); a started element cannot be given back; the array's
counters stay exact, so the array still ends SUCCEEDED.
"""

from __future__ import annotations

import time

from hyper.config import Host
from hyper.models import Job, JobSpec
from hyper.parsing.arrays import parse_array
from hyper.parsing.jobids import JobRef
from hyper.states import JobState
from hyper.store.base import Submission, WorkerInfo
from hyper.store.dynamodb import DynamoStore
from tests.test_ended_workers_aws import _store


def _elements(store: DynamoStore, job_id: int, spec: str) -> dict[int, Job]:
    found, _ = store.get_jobs([JobRef(job_id, parse_array(spec), False)])
    return {j.index: j for j in found}


def test_elements_claimed_ahead_go_back_unspent_by_release_or_by_the_sweep(moto_endpoint, request):
    store = _store(moto_endpoint, request.node.name)
    now = time.time()
    store.register_worker(WorkerInfo("w1", "q", "d", "ip-1", 1, now, now, "BUSY"))
    (array,) = store.submit([Submission(Job(name="a", user="u", queue="q", definition="d", array="0-9",
                                            spec=JobSpec(command=["true"])))], now)
    taken = store.claim_many("q", "d", "w1", now + 60, now, 5)
    assert [j.index for j in taken] == [0, 1, 2, 3, 4]  # one transaction, the cursor moved by five
    assert all(j.worker == "w1" and j.state is JobState.RUNNING and j.attempts == 1 for j in taken)
    first, second = taken[0], taken[1]
    store.set_pid(first, "w1", 4242)
    store.set_pid(second, "w1", 4243)  # started: no longer claimed ahead
    assert store.release(second, "w1", now) is None  # a started element is never given back
    assert store.release(taken[2], "w1", now) is JobState.QUEUED
    assert store.release(taken[2], "w1", now) is None  # (twice: nothing left to give)

    # the worker dies holding elements 3 and 4 (claimed ahead) and running 0 and 1 (no retries: they fail)
    store.requeue_worker("w1", now + 1)
    els = _elements(store, array.id, "0-4")
    assert {i: (e.state.value, e.attempts) for i, e in els.items()} == {
        0: ("FAILED", 1), 1: ("FAILED", 1), 2: ("QUEUED", 0), 3: ("QUEUED", 0), 4: ("QUEUED", 0)}

    # another worker takes everything left, the given-back elements and the rest of the array, and finishes it
    ran = []
    while True:
        jobs = store.claim_many("q", "d", "w2", time.time() + 60, time.time(), 4)
        if not jobs:
            break
        for job in jobs:
            store.set_pid(job, "w2", 1)
            assert store.finish(job, "w2", "exited", 0, "", time.time()) is JobState.SUCCEEDED
            ran.append(job.index)
    assert sorted(ran) == [2, 3, 4, 5, 6, 7, 8, 9]
    (parent,), _ = store.get_jobs([JobRef(array.id, None, True)])
    assert (parent.state.value, parent.array_done, parent.array_failed, parent.array_running) == ("FAILED", 10, 2, 0)
    assert {c.state.value: c.tasks for c in store.counts()} == {"FAILED": 2, "SUCCEEDED": 8}  # none Q or R


def test_claim_many_respects_an_arrays_running_limit(moto_endpoint, request):
    store = _store(moto_endpoint, request.node.name)
    now = time.time()
    store.submit([Submission(Job(name="a", user="u", queue="q", definition="d", array="0-9%3",
                                 spec=JobSpec(command=["true"])))], now)
    taken = store.claim_many("q", "d", "w1", now + 60, now, 8)
    assert [j.index for j in taken] == [0, 1, 2]  # %3: never more than three at once
    assert store.claim_many("q", "d", "w2", now + 60, now, 8) == []
    store.set_pid(taken[0], "w1", 1)
    store.finish(taken[0], "w1", "exited", 0, "", now)
    assert [j.index for j in store.claim_many("q", "d", "w2", now + 60, now, 8)] == [3]


def test_a_worker_gives_back_what_it_claimed_ahead_when_it_stops(moto_endpoint, request, tmp_path):
    """The worker loop claims ahead after short jobs (1, then 2, 4...) and, stopping at --max-jobs, gives back
    the elements it holds: they are QUEUED again with no attempt spent, for the next worker."""
    from hyper.worker.loop import Worker

    store = _store(moto_endpoint, request.node.name)
    (array,) = store.submit([Submission(Job(name="a", user="u", queue="q", definition="d", array="0-9",
                                            spec=JobSpec(command=["true"])))], time.time())
    worker = Worker(store, "w1", "q", "d", tmp_path / "work", tmp_path / "logs", idle=1.0, lease=60, kill_grace=1,
                    max_jobs=2, host=Host(name="l", type="local"))
    assert worker.run() == 0 and worker.jobs_run == 2
    els = _elements(store, array.id, "0-9")
    assert {i: (e.state.value, e.attempts) for i, e in els.items()} == {
        0: ("SUCCEEDED", 1), 1: ("SUCCEEDED", 1),  # 1 and 2 were claimed together; 2 went back
        **{i: ("QUEUED", 0) for i in range(2, 10)}}
    assert els[2].worker is None
    assert store.backlog() == {("q", "d"): 8}
