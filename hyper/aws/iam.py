"""Least-privilege IAM policies of a host (pure): what each role needs, scoped to this host's names.

Four roles (``hyper iam policy --role ...``):

* ``user``      qsub / qstat / qdel / qlog: item reads and writes on the host's two tables and their indexes,
                read access to the host's log group. No table creation, no deletes of whole items.
* ``worker``    claim / heartbeat / finish: the same item operations, and writing log streams in the log
                group. The Batch job role of every region stack carries exactly these statements.
* ``scheduler`` the user's rights plus Batch SubmitJob / TerminateJob / describe on the host's queues and job
                definitions, the spot data behind auto weights, and pruning exited workers.
* ``admin``     the scheduler's rights plus everything ``hyper hosts create-host`` and the ``add-*`` /
                ``update-*`` / ``delete-*`` commands do: the tables, the CloudFormation stacks and the
                resources inside them (CloudFormation runs with the caller's credentials), ECR repositories,
                job definitions.

Every resource ARN carries the host's prefix (``hyper.aws.names``), so a policy for host A grants nothing on
host B in the same account. Where AWS cannot scope an action to a resource (``ecr:GetAuthorizationToken``,
``ec2:Describe*``-style reads, EC2 network creation, which names nothing before it exists) the statement
says so in its ``Sid``. ``partition`` and ``account`` are strings, so a CloudFormation template can pass
``${AWS::Partition}`` / ``${AWS::AccountId}`` and wrap the result in ``Fn::Sub``.
"""

from __future__ import annotations

import json
import re

from hyper.aws import names
from hyper.config import Host
from hyper.errors import HyperError, UsageError

ROLES = ("admin", "scheduler", "user", "worker")
HOST_TAG = "hyper:host"  # the host's name here (names.TAG_HOST); a worker machine may call it otherwise
PREFIX_TAG = "hyper:prefix"  # the deployment's identity (names.TAG_PREFIX): on stacks, job definitions, Batch jobs
MANAGED_POLICY_LIMIT = 6144  # characters of a customer managed policy, whitespace not counted

# item operations the store issues (hyper/store/dynamodb.py); TransactWriteItems is authorised per item
# through PutItem / UpdateItem / DeleteItem / ConditionCheckItem
ITEM_READ = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:DescribeTable"]
ITEM_WRITE = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem"]
LOG_READ = ["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"]
LOG_WRITE = ["logs:CreateLogStream", "logs:PutLogEvents"]
ECR_PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]


def partition_of(region: str | None) -> str:
    region = region or ""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def main_region(host: Host) -> str:
    if not host.main_region:
        raise HyperError(f"host {host.name!r} has no main region",
                         "set it with `hyper hosts create-host --main-region REGION`")
    return host.main_region


def check_account(account: str) -> str:
    if account != "*" and not re.fullmatch(r"\d{12}", account) and not account.startswith("${"):
        raise UsageError(f"account id {account!r} is not 12 digits", "e.g. --account-id 123456789012")
    return account


# ARNs ----------------------------------------------------------------------------------------------------
def table_arns(host: Host, partition: str, account: str) -> list[str]:
    """Both tables and all their indexes, in the main region."""
    from hyper.aws.tables import table_names

    region = main_region(host)
    out = []
    for table in table_names(host).values():
        base = f"arn:{partition}:dynamodb:{region}:{account}:table/{table}"
        out += [base, f"{base}/index/*"]
    return out


def meta_table_arn(host: Host, partition: str, account: str) -> str:
    from hyper.aws.tables import table_names

    return f"arn:{partition}:dynamodb:{main_region(host)}:{account}:table/{table_names(host)['meta']}"


def log_group_arns(host: Host, partition: str, account: str) -> list[str]:
    """The host's log group (main region) and its streams."""
    base = f"arn:{partition}:logs:{main_region(host)}:{account}:log-group:{names.log_group(host)}"
    return [base, f"{base}:*"]


def batch_arn(host: Host, partition: str, account: str) -> str:
    """The host's compute environments, job queues and job definitions in every region."""
    return f"arn:{partition}:batch:*:{account}:*/{_prefix(host)}*"


