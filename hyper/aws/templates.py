"""CloudFormation templates and Batch job definitions as data (pure: no AWS call, no boto3).

Everything hyper deploys is rendered here first, so ``--dry-run`` prints exactly what would be sent, and
tests lint every variant with cfn-lint. Three stacks per host (names from ``hyper.aws.names``):

* ``<prefix>network`` in every region (``render_region_stack``): a new VPC from the region's CIDR (public and
  private subnets in two AZs, internet gateway, one NAT gateway, route tables) or the region's existing VPC and
  subnets; a worker security group (egress only); optional VPC endpoints; the IAM roles Batch and the workers
  use (named ``<prefix><region>-<role>``: IAM is global, so the region is in the name; Batch itself acts
  through its service-linked role, AWSServiceRoleForBatch, which AWS creates once per account). Its outputs are
  exported as ``<prefix>network-<Output>``; the cluster stacks import them, so CloudFormation itself refuses
  to delete a region's network while a cluster still uses it.
* ``<prefix>cluster-<name>`` per cluster and region (``render_cluster_stack``): one managed Batch compute
  environment (EC2 or SPOT, per-region overrides applied) and the job queue the scheduler submits to. Every
  environment has a launch template (IMDSv2 only, hop limit 1, encrypted root volume) and no AMI of its own:
  Batch picks the ECS-optimised AL2023 AMI of the image type (NVIDIA for GPU clusters) and, with
  UpdateToLatestImageVersion, moves to a newer one on the next infrastructure update, so an AMI release never
  turns a vCPU change into a failing update. The environment uses Batch's service-linked role, which is what
  lets Batch update instance types, spot/on-demand, strategy and the launch template in place; a change Batch
  cannot make in place gets a new environment (``environment_generation``) that the queue switches to.
* ``<prefix>main`` in the main region (``render_main_stack``): the host's log group and data bucket. The tables
  are made by ``hyper hosts create-host`` (``hyper.aws.tables``), not here.

Job definitions are not a stack: ``render_job_definition`` gives the RegisterJobDefinition request, which
``hyper.aws.stacks.register_job_definition`` registers once per content hash.

Bad input raises a one-line ``HyperError`` here, before anything is sent.

Split by concern (each module stays small): the shared pieces (names, tags, the template envelope) are in
``hyper.aws.template_parts`` and the network stack in ``hyper.aws.network_template``; both are re-exported
here, so callers keep importing everything from ``hyper.aws.templates``.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Iterable

from hyper.aws import iam, kms, names
from hyper.aws.network_template import (_endpoints, _iam_resources, _new_vpc, _subnet_cidrs,  # noqa: F401
                                        check_cidrs, render_region_stack)
from hyper.aws.template_parts import (  # noqa: F401  (re-exported: callers import them from here)
    BATCH_SERVICE_LINKED_ROLE, CONTENT_HASH_TAG, CPU_IMAGE_TYPE, CPU_ROOT_VOLUME_GIB, GPU_IMAGE_TYPE,
    GPU_ROOT_VOLUME_GIB, HOST_TAG, JOB_QUEUE_TIME_LIMITS, LOG_RETENTION_DAYS, MAX_TEMPLATE_BODY, PREFIX_TAG,
    ROLE_KINDS, TEMPLATE_FORMAT, WORKER_COMMAND, WORKER_TIMEOUT_GRACE, _GPU_FAMILY, _INSTANCE_TYPE, _SIZE, _SIZES,
    _assume, _clean, _identity, _managed, _output, _sub, _tags, _template, boundary, export_name, role_arn,
    role_name, stack_tags, template_body, to_yaml)
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster, Definition

# validation ------------------------------------------------------------------------------------------------
def check_instance_types(types: Iterable[str], what: str) -> list[str]:
    """family.size (g5.xlarge), a family (c7i) or `optimal`; real availability is checked at deploy time."""
    out = []
    for raw in types:
        text = str(raw).strip()
        family = text.split(".")[0]
        size_as_family = "-" in family and _SIZE.match(family.rsplit("-", 1)[1])  # g5-xlarge: a typo of g5.xlarge
        if text != "optimal" and (not _INSTANCE_TYPE.match(text) or size_as_family):
            raise HyperError(f"{what}: {raw!r} is not an EC2 instance type",
                             "give family.size like g5.xlarge or c7i.2xlarge, a family like c7i, or optimal")
        out.append(text)
    if len(set(out)) != len(out):
        raise HyperError(f"{what}: instance types repeat ({', '.join(out)})", "give each type once")
    return out


def is_gpu_type(instance_type: str) -> bool:
    return bool(_GPU_FAMILY.match(instance_type.split(".")[0]))


def gpu_type_problem(instance_type: str) -> str | None:
    """Why a GPU instance type cannot run the x86 NVIDIA AMI (ECS_AL2023_NVIDIA), or None when it can.

    g4ad has AMD Radeon GPUs; a ``g`` in the family's attributes (g5g) means Graviton (arm64) with NVIDIA GPUs,
    for which the x86 AMI and x86 worker images do not work."""
    match = _GPU_FAMILY.match(instance_type.split(".")[0])
    if not match:
        return None
    attributes = match.group(2)
    if attributes.startswith("a"):
        return f"{instance_type} has AMD GPUs"
    if "g" in attributes:
        return f"{instance_type} is a Graviton (arm64) type"
    return None


def cluster_settings(cluster: Cluster, region: str) -> dict[str, Any]:
    """A cluster's capacity in one region, its per-region overrides applied and checked."""
    what = f"cluster {cluster.name!r} in {region}"
    override = dict((cluster.overrides or {}).get(region) or {})
    unknown = set(override) - {"max_vcpus", "min_vcpus", "instance_types"}
    if unknown:
        raise HyperError(f"{what}: unknown override {sorted(unknown)[0]!r}", "use max-vcpus, min-vcpus, instance-types")
    max_vcpus = int(override.get("max_vcpus", cluster.max_vcpus) or 0)
    min_vcpus = int(override.get("min_vcpus", cluster.min_vcpus) or 0)
    types = override.get("instance_types") or cluster.instance_types or []
    if max_vcpus < 1:
        raise HyperError(f"{what}: max-vcpus is {max_vcpus}", "give the cluster --max-vcpus 1 or more")
    if min_vcpus < 0 or min_vcpus > max_vcpus:
        raise HyperError(f"{what}: min-vcpus {min_vcpus} is not within 0..max-vcpus {max_vcpus}",
                         "lower --min-vcpus or raise --max-vcpus")
    gpus = int(cluster.gpus_per_instance or 0)
    if not types:
        if gpus:
            raise HyperError(f"{what}: a GPU cluster needs instance types", "e.g. --instance-types g5.xlarge,g6.xlarge")
        types = ["optimal"]
    types = check_instance_types(types, what)
    if gpus:
        plain = [t for t in types if not is_gpu_type(t)]
        if plain:
            raise HyperError(f"{what}: gpus-per-instance is {gpus} but {', '.join(plain)} has no GPU",
                             "use GPU families (p4d, p5, g5, g6, g6e...) or set --gpus-per-instance 0")
        for t in types:
            problem = gpu_type_problem(t)
            if problem:
                raise HyperError(f"{what}: {problem}; GPU workers run on the x86 NVIDIA AMI (ECS_AL2023_NVIDIA)",
                                 "use x86 NVIDIA families (g4dn, g5, g6, g6e, p4d, p5...)")
    strategy = (cluster.allocation_strategy or "").upper()
    if cluster.spot:
        strategy = strategy or "SPOT_PRICE_CAPACITY_OPTIMIZED"
        if strategy in ("BEST_FIT", "BEST_FIT_PROGRESSIVE"):
            raise HyperError(f"{what}: spot capacity with {strategy} needs a Spot Fleet role hyper does not make",
                             "use --allocation-strategy SPOT_PRICE_CAPACITY_OPTIMIZED (or SPOT_CAPACITY_OPTIMIZED)")
    else:
        strategy = strategy or "BEST_FIT_PROGRESSIVE"
        if strategy.startswith("SPOT"):
            raise HyperError(f"{what}: {strategy} needs spot capacity",
                             "add --spot true or use BEST_FIT_PROGRESSIVE")
    if strategy not in ("BEST_FIT", "BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED",
                        "SPOT_PRICE_CAPACITY_OPTIMIZED"):
        raise HyperError(f"{what}: unknown allocation strategy {strategy!r}",
                         "use BEST_FIT_PROGRESSIVE, SPOT_CAPACITY_OPTIMIZED or SPOT_PRICE_CAPACITY_OPTIMIZED")
    return {"max_vcpus": max_vcpus, "min_vcpus": min_vcpus, "instance_types": types, "gpus": gpus,
            "spot": bool(cluster.spot), "allocation_strategy": strategy}


