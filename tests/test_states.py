"""The typed states and outcomes: stored and sent as the same words as before, branched on as enums."""

from __future__ import annotations

import json

from hyper.aws.batch import ACTIVE_STATUSES, BatchStatus, workers_of
from hyper.backends.batch import BATCH_STATES
from hyper.backends.base import WorkerState
from hyper.dependencies import Hold, hold_of, hold_reason, initial_state
from hyper.retry import EXITED, KILLED, LOST, next_state
from hyper.states import JobState, RunOutcome, WorkerActivity
from hyper.store.base import WorkerInfo


def test_run_outcomes_keep_their_words_and_say_which_ends_are_recorded():
    assert (LOST, EXITED, KILLED) == ("lost", "exited", "killed")
    assert [o for o in RunOutcome if o.recorded] == [RunOutcome.EXITED, RunOutcome.KILLED, RunOutcome.LOST]
    assert next_state(RunOutcome.LOST, None, 1, 1, False) == (JobState.QUEUED, "worker lost (run 1 of 2); requeued")
    assert f"{RunOutcome.DELETED}" == "deleted"


def test_a_worker_record_reads_its_stored_word_back_as_an_activity():
    info = WorkerInfo("w1", "q", "d", state="BUSY")
    assert info.state is WorkerActivity.BUSY and info.state == "BUSY" and json.dumps(info.state) == '"BUSY"'
    assert WorkerInfo("w2", "q", "d").state is WorkerActivity.IDLE


def test_batch_statuses_are_the_api_words():
    assert BatchStatus("RUNNABLE") in ACTIVE_STATUSES and "RUNNABLE" in ACTIVE_STATUSES
    assert BATCH_STATES["RUNNABLE"] is WorkerState.PENDING and set(BATCH_STATES) == set(BatchStatus)
    assert workers_of({"status": "RUNNING", "arrayProperties": {"size": 4, "statusSummary": {"SUCCEEDED": 1}}}) == 3


def test_hold_reasons_are_made_and_read_in_one_place():
    for hold, detail in ((Hold.USER, ""), (Hold.WAITING, "afterok:12"), (Hold.NEVER, "afterok:12 ended FAILED")):
        assert hold_of(hold_reason(hold, detail)) is hold
    assert initial_state(False, "afterok:3", "") == (JobState.HELD, "waiting for afterok:3")
    assert hold_of("worker lost (run 1 of 2); requeued") is None


def test_dependency_rules_both_stores_share_give_the_reasons_qstat_shows():
    """The pure rules the two stores call (hyper/dependencies.py): the first blocker of each kind, in order,
    and which reason keeps a held job held after a dependency ended."""
    from hyper.dependencies import blockers, effective_state, still_held

    deps = [("afterok", 3, -1, JobState.QUEUED), ("afterany", 4, 2, JobState.RUNNING),
            ("afterok", 5, 1, JobState.FAILED), ("afternotok", 6, -1, JobState.SUCCEEDED)]
    assert blockers(deps) == ("afterok:3", "afterok:5[1] ended FAILED")
    assert blockers([("afterany", 7, -1, JobState.DELETED)]) == ("", "")  # met
    assert effective_state(None, "SUCCEEDED") is JobState.DELETED  # an element its ended array never started
    assert effective_state(None, "RUNNING") is JobState.QUEUED and effective_state("FAILED", None) is JobState.FAILED
    assert still_held("afterok:3", "afterok:5[1] ended FAILED", True) == \
        "dependency can never be satisfied: afterok:5[1] ended FAILED"
    assert still_held("afterok:3", "", True) == "held by user (release with qrls)"
    assert still_held("afterok:3", "", False) == "waiting for afterok:3"
    assert still_held("", "", False) == ""


def test_array_state_rules_both_stores_settle_by():
    """hyper/array_state.py: an array's own state from its counters (SQLite and DynamoDB call these)."""
    from hyper.array_state import claimable, ended_array, unended_state

    assert ended_array(10, 9, 0, 0) is None
    assert ended_array(10, 10, 2, 1) == (JobState.FAILED, "2 of 10 elements failed")
    assert ended_array(10, 10, 0, 1) == (JobState.DELETED, "")
    assert ended_array(10, 10, 0, 0) == (JobState.SUCCEEDED, "")
    assert unended_state(JobState.QUEUED, 0) is JobState.RUNNING
    assert unended_state(JobState.QUEUED, 3) is JobState.QUEUED and unended_state(JobState.HELD, 0) is JobState.HELD
    assert claimable(JobState.QUEUED, 3, 1, None) and claimable(JobState.QUEUED, 3, 1, 2)
    assert not claimable(JobState.QUEUED, 3, 2, 2) and not claimable(JobState.QUEUED, 0, 0, None)
    assert not claimable(JobState.HELD, 3, 0, None)
