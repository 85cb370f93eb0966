"""Steps every per-region cluster provisioner plans alike."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hyper.config import Host
    from hyper.models import Cluster
    from hyper.services.provision import Step


def removal_steps(host: Host, resource: Cluster, previous: Cluster | None, name: str, *,
                  delete: bool) -> list[Step]:
    """Delete-stack steps for a cluster's per-region stack ``name``: every region on delete, else the regions an
    update dropped. Both provisioners plan the rest (deploys) themselves."""
    from hyper.aws import stacks
    from hyper.services.provision import Step

    if delete:
        regions = list(resource.regions)
    elif previous is not None and getattr(previous, "type", None) == resource.type:
        regions = sorted(set(previous.regions) - set(resource.regions))
    else:
        regions = []
    return [Step("delete-stack", region, name, run=partial(stacks.delete_stack, host, region, name))
            for region in regions]
