"""Region, cluster and main stacks deployed into moto's server (127.0.0.1) in two regions, seen through boto3
exactly as on AWS; job definitions registered once per content; stacks deleted.

What moto 5.2 cannot do, and how the test goes around it (the templates keep every resource):
* it creates every resource type of the templates through CloudFormation, but deletes none of route tables,
  routes, internet gateway attachments, NAT gateways, elastic IPs or VPC endpoints, so a stack with a VPC hyper
  made cannot be deleted there (DependencyViolation on the VPC). us-east-1 gets the full new-VPC network and
  keeps it; eu-west-1 uses an existing VPC (the imported variant), whose network stack moto deletes fully.
* it neither updates nor deletes Batch compute environments and job queues through CloudFormation (no
  handlers): after a cluster stack is deleted the stack is gone but the environment stays in moto. Nor does
  it remove all resources of a deleted stack (its own delete of a role with managed policies fails and it
  stops there), so the test checks that the stack and its exports are gone, not each resource.
* it does not implement ListImports, so ``delete_stack``'s in-use check falls back to searching the host's
  own stacks' templates for the exports (tested below).
* it answers failures synchronously (no ROLLBACK_COMPLETE stacks), so failed states are tested on recorded
  events in tests/test_templates.py.
"""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
import requests

from hyper.aws import names, stacks, templates
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Region
from tests.moto_server import FAKE_ENV, UNSET

MAIN, OTHER = "us-east-1", "eu-west-1"
GPU = Cluster(name="gpu", type="batch", regions=[MAIN, OTHER], instance_types=["g5.xlarge", "g5.2xlarge"],
              gpus_per_instance=1, spot=True, max_vcpus=256, overrides={OTHER: {"max_vcpus": 64}})
CPU = Cluster(name="cpu", type="batch", regions=[MAIN, OTHER], instance_types=["c5.large", "m5.xlarge"], max_vcpus=32)
TRAIN = Definition(name="train", image="worker", vcpus=4, memory_mib=16384, gpus=1, timeout=3600, retries=2, ratio=20)
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/worker:1"


def make_host(endpoint: str, label: str) -> Host:
    # a prefix of its own: the moto server (and its one account's IAM) is shared by the whole test session
    return Host(name=label, type="aws", main_region=MAIN, endpoint_url=endpoint,
                table_prefix=f"hyper-{label}-{uuid.uuid4().hex[:6]}-")


def network(host: Host) -> str:
    return names.stack(host, "network")


def cluster_stack(host: Host, cluster: Cluster) -> str:
    return names.stack(host, "cluster", cluster.name)


def existing_vpc(host: Host, region: str, cidr: str) -> Region:
    """A VPC made outside hyper (the imported-VPC variant of a region)."""
    ec2 = stacks.regional_client(host, "ec2", region)
    vpc = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    base = cidr.rsplit(".", 2)[0]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"{base}.{i * 16}.0/20", AvailabilityZone=f"{region}{az}")
               ["Subnet"]["SubnetId"] for i, az in enumerate("ab")]
    return Region(name=region, vpc_id=vpc, subnets=subnets)


