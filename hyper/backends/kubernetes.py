"""EKS workers: each (queue, definition, region) gets an Indexed Kubernetes Job per tick with
``completions = parallelism =`` the planned worker count, in the cluster's namespace (default ``hyper``).

* **render (pure)**: the Job comes from a Jinja2 template, the packaged ``templates/eks-worker-job.yaml.j2`` or
  the cluster's own (``--template PATH``), rendered with the queue's state in the queue-scaler's words
  (``QueueName``, ``Ready``, ``Running``, ``Resource.{cpus,gpus,ram}``, the price-sorted ``instance_types``)
  plus hyper's (``name``, ``namespace``, ``labels``, ``workers``, ``environment``, ...; see :func:`job_context`).
  Every rendered manifest is validated offline with ``kubernetes-validate`` against Kubernetes
  :data:`K8S_VERSION` before it is printed or sent; a template or schema error is one line naming the template
  and the line.
* **labels** ``hyper/prefix``, ``hyper/queue``, ``hyper/definition`` on the Job and its pods: the inventory
  counts live workers with a label selector, so a restarted scheduler counts what it already asked for.
* **workers**: the same worker environment and ``start.sh`` as Batch (``hyper.aws.batch.worker_environment``
  plus the job definition's ``HYPER_MAX_JOBS`` and the definition's environment); credentials come from EKS Pod
  Identity on the ``hyper-worker`` service account (the provisioning stack associates the worker IAM role),
  never from keys. ``podFailurePolicy`` ignores node disruption (spot reclaim, drain: the ``DisruptionTarget``
  condition), so it does not spend ``backoffLimit``; ``activeDeadlineSeconds`` (ratio x the definition's timeout
  plus a grace period) is the backstop; ``ttlSecondsAfterFinished`` cleans up finished Jobs.
* **stuck**: pods Pending and unschedulable for longer than the host's ``worker_stuck_after`` are not counted
  as live and are shown with the scheduler's own message (``0/3 nodes are available: Insufficient nvidia.com/gpu``).

Pod phases map to :class:`WorkerState` through :data:`POD_PHASES`.
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources as pkg_resources
from pathlib import Path
from types import TracebackType
from typing import Any, Callable, ClassVar, Sequence

from hyper.aws import names
from hyper.aws.batch import worker_environment
from hyper.backends import instances
from hyper.backends.base import Inventory, Pair, Stuck, Submitted, WorkerState, problem
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Image
from hyper.store.base import Store, WorkerInfo

K8S_VERSION = "1.33.0"  # the schemas manifests are validated against (EKS standard support, 2026-11)
DEFAULT_NAMESPACE = "hyper"
SERVICE_ACCOUNT = "hyper-worker"
TTL_SECONDS = 3600
DEADLINE_GRACE = 900
DEFAULT_STUCK_AFTER = 1800.0
TEMPLATE = "eks-worker-job.yaml.j2"
WORKER_COMMAND = ["/usr/local/bin/start.sh"]
LABEL_PREFIX, LABEL_QUEUE, LABEL_DEFINITION = "hyper/prefix", "hyper/queue", "hyper/definition"
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
SPOT_LABEL = "eks.amazonaws.com/capacityType"

POD_PHASES: dict[str, WorkerState] = {
    "Pending": WorkerState.PENDING, "Running": WorkerState.RUNNING, "Succeeded": WorkerState.SUCCEEDED,
    "Failed": WorkerState.FAILED, "Unknown": WorkerState.UNKNOWN,
}
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]{0,61})?[A-Za-z0-9]$")


def label_value(text: str) -> str:
    """A valid label value standing for `text` (itself when valid, else a short stable hash)."""
    return text if _LABEL_VALUE.match(text) else "h" + hashlib.sha256(text.encode()).hexdigest()[:12]


def labels(host: Host, queue: str, definition: str) -> dict[str, str]:
    return {LABEL_PREFIX: label_value(names.prefix(host).rstrip("-_")), LABEL_QUEUE: label_value(queue),
            LABEL_DEFINITION: label_value(definition)}


def region_code(region: str) -> str:
    """us-east-1 -> use1: short, and unique among AWS regions."""
    parts = region.split("-")
    return (parts[0] + "".join(p[:1] for p in parts[1:-1]) + parts[-1]) if len(parts) >= 3 else region


def job_name(host: Host, queue: str, definition: str, tick: str, region: str = "") -> str:
    """A DNS label (Indexed Job pods take it as hostname prefix): at most 52 characters, unique per tick and
    region (two regions may share one API server)."""
    raw = f"{names.prefix(host)}{queue}-{definition}".lower()
    tail = f"{region_code(region)}-{tick}" if region else tick
    safe = re.sub(r"[^a-z0-9-]+", "-", raw).strip("-")
    if len(safe) > 52 - len(tail) - 1:
        safe = safe[:52 - len(tail) - 8].rstrip("-") + "-" + hashlib.sha256(raw.encode()).hexdigest()[:6]
    return re.sub(r"[^a-z0-9-]+", "-", f"{safe}-{tail}")


def namespace_of(cluster: Cluster) -> str:
    return cluster.namespace or DEFAULT_NAMESPACE


def active_deadline(definition: Definition) -> int | None:
    if not definition.timeout:
        return None
    return max(60, definition.timeout * max(1, definition.ratio) + DEADLINE_GRACE)


def job_context(host: Host, definition: Definition, cluster: Cluster, *, queue: str, region: str, workers: int,
                tick: str, image_uri: str, backlog: int = 0, running: int = 0,
                instance_types: list[dict] | None = None, worker_idle: float | None = None) -> dict[str, Any]:
    """Everything a Job template is rendered with (pure)."""
    env = {str(k): str(v) for k, v in (definition.environment or {}).items()}
    env.update({e["name"]: e["value"] for e in worker_environment(host, queue, definition.name, region,
                                                                   worker_idle)})
    env["HYPER_MAX_JOBS"] = str(max(1, definition.ratio))
    env.setdefault("AWS_REGION", region)
    node_selector: dict[str, str] = {}
    tolerations: list[dict] = []
    if definition.gpus:
        tolerations.append(dict(GPU_TAINT))
    if cluster.spot:
        node_selector[SPOT_LABEL] = "SPOT"
    exact = [t for t in instances.cluster_types(cluster, region) if "." in t]
    if len(exact) == 1:
        node_selector["node.kubernetes.io/instance-type"] = exact[0]
    return {
        "name": job_name(host, queue, definition.name, tick, region), "namespace": namespace_of(cluster),
        "labels": labels(host, queue, definition.name), "workers": int(workers),
        "backoff_limit": max(1, int(workers)) * (definition.retries + 1),
        "retries": definition.retries, "active_deadline_seconds": active_deadline(definition),
        "ttl_seconds": TTL_SECONDS, "service_account": SERVICE_ACCOUNT, "image": image_uri,
        "command": list(WORKER_COMMAND), "environment": [{"name": k, "value": env[k]} for k in sorted(env)],
        "node_selector": node_selector, "tolerations": tolerations, "spot": bool(cluster.spot),
        "region": region, "cluster": cluster.name, "eks_cluster": cluster.eks_cluster,
        # the queue-scaler's names for the same state
        "QueueName": queue, "NodeGroup": cluster.eks_cluster, "Ready": int(backlog), "NotVisible": 0,
        "Running": int(running),
        "Resource": {"cpus": definition.vcpus, "gpus": definition.gpus, "ram": definition.memory_mib,
                     "hdd": 0, "gpuMem": 0},
        "instance_types": list(instance_types or []),
    }


# ---------------------------------------------------------------- templates (pure)
def template_source(cluster: Cluster) -> tuple[str, str]:
    """(name for messages, text) of the cluster's Job template."""
    if cluster.template:
        path = Path(cluster.template).expanduser()
        try:
            return str(path), path.read_text()
        except OSError as exc:
            raise HyperError(f"cluster {cluster.name}: template {path} cannot be read ({exc.strerror})",
                             "give an existing file with `hyper clusters update-cluster "
                             f"{cluster.name} --template PATH`") from None
    text = pkg_resources.files("hyper.backends").joinpath("templates", TEMPLATE).read_text()
    return TEMPLATE, text


