"""ECR: hyper's replication rule is merged into the account's configuration, hub regions get their own
replica pinned by digest, and a hub registration waits (bounded) for that replica.

moto 5.2 keeps one replication rule at most ("This feature is disabled" for two), does not replicate images
and does not implement DescribeImageReplicationStatus. So the merge with a customer's own rules and the wait
are tested against ``RecordedEcr``: an ECR client object passed at the function boundary, answering with
responses shaped as the ECR API reference documents them (DescribeRegistry, PutReplicationConfiguration,
DescribeImageReplicationStatus). What moto can show (one rule, digests, pushing an image again, the CLI
flow) is tested against moto's server on 127.0.0.1 through boto3.
"""

from __future__ import annotations

import json

import boto3
import pytest
import requests

from hyper.aws import ecr as registry
from hyper.errors import HyperError
from tests.conftest import cli

ACCOUNT = "123456789012"
PREFIX = "hyper-prod-"
DIGEST = "sha256:" + "ab" * 32
CUSTOMER_RULE = {  # the account's own rule: every repository of team-a to us-west-2 and another account
    "destinations": [{"region": "us-west-2", "registryId": ACCOUNT}, {"region": "us-east-1", "registryId": "210987654321"}],
    "repositoryFilters": [{"filter": "team-a/", "filterType": "PREFIX_MATCH"}]}


class RecordedEcr:
    """The ECR calls hyper makes, answered as the API documents them; it records what was written."""

    class exceptions:  # noqa: N801 - the shape of a boto3 client's .exceptions
        class ClientError(Exception):
            pass

        ImageNotFoundException = RepositoryNotFoundException = ClientError

    def __init__(self, rules: list[dict] | None = None, statuses: list[list[dict]] | None = None):
        self.configuration = {"rules": [json.loads(json.dumps(r)) for r in rules or []]}
        self.statuses = list(statuses or [])
        self.puts: list[dict] = []
        self.status_calls = 0

    def describe_registry(self) -> dict:
        # https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeRegistry.html
        return {"registryId": ACCOUNT, "replicationConfiguration": json.loads(json.dumps(self.configuration))}

    def put_replication_configuration(self, replicationConfiguration: dict) -> dict:
        # replaces the whole configuration, as ECR does
        self.puts.append(replicationConfiguration)
        self.configuration = json.loads(json.dumps(replicationConfiguration))
        return {"replicationConfiguration": replicationConfiguration}

    def describe_image_replication_status(self, repositoryName: str, imageId: dict) -> dict:
        # https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_DescribeImageReplicationStatus.html
        self.status_calls += 1
        statuses = self.statuses.pop(0) if len(self.statuses) > 1 else (self.statuses[0] if self.statuses else [])
        return {"repositoryName": repositoryName, "imageId": imageId, "replicationStatuses": statuses}


class Clock:
    def __init__(self):
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# ---------------------------------------------------------------- merge, never overwrite (recorded responses)


def test_adding_the_host_rule_keeps_the_customers_rules():
    ecr = RecordedEcr([CUSTOMER_RULE])
    registry.sync_replication(ecr, PREFIX, ACCOUNT, ["eu-west-1", "ap-southeast-2"])
    assert ecr.configuration["rules"] == [CUSTOMER_RULE, {
        "destinations": [{"region": "ap-southeast-2", "registryId": ACCOUNT},
                         {"region": "eu-west-1", "registryId": ACCOUNT}],
        "repositoryFilters": [{"filter": "hyper-prod-", "filterType": "PREFIX_MATCH"}]}]


def test_a_second_image_does_not_stop_the_first_replicating_and_nothing_changed_writes_nothing():
    """One rule per host, on its repository prefix: every image the host builds replicates under it."""
    ecr = RecordedEcr([CUSTOMER_RULE])
    registry.sync_replication(ecr, PREFIX, ACCOUNT, ["eu-west-1"])  # first image
    registry.sync_replication(ecr, PREFIX, ACCOUNT, ["eu-west-1"])  # second image: the same rule
    assert len(ecr.puts) == 1
    (ours,) = [r for r in ecr.configuration["rules"] if r != CUSTOMER_RULE]
    assert ours["repositoryFilters"] == [{"filter": PREFIX, "filterType": "PREFIX_MATCH"}]


