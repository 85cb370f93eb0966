"""`hyper` add-/update-/delete-* on an aws host deploy to AWS (moto on 127.0.0.1): dry runs, failures, deletes."""

from __future__ import annotations

import boto3
import pytest
import requests
import yaml

from tests.conftest import cli


@pytest.fixture
def aws(home, moto_endpoint, request):
    requests.post(f"{moto_endpoint}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    prefix = "pv" + str(abs(hash(request.node.name)) % 10**6) + "-"
    cli("hyper", "hosts", "create-host", "prod", "--type", "aws", "--main-region", "us-east-1",
        "--endpoint-url", moto_endpoint, "--table-prefix", prefix, check=True)
    return moto_endpoint, prefix


def test_dry_run_prints_the_template_and_changes_nothing(aws):
    endpoint, prefix = aws
    out = cli("hyper", "regions", "add-region", "eu-west-1", "--vpc-cidr", "10.30.0.0/16", "--dry-run", check=True)
    docs = out.stdout.split("--- # ")
    assert docs[1].startswith(f"region eu-west-1: would create stack {prefix}network in eu-west-1\n")
    template = yaml.safe_load(docs[1].split("\n", 1)[1])
    assert template["Resources"]["Vpc"]["Properties"]["CidrBlock"] == "10.30.0.0/16"
    assert "eu-west-1" not in cli("hyper", "regions", "list-regions", check=True).stdout
    cfn = boto3.client("cloudformation", region_name="eu-west-1", endpoint_url=endpoint)
    assert not [s for s in cfn.list_stacks()["StackSummaries"] if s["StackName"].startswith(prefix)]


def test_cluster_deploys_in_every_region_and_deletes(aws):
    endpoint, prefix = aws
    assert cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16",
               check=True).stdout == "main region us-east-1 (ACTIVE)\n"
    cli("hyper", "regions", "add-region", "eu-west-1", "--vpc-cidr", "10.30.0.0/16", check=True)
    assert cli("hyper", "clusters", "add-cluster", "cpu", "--instance-types", "c5.large", "--max-vcpus", "32",
               check=True).stdout == "added cluster cpu (ACTIVE)\n"
    for region in ("us-east-1", "eu-west-1"):
        batch = boto3.client("batch", region_name=region, endpoint_url=endpoint)
        (queue,) = [q for q in batch.describe_job_queues()["jobQueues"] if q["jobQueueName"] == f"{prefix}cpu"]
        (env,) = batch.describe_compute_environments(computeEnvironments=[f"{prefix}cpu"])["computeEnvironments"]
        assert env["computeResources"]["maxvCpus"] == 32
    # an update redeploys; a used cluster cannot go without --force
    assert cli("hyper", "clusters", "update-cluster", "cpu", "--max-vcpus", "64",
               check=True).stdout == "updated cluster cpu (ACTIVE)\n"
    cli("hyper", "queues", "add-queue", "q", "--cluster", "cpu", check=True)
    refused = cli("hyper", "clusters", "delete-cluster", "cpu")
    assert refused.returncode == 1 and "in use by queue q" in refused.stderr
    assert cli("hyper", "clusters", "delete-cluster", "cpu", "--force", "--dry-run", check=True).stdout == (
        f"would delete-stack {prefix}cluster-cpu in eu-west-1\nwould delete-stack {prefix}cluster-cpu in us-east-1\n")
    assert cli("hyper", "clusters", "delete-cluster", "cpu", "--force", check=True).stdout == (
        "deleted cluster cpu; orphaned: queue q\n")
    for region in ("us-east-1", "eu-west-1"):
        cfn = boto3.client("cloudformation", region_name=region, endpoint_url=endpoint)
        live = [s["StackName"] for s in cfn.list_stacks()["StackSummaries"]
                if s["StackStatus"] != "DELETE_COMPLETE" and s["StackName"] == f"{prefix}cluster-cpu"]
        assert live == []
    assert "cpu" not in cli("hyper", "clusters", "list-clusters", check=True).stdout


