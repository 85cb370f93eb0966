"""A job never runs twice at once (issue 10 §4): a worker frozen past its lease has its job stopped before the
sweep hands the job to another worker. Real worker processes against moto's server on 127.0.0.1."""

from __future__ import annotations

import signal
import time
import uuid

import pytest

from tests.conftest import cli, wait_until
from tests.test_worker_aws import _gone, _running, aws_host  # noqa: F401 (the fixture)

# attempt 1 ticks into the marker file until it is stopped; attempt 2 writes one line and ends
TICKER = ('if [ "$HYPER_ATTEMPT" = 1 ]; then while :; do echo "1 $(date +%s.%N)" >> "$MARK"; sleep 0.1; done; fi; '
          'echo "2 $(date +%s.%N)" >> "$MARK"')


def test_frozen_worker_stops_its_job_before_the_sweep_requeues_it(aws_host, monkeypatch, tmp_path):
    mark = tmp_path / "marks"
    monkeypatch.setenv("HYPER_LEASE", "3")  # renewed every second; the sweep waits lease + 5 s
    job_id = cli("qsub", "-q", "q", "-d", "d", "--retries", "1", "-v", f"MARK={mark}", "--", "sh", "-c", TICKER,
                 check=True).stdout.strip()
    frozen = aws_host.worker("w-frozen", idle=5)
    running = _running(aws_host, int(job_id))
    wait_until(lambda: mark.exists() and mark.read_text().count("\n") >= 3, timeout=15)
    frozen.send_signal(signal.SIGSTOP)  # a stalled VM, a GC pause: the worker can neither renew nor kill
    try:
        stopped_at = time.monotonic()
        requeued = wait_until(lambda: aws_host.store.requeue_expired(time.time()), timeout=40, step=0.5)
        waited = time.monotonic() - stopped_at
        assert [j.job_id for j in requeued] == ["1"]
        assert waited >= 3, waited  # not before the lease (plus its margin) ran out
        assert _gone(running.pid)  # the first attempt was stopped before the sweep took the job
        second = aws_host.worker("w-second", idle=1)
        out, err = second.communicate(timeout=60)
        assert second.returncode == 0, err
    finally:
        frozen.send_signal(signal.SIGCONT)
    job = aws_host.job(1)
    assert (job.state.value, job.attempts, job.worker) == ("SUCCEEDED", 2, "w-second")
    ticks = [line.split() for line in mark.read_text().splitlines()]
    first = [float(t) for a, t in ticks if a == "1"]
    (second_start,) = [float(t) for a, t in ticks if a == "2"]
    assert first and max(first) < second_start  # no overlap: attempt 1 had stopped before attempt 2 began
    frozen.communicate(timeout=60)  # it wakes, finds the job is no longer its own, and idles out


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_worker_that_cannot_renew_stops_its_job_before_the_lease_ends():
    """DynamoDB unreachable while the job runs: the keeper says stop (None) once the lease is within the kill
    grace of its end, not later; a renewal that lands in time keeps the job."""
    from hyper.states import JobState
    from hyper.worker.fence import LeaseKeeper

    clock, failing = _Clock(), [False]

    def renew(until):
        if failing[0]:
            raise ConnectionError("endpoint unreachable")
        return JobState.RUNNING

    keeper = LeaseKeeper(renew, lambda: JobState.RUNNING, lease=30, renew_every=10, stop_before=5, now=clock,
                         until=clock.t + 30)
    for _ in range(12):  # renewals land: the lease keeps moving
        clock.t += 1
        assert keeper() is JobState.RUNNING
    assert keeper.until == clock.t - 2 + 30  # renewed at t+10 (lease/3)
    failing[0] = True
    while keeper() is JobState.RUNNING:
        clock.t += 1
    assert keeper.until - 5 <= clock.t < keeper.until  # stopped kill-grace before the end, never after it
    assert "could not be renewed" in keeper.fenced and "endpoint unreachable" in keeper.fenced


def test_an_hour_long_job_renews_every_lease_third_and_peeks_rarely():
    """What one running hour costs the store with a fixed lease: renewals at lease/3, and qdel peeks every
    elapsed/5 s (2 s at first, at most peek_ceiling) whatever the renewals do: a renewal of the worker's own item
    reads nothing, so it does not stand in for a peek."""
    from hyper.states import JobState
    from hyper.worker.fence import LeaseKeeper

    clock = _Clock()
    keeper = LeaseKeeper(lambda until: JobState.RUNNING, lambda: JobState.RUNNING, lease=60, renew_every=20,
                         stop_before=10, now=clock, until=clock.t + 60, peek_ceiling=60)
    for _ in range(3600):  # the runner calls it every second
        clock.t += 1
        assert keeper() is JobState.RUNNING
    assert keeper.renewals == 180
    assert 70 <= keeper.peeks <= 85, keeper.peeks  # 6 in the first 12 s, ~20 to 6 min, then one a minute


