"""An in-memory Kubernetes API server behind an httpx2 transport, for lightkube's client boundary.

Responses are shaped as a real API server (1.33) returns them: objects with ``metadata.uid``,
``resourceVersion``, ``creationTimestamp``; Jobs get the labels and selector the Job controller adds; lists
are ``<Kind>List`` with ``metadata.resourceVersion``; errors are ``Status`` objects (404 NotFound, 409
AlreadyExists, 422 Invalid). Enough of the API for hyper: namespaces, service accounts (server-side apply),
Jobs (create, list, delete by label selector) and pods. The fake also plays the Job controller on request
(:meth:`FakeKube.start_pods`), so tests can give pods phases and scheduling conditions.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qs

import httpx2
import yaml

_rv = itertools.count(1000)


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str, name: str = "", kind: str = "") -> httpx2.Response:
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "details": {"name": name, "kind": kind}, "code": code}
    return httpx2.Response(code, json=body, headers={"Content-Type": "application/json"})


def _ok(obj: dict, code: int = 200) -> httpx2.Response:
    return httpx2.Response(code, json=obj, headers={"Content-Type": "application/json"})


def _matches(labels: dict, selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        k, _, v = term.partition("=")
        if labels.get(k) != v:
            return False
    return True


class FakeKube:
    def __init__(self, namespaces=("default", "kube-system", "hyper")):
        self.namespaces: dict[str, dict] = {}
        self.objects: dict[tuple[str, str, str], dict] = {}  # (kind, namespace, name) -> object
        self.requests: list[tuple[str, str]] = []  # (method, path) in order
        self.refuse_create: dict | None = None  # a Status body to answer creates with
        for ns in namespaces:
            self._put_namespace(ns)

    # -- the transport --------------------------------------------------------------------------------
    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def _meta(self, name: str, namespace: str | None = None, labels: dict | None = None) -> dict:
        meta = {"name": name, "uid": str(uuid.uuid4()), "resourceVersion": str(next(_rv)),
                "creationTimestamp": _now()}
        if namespace:
            meta["namespace"] = namespace
        if labels:
            meta["labels"] = dict(labels)
        return meta

    def _put_namespace(self, name: str) -> dict:
        ns = {"kind": "Namespace", "apiVersion": "v1",
              "metadata": self._meta(name, labels={"kubernetes.io/metadata.name": name}),
              "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
        self.namespaces[name] = ns
        return ns

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        path = request.url.path
        query = {k: v[0] for k, v in parse_qs(request.url.query.decode() if isinstance(request.url.query, bytes)
                                              else str(request.url.query)).items()}
        self.requests.append((request.method, path))
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)", path)
        if m:
            name = m.group(1)
            if request.method == "GET":
                if name not in self.namespaces:
                    return _status(404, "NotFound", f'namespaces "{name}" not found', name, "namespaces")
                return _ok(self.namespaces[name])
            if request.method == "PATCH":  # server-side apply
                return _ok(self.namespaces.get(name) or self._put_namespace(name))
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/serviceaccounts/([^/]+)", path)
        if m and request.method == "PATCH":
            ns, name = m.groups()
            body = yaml.safe_load(request.content)
            obj = self.objects.get(("ServiceAccount", ns, name)) or {
                "kind": "ServiceAccount", "apiVersion": "v1", "metadata": self._meta(name, ns)}
            obj["metadata"]["labels"] = (body.get("metadata") or {}).get("labels") or {}
            self.objects[("ServiceAccount", ns, name)] = obj
            return _ok(obj)
        m = re.fullmatch(r"/apis/batch/v1/namespaces/([^/]+)/jobs(?:/([^/]+))?", path)
        if m:
            return self._jobs(request, m.group(1), m.group(2), query)
        m = re.fullmatch(r"/api/v1/namespaces/([^/]+)/pods", path)
        if m and request.method == "GET":
            ns = m.group(1)
            items = [copy.deepcopy(o) for (k, n, _), o in sorted(self.objects.items())
                     if k == "Pod" and n == ns and _matches(o["metadata"].get("labels") or {},
                                                              query.get("labelSelector", ""))]
            return _ok({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": str(next(_rv))},
                        "items": items})
        return _status(404, "NotFound", f"the server could not find the requested resource ({path})")

    def _jobs(self, request, ns: str, name: str | None, query: dict) -> httpx2.Response:
        if ns not in self.namespaces:
            return _status(404, "NotFound", f'namespaces "{ns}" not found', ns, "namespaces")
        if request.method == "POST" and name is None:
            if self.refuse_create is not None:
                return _ok(self.refuse_create, int(self.refuse_create["code"]))
            body = json.loads(request.content)
            jname = body["metadata"]["name"]
            if ("Job", ns, jname) in self.objects:
                return _status(409, "AlreadyExists", f'jobs.batch "{jname}" already exists', jname, "jobs")
            job = copy.deepcopy(body)
            uid = str(uuid.uuid4())
            job["metadata"].update({"uid": uid, "resourceVersion": str(next(_rv)), "generation": 1,
                                    "creationTimestamp": _now(), "namespace": ns})
            added = {"batch.kubernetes.io/controller-uid": uid, "batch.kubernetes.io/job-name": jname,
                     "controller-uid": uid, "job-name": jname}
            job["spec"].setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
            job["spec"].setdefault("suspend", False)
            job["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(added)
            job["status"] = {}
            self.objects[("Job", ns, jname)] = job
            return _ok(job, 201)
        if request.method == "GET" and name is None:
            items = [copy.deepcopy(o) for (k, n, _), o in sorted(self.objects.items())
                     if k == "Job" and n == ns and _matches(o["metadata"].get("labels") or {},
                                                              query.get("labelSelector", ""))]
            return _ok({"kind": "JobList", "apiVersion": "batch/v1",
                        "metadata": {"resourceVersion": str(next(_rv))}, "items": items})
        if request.method == "DELETE" and name:
            if self.objects.pop(("Job", ns, name), None) is None:
                return _status(404, "NotFound", f'jobs.batch "{name}" not found', name, "jobs")
            return _ok({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                        "details": {"name": name, "group": "batch", "kind": "jobs"}})
        return _status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource")

    # -- the Job controller, on request ---------------------------------------------------------------
    def jobs(self, ns: str = "hyper") -> list[dict]:
        return [o for (k, n, _), o in sorted(self.objects.items()) if k == "Job" and n == ns]

    def start_pods(self, job: dict, phase: str = "Pending", unschedulable: str | None = None,
                   created: str | None = None) -> list[dict]:
        """One pod per index of the Job, in `phase`; `unschedulable` sets PodScheduled=False with that message."""
        ns = job["metadata"]["namespace"]
        pods = []
        for i in range(int(job["spec"]["completions"])):
            name = f"{job['metadata']['name']}-{i}-{uuid.uuid4().hex[:5]}"
            labels = {**job["spec"]["template"]["metadata"]["labels"],
                      "batch.kubernetes.io/job-completion-index": str(i)}
            meta = self._meta(name, ns, labels)
            if created:
                meta["creationTimestamp"] = created
            conditions = []
            if unschedulable:
                conditions.append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                   "message": unschedulable, "lastProbeTime": None,
                                   "lastTransitionTime": created or _now()})
            pod = {"kind": "Pod", "apiVersion": "v1", "metadata": meta,
                   "spec": copy.deepcopy(job["spec"]["template"]["spec"]),
                   "status": {"phase": phase, "conditions": conditions, "qosClass": "Burstable"}}
            self.objects[("Pod", ns, name)] = pod
            pods.append(pod)
        job["status"] = {"active": len(pods), "ready": 0, "startTime": _now(),
                         "uncountedTerminatedPods": {}, "terminating": 0}
        return pods

    def finish(self, job: dict) -> None:
        """Every index succeeded: the Job is Complete (as the controller reports it)."""
        n = int(job["spec"]["completions"])
        job["status"] = {"succeeded": n, "completedIndexes": f"0-{n - 1}" if n > 1 else "0", "ready": 0,
                         "terminating": 0, "uncountedTerminatedPods": {}, "startTime": _now(),
                         "completionTime": _now(),
                         "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "lastProbeTime": _now(),
                                         "lastTransitionTime": _now(), "reason": "CompletionsReached",
                                         "message": "Reached expected number of succeeded pods"},
                                        {"type": "Complete", "status": "True", "lastProbeTime": _now(),
                                         "lastTransitionTime": _now(), "reason": "CompletionsReached",
                                         "message": "Reached expected number of succeeded pods"}]}


def write_kubeconfig(path, clusters: dict[str, str], current: str | None = None) -> str:
    """A kubeconfig as `aws eks update-kubeconfig` writes it: context and cluster named by the EKS ARN
    (``clusters``: region -> EKS name), a token user (the fake checks nothing)."""
    contexts, entries = [], []
    for region, name in clusters.items():
        arn = f"arn:aws:eks:{region}:123456789012:cluster/{name}"
        entries.append({"name": arn, "cluster": {"server": f"https://{name}.{region}.eks.fake",
                                                 "insecure-skip-tls-verify": True}})
        contexts.append({"name": arn, "context": {"cluster": arn, "user": arn}})
    users = [{"name": c["name"], "user": {"token": "fake-token"}} for c in contexts]
    conf = {"apiVersion": "v1", "kind": "Config", "clusters": entries, "contexts": contexts, "users": users,
            "current-context": current or contexts[0]["name"], "preferences": {}}
    path.write_text(yaml.safe_dump(conf))
    return str(path)