def test_instance_type_not_offered_is_recorded_failed_with_the_reason(aws):
    endpoint, prefix = aws
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    malformed = cli("hyper", "clusters", "add-cluster", "odd", "--instance-types", "c5.huge")
    assert malformed.returncode == 1 and "'c5.huge' is not an EC2 instance type" in malformed.stderr
    assert "odd" not in cli("hyper", "clusters", "list-clusters", check=True).stdout  # nothing recorded
    result = cli("hyper", "clusters", "add-cluster", "odd", "--instance-types", "c5.96xlarge")
    assert result.returncode == 1
    assert result.stdout.startswith(f"added cluster odd (FAILED: deploy-stack {prefix}cluster-odd in us-east-1: "
                                    "cluster 'odd': c5.96xlarge not offered in us-east-1")
    rows = yaml.safe_load(cli("hyper", "clusters", "list-clusters", "-o", "yaml", check=True).stdout)
    (odd,) = [r for r in rows if r["name"] == "odd"]
    assert odd["status"] == "FAILED" and "c5.96xlarge not offered in us-east-1" in odd["message"]
    # the fix: update it, and it deploys
    assert cli("hyper", "clusters", "update-cluster", "odd", "--instance-types", "c5.large",
               check=True).stdout == "updated cluster odd (ACTIVE)\n"


def test_definition_without_region_stack_fails_with_the_way_out(aws):
    endpoint, prefix = aws
    cli("hyper", "images", "add-image", "w", "--uri", "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:1", check=True)
    result = cli("hyper", "definitions", "add-definition", "d", "--image", "w")
    assert result.returncode == 1
    assert result.stdout.startswith(f"added definition d (FAILED: register-definition {prefix}d in us-east-1: ")
    assert "hyper regions add-region us-east-1" in result.stdout


def test_dropping_a_region_from_a_cluster_removes_its_stack_there_unless_a_queue_needs_it(aws):
    endpoint, prefix = aws
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    cli("hyper", "regions", "add-region", "eu-west-1", "--vpc-cidr", "10.30.0.0/16", check=True)
    cli("hyper", "clusters", "add-cluster", "cpu", "--instance-types", "c5.large", check=True)
    cli("hyper", "queues", "add-queue", "q", "--cluster", "cpu", "--weights", "us-east-1=3,eu-west-1=1", check=True)
    refused = cli("hyper", "clusters", "update-cluster", "cpu", "--regions", "us-east-1")
    assert refused.returncode == 1
    assert refused.stderr == ("hyper clusters: that change would break queue 'q': queue 'q' weighs region "
                              "'eu-west-1', where cluster 'cpu' has no compute (change queue 'q' first (`hyper "
                              "queues update-queue q ...`))\n")
    cli("hyper", "queues", "update-queue", "q", "--weights", "us-east-1=1", check=True)
    assert cli("hyper", "clusters", "update-cluster", "cpu", "--regions", "us-east-1",
               check=True).stdout == "updated cluster cpu (ACTIVE)\n"
    cfn = boto3.client("cloudformation", region_name="eu-west-1", endpoint_url=endpoint)
    assert [s["StackStatus"] for s in cfn.list_stacks()["StackSummaries"]
            if s["StackName"] == f"{prefix}cluster-cpu"] in ([], ["DELETE_COMPLETE"])


def test_a_refused_region_delete_keeps_the_region_active(aws):
    endpoint, prefix = aws
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    cli("hyper", "regions", "add-region", "eu-west-1", "--vpc-cidr", "10.30.0.0/16", check=True)
    cli("hyper", "clusters", "add-cluster", "cpu", "--instance-types", "c5.large", check=True)
    result = cli("hyper", "regions", "delete-region", "eu-west-1", "--force")
    assert result.returncode == 1 and "is still used by" in result.stderr
    rows = yaml.safe_load(cli("hyper", "regions", "list-regions", "-o", "yaml", check=True).stdout)
    assert {r["name"]: r["status"] for r in rows} == {"eu-west-1": "ACTIVE", "us-east-1": "ACTIVE"}


def test_apply_renders_every_template_before_its_first_write(aws, tmp_path):
    endpoint, prefix = aws
    f = tmp_path / "set.yaml"
    f.write_text("regions:\n  - name: us-west-2\n    vpc-cidr: 10.50.0.0/16\n"
                 "clusters:\n  - name: odd\n    regions: [us-west-2]\n    instance-types: [c5.huge]\n")
    result = cli("hyper", "apply", "-f", str(f))
    assert result.returncode == 1
    assert result.stderr.startswith(f"hyper apply: {f}:5: cluster 'odd' in us-west-2: 'c5.huge' is not an EC2 "
                                    "instance type")
    assert "us-west-2" not in cli("hyper", "regions", "list-regions", check=True).stdout
    cfn = boto3.client("cloudformation", region_name="us-west-2", endpoint_url=endpoint)
    assert not [s for s in cfn.list_stacks()["StackSummaries"] if s["StackName"].startswith(prefix)]


