"""The Kubernetes API calls hyper makes (namespaces, service accounts, worker Jobs and their pods), via lightkube.

Why lightkube: it is maintained, typed, and installs cleanly beside boto3. The official ``kubernetes`` client
37.x requires python-dateutil >= 3 while botocore needs < 3, so pip backtracks for many minutes (DESIGN.md §9);
lightkube (httpx2, lightkube-models) has no dateutil pin. kr8s would also install, but lightkube takes an
httpx transport at its client boundary, so tests drive the real client code against a fake API server
(``transport=``) with no patching. It is imported only when an EKS cluster is used.

Every method returns plain dicts shaped as the API returns them (``metadata``, ``spec``, ``status``) and raises
:class:`KubeError` with the API's own message (404/409/422/403 ...).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from hyper.errors import HyperError
from hyper.models import Cluster

if TYPE_CHECKING:
    from lightkube import Client

T = TypeVar("T")


class KubeError(Exception):
    def __init__(self, code: int, reason: str, message: str):
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message


def kubeconfig_path(cluster: Cluster) -> Path:
    raw = cluster.kubeconfig or (os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]) or "~/.kube/config"
    return Path(raw).expanduser()


def pick_context(contexts: dict[str, Any], current: str | None, cluster: Cluster, region: str) -> str:
    """The kubeconfig context of the cluster's EKS cluster in `region`.

    ``--context`` wins; else the context `aws eks update-kubeconfig` writes (its name, or its cluster's name,
    is the EKS ARN ``arn:aws:eks:REGION:ACCOUNT:cluster/NAME``, or an alias equal to NAME); else, for a
    one-region cluster, the file's current context.
    """
    if cluster.context:
        if cluster.context not in contexts:
            raise HyperError(f"cluster {cluster.name}: kubeconfig context {cluster.context!r} does not exist",
                             f"see `kubectl config get-contexts`, or run `aws eks update-kubeconfig --name "
                             f"{cluster.eks_cluster} --region {region}`")
        return cluster.context
    arn_tail = f":{region}:"
    for name, ctx in sorted(contexts.items()):
        target = getattr(ctx, "cluster", "") or ""
        for text in (name, target):
            if arn_tail in text and text.endswith(f":cluster/{cluster.eks_cluster}"):
                return name
    if len(cluster.regions) <= 1:
        if cluster.eks_cluster in contexts:
            return cluster.eks_cluster
        if current:
            return current
    raise HyperError(f"cluster {cluster.name}: no kubeconfig context for EKS cluster {cluster.eks_cluster!r} in "
                     f"{region} (in {kubeconfig_path(cluster)})",
                     f"run `aws eks update-kubeconfig --name {cluster.eks_cluster} --region {region}`, or give "
                     "--context / --kubeconfig")


class KubeApi:
    """One region's EKS cluster, reached through its kubeconfig context (:func:`pick_context`).
    ``transport`` (an httpx2 transport) replaces the network, for tests against a fake API server."""

    def __init__(self, cluster: Cluster, region: str, *, transport: Any = None):
        self.cluster = cluster
        self.region = region
        self.transport = transport
        self._client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            try:
                from lightkube import Client
                from lightkube.config.kubeconfig import KubeConfig
            except ImportError:
                raise HyperError("EKS clusters need the lightkube package", "pip install lightkube") from None
            path = kubeconfig_path(self.cluster)
            if not path.exists():
                raise HyperError(f"cluster {self.cluster.name}: kubeconfig {path} does not exist",
                                 f"run `aws eks update-kubeconfig --name {self.cluster.eks_cluster} --region "
                                 f"{self.region}` or give --kubeconfig PATH")
            try:
                whole = KubeConfig.from_file(path)
            except Exception as exc:
                raise HyperError(f"cluster {self.cluster.name}: kubeconfig {path} cannot be read: {exc}",
                                 "fix the file or give another with --kubeconfig") from None
            name = pick_context(whole.contexts, whole.current_context, self.cluster, self.region)
            config = whole.get(name)
            self._client = Client(config=config, transport=self.transport, field_manager="hyper")
        return self._client

    def _call(self, fn: Callable[[], T], what: str) -> T:
        from lightkube import ApiError

        try:
            return fn()
        except ApiError as exc:
            status = exc.status
            raise KubeError(int(status.code or 0), str(status.reason or ""), str(status.message or exc)) from None
        except HyperError:
            raise
        except Exception as exc:  # connection refused, TLS, DNS: one line, the tick goes on
            raise KubeError(0, type(exc).__name__, f"{what}: {type(exc).__name__}: {exc}") from None

    def namespace(self, name: str) -> dict | None:
        from lightkube.resources.core_v1 import Namespace

        try:
            return self._call(lambda: self.client().get(Namespace, name), f"get namespace {name}").to_dict()
        except KubeError as exc:
            if exc.code == 404:
                return None
            raise

    def apply(self, manifest: dict) -> dict:
        """Create or update (server-side apply) one object: the provisioner's namespace and service account."""
        from lightkube import codecs

        obj = codecs.from_dict(manifest)
        kind = manifest["kind"]
        # apply() takes the namespace from the object's metadata, which is the manifest's
        return self._call(lambda: self.client().apply(obj, force=True),
                          f"apply {kind} {manifest['metadata']['name']}").to_dict()

    def create_job(self, manifest: dict) -> dict:
        from lightkube import codecs

        obj = codecs.from_dict(manifest)
        return self._call(lambda: self.client().create(obj), f"create Job {manifest['metadata']['name']}").to_dict()

    def list_jobs(self, namespace: str, labels: dict[str, str]) -> list[dict]:
        from lightkube.resources.batch_v1 import Job

        selector: dict[str, Any] = {**labels}  # lightkube's selector values may also be operators or None
        return self._call(lambda: [j.to_dict() for j in self.client().list(Job, namespace=namespace,
                                                                              labels=selector)], "list Jobs")

    def list_pods(self, namespace: str, labels: dict[str, str]) -> list[dict]:
        from lightkube.resources.core_v1 import Pod

        selector: dict[str, Any] = {**labels}  # lightkube's selector values may also be operators or None
        return self._call(lambda: [p.to_dict() for p in self.client().list(Pod, namespace=namespace,
                                                                              labels=selector)], "list Pods")

    def delete_job(self, namespace: str, name: str) -> None:
        from lightkube.resources.batch_v1 import Job
        from lightkube.types import CascadeType

        self._call(lambda: self.client().delete(Job, name, namespace=namespace, cascade=CascadeType.BACKGROUND),
                   f"delete Job {name}")
