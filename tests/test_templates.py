"""CloudFormation templates, job definitions and IAM policies as data: every variant passes cfn-lint, two hosts
never share a physical name, bad input is one HyperError line, and `hyper iam policy` prints least privilege.

No AWS here: these are the pure renderers (tests/test_stacks_aws.py deploys them into moto's server).
"""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from hyper.aws import iam, names, stacks, templates
from hyper.aws.tables import table_names
from hyper.config import Host, save_hosts
from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Region

PROD = Host(name="prod", type="aws", main_region="us-east-1")
DEV = Host(name="dev", type="aws", main_region="us-east-1", table_prefix="team-dev-")

US = Region(name="us-east-1", main=True, vpc_cidr="10.20.0.0/16", vpc_endpoints=True)
EU = Region(name="eu-west-1", vpc_cidr="10.30.0.0/16")
IMPORTED = Region(name="us-west-2", vpc_id="vpc-0123456789abcdef0", subnets=["subnet-0aaa1111", "subnet-0bbb2222"])
GPU = Cluster(name="gpu", type="batch", regions=["us-east-1", "eu-west-1"], instance_types=["g5.xlarge", "g6.2xlarge"],
              gpus_per_instance=1, spot=True, allocation_strategy="SPOT_PRICE_CAPACITY_OPTIMIZED", max_vcpus=256,
              overrides={"eu-west-1": {"max_vcpus": 64, "instance_types": ["g5.xlarge"]}})
CPU = Cluster(name="cpu", type="batch", instance_types=["c7i.large", "m7i.xlarge"], max_vcpus=512, min_vcpus=2)
TRAIN = Definition(name="train", image="worker", vcpus=4, memory_mib=16384, gpus=1, timeout=3600, retries=2, ratio=20,
                   environment={"OMP_NUM_THREADS": "4"})
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/hyper-prod-worker:1"
ROLES = ("arn:aws:iam::123456789012:role/hyper-prod-us-east-1-job",
         "arn:aws:iam::123456789012:role/hyper-prod-us-east-1-execution")


def cluster(**changes) -> Cluster:
    return Cluster(**{**CPU.to_dict(), **changes})


def region(**changes) -> Region:
    return Region(**{**EU.to_dict(), **changes})


# ---------------------------------------------------------------- every variant passes cfn-lint

VARIANTS = {
    "network-new-vpc-endpoints-main": (lambda h: templates.render_region_stack(h, US), "us-east-1"),
    "network-new-vpc-no-endpoints": (lambda h: templates.render_region_stack(h, EU), "eu-west-1"),
    "network-imported-vpc-endpoints": (lambda h: templates.render_region_stack(
        h, Region(**{**IMPORTED.to_dict(), "vpc_endpoints": True})), "us-west-2"),
    "network-imported-vpc": (lambda h: templates.render_region_stack(h, IMPORTED), "us-west-2"),
    "network-imported-vpc-route-tables": (lambda h: templates.render_region_stack(
        h, Region(**{**IMPORTED.to_dict(), "vpc_endpoints": True, "route_tables": ["rtb-0ccc3333"]})), "us-west-2"),
    "cluster-spot-gpu": (lambda h: templates.render_cluster_stack(h, GPU, "us-east-1"), "us-east-1"),
    "cluster-spot-gpu-override": (lambda h: templates.render_cluster_stack(h, GPU, "eu-west-1"), "eu-west-1"),
    "cluster-on-demand-cpu": (lambda h: templates.render_cluster_stack(h, CPU, "us-east-1"), "us-east-1"),
    "cluster-spot-cpu-families": (lambda h: templates.render_cluster_stack(
        h, cluster(spot=True, instance_types=["c7i", "m7i"], allocation_strategy="SPOT_CAPACITY_OPTIMIZED"),
        "eu-west-1"), "eu-west-1"),
    "cluster-optimal-override-min": (lambda h: templates.render_cluster_stack(
        h, cluster(instance_types=[], overrides={"eu-west-1": {"min_vcpus": 0, "max_vcpus": 8}}), "eu-west-1"),
        "eu-west-1"),
    "main": (lambda h: templates.render_main_stack(h), "us-east-1"),
    # a region whose older clusters still import the custom Batch service role, and their replacement
    "network-legacy-batch-role": (lambda h: templates.render_region_stack(h, EU, legacy_batch_role=True),
                                  "eu-west-1"),
    "cluster-replaced-generation": (lambda h: templates.render_cluster_stack(
        h, cluster(environment_generation=3, allocation_strategy="BEST_FIT"), "us-east-1"), "us-east-1"),
}


def lint_errors(template: dict, region: str) -> list[str]:
    from cfnlint.api import lint

    found = lint(json.dumps(template), regions=[region])
    # informational rules (I...) are advice; errors and warnings must be zero
    return [f"{m.rule.id} {m.message} at {'/'.join(map(str, getattr(m, 'path', []) or []))}"
            for m in found if not m.rule.id.startswith("I")]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_template_passes_cfn_lint(variant):
    render, region_name = VARIANTS[variant]
    template = render(PROD)
    assert lint_errors(template, region_name) == []
    assert yaml.safe_load(templates.to_yaml(template)) == template  # what --dry-run prints is the template
    assert len(templates.template_body(template)) < templates.MAX_TEMPLATE_BODY


