"""The host's KMS key (host setting ``kms_key``) and immutable image tags (issue 11, low findings).

Pure tests: the main stack's log group names the key, the region stack's execution role and every IAM role
use it only through DynamoDB / ECR and only on that key's ARN, and a build context's tag follows its content.

On moto's server (127.0.0.1, through boto3): KMS DescribeKey resolves an alias and says when a key is
missing or disabled, ECR creates repositories with KMS encryption and immutable tags and refuses a second
push under one tag (ImageAlreadyExistsException). What moto cannot show: its CloudFormation LogGroup ignores
KmsKeyId (DescribeLogGroups shows none), so the log group's key is checked on the rendered template; and moto
evaluates no IAM policy or KMS key policy, so the scoping is checked on the policy documents.
"""

from __future__ import annotations

import json
import os
import sys

import boto3
import pytest

from hyper.aws import ecr as registry
from hyper.aws import iam, kms, templates
from hyper.backends.kubernetes import KubernetesBackend
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Definition, Image, Region
from tests.conftest import cli
from tests.test_ecr_replication import FAKE_DOCKER, MANIFEST

KEY_ARN = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
KEYED = Host(name="prod", type="aws", main_region="us-east-1", extra={"kms_key": KEY_ARN})
PLAIN = Host(name="prod", type="aws", main_region="us-east-1")
MAIN = Region(name="us-east-1", main=True, vpc_cidr="10.20.0.0/16")
HUB = Region(name="eu-west-1", vpc_cidr="10.30.0.0/16")


def _kms_statements(document: dict) -> list[dict]:
    """hyper's own KMS statements (the EKS boundary also lists AmazonEKSClusterPolicy's kms:DescribeKey on
    "*", as AWS grants it: ``iam.boundary_statements``)."""
    return [st for st in document["Statement"] if any(a.startswith("kms:") for a in st["Action"])
            and st["Sid"] != "ServiceRolesAsAwsManages"]


# ---------------------------------------------------------------- pure


def test_the_log_group_is_encrypted_with_the_hosts_key_and_only_then():
    keyed = templates.render_main_stack(KEYED)["Resources"]["LogGroup"]["Properties"]
    assert keyed["KmsKeyId"] == KEY_ARN
    assert "KmsKeyId" not in templates.render_main_stack(PLAIN)["Resources"]["LogGroup"]["Properties"]
    # a bare key id is completed in the stack's own account (CloudFormation substitutes it)
    by_id = Host(name="prod", type="aws", main_region="us-east-1",
                 extra={"kms_key": "1234abcd-12ab-34cd-56ef-1234567890ab"})
    assert templates.render_main_stack(by_id)["Resources"]["LogGroup"]["Properties"]["KmsKeyId"] == {
        "Fn::Sub": "arn:${AWS::Partition}:kms:us-east-1:${AWS::AccountId}:key/1234abcd-12ab-34cd-56ef-1234567890ab"}


def test_keyed_templates_pass_cfn_lint():
    from tests.test_templates import lint_errors

    assert lint_errors(templates.render_main_stack(KEYED), "us-east-1") == []
    assert lint_errors(templates.render_region_stack(KEYED, MAIN), "us-east-1") == []


def test_the_main_regions_execution_role_may_decrypt_images_with_that_key_only_through_ecr():
    def execution(region: Region) -> list[dict]:
        role = templates.render_region_stack(KEYED, region)["Resources"]["ExecutionRole"]
        return role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]

    (key,) = [st for st in execution(MAIN) if st["Sid"] == "HostKey"]
    assert key["Resource"] == [KEY_ARN]
    assert key["Action"] == ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"]
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": ["ecr.us-east-1.amazonaws.com"]}}
    assert not [st for st in execution(HUB) if st["Sid"] == "HostKey"]  # replicas there: not this key
    assert not [st for st in templates.render_region_stack(PLAIN, MAIN)["Resources"]["ExecutionRole"]["Properties"]
                ["Policies"][0]["PolicyDocument"]["Statement"] if st["Sid"] == "HostKey"]


