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
from typing import Any

from hyper.aws import names
from hyper.config import Host
from hyper.errors import HyperError, UsageError

ROLES = ("admin", "scheduler", "user", "worker", "boundary", "eks-boundary")
BOUNDARIES = {"boundary": "boundary", "eks-boundary": "eks-boundary"}  # role -> policy name after the prefix
HOST_TAG = "hyper:host"  # the host's name here (names.TAG_HOST); a worker machine may call it otherwise
PREFIX_TAG = "hyper:prefix"  # the deployment's identity (names.TAG_PREFIX): on stacks, job definitions, Batch jobs
MANAGED_POLICY_LIMIT = 6144  # characters of a customer managed policy, whitespace not counted
INLINE_ROLE_POLICY_LIMIT = 10240  # characters of a role's inline policies (the admin's policy goes there)

# item operations the store issues (hyper/store/dynamodb.py); TransactWriteItems is authorised per item
# through PutItem / UpdateItem / DeleteItem / ConditionCheckItem
ITEM_READ = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:DescribeTable"]
ITEM_WRITE = ["dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem"]
LOG_READ = ["logs:GetLogEvents", "logs:FilterLogEvents", "logs:DescribeLogStreams"]
LOG_WRITE = ["logs:CreateLogStream", "logs:PutLogEvents"]
ECR_PULL = ["ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"]
KEY_USE = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*"]  # data through a service under the host's key
# meta-table partition keys (hyper/store/dynamodb.py, hyper/store/notices.py) each role may write: a user's
# submission takes ids and writes counts, dependency edges and notices; a worker's claim/finish writes
# counts, edges, notices and its own worker record; the scheduler records its Batch jobs. ``res#*`` and
# ``config`` are in none of these lists: only the admin writes them.
USER_META_KEYS = ("ids", "cnt#*", "dep#*", "ntc#*", "ntcx#*", "queues")  # queues: the registry qsub adds to
WORKER_META_KEYS = ("cnt#*", "dep#*", "ntc#*", "ntcx#*", "wrk#*")
SCHEDULER_META_KEYS = USER_META_KEYS + ("wrk#*", "sched")
JOB_ROLE_STEM = "job-"  # a definition's --job-role is named <prefix>job-...
# the only AWS managed policies hyper attaches (to the Batch service role and the ECS instance role)
BATCH_POLICIES = ("service-role/AWSBatchServiceRole", "service-role/AmazonEC2ContainerServiceforEC2Role")
EKS_POLICIES = ("AmazonEKSClusterPolicy", "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy",
                "AmazonEC2ContainerRegistryReadOnly")


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