def test_deleting_a_built_image_removes_its_repository_but_never_an_adopted_one(aws, tmp_path, monkeypatch):
    endpoint, prefix = aws
    monkeypatch.setenv("HYPER_DOCKER", "")  # no Docker here: the build fails, the record says why
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "Dockerfile").write_text("FROM scratch\n")
    built = cli("hyper", "images", "add-image", "w", "--path", str(tmp_path / "img"))
    assert built.returncode == 1 and "needs the Docker CLI" in built.stdout
    ecr = boto3.client("ecr", region_name="us-east-1", endpoint_url=endpoint)
    ecr.create_repository(repositoryName=f"{prefix}w")  # as a build elsewhere would have left it
    ecr.create_repository(repositoryName="someone-elses")
    cli("hyper", "images", "add-image", "adopted", "--uri", "123456789012.dkr.ecr.us-east-1.amazonaws.com/"
        "someone-elses:1", check=True)
    assert cli("hyper", "images", "delete-image", "w", "--dry-run", check=True).stdout == (
        f"would delete-repository {prefix}w in us-east-1\n"
        f"would update-replication {prefix}* in us-east-1\n")  # the last built image: hyper's rule goes too
    assert cli("hyper", "images", "delete-image", "w", check=True).stdout == "deleted image w\n"
    assert cli("hyper", "images", "delete-image", "adopted", check=True).stdout == "deleted image adopted\n"
    left = {r["repositoryName"] for r in ecr.describe_repositories()["repositories"]}
    assert f"{prefix}w" not in left and "someone-elses" in left


def _environments(endpoint: str, region: str, prefix: str) -> dict[str, dict]:
    batch = boto3.client("batch", region_name=region, endpoint_url=endpoint)
    return {e["computeEnvironmentName"]: e for e in batch.describe_compute_environments()["computeEnvironments"]
            if e["computeEnvironmentName"].startswith(f"{prefix}cpu")}


def _deployed_template(endpoint: str, region: str, stack: str) -> dict:
    cfn = boto3.client("cloudformation", region_name=region, endpoint_url=endpoint)
    body = cfn.get_template(StackName=stack)["TemplateBody"]
    return body if isinstance(body, dict) else yaml.safe_load(body)


def test_update_cluster_replaces_an_environment_batch_cannot_update_in_place(aws):
    """Blue/green on moto: a BEST_FIT environment cannot take new instance types in place, so the update
    deploys a second generation (a new name and logical id) that the job queue's order points at. moto's
    CloudFormation has no update handler for Batch queues or deletion of environments, so the queue's switch
    is checked in the stack's deployed template, and the new environment in Batch itself."""
    endpoint, prefix = aws
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    cli("hyper", "clusters", "add-cluster", "cpu", "--instance-types", "c5.large", "--allocation-strategy",
        "BEST_FIT", check=True)
    assert set(_environments(endpoint, "us-east-1", prefix)) == {f"{prefix}cpu"}
    # vCPUs are never an infrastructure update: same environment
    assert cli("hyper", "clusters", "update-cluster", "cpu", "--max-vcpus", "64",
               check=True).stdout == "updated cluster cpu (ACTIVE)\n"
    assert set(_environments(endpoint, "us-east-1", prefix)) == {f"{prefix}cpu"}
    plan = cli("hyper", "clusters", "update-cluster", "cpu", "--instance-types", "m5.large", "--dry-run",
               check=True).stdout
    assert plan.startswith(f"--- # cluster cpu: would replace-compute-environment {prefix}cpu-2 in us-east-1\n"
                           "reason: BEST_FIT environments cannot change instance types in place (us-east-1)\n"
                           f"replaces: {prefix}cpu\n")
    assert cli("hyper", "clusters", "update-cluster", "cpu", "--instance-types", "m5.large",
               check=True).stdout == "updated cluster cpu (ACTIVE)\n"
    envs = _environments(endpoint, "us-east-1", prefix)
    assert envs[f"{prefix}cpu-2"]["computeResources"]["instanceTypes"] == ["m5.large"]
    template = _deployed_template(endpoint, "us-east-1", f"{prefix}cluster-cpu")
    assert "ComputeEnvironment" not in template["Resources"]
    assert template["Resources"]["JobQueue"]["Properties"]["ComputeEnvironmentOrder"] == [
        {"Order": 1, "ComputeEnvironment": {"Ref": "ComputeEnvironment2"}}]
    # the record remembers the generation: the next plain change stays on it
    assert cli("hyper", "clusters", "update-cluster", "cpu", "--max-vcpus", "32", "--dry-run",
               check=True).stdout.count("replace-compute-environment") == 0