def _prefix(host: Host) -> str:
    return names.prefix(host)


# statements ----------------------------------------------------------------------------------------------
def _statement(sid: str, actions: list[str], resources: list[str] | str, condition: dict | None = None) -> dict:
    body = {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)),
            "Resource": resources if isinstance(resources, str) else list(resources)}
    if condition:
        body["Condition"] = condition
    return body


def bucket_arn(host: Host, partition: str, account: str) -> str:
    from hyper.aws.s3 import bucket_stem

    return f"arn:{partition}:s3:::{bucket_stem(host)}{account}"


def bucket_resources(host: Host, partition: str, account: str) -> list[str]:
    """The bucket and its objects in one list: object actions apply to the one, ListBucket to the other, and
    one statement for both keeps the admin policy (which holds these too) under IAM's 6,144 characters."""
    bucket = bucket_arn(host, partition, account)
    return [bucket, f"{bucket}/*"]


def bucket_statements(host: Host, partition: str, account: str) -> list[dict]:
    """Parts, staged files and part outputs in the host's bucket (hyper/aws/s3.py): objects and listing."""
    return [_statement("HostBucket", ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:ListBucket"],
                       bucket_resources(host, partition, account))]


def notify_secret_statement(host: Host, partition: str, account: str) -> dict:
    """Senders of completion notices read the host's signing key (hyper/aws/secrets.py), nothing else."""
    from hyper.aws.secrets import notify_secret_name

    arn = f"arn:{partition}:secretsmanager:{main_region(host)}:{account}:secret:{notify_secret_name(host)}-*"
    return _statement("NotifyKey", ["secretsmanager:GetSecretValue"], [arn])


def worker_statements(host: Host, partition: str, account: str) -> list[dict]:
    """What a worker container does: claim, heartbeat, finish jobs; write job output to the log group."""
    return [
        _statement("HostTables", ITEM_READ + ITEM_WRITE, table_arns(host, partition, account)),
        _statement("HostLogGroup", LOG_WRITE, log_group_arns(host, partition, account)),
        notify_secret_statement(host, partition, account),
    ] + bucket_statements(host, partition, account)


def user_statements(host: Host, partition: str, account: str) -> list[dict]:
    """qsub / qstat / qdel / qlog / qhold / qrls: item operations and reading the log group."""
    return [
        _statement("HostTables", ITEM_READ + ITEM_WRITE, table_arns(host, partition, account)),
        _statement("HostLogGroup", LOG_READ, log_group_arns(host, partition, account)),
    ] + bucket_statements(host, partition, account)


def scheduler_statements(host: Host, partition: str, account: str) -> list[dict]:
    return user_statements(host, partition, account) + [
        notify_secret_statement(host, partition, account),  # the sweep sends notices nobody else sent
        _statement("HostMetaPrune", ["dynamodb:DeleteItem"], [meta_table_arn(host, partition, account)]),
        _statement("HostBatch", ["batch:SubmitJob", "batch:TagResource"], [batch_arn(host, partition, account)]),
        # Batch job ids are random: only the host's own workers (SubmitJob tags them hyper:prefix) may be stopped
        _statement("StopHostWorkers", ["batch:TerminateJob", "batch:CancelJob"],
                   [f"arn:{partition}:batch:*:{account}:job/*"],
                   {"StringEquals": {f"aws:ResourceTag/{PREFIX_TAG}": _prefix(host)}}),
        # Batch's describe/list calls and EC2's spot data take no resource ARN (AWS: Resource "*")
        _statement("NoResourceLevelPermissions", [
            "batch:DescribeJobs", "batch:ListJobs", "batch:DescribeJobQueues", "batch:DescribeComputeEnvironments",
            "batch:DescribeJobDefinitions", "ec2:DescribeSpotPriceHistory", "ec2:GetSpotPlacementScores",
            "ec2:DescribeInstanceTypeOfferings"], "*"),
    ]


