"""Which of a cluster's regions take workers, with what weight and vCPU cap: pure functions of the resources,
shared by the scheduler tick and the auto-weights service (so neither imports the other)."""

from __future__ import annotations

from hyper.models import Cluster, Queue, Region

DISABLED_STATES = ("DISABLED", "DELETING", "DELETED")  # a region resource in these states gets no new workers


def enabled_regions(cluster: Cluster, regions: dict[str, Region]) -> list[str]:
    """The cluster's regions that exist on the host and are not being disabled or deleted."""
    return [r for r in cluster.regions if r in regions and regions[r].status not in DISABLED_STATES]


def effective_weights(queue: Queue, regions: list[str]) -> dict[str, int]:
    """The queue's positive region weights among `regions`.

    ``auto`` (or no weights at all) means the weights provisioning computed (a ``auto_weights`` mapping on
    the queue when present), else equal weights across the regions.
    """
    weights = queue.weights
    if weights == "auto" or not weights:
        computed = getattr(queue, "auto_weights", None)
        weights = computed if isinstance(computed, dict) and computed else {r: 1 for r in regions}
    if not isinstance(weights, dict):
        return {}
    out = {}
    for r in regions:
        try:
            w = int(weights.get(r, 0))
        except (TypeError, ValueError):
            w = 0
        if w > 0:
            out[r] = w
    return out


def region_cap(cluster: Cluster, region: str) -> int:
    """The cluster's vCPU cap in a region: its per-region override, else its max_vcpus."""
    override = (cluster.overrides or {}).get(region) or {}
    value = override.get("max_vcpus")
    return int(value) if value not in (None, "") else int(cluster.max_vcpus or 0)
