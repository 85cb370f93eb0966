"""The shipped examples work: configs/aws/ applies to an aws host, configs/local/ to a fresh local host, and
example-worker-image's entrypoint runs jobs.

The aws host's store is DynamoDB on moto's server (127.0.0.1), reached through boto3 exactly as AWS would be.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from tests.conftest import BIN, cli

ROOT = Path(__file__).resolve().parent.parent


def _aws_host(endpoint: str, prefix: str) -> None:
    cli("hyper", "hosts", "create-host", "prod", "--type", "aws", "--main-region", "us-east-1",
        "--endpoint-url", endpoint, "--table-prefix", prefix, check=True)


def test_local_configs_apply_to_a_fresh_local_host_and_run_jobs(home):
    applied = cli("hyper", "apply", "-f", str(ROOT / "configs" / "local"))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines()[-1] == "6 resources, 6 changed"
    again = cli("hyper", "apply", "-f", str(ROOT / "configs" / "local"), check=True)
    assert again.stdout.splitlines()[-1] == "6 resources, 0 changed"
    job = cli("qsub", "--wait", "-q", "sweep", "-d", "tiny", "--", "sh", "-c", "echo $HYPER_QUEUE $HYPER_DEFINITION")
    assert job.returncode == 0, job.stderr
    assert cli("qlog", job.stdout.strip(), check=True).stdout == "sweep tiny\n"


def test_shipped_configs_apply_to_an_aws_host(home, moto_endpoint, monkeypatch):
    """Everything deploys into moto (stacks in two regions) except the image build, which needs Docker and a
    registry: that one is recorded FAILED with the reason, and so are the definitions that use it (each
    region's definition names that region's replica by digest, and there is no image to pin); apply exits 1
    and tries exactly those again next time."""
    import requests

    requests.post(f"{moto_endpoint}/moto-api/config", json={"batch": {"use_docker": False}}, timeout=10)
    monkeypatch.setenv("HYPER_DOCKER", "")  # as on a machine without Docker
    _aws_host(moto_endpoint, "cfg-apply-")
    dry = cli("hyper", "apply", "-f", str(ROOT / "configs" / "aws"), "--dry-run", check=True).stdout.splitlines()
    assert dry[-1] == "9 resources, 9 to change"
    # create-host recorded the main region; the file adds its VPC settings
    assert "region us-east-1: would update (deploy-stack cfg-apply-network in us-east-1, deploy-stack " \
           "cfg-apply-main in us-east-1)" in dry
    assert "cluster cpu: would create (deploy-stack cfg-apply-cluster-cpu in eu-west-1, deploy-stack " \
           "cfg-apply-cluster-cpu in us-east-1)" in dry
    assert "definition train: would create (register-definition cfg-apply-train in us-east-1, " \
           "register-definition cfg-apply-train in eu-west-1)" in dry
    assert "queue gpu: would create" in dry
    assert cli("hyper", "queues", "list-queues", "-o", "json", check=True).stdout.strip() == "[]"
    applied = cli("hyper", "apply", "-f", str(ROOT / "configs" / "aws"))
    assert applied.returncode == 1, applied.stderr
    out = applied.stdout.splitlines()
    assert out[-1] == "9 resources, 9 changed, 3 failed to deploy"
    assert "cluster gpu-spot: created (ACTIVE)" in out and "region eu-west-1: created (ACTIVE)" in out
    assert any(line.startswith("definition train: created (FAILED") for line in out)
    assert any(line.startswith("definition small: created (FAILED") for line in out)
    assert any(line.startswith("image worker: created (FAILED): repository cfg-apply-worker in us-east-1: image "
                               "'worker': building") and "needs the Docker CLI" in line for line in out)
    import boto3

    for region in ("us-east-1", "eu-west-1"):
        batch = boto3.client("batch", region_name=region, endpoint_url=moto_endpoint)
        queues = {q["jobQueueName"] for q in batch.describe_job_queues()["jobQueues"]}
        assert {"cfg-apply-gpu-spot", "cfg-apply-cpu"} <= queues
        revisions = [d["revision"] for d in batch.describe_job_definitions(
            jobDefinitionName="cfg-apply-train", status="ACTIVE")["jobDefinitions"]]
        assert revisions == []  # never a definition naming an image that is not there
    queues = yaml.safe_load(cli("hyper", "queues", "list-queues", "-o", "yaml", check=True).stdout)
    gpu = next(q for q in queues if q["name"] == "gpu")
    assert gpu["weights"] == {"us-east-1": 3, "eu-west-1": 1} and gpu["cluster"] == "gpu-spot"
    assert next(q for q in queues if q["name"] == "cpu")["weights"] == "auto"
    clusters = yaml.safe_load(cli("hyper", "clusters", "list-clusters", "-o", "yaml", check=True).stdout)
    spot = next(c for c in clusters if c["name"] == "gpu-spot")
    assert spot["overrides"] == {"eu-west-1": {"max-vcpus": 64, "instance-types": ["g5.xlarge"]}}
    assert spot["status"] == "ACTIVE"
    images = yaml.safe_load(cli("hyper", "images", "list-images", "-o", "yaml", check=True).stdout)
    assert images[0]["path"] == str(ROOT / "example-worker-image")  # relative to the YAML file
    definitions = yaml.safe_load(cli("hyper", "definitions", "list-definitions", "-o", "yaml", check=True).stdout)
    train = next(d for d in definitions if d["name"] == "train")
    assert (train["memory"], train["timeout"], train["ratio"]) == ("14GiB", "12:00:00", 20)  # fits g5.xlarge
    assert train["message"].startswith("register-definition cfg-apply-train in us-east-1: ECR repository "
                                       "cfg-apply-worker has no image tagged latest")
    # nothing changed: nothing is redeployed, except what failed, which is tried again
    again = cli("hyper", "apply", "-f", str(ROOT / "configs" / "aws"))
    assert again.returncode == 1
    assert again.stdout.splitlines()[-1] == "9 resources, 3 changed, 3 failed to deploy"
    assert "cluster gpu-spot: unchanged" in again.stdout.splitlines()
    assert any(line.startswith("image worker: updated (FAILED)") for line in again.stdout.splitlines())
    exported = home.parent / "export.yaml"
    cli("hyper", "export", "--file", str(exported), check=True)
    assert cli("hyper", "apply", "-f", str(exported)).stdout.splitlines()[-1] == "9 resources, 3 changed, " \
        "3 failed to deploy"


def test_worker_image_entrypoint_runs_aws_jobs_once_each(home, moto_endpoint, tmp_path):
    """start.sh as Batch would start it: adopts the host by its prefix, claims from DynamoDB, exits when idle."""
    _aws_host(moto_endpoint, "cfg-worker-")
    cli("hyper", "apply", "-f", str(ROOT / "configs" / "aws" / "regions.yaml"),
        "-f", str(ROOT / "configs" / "aws" / "clusters.yaml"),
        check=True)
    cli("hyper", "clusters", "list-clusters", check=True)
    cli("hyper", "queues", "add-queue", "q", "--cluster", "cpu", check=True)
    cli("hyper", "images", "add-image", "w", "--uri", "123456789012.dkr.ecr.us-east-1.amazonaws.com/w:1", check=True)
    cli("hyper", "definitions", "add-definition", "d", "--image", "w", "--ratio", "10", check=True)
    assert cli("hyper", "agent", "status", check=True).stdout.startswith("no agent")
    job = cli("qsub", "-q", "q", "-d", "d", "-J", "1-4", "--", "sh", "-c", 'echo "element $HYPER_ARRAY_INDEX"',
              check=True).stdout.strip()
    assert job == "1[]"
    assert not (home / "local" / "agent.lock").exists()  # an aws host starts no local agent

    container = tmp_path / "container"
    container.mkdir()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HYPER_HOME": str(container / ".hyper"),
           "HYPER_TABLE_PREFIX": "cfg-worker-", "HYPER_MAIN_REGION": "us-east-1", "HYPER_QUEUE": "q",
           "HYPER_DEFINITION": "d", "AWS_ENDPOINT_URL": moto_endpoint, "AWS_BATCH_JOB_ID": "batch-1",
           "AWS_BATCH_JOB_ARRAY_INDEX": "0", "HYPER_WORKER_IDLE": "1"}
    env.pop("HYPER_HOST", None)
    proc = subprocess.run(["sh", str(ROOT / "example-worker-image" / "start.sh")], cwd=container, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    rows = cli("qstat", "-x", "-t", "--output", "csv", check=True).stdout.splitlines()
    assert [r.split(",")[0] + "," + r.split(",")[4] for r in rows[1:]] == ["1[],F", "1[1],F", "1[2],F", "1[3],F",
                                                                         "1[4],F"]
    full = cli("qstat", "-f", "1[3]", "--output", "json", check=True).stdout
    assert '"worker": "batch-1-0"' in full and '"attempts": 1' in full and '"exit_code": 0' in full
    logs = container / ".hyper" / "hosts" / "worker" / "logs"
    assert (logs / "1.3.out").read_text() == "element 3\n"
    assert (container / "run").is_dir()  # the reused work directory
    # without its settings the entrypoint says what is missing
    bad = subprocess.run(["sh", str(ROOT / "example-worker-image" / "start.sh")], cwd=container,
                         env={k: v for k, v in env.items() if k != "HYPER_TABLE_PREFIX"},
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode != 0 and "HYPER_TABLE_PREFIX" in bad.stderr