def admin_statements(host: Host, partition: str, account: str) -> list[dict]:
    p = _prefix(host)
    stacks = [f"arn:{partition}:cloudformation:*:{account}:stack/{p}*/*"]
    roles = f"arn:{partition}:iam::{account}:role/{p}*"
    profiles = f"arn:{partition}:iam::{account}:instance-profile/{p}*"
    repos = f"arn:{partition}:ecr:*:{account}:repository/{p.lower()}*"
    log_groups = log_group_arns(host, partition, account)
    # the notice signing key is the scheduler role's and the workers': the admin policy has no room left for it
    scheduler = [st for st in scheduler_statements(host, partition, account) if st["Sid"] != "NotifyKey"]
    return scheduler + [
        _statement("HostTables", ["dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:UpdateTable",
                                  "dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive",
                                  "dynamodb:TagResource", "dynamodb:ListTagsOfResource"],
                   table_arns(host, partition, account)),
        _statement("HostStacks", ["cloudformation:CreateStack", "cloudformation:UpdateStack",
                                  "cloudformation:DeleteStack", "cloudformation:DescribeStacks",
                                  "cloudformation:DescribeStackEvents", "cloudformation:DescribeStackResources",
                                  "cloudformation:GetTemplate", "cloudformation:CreateChangeSet",
                                  "cloudformation:DescribeChangeSet", "cloudformation:ExecuteChangeSet",
                                  "cloudformation:DeleteChangeSet", "cloudformation:TagResource"], stacks),
        _statement("CloudFormationUnscopable", ["cloudformation:ValidateTemplate", "cloudformation:ListExports",
                                                "cloudformation:ListImports", "cloudformation:ListStacks"], "*"),
        _statement("HostRoles", ["iam:CreateRole", "iam:DeleteRole", "iam:GetRole", "iam:UpdateRole",
                                 "iam:UpdateAssumeRolePolicy", "iam:TagRole", "iam:UntagRole",
                                 "iam:PutRolePolicy", "iam:GetRolePolicy", "iam:DeleteRolePolicy",
                                 "iam:ListRolePolicies", "iam:ListAttachedRolePolicies",
                                 "iam:AttachRolePolicy", "iam:DetachRolePolicy"], [roles]),
        _statement("HostInstanceProfiles", ["iam:CreateInstanceProfile", "iam:DeleteInstanceProfile",
                                            "iam:GetInstanceProfile", "iam:AddRoleToInstanceProfile",
                                            "iam:RemoveRoleFromInstanceProfile", "iam:TagInstanceProfile"],
                   [profiles]),
        # the host's roles, and Batch's service-linked role that every compute environment names (templates)
        _statement("PassHostRoles", ["iam:PassRole"], [roles, f"arn:{partition}:iam::{account}:role/aws-service-role/"
                                                             "batch.amazonaws.com/AWSServiceRoleForBatch"],
                   {"StringEquals": {"iam:PassedToService": ["batch.amazonaws.com", "ec2.amazonaws.com",
                                                             "ecs-tasks.amazonaws.com"]}}),
        _statement("BatchServiceLinkedRoles", ["iam:CreateServiceLinkedRole"], "*",
                   {"StringEquals": {"iam:AWSServiceName": ["batch.amazonaws.com", "spot.amazonaws.com",
                                                            "spotfleet.amazonaws.com"]}}),
        _statement("HostBatch", ["batch:CreateComputeEnvironment", "batch:UpdateComputeEnvironment",
                                 "batch:DeleteComputeEnvironment", "batch:CreateJobQueue", "batch:UpdateJobQueue",
                                 "batch:DeleteJobQueue", "batch:RegisterJobDefinition",
                                 "batch:DeregisterJobDefinition", "batch:TagResource", "batch:ListTagsForResource"],
                   [batch_arn(host, partition, account)]),
        _statement("HostLogGroup", ["logs:CreateLogGroup", "logs:DeleteLogGroup", "logs:PutRetentionPolicy",
                                    "logs:DeleteRetentionPolicy", "logs:TagResource", "logs:TagLogGroup",
                                    "logs:ListTagsForResource"], log_groups),
        # the main stack's data bucket (templates.data_bucket; retained when the stack goes: no DeleteBucket)
        _statement("HostBucket", ["s3:CreateBucket", "s3:PutEncryptionConfiguration", "s3:PutBucketTagging",
                                  "s3:PutLifecycleConfiguration", "s3:PutBucketPublicAccessBlock"],
                   bucket_resources(host, partition, account)),
        _statement("HostRepositories", ["ecr:CreateRepository", "ecr:DeleteRepository", "ecr:DescribeRepositories",
                                        "ecr:DescribeImages", "ecr:TagResource", "ecr:PutImage",
                                        "ecr:InitiateLayerUpload", "ecr:UploadLayerPart", "ecr:CompleteLayerUpload",
                                        # replicas: wait for one; push an image again for a new region
                                        "ecr:DescribeImageReplicationStatus", "ecr:BatchDeleteImage",
                                        *ECR_PULL], [repos]),
        # registry-wide settings and read-only describes that take no resource ARN
        _statement("NoResourceLevelPermissions", [
            "ecr:GetAuthorizationToken", "ecr:DescribeRegistry", "ecr:PutReplicationConfiguration",
            "logs:DescribeLogGroups", "iam:ListInstanceProfilesForRole",
            # read-only: CloudFormation describes VPCs, subnets, gateways, endpoints, templates, AZs
            "ec2:Describe*"], "*"),
        # EC2 names nothing before it exists, so the network a region stack creates cannot be scoped by
        # name; these are exactly the create/modify/delete calls the region and cluster templates make
        _statement("RegionNetwork", [
            "ec2:CreateVpc", "ec2:DeleteVpc", "ec2:ModifyVpcAttribute", "ec2:CreateSubnet", "ec2:DeleteSubnet",
            "ec2:ModifySubnetAttribute", "ec2:CreateInternetGateway", "ec2:DeleteInternetGateway",
            "ec2:AttachInternetGateway", "ec2:DetachInternetGateway", "ec2:AllocateAddress", "ec2:ReleaseAddress",
            "ec2:CreateNatGateway", "ec2:DeleteNatGateway", "ec2:CreateRouteTable", "ec2:DeleteRouteTable",
            "ec2:CreateRoute", "ec2:DeleteRoute", "ec2:ReplaceRoute", "ec2:AssociateRouteTable",
            "ec2:DisassociateRouteTable", "ec2:CreateSecurityGroup", "ec2:DeleteSecurityGroup",
            "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress",
            "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:CreateVpcEndpoint",
            "ec2:DeleteVpcEndpoints", "ec2:ModifyVpcEndpoint", "ec2:CreateLaunchTemplate",
            "ec2:CreateLaunchTemplateVersion", "ec2:DeleteLaunchTemplate", "ec2:CreateTags", "ec2:DeleteTags",
            "route53:AssociateVPCWithHostedZone"], "*"),
        # (no SSM: Batch's image type picks the AMI; the templates resolve no AMI parameter any more)
    ]


