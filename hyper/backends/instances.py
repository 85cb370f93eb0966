"""Instance sizes and prices the scheduler needs: does a worker fit a cluster's instance types, what it costs.

Sizes and on-demand prices are a recorded table (AWS EC2 pricing pages, us-east-1, Linux, on-demand, as
published 2026-11; other regions differ by a few percent and are taken as equal). Spot prices come live from
``DescribeSpotPriceHistory`` (:func:`hyper.aws.weights.spot_prices`) for spot clusters, falling back to the
on-demand price when the call fails, so a spend limit is never computed from nothing.

A worker does not get the whole instance: the ECS agent (Batch) and the kubelet (EKS) reserve part of every
instance's memory, and the kubelet some CPU as well. The reserves below are conservative approximations of
the documented defaults (ECS: about 6 % of memory; EKS AL2023: 255 MiB + 11 MiB per pod plus 100 MiB eviction
threshold, and 60-100 m CPU), so "fits" here means it will fit on the real instance.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from hyper.models import Cluster, Definition


@dataclass(frozen=True)
class Size:
    vcpus: int
    memory_mib: int
    gpus: int
    on_demand: float  # USD per hour


def _s(vcpus: int, gib: float, gpus: int, price: float) -> Size:
    return Size(vcpus, int(gib * 1024), gpus, price)


SIZES: dict[str, Size] = {
    "t3.medium": _s(2, 4, 0, 0.0416), "t3.large": _s(2, 8, 0, 0.0832),
    "m5.large": _s(2, 8, 0, 0.096), "m5.xlarge": _s(4, 16, 0, 0.192), "m5.2xlarge": _s(8, 32, 0, 0.384),
    "m5.4xlarge": _s(16, 64, 0, 0.768), "m6i.large": _s(2, 8, 0, 0.096), "m6i.xlarge": _s(4, 16, 0, 0.192),
    "m6i.2xlarge": _s(8, 32, 0, 0.384), "m7i.large": _s(2, 8, 0, 0.1008), "m7i.xlarge": _s(4, 16, 0, 0.2016),
    "c5.large": _s(2, 4, 0, 0.085), "c5.xlarge": _s(4, 8, 0, 0.17), "c5.2xlarge": _s(8, 16, 0, 0.34),
    "c5.4xlarge": _s(16, 32, 0, 0.68), "c7i.large": _s(2, 4, 0, 0.08925), "c7i.xlarge": _s(4, 8, 0, 0.1785),
    "c7i.2xlarge": _s(8, 16, 0, 0.357), "c6i.xlarge": _s(4, 8, 0, 0.17), "c6i.2xlarge": _s(8, 16, 0, 0.34),
    "r5.large": _s(2, 16, 0, 0.126), "r5.xlarge": _s(4, 32, 0, 0.252), "r5.2xlarge": _s(8, 64, 0, 0.504),
    "g4dn.xlarge": _s(4, 16, 1, 0.526), "g4dn.2xlarge": _s(8, 32, 1, 0.752), "g4dn.4xlarge": _s(16, 64, 1, 1.204),
    "g4dn.12xlarge": _s(48, 192, 4, 3.912),
    "g5.xlarge": _s(4, 16, 1, 1.006), "g5.2xlarge": _s(8, 32, 1, 1.212), "g5.4xlarge": _s(16, 64, 1, 1.624),
    "g5.8xlarge": _s(32, 128, 1, 2.448), "g5.12xlarge": _s(48, 192, 4, 5.672), "g5.48xlarge": _s(192, 768, 8, 16.288),
    "g6.xlarge": _s(4, 16, 1, 0.8048), "g6.2xlarge": _s(8, 32, 1, 0.9776), "g6.4xlarge": _s(16, 64, 1, 1.3232),
    "g6.12xlarge": _s(48, 192, 4, 4.6016), "g6e.xlarge": _s(4, 32, 1, 1.861),
    "p3.2xlarge": _s(8, 61, 1, 3.06), "p4d.24xlarge": _s(96, 1152, 8, 32.7726), "p5.48xlarge": _s(192, 2048, 8, 98.32),
}


@dataclass(frozen=True)
class Reserve:
    """What the node agent keeps for itself on every instance."""

    memory_mib: int
    memory_fraction: float
    vcpus: float
    name: str

    def allocatable(self, size: Size) -> tuple[float, int]:
        mem = int(size.memory_mib * (1 - self.memory_fraction)) - self.memory_mib
        return size.vcpus - self.vcpus, max(0, mem)


ECS_RESERVE = Reserve(256, 0.06, 0.0, "the ECS agent")
KUBE_RESERVE = Reserve(600, 0.05, 0.1, "the kubelet")


def cluster_types(cluster: Cluster, region: str | None = None) -> list[str]:
    override = (cluster.overrides or {}).get(region or "") or {}
    return list(override.get("instance_types") or cluster.instance_types or [])


def fits(definition: Definition, size: Size, reserve: Reserve) -> bool:
    cpu, mem = reserve.allocatable(size)
    return definition.vcpus <= cpu and definition.memory_mib <= mem and definition.gpus <= size.gpus


def reserve_for(cluster: Cluster) -> Reserve:
    """The node agent of the cluster's type: ECS (Batch) or the kubelet (EKS)."""
    return KUBE_RESERVE if cluster.type == "eks" else ECS_RESERVE


