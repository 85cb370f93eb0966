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


def plan_regions(demands: list[Demand], weights: dict[tuple[str, str], dict[str, int]],
                 room: dict[tuple[str, str], int]) -> dict[tuple[str, str, str], int]:
    """New workers per (queue, definition, region): the multi-region form of :func:`plan`.

    ``weights[pair]`` are the pair's region weights (its queue's, restricted to regions it may use now);
    ``room[(cluster, region)]`` is the vCPUs the cluster may still start in that region (its cap there minus
    what already runs there). Each pair wants ``Demand.wanted`` workers (ceil(backlog / ratio) minus live and
    pending ones), split across its regions by weight with the largest-remainder method; a region that
    cannot hold its share passes the rest to the pair's other regions. GPUs are not a limit here (a Batch
    compute environment caps vCPUs only).

    Pairs compete only with pairs on the same cluster; higher priority is served first. Within a priority,
    when the pairs' splits fit the room together they get exactly those splits; when they compete for a
    region's room, they take workers in equal turns (one at a time when room is tight), so one huge backlog
    cannot starve a small one.
    """
    room = dict(room)
    out: dict[tuple[str, str, str], int] = {}
    by_priority: dict[tuple[int, str], list[Demand]] = {}
    usable: dict[tuple[str, str], dict[str, int]] = {}
    for d in demands:
        w = {r: k for r, k in (weights.get(d.key) or {}).items() if k > 0 and (d.cluster, r) in room}
        if d.wanted > 0 and w:
            usable[d.key] = w
            by_priority.setdefault((-d.priority, d.cluster), []).append(d)
    for level in sorted(by_priority):  # clusters are independent; within one, higher priority first
        group = sorted(by_priority[level], key=lambda d: d.key)
        ideal = {}
        need: dict[tuple[str, str], int] = {}
        for d in group:
            vcpus = max(1, d.vcpus)
            caps = {r: max(0, room[(d.cluster, r)]) // vcpus for r in usable[d.key]}
            ideal[d.key] = split_by_weights(d.wanted, usable[d.key], caps)
            for r, k in ideal[d.key].items():
                need[(d.cluster, r)] = need.get((d.cluster, r), 0) + k * vcpus
        if any(n > room[cr] for cr, n in need.items()):
            ideal = _take_turns(group, usable, room)
        else:
            for cr, n in need.items():
                room[cr] -= n
        for d in group:
            for r, k in ideal[d.key].items():
                if k > 0:
                    out[(d.queue, d.definition, r)] = k
    return out


def _take_turns(group: list[Demand], usable: dict[tuple[str, str], dict[str, int]],
                room: dict[tuple[str, str], int]) -> dict[tuple[str, str], dict[str, int]]:
    """Pairs competing for room take the same number of workers per turn, each to its regions by weight.

    A turn's size is the most every pair can take whatever regions its workers land in (1 when room is
    tight, which is plain round robin), so planning costs a few turns, not one step per worker. Room only
    shrinks, so a pair that cannot place one more worker anywhere is done.
    """
    alloc: dict[tuple[str, str], dict[str, int]] = {d.key: {} for d in group}
    total = {d.key: 0 for d in group}
    active = list(group)
    while True:
        active = [d for d in active if total[d.key] < d.wanted and
                  any(room[(d.cluster, r)] >= max(1, d.vcpus) for r in usable[d.key])]
        if not active:
            return alloc
        # how far every pair can go this turn: in each region, the vCPUs the contenders would place there by
        # their weights (plus one worker each for rounding) must fit. Regions with less room than that are left
        # out: there the pairs first in turn may take the last workers, as round robin does in its last turn.
        expect: dict[tuple[str, str], float] = {}
        spare: dict[tuple[str, str], int] = {}
        for d in active:
            vcpus = max(1, d.vcpus)
            w = {r: k for r, k in usable[d.key].items() if room[(d.cluster, r)] >= vcpus}
            for r, k in w.items():
                cr = (d.cluster, r)
                expect[cr] = expect.get(cr, 0.0) + vcpus * k / sum(w.values())
                spare[cr] = spare.get(cr, 0) + vcpus
        shares = [int((room[cr] - spare[cr]) // expect[cr]) for cr in expect if room[cr] - spare[cr] >= expect[cr]]
        step = max(1, min([d.wanted - total[d.key] for d in active] + (shares or [1])))
        for d in active:
            _place(d, usable[d.key], step, alloc[d.key], room)
            total[d.key] = sum(alloc[d.key].values())


def _place(d: Demand, w: dict[str, int], step: int, mine: dict[str, int], room: dict[tuple[str, str], int]) -> None:
    """Add up to `step` workers of one pair to its regions, within their room.

    The pair's largest-remainder split of its new total shows where they go; where that split would take
    workers away from a region (other pairs took room meanwhile), the pair keeps them and adds fewer
    elsewhere, first trimming the regions furthest above their weighted share. What the split cannot place
    goes one at a time to the open region furthest below its share.
    """
    vcpus = max(1, d.vcpus)
    total = sum(mine.values())
    goal = total + step
    weight_sum = sum(w.values())
    caps = {r: mine.get(r, 0) + max(0, room[(d.cluster, r)]) // vcpus for r in w}
    target = split_by_weights(goal, w, caps)
    adds = {r: max(0, target.get(r, 0) - mine.get(r, 0)) for r in w}
    extra = sum(adds.values()) - step
    while extra > 0:
        worst = max((r for r in sorted(adds) if adds[r] > 0),
                    key=lambda r: mine.get(r, 0) + adds[r] - goal * w[r] / weight_sum)
        adds[worst] -= 1
        extra -= 1
    for r, k in adds.items():
        if k:
            mine[r] = mine.get(r, 0) + k
            room[(d.cluster, r)] -= k * vcpus
            total += k
    while total < goal:
        open_regions = sorted(r for r in w if room[(d.cluster, r)] >= vcpus)
        if not open_regions:
            return
        total += 1
        best = max(open_regions, key=lambda r: (total * w[r] / weight_sum - mine.get(r, 0), w[r]))  # ties: first
        mine[best] = mine.get(best, 0) + 1
        room[(d.cluster, best)] -= vcpus


def cap_by_cost(counts: dict[tuple[str, str, str], int], prices: dict[tuple[str, str, str], float | None],
                live: dict[tuple[str, str, str], int], budgets: dict[str, float]
                ) -> tuple[dict[tuple[str, str, str], int], list[str]]:
    """Hold each queue with a budget (USD/h) to it: its live workers' hourly price plus its new ones'.

    ``prices[(queue, definition, region)]`` is one worker's USD/h there (None: unknown). When the plan costs
    more than what is left, every place keeps the same fraction of its new workers (so region weights still
    hold), and what the rounding leaves goes to the cheapest places first. A queue with a budget gets no new
    workers where the price is unknown (a limit is never checked against nothing). Returns the kept counts
    and one line per queue that was held back.
    """
    out = {k: n for k, n in counts.items() if n > 0 and k[0] not in budgets}
    notes = []
    for queue in sorted(budgets):
        budget = budgets[queue]
        mine = {k: n for k, n in counts.items() if k[0] == queue and n > 0}
        asked = sum(mine.values())
        if not asked:
            continue
        spent = sum(n * (prices.get(k) or 0.0) for k, n in live.items() if k[0] == queue and n > 0)
        price = {k: p for k in mine if (p := prices.get(k)) is not None}  # per worker, where it is known
        priced = {k: n for k, n in mine.items() if k in price}
        unknown = sorted(f"{k[1]} in {k[2]}" for k in mine if k not in priced)
        cost = sum(n * price[k] for k, n in priced.items())
        left = max(0.0, budget - spent)
        if cost <= left + 1e-9:
            kept = dict(priced)
        else:
            share = left / cost
            kept = {k: int(n * share) for k, n in priced.items()}
            used = sum(kept[k] * price[k] for k in kept)
            for k in sorted(priced, key=lambda k: (price[k], k)):
                while kept[k] < priced[k] and used + price[k] <= left + 1e-9:
                    kept[k] += 1
                    used += price[k]
        out.update({k: n for k, n in kept.items() if n > 0})
        total = sum(kept.values())
        if total < asked:
            why = []
            if unknown:
                why.append(f"no price known for {', '.join(unknown)}")
            if total < sum(priced.values()):
                why.append(f"${spent:.2f}/h already running, ${cost:.2f}/h more planned")
            notes.append(f"queue {queue}: {asked - total} of {asked} new worker(s) not started: max-cost-per-hour "
                         f"${budget:g} ({'; '.join(why)})")
    return out, notes


def cap_gpus(counts: dict[tuple[str, str, str], int], demands: list[Demand],
             gpu_room: dict[tuple[str, str], int]) -> dict[tuple[str, str, str], int]:
    """Trim planned workers where a cluster caps GPUs too (``gpu_room[(cluster, region)]``, GPUs still free):
    higher priority first, then one worker per pair in turn, as :func:`plan` shares vCPUs."""
    if not gpu_room:
        return counts
    by_key = {d.key: d for d in demands}
    out = dict(counts)
    room = dict(gpu_room)
    keys = sorted((k for k in counts if by_key.get(k[:2]) and by_key[k[:2]].gpus > 0
                   and (by_key[k[:2]].cluster, k[2]) in room),
                  key=lambda k: (-by_key[k[:2]].priority, k))
    kept = {k: 0 for k in keys}
    active = list(keys)
    while active:
        still = []
        for k in active:
            d = by_key[k[:2]]
            cr = (d.cluster, k[2])
            if kept[k] < counts[k] and room[cr] >= d.gpus:
                room[cr] -= d.gpus
                kept[k] += 1
                still.append(k)
        active = still
    for k in keys:
        if kept[k]:
            out[k] = kept[k]
        else:
            out.pop(k, None)
    return out
