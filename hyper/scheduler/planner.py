"""The pure planner: how many workers each (queue, definition) should get now, and in which region.

No I/O here, so the same arithmetic drives local processes, AWS Batch arrays and Kubernetes Jobs, and
property tests can check it exhaustively: never over a cap, never negative, zero backlog gives zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Demand:
    queue: str
    definition: str
    cluster: str
    backlog: int  # queued tasks (array elements count one each)
    ratio: int  # jobs per worker
    vcpus: int  # per worker
    gpus: int = 0  # per worker
    live: int = 0  # workers already running or starting for this pair
    priority: int = 0

    @property
    def key(self) -> tuple[str, str]:
        return (self.queue, self.definition)

    @property
    def wanted(self) -> int:
        """ceil(backlog / ratio) minus what is already live; the design's target, never negative."""
        if self.backlog <= 0:
            return 0
        return max(0, math.ceil(self.backlog / max(1, self.ratio)) - self.live)


@dataclass
class Capacity:
    """What a cluster can still hold: its caps minus the workers already running on it."""

    max_vcpus: int
    used_vcpus: int = 0
    max_gpus: int | None = None  # None: GPUs are not a limit (the cluster type checks them itself)
    used_gpus: int = 0

    def fits(self, vcpus: int, gpus: int) -> bool:
        if self.used_vcpus + vcpus > self.max_vcpus:
            return False
        return self.max_gpus is None or self.used_gpus + gpus <= self.max_gpus

    def take(self, vcpus: int, gpus: int) -> None:
        self.used_vcpus += vcpus
        self.used_gpus += gpus


def plan(demands: list[Demand], capacities: dict[str, Capacity]) -> dict[tuple[str, str], int]:
    """New workers to start per (queue, definition).

    Higher queue priority is served first; within a priority, pairs take one worker at a time in turn,
    so one huge backlog cannot starve a small one sharing the cluster. A demand whose cluster is unknown
    gets nothing (the caller reports it).
    """
    out: dict[tuple[str, str], int] = {}
    by_priority: dict[int, list[Demand]] = {}
    for d in demands:
        if d.wanted > 0 and d.cluster in capacities:
            by_priority.setdefault(d.priority, []).append(d)
    for priority in sorted(by_priority, reverse=True):
        remaining = {d.key: d.wanted for d in by_priority[priority]}
        active = sorted(by_priority[priority], key=lambda d: d.key)
        while active:
            still = []
            for d in active:
                cap = capacities[d.cluster]
                if remaining[d.key] > 0 and cap.fits(d.vcpus, d.gpus):
                    cap.take(d.vcpus, d.gpus)
                    out[d.key] = out.get(d.key, 0) + 1
                    remaining[d.key] -= 1
                    if remaining[d.key] > 0:
                        still.append(d)
            active = still
    return out


def split_by_weights(n: int, weights: dict[str, int], caps: dict[str, int] | None = None) -> dict[str, int]:
    """Split n workers across regions in proportion to integer weights (largest remainder method).

    A region's share never exceeds its cap; what a capped region cannot take goes to the others by the
    same rule. The result sums to min(n, total capacity of weighted regions).
    """
    caps = caps or {}
    result = {r: 0 for r, w in weights.items() if w > 0}
    left = n
    open_regions = {r for r in result if caps.get(r, math.inf) > 0}
    while left > 0 and open_regions:
        total = sum(weights[r] for r in open_regions)
        quotas = {r: left * weights[r] / total for r in open_regions}
        share = {r: int(q) for r, q in quotas.items()}
        extra = left - sum(share.values())
        for r in sorted(open_regions, key=lambda r: (-(quotas[r] - share[r]), -weights[r], r))[:extra]:
            share[r] += 1
        given = 0
        for r in list(open_regions):
            room = caps.get(r, math.inf) - result[r]
            take = int(min(share[r], room))
            result[r] += take
            given += take
            if result[r] >= caps.get(r, math.inf):
                open_regions.discard(r)
        left -= given
        if given == 0:
            break
    return {r: k for r, k in result.items() if k}