@pytest.mark.parametrize("role", iam.ROLES)
def test_every_role_uses_the_key_only_on_its_arn_and_through_its_services(role):
    document = iam.render_policy(KEYED, role, account="123456789012")
    found = _kms_statements(document)
    assert found, f"{role} has no right on the host's key"
    for st in found:
        assert st["Resource"] == [KEY_ARN], st
        assert all(a.startswith("kms:") and a != "kms:*" for a in st["Action"]), st
        if st["Action"] != ["kms:DescribeKey"]:  # hyper's own check of the key (admin) is a direct call
            services = st["Condition"]["StringEquals"]["kms:ViaService"]
            assert set(services) <= {"dynamodb.us-east-1.amazonaws.com", "ecr.us-east-1.amazonaws.com"}
    assert not _kms_statements(iam.render_policy(PLAIN, role, account="123456789012"))
    if role == "admin":
        actions = {a for st in found for a in st["Action"]}
        assert {"kms:CreateGrant", "kms:RetireGrant", "kms:DescribeKey"} <= actions  # tables and repos get grants
        assert len(json.dumps(document, separators=(",", ":"))) <= iam.INLINE_ROLE_POLICY_LIMIT
    if role in iam.BOUNDARIES:
        text = json.dumps(document, separators=(",", ":"))
        assert len(text) <= iam.MANAGED_POLICY_LIMIT


def test_a_key_named_by_alias_is_resolved_for_policies(monkeypatch):
    """An alias says nothing of its key's ARN: the policy asks KMS (once; here a stand-in for resolve)."""
    aliased = Host(name="prod", type="aws", main_region="us-east-1", extra={"kms_key": "alias/hyper"})
    monkeypatch.setattr(kms, "resolve", lambda host: KEY_ARN)
    assert kms.policy_arn(aliased, "aws", "123456789012") == KEY_ARN
    assert kms.policy_arn(PLAIN, "aws", "123456789012") is None


def test_a_key_outside_the_main_region_is_refused_before_kms_is_asked():
    """Tables and the log group are in the main region and a KMS key is regional (no AWS call: the ARN says)."""
    elsewhere = Host(name="prod", type="aws", main_region="us-east-1",
                     extra={"kms_key": KEY_ARN.replace("us-east-1", "eu-west-1")})
    for call in (lambda: kms.resolve(elsewhere), lambda: iam.render_policy(elsewhere, "worker")):
        with pytest.raises(HyperError, match=r"kms_key=.*: the key is in eu-west-1, the host's tables and log "
                                             r"group in us-east-1"):
            call()


def test_a_build_context_tag_follows_its_content(tmp_path):
    ctx = tmp_path / "ctx"
    (ctx / "sub").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    (ctx / "sub" / "run.sh").write_text("echo hi\n")
    first = registry.context_tag(str(ctx))
    assert first == registry.context_tag(str(ctx)) and first.startswith(registry.BUILD_TAG_STEM)
    os.chmod(ctx / "sub" / "run.sh", 0o755)  # the exec bit is part of the image
    second = registry.context_tag(str(ctx))
    (ctx / "sub" / "run.sh").write_text("echo bye\n")
    third = registry.context_tag(str(ctx))
    assert len({first, second, third}) == 3
    with pytest.raises(HyperError, match="is not a directory"):
        registry.context_tag(str(ctx / "Dockerfile"))


# ---------------------------------------------------------------- on moto's server


@pytest.fixture
def moto(home, moto_endpoint, request):
    prefix = "kms" + str(abs(hash(request.node.name)) % 10**6) + "-"
    kms_client = boto3.client("kms", region_name="us-east-1", endpoint_url=moto_endpoint)
    ecr = boto3.client("ecr", region_name="us-east-1", endpoint_url=moto_endpoint)
    ecr.put_replication_configuration(replicationConfiguration={"rules": []})
    yield moto_endpoint, prefix, kms_client, ecr
    ecr.put_replication_configuration(replicationConfiguration={"rules": []})


def _host(endpoint: str, prefix: str, key: str) -> Host:
    return Host(name="prod", type="aws", main_region="us-east-1", endpoint_url=endpoint, table_prefix=prefix,
                extra={"kms_key": key})


