"""EKS workers: Job manifests rendered from templates (validated with kubernetes-validate), the lightkube
client against an in-memory API server (tests/kube_fake.py, passed in as the httpx2 transport: no patching),
the generic tick with Batch and EKS queues together, spend limits and stuck workers.

No Kubernetes API server can run on these machines; the fake answers with the shapes a 1.33 API server
returns (objects with uid/resourceVersion, Job controller labels, List kinds, Status errors).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hyper.backends.base import WorkerState
from hyper.backends.kubeapi import KubeApi, pick_context
from hyper.backends.kubernetes import (K8S_VERSION, POD_PHASES, KubernetesBackend, job_context, job_live, labels,
                                       render_manifest, template_source, validate_manifest)
from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Queue, Region
from hyper.scheduler.aws import BatchScheduler
from hyper.scheduler.planner import cap_by_cost
from hyper.store.base import WorkerInfo
from tests.kube_fake import FakeKube, write_kubeconfig
from tests.test_scheduler_aws import HOST, FakeBatch, FakeStore, plain, sizes_by_region

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/hyper-prod-img:latest"
GPU = Definition(name="train", image="img", vcpus=3, memory_mib=12000, gpus=1, timeout=3600, ratio=10)
CPU = Definition(name="small", image="img", vcpus=1, memory_mib=2048, ratio=10)


def eks(**kw) -> Cluster:
    values = dict(name="k8s", type="eks", eks_cluster="ml", regions=["us-east-1", "eu-west-1"],
                  instance_types=["g5.xlarge", "g5.2xlarge"], max_vcpus=1024)
    values.update(kw)
    return Cluster(**values)


def render(definition=GPU, cluster=None, workers=4, **kw) -> dict:
    cluster = cluster or eks()
    ctx = job_context(HOST, definition, cluster, queue="kq", region="us-east-1", workers=workers, tick="t1a2b",
                      image_uri=IMAGE, **kw)
    name, text = template_source(cluster)
    return render_manifest(ctx, text, name)


def container(manifest: dict) -> dict:
    (c,) = manifest["spec"]["template"]["spec"]["containers"]
    return c


# ---------------------------------------------------------------- renders (pure)
def test_gpu_worker_job_is_indexed_labelled_and_valid():
    m = render(workers=4, backlog=40)
    validate_manifest(m, "again")  # what render_manifest already did, shown here against the pinned version
    spec = m["spec"]
    assert (m["apiVersion"], m["kind"], spec["completionMode"]) == ("batch/v1", "Job", "Indexed")
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (4, 4, 4)
    assert spec["activeDeadlineSeconds"] == 3600 * 10 + 900 and spec["ttlSecondsAfterFinished"] == 3600
    assert spec["podFailurePolicy"]["rules"][0] == {
        "action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    assert m["metadata"]["labels"] == spec["template"]["metadata"]["labels"] == {
        "hyper/prefix": "hyper-prod", "hyper/queue": "kq", "hyper/definition": "train"}
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "hyper-worker" and pod["restartPolicy"] == "Never"
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    c = container(m)
    assert c["command"] == ["/usr/local/bin/start.sh"] and c["image"] == IMAGE
    assert c["resources"] == {"requests": {"cpu": "3", "memory": "12000Mi", "nvidia.com/gpu": "1"},
                              "limits": {"memory": "12000Mi", "nvidia.com/gpu": "1"}}
    assert c["env"][0] == {"name": "HYPER_POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
    env = {e["name"]: e["value"] for e in c["env"][1:]}
    assert env == {"AWS_REGION": "us-east-1", "HYPER_DEFINITION": "train", "HYPER_MAIN_REGION": "us-east-1",
                   "HYPER_MAX_JOBS": "10", "HYPER_QUEUE": "kq", "HYPER_REGION": "us-east-1",
                   "HYPER_TABLE_PREFIX": "hyper-prod-"}
    assert not any("SECRET" in k or "ACCESS_KEY" in k for k in env)  # Pod Identity, never static keys
    assert m["metadata"]["annotations"]["hyper/backlog"] == "40"


def test_cpu_worker_has_no_gpu_resources_or_tolerations():
    m = render(CPU, eks(instance_types=["m5.xlarge"]))
    assert container(m)["resources"] == {"requests": {"cpu": "1", "memory": "2048Mi"},
                                         "limits": {"memory": "2048Mi"}}
    pod = m["spec"]["template"]["spec"]
    assert "tolerations" not in pod and pod["nodeSelector"] == {"node.kubernetes.io/instance-type": "m5.xlarge"}
    assert "activeDeadlineSeconds" not in m["spec"]  # no timeout, no deadline


def test_spot_worker_selects_spot_nodes_and_sees_the_price_sorted_types():
    prices = [{"type": "g5.xlarge", "usd_per_hour": 0.41}, {"type": "g5.2xlarge", "usd_per_hour": 0.52}]
    m = render(cluster=eks(spot=True), instance_types=prices)
    assert m["spec"]["template"]["spec"]["nodeSelector"] == {"eks.amazonaws.com/capacityType": "SPOT"}
    assert m["metadata"]["annotations"]["hyper/instance-types"] == "g5.xlarge,g5.2xlarge"


def test_a_custom_template_gets_the_queue_scaler_variables(tmp_path):
    path = tmp_path / "job.yaml.j2"
    path.write_text("""apiVersion: batch/v1