def meta_arns(host: Host, partition: str, account: str) -> list[str]:
    """The meta table and its indexes (reads: resources, settings, counters, edges, notices)."""
    base = meta_table_arn(host, partition, account)
    return [base, f"{base}/index/*"]


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
    body: dict[str, Any] = {"Sid": sid, "Effect": "Allow", "Action": sorted(set(actions)),
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


def definition_secrets_statement(host: Host, partition: str, account: str) -> dict:
    """A definition's ``--secret`` values: secrets and parameters named with the host's prefix only. Batch
    resolves them with the execution role; a worker elsewhere (EKS, local) with its own role."""
    p = _prefix(host)
    return _statement("DefinitionSecrets", ["secretsmanager:GetSecretValue", "ssm:GetParameter",
                                            "ssm:GetParameters"],
                      [f"arn:{partition}:secretsmanager:*:{account}:secret:{p}*",
                       f"arn:{partition}:ssm:*:{account}:parameter/{p}*"])


def check_definition_arns(host: Host, job_role: str, secrets: dict[str, str]) -> None:
    """The job role and secrets a definition names must be ones the host's roles may use (by name)."""
    p = _prefix(host)
    if job_role and not job_role.split(":role/", 1)[-1].rsplit("/", 1)[-1].startswith(f"{p}{JOB_ROLE_STEM}"):
        raise HyperError(f"job role {job_role} is not named {p}{JOB_ROLE_STEM}...: workers of host "
                         f"{host.name!r} may assume only those", f"create the role as {p}{JOB_ROLE_STEM}NAME, "
                         "trusting the region stacks' job roles (hyper-...-job)")
    for name, arn in secrets.items():
        resource = arn.split(":secret:", 1)[-1] if ":secret:" in arn else arn.split(":parameter/", 1)[-1]
        if not resource.startswith(p):
            raise HyperError(f"secret {name} ({arn}) is not named {p}...: host {host.name!r}'s roles may read "
                             "only those", f"store it as {p}{name.lower()} in Secrets Manager or SSM")


def jobs_table_arns(host: Host, partition: str, account: str) -> list[str]:
    """The jobs table and its indexes (job items only: no resource or configuration lives there)."""
    return [a for a in table_arns(host, partition, account) if not a.split("/")[1].endswith("meta")]


def meta_write_statement(sid: str, host: Host, partition: str, account: str, keys: tuple[str, ...]) -> dict:
    """Item writes on the meta table only under the partition keys ``keys`` (``dynamodb:LeadingKeys``), so
    a user or worker cannot change resources (``res#*``: a definition's environment, an image's URI) or the
    host's settings (``config``): those stay the admin's."""
    return _statement(sid, ITEM_WRITE, [meta_table_arn(host, partition, account)],
                      {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": list(keys)}})


def job_role_arn_pattern(host: Host, partition: str, account: str) -> str:
    """The roles a definition may name with ``--job-role``: ``<prefix>job-*``, assumed by the worker for
    each job of that definition (hyper/worker/credentials.py), so a job never holds the worker's rights."""
    return f"arn:{partition}:iam::{account}:role/{_prefix(host)}{JOB_ROLE_STEM}*"


def key_statements(host: Host, partition: str, account: str, services: tuple[str, ...],
                   extra: tuple[str, ...] = ()) -> list[dict]:
    """Using the host's KMS key (host setting ``kms_key``; none: no statement) through ``services`` only.

    The key's ARN alone is the resource, and ``kms:ViaService`` limits the use to DynamoDB / ECR in the main
    region (where the key, the tables and the repositories are): a role cannot decrypt arbitrary data with
    it. CloudWatch Logs needs no right here: the key policy lets the logs service principal use it
    (README, KMS). ECR also holds a grant of its own; the pull statement covers a key policy without it."""
    from hyper.aws import kms

    arn = kms.policy_arn(host, partition, account)
    if not arn:
        return []
    region = main_region(host)
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return [_statement("HostKey", KEY_USE + list(extra), [arn],
                       {"StringEquals": {"kms:ViaService": [f"{s}.{region}.{suffix}" for s in services]}})]


def worker_statements(host: Host, partition: str, account: str) -> list[dict]:
    """What a worker container does: claim, heartbeat, finish jobs; write job output to the log group;
    take on a definition's job role for the job it runs."""
    return [
        _statement("HostJobs", ITEM_READ + ITEM_WRITE, jobs_table_arns(host, partition, account)),
        _statement("HostMetaRead", ITEM_READ, meta_arns(host, partition, account)),
        meta_write_statement("HostMetaWorker", host, partition, account, WORKER_META_KEYS),
        _statement("HostLogGroup", LOG_WRITE, log_group_arns(host, partition, account)),
        _statement("JobRoles", ["sts:AssumeRole", "sts:TagSession"], [job_role_arn_pattern(host, partition, account)]),
        notify_secret_statement(host, partition, account),
        definition_secrets_statement(host, partition, account),
    ] + bucket_statements(host, partition, account) + key_statements(host, partition, account, ("dynamodb",))


def user_statements(host: Host, partition: str, account: str) -> list[dict]:
    """qsub / qstat / qdel / qlog / qhold / qrls: job items, the meta items a submission writes (ids,
    counts, dependency edges, notices, the queue registry), never resources or configuration; reading the log
    group."""
    return [
        _statement("HostJobs", ITEM_READ + ITEM_WRITE, jobs_table_arns(host, partition, account)),
        _statement("HostMetaRead", ITEM_READ, meta_arns(host, partition, account)),
        meta_write_statement("HostMetaUser", host, partition, account, USER_META_KEYS),
        _statement("HostLogGroup", LOG_READ, log_group_arns(host, partition, account)),
    ] + bucket_statements(host, partition, account) + key_statements(host, partition, account, ("dynamodb",))


def scheduler_statements(host: Host, partition: str, account: str) -> list[dict]:
    return user_statements(host, partition, account) + [
        notify_secret_statement(host, partition, account),  # the sweep sends notices nobody else sent
        meta_write_statement("HostMetaScheduler", host, partition, account, SCHEDULER_META_KEYS),
        _statement("HostMetaPrune", ["dynamodb:DeleteItem"], [meta_table_arn(host, partition, account)],
                   {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["wrk#*"]}}),
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


def boundary_arn(host: Host, partition: str, account: str, which: str = "boundary") -> str:
    """The permissions boundary a role hyper creates carries (``hyper iam policy --role boundary``, or
    ``eks-boundary`` for the EKS cluster and node roles).

    An account administrator creates both once (``aws iam create-policy --policy-name <prefix>boundary``);
    the admin policy can neither create nor change them, and can create a role or change its rights only
    with one attached, so no role hyper's admin makes can hold more than these documents allow."""
    return f"arn:{partition}:iam::{account}:policy/{_prefix(host)}{BOUNDARIES[which]}"


def _with_boundary(host: Host, partition: str, account: str) -> dict:
    return {"StringEquals": {"iam:PermissionsBoundary": [boundary_arn(host, partition, account, b)
                                                         for b in BOUNDARIES]}}


def _prefix_tag(key: str, host: Host) -> dict:
    return {"StringEquals": {key: _prefix(host)}}


# EC2 names nothing before it exists, so the region network is scoped by tag: creations must carry the
# host's hyper:prefix tag (CloudFormation copies the stack tags onto them), changes and deletions only touch
# what carries it. Not checked against real AWS (moto does not evaluate IAM conditions).
EC2_CREATE = ["ec2:CreateVpc", "ec2:CreateSubnet", "ec2:CreateInternetGateway", "ec2:AllocateAddress",
              "ec2:CreateNatGateway", "ec2:CreateRouteTable", "ec2:CreateSecurityGroup", "ec2:CreateVpcEndpoint",
              "ec2:CreateLaunchTemplate"]
EC2_CHANGE = ["ec2:DeleteVpc", "ec2:ModifyVpcAttribute", "ec2:DeleteSubnet", "ec2:ModifySubnetAttribute",
              "ec2:DeleteInternetGateway", "ec2:AttachInternetGateway", "ec2:DetachInternetGateway",
              "ec2:ReleaseAddress", "ec2:DeleteNatGateway", "ec2:DeleteRouteTable", "ec2:CreateRoute",
              "ec2:DeleteRoute", "ec2:ReplaceRoute", "ec2:AssociateRouteTable", "ec2:DisassociateRouteTable",
              "ec2:DeleteSecurityGroup", "ec2:AuthorizeSecurityGroupEgress", "ec2:RevokeSecurityGroupEgress",
              "ec2:AuthorizeSecurityGroupIngress", "ec2:RevokeSecurityGroupIngress", "ec2:DeleteVpcEndpoints",
              "ec2:ModifyVpcEndpoint", "ec2:CreateLaunchTemplateVersion", "ec2:DeleteLaunchTemplate",
              "ec2:DeleteTags"]


def admin_statements(host: Host, partition: str, account: str) -> list[dict]:
    p = _prefix(host)
    stacks = [f"arn:{partition}:cloudformation:*:{account}:stack/{p}*/*"]
    roles = f"arn:{partition}:iam::{account}:role/{p}*"
    profiles = f"arn:{partition}:iam::{account}:instance-profile/{p}*"
    repos = f"arn:{partition}:ecr:*:{account}:repository/{p.lower()}*"
    log_groups = log_group_arns(host, partition, account)
    bounded = _with_boundary(host, partition, account)
    # the notice signing key is the scheduler role's and the workers': the admin policy has no room left for it;
    # the scheduler's meta statements (keyed, conditioned) are subsumed by the admin's own on the meta table
    scheduler = [st for st in scheduler_statements(host, partition, account)
                 if st["Sid"] not in ("NotifyKey", "HostJobs", "HostKey") and not st["Sid"].startswith("HostMeta")]
    return scheduler + [
        # the tables, and every item in them: resources and configuration are the meta items only the admin
        # writes (and deletes)
        _statement("HostTables", ITEM_READ + ITEM_WRITE + [
            "dynamodb:DeleteItem", "dynamodb:CreateTable", "dynamodb:DeleteTable", "dynamodb:UpdateTable",
            "dynamodb:DescribeTimeToLive", "dynamodb:UpdateTimeToLive", "dynamodb:TagResource",
            "dynamodb:ListTagsOfResource"], table_arns(host, partition, account)),
        _statement("HostStacks", ["cloudformation:CreateStack", "cloudformation:UpdateStack",
                                  "cloudformation:DeleteStack", "cloudformation:DescribeStacks",
                                  "cloudformation:DescribeStackEvents", "cloudformation:DescribeStackResources",
                                  "cloudformation:GetTemplate", "cloudformation:CreateChangeSet",
                                  "cloudformation:DescribeChangeSet", "cloudformation:ExecuteChangeSet",
                                  "cloudformation:DeleteChangeSet", "cloudformation:TagResource"], stacks),
        _statement("CloudFormationUnscopable", ["cloudformation:ValidateTemplate", "cloudformation:ListExports",
                                                "cloudformation:ListImports", "cloudformation:ListStacks"], "*"),
        # creating or changing a role's rights needs the host's permissions boundary on it
        _statement("BoundedRoles", ["iam:CreateRole", "iam:PutRolePolicy", "iam:DeleteRolePolicy",
                                    "iam:DetachRolePolicy"], [roles], bounded),
        _statement("BoundedManagedPolicies", ["iam:AttachRolePolicy"], [roles],
                   {**bounded, "ArnEquals": {"iam:PolicyARN": [f"arn:{partition}:iam::aws:policy/{m}"
                                                               for m in BATCH_POLICIES + EKS_POLICIES]}}),
        _statement("HostRoles", ["iam:DeleteRole", "iam:GetRole", "iam:UpdateRole", "iam:UpdateAssumeRolePolicy",
                                 "iam:TagRole", "iam:UntagRole", "iam:GetRolePolicy", "iam:ListRolePolicies",
                                 "iam:ListAttachedRolePolicies"], [roles]),
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
                                    "logs:ListTagsForResource", "logs:AssociateKmsKey", "logs:DisassociateKmsKey"],
                   log_groups),
        # the main stack's data bucket (templates.data_bucket; retained when the stack goes: no DeleteBucket)
        _statement("HostBucket", ["s3:CreateBucket", "s3:PutEncryptionConfiguration", "s3:PutBucketTagging",
                                  "s3:PutLifecycleConfiguration", "s3:PutBucketPublicAccessBlock"],
                   bucket_resources(host, partition, account)),
        _statement("HostRepositories", ["ecr:CreateRepository", "ecr:DeleteRepository", "ecr:DescribeRepositories",
                                        "ecr:DescribeImages", "ecr:TagResource", "ecr:PutImage",
                                        "ecr:PutImageTagMutability",
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
        _statement("TaggedNetworkCreate", EC2_CREATE, "*", _prefix_tag(f"aws:RequestTag/{PREFIX_TAG}", host)),
        _statement("TaggedNetworkChange", EC2_CHANGE, "*", _prefix_tag(f"ec2:ResourceTag/{PREFIX_TAG}", host)),
        # tags only as part of a create call, which itself needed the hyper:prefix tag
        _statement("TagOnCreate", ["ec2:CreateTags"], "*", {"StringLike": {"ec2:CreateAction": ["Create*",
                                                                                               "AllocateAddress"]}}),
        _statement("PrivateDnsOfHostEndpoints", ["route53:AssociateVPCWithHostedZone"], "*"),
        # (no SSM: Batch's image type picks the AMI; the templates resolve no AMI parameter any more)
    ] + _admin_key_statements(host, partition, account)


def _admin_key_statements(host: Host, partition: str, account: str) -> list[dict]:
    """The host's KMS key: checked by hyper itself (DescribeKey), and used by DynamoDB and ECR on the admin's
    behalf, which create grants for the tables and repositories they encrypt with it."""
    from hyper.aws import kms

    arn = kms.policy_arn(host, partition, account)
    if not arn:
        return []
    return [_statement("CheckHostKey", ["kms:DescribeKey"], [arn]),
            *key_statements(host, partition, account, ("dynamodb", "ecr"), ("kms:CreateGrant", "kms:RetireGrant"))]


IAM_ACTIONS_SCOPED_APART = {"iam:PassRole", "iam:CreateServiceLinkedRole"}


def _managed_actions(policies: tuple[str, ...]) -> list[str]:
    from hyper.aws.managed_policies import MANAGED_ACTIONS

    return sorted({a for p in policies for a in MANAGED_ACTIONS[p][1]} - IAM_ACTIONS_SCOPED_APART)


def boundary_statements(host: Host, partition: str, account: str, policies: tuple[str, ...] = BATCH_POLICIES
                        ) -> list[dict]:
    """The permissions boundary of every role hyper creates: at most what its roles together need.

    The workers' own rights (scoped to the host), pulling the host's images, and the actions of the AWS
    managed policies hyper attaches to AWS Batch's and ECS instances' service roles (``boundary``) or to
    EKS's (``eks-boundary``; one document would not fit IAM's 6,144 characters). AWS grants those actions
    on "*", so they stay on "*" here, as explicit actions; roles are passed only if the host's, to the
    services hyper uses. A role created with the boundary never holds more, whatever policy is put on it.
    """
    p = _prefix(host)
    # the workers' key use (tables) and the execution role's (image pulls) in one statement: the EKS
    # boundary has little room left under IAM's 6,144 characters
    return [st for st in worker_statements(host, partition, account) if st["Sid"] != "HostKey"] + [
        _statement("PullHostImages", ECR_PULL, [f"arn:{partition}:ecr:*:{account}:repository/{p.lower()}*"]),
        *key_statements(host, partition, account, ("dynamodb", "ecr")),
        _statement("ServiceRolesAsAwsManages", _managed_actions(policies), "*"),
        _statement("PassHostRoles", ["iam:PassRole"], [f"arn:{partition}:iam::{account}:role/{p}*"],
                   {"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "ecs-tasks.amazonaws.com"]}}),
        _statement("ServiceLinkedRoles", ["iam:CreateServiceLinkedRole"], "*",
                   {"StringEquals": {"iam:AWSServiceName": [
                       "autoscaling.amazonaws.com", "ecs.amazonaws.com", "elasticloadbalancing.amazonaws.com",
                       "spot.amazonaws.com", "spotfleet.amazonaws.com"]}}),
    ]


def eks_boundary_statements(host: Host, partition: str, account: str) -> list[dict]:
    return boundary_statements(host, partition, account, EKS_POLICIES)


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


_BUILDERS = {"admin": admin_statements, "boundary": boundary_statements,
             "eks-boundary": eks_boundary_statements, "scheduler": scheduler_statements, "user": user_statements,
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
