"""Provisioning an ``eks`` cluster: per region, one CloudFormation stack ``<prefix>eks-<cluster>`` and the
namespace and service account the worker Jobs use.

The stack holds the worker IAM role, which only ``pods.eks.amazonaws.com`` may assume (EKS Pod Identity:
``sts:AssumeRole`` + ``sts:TagSession``), scoped by :func:`hyper.aws.iam.worker_statements` to the host's
tables and log group, and the ``AWS::EKS::PodIdentityAssociation`` binding it to ``<namespace>/hyper-worker``
in the EKS cluster. Workers therefore never see static keys. With ``--create-eks`` the stack also creates the
EKS cluster itself (in the region's hyper network: its private subnets and security group), the Pod Identity
agent add-on and a managed node group of the cluster's instance types, ``AL2023_x86_64_NVIDIA`` for GPU
types (the NVIDIA driver and device plugin are in that AMI) with a ``nvidia.com/gpu`` NoSchedule taint, spot
or on-demand as the cluster says. Otherwise the EKS cluster must exist (``--eks-cluster NAME``), and the
stack only adds what hyper needs to it.
"""

from __future__ import annotations

import json
from functools import partial
from typing import TYPE_CHECKING, Any

from hyper.aws import iam, names
from hyper.aws.templates import _sub, boundary, export_name, is_gpu_type, role_name
from hyper.backends.kubernetes import SERVICE_ACCOUNT, namespace_of
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster
from hyper.provisioning.steps import removal_steps

if TYPE_CHECKING:
    from hyper.services.context import Context
    from hyper.services.provision import Step
    from hyper.services.resource_checks import ResourceView

EKS_VERSION = "1.33"
NVIDIA_AMI = "AL2023_x86_64_NVIDIA"
STANDARD_AMI = "AL2023_x86_64_STANDARD"
_MANAGED = "arn:${AWS::Partition}:iam::aws:policy/"


def _unshared(value: Any) -> Any:
    return json.loads(json.dumps(value))


def stack_name(host: Host, cluster: Cluster) -> str:
    return names.stack(host, "eks", cluster.name)


def _trust(service: str, tag_session: bool = False) -> dict:
    actions = ["sts:AssumeRole", "sts:TagSession"] if tag_session else "sts:AssumeRole"
    return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": service},
                                                    "Action": actions}]}