kind: Job
metadata:
  name: {{ name }}
  namespace: {{ namespace }}
  labels: {{ labels | tojson }}
spec:
  completionMode: Indexed
  completions: {{ workers }}
  parallelism: {{ workers }}
  template:
    metadata:
      labels: {{ labels | tojson }}
    spec:
      restartPolicy: Never
      priorityClassName: {{ "gpu-high" if Resource.gpus else "batch" }}
      containers:
        - name: worker
          image: {{ image }}
          env: {{ environment | tojson }}
          args: ["--queue", "{{ QueueName }}", "--ready", "{{ Ready }}", "--cheapest", "{{ instance_types[0].type }}"]
""")
    m = render(cluster=eks(template=str(path)), backlog=7,
               instance_types=[{"type": "g6.xlarge", "usd_per_hour": 0.3}])
    assert m["spec"]["template"]["spec"]["priorityClassName"] == "gpu-high"
    assert container(m)["args"] == ["--queue", "kq", "--ready", "7", "--cheapest", "g6.xlarge"]


def test_template_errors_are_one_line_naming_template_and_line(tmp_path):
    broken = tmp_path / "broken.j2"
    broken.write_text("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ name }\n")
    with pytest.raises(HyperError) as exc:
        render(cluster=eks(template=str(broken)))
    assert exc.value.message == f"template {broken} line 4: unexpected '}}'"

    undefined = tmp_path / "undefined.j2"
    undefined.write_text("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: {{ name }}\n  x: {{ nodegroup }}\n")
    with pytest.raises(HyperError) as exc:
        render(cluster=eks(template=str(undefined)))
    assert exc.value.message == f"template {undefined} line 5: 'nodegroup' is undefined"

    bad_yaml = tmp_path / "bad.j2"
    bad_yaml.write_text("apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: [{{ name }}\n")
    with pytest.raises(HyperError) as exc:
        render(cluster=eks(template=str(bad_yaml)))
    assert exc.value.message.startswith(f"template {bad_yaml} rendered line ") and "not valid YAML" in exc.value.message
    assert "\n" not in exc.value.message

    wrong = tmp_path / "wrong.j2"
    wrong.write_text(template_source(eks())[1].replace("completions: {{ workers }}", "completions: many"))
    with pytest.raises(HyperError) as exc:
        render(cluster=eks(template=str(wrong)))
    assert exc.value.message == (f"template {wrong}: the rendered Job is not valid for Kubernetes {K8S_VERSION}: "
                                 "spec.completions: 'many' is not of type 'integer', 'null'")

    with pytest.raises(HyperError) as exc:
        render(cluster=eks(template=str(tmp_path / "missing.j2")))
    assert "cannot be read" in exc.value.message


def test_strict_validation_rejects_unknown_fields():
    m = render()
    m["spec"]["template"]["spec"]["containers"][0]["gpu"] = 1
    with pytest.raises(HyperError, match="Additional properties are not allowed"):
        validate_manifest(m, "x")


# ---------------------------------------------------------------- pure inventory helpers
def test_pod_phases_and_job_counts_translate_to_worker_states():
    assert POD_PHASES["Pending"] == WorkerState.PENDING and POD_PHASES["Succeeded"] == WorkerState.SUCCEEDED
    assert not WorkerState.STUCK.live and WorkerState.PENDING.live
    job = {"spec": {"completions": 5, "parallelism": 5}, "status": {"succeeded": 2, "active": 3}}
    assert job_live(job) == 3
    job["status"]["conditions"] = [{"type": "Complete", "status": "True"}]
    assert job_live(job) == 0
    assert job_live({"spec": {"completions": 4, "suspend": True}, "status": {}}) == 0


def test_kubeconfig_context_is_the_one_eks_update_kubeconfig_writes(tmp_path):
    from lightkube.config.kubeconfig import KubeConfig

    path = write_kubeconfig(tmp_path / "kc", {"us-east-1": "ml", "eu-west-1": "ml", "us-west-2": "other"})
    conf = KubeConfig.from_file(path)
    c = eks(kubeconfig=path)
    assert pick_context(conf.contexts, conf.current_context, c, "eu-west-1") == \
        "arn:aws:eks:eu-west-1:123456789012:cluster/ml"
    with pytest.raises(HyperError) as exc:
        pick_context(conf.contexts, conf.current_context, eks(eks_cluster="nope"), "us-east-1")
    assert exc.value.message.startswith("cluster k8s: no kubeconfig context for EKS cluster 'nope' in us-east-1")
    assert "aws eks update-kubeconfig --name nope --region us-east-1" in exc.value.hint


# ---------------------------------------------------------------- the client against the fake API server
class Fleet:
    """One EKS cluster (its own API server) per region, as `hyper clusters add-cluster --type eks` spans them."""

    def __init__(self, kubeconfig: str):
        self.kubeconfig = kubeconfig
        self.by_region = {r: FakeKube() for r in ("us-east-1", "eu-west-1")}

    def jobs(self, ns: str = "hyper") -> list[dict]:
        return [j for r in sorted(self.by_region) for j in self.by_region[r].jobs(ns)]

    def transport(self, region: str = "us-east-1"):
        return self.by_region[region].transport()

    def start_pods(self, job, **kw):
        return self.by_region[job_region(job)].start_pods(job, **kw)

    def finish(self, job):
        self.by_region[job_region(job)].finish(job)

    @property
    def requests(self):
        return [r for k in self.by_region.values() for r in k.requests]


def job_region(job: dict) -> str:
    return {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}["HYPER_REGION"]


@pytest.fixture
def kube(tmp_path):
    return Fleet(write_kubeconfig(tmp_path / "kubeconfig", {"us-east-1": "ml", "eu-west-1": "ml"}))


def test_client_creates_lists_by_label_and_reads_api_errors(kube):
    from hyper.backends.kubeapi import KubeError

    api = KubeApi(eks(kubeconfig=kube.kubeconfig), "us-east-1", transport=kube.transport("us-east-1"))
    assert api.namespace("hyper")["status"] == {"phase": "Active"} and api.namespace("nope") is None
    m = render(workers=2)
    created = api.create_job(m)
    assert created["metadata"]["uid"] and created["spec"]["template"]["metadata"]["labels"]["job-name"] == \
        m["metadata"]["name"]
    with pytest.raises(KubeError) as exc:
        api.create_job(m)
    assert (exc.value.code, exc.value.reason) == (409, "AlreadyExists")
    assert [j["metadata"]["name"] for j in api.list_jobs("hyper", labels(HOST, "kq", "train"))] == \
        [m["metadata"]["name"]]
    assert api.list_jobs("hyper", labels(HOST, "other", "train")) == []
    kube.start_pods(kube.jobs()[0])
    assert len(api.list_pods("hyper", {"hyper/queue": "kq"})) == 2
    api.delete_job("hyper", m["metadata"]["name"])
    assert kube.jobs() == []
    assert ("GET", "/apis/batch/v1/namespaces/hyper/jobs") in kube.requests


@pytest.mark.skipif(not os.environ.get("KUBECONFIG") or not Path(os.environ["KUBECONFIG"]).exists(),
                    reason="needs KUBECONFIG pointing at a real cluster (none can run on these machines)")
def test_against_a_real_cluster_namespace_and_server_side_dry_run_create():
    """Reads the current context's default namespace and creates a worker Job with dryRun=All (nothing runs)."""
    from lightkube import Client, codecs

    client = Client(field_manager="hyper", dry_run=True)
    m = render(CPU, eks(instance_types=["m5.xlarge"]))
    m["metadata"]["namespace"] = client.namespace
    created = client.create(codecs.from_dict(m))
    assert created.metadata.name == m["metadata"]["name"]


