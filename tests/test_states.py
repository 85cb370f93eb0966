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
