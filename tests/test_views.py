"""What qstat shows, computed apart from printing (hyper/services/views.py)."""

from __future__ import annotations

from hyper.models import Job
from hyper.services.views import job_rows, queue_summary, stuck_notes
from hyper.states import JobState
from hyper.store.base import QueueCount


def test_job_rows_show_pbs_columns():
    long_name = "a-name-longer-than-sixteen"
    jobs = [Job(id=1, name=long_name, user="arn:aws:sts::1:assumed-role/r/alice", queue="q", state=JobState.QUEUED),
            Job(id=2, name="arr", user="bob", queue="q", state=JobState.QUEUED, array="1-4", array_started=1),
            Job(id=2, index=3, name="arr", user="bob", queue="q", state=JobState.RUNNING, started=100.0),
            Job(id=4, name="done", user="bob", queue="q", state=JobState.SUCCEEDED, started=100.0, ended=165.0)]
    rows = job_rows(jobs, now=130.0)
    assert [r["job_id"] for r in rows] == ["1", "2[]", "2[3]", "4"]
    assert [r["s"] for r in rows] == ["Q", "B", "R", "F"]
    assert rows[0]["name"] == long_name[:16] and rows[0]["user"] == "alice"
    assert [r["time_use"] for r in rows] == ["0", "0", "00:00:30", "00:01:05"]
    assert job_rows(jobs[:1], now=0.0, wide=True)[0]["name"] == long_name


def test_queue_summary_counts_tasks_per_state_and_lists_empty_queues():
    counts = [QueueCount("q", "d", JobState.QUEUED, 3), QueueCount("q", "d", JobState.RUNNING, 1),
              QueueCount("other", "d", JobState.FAILED, 2)]
    rows = queue_summary(counts, ["empty", "q"], None)
    assert [(r["queue"], r["total"], r["queued"], r["running"], r["failed"]) for r in rows] == [
        ("empty", 0, 0, 0, 0), ("other", 2, 0, 0, 2), ("q", 4, 3, 1, 0)]
    assert [r["queue"] for r in queue_summary(counts, ["empty", "q"], "q")] == ["q"]


def test_stuck_notes_name_only_stuck_queues():
    class Q:
        def __init__(self, name, message):
            self.name, self.message = name, message

    queues = [Q("a", "stuck workers: 2 waiting for capacity"), Q("b", ""), Q("c", "other note")]
    assert stuck_notes(queues, None) == ["queue a: stuck workers: 2 waiting for capacity"]
    assert stuck_notes(queues, "b") == []