def test_lint_catches_a_broken_template():
    """The lint above is real: a misspelt property and a dangling Ref are errors."""
    template = templates.render_main_stack(PROD)
    template["Resources"]["LogGroup"]["Properties"]["Retention"] = 30
    template["Outputs"]["LogGroupName"]["Value"] = {"Ref": "Nope"}
    found = " ".join(lint_errors(template, "us-east-1"))
    assert "E3002" in found and "E6101" in found


# ---------------------------------------------------------------- what the templates hold


def test_new_vpc_network_has_two_azs_nat_endpoints_and_exports():
    t = templates.render_region_stack(PROD, US)
    r = t["Resources"]
    kinds = sorted({v["Type"] for v in r.values()})
    assert {"AWS::EC2::VPC", "AWS::EC2::NatGateway", "AWS::EC2::InternetGateway", "AWS::EC2::VPCEndpoint",
            "AWS::IAM::Role", "AWS::IAM::InstanceProfile"} <= set(kinds)
    assert r["Vpc"]["Properties"]["CidrBlock"] == "10.20.0.0/16"
    cidrs = {k: v["Properties"]["CidrBlock"] for k, v in r.items() if v["Type"] == "AWS::EC2::Subnet"}
    assert cidrs == {"PrivateSubnetA": "10.20.0.0/18", "PrivateSubnetB": "10.20.64.0/18",
                     "PublicSubnetA": "10.20.128.0/20", "PublicSubnetB": "10.20.144.0/20"}
    assert r["PrivateSubnetB"]["Properties"]["AvailabilityZone"] == {"Fn::Select": [1, {"Fn::GetAZs": "us-east-1"}]}
    services = sorted(v["Properties"]["ServiceName"]["Fn::Sub"].rsplit(".", 1)[-1] if "ecr." not in
                      v["Properties"]["ServiceName"]["Fn::Sub"] else v["Properties"]["ServiceName"]["Fn::Sub"][-7:]
                      for v in r.values() if v["Type"] == "AWS::EC2::VPCEndpoint")
    assert services == ["dynamodb", "ecr.api", "ecr.dkr", "logs", "s3"]  # DynamoDB: main region only
    sg = r["WorkerSecurityGroup"]["Properties"]
    assert "SecurityGroupIngress" not in sg and sg["SecurityGroupEgress"][0]["CidrIp"] == "0.0.0.0/0"
    exports = {k: v["Export"]["Name"] for k, v in t["Outputs"].items()}
    assert exports["SubnetIds"] == "hyper-prod-network-SubnetIds"
    assert set(exports) == {"VpcId", "SubnetIds", "SecurityGroupId", "InstanceProfileArn", "ExecutionRoleArn",
                            "JobRoleArn"}
    assert "BatchServiceRole" not in r  # compute environments use Batch's service-linked role
    eu = templates.render_region_stack(PROD, EU)["Resources"]
    assert not any(v["Type"] == "AWS::EC2::VPCEndpoint" for v in eu.values())


def test_small_vpc_subnets():
    subnets = templates.render_region_stack(PROD, region(vpc_cidr="10.9.8.0/24"))["Resources"]
    assert [subnets[f"{k}Subnet{az}"]["Properties"]["CidrBlock"] for k in ("Private", "Public") for az in "AB"] == [
        "10.9.8.0/26", "10.9.8.64/26", "10.9.8.128/28", "10.9.8.144/28"]


def test_imported_vpc_network_creates_no_vpc():
    t = templates.render_region_stack(PROD, Region(**{**IMPORTED.to_dict(), "vpc_endpoints": True}))
    kinds = {v["Type"] for v in t["Resources"].values()}
    assert not kinds & {"AWS::EC2::VPC", "AWS::EC2::Subnet", "AWS::EC2::NatGateway", "AWS::EC2::RouteTable"}
    assert t["Resources"]["WorkerSecurityGroup"]["Properties"]["VpcId"] == "vpc-0123456789abcdef0"
    assert t["Outputs"]["SubnetIds"]["Value"] == {"Fn::Join": [",", ["subnet-0aaa1111", "subnet-0bbb2222"]]}
    gateways = [v for v in t["Resources"].values() if v["Properties"].get("VpcEndpointType") == "Gateway"]
    assert gateways == []  # gateway endpoints need route tables hyper does not know in a VPC it did not make


def test_an_imported_vpc_with_route_tables_gets_gateway_endpoints_and_hubs_no_logs_endpoint():
    """Image layers come from S3: without a gateway endpoint they go through NAT ($0.045/GB). A hub region's
    workers write logs to the main region, so an interface endpoint for Logs there would go unused."""
    hub = templates.render_region_stack(PROD, Region(**{**IMPORTED.to_dict(), "vpc_endpoints": True,
                                                        "route_tables": ["rtb-0ccc3333"]}))["Resources"]
    endpoints = {k: v["Properties"] for k, v in hub.items() if v["Type"] == "AWS::EC2::VPCEndpoint"}
    assert sorted(endpoints) == ["EcrApiEndpoint", "EcrDkrEndpoint", "S3Endpoint"]
    assert endpoints["S3Endpoint"]["RouteTableIds"] == ["rtb-0ccc3333"]
    assert endpoints["S3Endpoint"]["VpcId"] == "vpc-0123456789abcdef0"
    main = templates.render_region_stack(PROD, Region(**{**IMPORTED.to_dict(), "name": "us-east-1", "main": True,
                                                         "vpc_endpoints": True, "route_tables": ["rtb-0ccc3333"]}))
    assert {"LogsEndpoint", "S3Endpoint", "DynamoDbEndpoint"} <= set(main["Resources"])
    with pytest.raises(HyperError, match="'rtb-x' is not a route table id"):
        templates.render_region_stack(PROD, Region(**{**IMPORTED.to_dict(), "route_tables": ["rtb-x"]}))
    with pytest.raises(HyperError, match="route-tables are for an existing VPC"):
        templates.render_region_stack(PROD, region(route_tables=["rtb-0ccc3333"]))