def test_a_long_jobs_lease_grows_with_its_age_and_still_fences_in_time():
    """With max_lease (DynamoDB hosts) a renewal takes twice the job's age as its lease (base lease at least,
    max_lease at most) and the next one comes half of that later: an hour costs 11 renewals, not 180. A
    renewal never shortens the lease, and when renewals stop landing the job still stops before the lease's
    end, however long the lease has become. (max_lease 900 s: 11 renewals in an hour.)"""
    from hyper.states import JobState
    from hyper.worker.fence import LeaseKeeper

    clock, failing, granted = _Clock(), [False], []

    def renew(until):
        if failing[0]:
            raise ConnectionError("endpoint unreachable")
        granted.append((clock.t, until))
        return JobState.RUNNING

    keeper = LeaseKeeper(renew, lambda: JobState.RUNNING, lease=60, renew_every=20, stop_before=10, now=clock,
                         until=clock.t + 60, peek_ceiling=60, max_lease=900)
    for _ in range(3600):
        clock.t += 1
        assert keeper() is JobState.RUNNING
    assert keeper.renewals == 11, keeper.renewals
    ends = [until for _, until in granted]
    assert ends == sorted(ends)  # each renewal moves the end later
    assert all(until - t <= 900 for t, until in granted)  # never more than max_lease ahead
    assert all(t2 - t1 <= (u1 - t1) / 2 + 1 for (t1, u1), (t2, _) in zip(granted, granted[1:]))  # half apart
    assert [t - 1000 for t, _ in granted[:5]] == [30, 60, 120, 240, 480]  # the lease doubles with the job's age
    failing[0] = True
    while keeper() is JobState.RUNNING:
        clock.t += 1
    assert keeper.until - 10 <= clock.t < keeper.until and "could not be renewed" in keeper.fenced

    plain = LeaseKeeper(lambda until: JobState.RUNNING, lambda: JobState.RUNNING, lease=60, renew_every=20,
                        stop_before=10, now=clock, until=clock.t + 60, max_lease=None)
    for _ in range(600):
        clock.t += 1
        plain()
    assert plain.renewals == 30  # no max_lease (SQLite hosts, where a renewal costs nothing): fixed lease


def test_a_short_lease_keeps_renewals_a_third_apart():
    """Half-lease renewals only where the other half leaves RETRY_SLACK (10 s) to retry before the job is
    stopped: a 2 s lease (tests, HYPER_LEASE) renews every third, or a check a second apart would miss it."""
    from hyper.states import JobState
    from hyper.worker.fence import LeaseKeeper

    clock = _Clock()
    keeper = LeaseKeeper(lambda until: JobState.RUNNING, lambda: JobState.RUNNING, lease=2, renew_every=2 / 3,
                         stop_before=2 / 3, now=clock, until=clock.t + 2, peek_ceiling=60, max_lease=900)
    assert keeper.renew_gap(2) == pytest.approx(2 / 3) and keeper.renew_gap(20) == pytest.approx(20 / 3)
    assert keeper.renew_gap(30) == 15  # 15 - 2/3 s of slack left: half
    for _ in range(40):  # checked every 0.5 s for 20 s: the lease never runs out
        clock.t += 0.5
        assert keeper() is JobState.RUNNING


def test_a_job_that_renewed_needs_no_registry_touch_of_its_own(tmp_path):
    """Where a renewal writes the worker's item anyway (RENEWAL_TOUCHES: DynamoDB), it carries the worker's
    BUSY touch (the jobs it has run), so a job that renewed ends without a touch of its own; one that never
    renewed still gets its touch. (A SQLite store that records what the worker asks of it: no moto needed.)"""
    from hyper.config import Host
    from hyper.models import Job, JobSpec
    from hyper.services.context import bootstrap_local
    from hyper.store.base import Submission
    from hyper.store.sqlite import SQLiteStore
    from hyper.worker.loop import Worker

    beats, touches = [], []

    class Recording(SQLiteStore):
        RENEWAL_TOUCHES = True

        def heartbeat(self, job, worker, lease_until, jobs_run=None):
            beats.append(jobs_run)
            return super().heartbeat(job, worker, lease_until)

        def touch_worker(self, worker, now, state, jobs_run):
            touches.append((str(state), jobs_run))
            super().touch_worker(worker, now, state, jobs_run)

    store = Recording(tmp_path / "hyper.db")
    bootstrap_local(store)
    store.submit([Submission(Job(name=n, user="u", queue="default", definition="default",
                                 spec=JobSpec(command=command))) for n, command in
                  (("long", ["sleep", "2.5"]), ("short", ["true"]))], time.time())
    # (a worker id of its own: a worker's cgroup is named after it, and another test's "w1" may empty its own)
    worker = Worker(store, f"touch-{uuid.uuid4().hex[:8]}", "default", "default", tmp_path / "work", tmp_path / "logs",
                    idle=0.5, lease=3, kill_grace=1, max_jobs=2, host=Host(name="l", type="local"))
    assert worker.run() == 0 and worker.jobs_run == 2
    from hyper.store.base import JobFilter
    ended = [(j.name, j.state.value, j.reason) for j in store.list_jobs(JobFilter(include_finished=True))]
    assert beats and set(beats) == {0}, ended  # renewed during the first job, saying 0 jobs run so far
    assert touches == [("BUSY", 2), ("EXITED", 2)]  # none after the long job; the short one's says 2