def render_eks_stack(host: Host, cluster: Cluster, region: str) -> dict:
    """The region's EKS stack for a cluster (pure)."""
    if not cluster.eks_cluster:
        raise HyperError(f"cluster {cluster.name!r}: an eks cluster needs --eks-cluster NAME",
                         f"`hyper clusters update-cluster {cluster.name} --eks-cluster NAME` (with --create-eks "
                         "hyper creates it)")
    partition, account = "${AWS::Partition}", "${AWS::AccountId}"
    identity = {iam.HOST_TAG: host.name, iam.PREFIX_TAG: names.prefix(host)}
    tags = [{"Key": k, "Value": v} for k, v in identity.items()]
    resources: dict[str, Any] = {
        "WorkerRole": {"Type": "AWS::IAM::Role", "Properties": {
            "PermissionsBoundary": boundary(host),
            "RoleName": role_name(host, region, f"eks-{cluster.name}"),
            "Description": f"hyper host {host.name}: EKS workers of cluster {cluster.name} (Pod Identity)",
            "AssumeRolePolicyDocument": _trust("pods.eks.amazonaws.com", tag_session=True),
            "Policies": [{"PolicyName": "worker", "PolicyDocument": _sub({
                "Version": "2012-10-17", "Statement": iam.worker_statements(host, partition, account)})}],
            "Tags": tags}},
    }
    cluster_name: Any = cluster.eks_cluster
    depends: list[str] = []
    if cluster.create_eks:
        def imported(key: str) -> dict:
            return {"Fn::ImportValue": export_name(host, key)}

        types = cluster.instance_types or ["g5.xlarge"]
        gpu = any(is_gpu_type(t) for t in types)
        resources.update({
            "ClusterRole": {"Type": "AWS::IAM::Role", "Properties": {
                "PermissionsBoundary": boundary(host, "eks-boundary"),
                "AssumeRolePolicyDocument": _trust("eks.amazonaws.com"),
                "ManagedPolicyArns": _sub([_MANAGED + "AmazonEKSClusterPolicy"]), "Tags": tags}},
            "NodeRole": {"Type": "AWS::IAM::Role", "Properties": {
                "PermissionsBoundary": boundary(host, "eks-boundary"),
                "AssumeRolePolicyDocument": _trust("ec2.amazonaws.com"),
                "ManagedPolicyArns": _sub([_MANAGED + p for p in (
                    "AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")]),
                "Tags": tags}},
            "EksCluster": {"Type": "AWS::EKS::Cluster", "Properties": {
                "Name": cluster.eks_cluster, "Version": EKS_VERSION,
                "RoleArn": {"Fn::GetAtt": ["ClusterRole", "Arn"]},
                "AccessConfig": {"AuthenticationMode": "API_AND_CONFIG_MAP",
                                 "BootstrapClusterCreatorAdminPermissions": True},
                "ResourcesVpcConfig": {"SubnetIds": {"Fn::Split": [",", imported("SubnetIds")]},
                                       "SecurityGroupIds": [imported("SecurityGroupId")],
                                       "EndpointPrivateAccess": True, "EndpointPublicAccess": True},
                "Tags": tags}},
            "PodIdentityAgent": {"Type": "AWS::EKS::Addon", "Properties": {
                "ClusterName": {"Ref": "EksCluster"}, "AddonName": "eks-pod-identity-agent",
                "ResolveConflicts": "OVERWRITE", "Tags": tags}},
            "Workers": {"Type": "AWS::EKS::Nodegroup", "Properties": {
                "ClusterName": {"Ref": "EksCluster"}, "NodeRole": {"Fn::GetAtt": ["NodeRole", "Arn"]},
                "Subnets": {"Fn::Split": [",", imported("SubnetIds")]},
                "AmiType": NVIDIA_AMI if gpu else STANDARD_AMI, "InstanceTypes": types,
                "CapacityType": "SPOT" if cluster.spot else "ON_DEMAND",
                "ScalingConfig": {"MinSize": 0, "DesiredSize": max(0, cluster.min_vcpus // 4),
                                  "MaxSize": max(1, (cluster.max_vcpus or 4) // 4)},
                "Labels": {"hyper/cluster": cluster.name},
                **({"Taints": [{"Key": "nvidia.com/gpu", "Value": "true", "Effect": "NO_SCHEDULE"}]} if gpu else {}),
                "Tags": identity}},
        })
        cluster_name = {"Ref": "EksCluster"}
        depends = ["PodIdentityAgent"]
    association: dict[str, Any] = {"Type": "AWS::EKS::PodIdentityAssociation", "Properties": {
        "ClusterName": cluster_name, "Namespace": namespace_of(cluster), "ServiceAccount": SERVICE_ACCOUNT,
        "RoleArn": {"Fn::GetAtt": ["WorkerRole", "Arn"]}, "Tags": tags}}
    if depends:
        association["DependsOn"] = depends
    resources["WorkerPodIdentity"] = association
    return _unshared({  # no shared sub-objects: --dry-run YAML stays free of anchors
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": f"hyper host {host.name}: EKS cluster {cluster.name} workers in {region}",
        "Resources": resources,
        "Outputs": {"WorkerRoleArn": {"Value": {"Fn::GetAtt": ["WorkerRole", "Arn"]}}},
    })


def namespace_manifests(host: Host, cluster: Cluster) -> list[dict]:
    """The namespace and the workers' service account (Pod Identity needs no annotation on it)."""
    ns = namespace_of(cluster)
    lab = {"app.kubernetes.io/managed-by": "hyper", "hyper/prefix": names.prefix(host).rstrip("-_")}
    return [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": dict(lab)}},
            {"apiVersion": "v1", "kind": "ServiceAccount",
             "metadata": {"name": SERVICE_ACCOUNT, "namespace": ns, "labels": dict(lab)},
             "automountServiceAccountToken": True}]


def apply_namespace(cluster: Cluster, region: str, manifests: list[dict], api: Any = None) -> None:
    from hyper.backends.kubeapi import KubeApi, KubeError

    api = api or KubeApi(cluster, region)
    for m in manifests:
        try:
            api.apply(m)
        except KubeError as exc:
            raise HyperError(f"EKS cluster {cluster.eks_cluster} in {region}: cannot apply {m['kind']} "
                             f"{m['metadata']['name']}: {exc.code or exc.reason}: {exc.message}",
                             "check the kubeconfig context's RBAC (it needs to create namespaces and service "
                             "accounts)") from None


def plan_cluster(ctx: Context, resource: Cluster, *, delete: bool = False, previous: Cluster | None = None,
                 view: ResourceView | None = None, apis: dict | None = None) -> list[Step]:
    """Steps per region: the namespace and service account and the EKS stack (not on delete: the EKS
    cluster, if hyper did not create it, keeps its namespace; a created one goes with the stack)."""
    from hyper.aws import stacks
    from hyper.services.provision import Step

    host = ctx.host
    name = stack_name(host, resource)
    steps = removal_steps(host, resource, previous, name, delete=delete)  # all on delete, else dropped regions
    if delete:
        return steps
    for region in resource.regions:
        template = render_eks_stack(host, resource, region)
        stack = Step("deploy-stack", region, name, template, partial(stacks.deploy_stack, host, region, name, template))
        manifests = namespace_manifests(host, resource)
        api = (apis or {}).get(region)
        namespace = Step("apply-namespace", region, f"{resource.eks_cluster}/{namespace_of(resource)}",
                         {"manifests": manifests},
                         partial(apply_namespace, resource, region, manifests, api))
        # an existing EKS cluster is reached first: an unknown one (or no kubeconfig context) deploys nothing;
        # a cluster the stack creates must exist before its namespace can
        steps.extend([stack, namespace] if resource.create_eks else [namespace, stack])
    return steps