def test_a_cluster_from_before_the_service_linked_role_moves_to_a_new_environment(aws):
    """A compute environment made with the custom Batch service role (generation 0) cannot switch to the
    service-linked role in place: its next update deploys generation 2, and the region's network stack keeps
    the custom role's export only while such a cluster is left."""
    from hyper.models import Cluster
    from hyper.services.context import open_context

    endpoint, prefix = aws
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    cli("hyper", "clusters", "add-cluster", "cpu", "--instance-types", "c5.large", check=True)
    ctx = open_context()
    legacy = ctx.store.get_resource("cluster", "cpu")
    assert isinstance(legacy, Cluster) and legacy.environment_generation == 1
    legacy.environment_generation = 0  # as a record written by an older hyper reads
    ctx.store.put_resource(legacy, replace=True)
    region_plan = cli("hyper", "regions", "update-region", "us-east-1", "--no-vpc-endpoints", "--dry-run",
                      check=True).stdout
    assert "BatchServiceRole:" in region_plan  # kept while the old environment imports it
    assert cli("hyper", "clusters", "update-cluster", "cpu", "--max-vcpus", "64",
               check=True).stdout == "updated cluster cpu (ACTIVE)\n"
    assert ctx.store.get_resource("cluster", "cpu").environment_generation == 2
    env = _environments(endpoint, "us-east-1", prefix)[f"{prefix}cpu-2"]
    assert env["serviceRole"].endswith(":role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch")
    region_plan = cli("hyper", "regions", "update-region", "us-east-1", "--no-vpc-endpoints", "--dry-run",
                      check=True).stdout
    assert "BatchServiceRole:" not in region_plan


def test_definitions_that_fit_no_instance_are_refused_at_add_update_and_apply(aws, tmp_path):
    endpoint, prefix = aws
    cli("hyper", "regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.20.0.0/16", check=True)
    cli("hyper", "clusters", "add-cluster", "gpu", "--instance-types", "g5.xlarge", "--gpus-per-instance", "1",
        check=True)
    cli("hyper", "images", "add-image", "w", "--uri", "public.ecr.aws/acme/worker:1", check=True)
    refused = cli("hyper", "definitions", "add-definition", "train", "--image", "w", "--vcpus", "4", "--memory",
                  "16GiB", "--gpus", "1")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == (
        "hyper definitions: definition train (4 vCPU, 16384 MiB, 1 GPU) fits no instance type of cluster gpu "
        "(g5.xlarge); the largest, g5.xlarge, leaves 4 vCPU, 15144 MiB and 1 GPU after the ECS agent's reserve "
        "(lower --vcpus, --memory or --gpus to a size that fits, or give a cluster bigger instance types "
        "(`hyper clusters update-cluster NAME --instance-types ...`))\n")
    assert "train" not in cli("hyper", "definitions", "list-definitions", check=True).stdout
    f = tmp_path / "defs.yaml"
    f.write_text("definitions:\n  - name: train\n    image: w\n    vcpus: 4\n    memory: 16GiB\n    gpus: 1\n")
    applied = cli("hyper", "apply", "-f", str(f))
    assert applied.returncode == 1 and "fits no instance type of cluster gpu" in applied.stderr
    # on bigger instances it fits; then the cluster cannot shrink below it
    cli("hyper", "clusters", "update-cluster", "gpu", "--instance-types", "g5.2xlarge", check=True)
    cli("hyper", "definitions", "add-definition", "train", "--image", "w", "--vcpus", "4", "--memory", "20GiB",
        "--gpus", "1", check=True)
    shrink = cli("hyper", "clusters", "update-cluster", "gpu", "--instance-types", "g5.xlarge")
    assert shrink.returncode == 1
    assert shrink.stderr.startswith("hyper clusters: that change would strand definition 'train': definition "
                                    "train (4 vCPU, 20480 MiB, 1 GPU) fits no instance type of cluster gpu")
