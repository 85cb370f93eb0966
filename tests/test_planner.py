"""Planner properties: never over a cap, never negative, weights honoured, zero backlog -> zero."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from hyper.scheduler.planner import Capacity, Demand, plan, plan_regions, split_by_weights

demand = st.builds(
    Demand,
    queue=st.sampled_from(["q1", "q2", "q3"]),
    definition=st.sampled_from(["d1", "d2"]),
    cluster=st.sampled_from(["c1", "c2"]),
    backlog=st.integers(0, 5000),
    ratio=st.integers(1, 50),
    vcpus=st.integers(1, 16),
    gpus=st.integers(0, 2),
    live=st.integers(0, 100),
    priority=st.integers(0, 2),
)


def unique(demands):
    seen = {}
    for d in demands:
        seen.setdefault(d.key, d)
    return list(seen.values())


@settings(max_examples=300, deadline=None)
@given(st.lists(demand, max_size=8).map(unique), st.integers(0, 256), st.integers(0, 256),
       st.one_of(st.none(), st.integers(0, 8)))
def test_plan_respects_caps_and_targets(demands, cap1, cap2, gpu_cap):
    caps = {"c1": Capacity(cap1, max_gpus=gpu_cap), "c2": Capacity(cap2)}
    out = plan(demands, caps)
    by_key = {d.key: d for d in demands}
    used = {"c1": [0, 0], "c2": [0, 0]}
    for key, n in out.items():
        d = by_key[key]
        assert 0 < n <= d.wanted  # never negative, never beyond ceil(backlog/ratio) - live
        used[d.cluster][0] += n * d.vcpus
        used[d.cluster][1] += n * d.gpus
    assert used["c1"][0] <= cap1 and used["c2"][0] <= cap2
    if gpu_cap is not None:
        assert used["c1"][1] <= gpu_cap
    for d in demands:
        if d.backlog == 0:
            assert d.key not in out


def test_plan_examples():
    d = Demand("q", "d", "c", backlog=1000, ratio=10, vcpus=1, live=0)
    assert plan([d], {"c": Capacity(1000)}) == {("q", "d"): 100}
    assert plan([d], {"c": Capacity(8)}) == {("q", "d"): 8}
    assert plan([Demand("q", "d", "c", 1000, 10, 1, live=95)], {"c": Capacity(1000)}) == {("q", "d"): 5}
    # two pairs share 4 vCPUs fairly, one at a time in turn
    a = Demand("a", "d", "c", 100, 1, 1)
    b = Demand("b", "d", "c", 100, 1, 1)
    assert plan([a, b], {"c": Capacity(4)}) == {("a", "d"): 2, ("b", "d"): 2}
    # priority first
    hi = Demand("hi", "d", "c", 100, 1, 1, priority=5)
    assert plan([a, hi], {"c": Capacity(3)}) == {("hi", "d"): 3}
    # unknown cluster gets nothing
    assert plan([Demand("q", "d", "nope", 10, 1, 1)], {}) == {}


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 20000),
       st.dictionaries(st.sampled_from(["us-east-1", "eu-west-1", "ap-south-1", "us-west-2"]),
                       st.integers(0, 10), min_size=1),
       st.dictionaries(st.sampled_from(["us-east-1", "eu-west-1", "ap-south-1", "us-west-2"]),
                       st.integers(0, 5000)))
def test_split_by_weights(n, weights, caps):
    out = split_by_weights(n, weights, caps)
    weighted = {r for r, w in weights.items() if w > 0}
    room = sum(caps.get(r, math.inf) for r in weighted)
    assert sum(out.values()) == min(n, room)
    for r, k in out.items():
        assert r in weighted and 0 < k <= caps.get(r, math.inf)
    if not caps and weighted:
        total = sum(weights[r] for r in weighted)
        for r in weighted:  # largest remainder: within one worker of the exact share
            assert abs(out.get(r, 0) - n * weights[r] / total) < 1


def test_split_examples():
    assert split_by_weights(100, {"us-east-1": 3, "eu-west-1": 1}) == {"us-east-1": 75, "eu-west-1": 25}
    assert split_by_weights(10, {"a": 1, "b": 1, "c": 1}) == {"a": 4, "b": 3, "c": 3}
    assert split_by_weights(100, {"a": 3, "b": 1}, {"a": 10}) == {"a": 10, "b": 90}
    assert split_by_weights(0, {"a": 1}) == {}
    assert split_by_weights(5, {"a": 0}) == {}


# ---------------------------------------------------------------- plan_regions: the multi-region planner
REGION_NAMES = ["us-east-1", "eu-west-1", "ap-south-1"]
pair_demand = st.builds(
    Demand,
    queue=st.sampled_from(["q1", "q2", "q3", "q4"]),
    definition=st.sampled_from(["d1", "d2"]),
    cluster=st.sampled_from(["c1", "c2"]),
    backlog=st.integers(0, 3000),
    ratio=st.integers(1, 20),
    vcpus=st.integers(1, 8),
    live=st.integers(0, 80),
    priority=st.integers(0, 1),
)
region_weights = st.dictionaries(st.sampled_from(REGION_NAMES), st.integers(0, 6), min_size=1)


def _check_plan_regions(demands, weights, room, out):
    by_key = {d.key: d for d in demands}
    used: dict[tuple[str, str], int] = {}
    totals: dict[tuple[str, str], int] = {}
    for (q, dname, r), n in out.items():
        d = by_key[(q, dname)]
        assert n > 0  # never negative, no empty entries
        assert weights[d.key].get(r, 0) > 0 and (d.cluster, r) in room  # only weighted regions that exist
        used[(d.cluster, r)] = used.get((d.cluster, r), 0) + n * d.vcpus
        totals[d.key] = totals.get(d.key, 0) + n
    for cr, v in used.items():
        assert v <= max(0, room[cr])  # never over a region's cap
    for d in demands:
        assert totals.get(d.key, 0) <= d.wanted  # never beyond ceil(backlog / ratio) - live
        if d.backlog == 0:
            assert d.key not in totals  # zero backlog gives zero workers
        if totals.get(d.key, 0) < d.wanted:  # short only when none of its regions has room for one more
            for r, w in weights[d.key].items():
                if w > 0 and (d.cluster, r) in room:
                    assert max(0, room[(d.cluster, r)]) - used.get((d.cluster, r), 0) < d.vcpus
    return totals


@settings(max_examples=300, deadline=None)
@given(st.lists(pair_demand, max_size=8).map(unique), st.data())
def test_plan_regions_caps_targets_and_zero(demands, data):
    weights = {d.key: data.draw(region_weights) for d in demands}
    room = data.draw(st.dictionaries(st.tuples(st.sampled_from(["c1", "c2"]), st.sampled_from(REGION_NAMES)),
                                     st.integers(-20, 300)))
    out = plan_regions(demands, weights, room)
    _check_plan_regions(demands, weights, room, out)


@settings(max_examples=300, deadline=None)
@given(st.lists(pair_demand, max_size=8).map(unique), st.data())
def test_plan_regions_honours_weights_within_one_worker_when_room_suffices(demands, data):
    weights = {d.key: data.draw(region_weights) for d in demands}
    room = {(c, r): 10**9 for c in ("c1", "c2") for r in REGION_NAMES}
    out = plan_regions(demands, weights, room)
    totals = _check_plan_regions(demands, weights, room, out)
    for d in demands:
        w = {r: k for r, k in weights[d.key].items() if k > 0}
        if not w:
            assert d.key not in totals
            continue
        assert totals.get(d.key, 0) == d.wanted  # everything wanted is started
        for r, k in w.items():  # largest remainder: within one worker of the exact share
            assert abs(out.get((d.queue, d.definition, r), 0) - d.wanted * k / sum(w.values())) < 1


def test_plan_regions_examples():
    d = Demand("q1", "small", "gpu", backlog=1000, ratio=10, vcpus=1)
    w = {("q1", "small"): {"us-east-1": 3, "eu-west-1": 1}}
    room = {("gpu", "us-east-1"): 1024, ("gpu", "eu-west-1"): 1024}
    assert plan_regions([d], w, room) == {("q1", "small", "us-east-1"): 75, ("q1", "small", "eu-west-1"): 25}
    # live and pending workers count against the target; the rest is split by weight
    live = Demand("q1", "small", "gpu", backlog=1000, ratio=10, vcpus=1, live=90)
    assert plan_regions([live], w, room) == {("q1", "small", "us-east-1"): 8, ("q1", "small", "eu-west-1"): 2}
    # a capped region passes its share on; a region without room or weight gets nothing
    assert plan_regions([d], w, {("gpu", "us-east-1"): 1024, ("gpu", "eu-west-1"): 10}) == {
        ("q1", "small", "us-east-1"): 90, ("q1", "small", "eu-west-1"): 10}
    assert plan_regions([d], w, {("gpu", "us-east-1"): 20}) == {("q1", "small", "us-east-1"): 20}
    assert plan_regions([d], w, {}) == {}
    assert plan_regions([Demand("q1", "small", "gpu", 0, 10, 1)], w, room) == {}
    # two queues competing for one region's room share it in turn; priority goes first
    a = Demand("a", "d", "c", 100, 1, 2)
    b = Demand("b", "d", "c", 100, 1, 2)
    one = {"r": 1}
    assert plan_regions([a, b], {a.key: one, b.key: one}, {("c", "r"): 10}) == {("a", "d", "r"): 3,
                                                                                ("b", "d", "r"): 2}
    hi = Demand("hi", "d", "c", 3, 1, 2, priority=5)
    assert plan_regions([a, hi], {a.key: one, hi.key: one}, {("c", "r"): 10}) == {("hi", "d", "r"): 3,
                                                                                 ("a", "d", "r"): 2}


@given(st.dictionaries(st.tuples(st.sampled_from("qr"), st.just("d"), st.sampled_from("abc")),
                       st.integers(0, 50), max_size=6),
       st.dictionaries(st.tuples(st.sampled_from("qr"), st.just("d"), st.sampled_from("abc")),
                       st.one_of(st.none(), st.floats(0.01, 5.0)), max_size=6),
       st.dictionaries(st.tuples(st.sampled_from("qr"), st.just("d"), st.sampled_from("abc")),
                       st.integers(0, 20), max_size=6),
       st.floats(0.0, 100.0))
def test_cap_by_cost_never_passes_a_budget_or_adds_workers(counts, prices, live, budget):
    from hyper.scheduler.planner import cap_by_cost

    kept, notes = cap_by_cost(counts, prices, live, {"q": budget})
    assert all(0 < n <= counts[k] for k, n in kept.items())
    assert {k: n for k, n in kept.items() if k[0] == "r"} == {k: n for k, n in counts.items() if k[0] == "r" and n}
    running = sum(n * (prices.get(k) or 0.0) for k, n in live.items() if k[0] == "q")
    new = sum(n * prices[k] for k, n in kept.items() if k[0] == "q")
    assert all(prices.get(k) is not None for k in kept if k[0] == "q")
    assert new <= max(0.0, budget - running) + 1e-6
    assert bool(notes) == (sum(n for k, n in kept.items() if k[0] == "q") < sum(
        n for k, n in counts.items() if k[0] == "q"))


def test_cap_gpus_shares_a_cluster_s_gpus_by_priority_then_in_turn():
    from hyper.scheduler.planner import cap_gpus

    demands = [Demand("hi", "g", "c", 10, 1, 1, 2, 0, priority=5), Demand("lo", "g", "c", 10, 1, 1, 1),
               Demand("cpu", "d", "c", 10, 1, 1, 0)]
    counts = {("hi", "g", "x"): 3, ("lo", "g", "x"): 4, ("cpu", "d", "x"): 9}
    assert cap_gpus(counts, demands, {("c", "x"): 5}) == {("hi", "g", "x"): 2, ("lo", "g", "x"): 1,
                                                          ("cpu", "d", "x"): 9}
    assert cap_gpus(counts, demands, {("c", "x"): 0}) == {("cpu", "d", "x"): 9}
    assert cap_gpus(counts, demands, {}) == counts  # no GPU cap known: the plan stands