def check_definition_fits(definition: Definition, cluster: Cluster) -> None:
    """A definition's worker must fit on the cluster's instances (GPUs, vCPUs)."""
    what = f"definition {definition.name!r} on cluster {cluster.name!r}"
    if definition.gpus > 0 and not cluster.gpus_per_instance:
        raise HyperError(f"{what}: the definition wants {definition.gpus} GPU(s) but the cluster has no GPUs "
                         "(gpus-per-instance 0)", "use a GPU cluster's queue, or --gpus 0")
    if definition.gpus > (cluster.gpus_per_instance or 0) > 0:
        raise HyperError(f"{what}: the definition wants {definition.gpus} GPUs, the cluster's instances have "
                         f"{cluster.gpus_per_instance}", "lower --gpus or use bigger GPU instances")
    if cluster.max_vcpus and definition.vcpus > cluster.max_vcpus:
        raise HyperError(f"{what}: {definition.vcpus} vCPUs per worker exceed the cluster's max-vcpus "
                         f"{cluster.max_vcpus}", "lower --vcpus or raise the cluster's --max-vcpus")


# cluster stack ----------------------------------------------------------------------------------------------
def environment_generation(previous: Cluster | None, cluster: Cluster) -> tuple[int, str]:
    """The compute environment generation ``cluster`` deploys as, and why it is a new one ("" if not).

    With Batch's service-linked role, Batch updates instance types, EC2/SPOT, allocation strategy, subnets and
    the launch template in place (CloudFormation: ComputeResources/Type is not a create-only property). It
    cannot: switch an environment made with a custom service role (generation 0, older hyper) to the
    service-linked role, or make any infrastructure update to an environment whose strategy is BEST_FIT. Those
    need a new environment: a new name (``names.compute_environment``) and logical id, so CloudFormation
    creates it, points the job queue's ComputeEnvironmentOrder at it, and deletes the old one in its cleanup
    phase. min/max vCPUs are never infrastructure updates.
    """
    if previous is None or previous.type != "batch":
        return max(1, cluster.environment_generation), ""
    current = max(previous.environment_generation, cluster.environment_generation)
    if current == 0:
        return 2, "it was made with a custom Batch service role; the new one uses the service-linked role"
    infrastructure = ("instance_types", "spot", "allocation_strategy", "gpus")
    for region in cluster.regions:
        if region not in previous.regions:
            continue
        try:
            old, new = cluster_settings(previous, region), cluster_settings(cluster, region)
        except HyperError:
            continue  # the new settings' own check reports it; a broken old record changes nothing
        changed = [k for k in infrastructure if old[k] != new[k]]
        if changed and "BEST_FIT" in (old["allocation_strategy"], new["allocation_strategy"]):
            return current + 1, (f"BEST_FIT environments cannot change {changed[0].replace('_', ' ')} in place "
                                 f"({region})")
    return current, ""