def test_job_role_is_scoped_to_this_hosts_tables_and_log_group():
    role = templates.render_region_stack(PROD, EU)["Resources"]["JobRole"]["Properties"]
    assert role["RoleName"] == "hyper-prod-eu-west-1-job"
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    resources = [r["Fn::Sub"] for s in statements for r in s["Resource"]]
    assert resources == [
        "arn:${AWS::Partition}:dynamodb:us-east-1:${AWS::AccountId}:table/hyper-prod-jobs",
        "arn:${AWS::Partition}:dynamodb:us-east-1:${AWS::AccountId}:table/hyper-prod-jobs/index/*",
        "arn:${AWS::Partition}:dynamodb:us-east-1:${AWS::AccountId}:table/hyper-prod-meta",
        "arn:${AWS::Partition}:dynamodb:us-east-1:${AWS::AccountId}:table/hyper-prod-meta/index/*",
        # item writes on the meta table only under the worker's keys (statement condition, below)
        "arn:${AWS::Partition}:dynamodb:us-east-1:${AWS::AccountId}:table/hyper-prod-meta",
        "arn:${AWS::Partition}:logs:us-east-1:${AWS::AccountId}:log-group:/hyper/hyper-prod",
        "arn:${AWS::Partition}:logs:us-east-1:${AWS::AccountId}:log-group:/hyper/hyper-prod:*",
        # a definition's job role, which the worker takes on for each of its jobs
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/hyper-prod-job-*",
        "arn:${AWS::Partition}:secretsmanager:us-east-1:${AWS::AccountId}:secret:hyper-prod-notify-*",
        # definitions' --secret values (EKS and local workers resolve them themselves)
        "arn:${AWS::Partition}:secretsmanager:*:${AWS::AccountId}:secret:hyper-prod-*",
        "arn:${AWS::Partition}:ssm:*:${AWS::AccountId}:parameter/hyper-prod-*",
        # the host's data bucket (split parts, staged files): objects, and listing the bucket
        "arn:${AWS::Partition}:s3:::hyper-prod-data-${AWS::AccountId}",
        "arn:${AWS::Partition}:s3:::hyper-prod-data-${AWS::AccountId}/*",
    ]
    actions = {a for s in statements for a in s["Action"]}
    assert all("*" not in a for a in actions)
    assert "dynamodb:DeleteItem" not in actions and "dynamodb:Scan" not in actions
    meta_writes = [s for s in statements if "dynamodb:PutItem" in s["Action"] and "meta" in json.dumps(s["Resource"])]
    assert [s["Condition"] for s in meta_writes] == [
        {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["cnt#*", "dep#*", "ntc#*", "ntcx#*", "wrk#*"]}}]
    assert role["PermissionsBoundary"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/"
                                                      "hyper-prod-boundary"}
    # the same statements `hyper iam policy --role worker` prints
    assert [s["Action"] for s in statements] == [s["Action"] for s in iam.render_policy(PROD, "worker")["Statement"]]