def test_on_moto_an_aliased_key_encrypts_the_repositories_hyper_creates(moto, tmp_path):
    endpoint, prefix, kms_client, ecr = moto
    key = kms_client.create_key(Description="hyper")["KeyMetadata"]
    alias = f"alias/{prefix}key"
    kms_client.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    cli("hyper", "hosts", "create-host", "prod", "--type", "aws", "--main-region", "us-east-1", "--endpoint-url",
        endpoint, "--table-prefix", prefix, "--setting", f"kms_key={alias}", check=True)
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    env = {"HYPER_DOCKER": str(docker), "FAKE_DOCKER_ENDPOINT": endpoint}
    assert cli("hyper", "images", "add-image", "worker", "--path", str(tmp_path / "img"), env=env,
               check=True).stdout == "added image worker (ACTIVE)\n"
    (repo,) = ecr.describe_repositories(repositoryNames=[f"{prefix}worker"])["repositories"]
    assert repo["encryptionConfiguration"] == {"encryptionType": "KMS", "kmsKey": key["Arn"]}
    assert repo["imageTagMutability"] == "IMMUTABLE"
    db = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    assert db.describe_table(TableName=f"{prefix}jobs")["Table"]["SSEDescription"]["SSEType"] == "KMS"
    assert kms.resolve(_host(endpoint, prefix, alias)) == key["Arn"]


def test_on_moto_a_missing_or_disabled_key_is_refused_before_anything_is_made(moto):
    endpoint, prefix, kms_client, ecr = moto
    missing = cli("hyper", "hosts", "create-host", "prod", "--type", "aws", "--main-region", "us-east-1",
                  "--endpoint-url", endpoint, "--table-prefix", prefix, "--setting", f"kms_key=alias/{prefix}none")
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
    assert f"kms_key='alias/{prefix}none': KMS has no such key in us-east-1" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) <= 2  # the error and its hint
    db = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=endpoint)
    assert not [t for t in db.list_tables()["TableNames"] if t.startswith(prefix)]
    key = kms_client.create_key()["KeyMetadata"]
    kms_client.disable_key(KeyId=key["KeyId"])
    with pytest.raises(HyperError, match=r"the key is Disabled") as err:
        kms.resolve(_host(endpoint, prefix, key["KeyId"]))
    assert "aws kms enable-key" in err.value.hint