def _launch_template(gpu: bool) -> dict:
    """Every instance: IMDSv2 only and one hop (a job's container cannot reach the instance role's
    credentials; workers never use IMDS), an encrypted gp3 root volume. No ImageId: Batch's image type picks
    the AMI, so an AMI release does not change this template."""
    return {"Type": "AWS::EC2::LaunchTemplate", "Properties": {"LaunchTemplateData": {
        "MetadataOptions": {"HttpEndpoint": "enabled", "HttpTokens": "required", "HttpPutResponseHopLimit": 1},
        "BlockDeviceMappings": [{"DeviceName": "/dev/xvda", "Ebs": {
            "VolumeSize": GPU_ROOT_VOLUME_GIB if gpu else CPU_ROOT_VOLUME_GIB, "VolumeType": "gp3",
            "Encrypted": True, "DeleteOnTermination": True}}]}}}


def render_cluster_stack(host: Host, cluster: Cluster, region_name: str) -> dict:
    """One region's share of a Batch cluster: a managed compute environment and the cluster's job queue.

    The environment's name and logical id follow ``cluster.environment_generation`` (0 and 1 alike: the plain
    name); a new generation is a new environment the queue moves to (``environment_generation``).
    """
    if cluster.type != "batch":
        raise HyperError(f"cluster {cluster.name!r} is of type {cluster.type}: only batch clusters are "
                         "CloudFormation stacks", "eks clusters render Kubernetes Jobs; local clusters need nothing")
    if cluster.regions and region_name not in cluster.regions:
        raise HyperError(f"cluster {cluster.name!r} does not span region {region_name}",
                         f"its regions: {', '.join(cluster.regions)}")
    settings = cluster_settings(cluster, region_name)
    generation = cluster.environment_generation
    env_name = names.compute_environment(host, cluster.name, generation)
    queue_name = names.job_queue(host, cluster.name)
    for kind, name in (("compute environment", env_name), ("job queue", queue_name)):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,126}[A-Za-z0-9]", name):
            raise HyperError(f"Batch {kind} name {name!r} is invalid", "Batch names are 2-128 letters, digits, - and "
                             "_; shorten the host's table prefix or the cluster's name")

    def imported(key: str) -> dict:
        return {"Fn::ImportValue": export_name(host, key)}

    gpu = settings["gpus"] > 0
    environment = "ComputeEnvironment" + (str(generation) if generation > 1 else "")
    resources: dict[str, Any] = {"LaunchTemplate": _launch_template(gpu)}
    compute: dict[str, Any] = {
        "Type": "SPOT" if settings["spot"] else "EC2",
        "AllocationStrategy": settings["allocation_strategy"],
        "MinvCpus": settings["min_vcpus"],
        "MaxvCpus": settings["max_vcpus"],
        "InstanceTypes": settings["instance_types"],
        "Subnets": {"Fn::Split": [",", imported("SubnetIds")]},
        "SecurityGroupIds": [imported("SecurityGroupId")],
        "InstanceRole": imported("InstanceProfileArn"),
        "Ec2Configuration": [{"ImageType": GPU_IMAGE_TYPE if gpu else CPU_IMAGE_TYPE}],
        "LaunchTemplate": {"LaunchTemplateId": {"Ref": "LaunchTemplate"},
                           "Version": {"Fn::GetAtt": ["LaunchTemplate", "LatestVersionNumber"]}},
        "UpdateToLatestImageVersion": True,
        "Tags": {"Name": f"{env_name}-worker", **_identity(host), "hyper:cluster": cluster.name},
    }
    resources[environment] = {"Type": "AWS::Batch::ComputeEnvironment", "Properties": {
        "ComputeEnvironmentName": env_name, "Type": "MANAGED", "State": "ENABLED",
        # Batch's service-linked role, the only one that allows in-place infrastructure updates (named here
        # rather than left to Batch's default: the same role, and moto requires the property); a named
        # environment is never replaced by CloudFormation itself (a new generation is a new name)
        "ServiceRole": {"Fn::Sub": BATCH_SERVICE_LINKED_ROLE},
        "ReplaceComputeEnvironment": False,
        "UpdatePolicy": {"TerminateJobsOnUpdate": False, "JobExecutionTimeoutMinutes": 30},
        "ComputeResources": compute,
        # Tags of an environment are create-only: a change would need a replacement CloudFormation cannot make
        # under a fixed name, so they hold only what never changes (the prefix, not the host's local name,
        # which another machine adopting the deployment may call differently)
        "Tags": {PREFIX_TAG: names.prefix(host), "hyper:cluster": cluster.name}}}
    resources["JobQueue"] = {"Type": "AWS::Batch::JobQueue", "Properties": {
        "JobQueueName": queue_name, "State": "ENABLED", "Priority": 1,
        "ComputeEnvironmentOrder": [{"Order": 1, "ComputeEnvironment": {"Ref": environment}}],
        # a worker that can never be placed (or waits hours for capacity) is cancelled, not counted for ever;
        # the scheduler submits again while jobs are queued
        "JobStateTimeLimitActions": [{"Action": "CANCEL", "State": "RUNNABLE", "Reason": reason,
                                      "MaxTimeSeconds": seconds} for reason, seconds in JOB_QUEUE_TIME_LIMITS],
        "Tags": {**_identity(host), "hyper:cluster": cluster.name}}}
    outputs = {"ComputeEnvironmentArn": {"Value": {"Ref": environment}},
               "JobQueueArn": {"Value": {"Ref": "JobQueue"}}}
    capacity = (f"{'spot' if settings['spot'] else 'on-demand'} {','.join(settings['instance_types'])}, "
                f"{settings['min_vcpus']}-{settings['max_vcpus']} vCPUs")
    return _template(f"hyper host {host.name}: cluster {cluster.name} in {region_name} ({capacity})",
                     resources, outputs)