def _template_line(tb: TracebackType | None, name: str) -> int | None:
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == name:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def render_manifest(context: dict[str, Any], text: str, name: str) -> dict:
    """Render one Job manifest from a template and validate it (pure); HyperError naming template and line."""
    import jinja2
    import yaml

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
    try:
        template = env.from_string(text)
        template.filename = name
    except jinja2.TemplateSyntaxError as exc:
        raise HyperError(f"template {name} line {exc.lineno}: {exc.message}",
                         "fix the template (Jinja2 syntax)") from None
    try:
        rendered = template.render(**context)
    except jinja2.TemplateError as exc:
        line = _template_line(exc.__traceback__, name) or _template_line(exc.__traceback__, "<template>")
        where = f" line {line}" if line else ""
        raise HyperError(f"template {name}{where}: {exc}",
                         "the variables a template gets are listed in hyper/backends/kubernetes.py "
                         "(job_context)") from None
    try:
        docs = [d for d in yaml.safe_load_all(rendered) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" rendered line {mark.line + 1}" if mark is not None else ""
        what = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise HyperError(f"template {name}{where}: not valid YAML: {what}",
                         "render it with `hyper scheduler run --dry-run` and fix the template") from None
    if len(docs) != 1 or not isinstance(docs[0], dict) or docs[0].get("kind") != "Job":
        raise HyperError(f"template {name}: must render exactly one batch/v1 Job, got "
                         f"{len(docs)} document(s)", "keep one `kind: Job` document in the template")
    validate_manifest(docs[0], name)
    return docs[0]


def validate_manifest(manifest: dict, name: str) -> None:
    """kubernetes-validate against the pinned Kubernetes schemas (strict: unknown fields are errors)."""
    try:
        from kubernetes_validate import utils as kv
    except ImportError:
        raise HyperError("validating Kubernetes manifests needs the kubernetes-validate package",
                         "pip install kubernetes-validate") from None
    try:
        kv.validate(manifest, K8S_VERSION, strict=True)
    except kv.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(top level)"
        raise HyperError(f"template {name}: the rendered Job is not valid for Kubernetes {K8S_VERSION}: "
                         f"{path}: {exc.message}", "fix the template; `hyper scheduler run --dry-run` shows "
                         "the manifest") from None
    except (kv.SchemaNotFoundError, kv.InvalidSchemaError) as exc:
        raise HyperError(f"template {name}: cannot validate: {exc}", "render an apiVersion batch/v1 Job") from None


def check_cluster(cluster: Cluster) -> None:
    """What an eks cluster must say before it is recorded (the registry's check for the type)."""
    if not cluster.eks_cluster:
        raise HyperError(f"cluster {cluster.name!r} is of type eks but names no EKS cluster",
                         "give --eks-cluster NAME (the EKS cluster in each of its regions; with --create-eks "
                         "hyper creates it)")
    if cluster.template:
        check_template(cluster)


def check_template(cluster: Cluster) -> None:
    """Render the cluster's template once with a sample GPU worker, so a broken template is refused when the
    cluster is added or updated (one line naming template and line), not on the first tick."""
    sample = Definition(name="sample", image="sample", vcpus=1, memory_mib=1024, gpus=1, timeout=3600, ratio=1)
    region = (cluster.regions or ["us-east-1"])[0]
    host = Host(name="check", type="aws", main_region=region)
    context = job_context(host, sample, cluster, queue="sample", region=region, workers=2,
                          tick="t0", image_uri="registry.example/sample:latest",
                          instance_types=[{"type": t, "usd_per_hour": 0.0} for t in cluster.instance_types])
    name, text = template_source(cluster)
    render_manifest(context, text, name)


@dataclass
class KubeRequest:
    """One Job to create: the exact manifest (``hyper scheduler run --dry-run`` prints it)."""

    region: str
    queue: str
    definition: str
    workers: int
    manifest: dict
    cluster: str = ""

    @property
    def job_name(self) -> str:
        return self.manifest["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.manifest["metadata"].get("namespace", DEFAULT_NAMESPACE)

    def to_dict(self) -> dict:
        return {"backend": "eks", "region": self.region, "queue": self.queue, "definition": self.definition,
                "workers": self.workers, "Job": self.manifest}


# ---------------------------------------------------------------- inventory helpers (pure)
def job_live(job: dict) -> int:
    """Workers an unfinished Job still stands for: completions not yet succeeded (0 once it finished)."""
    status = job.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") in ("Complete", "Failed", "SuccessCriteriaMet", "FailureTarget") and \
                cond.get("status") == "True":
            return 0
    spec = job.get("spec") or {}
    if spec.get("suspend"):
        return 0
    total = int(spec.get("completions") or spec.get("parallelism") or 1)
    return max(0, total - int(status.get("succeeded") or 0))


def _stamp(value: Any) -> float | None:
    if not value:
        return None
    if isinstance(value, datetime):
        return value.timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


POD_ENDED = ("Succeeded", "Failed")  # a pod in either phase runs no container any more


def pod_name(pod: dict) -> str:
    """A pod's name: the id of the worker in it (the image's start.sh passes HYPER_POD_NAME as --worker-id)."""
    return str((pod.get("metadata") or {}).get("name", ""))


def unschedulable(pod: dict, now: float, limit: float) -> tuple[float, str] | None:
    """(seconds, the scheduler's message) for a pod Pending and unschedulable beyond `limit`."""
    status = pod.get("status") or {}
    if POD_PHASES.get(status.get("phase", "")) != WorkerState.PENDING or limit <= 0:
        return None
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            since = _stamp((pod.get("metadata") or {}).get("creationTimestamp")) or _stamp(
                cond.get("lastTransitionTime"))
            if since is not None and now - since >= limit:
                return now - since, str(cond.get("message") or cond.get("reason") or "unschedulable")
    return None


# ---------------------------------------------------------------- the backend
class KubernetesBackend:
    kind: ClassVar[str] = "eks"

    def __init__(self, host: Host, store: Store, *, apis: dict[tuple[str, str], Any] | None = None,
                 api_factory: Callable[[Cluster, str], Any] | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] = time.sleep, worker_idle: float | None = None,
                 prices: Any = None, image_uris: Callable[[Definition, str], str] | None = None):
        from hyper.backends.base import setting

        self.host = host
        self.store = store
        self._apis: dict[tuple[str, str], Any] = dict(apis or {})  # (cluster, region) -> KubeApi-like
        self.api_factory = api_factory
        self.clock = clock
        self.worker_idle = worker_idle if worker_idle is not None else setting(host.extra or {}, "worker_idle",
                                                                                 None)
        self.stuck_after = setting(host.extra or {}, "worker_stuck_after", DEFAULT_STUCK_AFTER) or 0.0
        self.prices = prices if prices is not None else instances.PriceBook(host)
        self._image_uris = image_uris
        self._images: dict[tuple[str, str], str] = {}
        self._account: str | None = None
        self._state: dict[tuple[str, str, str], tuple[int, int]] = {}  # (q, d, region) -> (backlog, running)
        self._ended_pods: set[str] = set()  # pods seen Succeeded/Failed by the last inventory (see ended)

    def api(self, cluster: Cluster, region: str) -> Any:  # a KubeApi, or a test's fake of one
        key = (cluster.name, region)
        if key not in self._apis:
            if self.api_factory is not None:
                self._apis[key] = self.api_factory(cluster, region)
            else:
                from hyper.backends.kubeapi import KubeApi

                self._apis[key] = KubeApi(cluster, region)
        return self._apis[key]

    # -- inventory -----------------------------------------------------------------------------------
    def inventory(self, pairs: Sequence[Pair], known_pairs: Sequence[tuple[str, str]]) -> Inventory:
        from hyper.backends.kubeapi import KubeError

        inv = Inventory()
        now = self.clock()
        clusters = {p.cluster.name: p.cluster for p in pairs}
        defs = {p.definition.name: p.definition for p in pairs}
        ours = {(label_value(q), label_value(d)): (q, d) for q, d in known_pairs}
        selector = {LABEL_PREFIX: label_value(names.prefix(self.host).rstrip("-_"))}
        ended_pods: set[str] = set()
        for cname, cluster in sorted(clusters.items()):
            ns = namespace_of(cluster)
            for region in sorted({r for p in pairs if p.cluster.name == cname for r in p.enabled}):
                where = f"region {region}: EKS cluster {cluster.eks_cluster} (cluster {cname})"
                try:
                    api = self.api(cluster, region)
                    if api.namespace(ns) is None:
                        inv.known.add((cname, region))  # no namespace: nothing of ours runs there
                        inv.problems.append(problem(f"{where}: namespace {ns} does not exist; no workers there",
                                                    f"provision the cluster (`hyper clusters update-cluster "
                                                    f"{cname}`) or `kubectl create namespace {ns}`"))
                        continue
                    jobs = api.list_jobs(ns, selector)
                    pods = api.list_pods(ns, selector)
                except HyperError as exc:
                    inv.problems.append(problem(f"{where}: {exc.message}", exc.hint))
                    continue
                except KubeError as exc:
                    inv.problems.append(problem(f"{where}: the API server answered {exc.code or exc.reason}: "
                                                f"{exc.message}", "check the kubeconfig context and the "
                                                "scheduler's RBAC; the other regions are still scheduled"))
                    continue
                inv.known.add((cname, region))
                inv.usable.add((cname, region))
                ended_pods.update(pod_name(p) for p in pods if (p.get("status") or {}).get("phase") in POD_ENDED)
                stuck_by_job: dict[str, list[tuple[float, str]]] = {}
                for pod in pods:
                    got = unschedulable(pod, now, self.stuck_after)
                    if got:
                        owner = ((pod.get("metadata") or {}).get("labels") or {}).get("job-name", "")
                        stuck_by_job.setdefault(owner, []).append(got)
                for job in jobs:
                    meta = job.get("metadata") or {}
                    lab = meta.get("labels") or {}
                    key = ours.get((lab.get(LABEL_QUEUE, ""), lab.get(LABEL_DEFINITION, "")))
                    n = job_live(job)
                    if key is None or n <= 0:
                        continue
                    stuck = stuck_by_job.get(meta.get("name", ""), [])
                    if stuck and len(stuck) >= n:
                        age = max(s[0] for s in stuck)
                        reason = f"Pending for {age / 60:.0f} min: {stuck[0][1]}"
                        why = instances.fit_problem(defs[key[1]], cluster, region, reserve=instances.KUBE_RESERVE) \
                            if key[1] in defs else None
                        inv.stuck.append(Stuck(key[0], key[1], region, n, age, why or reason, self.kind))
                        continue
                    inv.add_live(key[0], key[1], region, n)
                    d = defs.get(key[1])
                    inv.add_used(cname, region, n * max(1, d.vcpus if d else 1))
        self._state = {k: (0, n) for k, n in inv.live.items()}
        self._ended_pods = ended_pods
        return inv

    def ended(self, workers: Sequence[WorkerInfo]) -> list[str]:
        """Workers whose pod (a worker's id is its pod's name) the last inventory saw Succeeded or Failed: the
        container is gone (node reclaimed, OOM-killed), whatever lease its jobs still hold."""
        return sorted(w.id for w in workers if w.id in self._ended_pods)

    # -- prepare -------------------------------------------------------------------------------------
    def prepare(self, pairs: dict[tuple[str, str], Pair], wanted: dict[tuple[str, str], int]) -> list[str]:
        """Definitions that fit no instance type, and images without a URI, get no workers (one line each)."""
        out = []
        for key, p in sorted(pairs.items()):
            if wanted.get(key, 0) <= 0:
                continue
            for region in sorted(p.weights):
                why = instances.fit_problem(p.definition, p.cluster, region, reserve=instances.KUBE_RESERVE)
                if why:
                    out.append(problem(f"queue {key[0]} / definition {key[1]} in {region}: {why}; no workers",
                                       f"lower the definition's size or add bigger instance types to cluster "
                                       f"{p.cluster.name}"))
                    p.weights.pop(region)
                    continue
                try:
                    self.image_uri(p.definition, region)
                except HyperError as exc:
                    out.append(problem(f"queue {key[0]} / definition {key[1]} in {region}: {exc.message}",
                                       exc.hint))
                    p.weights.pop(region)
        return out

    def image_uri(self, definition: Definition, region: str) -> str:
        """The worker image in `region`: an adopted URI as is, else the region's replica of hyper's repository
        pinned by the digest its build recorded, as Batch job definitions are (a tag could name another image
        by the time a pod pulls it)."""
        if self._image_uris is not None:
            return self._image_uris(definition, region)
        key = (definition.image, region)
        if key not in self._images:
            image = self.store.get_resource("image", definition.image)
            if not isinstance(image, Image):
                raise HyperError(f"image {definition.image!r} does not exist", "add it with `hyper images add-image`")
            if image.uri:
                self._images[key] = image.uri
            else:
                from hyper.aws import ecr as registry
                from hyper.aws.session import aws_errors, client

                if self._account is None:
                    with aws_errors(self.host, "sts", "get_caller_identity"):
                        self._account = client(self.host, "sts").get_caller_identity()["Account"]
                repo = names.repository(self.host, image.name)
                with aws_errors(self.host, "ecr", f"find the image of {repo}"):
                    digest = registry.built_digest(client(self.host, "ecr"), repo, image)
                self._images[key] = registry.replica_uri(self._account, region, repo, digest)
        return self._images[key]

    # -- render (pure given the images) --------------------------------------------------------------
    def render(self, counts: dict[tuple[str, str, str], int], pairs: dict[tuple[str, str], Pair],
               tick: str) -> list[KubeRequest]:
        out = []
        templates: dict[str, tuple[str, str]] = {}
        for (queue, definition, region), n in sorted(counts.items(), key=lambda kv: (kv[0][2], kv[0][:2])):
            if n <= 0:
                continue
            p = pairs[(queue, definition)]
            if p.cluster.name not in templates:
                templates[p.cluster.name] = template_source(p.cluster)
            name, text = templates[p.cluster.name]
            price_list = [{"type": t, "usd_per_hour": round(v, 4)} for t, v in
                          self.prices.prices(p.cluster, region).items()]
            context = job_context(self.host, p.definition, p.cluster, queue=queue, region=region, workers=n,
                                  tick=tick, image_uri=self.image_uri(p.definition, region), backlog=p.backlog,
                                  running=self._state.get((queue, definition, region), (0, 0))[1],
                                  instance_types=price_list, worker_idle=self.worker_idle)
            out.append(KubeRequest(region, queue, definition, n, render_manifest(context, text, name),
                                   p.cluster.name))
        return out

    def capacity(self, cluster: Cluster, region: str) -> tuple[int, int | None]:
        from hyper.scheduler.loop import region_cap

        return region_cap(cluster, region), None  # node groups scale; hyper caps vCPUs like Batch

    def hourly_price(self, pair: Pair, region: str) -> float | None:
        return self.prices.worker_price(pair.definition, pair.cluster, region, reserve=instances.KUBE_RESERVE)

    # -- submit / cancel -----------------------------------------------------------------------------
    def _cluster(self, name: str) -> Cluster:
        found = self.store.get_resource("cluster", name)
        if not isinstance(found, Cluster):
            raise HyperError(f"cluster {name!r} does not exist", "see `hyper clusters list-clusters`")
        return found

    def submit(self, requests: Sequence[KubeRequest]) -> list[tuple[Submitted | None, str | None]]:
        from hyper.backends.kubeapi import KubeError

        out: list[tuple[Submitted | None, str | None]] = []
        for req in requests:
            what = f"Job {req.job_name} ({req.workers} worker(s) for queue {req.queue}, definition {req.definition})"
            try:
                created = self.api(self._cluster(req.cluster), req.region).create_job(req.manifest)
            except HyperError as exc:
                out.append((None, problem(f"region {req.region}: cannot create {what}: {exc.message}", exc.hint)))
                continue
            except KubeError as exc:
                if exc.code == 409:  # created by an earlier attempt whose answer was lost: it counts as sent
                    out.append((Submitted(req.region, req.queue, req.definition, req.workers, req.job_name,
                                          f"{req.namespace}/{req.job_name}", self.kind), None))
                    continue
                out.append((None, problem(f"region {req.region}: the API server refused {what}: "
                                          f"{exc.code or exc.reason}: {exc.message}",
                                          "fix the template or the namespace's quota/RBAC; the next tick plans "
                                          "these workers again")))
                continue
            uid = ((created.get("metadata") or {}).get("uid")) or ""
            out.append((Submitted(req.region, req.queue, req.definition, req.workers, req.job_name,
                                  uid or f"{req.namespace}/{req.job_name}", self.kind), None))
        return out

    def cancel(self, worker_ids: Sequence[str]) -> list[bool]:
        """Delete worker Jobs given as ``cluster/region/namespace/name``."""
        from hyper.backends.kubeapi import KubeError

        out = []
        for wid in worker_ids:
            cname, region, ns, name = wid.split("/", 3)
            try:
                self.api(self._cluster(cname), region).delete_job(ns, name)
                out.append(True)
            except (KubeError, HyperError):
                out.append(False)
        return out