# ---------------------------------------------------------------- the tick: Batch and EKS together
class Store(FakeStore):
    def get_resource(self, kind, name):
        return next((r for r in self.resources if r.KIND == kind and r.name == name), None)


def mixed(kube, **eks_kw) -> list:
    return [Region(name="us-east-1", main=True), Region(name="eu-west-1"),
            Cluster(name="gpu", type="batch", max_vcpus=1024, regions=["us-east-1", "eu-west-1"]),
            eks(kubeconfig=kube.kubeconfig, **eks_kw),
            Queue(name="q1", cluster="gpu", weights={"us-east-1": 3, "eu-west-1": 1}),
            Queue(name="kq", cluster="k8s", weights={"us-east-1": 1, "eu-west-1": 1}),
            Definition(name="small", image="img", vcpus=1, memory_mib=2048, ratio=10), GPU]


def scheduler(store, batch, kube, clock=time.time):
    backend = KubernetesBackend(HOST, store, clock=clock, image_uris=lambda d, r: IMAGE,
                                api_factory=lambda c, r: KubeApi(c, r, transport=kube.transport(r)))
    return BatchScheduler(HOST, store, api=batch, sleep=lambda _: None, clock=clock, backends={"eks": backend})


def test_one_tick_makes_batch_arrays_and_kubernetes_jobs_split_by_weight_and_never_twice(kube):
    store = Store(mixed(kube), {("q1", "small"): 1000, ("kq", "train"): 80})
    batch = FakeBatch()
    report = scheduler(store, batch, kube).tick()
    assert report.problems == []
    assert sizes_by_region(batch) == {"us-east-1": 75, "eu-west-1": 25}
    jobs = {j["metadata"]["name"]: j for j in kube.jobs()}
    assert sorted(j["spec"]["parallelism"] for j in jobs.values()) == [4, 4]
    assert sorted(job_region(j) for j in jobs.values()) == ["eu-west-1", "us-east-1"]
    assert sorted((s.backend, s.region, s.workers) for s in report.submitted) == [
        ("batch", "eu-west-1", 25), ("batch", "us-east-1", 75), ("eks", "eu-west-1", 4), ("eks", "us-east-1", 4)]
    view = {q["queue"]: q for q in report.to_dict()["queues"]}
    assert view["kq"]["backlog"] == 80 and view["kq"]["plan"] == {"train@eu-west-1": 4, "train@us-east-1": 4}
    assert [t["type"] for t in view["kq"]["instance_types"]][:2] == ["g5.xlarge", "g5.xlarge"]  # cheapest first

    again = scheduler(store, batch, kube).tick()  # a restarted scheduler counts the Jobs by label
    assert again.problems == [] and again.requests == []
    assert {(r.queue, r.region): r.live for r in again.rows} == {
        ("kq", "eu-west-1"): 4, ("kq", "us-east-1"): 4, ("q1", "eu-west-1"): 25, ("q1", "us-east-1"): 75}
    assert again.to_dict()["queues"][0]["live"] == {"eks": {"eu-west-1": 4, "us-east-1": 4}}

    for job in kube.jobs():
        kube.finish(job)  # the workers ran and exited: the next tick may start new ones
    third = scheduler(store, batch, kube).tick()
    assert sorted(r.workers for r in third.requests if r.queue == "kq") == [4, 4]