def needs(definition: Definition) -> str:
    return f"{definition.vcpus} vCPU, {definition.memory_mib} MiB" + (f", {definition.gpus} GPU"
                                                                      if definition.gpus else "")


def largest_fit(cluster: Cluster, region: str | None = None, *, reserve: Reserve = ECS_RESERVE) -> str:
    """The largest worker the cluster's instances can hold in ``region`` (most memory after the reserve):
    "4 vCPU, 15145 MiB, 1 GPU on g5.xlarge"; "" when the types are not all in the table."""
    sizes = {t: SIZES.get(t) for t in cluster_types(cluster, region)}
    if not sizes or any(s is None for s in sizes.values()):
        return ""
    name, size = max(((t, s) for t, s in sizes.items() if s), key=lambda kv: reserve.allocatable(kv[1])[::-1])
    cpu, mem = reserve.allocatable(size)
    return f"{cpu:g} vCPU, {mem} MiB" + (f", {size.gpus} GPU" if size.gpus else "") + f" on {name}"


def fit_problem(definition: Definition, cluster: Cluster, region: str | None = None, *,
                reserve: Reserve = ECS_RESERVE) -> str | None:
    """Why no instance type of the cluster can hold one worker of the definition; None when one can or the
    types are not all in the table (a family name like ``g5``, or ``optimal``: nothing to say for sure)."""
    types = cluster_types(cluster, region)
    if not types or any(t not in SIZES for t in types):
        return None
    sizes = {t: SIZES[t] for t in types}
    if any(fits(definition, s, reserve) for s in sizes.values()):
        return None
    best = max(sizes.items(), key=lambda kv: reserve.allocatable(kv[1])[1])
    cpu, mem = reserve.allocatable(best[1])
    return (f"definition {definition.name} ({needs(definition)}) fits no instance type of cluster {cluster.name} "
            f"({', '.join(types)}); the largest, {best[0]}, leaves {cpu:g} vCPU, {mem} MiB and {best[1].gpus} GPU "
            f"after {reserve.name}'s reserve")


def fits_cluster(definition: Definition, cluster: Cluster) -> bool | None:
    """Whether a worker of the definition fits the cluster's instances in every region it spans: None when that
    cannot be told (a type missing from the table, a family, ``optimal``, or a local cluster)."""
    if cluster.type not in ("batch", "eks"):
        return None
    if definition.gpus > (cluster.gpus_per_instance or 0):  # whatever its types: no instance has that many
        return False
    reserve = reserve_for(cluster)
    known = True
    for region in _regions(cluster):
        types = cluster_types(cluster, region)
        if not types or any(t not in SIZES for t in types):
            known = False
            continue
        if not any(fits(definition, SIZES[t], reserve) for t in types):
            return False
    return True if known else None