# main stack -------------------------------------------------------------------------------------------------
def log_retention(days: int) -> int:
    """The smallest retention CloudWatch allows that keeps logs at least ``days`` days."""
    for allowed in LOG_RETENTION_DAYS:
        if allowed >= days:
            return allowed
    return LOG_RETENTION_DAYS[-1]


def render_main_stack(host: Host, *, retention_days: int | None = None) -> dict:
    """The main region's stack: the host's log group (job and worker output), kept as long as finished jobs,
    encrypted with the host's KMS key when it names one."""
    from hyper.aws.tables import settings

    if host.type != "aws":
        raise HyperError(f"host {host.name!r} is a {host.type} host: it has no main stack", "select an aws host")
    iam.main_region(host)
    days = retention_days if retention_days is not None else settings(host)["retention_days"]
    if days < 1:
        raise HyperError(f"log retention {days} days must be 1 or more", "e.g. 30")
    # deleted with the stack on purpose: a purged host takes its job output with it, and a host made again
    # under the same name could not create a retained group of the same name
    resources: dict[str, Any] = {"LogGroup": {"Type": "AWS::Logs::LogGroup", "DeletionPolicy": "Delete",
                              "UpdateReplacePolicy": "Delete", "Properties": {
                                  "LogGroupName": names.log_group(host), "RetentionInDays": log_retention(days)}}}
    key = kms.policy_arn(host, "${AWS::Partition}", "${AWS::AccountId}")
    if key:  # the host's own key (its policy must let logs.<region>.amazonaws.com use it: README)
        resources["LogGroup"]["Properties"]["KmsKeyId"] = _sub(key)
    outputs = {"LogGroupName": {"Value": {"Ref": "LogGroup"}}}
    resources["Bucket"], outputs["BucketName"] = data_bucket(host, days), {"Value": {"Ref": "Bucket"}}
    return _template(f"hyper host {host.name}: log group and data bucket (main region {host.main_region})",
                     resources, outputs)


