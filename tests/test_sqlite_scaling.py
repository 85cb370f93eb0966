"""The embedded store's claim and finish do work independent of how many elements an array has started.

Counted in SQLite virtual-machine steps (a progress handler), not in seconds: deterministic on a loaded
machine. Before the requeued-elements index, every claim and finish walked every started element of the
array (so a 100,000-element array was O(N^2) to run).
"""

from __future__ import annotations

import pytest

import time

from hyper.models import Job, JobSpec
from hyper.retry import EXITED
from hyper.store.base import Submission
from hyper.store.sqlite import SQLiteStore


def _steps_per_claim_and_finish(store: SQLiteStore, samples: int = 20) -> float:
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    store.con.set_progress_handler(count, 100)
    try:
        for _ in range(samples):
            job = store.claim("q", "d", "w", time.time() + 60, time.time())
            store.finish(job, "w", EXITED, 0, "", time.time())
    finally:
        store.con.set_progress_handler(None, 100)
    return steps * 100 / samples


def _run(store: SQLiteStore, n: int) -> None:
    for _ in range(n):
        job = store.claim("q", "d", "w", time.time() + 60, time.time())
        store.finish(job, "w", EXITED, 0, "", time.time())


def test_array_claim_and_finish_cost_does_not_grow_with_started_elements(tmp_path):
    store = SQLiteStore(tmp_path / "hyper.db")
    spec = JobSpec(command=["/bin/true"], submit_dir=str(tmp_path))
    store.submit([Submission(Job(name="a", user="u", queue="q", definition="d", spec=spec, array="1-5000"))],
                 time.time())
    _run(store, 100)
    early = _steps_per_claim_and_finish(store)
    _run(store, 3000)
    late = _steps_per_claim_and_finish(store)
    assert late < early * 1.5, (early, late)


def test_a_requeued_element_still_waits_at_the_array_limit_and_runs_below_it(tmp_path):
    """The settle step now touches only requeued elements: they must still follow the %limit."""
    store = SQLiteStore(tmp_path / "hyper.db")
    spec = JobSpec(command=["/bin/true"], submit_dir=str(tmp_path), retry_on_exit=True)
    job = Job(name="a", user="u", queue="q", definition="d", spec=spec, array="1-3%1", retries=1)
    store.submit([Submission(job)], time.time())
    first = store.claim("q", "d", "w", time.time() + 60, time.time())
    assert store.claim("q", "d", "w", time.time() + 60, time.time()) is None  # at the limit
    store.finish(first, "w", EXITED, 1, "", time.time())  # fails, retried: requeued
    second = store.claim("q", "d", "w", time.time() + 60, time.time())
    assert second.index == 2  # the array's next element (it sorts before its requeued ones)
    assert store.claim("q", "d", "w", time.time() + 60, time.time()) is None  # the requeued one waits: limit
    store.finish(second, "w", EXITED, 0, "", time.time())
    assert store.claim("q", "d", "w", time.time() + 60, time.time()).index in (1, 3)
    assert store.claim("q", "d", "w", time.time() + 60, time.time()) is None


def _first_use(path: str, out, start) -> None:
    import os

    os.environ["HYPER_DB_TIMEOUT"] = "15"
    start.wait()  # all at once
    try:
        store = SQLiteStore(path)
        spec = JobSpec(command=["/bin/true"], submit_dir="/tmp")
        store.submit([Submission(Job(name="a", user="u", queue="q", definition="d", spec=spec))], time.time())
        out.put("ok")
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which asserts on it
        out.put(f"{type(exc).__name__}: {exc}")


@pytest.mark.e2e  # real processes opening one fresh database at once
def test_concurrent_first_time_opens_never_report_a_locked_database(tmp_path):
    """Eight processes create the same fresh database at once (concurrent first-time qsubs, issue 18)."""
    import multiprocessing

    mp = multiprocessing.get_context("spawn")
    for trial in range(5):
        path = str(tmp_path / f"t{trial}" / "hyper.db")
        out, start = mp.Queue(), mp.Barrier(8)
        procs = [mp.Process(target=_first_use, args=(path, out, start)) for _ in range(8)]
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join()
        assert results == ["ok"] * 8
        assert len(SQLiteStore(path).con.execute("SELECT id FROM jobs").fetchall()) == 8
