"""Issue 11 (H2, L5): a job never holds the worker's credentials; it gets its definition's job role and
secrets instead. The worker is a real `hyper worker run` process with the environment Batch gives a
container (including the container-credentials URI), talking to moto's server on 127.0.0.1."""

from __future__ import annotations

import sys
import zlib

import boto3
import pytest

from hyper.models import Definition
from hyper.worker import identity
from tests.conftest import cli
from tests.test_worker_aws import AwsHost

CONTAINER_URI = "/v2/credentials/0b4a7e5c-worker-role"


@pytest.fixture
def aws_host(home, moto_endpoint, request):
    prefix = f"sc{zlib.crc32(request.node.name.encode()) % 10**6}-"
    host = AwsHost(home, moto_endpoint, prefix)
    yield host
    host.stop()


def probe(endpoint: str) -> list[str]:
    """A job that says who it is to AWS, whether it sees the worker's credentials URI, and its secret."""
    code = ("import os, boto3\n"
            "keys = os.environ.get('AWS_ACCESS_KEY_ID')\n"
            f"arn = boto3.client('sts', endpoint_url='{endpoint}', region_name='us-east-1')"
            ".get_caller_identity()['Arn'] if keys else 'no-keys'\n"
            "print(arn)\n"
            "print(os.environ.get('AWS_CONTAINER_CREDENTIALS_RELATIVE_URI', 'no-container-uri'))\n"
            "print(os.environ.get('DB_PASS', 'no-secret'))\n")
    return ["-q", "q", "-d", "d", "--", sys.executable, "-c", code]


def test_the_worker_passes_no_container_credentials_to_a_job():
    env = {"AWS_BATCH_JOB_ID": "b-1", "AWS_REGION": "eu-west-1", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": "/v2/x",
           "AWS_CONTAINER_CREDENTIALS_FULL_URI": "http://169.254.170.2/x", "AWS_CONTAINER_AUTHORIZATION_TOKEN": "t",
           "AWS_ACCESS_KEY_ID": "worker-key", "ECS_CONTAINER_METADATA_URI_V4": "http://169.254.170.2/v4"}
    assert identity.job_env("w1", True, env) == {"HYPER_WORKER_ID": "w1", "AWS_BATCH_JOB_ID": "b-1",
                                                  "AWS_REGION": "eu-west-1"}


def test_a_job_runs_with_its_definitions_role_and_secret_never_the_workers(aws_host, monkeypatch):
    ssm = boto3.client("ssm", endpoint_url=aws_host.endpoint, region_name="us-east-1")
    ssm.put_parameter(Name=f"/{aws_host.prefix}db", Value="s3cr3t-from-ssm", Type="SecureString")
    role = f"arn:aws:iam::123456789012:role/{aws_host.prefix}job-train"
    aws_host.store.put_resource(Definition(
        name="d", image="w", vcpus=1, memory_mib=1024, ratio=10, job_role=role,
        secrets={"DB_PASS": f"arn:aws:ssm:us-east-1:123456789012:parameter/{aws_host.prefix}db"}), replace=True)
    job_id = cli("qsub", *probe(aws_host.endpoint), check=True).stdout.strip()
    monkeypatch.setattr(AwsHost, "worker_env", _worker_env)
    proc = aws_host.worker("batch-7-0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    job = aws_host.job(int(job_id))
    assert (job.state.value, job.exit_code) == ("SUCCEEDED", 0), job.reason
    assert aws_host.stream(int(job_id), None, 1) == (
        f"arn:aws:sts::123456789012:assumed-role/{aws_host.prefix}job-train/hyper-{job_id}-0\n"
        "no-container-uri\n"
        "s3cr3t-from-ssm\n")
    # the secret is in no job record: only its ARN is, in the definition
    assert "s3cr3t" not in repr(job.spec)


def test_a_definition_without_a_role_gives_the_job_no_aws_rights(aws_host, monkeypatch):
    job_id = cli("qsub", *probe(aws_host.endpoint), check=True).stdout.strip()
    monkeypatch.setattr(AwsHost, "worker_env", _worker_env)
    proc = aws_host.worker("batch-7-0")
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert aws_host.stream(int(job_id), None, 1) == "no-keys\nno-container-uri\nno-secret\n"


_ORIGINAL = AwsHost.worker_env


def _worker_env(self, batch_job: str, index: int) -> dict:
    """What Batch gives a container: the test's keys stand in for the role, plus the credentials URI."""
    return {**_ORIGINAL(self, batch_job, index), "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI": CONTAINER_URI}