@pytest.fixture(scope="module")
def deployed(moto_server):  # noqa: F811
    """One host's main stack, network stacks and two clusters in two regions (deployed once per module)."""
    with pytest.MonkeyPatch.context() as mp:
        for key in UNSET:
            mp.delenv(key, raising=False)
        for key, value in FAKE_ENV.items():
            mp.setenv(key, value)
        mp.setenv("AWS_CONFIG_FILE", "/nonexistent/aws-config")
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/aws-credentials")
        requests.post(f"{moto_server}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
        host = make_host(moto_server, "stk")
        regions = {MAIN: Region(name=MAIN, main=True, vpc_cidr="10.20.0.0/16", vpc_endpoints=True),
                   OTHER: existing_vpc(host, OTHER, "10.40.0.0/16")}
        stacks.ensure_batch_service_linked_role(host)
        stacks.ensure_batch_service_linked_role(host)  # already there: fine
        results = {"main": stacks.deploy_stack(host, MAIN, names.stack(host, "main"),
                                               templates.render_main_stack(host))}
        for name, reg in regions.items():
            results[name] = stacks.deploy_stack(host, name, network(host), templates.render_region_stack(
                host, reg, other_regions=regions.values()))
            for c in (GPU, CPU):
                stacks.check_cluster_region(host, c, name)
                results[(c.name, name)] = stacks.deploy_stack(host, name, cluster_stack(host, c),
                                                              templates.render_cluster_stack(host, c, name))
        yield SimpleNamespace(host=host, regions=regions, results=results)
        for name in regions:  # whatever the tests left (deleting a missing stack is fine)
            for c in (GPU, CPU):
                stacks.delete_stack(host, name, cluster_stack(host, c))
        stacks.delete_stack(host, OTHER, network(host))
        stacks.delete_stack(host, MAIN, names.stack(host, "main"))


def test_every_stack_deployed(deployed):
    assert {str(k): (r.status, r.action, r.resource_status) for k, r in deployed.results.items()} == {
        str(k): ("CREATE_COMPLETE", "create", "ACTIVE") for k in deployed.results}


def test_compute_environments_and_queues_in_both_regions(deployed):
    host = deployed.host
    for region in (MAIN, OTHER):
        batch = stacks.regional_client(host, "batch", region)
        outputs = stacks.stack_status(host, region, network(host)).outputs
        envs = {e["computeEnvironmentName"]: e for e in batch.describe_compute_environments(
            computeEnvironments=[names.compute_environment(host, c.name) for c in (GPU, CPU)])["computeEnvironments"]}
        assert sorted(envs) == sorted(names.compute_environment(host, c.name) for c in (GPU, CPU))
        gpu = envs[names.compute_environment(host, "gpu")]
        assert gpu["type"] == "MANAGED" and gpu["serviceRole"].endswith(
            ":role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch")  # never a custom role
        resources = gpu["computeResources"]
        assert resources["type"] == "SPOT" and resources["allocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
        assert resources["maxvCpus"] == (256 if region == MAIN else 64)  # the per-region override
        assert sorted(resources["subnets"]) == sorted(outputs["SubnetIds"].split(","))
        assert resources["securityGroupIds"] == [outputs["SecurityGroupId"]]
        assert resources["instanceRole"] == outputs["InstanceProfileArn"]
        assert envs[names.compute_environment(host, "cpu")]["computeResources"]["type"] == "EC2"
        queues = batch.describe_job_queues(jobQueues=[names.job_queue(host, c.name) for c in (GPU, CPU)])["jobQueues"]
        assert sorted(q["jobQueueName"] for q in queues) == sorted(names.job_queue(host, c.name) for c in (GPU, CPU))
        for q in queues:
            assert q["state"] == "ENABLED"
            assert q["computeEnvironmentOrder"][0]["computeEnvironment"] == envs[q["jobQueueName"]][
                "computeEnvironmentArn"]
    ec2 = stacks.regional_client(host, "ec2", MAIN)
    vpc = stacks.stack_status(host, MAIN, network(host)).outputs["VpcId"]
    assert ec2.describe_vpcs(VpcIds=[vpc])["Vpcs"][0]["CidrBlock"] == "10.20.0.0/16"
    assert len(ec2.describe_nat_gateways(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["NatGateways"]) == 1
    endpoints = ec2.describe_vpc_endpoints(Filters=[{"Name": "vpc-id", "Values": [vpc]}])["VpcEndpoints"]
    assert len(endpoints) == 5  # ecr.api, ecr.dkr, logs, s3, dynamodb


def test_stack_status_outputs_and_next_action(deployed):
    host = deployed.host
    result = stacks.stack_status(host, OTHER, network(host))
    assert result.resource_status == "ACTIVE" and result.reasons == [] and result.message == ""
    assert result.outputs["VpcId"] == deployed.regions[OTHER].vpc_id
    assert result.outputs["JobRoleArn"].endswith(f":role/{templates.role_name(host, OTHER, 'job')}")
    assert stacks.stack_action(host, OTHER, network(host)) == "update"
    missing = stacks.stack_status(host, OTHER, names.stack(host, "cluster", "nope"))
    assert (missing.status, missing.resource_status, missing.exists) == ("MISSING", "MISSING", False)
    assert stacks.stack_action(host, OTHER, names.stack(host, "cluster", "nope")) == "create"
    with pytest.raises(HyperError, match="does not exist in eu-west-1"):
        stacks.stack_outputs(host, OTHER, names.stack(host, "cluster", "nope"))


def test_redeploying_the_same_template_changes_nothing(deployed):
    host = deployed.host
    again = stacks.deploy_stack(host, OTHER, cluster_stack(host, CPU), templates.render_cluster_stack(host, CPU, OTHER))
    assert again.action in ("none", "update") and again.resource_status == "ACTIVE"
    batch = stacks.regional_client(host, "batch", OTHER)
    assert len(batch.describe_compute_environments(
        computeEnvironments=[names.compute_environment(host, "cpu")])["computeEnvironments"]) == 1


def test_job_definition_registered_once_per_content(deployed):
    host = deployed.host
    name = names.job_definition(host, "train")

    def active(batch) -> list[str]:
        found = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"]
        return sorted(f"{d['jobDefinitionName']}:{d['revision']}" for d in found)

    for region in (MAIN, OTHER):
        batch = stacks.regional_client(host, "batch", region)
        first = stacks.register_job_definition(host, region, TRAIN, IMAGE, cluster=GPU)
        assert stacks.register_job_definition(host, region, TRAIN, IMAGE, cluster=GPU) == first == f"{name}:1"
        assert active(batch) == [first]
        described = batch.describe_job_definitions(jobDefinitionName=name, status="ACTIVE")["jobDefinitions"][0]
        container = described["containerProperties"]
        assert (container["jobRoleArn"], container["executionRoleArn"]) == stacks.network_roles(host, region)
        assert {"type": "GPU", "value": "1"} in container["resourceRequirements"]
        assert described["retryStrategy"]["attempts"] == 3
        assert described["tags"]["hyper:prefix"] == names.prefix(host)
        # new content: a new revision, the only ACTIVE one (the scheduler submits the latest)
        newer = stacks.register_job_definition(host, region, TRAIN, IMAGE.replace(":1", ":2"), cluster=GPU)
        assert newer == f"{name}:2" and active(batch) == [newer]
        assert stacks.register_job_definition(host, region, TRAIN, IMAGE.replace(":1", ":2")) == newer
        # back to the first content: it must become the latest again
        assert stacks.register_job_definition(host, region, TRAIN, IMAGE, cluster=GPU) == f"{name}:3"
        assert stacks.deregister_job_definitions(host, region, "train") == [f"{name}:3"]
        assert active(batch) == []


def test_gpu_definition_on_cpu_cluster_is_refused_before_registering(deployed):
    with pytest.raises(HyperError, match="the cluster has no GPUs"):
        stacks.register_job_definition(deployed.host, OTHER, TRAIN, IMAGE, cluster=CPU)


def test_main_stack_log_group(deployed):
    host = deployed.host
    logs = stacks.regional_client(host, "logs", MAIN)
    groups = logs.describe_log_groups(logGroupNamePrefix=names.log_group(host))["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in groups] == [(names.log_group(host), 30)]


def test_instance_types_are_checked_in_the_region(deployed):
    host = deployed.host
    bad = Cluster(**{**CPU.to_dict(), "instance_types": ["c5.large", "zz9.large"]})
    with pytest.raises(HyperError) as info:
        stacks.check_cluster_region(host, bad, OTHER)
    assert str(info.value).startswith("cluster 'cpu': zz9.large not offered in eu-west-1 (drop them")
    assert stacks.missing_instance_types(host, OTHER, ["c5.large", "c5"]) == []  # families are not checked


def test_a_region_in_use_by_clusters_is_not_deleted(deployed):
    host = deployed.host
    with pytest.raises(HyperError) as info:
        stacks.delete_stack(host, OTHER, network(host))
    assert f"still used by {cluster_stack(host, CPU)}, {cluster_stack(host, GPU)}" in str(info.value)
    assert stacks.stack_status(host, OTHER, network(host)).resource_status == "ACTIVE"


def test_a_second_host_in_the_same_account_and_region_does_not_collide(deployed, moto_endpoint):  # noqa: F811
    other = make_host(moto_endpoint, "stk2")
    reg = existing_vpc(other, OTHER, "10.50.0.0/16")
    assert stacks.deploy_stack(other, OTHER, network(other), templates.render_region_stack(other, reg)).status == \
        "CREATE_COMPLETE"
    try:
        result = stacks.deploy_stack(other, OTHER, cluster_stack(other, CPU),
                                     templates.render_cluster_stack(other, CPU, OTHER))
        assert result.status == "CREATE_COMPLETE"
        batch = stacks.regional_client(other, "batch", OTHER)
        envs = [names.compute_environment(h, "cpu") for h in (deployed.host, other)]
        found = batch.describe_compute_environments(computeEnvironments=envs)["computeEnvironments"]
        assert sorted(e["computeEnvironmentName"] for e in found) == sorted(envs) and envs[0] != envs[1]
        roles = [stacks.network_roles(h, OTHER) for h in (deployed.host, other)]
        assert set(roles[0]).isdisjoint(roles[1])
    finally:
        stacks.delete_stack(other, OTHER, cluster_stack(other, CPU))
        stacks.delete_stack(other, OTHER, network(other))


def test_delete_stacks(deployed):
    host = deployed.host
    for region in (MAIN, OTHER):
        for c in (GPU, CPU):
            gone = stacks.delete_stack(host, region, cluster_stack(host, c))
            assert (gone.status, gone.action) == ("MISSING", "delete")
    gone = stacks.delete_stack(host, OTHER, network(host))  # the imported-VPC network (see the module's notes)
    assert gone.status == "MISSING"
    cfn = stacks.regional_client(host, "cloudformation", OTHER)
    exports = [e["Name"] for e in cfn.list_exports()["Exports"] if e["Name"].startswith(network(host))]
    assert exports == []  # the region can be added again
    assert stacks.delete_stack(host, MAIN, names.stack(host, "main")).status == "MISSING"
    logs = stacks.regional_client(host, "logs", MAIN)
    assert logs.describe_log_groups(logGroupNamePrefix=names.log_group(host))["logGroups"] == []
    again = stacks.delete_stack(host, OTHER, network(host))
    assert (again.status, again.action) == ("MISSING", "none")