def data_bucket(host: Host, days: int) -> dict:
    """The host's bucket (split parts, staged files, part outputs: hyper/aws/s3.py): encrypted, private, and
    every object expires with the finished jobs it belongs to (the host's retention). Retained when the stack
    is deleted: CloudFormation cannot delete a bucket that still holds objects (the stack would end
    DELETE_FAILED); the lifecycle rule empties it, and ``aws s3 rb`` removes it."""
    from hyper.aws.s3 import bucket_stem

    return {"Type": "AWS::S3::Bucket", "DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain", "Properties": {
        "BucketName": {"Fn::Sub": bucket_stem(host) + "${AWS::AccountId}"},
        "BucketEncryption": {"ServerSideEncryptionConfiguration": [
            {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]},
        "PublicAccessBlockConfiguration": {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                           "IgnorePublicAcls": True, "RestrictPublicBuckets": True},
        "LifecycleConfiguration": {"Rules": [{"Id": "expire-with-jobs", "Status": "Enabled", "Prefix": "",
                                              "ExpirationInDays": days,
                                              "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}}]},
        "Tags": _tags(f"{names.prefix(host)}data")}}


# job definitions ---------------------------------------------------------------------------------------------
def content_hash(request: dict) -> str:
    """A short hash of a RegisterJobDefinition request without its tags (what makes two registrations equal)."""
    body = {k: v for k, v in request.items() if k != "tags"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


def render_job_definition(host: Host, definition: Definition, image_uri: str, *, job_role_arn: str,
                          execution_role_arn: str, cluster: Cluster | None = None) -> dict:
    """The RegisterJobDefinition request of a definition's worker (pure; tags carry its content hash).

    The Batch job is a *worker*, which runs up to ``ratio`` hyper jobs in series and enforces each job's own
    timeout itself; so the Batch timeout is a backstop of ``ratio x timeout`` plus a grace period, and the
    worker is told to stop after ``ratio`` jobs (HYPER_MAX_JOBS). Batch retries a worker only when its host
    went away (spot reclaim); hyper counts each job's retries in the store, exactly once.
    """
    if cluster is not None:
        check_definition_fits(definition, cluster)
    if not image_uri:
        raise HyperError(f"definition {definition.name!r}: its image has no URI yet",
                         "add the image first (`hyper images add-image`)")
    if definition.vcpus < 1 or definition.memory_mib < 4:
        raise HyperError(f"definition {definition.name!r}: {definition.vcpus} vCPUs and {definition.memory_mib} MiB "
                         "are too small for a Batch container", "give at least 1 vCPU and 4 MiB")
    if not 0 <= definition.retries <= 9:
        raise HyperError(f"definition {definition.name!r}: retries {definition.retries} out of 0..9",
                         "Batch allows at most 10 attempts")
    main = iam.main_region(host)
    iam.check_definition_arns(host, definition.job_role, definition.secrets or {})
    resources = [{"type": "VCPU", "value": str(definition.vcpus)},
                 {"type": "MEMORY", "value": str(definition.memory_mib)}]
    if definition.gpus:
        resources.append({"type": "GPU", "value": str(definition.gpus)})
    env = {str(k): str(v) for k, v in (definition.environment or {}).items()}
    env.update({"HYPER_TABLE_PREFIX": names.prefix(host), "HYPER_MAIN_REGION": main,
                "HYPER_DEFINITION": definition.name, "HYPER_MAX_JOBS": str(max(1, definition.ratio))})
    container = {
        "image": image_uri,
        "command": list(WORKER_COMMAND),
        "resourceRequirements": resources,
        "environment": [{"name": k, "value": env[k]} for k in sorted(env)],
        "jobRoleArn": job_role_arn,
        "executionRoleArn": execution_role_arn,
        # --secret values: Batch resolves them into the worker's container, never as plain text here
        **({"secrets": [{"name": k, "valueFrom": v} for k, v in sorted(definition.secrets.items())]}
           if definition.secrets else {}),
        "logConfiguration": {"logDriver": "awslogs", "options": {
            "awslogs-group": names.log_group(host), "awslogs-region": main, "awslogs-stream-prefix": "worker"}},
    }
    request: dict[str, Any] = {
        "jobDefinitionName": names.job_definition(host, definition.name),
        "type": "container",
        "platformCapabilities": ["EC2"],
        "containerProperties": container,
        "retryStrategy": {"attempts": definition.retries + 1, "evaluateOnExit": [
            {"onStatusReason": "Host EC2*", "action": "RETRY"},  # spot reclaim / lost instance
            {"onReason": "*", "action": "EXIT"}]},
        "propagateTags": True,
    }
    if definition.timeout:
        request["timeout"] = {"attemptDurationSeconds": max(60, definition.timeout * max(1, definition.ratio)
                                                            + WORKER_TIMEOUT_GRACE)}
    request["tags"] = {**_identity(host), "hyper:definition": definition.name,
                       CONTENT_HASH_TAG: content_hash(request)}
    return request