def test_dry_run_renders_every_job_and_sends_nothing(kube):
    store = Store(mixed(kube), {("kq", "train"): 10})
    report = scheduler(store, FakeBatch(), kube).tick(dry_run=True)
    assert [r.to_dict()["Job"]["spec"]["parallelism"] for r in report.requests] == [1]
    assert kube.jobs() == [] and not [r for r in kube.requests if r[0] == "POST"]


def test_missing_namespace_and_unknown_eks_cluster_are_one_line_and_nothing_is_deployed(kube):
    store = Store(mixed(kube, namespace="gpu-jobs"), {("kq", "train"): 10})
    report = scheduler(store, FakeBatch(), kube).tick()
    assert report.submitted == [] and kube.jobs("gpu-jobs") == []
    assert report.problems[0] == (
        "region eu-west-1: EKS cluster ml (cluster k8s): namespace gpu-jobs does not exist; no workers there "
        "(provision the cluster (`hyper clusters update-cluster k8s`) or `kubectl create namespace gpu-jobs`)")

    store = Store(mixed(kube, eks_cluster="nope"), {("kq", "train"): 10})
    report = scheduler(store, FakeBatch(), kube).tick()
    assert report.submitted == [] and kube.jobs() == []
    assert report.problems[0].startswith("region eu-west-1: EKS cluster nope (cluster k8s): cluster k8s: no "
                                         "kubeconfig context for EKS cluster 'nope' in eu-west-1")
    assert all("\n" not in p for p in report.problems)


