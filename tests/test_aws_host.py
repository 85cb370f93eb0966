"""An aws host end to end: its DynamoDB tables on moto's server (127.0.0.1), reached through boto3 with the
host's endpoint URL exactly as AWS would be; hosts, resources, apply/export and the q-commands against it.

On an aws host add-/update-/delete-* and apply deploy (CloudFormation stacks, Batch job definitions), here
into moto. The moto server is shared by the whole session, so every test works on a table (and stack) prefix
of its own and drops its tables when it ends. Most commands run in-process (typer's CliRunner); the ones a user or a script runs as
real processes (create-host, delete-host without a terminal, the q-commands) run through ``cli``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import uuid

import pytest
import yaml
from typer.testing import CliRunner

from hyper.cli.app import app
from qcmds import qdel, qstat, qsub
from tests.conftest import cli

runner = CliRunner()
URI = "123456789012.dkr.ecr.us-east-1.amazonaws.com/worker:1"


# ---------------------------------------------------------------- helpers


def hyper(*args, input=None, env=None):
    return runner.invoke(app, list(args), input=input, env=env)


def ok(*args, input=None, env=None) -> str:
    result = hyper(*args, input=input, env=env)
    assert result.exit_code == 0, (args, result.stdout, result.stderr)
    assert result.stderr == "", result.stderr
    return result.stdout


def fails(*args, code: int = 1, env=None) -> str:
    """The one line on stderr of a refused command (and no traceback)."""
    result = hyper(*args, env=env)
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def run_cli(*args, input: str | None = "", code: int = 0):
    """A real `hyper` process; stdin is an empty pipe (a script: no terminal to answer a prompt on)."""
    proc = cli("hyper", *args, input=input)
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


def aligned(*rows: tuple[str, ...]) -> str:
    """PBS-style plain text: left-aligned columns, one space apart, a dashed rule under the header."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [" ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, " ".join("-" * w for w in widths))
    return "\n".join(lines) + "\n"


class Aws:
    """moto's DynamoDB as an outsider sees it (boto3 with endpoint_url), and the prefixes a test uses."""

    def __init__(self, url: str):
        import boto3

        self.url = url
        self.db = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
        self.prefixes: list[str] = []

    def prefix(self, tag: str = "t") -> str:
        """A table prefix no other test uses (the server lives for the whole session)."""
        p = f"t{uuid.uuid4().hex[:8]}-{tag}-"
        self.prefixes.append(p)
        return p

    def claim(self, prefix: str) -> str:
        """Use a fixed prefix (e.g. the default hyper-prod-): drop whatever an earlier test left there."""
        self.drop(prefix)
        self.prefixes.append(prefix)
        return prefix

    def table(self, name: str) -> dict | None:
        try:
            return self.db.describe_table(TableName=name)["Table"]
        except self.db.exceptions.ResourceNotFoundException:
            return None

    def status(self, name: str) -> str | None:
        table = self.table(name)
        return None if table is None else table["TableStatus"]

    def stacks(self, prefix: str, region: str = "us-east-1") -> list[str]:
        """Stacks of a prefix that still exist (CloudFormation keeps deleted ones listed for a while)."""
        import boto3

        cfn = boto3.client("cloudformation", endpoint_url=self.url, region_name=region)
        return sorted(s["StackName"] for s in cfn.list_stacks()["StackSummaries"]
                      if s["StackName"].startswith(prefix) and s["StackStatus"] != "DELETE_COMPLETE")

    def drop(self, prefix: str) -> None:
        for suffix in ("jobs", "meta"):
            try:  # hyper creates its tables with deletion protection on (a purge lifts it first, as here)
                self.db.update_table(TableName=f"{prefix}{suffix}", DeletionProtectionEnabled=False)
                self.db.delete_table(TableName=f"{prefix}{suffix}")
            except (self.db.exceptions.ResourceNotFoundException, self.db.exceptions.ResourceInUseException):
                pass


