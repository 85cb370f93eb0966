"""Issue 11 (security, H2/H3): no policy hyper writes or prints can escalate.

Every document `hyper iam policy --role ...` prints and every role the rendered stacks create pass one check:
no action "*" (or "service:*"), no iam:PassRole on "*", no role creation or change of a role's rights without
the host's permissions boundary, managed policies only the ones hyper uses, EC2 network calls only under the
host's tag, and users/workers never writing resources or configuration. moto does not evaluate IAM
conditions, so these are checks of the documents; the AWS managed policies are compared against the copies
of AWS's published documents that moto bundles (recorded real documents).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hyper.aws import iam, templates
from hyper.aws.managed_policies import MANAGED_ACTIONS
from hyper.config import Host, save_hosts
from hyper.models import Cluster, Region
from hyper.provisioning.eks import render_eks_stack

PROD = Host(name="prod", type="aws", main_region="us-east-1")
ACCOUNT = "123456789012"
BOUNDING = {"iam:CreateRole", "iam:PutRolePolicy", "iam:AttachRolePolicy"}


def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def check_statements(statements: list[dict], where: str) -> None:
    for st in statements:
        actions = _list(st["Action"])
        resources = [json.dumps(r) if isinstance(r, dict) else r for r in _list(st["Resource"])]
        for action in actions:
            assert action != "*" and not action.endswith(":*"), f"{where}: action {action}"
        if "iam:PassRole" in actions:
            assert "*" not in resources, f"{where}: iam:PassRole on *"
        if BOUNDING & set(actions):
            condition = st.get("Condition", {}).get("StringEquals", {})
            assert "iam:PermissionsBoundary" in condition, f"{where}: {BOUNDING & set(actions)} without a boundary"
        if "iam:AttachRolePolicy" in actions:
            allowed = st["Condition"]["ArnEquals"]["iam:PolicyARN"]
            assert sorted(a.rsplit("policy/", 1)[1] for a in allowed) == sorted(iam.BATCH_POLICIES + iam.EKS_POLICIES)


def cli_policy(tmp_path, monkeypatch, role: str) -> dict:
    import typer

    from hyper.cli import iam as iam_cli

    monkeypatch.setenv("HYPER_HOME", str(tmp_path))
    monkeypatch.delenv("HYPER_HOST", raising=False)
    save_hosts({"prod": PROD}, "prod")
    app = typer.Typer()
    app.add_typer(iam_cli.app, name="iam")
    result = CliRunner().invoke(app, ["iam", "policy", "--role", role, "--account-id", ACCOUNT])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.mark.parametrize("role", iam.ROLES)
def test_printed_policies_cannot_escalate(tmp_path, monkeypatch, role):
    check_statements(cli_policy(tmp_path, monkeypatch, role)["Statement"], f"--role {role}")


def rendered_roles() -> dict[str, dict]:
    stacks = {
        # with the custom Batch role older compute environments still use, so it is checked too
        "region": templates.render_region_stack(PROD, Region(name="us-east-1", main=True, vpc_cidr="10.0.0.0/16"),
                                                legacy_batch_role=True),
        "eks": render_eks_stack(PROD, Cluster(name="g", type="eks", eks_cluster="k", create_eks=True,
                                              regions=["us-east-1"]), "us-east-1"),
    }
    return {f"{s}/{k}": v["Properties"] for s, t in stacks.items() for k, v in t["Resources"].items()
            if v["Type"] == "AWS::IAM::Role"}


def test_every_rendered_role_has_the_boundary_and_bounded_policies():
    roles = rendered_roles()
    assert set(roles) == {"region/BatchServiceRole", "region/InstanceRole", "region/ExecutionRole",
                          "region/JobRole", "eks/WorkerRole", "eks/ClusterRole", "eks/NodeRole"}
    for where, props in roles.items():
        expected = "eks-boundary" if where in ("eks/ClusterRole", "eks/NodeRole") else "boundary"
        assert props["PermissionsBoundary"] == {
            "Fn::Sub": f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/hyper-prod-{expected}"}, where
        for policy in props.get("Policies", []):
            document = policy["PolicyDocument"]
            document = document.get("Fn::Sub", document) if isinstance(document, dict) else document
            check_statements(document["Statement"], where)
        managed = json.dumps(props.get("ManagedPolicyArns", []))
        attached = re.findall(r"iam::aws:policy/([\w/-]+)", managed)
        assert set(attached) <= set(iam.BATCH_POLICIES + iam.EKS_POLICIES), where
        # what AWS attaches is inside the boundary the role carries
        bound = {a for st in iam.render_policy(PROD, expected, account=ACCOUNT)["Statement"] for a in st["Action"]}
        for name in attached:
            missing = set(MANAGED_ACTIONS[name][1]) - bound - iam.IAM_ACTIONS_SCOPED_APART
            assert not missing, (where, name, missing)


def test_admin_creates_roles_only_with_the_boundary_and_ec2_only_under_the_host_tag():
    admin = iam.render_policy(PROD, "admin", account=ACCOUNT)["Statement"]
    boundaries = [f"arn:aws:iam::{ACCOUNT}:policy/hyper-prod-boundary",
                  f"arn:aws:iam::{ACCOUNT}:policy/hyper-prod-eks-boundary"]
    for st in admin:
        if BOUNDING & set(st["Action"]):
            assert st["Condition"]["StringEquals"]["iam:PermissionsBoundary"] == boundaries
        # nobody hyper's admin policy covers may change a boundary or create policies
        assert not {"iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:SetDefaultPolicyVersion",
                    "iam:DeleteRolePermissionsBoundary", "iam:PutRolePermissionsBoundary"} & set(st["Action"])
        ec2 = [a for a in st["Action"] if a.startswith("ec2:") and not a.startswith("ec2:Describe")
               and a not in ("ec2:DescribeSpotPriceHistory", "ec2:GetSpotPlacementScores")]
        if ec2:
            condition = json.dumps(st.get("Condition", {}))
            assert "hyper:prefix" in condition or "ec2:CreateAction" in condition, (st["Sid"], ec2)
            if "hyper:prefix" in condition:
                assert "hyper-prod-" in condition


def _meta_writes(statements: list[dict]) -> list[dict]:
    return [st for st in statements if {"dynamodb:PutItem", "dynamodb:UpdateItem"} & set(st["Action"])
            and any(r.endswith("table/hyper-prod-meta") for r in _list(st["Resource"]))]


@pytest.mark.parametrize("role", ["user", "worker", "scheduler"])
def test_users_workers_and_the_scheduler_never_write_resources_or_config(role):
    statements = iam.render_policy(PROD, role, account=ACCOUNT)["Statement"]
    writes = _meta_writes(statements)
    assert writes
    for st in writes:
        keys = st["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
        assert not any(re.fullmatch(k.replace("*", ".*"), probe) for k in keys
                       for probe in ("res#definition", "res#image", "config")), (role, keys)
    jobs_writes = [st for st in statements if "dynamodb:PutItem" in st["Action"] and "Condition" not in st]
    assert all("meta" not in r for st in jobs_writes for r in _list(st["Resource"]))


def test_the_admin_writes_resources():
    assert any("Condition" not in st for st in _meta_writes(iam.render_policy(PROD, "admin", account=ACCOUNT)
                                                            ["Statement"]))


def test_recorded_managed_policies_match_the_documents_aws_publishes():
    """moto bundles AWS's published managed policy documents; ours must hold the same actions."""
    import moto.iam

    source = (Path(moto.iam.__file__).parent / "aws_managed_policies.py").read_text()
    published = json.loads(re.search(r'aws_managed_policies_data = """(.*)"""', source, re.S).group(1))
    for path, (version, actions) in MANAGED_ACTIONS.items():
        doc = published[path.rsplit("/", 1)[-1]]
        assert doc["DefaultVersionId"] == version, path
        theirs = {a for st in doc["Document"]["Statement"] for a in _list(st["Action"])}
        ours = set(actions)
        spelled = {a for a in theirs if a.endswith("*")}
        for wildcard in spelled:  # e.g. ecs:Submit* spelled out as its three actions
            assert any(a.startswith(wildcard[:-1]) for a in ours)
        assert theirs - spelled == ours - {a for w in spelled for a in ours if a.startswith(w[:-1])}, path