def test_a_definition_that_fits_no_instance_type_gets_no_job(kube):
    store = Store(mixed(kube, instance_types=["g5.xlarge"]), {("kq", "huge"): 10})
    store.resources.append(Definition(name="huge", image="img", vcpus=4, memory_mib=16384, gpus=1))
    report = scheduler(store, FakeBatch(), kube).tick()
    assert kube.jobs() == [] and report.submitted == []
    assert report.problems[0].startswith(
        "queue kq / definition huge in eu-west-1: definition huge (4 vCPU, 16384 MiB, 1 GPU) fits no instance "
        "type of cluster k8s (g5.xlarge); the largest, g5.xlarge, leaves 3.9 vCPU, 14964 MiB and 1 GPU after "
        "the kubelet's reserve; no workers")


def test_a_template_that_renders_invalid_yaml_deploys_nothing(kube, tmp_path):
    bad = tmp_path / "bad.j2"
    bad.write_text("kind: Job\nmetadata:\n  name: [{{ name }}\n")
    store = Store(mixed(kube, template=str(bad)), {("kq", "train"): 10, ("q1", "small"): 10})
    batch = FakeBatch()
    report = scheduler(store, batch, kube).tick()
    assert kube.jobs() == [] and [s.backend for s in report.submitted] == ["batch"]
    (line,) = [p for p in report.problems if p.startswith("eks:")]
    assert line.startswith(f"eks: template {bad} rendered line 4: not valid YAML: expected ',' or ']'")


def test_unschedulable_pods_are_stuck_not_live_and_the_region_waits(kube):
    clock = [time.time()]
    store = Store(mixed(kube), {("kq", "train"): 10})
    scheduler(store, FakeBatch(), kube, clock=lambda: clock[0]).tick()
    (eu,) = [j for j in kube.jobs() if job_region(j) == "eu-west-1"]
    kube.start_pods(eu, unschedulable="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.")
    clock[0] += 3600
    report = scheduler(store, FakeBatch(), kube, clock=lambda: clock[0]).tick()
    assert [(s.queue, s.region, s.workers) for s in report.stuck] == [("kq", "eu-west-1", 1)]
    assert "Insufficient nvidia.com/gpu" in report.stuck[0].reason
    assert any(p.startswith("queue kq / definition train: 1 worker(s) in eu-west-1 stuck: Pending for 60 min")
               for p in report.problems)
    assert not [r for r in report.requests if r.region == "eu-west-1"]


# ---------------------------------------------------------------- Batch: stuck RUNNABLE, spend limits
def test_batch_workers_runnable_too_long_are_stuck_with_a_reason_and_not_live():
    now = 1_795_000_000.0
    res = [Region(name="us-east-1", main=True), Region(name="eu-west-1"),
           Cluster(name="gpu", type="batch", max_vcpus=1024, regions=["us-east-1", "eu-west-1"],
                   instance_types=["m5.xlarge"]),
           Queue(name="q1", cluster="gpu", weights={"us-east-1": 3, "eu-west-1": 1}),
           Definition(name="small", image="img", vcpus=4, memory_mib=16384, ratio=10)]
    batch = FakeBatch()
    job = plain("j1", "hyper-prod-q1-small-t1", "RUNNABLE", {"hyper:prefix": "hyper-prod-", "hyper:queue": "q1",
                                                             "hyper:definition": "small"})
    job["createdAt"] = int((now - 7200) * 1000)
    batch.jobs["us-east-1"] = [job]
    report = BatchScheduler(HOST, Store(res, {("q1", "small"): 20}), api=batch, clock=lambda: now,
                            sleep=lambda _: None).tick()
    (stuck,) = report.stuck
    assert (stuck.region, stuck.workers) == ("us-east-1", 1)
    assert stuck.reason.startswith("RUNNABLE for 120 min: definition small (4 vCPU, 16384 MiB) fits no instance "
                                   "type of cluster gpu (m5.xlarge)")
    assert {(r.region, r.live) for r in report.rows} == {("us-east-1", 0), ("eu-west-1", 0)}
    assert sizes_by_region(batch) == {"eu-west-1": 2}  # the stuck region's share goes elsewhere

    job["createdAt"] = int((now - 60) * 1000)  # a minute: just waiting, counted as live
    fresh = BatchScheduler(HOST, Store(res, {("q1", "small"): 20}), api=FakeBatch(), clock=lambda: now,
                           sleep=lambda _: None)
    fresh.backend("batch").api.jobs["us-east-1"] = [job]
    assert fresh.tick().stuck == []