def _regions(cluster: Cluster) -> list[str | None]:
    """The regions a cluster lists, or one None (its types without a region's overrides) when it lists none."""
    return [*cluster.regions] if cluster.regions else [None]


def cluster_fit_problem(definition: Definition, cluster: Cluster) -> str | None:
    """The fit problem of the first region of the cluster (its own overrides applied) that cannot hold the
    definition's worker; None when every region can (or cannot be told)."""
    if cluster.type not in ("batch", "eks"):
        return None
    for region in _regions(cluster):
        why = fit_problem(definition, cluster, region, reserve=reserve_for(cluster))
        if why:
            return why
    return None


def worker_share(definition: Definition, size: Size, reserve: Reserve) -> float:
    """The fraction of an instance one worker occupies (its largest share of CPU, memory or GPUs)."""
    cpu, mem = reserve.allocatable(size)
    shares = [definition.vcpus / max(cpu, 0.001), definition.memory_mib / max(mem, 1)]
    if size.gpus:
        shares.append(definition.gpus / size.gpus)
    return min(1.0, max(shares))


class PriceBook:
    """Hourly prices per instance type and region: spot price history for spot clusters, else on-demand."""

    def __init__(self, host: Any = None, *, spot: Callable[[str, list[str]], dict[str, float]] | None = None,
                 ttl: float = 600.0, clock: Callable[[], float] = time.time):
        self.host = host
        self._spot = spot
        self.ttl = ttl
        self.clock = clock
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[float, dict[str, float]]] = {}
        self.notes: list[str] = []
        self.sources: dict[tuple[str, str], str] = {}  # (region, type) -> "spot" | "on-demand"

    def _fetch_spot(self, region: str, types: list[str]) -> dict[str, float]:
        if self._spot is not None:
            return self._spot(region, types)
        if self.host is None or getattr(self.host, "type", "") != "aws":
            return {}
        from hyper.aws.session import client
        from hyper.aws.weights import spot_prices

        return spot_prices(client(self.host, "ec2", region=region), types, region)

    def prices(self, cluster: Cluster, region: str) -> dict[str, float]:
        """{instance type: USD/h} for the cluster's known types in `region`, cheapest first."""
        types = [t for t in cluster_types(cluster, region) if t in SIZES]
        out = {t: SIZES[t].on_demand for t in types}
        if cluster.spot and types:
            key = (region, tuple(types))
            cached = self._cache.get(key)
            if cached is None or self.clock() - cached[0] > self.ttl:
                try:
                    got = self._fetch_spot(region, types)
                except Exception as exc:  # a missing price must not stop scheduling: on-demand is the bound
                    got = {}
                    self.notes.append(f"spot prices in {region} unavailable ({type(exc).__name__}); "
                                      "on-demand prices used")
                cached = (self.clock(), got)
                self._cache[key] = cached
            out.update({t: p for t, p in cached[1].items() if t in out})
        for t in out:
            spot = cluster.spot and t in (self._cache.get((region, tuple(types))) or (0, {}))[1]
            self.sources[(region, t)] = "spot" if spot else "on-demand"
        return dict(sorted(out.items(), key=lambda kv: (kv[1], kv[0])))

    def worker_price(self, definition: Definition, cluster: Cluster, region: str, *,
                     reserve: Reserve = ECS_RESERVE) -> float | None:
        """USD/h of one worker: its share of the cheapest instance type it fits; None when no type is known."""
        best = None
        for itype, price in self.prices(cluster, region).items():
            size = SIZES[itype]
            if fits(definition, size, reserve):
                cost = price * worker_share(definition, size, reserve)
                best = cost if best is None else min(best, cost)
        return best
