"""Workflows on an aws host, on moto's server on 127.0.0.1 through boto3 exactly as on AWS (issue 17).

The bucket comes from the main region's stack (deployed into moto's CloudFormation); qsub splits into S3;
workers are the worker image's entrypoint in their own "container" directories (their own HYPER_HOME, no
access to the submit directory), so every part and staged file really travels through S3. The notice goes to
a real HTTP receiver on 127.0.0.1, signed with a key read from moto's Secrets Manager.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import zlib

import pytest

from tests.conftest import BIN, cli, wait_until
from tests.http_listener import Receiver
from tests.test_worker_aws import ROOT, AwsHost
from tests.test_workflows import race_claims

FINAL = """#!/bin/sh
#PBS -W stageout=result.txt@here:result.txt
for f in $(cat "$HYPER_PART_OUTPUTS"); do cat "$f"; done | awk '{s+=$1} END {print "total", s}' > result.txt
echo "parts $HYPER_PARTS succeeded $HYPER_PARTS_SUCCEEDED"
"""
PART = "#!/bin/sh\nawk '{s+=$1} END {print s}' \"$HYPER_PART_FILE\"\n"


@pytest.fixture
def aws_host(home, moto_endpoint, request):
    from hyper.aws import names, stacks, templates

    host = AwsHost(home, moto_endpoint, f"wf{zlib.crc32(request.node.name.encode()) % 10**6}-")
    h = host.store.host
    stacks.deploy_stack(h, "us-east-1", names.stack(h, "main"), templates.render_main_stack(h)).raise_for_status()
    yield host
    host.stop()


def _s3(endpoint: str):
    import boto3

    return boto3.client("s3", region_name="us-east-1", endpoint_url=endpoint)


def _container(host: AwsHost, path, index: int, extra: dict | None = None) -> subprocess.Popen:
    """The worker image's start.sh, as AWS Batch runs it, in a fresh directory of its own."""
    path.mkdir(parents=True)
    env = {**host.worker_env("batch-wf", index), "PATH": f"{BIN}:{os.environ['PATH']}",
           "HYPER_HOME": str(path / ".hyper"), "HYPER_TABLE_PREFIX": host.prefix, "HYPER_MAIN_REGION": "us-east-1",
           "HYPER_QUEUE": "q", "HYPER_DEFINITION": "d", "HYPER_WORKER_IDLE": "3", **(extra or {})}
    proc = subprocess.Popen(["sh", str(ROOT / "example-worker-image" / "start.sh")], cwd=path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    host.procs.append(proc)
    return proc


def test_split_finalise_stageout_and_signed_notice_through_s3(aws_host, tmp_path):
    import boto3

    bucket = f"{aws_host.prefix}data-123456789012"
    enc = _s3(aws_host.endpoint).get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert enc["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    boto3.client("secretsmanager", region_name="us-east-1", endpoint_url=aws_host.endpoint).create_secret(
        Name=f"{aws_host.prefix}notify", SecretString="k3y")
    receiver = Receiver()
    try:
        submit = tmp_path / "submit"
        submit.mkdir()
        (submit / "in.txt").write_text("".join(f"{i}\n" for i in range(1, 1001)))
        (submit / "part.sh").write_text(PART)
        (submit / "final.sh").write_text(FINAL)
        done = subprocess.run([str(BIN / "qsub"), "-q", "q", "-d", "d", "--split", "in.txt", "--parts", "10",
                               "--finalize", "final.sh", "--notify", receiver.url, "part.sh"], cwd=submit,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert done.stdout == "1[]\n"
        keys = sorted(o["Key"] for o in _s3(aws_host.endpoint).list_objects_v2(Bucket=bucket)["Contents"])
        assert len(keys) == 10 and all(k.startswith("parts/") for k in keys)
        # two workers, neither of which can see the submit directory
        # no setting: the workers find the host's key by its name, <prefix>notify
        workers = [_container(aws_host, tmp_path / f"c{i}", i) for i in range(2)]
        wait_until(lambda: receiver.posts, timeout=120, step=0.2)
        for w in workers:
            w.wait(timeout=60)
        assert len(receiver.posts) == 1
        post = receiver.posts[0]
        assert post["headers"]["X-Hyper-Signature"] == "sha256=" + hmac.new(b"k3y", post["body"],
                                                                             hashlib.sha256).hexdigest()
        doc = json.loads(post["body"])
        assert (doc["job_id"], doc["state"], doc["finalizes"], doc["host"]) == ("2", "SUCCEEDED", "1[]",
                                                                                aws_host.prefix.rstrip("-"))
        assert doc["array"] == {"total": 10, "succeeded": 10, "failed": 0, "deleted": 0}
        assert aws_host.stream(2, None, 1) == "parts 10 succeeded 10\n"
        got = subprocess.run([str(BIN / "qget"), "2"], cwd=submit, capture_output=True, text=True, timeout=60)
        assert got.returncode == 0, got.stderr
        assert got.stdout == f"s3://{bucket}/stage/" + got.stdout.split("/stage/")[1]
        assert (submit / "result.txt").read_text() == "total 500500\n"
        full = cli("qstat", "-f", "2", check=True).stdout
        assert f"notify = SENT {receiver.url} (HTTP 204, 1 attempt" in full
    finally:
        receiver.stop()


def test_stagein_reaches_a_worker_that_cannot_see_the_submit_directory(aws_host, tmp_path):
    submit = tmp_path / "submit"
    submit.mkdir()
    (submit / "data.csv").write_text("x,y\n")
    done = subprocess.run([str(BIN / "qsub"), "-q", "q", "-d", "d", "-W", "stagein=in.csv@here:data.csv",
                           "--stageout", "out.csv@here:results/out.csv", "--", "sh", "-c",
                           "tr a-z A-Z < in.csv > out.csv"], cwd=submit, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    (submit / "data.csv").unlink()  # uploaded at submit: the job no longer needs the submit machine's copy
    worker = _container(aws_host, tmp_path / "c0", 0)
    wait_until(lambda: (aws_host.job(1) or None) and aws_host.job(1).state.finished, timeout=60, step=0.2)
    worker.wait(timeout=60)
    assert aws_host.job(1).state.value == "SUCCEEDED", aws_host.job(1).reason
    got = subprocess.run([str(BIN / "qget"), "1", "-d", str(tmp_path / "fetched")], cwd=submit,
                         capture_output=True, text=True, timeout=60)
    assert got.returncode == 0, got.stderr
    assert (tmp_path / "fetched" / "out.csv").read_text() == "X,Y\n"


def test_stagein_of_a_missing_file_uploads_nothing(aws_host, tmp_path):
    done = cli("qsub", "-q", "q", "-d", "d", "-W", "stagein=in.csv@here:nope.csv", "--", "true")
    assert done.returncode != 0
    assert done.stderr.splitlines() == [f"qsub: stagein file {tmp_path / 'nope.csv'} does not exist (check the "
                                        "path; it is read when you submit)"]
    listing = _s3(aws_host.endpoint).list_objects_v2(Bucket=f"{aws_host.prefix}data-123456789012")
    assert listing.get("KeyCount", 0) == 0
    assert aws_host.job(1) is None


def test_dynamodb_notice_claim_has_one_winner_and_its_outcome_leaves_the_open_set(aws_host):
    import time

    from hyper.models import Job, JobSpec
    from hyper.store.base import Submission

    store = aws_host.store
    job = store.submit([Submission(Job(name="n", user="u", queue="q", definition="d",
                                       spec=JobSpec(command=["true"], notify="http://127.0.0.1:9/x")))], time.time())[0]
    assert [n["job"] for n in store.open_notices()] == [job.id]
    wins = race_claims(store, job.id, 6)
    assert len(wins) == 1
    assert not store.record_notice(job.id, "late", "SENT", status=200)
    assert store.record_notice(job.id, f"w{wins[0]}", "SENT", status=204)
    assert store.open_notices() == []
    notice = store.get_notice(job.id)
    assert (notice["state"], notice["status"], notice["attempts"]) == ("SENT", 204, 1)


def test_a_split_on_a_host_without_its_bucket_names_the_fix_and_stores_nothing(home, moto_endpoint, tmp_path):
    host = AwsHost(home, moto_endpoint, "wfnobucket-")  # its main stack (and so its bucket) never deployed
    try:
        (tmp_path / "in.txt").write_text("1\n2\n")
        done = cli("qsub", "-q", "q", "-d", "d", "--split", "in.txt", "--parts", "2", "--", "true")
        assert done.returncode != 0
        assert done.stderr.splitlines() == [
            "qsub: the host's bucket wfnobucket-data-123456789012 does not exist (region us-east-1 at "
            f"{moto_endpoint}) (an admin creates it by redeploying the main region: hyper regions update-region "
            "us-east-1)"]
        assert host.job(1) is None
        assert not any((home / "hosts" / "t" / "scratch").rglob("part-*"))
    finally:
        host.stop()