def merge(statements: list[dict]) -> list[dict]:
    """One statement per (resources, condition): the admin's policy must stay under IAM's 6,144 characters."""
    out: list[dict] = []
    index: dict[str, dict] = {}
    for st in statements:
        key = json.dumps([st["Resource"], st.get("Condition")], sort_keys=True)
        if key in index:
            index[key]["Action"] = sorted(set(index[key]["Action"]) | set(st["Action"]))
        else:
            index[key] = dict(st, Action=list(st["Action"]))
            out.append(index[key])
    return out


_BUILDERS = {"admin": admin_statements, "scheduler": scheduler_statements, "user": user_statements,
             "worker": worker_statements}


def render_policy(host: Host, role: str, *, account: str = "*", partition: str | None = None) -> dict:
    """The IAM policy document one role needs on this host (pure; ``account`` "*" when unknown)."""
    if role not in _BUILDERS:
        raise UsageError(f"unknown role {role!r}", f"use one of {', '.join(ROLES)}")
    if host.type != "aws":
        raise HyperError(f"host {host.name!r} is a {host.type} host: it uses no AWS permissions",
                         "select an aws host (--host NAME) or create one with `hyper hosts create-host`")
    partition = partition or partition_of(main_region(host))
    return {"Version": "2012-10-17", "Statement": merge(_BUILDERS[role](host, partition, check_account(account)))}