def test_gpu_cluster_stack():
    t = templates.render_cluster_stack(PROD, GPU, "us-east-1")
    ce = t["Resources"]["ComputeEnvironment"]["Properties"]
    compute = ce["ComputeResources"]
    assert ce["ComputeEnvironmentName"] == names.compute_environment(PROD, "gpu") == "hyper-prod-gpu"
    assert compute["Type"] == "SPOT" and compute["AllocationStrategy"] == "SPOT_PRICE_CAPACITY_OPTIMIZED"
    assert compute["InstanceTypes"] == ["g5.xlarge", "g6.2xlarge"] and compute["MaxvCpus"] == 256
    assert compute["Ec2Configuration"] == [{"ImageType": "ECS_AL2023_NVIDIA"}]
    assert compute["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": "LaunchTemplate"}
    assert compute["UpdateToLatestImageVersion"] is True
    # the AMI is Batch's choice (the image type), never a value resolved on each stack update
    assert "Parameters" not in t and "ImageId" not in compute
    assert "ImageId" not in t["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert ce["ServiceRole"] == {"Fn::Sub": templates.BATCH_SERVICE_LINKED_ROLE}  # never a custom role
    # create-only: nothing a machine adopting the deployment names differently (its host name)
    assert ce["Tags"] == {"hyper:prefix": "hyper-prod-", "hyper:cluster": "gpu"}
    assert templates.render_cluster_stack(Host(**{**PROD.__dict__, "name": "other", "table_prefix": "hyper-prod-"}),
                                          GPU, "us-east-1")[
        "Resources"]["ComputeEnvironment"]["Properties"]["Tags"] == ce["Tags"]
    assert t["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]["BlockDeviceMappings"][0]["Ebs"][
        "VolumeSize"] == templates.GPU_ROOT_VOLUME_GIB
    assert compute["Subnets"] == {"Fn::Split": [",", {"Fn::ImportValue": "hyper-prod-network-SubnetIds"}]}
    queue = t["Resources"]["JobQueue"]["Properties"]
    assert queue["JobQueueName"] == names.job_queue(PROD, "gpu")
    eu = templates.render_cluster_stack(PROD, GPU, "eu-west-1")["Resources"]["ComputeEnvironment"]["Properties"]
    assert eu["ComputeResources"]["MaxvCpus"] == 64 and eu["ComputeResources"]["InstanceTypes"] == ["g5.xlarge"]


def test_cpu_cluster_stack_is_on_demand_with_the_cpu_image_type():
    t = templates.render_cluster_stack(PROD, CPU, "eu-west-1")
    compute = t["Resources"]["ComputeEnvironment"]["Properties"]["ComputeResources"]
    assert compute["Type"] == "EC2" and compute["AllocationStrategy"] == "BEST_FIT_PROGRESSIVE"
    assert compute["MinvCpus"] == 2 and "Parameters" not in t
    assert compute["Ec2Configuration"] == [{"ImageType": "ECS_AL2023"}]


@pytest.mark.parametrize("variant", sorted(v for v in VARIANTS if v.startswith("cluster-")))
def test_every_compute_environment_has_a_hardened_launch_template(variant):
    """Issue 11: IMDSv2 required with one hop (job containers cannot reach the instance role), encrypted root."""
    render, _ = VARIANTS[variant]
    t = render(PROD)
    (environment,) = [k for k, v in t["Resources"].items() if v["Type"] == "AWS::Batch::ComputeEnvironment"]
    compute = t["Resources"][environment]["Properties"]["ComputeResources"]
    assert compute["LaunchTemplate"] == {"LaunchTemplateId": {"Ref": "LaunchTemplate"},
                                         "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]}}
    data = t["Resources"]["LaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert data["MetadataOptions"] == {"HttpEndpoint": "enabled", "HttpTokens": "required",
                                       "HttpPutResponseHopLimit": 1}
    (root,) = data["BlockDeviceMappings"]
    assert root["DeviceName"] == "/dev/xvda" and root["Ebs"]["Encrypted"] is True
    assert "ImageId" not in data
    assert t["Resources"][environment]["Properties"]["ServiceRole"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::"
                                                                        "AccountId}:role/aws-service-role/batch."
                                                                        "amazonaws.com/AWSServiceRoleForBatch"}


def test_job_queue_cancels_workers_that_can_never_be_placed():
    queue = templates.render_cluster_stack(PROD, CPU, "us-east-1")["Resources"]["JobQueue"]["Properties"]
    limits = {a["Reason"]: (a["Action"], a["State"], a["MaxTimeSeconds"]) for a in queue["JobStateTimeLimitActions"]}
    assert limits == {"MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT": ("CANCEL", "RUNNABLE", 600),
                      "MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE": ("CANCEL", "RUNNABLE", 600),
                      "CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY": ("CANCEL", "RUNNABLE", 14400)}


def test_network_keeps_the_custom_batch_role_only_for_older_environments():
    legacy = templates.render_region_stack(PROD, EU, legacy_batch_role=True)
    assert legacy["Resources"]["BatchServiceRole"]["Properties"]["RoleName"] == "hyper-prod-eu-west-1-batch"
    assert legacy["Outputs"]["BatchServiceRoleArn"]["Export"]["Name"] == "hyper-prod-network-BatchServiceRoleArn"
    plain = templates.render_region_stack(PROD, EU)
    assert "BatchServiceRole" not in plain["Resources"] and "BatchServiceRoleArn" not in plain["Outputs"]


def test_a_compute_environment_is_replaced_only_when_batch_cannot_update_it():
    def generation(previous, **changes):
        return templates.environment_generation(previous, cluster(regions=["us-east-1"], **changes))

    current = cluster(regions=["us-east-1"], environment_generation=1)
    assert generation(None) == (1, "")  # a new cluster starts with the service-linked role
    # in place with the service-linked role: vCPUs, instance types, spot/on-demand, strategy, GPUs
    assert generation(current, max_vcpus=64) == (1, "")
    assert generation(current, instance_types=["c7i.large"]) == (1, "")
    assert generation(current, spot=True, allocation_strategy="SPOT_PRICE_CAPACITY_OPTIMIZED") == (1, "")
    # an environment older hyper made with the custom service role moves to a new one, whatever changed
    legacy = cluster(regions=["us-east-1"], environment_generation=0)
    assert generation(legacy, max_vcpus=64, environment_generation=0) == (
        2, "it was made with a custom Batch service role; the new one uses the service-linked role")
    # BEST_FIT allows no infrastructure update, only vCPUs
    best = cluster(regions=["us-east-1"], environment_generation=2, allocation_strategy="BEST_FIT")
    assert generation(best, allocation_strategy="BEST_FIT", environment_generation=2, max_vcpus=64) == (2, "")
    assert generation(best, allocation_strategy="BEST_FIT", environment_generation=2,
                      instance_types=["c7i.large"]) == (3, "BEST_FIT environments cannot change instance types "
                                                            "in place (us-east-1)")
    replaced = templates.render_cluster_stack(PROD, cluster(environment_generation=3), "us-east-1")
    assert "ComputeEnvironment" not in replaced["Resources"]
    ce = replaced["Resources"]["ComputeEnvironment3"]["Properties"]
    assert ce["ComputeEnvironmentName"] == "hyper-prod-cpu-3"
    assert replaced["Resources"]["JobQueue"]["Properties"]["ComputeEnvironmentOrder"] == [
        {"Order": 1, "ComputeEnvironment": {"Ref": "ComputeEnvironment3"}}]
    assert replaced["Resources"]["JobQueue"]["Properties"]["JobQueueName"] == "hyper-prod-cpu"  # the queue stays


def test_main_stack_log_group_retention():
    t = templates.render_main_stack(PROD)
    group = t["Resources"]["LogGroup"]["Properties"]
    assert group == {"LogGroupName": "/hyper/hyper-prod", "RetentionInDays": 30}
    # explicit (cfn-lint I3011): a purged host's output goes with it, and a host made again can create the group
    assert (t["Resources"]["LogGroup"]["DeletionPolicy"], t["Resources"]["LogGroup"]["UpdateReplacePolicy"]) == (
        "Delete", "Delete")
    assert templates.render_main_stack(PROD, retention_days=45)["Resources"]["LogGroup"]["Properties"][
        "RetentionInDays"] == 60  # CloudWatch's next allowed value
    assert not any(v["Type"] == "AWS::DynamoDB::Table" for v in t["Resources"].values())


def test_main_stack_data_bucket_is_encrypted_private_and_expires_with_the_jobs():
    """moto's CloudFormation ignores LifecycleConfiguration, so the rule is checked in the template itself."""
    bucket = templates.render_main_stack(PROD, retention_days=45)["Resources"]["Bucket"]
    props = bucket["Properties"]
    assert props["BucketName"] == {"Fn::Sub": "hyper-prod-data-${AWS::AccountId}"}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "AES256"}
    assert all(props["PublicAccessBlockConfiguration"].values())
    (rule,) = props["LifecycleConfiguration"]["Rules"]
    assert (rule["Status"], rule["ExpirationInDays"], rule["AbortIncompleteMultipartUpload"]) == (
        "Enabled", 45, {"DaysAfterInitiation": 1})
    assert bucket["DeletionPolicy"] == "Retain"  # CloudFormation cannot delete a bucket that holds objects


# ---------------------------------------------------------------- two hosts never collide


def physical_names(host: Host) -> set[str]:
    """Every name that is unique in an account (IAM) or an account and region (the rest)."""
    out = {names.stack(host, "network"), names.stack(host, "main")}
    for reg in (US, EU):
        t = templates.render_region_stack(host, reg, legacy_batch_role=True)
        for res in t["Resources"].values():
            props = res["Properties"]
            out |= {props[k] for k in ("RoleName", "InstanceProfileName") if k in props}
        out |= {o["Export"]["Name"] for o in t["Outputs"].values()}
    for c in (GPU, CPU):
        out.add(names.stack(host, "cluster", c.name))
        t = templates.render_cluster_stack(host, c, "us-east-1")
        out.add(t["Resources"]["ComputeEnvironment"]["Properties"]["ComputeEnvironmentName"])
        out.add(t["Resources"]["JobQueue"]["Properties"]["JobQueueName"])
    out.add(templates.render_main_stack(host)["Resources"]["LogGroup"]["Properties"]["LogGroupName"])
    out.add(templates.render_job_definition(host, TRAIN, IMAGE, job_role_arn=ROLES[0],
                                            execution_role_arn=ROLES[1])["jobDefinitionName"])
    return out


def test_two_hosts_render_no_common_physical_name():
    prod, dev = physical_names(PROD), physical_names(DEV)
    assert len(prod) == len(dev) > 20
    assert prod.isdisjoint(dev)
    assert all(n.startswith(("hyper-prod-", "/hyper/hyper-prod")) for n in prod)
    assert all(n.startswith(("team-dev-", "/hyper/team-dev")) for n in dev)


def test_iam_names_carry_the_region_and_fit_64():
    """IAM is global: one host's roles in two regions differ; very long prefixes are shortened, not cut."""
    assert templates.role_name(PROD, "us-east-1", "job") != templates.role_name(PROD, "eu-west-1", "job")
    long = Host(name="x", type="aws", main_region="us-east-1", table_prefix="a-very-long-prefix-" * 3)
    first, second = (templates.role_name(long, r, "execution") for r in ("ap-southeast-2", "ap-southeast-1"))
    assert len(first) == len(second) == 64 and first != second


# ---------------------------------------------------------------- job definitions


def test_job_definition_request():
    req = templates.render_job_definition(PROD, TRAIN, IMAGE, job_role_arn=ROLES[0], execution_role_arn=ROLES[1],
                                          cluster=GPU)
    c = req["containerProperties"]
    assert req["jobDefinitionName"] == names.job_definition(PROD, "train") == "hyper-prod-train"
    assert c["resourceRequirements"] == [{"type": "VCPU", "value": "4"}, {"type": "MEMORY", "value": "16384"},
                                         {"type": "GPU", "value": "1"}]
    assert c["command"] == ["/usr/local/bin/start.sh"] and c["image"] == IMAGE
    assert (c["jobRoleArn"], c["executionRoleArn"]) == ROLES
    env = {e["name"]: e["value"] for e in c["environment"]}
    assert env == {"HYPER_DEFINITION": "train", "HYPER_MAIN_REGION": "us-east-1", "HYPER_MAX_JOBS": "20",
                   "HYPER_TABLE_PREFIX": "hyper-prod-", "OMP_NUM_THREADS": "4"}
    assert req["retryStrategy"]["attempts"] == 3
    assert req["timeout"] == {"attemptDurationSeconds": 3600 * 20 + templates.WORKER_TIMEOUT_GRACE}
    assert c["logConfiguration"]["options"]["awslogs-group"] == names.log_group(PROD)
    assert req["tags"]["hyper:content-hash"] == templates.content_hash(req)
    cpu = templates.render_job_definition(PROD, Definition(name="small", image="worker", memory_mib=2048), IMAGE,
                                          job_role_arn=ROLES[0], execution_role_arn=ROLES[1])
    assert "timeout" not in cpu and all(r["type"] != "GPU" for r in cpu["containerProperties"]["resourceRequirements"])


def test_job_definition_hash_follows_content_only():
    def digest(definition: Definition, image: str = IMAGE) -> str:
        return templates.render_job_definition(PROD, definition, image, job_role_arn=ROLES[0],
                                               execution_role_arn=ROLES[1])["tags"]["hyper:content-hash"]

    same = Definition(**TRAIN.to_dict())
    same.status, same.message = "FAILED", "anything"  # deployment state is not content
    assert digest(TRAIN) == digest(same)
    assert digest(TRAIN) != digest(TRAIN, IMAGE.replace(":1", ":2"))
    assert digest(TRAIN) != digest(Definition(**{**TRAIN.to_dict(), "memory_mib": 8192}))


# ---------------------------------------------------------------- bad input: one line each


BAD = [
    ("GPU definition, CPU cluster", lambda: templates.render_job_definition(
        PROD, TRAIN, IMAGE, job_role_arn=ROLES[0], execution_role_arn=ROLES[1], cluster=CPU),
     "wants 1 GPU(s) but the cluster has no GPUs"),
    ("more GPUs than an instance", lambda: templates.check_definition_fits(
        Definition(**{**TRAIN.to_dict(), "gpus": 4}), GPU), "the cluster's instances have 1"),
    ("no image uri", lambda: templates.render_job_definition(
        PROD, TRAIN, "", job_role_arn=ROLES[0], execution_role_arn=ROLES[1]), "its image has no URI"),
    ("instance type with a dash", lambda: templates.render_cluster_stack(
        PROD, cluster(instance_types=["g5-xlarge"]), "us-east-1"), "'g5-xlarge' is not an EC2 instance type"),
    ("instance size only", lambda: templates.render_cluster_stack(
        PROD, cluster(instance_types=["xlarge"]), "us-east-1"), "'xlarge' is not an EC2 instance type"),
    ("upper case type", lambda: templates.render_cluster_stack(
        PROD, cluster(instance_types=["C5.large"]), "us-east-1"), "'C5.large' is not an EC2 instance type"),
    ("bad override type", lambda: templates.render_cluster_stack(
        PROD, cluster(overrides={"eu-west-1": {"instance_types": ["c5.huge"]}}), "eu-west-1"),
     "cluster 'cpu' in eu-west-1: 'c5.huge'"),
    ("AMD GPU type", lambda: templates.render_cluster_stack(
        PROD, Cluster(**{**GPU.to_dict(), "instance_types": ["g5.xlarge", "g4ad.xlarge"]}), "us-east-1"),
     "g4ad.xlarge has AMD GPUs; GPU workers run on the x86 NVIDIA AMI"),
    ("Graviton GPU type", lambda: templates.render_cluster_stack(
        PROD, Cluster(**{**GPU.to_dict(), "instance_types": ["g5g.2xlarge"]}), "us-east-1"),
     "g5g.2xlarge is a Graviton (arm64) type"),
    ("Graviton GPU family", lambda: templates.render_cluster_stack(
        PROD, Cluster(**{**GPU.to_dict(), "instance_types": ["g5g"]}), "us-east-1"), "g5g is a Graviton"),
    ("GPU cluster, CPU type", lambda: templates.render_cluster_stack(
        PROD, Cluster(**{**GPU.to_dict(), "instance_types": ["g5.xlarge", "c5.large"]}), "us-east-1"),
     "c5.large has no GPU"),
    ("spot with BEST_FIT", lambda: templates.render_cluster_stack(
        PROD, cluster(spot=True, allocation_strategy="BEST_FIT"), "us-east-1"), "needs a Spot Fleet role"),
    ("spot strategy on demand", lambda: templates.render_cluster_stack(
        PROD, cluster(allocation_strategy="SPOT_CAPACITY_OPTIMIZED"), "us-east-1"), "needs spot capacity"),
    ("no max vcpus", lambda: templates.render_cluster_stack(PROD, cluster(max_vcpus=0), "us-east-1"),
     "max-vcpus is 0"),
    ("override min over max", lambda: templates.render_cluster_stack(
        PROD, cluster(overrides={"eu-west-1": {"min_vcpus": 9, "max_vcpus": 8}}), "eu-west-1"),
     "min-vcpus 9 is not within 0..max-vcpus 8"),
    ("eks cluster", lambda: templates.render_cluster_stack(PROD, cluster(type="eks"), "us-east-1"),
     "only batch clusters"),
    ("region outside the cluster", lambda: templates.render_cluster_stack(PROD, GPU, "us-west-2"),
     "does not span region us-west-2"),
    ("cidr and vpc id", lambda: templates.render_region_stack(PROD, region(vpc_id="vpc-0abc")), "not both"),
    ("neither cidr nor vpc", lambda: templates.render_region_stack(PROD, region(vpc_cidr="")),
     "give vpc-cidr for a new VPC"),
    ("overlapping cidrs", lambda: templates.render_region_stack(PROD, EU, other_regions=[
        Region(name="us-east-1", vpc_cidr="10.30.128.0/17")]), "overlaps 10.30.128.0/17 of region 'us-east-1'"),
    ("host bits", lambda: templates.render_region_stack(PROD, region(vpc_cidr="10.30.1.0/16")),
     "did you mean 10.30.0.0/16?"),
    ("too big a vpc", lambda: templates.render_region_stack(PROD, region(vpc_cidr="10.0.0.0/8")), "/16 to /24"),
    ("not a cidr", lambda: templates.render_region_stack(PROD, region(vpc_cidr="10.300.0.0/16")),
     "is not an IPv4 CIDR"),
    ("bad vpc id", lambda: templates.render_region_stack(PROD, region(vpc_cidr="", vpc_id="vpc_123",
                                                                      subnets=["subnet-0a"])), "is not a VPC id"),
    ("imported without subnets", lambda: templates.render_region_stack(
        PROD, region(vpc_cidr="", vpc_id="vpc-0abc")), "needs the subnets"),
    ("local host", lambda: templates.render_region_stack(Host(), EU), "regions are for aws hosts"),
    ("no main region", lambda: templates.render_main_stack(Host(name="x", type="aws")), "has no main region"),
    ("unknown policy role", lambda: iam.render_policy(PROD, "root"), "unknown role 'root'"),
    ("bad account", lambda: iam.render_policy(PROD, "user", account="12"), "is not 12 digits"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_one_hyper_error(case):
    _, call, expected = case
    with pytest.raises(HyperError) as info:
        call()
    text = str(info.value)
    assert expected in text and "\n" not in text and info.value.hint


# ---------------------------------------------------------------- stack states (recorded events)


def event(logical: str, kind: str, status: str, reason: str = "", stack: str = "hyper-prod-cluster-gpu") -> dict:
    return {"StackName": stack, "LogicalResourceId": logical, "ResourceType": kind, "ResourceStatus": status,
            "ResourceStatusReason": reason}


STACK = "AWS::CloudFormation::Stack"
ROLLED_BACK = [  # newest first, as DescribeStackEvents gives them; an earlier failed update below the start
    event("hyper-prod-cluster-gpu", STACK, "ROLLBACK_COMPLETE"),
    event("JobQueue", "AWS::Batch::JobQueue", "DELETE_COMPLETE"),
    event("hyper-prod-cluster-gpu", STACK, "ROLLBACK_IN_PROGRESS",
          "The following resource(s) failed to create: [ComputeEnvironment, JobQueue]. Rollback requested by user."),
    event("JobQueue", "AWS::Batch::JobQueue", "CREATE_FAILED", "Resource creation cancelled"),
    event("ComputeEnvironment", "AWS::Batch::ComputeEnvironment", "CREATE_FAILED",
          "Resource handler returned message: \"instance type g5.48xlarge is not supported in\n us-west-1\""),
    event("ComputeEnvironment", "AWS::Batch::ComputeEnvironment", "CREATE_IN_PROGRESS"),
    event("hyper-prod-cluster-gpu", STACK, "CREATE_IN_PROGRESS", "User Initiated"),
    event("Old", "AWS::Batch::JobQueue", "UPDATE_FAILED", "an older failure"),
]


def test_failure_reasons_of_the_latest_operation_only():
    assert stacks.failure_reasons(ROLLED_BACK, "hyper-prod-cluster-gpu") == [
        "ComputeEnvironment (AWS::Batch::ComputeEnvironment): Resource handler returned message: "
        "\"instance type g5.48xlarge is not supported in us-west-1\""]
    only_stack = [e for e in ROLLED_BACK if e["ResourceType"] == STACK]
    assert stacks.failure_reasons(only_stack, "hyper-prod-cluster-gpu") == [
        "The following resource(s) failed to create: [ComputeEnvironment, JobQueue]. Rollback requested by user."]


@pytest.mark.parametrize("status, shown, hint", [
    ("CREATE_COMPLETE", "ACTIVE", ""),
    ("UPDATE_COMPLETE", "ACTIVE", ""),
    ("CREATE_IN_PROGRESS", "CREATING", "wait"),
    ("UPDATE_IN_PROGRESS", "UPDATING", "wait"),
    ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "UPDATING", "wait"),
    ("DELETE_IN_PROGRESS", "DELETING", "wait"),
    ("ROLLBACK_IN_PROGRESS", "FAILED", "wait"),
    ("ROLLBACK_COMPLETE", "FAILED", "deletes and re-creates"),
    ("UPDATE_ROLLBACK_COMPLETE", "FAILED", "previous version still runs"),
    ("UPDATE_ROLLBACK_FAILED", "FAILED", "continue-update-rollback"),
    ("DELETE_FAILED", "FAILED", "remove what blocks"),
    ("MISSING", "MISSING", ""),
])
def test_stack_states_as_resource_states(status, shown, hint):
    result = stacks.StackResult("hyper-prod-cluster-gpu", "us-west-1", status, reasons=["ComputeEnvironment: no"])
    assert result.resource_status == shown
    assert hint in result.hint
    if shown == "FAILED" and not result.in_progress:
        assert result.message.startswith(f"{status}: ComputeEnvironment: no")
        with pytest.raises(HyperError, match="ComputeEnvironment: no"):
            result.raise_for_status()


# ---------------------------------------------------------------- IAM policies


def actions_of(policy: dict) -> set[str]:
    return {a for s in policy["Statement"] for a in s["Action"]}


def test_policies_are_least_privilege_and_scoped_to_the_host():
    user, worker = (iam.render_policy(PROD, r, account="123456789012") for r in ("user", "worker"))
    assert actions_of(user) >= {"dynamodb:Query", "dynamodb:UpdateItem", "logs:GetLogEvents"}
    assert actions_of(worker) >= {"dynamodb:UpdateItem", "logs:PutLogEvents"}
    for policy in (user, worker):
        assert not actions_of(policy) & {"dynamodb:DeleteItem", "dynamodb:CreateTable", "dynamodb:Scan",
                                         "dynamodb:DeleteTable"}
        for statement in policy["Statement"]:
            # S3 ARNs carry no account field: the host's bucket is named with the account instead
            assert all(r.startswith("arn:aws:") and (":123456789012:" in r or r.startswith("arn:aws:s3:::")
                                                     and "-data-123456789012" in r) for r in statement["Resource"])
            assert all("hyper-prod" in r for r in statement["Resource"])
    assert "logs:PutLogEvents" not in actions_of(user) and "logs:GetLogEvents" not in actions_of(worker)
    admin = iam.render_policy(PROD, "admin", account="123456789012")
    assert {"cloudformation:CreateStack", "dynamodb:CreateTable", "iam:PassRole", "batch:RegisterJobDefinition",
            "ecr:CreateRepository", "logs:CreateLogGroup"} <= actions_of(admin)
    assert all(a.count("*") == 0 or a == "ec2:Describe*" for a in actions_of(admin))  # no action wildcards
    tables = set(table_names(PROD).values())
    for statement in admin["Statement"]:
        resources = [statement["Resource"]] if isinstance(statement["Resource"], str) else statement["Resource"]
        for r in resources:
            assert r == "*" or "hyper-prod" in r or ":job/*" in r or r.endswith(
                ":role/aws-service-role/batch.amazonaws.com/AWSServiceRoleForBatch"), r
        if "dynamodb:CreateTable" in statement["Action"]:
            assert {r.split("/")[1] for r in resources} == tables
    # the boundary and tag conditions (issue 11) no longer fit a managed policy: the admin's goes inline on a role
    assert len(json.dumps(admin, separators=(",", ":"))) <= iam.INLINE_ROLE_POLICY_LIMIT
    for role in ("boundary", "eks-boundary"):  # boundaries must be managed policies
        assert len(json.dumps(iam.render_policy(PROD, role, account="123456789012"),
                              separators=(",", ":"))) <= iam.MANAGED_POLICY_LIMIT
    pass_role = next(s for s in admin["Statement"] if "iam:PassRole" in s["Action"])
    assert pass_role["Condition"]["StringEquals"]["iam:PassedToService"]
    dev_admin = json.dumps(iam.render_policy(DEV, "admin"))
    assert "hyper-prod" not in dev_admin and "team-dev-" in dev_admin


def test_iam_policy_command(tmp_path, monkeypatch):
    import typer

    from hyper.cli import iam as iam_cli

    monkeypatch.setenv("HYPER_HOME", str(tmp_path))
    monkeypatch.delenv("HYPER_HOST", raising=False)
    save_hosts({"prod": PROD}, "prod")
    app = typer.Typer()
    app.add_typer(iam_cli.app, name="iam")
    runner = CliRunner()
    result = runner.invoke(app, ["iam", "policy", "--role", "worker", "--account-id", "123456789012"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == iam.render_policy(PROD, "worker", account="123456789012")
    bad = runner.invoke(app, ["iam", "policy", "--role", "root"])
    assert bad.exit_code == 2 and bad.stderr.strip().splitlines() == [
        "hyper iam: unknown role 'root' (use one of admin, scheduler, user, worker, boundary, eks-boundary)"]
    save_hosts({"prod": PROD}, "local")
    local = runner.invoke(app, ["iam", "policy", "--role", "user"])
    assert local.exit_code == 1 and "is a local host" in local.stderr
