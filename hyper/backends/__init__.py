"""Worker backends, one module per compute type, found by ``cluster.type`` (see :mod:`hyper.backends.base`).

Adding a compute type is one module implementing :class:`hyper.backends.base.WorkerBackend` plus one line
here. Modules are imported only when a cluster of their type is scheduled, so the local path never imports
boto3 and an aws host without EKS clusters never imports the Kubernetes client.
"""

from __future__ import annotations

import importlib

from hyper.errors import HyperError

BACKENDS: dict[str, str] = {
    "local": "hyper.backends.processes:LocalBackend",
    "batch": "hyper.backends.batch:BatchBackend",
    "eks": "hyper.backends.kubernetes:KubernetesBackend",
}


def backend_class(cluster_type: str) -> type:
    """The backend class for a cluster type; a one-line error naming the known types otherwise."""
    target = BACKENDS.get(cluster_type)
    if target is None:
        raise HyperError(f"cluster type {cluster_type!r} has no worker backend",
                         f"use one of {', '.join(sorted(BACKENDS))}")
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