def test_older_per_repository_rules_of_the_host_are_folded_into_one():
    legacy = {"destinations": [{"region": "eu-west-1", "registryId": ACCOUNT}],
              "repositoryFilters": [{"filter": "hyper-prod-worker", "filterType": "PREFIX_MATCH"}]}
    ecr = RecordedEcr([legacy, CUSTOMER_RULE])
    registry.sync_replication(ecr, PREFIX, ACCOUNT, ["eu-west-1", "us-west-2"])
    assert [r["repositoryFilters"][0]["filter"] for r in ecr.configuration["rules"]] == ["team-a/", PREFIX]


def test_removing_the_last_region_removes_only_the_hosts_rule():
    ecr = RecordedEcr([CUSTOMER_RULE])
    registry.sync_replication(ecr, PREFIX, ACCOUNT, ["eu-west-1"])
    registry.sync_replication(ecr, PREFIX, ACCOUNT, [])
    assert ecr.configuration == {"rules": [CUSTOMER_RULE]}
    other_host = RecordedEcr([CUSTOMER_RULE])
    registry.sync_replication(other_host, "hyper-dev-", ACCOUNT, ["eu-west-1"])
    registry.sync_replication(other_host, PREFIX, ACCOUNT, [])  # prod has nothing: dev's rule stays
    assert [r["repositoryFilters"][0]["filter"] for r in other_host.configuration["rules"]] == ["team-a/",
                                                                                                 "hyper-dev-"]


def test_a_full_registry_is_refused_with_the_way_out():
    rules = [{**CUSTOMER_RULE, "repositoryFilters": [{"filter": f"team-{i}/", "filterType": "PREFIX_MATCH"}]}
             for i in range(10)]
    ecr = RecordedEcr(rules)
    with pytest.raises(HyperError) as err:
        registry.sync_replication(ecr, PREFIX, ACCOUNT, ["eu-west-1"])
    assert err.value.message == ("the account's ECR registry already has 10 replication rules, and 10 is ECR's "
                                 "limit")
    assert ecr.puts == []  # nothing written


# ---------------------------------------------------------------- waiting for a replica (recorded responses)


def status(region: str, state: str, **extra) -> dict:
    return {"region": region, "registryId": ACCOUNT, "status": state, **extra}


def test_a_hub_registration_waits_until_its_replica_is_complete():
    ecr = RecordedEcr(statuses=[[], [status("eu-west-1", "IN_PROGRESS")],
                                [status("eu-west-1", "COMPLETE"), status("ap-southeast-2", "IN_PROGRESS")]])
    clock = Clock()
    registry.wait_for_replica(ecr, "hyper-prod-worker", DIGEST, "eu-west-1", ACCOUNT, timeout=60,
                              sleep=clock.sleep, clock=clock)
    assert ecr.status_calls == 3 and clock.now < 60


def test_a_failed_replica_is_one_clear_line():
    ecr = RecordedEcr(statuses=[[status("eu-west-1", "FAILED", failureCode="IMAGE_NOT_FOUND")]])
    with pytest.raises(HyperError) as err:
        registry.wait_for_replica(ecr, "hyper-prod-worker", DIGEST, "eu-west-1", ACCOUNT, timeout=60,
                                  sleep=Clock().sleep, clock=Clock())
    assert err.value.message == (f"ECR could not replicate hyper-prod-worker@{DIGEST[:19]} to eu-west-1 "
                                 "(IMAGE_NOT_FOUND)")