def test_cap_by_cost_keeps_weights_and_never_passes_the_budget():
    counts = {("q", "d", "a"): 75, ("q", "d", "b"): 25, ("other", "d", "a"): 9}
    prices = {("q", "d", "a"): 0.5, ("q", "d", "b"): 0.5}
    kept, notes = cap_by_cost(counts, prices, {("q", "d", "a"): 4}, {"q": 12.0})
    assert kept == {("q", "d", "a"): 15, ("q", "d", "b"): 5, ("other", "d", "a"): 9}  # 4 + 20 workers x $0.5
    assert notes == ["queue q: 80 of 100 new worker(s) not started: max-cost-per-hour $12 ($2.00/h already "
                     "running, $50.00/h more planned)"]
    kept, notes = cap_by_cost({("q", "d", "a"): 3}, {("q", "d", "a"): None}, {}, {"q": 100.0})
    assert kept == {} and "no price known for d in a" in notes[0]
    assert cap_by_cost({("q", "d", "a"): 3}, prices, {}, {"q": 100.0}) == ({("q", "d", "a"): 3}, [])


def test_a_queue_spend_limit_holds_the_tick_and_the_report_says_so():
    res = [Region(name="us-east-1", main=True), Region(name="eu-west-1"),
           Cluster(name="gpu", type="batch", max_vcpus=1024, regions=["us-east-1", "eu-west-1"],
                   instance_types=["m5.xlarge"]),
           Queue(name="q1", cluster="gpu", weights={"us-east-1": 3, "eu-west-1": 1}, max_cost_per_hour=2.0),
           Definition(name="small", image="img", vcpus=1, memory_mib=2048, ratio=10)]
    batch = FakeBatch()
    report = BatchScheduler(HOST, Store(res, {("q1", "small"): 1000}), api=batch, sleep=lambda _: None).tick()
    # one worker = a quarter of an m5.xlarge ($0.192/h on demand) = $0.048/h: $2/h holds 41 of the 100
    assert sum(sizes_by_region(batch).values()) == 41 and sizes_by_region(batch)["us-east-1"] > \
        sizes_by_region(batch)["eu-west-1"]
    (line,) = report.problems
    assert line.startswith("queue q1: 59 of 100 new worker(s) not started: max-cost-per-hour $2 (")


# ---------------------------------------------------------------- end to end: moto + the fake API servers
def pod_environment(pod: dict) -> dict[str, str]:
    """What the kubelet gives the container: plain values, and the downward API's metadata.name."""
    env = {}
    for e in pod["spec"]["containers"][0]["env"]:
        if "value" in e:
            env[e["name"]] = e["value"]
        elif e.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name":
            env[e["name"]] = pod["metadata"]["name"]
    return env


