"""Provisioners by cluster type: each plans the steps (``hyper.services.provision.Step``) that make AWS match a
cluster, so ``--dry-run`` shows them. A cluster type without an entry here (``local``) needs nothing in AWS;
a new type is one module and one line below.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

PROVISIONERS: dict[str, str] = {  # module with plan_cluster(ctx, cluster, ...) and stack_name(host, cluster)
    "batch": "hyper.provisioning.batch",
    "eks": "hyper.provisioning.eks",
}


def provisioner(cluster_type: str) -> Any:
    """The provisioner module of a cluster type, or None (nothing to deploy for it)."""
    target = PROVISIONERS.get(cluster_type)
    return importlib.import_module(target) if target else None


def provisioner_for(cluster_type: str) -> Callable | None:
    module = provisioner(cluster_type)
    return module.plan_cluster if module is not None else None