@pytest.fixture
def aws(home, moto_endpoint):
    import requests

    # Batch compute environments without Docker (moto's server-wide setting; test_provision_cli sets it too)
    requests.post(f"{moto_endpoint}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    a = Aws(moto_endpoint)
    yield a
    for p in a.prefixes:
        a.drop(p)


def create(aws: Aws, name: str, prefix: str, *extra: str) -> str:
    return ok("hosts", "create-host", name, "--type", "aws", "--main-region", "us-east-1",
              "--endpoint-url", aws.url, "--table-prefix", prefix, *extra)


def provision() -> None:
    """A small deployed set on the selected aws host: two regions, a cluster, a queue, an image, a definition."""
    assert ok("regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.30.0.0/16") == (
        "main region us-east-1 (ACTIVE)\n")
    assert ok("regions", "add-region", "eu-west-1", "--vpc-cidr", "10.20.0.0/16") == "added region eu-west-1 (ACTIVE)\n"
    assert ok("clusters", "add-cluster", "gpu", "--max-vcpus", "8") == "added cluster gpu (ACTIVE)\n"
    assert ok("queues", "add-queue", "q1", "--cluster", "gpu", "--weights", "us-east-1=3,eu-west-1=1") == (
        "added queue q1 (ACTIVE)\n")
    assert ok("images", "add-image", "img", "--uri", URI) == "added image img (ACTIVE)\n"
    assert ok("definitions", "add-definition", "small", "--image", "img", "--vcpus", "2", "--memory", "4GiB") == (
        "added definition small (ACTIVE)\n")


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there any more: connections are refused
    return port


MAIN_ONLY = ("Region    Main VPC Status  Message\n"
             "--------- ---- --- ------- " + "-" * 107 + "\n"
             "us-east-1 yes      PENDING holds the host's tables; deploy its network with `hyper regions "
             "init-main-region us-east-1 --vpc-cidr CIDR`\n")


# ---------------------------------------------------------------- 1. create-host


def test_create_host_makes_active_on_demand_tables_with_ttl(aws, home):
    aws.claim("hyper-prod-")  # the default prefix of a host named prod
    proc = run_cli("hosts", "create-host", "prod", "--type", "aws", "--main-region", "us-east-1",
                   "--endpoint-url", aws.url)
    assert proc.stdout == "created aws host prod (tables hyper-prod-jobs and hyper-prod-meta in us-east-1); selected\n"
    assert proc.stderr == ""
    for name in ("hyper-prod-jobs", "hyper-prod-meta"):
        table = aws.table(name)
        assert table["TableStatus"] == "ACTIVE"
        assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = aws.db.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        assert (ttl["TimeToLiveStatus"], ttl["AttributeName"]) == ("ENABLED", "expires")
    gsis = aws.table("hyper-prod-jobs")["GlobalSecondaryIndexes"]
    assert sorted(g["IndexName"] for g in gsis) == ["by_queue", "leases", "ready"]
    assert {g["IndexStatus"] for g in gsis} == {"ACTIVE"}

    # hosts.yaml: 0600, names, no secret (the fake keys are in this very environment)
    path = home / "hosts.yaml"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert yaml.safe_load(text) == {"selected": "prod", "hosts": {"prod": {
        "type": "aws", "main_region": "us-east-1", "endpoint_url": aws.url}}}
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "testing" and "testing" not in text
    assert not re.search(r"secret|access_key|token|password", text, re.I)

    # the main region is a region resource from the start
    assert ok("regions", "list-regions") == MAIN_ONLY

    # once only
    assert fails("hosts", "create-host", "prod", "--type", "aws", "--main-region", "us-east-1",
                 "--endpoint-url", aws.url) == (
        "hyper hosts: host 'prod' already exists (pick another name, or select it with `hyper hosts select-host "
        "prod`)")
    assert path.read_text() == text

    # a second host in the same region with another prefix has tables of its own
    other = aws.prefix("staging")
    assert create(aws, "staging", other, "--no-select") == (
        f"created aws host staging (tables {other}jobs and {other}meta in us-east-1)\n")
    assert aws.status(f"{other}jobs") == aws.status(f"{other}meta") == "ACTIVE"
    assert ok("--host", "staging", "regions", "add-region", "eu-west-1", "--vpc-cidr", "10.20.0.0/16") == (
        "added region eu-west-1 (ACTIVE)\n")
    assert ok("regions", "list-regions") == MAIN_ONLY  # prod (selected) does not see staging's region
    assert ok("--host", "staging", "regions", "list-regions").splitlines()[2] == (
        "eu-west-1 no   10.20.0.0/16 ACTIVE")
    assert aws.stacks(other, "eu-west-1") == [f"{other}network"]  # its stacks carry its prefix too
    assert aws.stacks("hyper-prod-", "eu-west-1") == []
    assert yaml.safe_load(path.read_text())["selected"] == "prod"


def test_create_host_refuses_a_prefix_another_host_already_uses(aws):
    shared = aws.prefix("shared")
    create(aws, "one", shared)
    ok("images", "add-image", "img", "--uri", URI)
    result = hyper("hosts", "create-host", "two", "--type", "aws", "--main-region", "us-east-1",
                   "--endpoint-url", aws.url, "--table-prefix", shared)
    # two hosts on one set of tables: `delete-host two --purge` would erase every job and resource of `one`
    assert result.exit_code != 0
    assert result.stderr == (f"hyper hosts: tables {shared}jobs and {shared}meta already exist (host 'one') (adopt "
                             f"them with `hyper hosts import-deployment --table-prefix {shared} --main-region "
                             "us-east-1`, or choose another --table-prefix)\n")
    assert "two" not in ok("hosts", "list-hosts")


# ---------------------------------------------------------------- 2. list, select, override, delete


def test_list_select_override_and_delete_hosts(aws, home):
    prod, dev = aws.prefix("prod"), aws.prefix("dev")
    create(aws, "prod", prod)
    create(aws, "dev", dev)
    local = str(home / "local")

    def hosts_table(selected: str) -> str:
        def mark(name: str) -> str:
            return "*" if name == selected else ""

        return aligned(("", "Host", "Type", "Main region", "Profile", "Endpoint", "State"),
                       ("", "local", "local", "", "", "", local),
                       (mark("dev"), "dev", "aws", "us-east-1", "", aws.url, f"{dev}* in us-east-1"),
                       (mark("prod"), "prod", "aws", "us-east-1", "", aws.url, f"{prod}* in us-east-1"))

    assert ok("hosts", "list-hosts") == hosts_table("dev")
    assert hosts_table("dev").splitlines()[3].startswith("* dev   aws   us-east-1           http://127.0.0.1:")
    assert json.loads(ok("hosts", "list-hosts", "-o", "json")) == [
        {"name": "local", "type": "local", "selected": "", "main_region": "", "profile": "", "endpoint_url": "",
         "state": local},
        {"name": "dev", "type": "aws", "selected": "*", "main_region": "us-east-1", "profile": "",
         "endpoint_url": aws.url, "state": f"{dev}* in us-east-1"},
        {"name": "prod", "type": "aws", "selected": "", "main_region": "us-east-1", "profile": "",
         "endpoint_url": aws.url, "state": f"{prod}* in us-east-1"}]

    assert ok("hosts", "select-host", "prod") == "selected host prod\n"
    assert ok("hosts", "list-hosts") == hosts_table("prod")
    assert fails("hosts", "select-host", "nope") == "hyper hosts: unknown host 'nope' (known hosts: dev, local, prod)"

    # prod is selected; --host and HYPER_HOST pick another per command, --host first
    assert ok("images", "add-image", "only-prod", "--uri", URI) == "added image only-prod (ACTIVE)\n"
    on_prod = aligned(("Image", "Source", "Status", "Message"), ("only-prod", URI, "ACTIVE", ""))
    on_dev = "Image Source Status Message\n----- ------ ------ -------\n"
    assert ok("images", "list-images") == on_prod
    assert ok("images", "list-images", env={"HYPER_HOST": "dev"}) == on_dev
    assert ok("--host", "dev", "images", "list-images") == on_dev
    assert ok("--host", "prod", "images", "list-images", env={"HYPER_HOST": "dev"}) == on_prod
    assert ok("queues", "list-queues", env={"HYPER_HOST": "local"}).splitlines()[2].split()[:2] == [
        "default", "local"]
    assert fails("images", "list-images", env={"HYPER_HOST": "gone"}) == (
        "hyper images: unknown host 'gone' (known hosts: dev, local, prod; create one with `hyper hosts "
        "create-host`)")
    assert yaml.safe_load((home / "hosts.yaml").read_text())["selected"] == "prod"

    # a script (no terminal) never deletes unasked, with or without --purge
    before = (home / "hosts.yaml").read_bytes()
    proc = run_cli("hosts", "delete-host", "prod", "--purge", code=1)
    assert proc.stdout == ""  # no prompt written where no one can answer it
    assert proc.stderr == "hyper hosts: nothing deleted: confirmation needs a terminal (pass --yes in scripts)\n"
    assert fails("hosts", "delete-host", "prod") == "hyper hosts: nothing deleted: confirmation needs a terminal (pass --yes in scripts)"
    assert (home / "hosts.yaml").read_bytes() == before
    assert aws.status(f"{prod}jobs") == aws.status(f"{prod}meta") == "ACTIVE"
    assert "only-prod" in ok("images", "list-images")

    # --purge --yes: the tables go, and the host; the selection falls back to local
    assert ok("hosts", "delete-host", "prod", "--purge", "--yes") == (
        f"deleted host prod; removed table {prod}jobs, table {prod}meta\n")
    assert aws.status(f"{prod}jobs") in (None, "DELETING") and aws.status(f"{prod}meta") in (None, "DELETING")
    assert [r["name"] for r in json.loads(ok("hosts", "list-hosts", "-o", "json"))] == ["local", "dev"]
    assert yaml.safe_load((home / "hosts.yaml").read_text())["selected"] == "local"
    # without --purge the host is forgotten and its data stays
    assert ok("hosts", "delete-host", "dev", "--yes") == "deleted host dev\n"
    assert aws.status(f"{dev}jobs") == "ACTIVE"
    assert yaml.safe_load((home / "hosts.yaml").read_text()) == {"selected": "local", "hosts": {}}


def test_purge_removes_what_the_host_deployed(aws):
    """Stacks go before the tables (their only record). An imported VPC: moto cannot delete a new VPC's stack."""
    import boto3

    prefix = aws.prefix("purge")
    create(aws, "prod", prefix)
    ec2 = boto3.client("ec2", region_name="us-east-1", endpoint_url=aws.url)
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.77.{n}.0/24")["Subnet"]["SubnetId"] for n in (1, 2)]
    assert ok("regions", "init-main-region", "us-east-1", "--vpc-id", vpc, "--subnets", ",".join(subnets)) == (
        "main region us-east-1 (ACTIVE)\n")
    assert ok("clusters", "add-cluster", "cpu", "--instance-types", "c5.large") == "added cluster cpu (ACTIVE)\n"
    assert aws.stacks(prefix) == [f"{prefix}cluster-cpu", f"{prefix}main", f"{prefix}network"]
    assert ok("hosts", "delete-host", "prod", "--purge", "--yes") == (
        f"deleted host prod; removed cluster cpu, region us-east-1, stack {prefix}main, table {prefix}jobs, "
        f"table {prefix}meta\n")
    assert aws.stacks(prefix) == []


# ---------------------------------------------------------------- 3. import-deployment


def test_import_deployment_adopts_tables_and_their_contents(aws, home, monkeypatch, tmp_path):
    stem = f"imp{uuid.uuid4().hex[:6]}"
    prefix = aws.claim(f"hyper-{stem}-")
    create(aws, "origin", prefix)
    provision()
    result = runner.invoke(qsub.app, ["-q", "q1", "-d", "small", "--", "echo", "hi"])
    assert (result.exit_code, result.stdout) == (0, "1\n")

    # another admin's machine: a HYPER_HOME that knows nothing of the host
    other = tmp_path / "other-home"
    monkeypatch.setenv("HYPER_HOME", str(other))
    missing = aws.prefix("missing")
    assert fails("hosts", "import-deployment", "--table-prefix", missing, "--main-region", "us-east-1",
                 "--endpoint-url", aws.url) == (
        f"hyper hosts: no hyper deployment with table prefix '{missing}' in us-east-1 (looked for {missing}jobs, "
        f"{missing}meta) (check --table-prefix, --main-region and --profile)")
    assert not (other / "hosts.yaml").exists()
    # tables live in one region: the same prefix elsewhere is not a deployment
    assert fails("hosts", "import-deployment", "--table-prefix", prefix, "--main-region", "eu-west-1",
                 "--endpoint-url", aws.url).startswith(
        f"hyper hosts: no hyper deployment with table prefix '{prefix}' in eu-west-1 ")
    assert not (other / "hosts.yaml").exists()

    assert ok("hosts", "import-deployment", "--table-prefix", prefix, "--main-region", "us-east-1",
              "--endpoint-url", aws.url) == f"imported aws host {stem} (tables {prefix}* in us-east-1); selected\n"
    assert stat.S_IMODE((other / "hosts.yaml").stat().st_mode) == 0o600
    assert ok("queues", "list-queues") == (
        "Queue Cluster Weights                 Priority Status Message\n"
        "----- ------- ----------------------- -------- ------ -------\n"
        "q1    gpu     us-east-1=3,eu-west-1=1 0        ACTIVE\n")
    assert [r["name"] for r in json.loads(ok("regions", "list-regions", "-o", "json"))] == ["eu-west-1", "us-east-1"]
    result = runner.invoke(qstat.app, ["--only-job-id-out"])
    assert (result.exit_code, result.stdout) == (0, "1\n")

    # a failed import leaves the file as it was
    before = (other / "hosts.yaml").read_bytes()
    assert fails("hosts", "import-deployment", "--table-prefix", missing, "--main-region", "us-east-1",
                 "--endpoint-url", aws.url).startswith("hyper hosts: no hyper deployment with table prefix")
    assert fails("hosts", "import-deployment", "--table-prefix", prefix, "--main-region", "us-east-1",
                 "--endpoint-url", aws.url) == (
        f"hyper hosts: host '{stem}' already exists (give the imported host another name with --name)")
    assert (other / "hosts.yaml").read_bytes() == before


# ---------------------------------------------------------------- 4. resources


def test_resources_on_an_aws_host(aws):
    prefix = aws.prefix("res")
    create(aws, "prod", prefix)

    # regions: each gets a VPC (a network stack); names, CIDRs and overlaps are checked before anything is sent
    assert ok("regions", "init-main-region", "us-east-1", "--vpc-cidr", "10.30.0.0/16") == (
        "main region us-east-1 (ACTIVE)\n")
    assert ok("regions", "add-region", "eu-west-1", "--vpc-cidr", "10.20.0.0/16") == "added region eu-west-1 (ACTIVE)\n"
    assert fails("regions", "add-region", "mars-1", "--vpc-cidr", "10.40.0.0/16", code=2) == (
        "hyper regions: 'mars-1' is not an AWS region name (e.g. us-east-1, eu-west-1, ap-southeast-2)")
    assert fails("regions", "add-region", "ap-southeast-2", "--vpc-cidr", "10.20.128.0/17") == (
        "hyper regions: region 'ap-southeast-2': vpc-cidr 10.20.128.0/17 overlaps 10.20.0.0/16 of region "
        "'eu-west-1' (pick a CIDR that does not overlap)")
    assert fails("regions", "add-region", "us-east-1", "--vpc-cidr", "10.50.0.0/16") == (
        "hyper regions: region 'us-east-1' already exists (change it with `hyper regions update-region us-east-1` "
        "or pick another name)")
    assert fails("regions", "add-region", "ap-south-1").startswith(
        "hyper regions: region 'ap-south-1': give vpc-cidr for a new VPC or vpc-id and subnets for an existing one")
    assert ok("regions", "list-regions") == (
        "Region    Main VPC          Status Message\n"
        "--------- ---- ------------ ------ -------\n"
        "eu-west-1 no   10.20.0.0/16 ACTIVE\n"
        "us-east-1 yes  10.30.0.0/16 ACTIVE\n")
    assert aws.stacks(prefix) == [f"{prefix}main", f"{prefix}network"]
    assert aws.stacks(prefix, "eu-west-1") == [f"{prefix}network"]
    assert aws.stacks(prefix, "ap-southeast-2") == aws.stacks(prefix, "ap-south-1") == []

    # clusters: batch by default, spanning every region; the regions named must exist
    assert fails("clusters", "add-cluster", "gpu", "--regions", "us-east-1,ap-south-1") == (
        "hyper clusters: cluster 'gpu' names region 'ap-south-1', which this host does not have (add it with "
        "`hyper regions add-region ap-south-1` or drop it from --regions)")
    assert fails("clusters", "add-cluster", "cpu", "--type", "local") == (
        "hyper clusters: cluster 'cpu' is of type local but this host is aws (use --type batch or --type eks)")
    assert ok("clusters", "add-cluster", "gpu", "--max-vcpus", "8", "--instance-types", "g5.xlarge") == (
        "added cluster gpu (ACTIVE)\n")
    assert ok("clusters", "add-cluster", "east", "--regions", "us-east-1", "--spot") == "added cluster east (ACTIVE)\n"
    assert fails("clusters", "add-cluster", "k8s", "--type", "eks") == (
        "hyper clusters: cluster 'k8s' is of type eks but names no EKS cluster (give --eks-cluster NAME (the EKS "
        "cluster in each of its regions; with --create-eks hyper creates it))")
    # an EKS cluster it cannot reach (no kubeconfig here): one line, recorded FAILED, no stack deployed
    result = hyper("clusters", "add-cluster", "k8s", "--type", "eks", "--eks-cluster", "ml")
    assert result.exit_code == 1 and "Traceback" not in result.output
    eks = result.stdout.partition("(FAILED: ")[2].removesuffix(")\n")
    assert eks.startswith("apply-namespace ml/hyper in eu-west-1: cluster k8s: kubeconfig ") and \
        "does not exist" in eks and "aws eks update-kubeconfig --name ml --region eu-west-1" in eks
    assert aws.stacks(f"{prefix}eks-") == aws.stacks(f"{prefix}eks-", "eu-west-1") == []
    assert ok("clusters", "list-clusters") == (
        "Cluster Type  Regions             Instance types Spot Min vCPUs Max vCPUs GPUs/instance Status Message\n"
        "------- ----- ------------------- -------------- ---- --------- --------- ------------- ------ "
        f"{'-' * len(eks)}\n"
        "east    batch us-east-1                          yes  0         256       0             ACTIVE\n"
        "gpu     batch eu-west-1,us-east-1 g5.xlarge      no   0         8         0             ACTIVE\n"
        f"k8s     eks   eu-west-1,us-east-1                no   0         256       0             FAILED {eks}\n")
    assert aws.stacks(f"{prefix}cluster-") == [f"{prefix}cluster-east", f"{prefix}cluster-gpu"]
    assert aws.stacks(f"{prefix}cluster-", "eu-west-1") == [f"{prefix}cluster-gpu"]

    # queues: weights per region, each region known (and where the cluster has compute), or auto
    assert ok("queues", "add-queue", "q1", "--cluster", "gpu", "--weights", "us-east-1=3,eu-west-1=1") == (
        "added queue q1 (ACTIVE)\n")
    assert fails("queues", "add-queue", "q2", "--cluster", "gpu", "--weights", "us-east-1=3,ap-south-1=1") == (
        "hyper queues: queue 'q2' weighs region 'ap-south-1', which this host does not have (regions: eu-west-1, "
        "us-east-1)")
    assert fails("queues", "add-queue", "q2", "--cluster", "east", "--weights", "eu-west-1=1") == (
        "hyper queues: queue 'q2' weighs region 'eu-west-1', where cluster 'east' has no compute (its regions: "
        "us-east-1)")
    assert fails("queues", "add-queue", "q2", "--cluster", "nope") == (
        "hyper queues: queue 'q2' names cluster 'nope', which does not exist (clusters: east, gpu, k8s; add one "
        "with `hyper clusters add-cluster`)")
    assert fails("queues", "add-queue", "q2", "--cluster", "gpu", "--weights", "us-east-1=x", code=2).startswith(
        "hyper queues: weights of us-east-1 must be a whole number, not 'x'")
    assert ok("queues", "add-queue", "q3", "--cluster", "east", "--weights", "auto", "--priority", "5") == (
        "added queue q3 (ACTIVE)\n")
    assert ok("queues", "list-queues") == (
        "Queue Cluster Weights                 Priority Status Message\n"
        "----- ------- ----------------------- -------- ------ -------\n"
        "q1    gpu     us-east-1=3,eu-west-1=1 0        ACTIVE\n"
        "q3    east    auto                    5        ACTIVE\n")
    assert json.loads(ok("queues", "list-queues", "-o", "json"))[0] == {
        "name": "q1", "cluster": "gpu", "weights": {"us-east-1": 3, "eu-west-1": 1}, "priority": 0,
        "status": "ACTIVE", "message": ""}

    # images and definitions: the image must exist; `local` is for local hosts only
    assert ok("images", "add-image", "img", "--uri", URI) == "added image img (ACTIVE)\n"
    assert fails("definitions", "add-definition", "d1", "--image", "nope") == (
        "hyper definitions: definition 'd1' names image 'nope', which does not exist (images: img; add one with "
        "`hyper images add-image`)")
    assert fails("definitions", "add-definition", "d1", "--image", "local") == (
        "hyper definitions: definition 'd1' uses image local on an aws host (add an image with `hyper images "
        "add-image` and name it with --image)")
    assert ok("definitions", "add-definition", "d1", "--image", "img", "--vcpus", "2", "--memory", "4GiB",
              "--timeout", "1:00:00") == "added definition d1 (ACTIVE)\n"
    assert ok("images", "list-images") == aligned(("Image", "Source", "Status", "Message"), ("img", URI, "ACTIVE", ""))
    assert ok("definitions", "list-definitions") == (
        "Definition Image vCPUs Memory GPUs Timeout  Retries Ratio Status Message\n"
        "---------- ----- ----- ------ ---- -------- ------- ----- ------ -------\n"
        "d1         img   2     4GiB   0    01:00:00 0       1     ACTIVE\n")

    # in use: refused; --force names what it orphans, and the cluster's stacks go
    assert fails("images", "delete-image", "img") == (
        "hyper images: image 'img' is in use by definition d1 (delete those first, or add --force to orphan them)")
    assert fails("regions", "delete-region", "eu-west-1") == (
        "hyper regions: region 'eu-west-1' is in use by cluster gpu, cluster k8s, queue q1 (delete those first, or "
        "add --force to orphan them)")
    assert fails("clusters", "delete-cluster", "gpu") == (
        "hyper clusters: cluster 'gpu' is in use by queue q1 (delete those first, or add --force to orphan them)")
    assert ok("clusters", "delete-cluster", "gpu", "--force") == "deleted cluster gpu; orphaned: queue q1\n"
    assert [c["name"] for c in json.loads(ok("clusters", "list-clusters", "-o", "json"))] == ["east", "k8s"]
    assert aws.stacks(f"{prefix}cluster-") == [f"{prefix}cluster-east"]
    assert aws.stacks(f"{prefix}cluster-", "eu-west-1") == []
    assert ok("queues", "delete-queue", "q3") == "deleted queue q3\n"


# ---------------------------------------------------------------- 5. apply / export


def test_apply_and_export_on_an_aws_host(aws, tmp_path):
    prefix = aws.prefix("apply")
    create(aws, "prod", prefix)
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.yaml").write_text(
        "regions:\n"
        "  - name: us-east-1\n"
        "    vpc-cidr: 10.30.0.0/16\n"
        "  - name: eu-west-1\n"
        "    vpc-cidr: 10.20.0.0/16\n"
        "clusters:\n"
        "  - name: gpu\n"
        "    max-vcpus: 8\n"
        "    instance-types: [g5.xlarge]\n")
    (conf / "b.yaml").write_text(
        "images:\n"
        "  - name: img\n"
        f"    uri: {URI}\n"
        "queues:\n"
        "  - name: q1\n"
        "    cluster: gpu\n"
        "    wieghts: {us-east-1: 3, eu-west-1: 1}\n"
        "definitions:\n"
        "  - name: small\n"
        "    image: img\n"
        "    vcpus: 2\n"
        "    memory: 4GiB\n"
        "    timeout: 1:00:00\n")
    no_queues = ok("queues", "list-queues")
    assert no_queues == "Queue Cluster Weights Priority Status Message\n----- ------- ------- -------- ------ -------\n"
    before = ok("export")
    assert fails("apply", "-f", str(conf), code=2) == (
        f"hyper apply: {conf / 'b.yaml'}:7: unknown queue key 'wieghts' (queue keys: cluster, "
        "max-cost-per-hour, name, priority, weights)")
    # a.yaml was valid, but nothing is written or deployed when anything is wrong
    assert ok("queues", "list-queues") == no_queues
    assert ok("export") == before
    assert aws.stacks(prefix) == aws.stacks(prefix, "eu-west-1") == []

    (conf / "b.yaml").write_text((conf / "b.yaml").read_text().replace("wieghts", "weights"))
    assert ok("apply", "-f", str(conf)) == (
        "region us-east-1: updated (ACTIVE)\n"  # create-host recorded it; the file gives it a VPC
        "region eu-west-1: created (ACTIVE)\n"
        "cluster gpu: created (ACTIVE)\n"
        "image img: created\n"
        "queue q1: created\n"
        "definition small: created (ACTIVE)\n"
        "6 resources, 6 changed\n")
    # the cluster spans the region created by the same apply
    assert json.loads(ok("clusters", "list-clusters", "-o", "json"))[0]["regions"] == ["eu-west-1", "us-east-1"]
    assert aws.stacks(prefix, "eu-west-1") == [f"{prefix}cluster-gpu", f"{prefix}network"]
    assert ok("apply", "-f", str(conf)) == (
        "region us-east-1: unchanged\nregion eu-west-1: unchanged\ncluster gpu: unchanged\nimage img: unchanged\n"
        "queue q1: unchanged\ndefinition small: unchanged\n6 resources, 0 changed\n")

    exported = tmp_path / "export.yaml"
    assert ok("export", "--file", str(exported)) == f"wrote {exported}\n"
    body = yaml.safe_load(exported.read_text())
    assert {k: [r["name"] for r in v] for k, v in body.items()} == {
        "regions": ["eu-west-1", "us-east-1"], "clusters": ["gpu"], "images": ["img"], "queues": ["q1"],
        "definitions": ["small"]}
    assert ok("apply", "-f", str(exported)) == (
        "region eu-west-1: unchanged\nregion us-east-1: unchanged\ncluster gpu: unchanged\nimage img: unchanged\n"
        "queue q1: unchanged\ndefinition small: unchanged\n6 resources, 0 changed\n")
    # declarative: the keys of a resource are the whole of it
    (conf / "c.yaml").write_text("queues:\n  - name: q1\n    cluster: gpu\n    weights: auto\n")
    assert ok("apply", "-f", str(conf / "c.yaml")) == "queue q1: updated\n1 resources, 1 changed\n"
    q1 = json.loads(ok("queues", "list-queues", "-o", "json"))[0]
    assert (q1["weights"], q1["status"]) == ("auto", "ACTIVE")


