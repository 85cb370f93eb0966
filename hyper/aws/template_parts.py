"""The shared pieces of hyper's CloudFormation templates (pure): constants, names, tags, roles' trust and
boundary, and the template envelope. ``hyper.aws.templates`` (cluster, main stack, job definitions) and
``hyper.aws.network_template`` (a region's network stack) build on these; callers import them from
``hyper.aws.templates``, which re-exports them.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from hyper.aws import iam, names
from hyper.config import Host
from hyper.errors import HyperError

TEMPLATE_FORMAT = "2010-09-09"
MAX_TEMPLATE_BODY = 51_200  # bytes CloudFormation takes inline (TemplateBody)
CPU_IMAGE_TYPE = "ECS_AL2023"
GPU_IMAGE_TYPE = "ECS_AL2023_NVIDIA"
GPU_ROOT_VOLUME_GIB = 100  # CUDA images are large; the default 30 GiB root fills up on the first pull
WORKER_COMMAND = ["/usr/local/bin/start.sh"]  # example-worker-image's entrypoint (also its ENTRYPOINT)
WORKER_TIMEOUT_GRACE = 900  # seconds a worker gets beyond ratio x timeout (start-up, image pull, requeue)
CONTENT_HASH_TAG = "hyper:content-hash"
HOST_TAG = iam.HOST_TAG
PREFIX_TAG = iam.PREFIX_TAG
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557,
                      2922, 3288, 3653)
ROLE_KINDS = ("batch", "instance", "execution", "job")

_SIZES = r"(nano|micro|small|medium|large|xlarge|[1-9][0-9]*xlarge|metal(-[0-9]+xl)?)"
_SIZE = re.compile(f"^{_SIZES}$")
_INSTANCE_TYPE = re.compile(f"^[a-z][a-z0-9-]*[0-9][a-z0-9-]*(\\.{_SIZES})?$")
_GPU_FAMILY = re.compile(r"^(p|g|gr)[0-9]+([a-z-]*)$")  # GPU families: p3, p4d, p5, g4dn, g5, g6e, gr6...
BATCH_SERVICE_LINKED_ROLE = ("arn:${AWS::Partition}:iam::${AWS::AccountId}:role/aws-service-role/"
                             "batch.amazonaws.com/AWSServiceRoleForBatch")
CPU_ROOT_VOLUME_GIB = 30  # the ECS AMI's own default, now encrypted
JOB_QUEUE_TIME_LIMITS = (  # Batch cancels a worker stuck RUNNABLE for one of these reasons (seconds)
    ("MISCONFIGURATION:JOB_RESOURCE_REQUIREMENT", 600),  # no instance type of the environment can hold it
    ("MISCONFIGURATION:COMPUTE_ENVIRONMENT_MAX_RESOURCE", 600),  # larger than the environment's max vCPUs
    ("CAPACITY:INSUFFICIENT_INSTANCE_CAPACITY", 4 * 3600),  # EC2 has none: the scheduler submits again later
)
_VPC_ID = re.compile(r"^vpc-[0-9a-f]{1,17}$")
_SUBNET_ID = re.compile(r"^subnet-[0-9a-f]{1,17}$")
_ROUTE_TABLE_ID = re.compile(r"^rtb-[0-9a-f]{1,17}$")


# names -----------------------------------------------------------------------------------------------------
def _clean(text: str, allowed: str) -> str:
    return re.sub(f"[^{allowed}]", "-", text)


def export_name(host: Host, key: str) -> str:
    """The export a region's network stack gives its cluster stacks (exports are per region)."""
    return _clean(f"{names.stack(host, 'network')}-{key}", "A-Za-z0-9:-")


def role_name(host: Host, region: str, kind: str) -> str:
    """An IAM role (or instance profile) name: IAM is global, so the region is part of it; at most 64."""
    name = _clean(f"{names.prefix(host)}{region}-{kind}", r"\w+=,.@-")
    if len(name) <= 64:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[:64 - 9]}-{digest}"


def role_arn(host: Host, region: str, kind: str, account: str, partition: str | None = None) -> str:
    partition = partition or iam.partition_of(region)
    return f"arn:{partition}:iam::{account}:role/{role_name(host, region, kind)}"


# small pieces ----------------------------------------------------------------------------------------------
def _sub(value: Any) -> Any:
    """Strings with ${AWS::...} become Fn::Sub (the IAM statements are shared with `hyper iam policy`)."""
    if isinstance(value, str) and "${" in value:
        return {"Fn::Sub": value}
    if isinstance(value, list):
        return [_sub(v) for v in value]
    if isinstance(value, dict):
        return {k: _sub(v) for k, v in value.items()}
    return value


def _identity(host: Host) -> dict[str, str]:
    """Tags naming the deployment: its prefix (what workers and the scheduler match) and this host's name."""
    return {PREFIX_TAG: names.prefix(host), HOST_TAG: host.name}


def stack_tags(host: Host) -> list[dict]:
    """Tags of every stack; CloudFormation copies them to the resources that take tags."""
    return [{"Key": k, "Value": v} for k, v in _identity(host).items()]


def _tags(name: str) -> list[dict]:
    return [{"Key": "Name", "Value": name}]


def _assume(service: str) -> dict:
    return {"Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


def boundary(host: Host, which: str = "boundary") -> dict:
    """The permissions boundary every role hyper creates carries (hyper/aws/iam.py ``boundary_arn``)."""
    return {"Fn::Sub": iam.boundary_arn(host, "${AWS::Partition}", "${AWS::AccountId}", which)}


def _managed(policy: str) -> dict:
    return {"Fn::Sub": f"arn:${{AWS::Partition}}:iam::aws:policy/{policy}"}


def _output(host: Host, key: str, value: Any, description: str) -> dict:
    return {"Description": description, "Value": value, "Export": {"Name": export_name(host, key)}}


def _template(description: str, resources: dict, outputs: dict | None = None,
              parameters: dict | None = None) -> dict:
    body: dict[str, Any] = {"AWSTemplateFormatVersion": TEMPLATE_FORMAT, "Description": description}
    if parameters:
        body["Parameters"] = parameters
    body["Resources"] = resources
    if outputs:
        body["Outputs"] = outputs
    return body


def template_body(template: dict) -> str:
    """The TemplateBody sent to CloudFormation (compact JSON; YAML is for people: ``to_yaml``)."""
    body = json.dumps(template, separators=(",", ":"), sort_keys=False)
    if len(body.encode()) > MAX_TEMPLATE_BODY:
        raise HyperError(f"the rendered template is {len(body.encode())} bytes, over CloudFormation's "
                         f"{MAX_TEMPLATE_BODY} inline limit", "split the cluster into fewer instance types "
                         "or report this as a bug")
    return body


def to_yaml(template: dict) -> str:
    import yaml

    return yaml.safe_dump(template, sort_keys=False, default_flow_style=False, width=120)