def test_the_wait_is_bounded():
    ecr = RecordedEcr(statuses=[[status("eu-west-1", "IN_PROGRESS")]])
    clock = Clock()
    with pytest.raises(HyperError) as err:
        registry.wait_for_replica(ecr, "hyper-prod-worker", DIGEST, "eu-west-1", ACCOUNT, timeout=30,
                                  sleep=clock.sleep, clock=clock)
    assert err.value.message == (f"replication of hyper-prod-worker@{DIGEST[:19]} to eu-west-1 is still in "
                                 "progress after 30 s")
    assert "run the same command (or `hyper apply`) again" in err.value.hint
    assert clock.now == 30


def test_replica_uris_are_the_regions_own_registry_pinned_by_digest():
    assert registry.replica_uri(ACCOUNT, "eu-west-1", "hyper-prod-worker", DIGEST) == (
        f"{ACCOUNT}.dkr.ecr.eu-west-1.amazonaws.com/hyper-prod-worker@{DIGEST}")


# ---------------------------------------------------------------- on moto's server


MANIFEST = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                       "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": 7023,
                                  "digest": "sha256:" + "c" * 64},
                       "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 32654,
                                   "digest": "sha256:" + "d" * 64}]})


@pytest.fixture
def aws(home, moto_endpoint, request):
    requests.post(f"{moto_endpoint}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    prefix = "ecr" + str(abs(hash(request.node.name)) % 10**6) + "-"
    cli("hyper", "hosts", "create-host", "prod", "--type", "aws", "--main-region", "us-east-1",
        "--endpoint-url", moto_endpoint, "--table-prefix", prefix, check=True)
    ecr = boto3.client("ecr", region_name="us-east-1", endpoint_url=moto_endpoint)
    ecr.put_replication_configuration(replicationConfiguration={"rules": []})  # the account starts with none
    yield moto_endpoint, prefix, ecr
    ecr.put_replication_configuration(replicationConfiguration={"rules": []})


def _pushed(ecr, repo: str) -> str:
    """An image in the repository as `docker push` leaves it (moto: the manifest put under :latest)."""
    ecr.create_repository(repositoryName=repo)
    return ecr.put_image(repositoryName=repo, imageManifest=MANIFEST, imageTag="latest")["image"]["imageId"][
        "imageDigest"]


def test_on_moto_one_rule_is_written_and_a_digest_is_found(aws):
    endpoint, prefix, ecr = aws
    digest = _pushed(ecr, f"{prefix}worker")
    assert registry.image_digest(ecr, f"{prefix}worker") == digest
    registry.sync_replication(ecr, prefix, ACCOUNT, ["eu-west-1"])
    assert ecr.describe_registry()["replicationConfiguration"]["rules"] == [{
        "destinations": [{"region": "eu-west-1", "registryId": ACCOUNT}],
        "repositoryFilters": [{"filter": prefix, "filterType": "PREFIX_MATCH"}]}]
    registry.sync_replication(ecr, prefix, ACCOUNT, [])
    assert ecr.describe_registry()["replicationConfiguration"]["rules"] == []
    with pytest.raises(HyperError, match="has no image tagged latest"):
        registry.image_digest(ecr, f"{prefix}nothing")


def test_on_moto_a_main_region_definition_pins_the_built_image_by_digest(aws):
    endpoint, prefix, ecr = aws
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    digest = _pushed(ecr, f"{prefix}worker")  # built elsewhere and recorded as hyper's (add-image --path)
    _record_built_image(prefix, "worker")
    cli("hyper", "definitions", "add-definition", "d", "--image", "worker", check=True)
    batch = boto3.client("batch", region_name="us-east-1", endpoint_url=endpoint)
    (jd,) = batch.describe_job_definitions(jobDefinitionName=f"{prefix}d", status="ACTIVE")["jobDefinitions"]
    assert jd["containerProperties"]["image"] == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{prefix}worker@{digest}"


def test_on_moto_a_new_region_gets_the_images_built_before_it(aws):
    """add-region: the host's rule gains the region and each built image is pushed again (ECR replicates only
    pushes after its rule names a region). Registering the definition there then asks ECR for the replica's
    status, which moto cannot answer: the region is FAILED at that step, and nothing is registered there."""
    endpoint, prefix, ecr = aws
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    digest = _pushed(ecr, f"{prefix}worker")
    _record_built_image(prefix, "worker")
    cli("hyper", "definitions", "add-definition", "d", "--image", "worker", check=True)
    plan = cli("hyper", "regions", "add-region", "eu-west-1", "--vpc-cidr", "10.30.0.0/16", "--dry-run",
               check=True).stdout
    assert f"would replicate-images {prefix}* in us-east-1\nreplicate_to:\n- eu-west-1\nimages:\n- worker\n" in plan
    assert f"would register-definition {prefix}d in eu-west-1\n" in plan
    added = cli("hyper", "regions", "add-region", "eu-west-1", "--vpc-cidr", "10.30.0.0/16",
                env={"HYPER_REPLICATION_WAIT": "0"})
    assert added.returncode == 1
    # the network is there; the registration in eu-west-1 stopped at the replica check (moto answers
    # DescribeImageReplicationStatus with HTTP 500; the recorded-response tests above cover its answers)
    assert added.stdout.startswith(f"added region eu-west-1 (FAILED: register-definition {prefix}d in eu-west-1: "
                                   f"AWS ecr find the image of {prefix}worker failed")
    assert ecr.describe_registry()["replicationConfiguration"]["rules"] == [{
        "destinations": [{"region": "eu-west-1", "registryId": ACCOUNT}],
        "repositoryFilters": [{"filter": prefix, "filterType": "PREFIX_MATCH"}]}]
    tags = {t for i in ecr.describe_images(repositoryName=f"{prefix}worker")["imageDetails"]
            if i["imageDigest"] == digest for t in i.get("imageTags") or []}
    # the repository an older hyper made mutable is immutable now that provisioning touched it
    assert ecr.describe_repositories(repositoryNames=[f"{prefix}worker"])["repositories"][0][
        "imageTagMutability"] == "IMMUTABLE"
    # pushed again under a fresh tag (ECR replicates it to eu-west-1); no tag was moved or deleted
    assert "latest" in tags and len(tags) == 2
    assert next(t for t in tags if t != "latest").startswith(registry.REPLICATE_TAG + "-")
    batch = boto3.client("batch", region_name="eu-west-1", endpoint_url=endpoint)
    assert batch.describe_job_definitions(jobDefinitionName=f"{prefix}d", status="ACTIVE")["jobDefinitions"] == []
    # deleting the region takes it out of the host's rule again
    assert f"would update-replication {prefix}* in us-east-1" in cli(
        "hyper", "regions", "delete-region", "eu-west-1", "--force", "--dry-run", check=True).stdout


def test_on_moto_an_adopted_uri_is_used_as_given_in_every_region(aws):
    endpoint, prefix, ecr = aws
    uri = "public.ecr.aws/acme/worker:1.2"
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    cli("hyper", "images", "add-image", "w", "--uri", uri, check=True)
    cli("hyper", "definitions", "add-definition", "d", "--image", "w", check=True)
    assert cli("hyper", "regions", "add-region", "eu-west-1", "--vpc-cidr", "10.30.0.0/16",
               check=True).stdout == "added region eu-west-1 (ACTIVE)\n"
    batch = boto3.client("batch", region_name="eu-west-1", endpoint_url=endpoint)
    (jd,) = batch.describe_job_definitions(jobDefinitionName=f"{prefix}d", status="ACTIVE")["jobDefinitions"]
    assert jd["containerProperties"]["image"] == uri  # registered in the new region at once
    assert ecr.describe_registry()["replicationConfiguration"]["rules"] == []  # nothing of ours to replicate


def _record_built_image(prefix: str, name: str) -> None:
    """An image hyper built (its record has a path); Docker cannot build here, so the record is written the way
    a successful `add-image --path` leaves it."""
    from hyper.models import Image
    from hyper.services.context import open_context

    ctx = open_context()
    ctx.store.put_resource(Image(name=name, path="/src/worker", status="ACTIVE"), replace=True)


FAKE_DOCKER = '''#!{python}
"""docker as hyper calls it (login, build -t URI DIR, push URI); push puts a new manifest into ECR (moto)."""
import json, os, sys, uuid
import boto3
args = sys.argv[1:]
if args[0] == "login":
    sys.stdin.read()
elif args[0] == "push":
    registry, _, rest = args[1].partition("/")
    repo, _, tag = rest.partition(":")
    ecr = boto3.client("ecr", region_name=registry.split(".")[3], endpoint_url=os.environ["FAKE_DOCKER_ENDPOINT"])
    layer = "sha256:" + uuid.uuid4().hex * 2  # every build is a new image
    manifest = {{"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                "config": {{"mediaType": "application/vnd.docker.container.image.v1+json", "size": 1, "digest": layer}},
                "layers": [{{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": 1,
                            "digest": layer}}]}}
    ecr.put_image(repositoryName=repo, imageManifest=json.dumps(manifest), imageTag=tag)
'''


def test_on_moto_a_rebuilt_image_is_pinned_again_by_its_new_digest(aws, tmp_path):
    """Definitions pin a digest, so a new build of the image registers them again. Tags are immutable: each
    build is pushed under its context's content tag, so updating from the same directory pushes nothing (a
    second push under the tag would be refused: moto answers ImageAlreadyExistsException), and a changed
    directory is a new tag and a new digest. Docker cannot run here: the docker CLI hyper calls is a script
    whose push puts a new manifest into moto's ECR, as a push does."""
    import sys

    endpoint, prefix, ecr = aws
    docker = tmp_path / "docker"
    docker.write_text(FAKE_DOCKER.format(python=sys.executable))
    docker.chmod(0o755)
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    env = {"HYPER_DOCKER": str(docker), "FAKE_DOCKER_ENDPOINT": endpoint}
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    assert cli("hyper", "images", "add-image", "worker", "--path", str(tmp_path / "img"), env=env,
               check=True).stdout == "added image worker (ACTIVE)\n"
    (repo,) = ecr.describe_repositories(repositoryNames=[f"{prefix}worker"])["repositories"]
    assert repo["imageTagMutability"] == "IMMUTABLE" and repo["imageScanningConfiguration"]["scanOnPush"]
    assert repo["encryptionConfiguration"] == {"encryptionType": "AES256"}  # no kms_key: ECR's own
    cli("hyper", "definitions", "add-definition", "d", "--image", "worker", check=True)
    batch = boto3.client("batch", region_name="us-east-1", endpoint_url=endpoint)

    def pinned() -> str:
        (jd,) = batch.describe_job_definitions(jobDefinitionName=f"{prefix}d", status="ACTIVE")["jobDefinitions"]
        return jd["containerProperties"]["image"]

    tag = registry.context_tag(str(tmp_path / "img"))
    first = registry.image_digest(ecr, f"{prefix}worker", tag)
    assert pinned() == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{prefix}worker@{first}"
    assert cli("hyper", "images", "update-image", "worker", "--path", str(tmp_path / "img"), env=env,
               check=True).stdout == "updated image worker (ACTIVE)\n"  # the same directory: nothing pushed
    assert len(ecr.describe_images(repositoryName=f"{prefix}worker")["imageDetails"]) == 1
    assert pinned() == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{prefix}worker@{first}"
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\nLABEL v=2\n")
    assert cli("hyper", "images", "update-image", "worker", "--path", str(tmp_path / "img"), env=env,
               check=True).stdout == "updated image worker (ACTIVE)\n"
    new_tag = registry.context_tag(str(tmp_path / "img"))
    second = registry.image_digest(ecr, f"{prefix}worker", new_tag)
    assert new_tag != tag and second != first
    assert pinned() == f"{ACCOUNT}.dkr.ecr.us-east-1.amazonaws.com/{prefix}worker@{second}"
    assert registry.image_digest(ecr, f"{prefix}worker", tag) == first  # the old tag still names the old image
