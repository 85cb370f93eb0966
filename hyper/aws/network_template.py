"""A region's network stack, ``<prefix>network`` (pure): a new VPC from the region's CIDR or the region's
existing VPC and subnets, the worker security group, optional VPC endpoints, and the IAM roles Batch and the
workers use. Its outputs are exported for the cluster stacks (``hyper.aws.templates``), so CloudFormation
refuses to delete a region's network while a cluster still uses it.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Iterable

from hyper.aws import iam, names
from hyper.aws.template_parts import (_ROUTE_TABLE_ID, _SUBNET_ID, _VPC_ID, _assume, _managed, _output, _sub,
                                      _tags, _template, boundary, role_name)
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Region


def _subnet_cidrs(cidr: str, region: str) -> tuple[list[str], list[str]]:
    """Private: two quarters of the VPC (workers); public: two sixteenths (the NAT gateway only)."""
    try:
        net = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        raise HyperError(f"region {region!r}: vpc-cidr {cidr!r} is not an IPv4 CIDR", "e.g. 10.20.0.0/16") from None
    if net.version != 4:
        raise HyperError(f"region {region!r}: vpc-cidr {cidr} is not IPv4", "e.g. 10.20.0.0/16")
    if str(net) != cidr.strip():
        raise HyperError(f"region {region!r}: vpc-cidr {cidr} has host bits set", f"did you mean {net}?")
    if not 16 <= net.prefixlen <= 24:
        raise HyperError(f"region {region!r}: vpc-cidr {cidr} must be /16 to /24",
                         "AWS VPCs are /16../28 and hyper carves four subnets from it; e.g. 10.20.0.0/16")
    quarters = list(net.subnets(new_prefix=net.prefixlen + 2))
    public = list(quarters[2].subnets(new_prefix=net.prefixlen + 4))[:2]
    return [str(quarters[0]), str(quarters[1])], [str(s) for s in public]


def check_cidrs(region: Region, others: Iterable[Region]) -> None:
    """A region's new VPC overlaps no other region's (they may be peered later)."""
    if not region.vpc_cidr:
        return
    _subnet_cidrs(region.vpc_cidr, region.name)  # a well-formed CIDR first
    net = ipaddress.ip_network(region.vpc_cidr)
    for other in others:
        if other.name == region.name or not other.vpc_cidr:
            continue
        try:
            other_net = ipaddress.ip_network(other.vpc_cidr, strict=False)
        except ValueError:
            continue  # the other region's own check reports it
        if net.overlaps(other_net):
            raise HyperError(f"region {region.name!r}: vpc-cidr {region.vpc_cidr} overlaps {other.vpc_cidr} of "
                             f"region {other.name!r}", "pick a CIDR that does not overlap")


# region network stack ----------------------------------------------------------------------------------------
def _iam_resources(host: Host, region: str, legacy_batch_role: bool = False) -> dict:
    partition, account = "${AWS::Partition}", "${AWS::AccountId}"
    prefix = names.prefix(host)
    main = iam.main_region(host)
    repos = [f"arn:{partition}:ecr:{region}:{account}:repository/{prefix.lower()}*"]
    log_groups = iam.log_group_arns(host, partition, account)
    execution = [
        # ECR hands out its login token account-wide (AWS: Resource "*")
        {"Sid": "EcrLogin", "Effect": "Allow", "Action": "ecr:GetAuthorizationToken", "Resource": "*"},
        {"Sid": "PullHostImages", "Effect": "Allow", "Action": iam.ECR_PULL, "Resource": repos},
        {"Sid": "WorkerLogs", "Effect": "Allow", "Action": iam.LOG_WRITE, "Resource": log_groups},
        iam.definition_secrets_statement(host, partition, account),  # Batch resolves definitions' --secret
        # the main region's repositories are encrypted with the host's key, when it names one (replicas in
        # other regions cannot be: a KMS key is regional; ECR picks their encryption when it replicates)
        *(iam.key_statements(host, partition, account, ("ecr",)) if region == main else []),
    ]
    legacy = {"BatchServiceRole": {"Type": "AWS::IAM::Role", "Properties": {
        "PermissionsBoundary": boundary(host),
        "RoleName": role_name(host, region, "batch"),
        "Description": f"kept for host {host.name}'s compute environments in {region} made before hyper used "
                       "Batch's service-linked role; goes once they are replaced",
        "AssumeRolePolicyDocument": _assume("batch.amazonaws.com"),
        "ManagedPolicyArns": [_managed("service-role/AWSBatchServiceRole")]}}} if legacy_batch_role else {}
    return {
        **legacy,
        "InstanceRole": {"Type": "AWS::IAM::Role", "Properties": {
            "PermissionsBoundary": boundary(host),
            "RoleName": role_name(host, region, "instance"),
            "Description": f"ECS container instances of host {host.name} in {region} (the ECS agent's rights)",
            "AssumeRolePolicyDocument": _assume("ec2.amazonaws.com"),
            "ManagedPolicyArns": [_managed("service-role/AmazonEC2ContainerServiceforEC2Role")]}},
        "InstanceProfile": {"Type": "AWS::IAM::InstanceProfile", "Properties": {
            "InstanceProfileName": role_name(host, region, "instance"),
            "Roles": [{"Ref": "InstanceRole"}]}},
        "ExecutionRole": {"Type": "AWS::IAM::Role", "Properties": {
            "PermissionsBoundary": boundary(host),
            "RoleName": role_name(host, region, "execution"),
            "Description": f"Pulls host {host.name}'s worker images and writes worker logs ({region})",
            "AssumeRolePolicyDocument": _assume("ecs-tasks.amazonaws.com"),
            "Policies": [{"PolicyName": "pull-and-log", "PolicyDocument": _sub(
                {"Version": "2012-10-17", "Statement": execution})}]}},
        "JobRole": {"Type": "AWS::IAM::Role", "Properties": {
            "PermissionsBoundary": boundary(host),
            "RoleName": role_name(host, region, "job"),
            "Description": f"Workers of host {host.name}: its tables and log group in {main}, nothing else",
            "AssumeRolePolicyDocument": _assume("ecs-tasks.amazonaws.com"),
            "Policies": [{"PolicyName": "worker", "PolicyDocument": _sub(
                {"Version": "2012-10-17", "Statement": iam.worker_statements(host, partition, account)})}]}},
    }


def _endpoints(region: Region, main: bool, subnets: Any, route_tables: list | None) -> dict:
    vpc = region.vpc_id or {"Ref": "Vpc"}
    out: dict[str, Any] = {
        "EndpointSecurityGroup": {"Type": "AWS::EC2::SecurityGroup", "Properties": {
            "GroupDescription": "HTTPS from hyper workers to the VPC endpoints",
            "VpcId": vpc,
            "SecurityGroupIngress": [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
                                      "SourceSecurityGroupId": {"Fn::GetAtt": ["WorkerSecurityGroup", "GroupId"]},
                                      "Description": "workers"}],
            "SecurityGroupEgress": [{"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "CidrIp": "127.0.0.1/32",
                                     "Description": "no egress (endpoints only answer)"}]}},
    }
    # logs go to the main region's log group, so a hub region's Logs endpoint would never be used
    interfaces = [("EcrApiEndpoint", "ecr.api"), ("EcrDkrEndpoint", "ecr.dkr")] + ([("LogsEndpoint", "logs")]
                                                                                  if main else [])
    for logical, service in interfaces:
        out[logical] = {"Type": "AWS::EC2::VPCEndpoint", "Properties": {
            "VpcId": vpc, "VpcEndpointType": "Interface", "PrivateDnsEnabled": True,
            "ServiceName": {"Fn::Sub": f"com.amazonaws.${{AWS::Region}}.{service}"},
            "SubnetIds": subnets, "SecurityGroupIds": [{"Ref": "EndpointSecurityGroup"}]}}
    if route_tables:  # gateway endpoints need route tables: a VPC hyper made, or an existing VPC's route-tables
        gateways = [("S3Endpoint", "s3")] + ([("DynamoDbEndpoint", "dynamodb")] if main else [])
        for logical, service in gateways:
            out[logical] = {"Type": "AWS::EC2::VPCEndpoint", "Properties": {
                "VpcId": vpc, "VpcEndpointType": "Gateway", "RouteTableIds": route_tables,
                "ServiceName": {"Fn::Sub": f"com.amazonaws.${{AWS::Region}}.{service}"}}}
    return out


def _new_vpc(host: Host, region: Region) -> dict:
    private, public = _subnet_cidrs(region.vpc_cidr, region.name)
    label = f"{names.prefix(host)}{region.name}"
    resources: dict[str, Any] = {
        "Vpc": {"Type": "AWS::EC2::VPC", "Properties": {
            "CidrBlock": region.vpc_cidr, "EnableDnsSupport": True, "EnableDnsHostnames": True,
            "Tags": _tags(label)}},
        "InternetGateway": {"Type": "AWS::EC2::InternetGateway", "Properties": {"Tags": _tags(label)}},
        "GatewayAttachment": {"Type": "AWS::EC2::VPCGatewayAttachment", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "InternetGatewayId": {"Ref": "InternetGateway"}}},
    }
    for i, az in enumerate("AB"):
        # the region by name, not {"Ref": "AWS::Region"}: the same on AWS (the template is per region), and
        # moto's GetAZs reads only a literal
        zone = {"Fn::Select": [i, {"Fn::GetAZs": region.name}]}
        resources[f"PublicSubnet{az}"] = {"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "CidrBlock": public[i], "AvailabilityZone": zone,
            "Tags": _tags(f"{label}-public-{az.lower()}")}}
        resources[f"PrivateSubnet{az}"] = {"Type": "AWS::EC2::Subnet", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "CidrBlock": private[i], "AvailabilityZone": zone,
            "Tags": _tags(f"{label}-private-{az.lower()}")}}
    resources.update({
        # one NAT gateway: workers are batch jobs that tolerate an AZ outage better than a doubled NAT bill
        "NatAddress": {"Type": "AWS::EC2::EIP", "DependsOn": "GatewayAttachment",
                       "Properties": {"Domain": "vpc", "Tags": _tags(f"{label}-nat")}},
        "NatGateway": {"Type": "AWS::EC2::NatGateway", "Properties": {
            "AllocationId": {"Fn::GetAtt": ["NatAddress", "AllocationId"]}, "SubnetId": {"Ref": "PublicSubnetA"},
            "Tags": _tags(f"{label}-nat")}},
        "PublicRouteTable": {"Type": "AWS::EC2::RouteTable", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "Tags": _tags(f"{label}-public")}},
        "PublicDefaultRoute": {"Type": "AWS::EC2::Route", "DependsOn": "GatewayAttachment", "Properties": {
            "RouteTableId": {"Ref": "PublicRouteTable"}, "DestinationCidrBlock": "0.0.0.0/0",
            "GatewayId": {"Ref": "InternetGateway"}}},
        "PrivateRouteTable": {"Type": "AWS::EC2::RouteTable", "Properties": {
            "VpcId": {"Ref": "Vpc"}, "Tags": _tags(f"{label}-private")}},
        "PrivateDefaultRoute": {"Type": "AWS::EC2::Route", "Properties": {
            "RouteTableId": {"Ref": "PrivateRouteTable"}, "DestinationCidrBlock": "0.0.0.0/0",
            "NatGatewayId": {"Ref": "NatGateway"}}},
    })
    for az in "AB":
        for kind in ("Public", "Private"):
            resources[f"{kind}Subnet{az}Routes"] = {"Type": "AWS::EC2::SubnetRouteTableAssociation", "Properties": {
                "SubnetId": {"Ref": f"{kind}Subnet{az}"}, "RouteTableId": {"Ref": f"{kind}RouteTable"}}}
    return resources


def render_region_stack(host: Host, region: Region, *, other_regions: Iterable[Region] = (),
                        legacy_batch_role: bool = False) -> dict:
    """The network stack of one region: VPC (new or imported), worker security group, endpoints, IAM roles.

    ``other_regions`` are the host's other regions, for the CIDR overlap check. ``legacy_batch_role`` keeps the
    custom Batch service role (and its export) that compute environments made by older hyper versions still
    import; CloudFormation refuses to drop an export in use, so it goes on the region's first update after
    those clusters were replaced (``environment_generation``).
    """
    if host.type != "aws":
        raise HyperError(f"host {host.name!r} is a {host.type} host: regions are for aws hosts",
                         "select an aws host (--host NAME)")
    what = f"region {region.name!r}"
    if region.vpc_id and region.vpc_cidr:
        raise HyperError(f"{what}: give vpc-cidr (a new VPC) or vpc-id (an existing one), not both", "drop one")
    if not region.vpc_id and not region.vpc_cidr:
        raise HyperError(f"{what}: give vpc-cidr for a new VPC or vpc-id and subnets for an existing one",
                         "e.g. --vpc-cidr 10.20.0.0/16")
    check_cidrs(region, other_regions)
    if region.route_tables and not region.vpc_id:
        raise HyperError(f"{what}: route-tables are for an existing VPC (--vpc-id)",
                         "a VPC hyper makes has its own route tables: drop --route-tables")
    main = region.main or region.name == host.main_region
    if region.vpc_id:
        if not _VPC_ID.match(region.vpc_id):
            raise HyperError(f"{what}: {region.vpc_id!r} is not a VPC id", "e.g. vpc-0123456789abcdef0")
        if not region.subnets:
            raise HyperError(f"{what}: an existing VPC needs the subnets workers may use",
                             "give --subnets subnet-aaa,subnet-bbb (private subnets with a route out)")
        bad = [s for s in region.subnets if not _SUBNET_ID.match(s)]
        if bad:
            raise HyperError(f"{what}: {bad[0]!r} is not a subnet id", "e.g. subnet-0123456789abcdef0")
        bad = [t for t in region.route_tables if not _ROUTE_TABLE_ID.match(t)]
        if bad:
            raise HyperError(f"{what}: {bad[0]!r} is not a route table id", "e.g. rtb-0123456789abcdef0")
        resources: dict[str, Any] = {}
        vpc: Any = region.vpc_id
        subnets: Any = list(region.subnets)
        route_tables: list[Any] | None = list(region.route_tables) or None
    else:
        resources = _new_vpc(host, region)
        vpc = {"Ref": "Vpc"}
        subnets = [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}]
        route_tables = [{"Ref": "PrivateRouteTable"}]
    resources["WorkerSecurityGroup"] = {"Type": "AWS::EC2::SecurityGroup", "Properties": {
        "GroupDescription": f"hyper workers of host {host.name}: no inbound traffic",
        "VpcId": vpc,
        "SecurityGroupEgress": [{"IpProtocol": "-1", "CidrIp": "0.0.0.0/0",
                                 "Description": "images, AWS APIs and whatever jobs fetch"}],
        "Tags": _tags(f"{names.prefix(host)}workers")}}
    if region.vpc_endpoints:
        resources.update(_endpoints(region, main, subnets, route_tables))
    resources.update(_iam_resources(host, region.name, legacy_batch_role))
    outputs = {
        "VpcId": _output(host, "VpcId", vpc, "the VPC workers run in"),
        "SubnetIds": _output(host, "SubnetIds", {"Fn::Join": [",", subnets]}, "subnets of the compute environments"),
        "SecurityGroupId": _output(host, "SecurityGroupId", {"Fn::GetAtt": ["WorkerSecurityGroup", "GroupId"]},
                                   "the workers' security group"),
        "InstanceProfileArn": _output(host, "InstanceProfileArn", {"Fn::GetAtt": ["InstanceProfile", "Arn"]},
                                      "the container instances' profile"),
        "ExecutionRoleArn": _output(host, "ExecutionRoleArn", {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
                                    "pulls images, writes worker logs"),
        "JobRoleArn": _output(host, "JobRoleArn", {"Fn::GetAtt": ["JobRole", "Arn"]}, "the workers' own rights"),
    }
    if legacy_batch_role:
        outputs["BatchServiceRoleArn"] = _output(host, "BatchServiceRoleArn", {"Fn::GetAtt": ["BatchServiceRole",
                                                                                            "Arn"]},
                                                 "the custom Batch service role of older compute environments")
    kind = f"existing VPC {region.vpc_id}" if region.vpc_id else f"new VPC {region.vpc_cidr}"
    return _template(f"hyper host {host.name}: network and IAM roles in {region.name} ({kind})", resources, outputs)
