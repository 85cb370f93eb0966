"""Issue 11 on an aws host (moto's server on 127.0.0.1, through boto3 as production calls AWS): the owner is
the caller's STS identity, only owners and the host's admins change a job, and no credential is stored.

Identities are real STS sessions on moto: ``assume_role`` hands out keys whose GetCallerIdentity ARN is
``arn:aws:sts::123456789012:assumed-role/<role>/<session>``; the default test keys are the host's creator.
moto does not evaluate IAM policies, so the policy documents are checked in tests/test_iam_boundaries.py.
"""

from __future__ import annotations

import zlib

import boto3
import pytest

from hyper.config import current_host
from hyper.models import Cluster, Definition, Queue
from hyper.parsing.jobids import JobRef
from tests.conftest import cli
from tests.test_aws_host import Aws, create, fails

CREATOR = "arn:aws:sts::123456789012:user/moto"


@pytest.fixture
def aws(home, moto_endpoint):
    a = Aws(moto_endpoint)
    yield a
    for p in a.prefixes:
        a.drop(p)


def session_env(url: str, role: str) -> dict[str, str]:
    creds = boto3.client("sts", endpoint_url=url, region_name="us-east-1").assume_role(
        RoleArn=f"arn:aws:iam::123456789012:role/{role}", RoleSessionName=f"{role}-laptop")["Credentials"]
    return {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"], "AWS_SECURITY_TOKEN": creds["SessionToken"]}


@pytest.fixture
def host(aws):
    create(aws, "prod", aws.prefix("sec"))
    h = current_host()
    from hyper.store.dynamodb import DynamoStore

    store = DynamoStore(h)
    store.put_resource(Cluster(name="c", type="batch", max_vcpus=4), replace=True)
    store.put_resource(Queue(name="q", cluster="c"), replace=True)
    store.put_resource(Definition(name="default", image="img"), replace=True)
    return h


def job(host, job_id: int):
    from hyper.store.dynamodb import DynamoStore

    jobs, _ = DynamoStore(host).get_jobs([JobRef(job_id)])
    return jobs[0]


def test_the_creator_is_the_hosts_admin(host):
    from hyper.aws.identity import host_admins

    assert host_admins(host) == [CREATOR]


def test_owner_is_the_sts_identity_and_others_cannot_delete_hold_or_release(host, aws):
    alice, bob = session_env(aws.url, "alice"), session_env(aws.url, "bob")
    job_id = cli("qsub", "-q", "q", "-h", "--", "echo", "hi", env={**alice, "LOGNAME": "bob"},
                 check=True).stdout.strip()
    assert job(host, int(job_id)).user == "arn:aws:sts::123456789012:assumed-role/alice/alice-laptop"
    table = cli("qstat", env=alice, check=True).stdout
    assert "alice-laptop" in table and "arn:" not in table
    for command, verb in (("qdel", "delete"), ("qrls", "release"), ("qhold", "hold")):
        proc = cli(command, job_id, env=bob)
        assert (proc.returncode, proc.stderr) == (
            1, f"{command}: job {job_id} belongs to alice-laptop: only its owner or an admin may {verb} it\n")
    assert job(host, int(job_id)).state.value == "HELD"
    cli("qrls", job_id, env=alice, check=True)
    assert job(host, int(job_id)).state.value == "QUEUED"
    cli("qdel", job_id, check=True)  # the host's admin (its creator) may
    assert job(host, int(job_id)).state.value == "DELETED"


def test_no_credential_reaches_dynamodb_and_sbatch_exports_nothing_unless_asked(host, aws, tmp_path):
    alice = session_env(aws.url, "alice")
    script = tmp_path / "sb.sh"
    script.write_text("#!/bin/sh\n#SBATCH -J leak\necho hi\n")
    secrets = {"GITHUB_TOKEN": "ghp-t0ken-value", "DB_PASSWORD": "pa55-value"}
    proc = cli("qsub", "-q", "q", str(script), env={**alice, **secrets, "PLAIN_SETTING": "x"})
    assert proc.returncode == 0, proc.stderr
    assert "qsub: note: #SBATCH: the whole environment is not exported on an aws host; pass -V to export it\n" \
        in proc.stderr
    first = job(host, int(proc.stdout.strip()))
    assert "PLAIN_SETTING" not in first.spec.env and "GITHUB_TOKEN" not in first.spec.env
    proc = cli("qsub", "-q", "q", "-V", str(script), env={**alice, **secrets, "PLAIN_SETTING": "x"})
    assert proc.returncode == 0, proc.stderr
    exported = [line for line in proc.stderr.splitlines() if line.startswith("qsub: note: -V exported: ")]
    assert len(exported) == 1 and "PLAIN_SETTING" in exported[0] and "AWS_" not in exported[0]
    second = job(host, int(proc.stdout.strip()))
    assert second.spec.env["PLAIN_SETTING"] == "x"
    assert not [k for k in second.spec.env if k.startswith("AWS_") or "TOKEN" in k or "PASSWORD" in k]
    # nothing of the submitter's credentials in any item, compressed specs included
    db = boto3.client("dynamodb", endpoint_url=aws.url, region_name="us-east-1")
    blobs = []
    for table in (f"{host.table_prefix}jobs", f"{host.table_prefix}meta"):
        for item in db.scan(TableName=table)["Items"]:
            for value in item.values():
                if "B" in value:
                    try:
                        blobs.append(zlib.decompress(value["B"]))
                    except zlib.error:
                        blobs.append(value["B"])
                else:
                    blobs.append(repr(value).encode())
    dump = b"\n".join(blobs)
    for value in [*secrets.values(), alice["AWS_SECRET_ACCESS_KEY"], alice["AWS_SESSION_TOKEN"]]:
        assert value.encode() not in dump


@pytest.mark.parametrize("first,second", [("", "eu-"), ("eu-", "")])
def test_prefixes_that_nest_are_refused_both_ways(aws, first, second):
    base = aws.prefix("nest")
    create(aws, "one", aws.claim(base + first))
    line = fails("hosts", "create-host", "two", "--type", "aws", "--main-region", "us-east-1",
                 "--endpoint-url", aws.url, "--table-prefix", aws.claim(base + second))
    assert "overlaps" in line and "access grants on one would reach the other" in line
    assert aws.table(f"{base}{second}meta") is None


def test_a_nesting_prefix_in_another_region_is_refused_too(aws):
    """IAM is account-wide: a host whose tables live in another region still shares `<prefix>*` grants."""
    base = aws.prefix("far")
    create(aws, "one", base)
    line = fails("hosts", "create-host", "two", "--type", "aws", "--main-region", "eu-west-1",
                 "--endpoint-url", aws.url, "--table-prefix", base + "eu-")
    assert line == (f"hyper hosts: table prefix '{base}eu-' overlaps host 'one''s '{base}' (access grants on one "
                    "would reach the other) (choose a --table-prefix neither starts nor is started by another host's)")


def test_more_admins_come_from_the_admins_setting_at_create(aws):
    ops = "arn:aws:sts::123456789012:assumed-role/ops/*"
    create(aws, "prod", aws.prefix("adm"), "--setting", f"admins={ops}")
    from hyper.aws.identity import host_admins

    assert host_admins(current_host()) == sorted([CREATOR, ops])
