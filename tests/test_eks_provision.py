"""Provisioning an eks cluster: the per-region CloudFormation stack (cfn-lint clean, worker role only for EKS
Pod Identity and scoped to the host's tables and log group), the namespace + service account step against the
in-memory API server, and `hyper clusters add-cluster --type eks --dry-run` on an aws host on moto."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from hyper.backends.kubeapi import KubeApi
from hyper.errors import HyperError
from hyper.models import Cluster
from hyper.provisioning.eks import apply_namespace, namespace_manifests, plan_cluster, render_eks_stack
from tests.kube_fake import FakeKube, write_kubeconfig
from tests.test_scheduler_aws import HOST
from tests.test_templates import lint_errors


def gpu(**kw) -> Cluster:
    values = dict(name="gpu", type="eks", eks_cluster="ml", regions=["us-east-1", "eu-west-1"],
                  instance_types=["g5.xlarge", "g6.xlarge"], spot=True, max_vcpus=64)
    values.update(kw)
    return Cluster(**values)


@pytest.mark.parametrize("create", [False, True])
def test_eks_stack_passes_cfn_lint(create):
    assert lint_errors(render_eks_stack(HOST, gpu(create_eks=create), "eu-west-1"), "eu-west-1") == []


def test_worker_role_is_pod_identity_only_and_scoped_to_the_host():
    t = render_eks_stack(HOST, gpu(), "us-east-1")
    role = t["Resources"]["WorkerRole"]["Properties"]
    (trust,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "pods.eks.amazonaws.com"}
    assert trust["Action"] == ["sts:AssumeRole", "sts:TagSession"]
    text = json.dumps(role["Policies"])
    assert '"Resource": "*"' not in text and "hyper-prod-" in text and "/hyper/hyper-prod" in text
    assoc = t["Resources"]["WorkerPodIdentity"]["Properties"]
    assert (assoc["ClusterName"], assoc["Namespace"], assoc["ServiceAccount"]) == ("ml", "hyper", "hyper-worker")
    assert set(t["Resources"]) == {"WorkerRole", "WorkerPodIdentity"}  # an existing EKS cluster is not touched


def test_create_eks_adds_the_cluster_and_a_gpu_spot_node_group_on_the_nvidia_ami():
    t = render_eks_stack(HOST, gpu(create_eks=True), "us-east-1")
    ng = t["Resources"]["Workers"]["Properties"]
    assert (ng["AmiType"], ng["CapacityType"], ng["InstanceTypes"]) == (
        "AL2023_x86_64_NVIDIA", "SPOT", ["g5.xlarge", "g6.xlarge"])
    assert ng["Taints"] == [{"Key": "nvidia.com/gpu", "Value": "true", "Effect": "NO_SCHEDULE"}]
    assert t["Resources"]["PodIdentityAgent"]["Properties"]["AddonName"] == "eks-pod-identity-agent"
    assert t["Resources"]["WorkerPodIdentity"]["Properties"]["ClusterName"] == {"Ref": "EksCluster"}
    cpu = render_eks_stack(HOST, gpu(create_eks=True, instance_types=["m5.xlarge"], spot=False), "us-east-1")
    assert cpu["Resources"]["Workers"]["Properties"]["AmiType"] == "AL2023_x86_64_STANDARD"
    assert "Taints" not in cpu["Resources"]["Workers"]["Properties"]


def test_plan_is_a_stack_and_a_namespace_step_per_region_and_the_namespace_step_applies(tmp_path):
    fake = FakeKube(namespaces=("default",))
    kc = write_kubeconfig(tmp_path / "kc", {"us-east-1": "ml", "eu-west-1": "ml"})
    cluster = gpu(kubeconfig=kc, namespace="gpu-jobs")
    steps = plan_cluster(SimpleNamespace(host=HOST), cluster,
                         apis={"us-east-1": KubeApi(cluster, "us-east-1", transport=fake.transport())})
    assert [s.describe() for s in steps] == [
        "apply-namespace ml/gpu-jobs in us-east-1", "deploy-stack hyper-prod-eks-gpu in us-east-1",
        "apply-namespace ml/gpu-jobs in eu-west-1", "deploy-stack hyper-prod-eks-gpu in eu-west-1"]
    created = plan_cluster(SimpleNamespace(host=HOST), gpu(create_eks=True))
    assert [s.action for s in created[:2]] == ["deploy-stack", "apply-namespace"]  # the stack makes the cluster
    steps[0].run()
    assert "gpu-jobs" in fake.namespaces
    assert fake.objects[("ServiceAccount", "gpu-jobs", "hyper-worker")]["metadata"]["labels"] == {
        "app.kubernetes.io/managed-by": "hyper", "hyper/prefix": "hyper-prod"}
    shrunk = plan_cluster(SimpleNamespace(host=HOST), gpu(regions=["us-east-1"]), previous=cluster)
    assert shrunk[0].describe() == "delete-stack hyper-prod-eks-gpu in eu-west-1"


def test_an_api_server_refusing_the_namespace_is_one_line():
    fake = FakeKube()

    class Refusing:
        def apply(self, manifest):
            from hyper.backends.kubeapi import KubeError

            raise KubeError(403, "Forbidden", 'namespaces is forbidden: User "ci" cannot create resource')

    with pytest.raises(HyperError) as exc:
        apply_namespace(gpu(), "us-east-1", namespace_manifests(HOST, gpu()), Refusing())
    assert exc.value.message == ("EKS cluster ml in us-east-1: cannot apply Namespace hyper: 403: namespaces is "
                                 'forbidden: User "ci" cannot create resource')
    assert fake.jobs() == []


def test_no_eks_cluster_name_is_refused():
    with pytest.raises(HyperError, match="needs --eks-cluster NAME"):
        render_eks_stack(HOST, gpu(eks_cluster=""), "us-east-1")


def test_add_cluster_type_eks_dry_run_on_an_aws_host(aws_host, tmp_path):
    from hyper.cli.app import app

    runner = CliRunner()
    kc = write_kubeconfig(tmp_path / "kc", {"us-east-1": "ml"})
    result = runner.invoke(app, ["clusters", "add-cluster", "k8s", "--type", "eks", "--eks-cluster", "ml",
                                 "--regions", "us-east-1", "--instance-types", "g5.xlarge", "--kubeconfig", kc,
                                 "--namespace", "gpu-jobs", "--dry-run"])
    assert result.exit_code == 0, result.stderr
    prefix = aws_host.table_prefix
    assert f"--- # cluster k8s: would create stack {prefix}eks-k8s in us-east-1\n" in result.stdout
    assert "--- # cluster k8s: would apply-namespace ml/gpu-jobs in us-east-1\n" in result.stdout
    assert "pods.eks.amazonaws.com" in result.stdout and "*id" not in result.stdout
    bad = runner.invoke(app, ["clusters", "add-cluster", "k9s", "--type", "eks", "--regions", "us-east-1",
                              "--dry-run"])
    assert bad.exit_code != 0 and "names no EKS cluster" in bad.stderr and "Traceback" not in bad.stderr
    broken = tmp_path / "broken.j2"
    broken.write_text("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ name }\n")
    bad_template = runner.invoke(app, ["clusters", "add-cluster", "k9s", "--type", "eks", "--eks-cluster", "ml",
                                       "--regions", "us-east-1", "--template", str(broken)])
    assert bad_template.exit_code == 1 and bad_template.stdout == ""
    assert bad_template.stderr == f"hyper clusters: template {broken} line 4: unexpected '}}' (fix the template " \
        "(Jinja2 syntax))\n"
    assert "k9s" not in runner.invoke(app, ["clusters", "list-clusters"]).stdout  # nothing recorded
    bad_ns = runner.invoke(app, ["clusters", "add-cluster", "k9s", "--type", "eks", "--eks-cluster", "ml",
                                 "--namespace", "Bad_NS", "--regions", "us-east-1", "--dry-run"])
    assert bad_ns.exit_code != 0 and "is not a Kubernetes name" in bad_ns.stderr


from tests.test_scheduler_aws import aws_host, batch_role  # noqa: E402,F401  (fixtures)
