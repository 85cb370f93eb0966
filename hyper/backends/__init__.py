"""Worker backends, one module per compute type, found by ``cluster.type`` (see :mod:`hyper.backends.base`).

Adding a compute type is one module implementing :class:`hyper.backends.base.WorkerBackend` plus one line
in ``BACKENDS`` and one in ``CLUSTER_TYPES`` (what kind of host it belongs to, whether it spans the host's
regions, and its own checks), so nothing elsewhere asks ``cluster.type == ...``.
Modules are imported only when a cluster of their type is scheduled, so the local path never imports
boto3 and an aws host without EKS clusters never imports the Kubernetes client.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hyper.errors import HyperError

if TYPE_CHECKING:
    from hyper.models import Cluster

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


@dataclass(frozen=True)
class ClusterType:
    """What the admin services need to know of a cluster type without importing its backend."""

    host: str  # the host type whose clusters may be of this type ("local" or "aws")
    regional: bool  # spans the host's regions: defaults to all of them, each region's capacity is EC2's
    needs_network: bool = False  # its regions' network stacks must be deployed before it is
    check: str = ""  # "module:function(cluster)" raising HyperError for settings only this type has


CLUSTER_TYPES: dict[str, ClusterType] = {
    "local": ClusterType(host="local", regional=False),
    "batch": ClusterType(host="aws", regional=True, needs_network=True),
    "eks": ClusterType(host="aws", regional=True, check="hyper.backends.kubernetes:check_cluster"),
}


def cluster_type(name: str) -> ClusterType:
    """The registry entry of a cluster type; a one-line error naming the known types otherwise."""
    found = CLUSTER_TYPES.get(name)
    if found is None:
        raise HyperError(f"cluster type {name!r} is not known", f"use one of {', '.join(sorted(CLUSTER_TYPES))}")
    return found


def types_for(host_type: str) -> list[str]:
    """The cluster types a host of this type runs, the default first."""
    return [name for name, kind in CLUSTER_TYPES.items() if kind.host == host_type]


def default_type(host_type: str) -> str:
    return types_for(host_type)[0]


def check_cluster(cluster: Cluster) -> None:
    """The checks only the cluster's own type knows (an EKS cluster name, a Job template that renders)."""
    kind = cluster_type(cluster.type)
    if kind.check:
        module, _, name = kind.check.partition(":")
        getattr(importlib.import_module(module), name)(cluster)
