"""An item the DynamoDB store has already read can vanish before it reads it again (its record's TTL, a purge):
the re-read then fails with a one-line HyperError naming the job, not a TypeError on None further on (issue 16).
Against moto's server on 127.0.0.1 through boto3."""

from __future__ import annotations

import time

import pytest

from hyper.errors import HyperError
from hyper.models import Job, JobSpec
from hyper.store.base import Submission
from hyper.store.dynamodb.keys import PARENT, _jkey
from tests.test_store_contract import D, Q, ddb  # noqa: F401  (the DynamoDB store fixture, e2e lane)


def test_reread_of_a_vanished_job_is_a_one_line_error(ddb):
    job = Job(name="j", user="alice", queue=Q, definition=D, spec=JobSpec(script="#!/bin/sh\ntrue\n"))
    [job] = ddb.submit([Submission(job)], time.time())
    assert ddb._get_known(job.id, PARENT)["id"] == job.id
    ddb.db.delete_item(TableName=ddb.jobs, Key=_jkey(job.id, PARENT))
    with pytest.raises(HyperError) as caught:
        ddb._get_known(job.id, PARENT)
    assert f"job {job.id} disappeared" in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(HyperError, match=rf"job {job.id}\[3\] disappeared"):
        ddb._get_known(job.id, 3)
