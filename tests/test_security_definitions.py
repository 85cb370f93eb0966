"""Issue 11 (H2 job roles, L5 secrets): a definition names its job's role and secrets; secrets never appear
as plain values, and neither role nor secret can be one the host's roles may not use."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hyper.aws import templates
from hyper.config import Host
from hyper.errors import HyperError
from hyper.cli.app import app
from hyper.models import Definition

runner = CliRunner()
PROD = Host(name="prod", type="aws", main_region="us-east-1")
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/hyper-prod-worker:1"
ROLE = "arn:aws:iam::123456789012:role/hyper-prod-job-train"
SSM = "arn:aws:ssm:us-east-1:123456789012:parameter/hyper-prod-db"
SM = "arn:aws:secretsmanager:us-east-1:123456789012:secret:hyper-prod-api-AbCdEf"


def hyper(*args):
    return runner.invoke(app, list(args))


def test_add_definition_takes_a_job_role_and_secrets(home):
    result = hyper("definitions", "add-definition", "train", "--job-role", ROLE, "--secret", f"DB_PASS={SSM},API={SM}")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(hyper("definitions", "list-definitions", "--output", "json").stdout)
    train = next(d for d in listed if d["name"] == "train")
    assert (train["job-role"], train["secret"]) == (ROLE, {"DB_PASS": SSM, "API": SM})


@pytest.mark.parametrize("args,message", [
    (["--job-role", "hyper-prod-job-train"], "job-role 'hyper-prod-job-train' is not an IAM role ARN"),
    (["--secret", "DB_PASS=s3cr3t"], "secret DB_PASS: 's3cr3t' is not a Secrets Manager secret or SSM parameter ARN"),
    (["--secret", f"1X={SSM}"], "secret name '1X' is not an environment variable name"),
    (["--environment", "API_TOKEN=abc"], "environment API_TOKEN looks like a credential: it would be stored as plain "
                                         "text (keep it in Secrets Manager or SSM and pass --secret API_TOKEN=ARN)"),
])
def test_bad_roles_secrets_and_plain_credentials_are_one_line_errors(home, args, message):
    result = hyper("definitions", "add-definition", "bad", *args)
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"hyper definitions: {message}"), lines
    assert "bad" not in hyper("definitions", "list-definitions").stdout


def test_the_batch_job_definition_carries_secrets_by_reference_and_the_workers_role():
    d = Definition(name="train", image="worker", vcpus=2, memory_mib=4096, environment={"OMP_NUM_THREADS": "2"},
                   job_role=ROLE, secrets={"DB_PASS": SSM})
    req = templates.render_job_definition(PROD, d, IMAGE, job_role_arn="arn:aws:iam::123456789012:role/w",
                                          execution_role_arn="arn:aws:iam::123456789012:role/e")
    container = req["containerProperties"]
    assert container["secrets"] == [{"name": "DB_PASS", "valueFrom": SSM}]
    assert "DB_PASS" not in {e["name"] for e in container["environment"]}
    assert container["jobRoleArn"] == "arn:aws:iam::123456789012:role/w"  # the worker's; the job assumes ROLE


@pytest.mark.parametrize("changes,message", [
    ({"job_role": "arn:aws:iam::123456789012:role/Admin"}, "is not named hyper-prod-job-..."),
    ({"secrets": {"X": "arn:aws:ssm:us-east-1:123456789012:parameter/other-team/db"}}, "is not named hyper-prod-..."),
])
def test_a_role_or_secret_outside_the_hosts_names_is_refused_before_registration(changes, message):
    d = Definition(name="train", image="worker", **changes)
    with pytest.raises(HyperError, match=message):
        templates.render_job_definition(PROD, d, IMAGE, job_role_arn="arn:aws:iam::123456789012:role/w",
                                        execution_role_arn="arn:aws:iam::123456789012:role/e")