# ---------------------------------------------------------------- 6. the job commands, unchanged


def test_job_commands_work_unchanged_on_an_aws_host(aws, home):
    create(aws, "prod", aws.prefix("jobs"))
    provision()

    def q(name: str, *args: str, code: int = 0):
        proc = cli(name, *args, input="")
        assert proc.returncode == code, (name, args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        return proc

    assert q("qsub", "-q", "q1", "-d", "small", "--", "echo", "hi").stdout == "1\n"
    assert q("qsub", "-q", "q1", "-d", "small", "-J", "1-1000", "--", "echo", "hi").stdout == "2[]\n"
    assert list(home.rglob("agent.lock")) == []  # no local agent for an aws host

    user = "moto"  # the owner is the caller's STS identity (moto's test keys: arn:aws:sts::123456789012:user/moto)
    w = max(4, len(user))

    def table(state: str) -> str:
        return (f"Job ID Name {'User'.ljust(w)} Time Use S Queue\n"
                f"------ ---- {'-' * w} -------- - -----\n"
                f"1      echo {user.ljust(w)} 0        {state} q1\n"
                f"2[]    echo {user.ljust(w)} 0        {state} q1\n")

    assert q("qstat").stdout == table("Q")
    full = q("qstat", "-f", "1").stdout.splitlines()
    submitted = [line for line in full if line.startswith("    submitted = ")]
    assert len(submitted) == 1 and re.fullmatch(r"    submitted = \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", submitted[0])
    assert [line for line in full if line not in submitted] == [
        "Job Id: 1", "    id = 1", "    name = echo",
        "    user = arn:aws:sts::123456789012:user/moto", "    queue = q1",  # the STS caller, not $LOGNAME
        "    definition = small", "    state = QUEUED", "    priority = 0", "    attempts = 0", "    retries = 0",
        "    job_state = Q", f"    submit_dir = {os.getcwd()}", "    command = echo hi",
        "    comment = waiting for a worker to start", ""]
    summary = runner.invoke(qstat.app, ["-Q"]).stdout.splitlines()
    assert summary[2].split() == ["q1", "1001", "1001", "0", "0", "0", "0", "0"]
    array = json.loads(runner.invoke(qstat.app, ["-f", "--output", "json", "2[]"]).stdout)[0]
    assert (array["array"], array["array_total"], array["job_state"]) == ("1-1000", 1000, "Q")

    ids = q("qstat", "--only-job-id-out").stdout
    assert ids == "1\n2[]\n"
    proc = q("qdel", *ids.split())
    assert (proc.stdout, proc.stderr) == ("", "")
    assert q("qstat", "-x").stdout == table("X")
    # the rest in-process (same code path, no interpreter start-up)
    for args in ([], ["--only-job-id-out"]):
        result = runner.invoke(qstat.app, args)
        assert (result.exit_code, result.stdout, result.stderr) == (0, "", "")
    assert runner.invoke(qstat.app, ["-Q"]).stdout.splitlines()[2].split() == [
        "q1", "1001", "0", "0", "0", "0", "0", "1001"]
    result = runner.invoke(qstat.app, ["99"])
    assert (result.exit_code, result.stdout, result.stderr) == (153, "", "qstat: Unknown Job Id 99\n")
    result = runner.invoke(qdel.app, ["99"])
    assert (result.exit_code, result.stdout, result.stderr) == (153, "", "qdel: unknown job id 99\n")
    assert list(home.rglob("agent.lock")) == []
    # a Slurm script on an aws host keeps the worker's directory, and qsub says so once (issue 14)
    slurm = home.parent / "reader.sh"
    slurm.write_text("#!/bin/sh\n#SBATCH --partition=q1\ncat input.txt\n")
    proc = q("qsub", "-d", "small", str(slurm))
    # ... and that Slurm's implicit export-all is off there (issue 11: no secret leaves the submitter)
    assert proc.stderr == ("qsub: note: #SBATCH: the whole environment is not exported on an aws host; pass -V to "
                           "export it\n"
                           "qsub: note: on aws host prod a job runs in its worker's work directory, which cannot "
                           "see the submit directory; copy files in with -W stagein=FILE@HOST:PATH\n")
    assert q("qsub", "-q", "q1", "-d", "small", "--", "echo", "hi").stderr == ""


# ---------------------------------------------------------------- 7. unreachable endpoint


def test_unreachable_endpoint_is_one_line_and_writes_nothing(aws, home):
    port = closed_port()
    down = f"http://127.0.0.1:{port}"

    hint = " (check that the endpoint is running and the host's endpoint_url is right)"

    proc = run_cli("hosts", "create-host", "down", "--type", "aws", "--main-region", "us-east-1",
                   "--endpoint-url", down, code=1)
    assert proc.stdout == ""
    assert proc.stderr.startswith(f"hyper hosts: cannot reach {down} for AWS dynamodb ")
    assert proc.stderr.endswith(f" (host 'down', region us-east-1 at {down}): EndpointConnectionError{hint}\n")
    assert proc.stderr.count("\n") == 1
    assert not (home / "hosts.yaml").exists()

    create(aws, "prod", aws.prefix("up"))
    before = (home / "hosts.yaml").read_bytes()
    for args in (["create-host", "down", "--type", "aws"], ["import-deployment", "--table-prefix", "hyper-down-"]):
        line = fails("hosts", *args, "--main-region", "us-east-1", "--endpoint-url", down)
        assert line.startswith(f"hyper hosts: cannot reach {down} ") and line.endswith(hint)
    assert (home / "hosts.yaml").read_bytes() == before
    assert ok("regions", "list-regions") == MAIN_ONLY  # the good host is untouched