def test_end_to_end_qsub_tick_jobs_and_arrays_then_pod_and_batch_workers_run_every_job_once(
        aws_host, moto_endpoint, batch_role, tmp_path):
    """qsub to a Batch queue and an EKS queue -> one tick -> Batch arrays on moto and Kubernetes Jobs on the
    fake API servers, split 3:1 and 1:1 -> one worker per region and backend started with start.sh and the
    environment Batch or the kubelet would give it -> every job ran exactly once."""
    import subprocess

    from hyper.services import resources as res
    from hyper.services.context import open_context
    from qcmds import qsub
    from tests.conftest import BIN, cli
    from tests.test_scheduler_aws import provision_batch, runner, worker_jobs

    provision_batch(moto_endpoint, aws_host, batch_role, ["us-east-1", "eu-west-1"])
    kube = Fleet(write_kubeconfig(tmp_path / "kubeconfig", {"us-east-1": "ml", "eu-west-1": "ml"}))
    ctx = open_context("t")
    for kind, name, values in (
            ("cluster", "k8s", {"type": "eks", "eks-cluster": "ml", "regions": "us-east-1,eu-west-1",
                                "instance-types": "m5.xlarge", "max-vcpus": "64", "kubeconfig": kube.kubeconfig}),
            ("queue", "kq", {"cluster": "k8s", "weights": "us-east-1=1,eu-west-1=1"})):
        resource = res.build(kind, name, values)
        res.validate(resource, res.ResourceView(ctx.store), "aws")
        resource.status = "ACTIVE"
        ctx.store.put_resource(resource)
    for queue, n in (("q1", 40), ("kq", 20)):
        result = runner.invoke(qsub.app, ["-q", queue, "-d", "small", "-J", f"1-{n}", "--", "echo", queue])
        assert result.exit_code == 0, result.stderr

    backend = KubernetesBackend(aws_host, ctx.store,
                                api_factory=lambda c, r: KubeApi(c, r, transport=kube.transport(r)))
    report = BatchScheduler(aws_host, ctx.store, backends={"eks": backend}).tick()
    assert report.problems == []
    assert sorted((s.backend, s.region, s.workers) for s in report.submitted) == [
        ("batch", "eu-west-1", 1), ("batch", "us-east-1", 3), ("eks", "eu-west-1", 1), ("eks", "us-east-1", 1)]

    environments = []
    for region in ("us-east-1", "eu-west-1"):
        (job,) = worker_jobs(moto_endpoint, aws_host, region)
        environments.append({**{e["name"]: e["value"] for e in job["container"]["environment"]},
                             "AWS_BATCH_JOB_ID": job["jobId"], "AWS_BATCH_JOB_ARRAY_INDEX": "0"})
    for job in kube.jobs():
        (pod,) = kube.start_pods(job, phase="Running")
        environments.append(pod_environment(pod))
    start_sh = Path(__file__).resolve().parent.parent / "example-worker-image" / "start.sh"
    procs = []
    for i, container_env in enumerate(environments):
        home = tmp_path / f"w{i}"
        home.mkdir()
        env = {**os.environ, **container_env, "PATH": f"{BIN}:{os.environ['PATH']}",
               "HYPER_HOME": str(home / ".hyper"), "HYPER_WORKER_IDLE": "1"}
        env.pop("HYPER_HOST", None)
        procs.append(subprocess.Popen(["sh", str(start_sh)], cwd=home, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    records = json.loads(cli("qstat", "-x", "-f", "1[1-40]", "2[1-20]", "--output", "json", check=True).stdout)
    assert len(records) == 60
    assert {(r["state"], r["attempts"], r["exit_code"]) for r in records} == {("SUCCEEDED", 1, 0)}
    pods = {p["metadata"]["name"] for k in kube.by_region.values() for (kind, _, _), p in k.objects.items()
            if kind == "Pod"}
    ran_on_pods = {r["worker"] for r in records if r["queue"] == "kq"}
    assert ran_on_pods and ran_on_pods <= pods  # EKS jobs ran on the pod workers, named by the downward API


import json  # noqa: E402

from tests.test_scheduler_aws import aws_host, batch_role  # noqa: E402,F401  (fixtures)


def test_dry_run_table_output_prints_the_jobs_as_yaml_for_kubectl(kube, capsys):
    import yaml

    from hyper.cli.scheduler import _show

    store = Store(mixed(kube), {("kq", "train"): 30, ("q1", "small"): 10})
    report = scheduler(store, FakeBatch(), kube).tick(dry_run=True)
    _show(report, "table")
    out = capsys.readouterr().out
    head, _, jobs = out.partition("Kubernetes Jobs (dry run: 2, none sent; `kubectl apply -f -` takes them):\n")
    assert "Batch SubmitJob requests (dry run: 1, none sent):" in head
    assert list(yaml.safe_load_all(jobs)) == [r.manifest for r in report.requests if hasattr(r, "manifest")]
    assert kube.jobs() == []


def test_scheduler_json_report_has_the_queue_scaler_view(aws_host, moto_endpoint, batch_role):
    from hyper.cli.scheduler import app as scheduler_app
    from qcmds import qsub
    from tests.test_scheduler_aws import provision_batch, runner

    provision_batch(moto_endpoint, aws_host, batch_role, ["us-east-1", "eu-west-1"])
    assert runner.invoke(qsub.app, ["-q", "q1", "-d", "small", "-J", "1-100", "--", "true"]).exit_code == 0
    result = runner.invoke(scheduler_app, ["run", "--once", "--dry-run", "--output", "json"])
    assert result.exit_code == 0, result.stderr
    (q,) = json.loads(result.stdout)["queues"]
    assert (q["queue"], q["backend"], q["backlog"], q["live"], q["plan"]) == (
        "q1", "batch", 100, {}, {"small@eu-west-1": 2, "small@us-east-1": 8})


def test_qstat_Q_shows_stuck_workers_with_the_reason_until_they_are_gone(aws_host):
    """The store is the aws host's DynamoDB on moto; Batch is the recorded-shape fake, since moto's Batch
    without Docker never leaves a job RUNNABLE."""
    from hyper.aws import names
    from hyper.services.context import open_context
    from qcmds import qstat
    from tests.test_scheduler_aws import runner

    ctx = open_context("t")
    batch = FakeBatch(job_queues=(names.job_queue(aws_host, "gpu"),),
                      definitions=(names.job_definition(aws_host, "small"),))
    job = plain("j1", f"{names.prefix(aws_host)}q1-small-t1", "RUNNABLE", names.batch_job_tags(aws_host, "q1", "small"))
    now = time.time()
    job["createdAt"] = int((now - 5400) * 1000)
    batch.jobs["us-east-1"] = [job]
    from qcmds import qsub

    submitted = runner.invoke(qsub.app, ["-q", "q1", "-d", "small", "--", "true"])
    assert submitted.exit_code == 0
    job_id = submitted.stdout.strip()
    BatchScheduler(aws_host, ctx.store, api=batch, sleep=lambda _: None).tick()
    result = runner.invoke(qstat.app, ["-Q"])
    assert result.exit_code == 0
    assert result.stderr == ("qstat: queue q1: stuck workers: 1 small worker(s) in us-east-1: RUNNABLE for 90 min "
                             "with nothing started: the compute environment has no capacity for it (spot capacity, "
                             "the account's vCPU quota, or instance types too small)\n")
    assert result.stdout.splitlines()[2].split()[:2] == ["q1", "1"]
    batch.jobs["us-east-1"] = []  # cancelled: the note goes
    BatchScheduler(aws_host, open_context("t").store, api=batch, sleep=lambda _: None).tick()
    assert runner.invoke(qstat.app, ["-Q"]).stderr == ""

    batch.jobs["us-east-1"] = [job]
    BatchScheduler(aws_host, ctx.store, api=batch, sleep=lambda _: None).tick()
    assert runner.invoke(qstat.app, ["-Q"]).stderr.startswith("qstat: queue q1: stuck workers: ")
    from qcmds import qdel

    assert runner.invoke(qdel.app, [job_id]).exit_code == 0  # the queued job is deleted: nothing waits
    BatchScheduler(aws_host, ctx.store, api=batch, sleep=lambda _: None).tick()
    assert runner.invoke(qstat.app, ["-Q"]).stderr == ""


def test_the_report_lists_the_cluster_s_instance_types_by_spot_price(kube):
    """Spot prices as DescribeSpotPriceHistory gives them (per region, via hyper.aws.weights.spot_prices)."""
    from hyper.backends.instances import PriceBook

    quotes = {"us-east-1": {"g5.xlarge": 0.45, "g5.2xlarge": 0.39}, "eu-west-1": {"g5.xlarge": 0.52}}
    book = PriceBook(spot=lambda region, types: {t: p for t, p in quotes[region].items() if t in types})
    store = Store(mixed(kube, spot=True), {("kq", "train"): 20})
    backend = KubernetesBackend(HOST, store, prices=book, image_uris=lambda d, r: IMAGE,
                                api_factory=lambda c, r: KubeApi(c, r, transport=kube.transport(r)))
    report = BatchScheduler(HOST, store, api=FakeBatch(), backends={"eks": backend}).tick(dry_run=True)
    (view,) = report.to_dict()["queues"]
    assert [(t["region"], t["type"], t["usd_per_hour"], t["price"]) for t in view["instance_types"]] == [
        ("us-east-1", "g5.2xlarge", 0.39, "spot"), ("us-east-1", "g5.xlarge", 0.45, "spot"),
        ("eu-west-1", "g5.xlarge", 0.52, "spot"), ("eu-west-1", "g5.2xlarge", 1.212, "on-demand")]
    annotations = {r.region: r.manifest["metadata"]["annotations"]["hyper/instance-types"] for r in report.requests}
    assert annotations["us-east-1"] == "g5.2xlarge,g5.xlarge"  # the template sees them cheapest first


def test_workers_whose_pods_failed_are_named_to_the_tick_which_requeues_their_jobs(kube):
    """A pod Failed (node reclaimed, OOM-killed) ends its worker whatever lease its job holds: the inventory
    notes Failed/Succeeded pods and the next tick requeues the jobs of the workers in them (the worker id is
    its pod's name). Running pods' workers keep theirs."""
    class Registry(Store):
        def __init__(self, *a):
            super().__init__(*a)
            self.workers, self.requeued = [], []

        def list_workers(self, live_since=None):
            return list(self.workers)

        def requeue_worker(self, worker, now, on_lost=None):
            self.requeued.append(worker)
            return ["job"]

    store = Registry(mixed(kube), {("kq", "train"): 20})
    sched = scheduler(store, FakeBatch(), kube)
    sched.tick()
    by_region = {job_region(j): j for j in kube.jobs()}
    failed = kube.start_pods(by_region["us-east-1"], phase="Failed")
    running = kube.start_pods(by_region["eu-west-1"], phase="Running")
    store.workers = [WorkerInfo(p["metadata"]["name"], "kq", "train", p["metadata"]["name"], state="BUSY")
                     for p in failed + running]
    assert sched.tick().requeued == 0  # the inventory of this tick is the first to see the Failed pods
    assert sched.tick().requeued == len(failed)
    assert sorted(store.requeued) == sorted(p["metadata"]["name"] for p in failed)