def test_on_moto_a_repository_encrypted_otherwise_is_refused_and_a_mutable_one_made_immutable(moto):
    """ECR cannot change a repository's encryption: hyper says so instead of pushing into it. Tag mutability
    it can change: a repository an older hyper made mutable becomes immutable when provisioning touches it."""
    endpoint, prefix, kms_client, ecr = moto
    key = kms_client.create_key()["KeyMetadata"]["Arn"]
    ecr.create_repository(repositoryName=f"{prefix}old")  # AES256, MUTABLE: as an older hyper made it
    with pytest.raises(HyperError, match=r"encrypted with AES256, not arn:aws:kms:.*ECR cannot change") as err:
        registry.ensure_repository(ecr, f"{prefix}old", host_name="prod", kms_key_arn=key)
    assert "delete-repository" in err.value.hint
    registry.ensure_repository(ecr, f"{prefix}old", host_name="prod")  # the host without a key: it fits
    (repo,) = ecr.describe_repositories(repositoryNames=[f"{prefix}old"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE"


def test_on_moto_an_immutable_image_is_replicated_again_under_fresh_tags(moto):
    """Adding a second and a third region pushes the image again each time; an immutable repository refuses
    a tag twice, so each push has a new tag and the image's own tag never moves."""
    endpoint, prefix, kms_client, ecr = moto
    repo = f"{prefix}worker"
    registry.ensure_repository(ecr, repo, host_name="prod")
    digest = ecr.put_image(repositoryName=repo, imageManifest=MANIFEST, imageTag="ctx-1")["image"]["imageId"][
        "imageDigest"]
    with pytest.raises(ecr.exceptions.ImageAlreadyExistsException):
        ecr.put_image(repositoryName=repo, imageManifest=MANIFEST.replace('"c', '"e'), imageTag="ctx-1")
    first = registry.replicate_existing(ecr, repo, digest)
    second = registry.replicate_existing(ecr, repo, digest)
    assert first != second and first.startswith(registry.REPLICATE_TAG + "-")
    (detail,) = ecr.describe_images(repositoryName=repo)["imageDetails"]
    assert set(detail["imageTags"]) == {"ctx-1", first, second}
    assert registry.replicate_existing(ecr, repo, "sha256:" + "0" * 64) is None


def test_on_moto_eks_workers_pull_the_regions_replica_pinned_by_digest(moto):
    """The EKS backend names the same image Batch definitions do: the region's replica @ the recorded digest,
    and for an image built by an older hyper (no digest recorded) the digest of its :latest."""
    endpoint, prefix, kms_client, ecr = moto
    host = Host(name="prod", type="aws", main_region="us-east-1", endpoint_url=endpoint, table_prefix=prefix)
    ecr.create_repository(repositoryName=f"{prefix}old")
    legacy = ecr.put_image(repositoryName=f"{prefix}old", imageManifest=MANIFEST, imageTag="latest")["image"][
        "imageId"]["imageDigest"]
    recorded = "sha256:" + "ab" * 32

    class Store:
        def get_resource(self, kind, name):
            return {"new": Image(name="new", path="/src", tag="ctx-1", digest=recorded),
                    "old": Image(name="old", path="/src")}[name]

    backend = KubernetesBackend(host, Store(), prices=object())
    account = boto3.client("sts", region_name="us-east-1", endpoint_url=endpoint).get_caller_identity()["Account"]
    assert backend.image_uri(Definition(name="d", image="new"), "eu-west-1") == (
        f"{account}.dkr.ecr.eu-west-1.amazonaws.com/{prefix}new@{recorded}")
    assert backend.image_uri(Definition(name="d", image="old"), "us-east-1") == (
        f"{account}.dkr.ecr.us-east-1.amazonaws.com/{prefix}old@{legacy}")


def test_on_moto_applying_a_built_image_again_changes_nothing(moto, tmp_path):
    """The tag and digest a build records are provisioning's, not the file's: a second `apply` of the same
    files sees the image unchanged (and pushes nothing), and the definition stays pinned to that digest."""
    endpoint, prefix, kms_client, ecr = moto
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "images.yaml").write_text(f"images:\n  - name: worker\n    path: {tmp_path / 'img'}\n")
    cli("hyper", "hosts", "create-host", "prod", "--type", "aws", "--main-region", "us-east-1", "--endpoint-url",
        endpoint, "--table-prefix", prefix, check=True)
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    env = {"HYPER_DOCKER": str(docker), "FAKE_DOCKER_ENDPOINT": endpoint}
    first = cli("hyper", "apply", "-f", str(tmp_path / "conf"), env=env, check=True).stdout
    assert first.splitlines()[-1] == "1 resources, 1 changed", first
    again = cli("hyper", "apply", "-f", str(tmp_path / "conf"), env=env, check=True).stdout
    assert again.splitlines()[-1] == "1 resources, 0 changed", again
    assert len(ecr.describe_images(repositoryName=f"{prefix}worker")["imageDetails"]) == 1


def test_on_moto_a_log_group_made_by_code_is_encrypted_with_the_hosts_key(moto):
    """Provisioning's main stack gives the log group the key (checked on the template above); the group a
    worker or ``ensure_group`` makes when it is missing gets the same key, never AWS-owned encryption."""
    from hyper.aws import logs

    endpoint, prefix, kms_client, _ = moto
    key = kms_client.create_key(Description="hyper logs")["KeyMetadata"]
    host = _host(endpoint, prefix, key["KeyId"])
    name = logs.ensure_group(host)
    client = boto3.client("logs", region_name="us-east-1", endpoint_url=endpoint)
    (group,) = [g for g in client.describe_log_groups(logGroupNamePrefix=name)["logGroups"]
                if g["logGroupName"] == name]
    assert group.get("kmsKeyId") == key["Arn"]
