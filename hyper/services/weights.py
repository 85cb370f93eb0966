"""Auto region weights: recompute the weights of queues with ``weights: auto`` from EC2 spot placement scores
and spot prices (``hyper queues refresh-weights``, and the scheduler every ``weights_refresh`` seconds).

For each queue: the regions are its cluster's regions that exist on the host and are enabled; the instance
types are the cluster's exact types (a region's ``overrides.instance_types`` replace them there). Families
(``c7i``) and ``optimal`` cannot be scored: a cluster with a region that has no exact type keeps its last
weights and says so. The weights come from :func:`hyper.aws.weights.compute_weights` and are stored on the
queue as ``auto_weights`` with ``auto_weights_at`` (when) and ``auto_weights_note`` (from what, or why the
last ones were kept); the scheduler reads them through ``effective_weights``.

Choices:

* **scores are required, prices optional.** The placement score says whether the capacity exists at all; a
  price alone would send every worker to the cheapest region whether or not it can start them. So when the
  scores are unavailable (an endpoint without the API such as moto, AccessDenied, UnsupportedOperation,
  throttled after every retry, no network) the queue keeps its last weights (equal ones if it never had any)
  and the note and the result say so. When only the prices are unavailable (in any region), the weights come
  from the scores alone, and the note says so. Nothing of this raises: the result carries it.
* **on-demand clusters** (``spot: false``) get equal weights with a note: spot scores and spot prices say
  nothing about on-demand capacity, and on-demand prices differ little between regions.
* **target capacity** for the scores: the host setting ``weights_target_vcpus`` when set, else the largest
  per-region vCPU cap of the cluster (what the queue may use there), else 64. AWS limits it by the account's
  recent spot usage; a refusal shows in the note, and ``weights_target_vcpus`` lowers it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable

from hyper.aws.weights import (SCALE, compute_weights, exact_types, failure_text, is_aws_error, region_prices,
                               spot_placement_scores, spot_prices)
from hyper.backends import cluster_type
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster, Queue, Region
from hyper.scheduler.regions import enabled_regions, region_cap

if TYPE_CHECKING:
    from hyper.services.context import Context
    from hyper.store.base import Store

DEFAULT_REFRESH = 900.0  # seconds between the scheduler's refreshes (host setting weights_refresh)
DEFAULT_TARGET_VCPUS = 64
FEW_TYPES = 3  # AWS: with fewer instance types the placement score is always low

ClientFor = Callable[[str], Any]  # region -> an EC2 client (boto3, or a fake with the two methods)


@dataclass
class Result:
    queue: str
    cluster: str
    regions: list[str] = field(default_factory=list)
    weights: dict[str, int] = field(default_factory=dict)  # the auto weights now in effect ({} = equal)
    source: str = "kept"  # scores+prices | scores | equal | kept
    note: str = ""
    at: float = 0.0  # when the weights in effect were computed (0 = never)
    refreshed: bool = False  # new weights were computed (False: the last ones were kept)
    problem: bool = False  # kept because data was unavailable or the queue cannot be scored
    written: bool = False  # stored (False on --dry-run, or when the queue changed meanwhile)
    hint: str = ""  # how to fix a problem

    def to_dict(self) -> dict:
        return {"queue": self.queue, "cluster": self.cluster, "regions": list(self.regions),
                "weights": dict(self.weights), "source": self.source, "note": self.note,
                "computed_at": _when(self.at) if self.at else None, "refreshed": self.refreshed,
                "written": self.written}


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def refresh_interval(host: Host) -> float:
    """Seconds between the scheduler's refreshes (host setting weights_refresh; 0 turns them off)."""
    return _number(host, "weights_refresh", DEFAULT_REFRESH)


def _number(host: Host, key: str, default: float) -> float:
    raw = (host.extra or {}).get(key)
    if raw in (None, ""):
        return default
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise HyperError(f"host setting {key}={raw!r} is not a number", f"set it like {key}: {default:g}") from None
    if value < 0:
        raise HyperError(f"host setting {key}={raw!r} is negative", f"set it like {key}: {default:g}")
    return value


# ---------------------------------------------------------------- the use case
def refresh(ctx: Context, queue_names: Iterable[str] | None = None, *, clients: ClientFor | None = None,
            now: float | None = None, dry_run: bool = False) -> list[Result]:
    """Recompute the auto weights of the named queues (default: every queue with weights auto).

    A named queue that does not exist or has fixed weights is an error (nothing is refreshed then); an
    unavailable AWS API is not: its result keeps the last weights and says why.
    """
    host, store = ctx.host, ctx.store
    if host.type != "aws":
        raise HyperError(f"host {host.name!r} is local: auto weights weigh AWS regions",
                         "use --host NAME for an aws host")
    queues = {q.name: q for q in store.list_resources("queue") if isinstance(q, Queue)}
    names = list(dict.fromkeys(queue_names or []))
    for name in names:
        queue = queues.get(name)
        if queue is None:
            raise HyperError(f"queue {name!r} does not exist",
                             f"queues: {', '.join(sorted(queues)) or 'none'}")
        if queue.weights != "auto":
            raise HyperError(f"queue {name!r} has fixed weights ({_show(queue.weights)}), not auto",
                             f"`hyper queues update-queue {name} --weights auto` to have them computed")
    chosen = [queues[n] for n in names] if names else [q for _, q in sorted(queues.items()) if q.weights == "auto"]
    if not chosen:
        return []
    clusters = {c.name: c for c in store.list_resources("cluster") if isinstance(c, Cluster)}
    regions = {r.name: r for r in store.list_resources("region") if isinstance(r, Region)}
    return refresh_queues(host, store, chosen, clusters, regions, clients=clients, now=now, write=not dry_run)


def refresh_queues(host: Host, store: Store, queues: list[Queue], clusters: dict[str, Cluster],
                   regions: dict[str, Region], *, clients: ClientFor | None = None, now: float | None = None,
                   write: bool = True) -> list[Result]:
    """Refresh these queues (the scheduler passes what it already read). Each queue object is updated in
    place, so a caller planning with them uses the new weights even when nothing is written (dry run)."""
    now = time.time() if now is None else now
    fetch = _Fetcher(host, clients, now)
    results = []
    for queue in queues:
        result, fields = _compute(host, queue, clusters.get(queue.cluster), regions, fetch, now)
        if fields:
            for key, value in fields.items():
                setattr(queue, key, value)
            if write:
                result.written = _store(store, queue.name, fields)
        results.append(result)
    return results


def _store(store: Store, name: str, fields: dict) -> bool:
    """Write the auto fields onto the queue as stored now (an admin may have changed other fields meanwhile)."""
    current = store.get_resource("queue", name)
    if not isinstance(current, Queue) or current.weights != "auto":
        return False  # deleted, or no longer auto: its weights are not ours to set
    for key, value in fields.items():
        setattr(current, key, value)
    store.put_resource(current, replace=True)
    return True


# ---------------------------------------------------------------- one queue
def _compute(host: Host, queue: Queue, cluster: Cluster | None, regions: dict[str, Region], fetch: "_Fetcher",
             now: float) -> tuple[Result, dict]:
    """(result, the queue fields to store); no fields means the last weights stay."""
    result = Result(queue.name, queue.cluster, weights=dict(queue.auto_weights or {}), at=queue.auto_weights_at)

    def keep(why: str, hint: str) -> tuple[Result, dict]:
        last = (f"kept the weights of {_when(queue.auto_weights_at)}" if queue.auto_weights and queue.auto_weights_at
                else "equal weights until they can be computed")
        result.note, result.source, result.problem, result.hint = f"{why}; {last}", "kept", True, hint
        return result, {"auto_weights_note": result.note}

    fixed = f"or give queue {queue.name} fixed weights"

    if cluster is None:
        return keep(f"its cluster {queue.cluster} does not exist",
                    f"`hyper queues update-queue {queue.name} --cluster NAME`")
    if not cluster_type(cluster.type).regional:
        return keep(f"cluster {cluster.name} is {cluster.type}: there are no AWS regions to weigh",
                    f"use an AWS cluster {fixed}")
    enabled = enabled_regions(cluster, regions)
    result.regions = enabled
    if not enabled:
        return keep(f"cluster {cluster.name} has no usable region on this host",
                    f"add its regions with `hyper regions add-region`, {fixed}")

    if not cluster.spot:
        weights = {r: SCALE for r in enabled}
        note = f"equal weights: cluster {cluster.name} is on-demand (spot scores and prices do not apply)"
        return _done(result, weights, "equal", note, now)

    types_of, unscorable = _types_per_region(cluster, enabled)
    if unscorable:
        shown = sorted({t for ts in unscorable.values() for t in ts}) or ["none"]
        return keep(f"no exact instance types to score in {', '.join(sorted(unscorable))} (instance types "
                    f"{', '.join(shown)}: families and optimal cannot be scored)",
                    f"list exact types: `hyper clusters update-cluster {cluster.name} --instance-types "
                    f"g5.xlarge,g5.2xlarge,g6.xlarge`, {fixed}")

    target_setting = _number(host, "weights_target_vcpus", 0)
    groups: dict[tuple[str, ...], list[str]] = {}
    for r in enabled:
        groups.setdefault(types_of[r], []).append(r)

    scores: dict[str, int] = {}
    described = []
    for types, group in groups.items():
        target = int(target_setting) or max((region_cap(cluster, r) for r in group), default=0) or DEFAULT_TARGET_VCPUS
        got = fetch.scores(types, group, target)
        if isinstance(got, BaseException):
            return keep(f"spot placement scores unavailable: {failure_text(got, host, 'GetSpotPlacementScores')}",
                        f"grant ec2:GetSpotPlacementScores and ec2:DescribeSpotPriceHistory (a refused target "
                        f"capacity: lower the host setting weights_target_vcpus), {fixed}")
        scores.update({r: s for r, s in got.items() if r in group})
        described.append(f"{','.join(types)} at {target} vCPUs")

    prices, price_failures = _prices(host, fetch, types_of, enabled)
    weights, how = compute_weights(scores, prices, enabled)
    details = []
    for r in enabled:
        bits = [f"score {scores[r]}" if r in scores else "no score"]
        if prices:
            bits.append(f"${prices[r]:.4f}/h" if r in prices else "no price")
        details.append(f"{r} {' '.join(bits)}")
    parts = [f"{how} for {'; '.join(described)}: {', '.join(details)}"]
    if price_failures:
        parts.append(f"spot prices unavailable ({'; '.join(price_failures)}): weights from scores only")
    if any(len(t) < FEW_TYPES for t in groups):
        parts.append(f"fewer than {FEW_TYPES} instance types: AWS scores them low everywhere")
    source = "scores+prices" if prices and how.startswith("from spot placement scores and") else "scores"
    return _done(result, weights, source, "; ".join(parts), now)


def _types_per_region(cluster: Cluster, enabled: list[str]
                      ) -> tuple[dict[str, tuple[str, ...]], dict[str, list[str]]]:
    """(the exact instance types per region, its overrides applied; the regions with none, and what they list
    instead): only exact types can be scored."""
    types_of: dict[str, tuple[str, ...]] = {}
    unscorable: dict[str, list[str]] = {}
    for r in enabled:
        override = (cluster.overrides or {}).get(r) or {}
        exact, other = exact_types(override.get("instance_types") or cluster.instance_types)
        types_of[r] = tuple(exact)
        if not exact:
            unscorable[r] = other
    return types_of, unscorable


def _prices(host: Host, fetch: _Fetcher, types_of: dict[str, tuple[str, ...]], enabled: list[str]
            ) -> tuple[dict[str, float], list[str]]:
    """(each region's spot price, one line per region whose prices could not be read): one failure drops
    every price, since weighing some regions by price and others not would compare unlike numbers."""
    per_region: dict[str, dict[str, float]] = {}
    failures = []
    for r in enabled:
        got = fetch.prices(r, types_of[r])
        if isinstance(got, BaseException):
            failures.append(f"{r}: {failure_text(got, host, 'DescribeSpotPriceHistory')}")
        else:
            per_region[r] = got
    return ({} if failures else region_prices(per_region)), failures


def _done(result: Result, weights: dict[str, int], source: str, note: str, now: float) -> tuple[Result, dict]:
    result.weights, result.source, result.note, result.at, result.refreshed = weights, source, note, now, True
    return result, {"auto_weights": dict(weights), "auto_weights_at": now, "auto_weights_note": note}


def _show(weights: Any) -> str:
    if isinstance(weights, dict):
        return ",".join(f"{k}={v}" for k, v in weights.items()) or "none"
    return str(weights)


# ---------------------------------------------------------------- the calls, once per refresh
class _Fetcher:
    """Calls EC2 at most once per (instance types, regions, target) and (region, instance types) per refresh;
    a failure is returned (not raised) so the queue can say why and keep its weights."""

    def __init__(self, host: Host, clients: ClientFor | None, now: float):
        self.host = host
        self.clients = clients
        self.now = datetime.fromtimestamp(now, timezone.utc)
        self._scores: dict[tuple, dict[str, int] | BaseException] = {}
        self._prices: dict[tuple, dict[str, float] | BaseException] = {}

    def client(self, region: str) -> Any:
        if self.clients is not None:
            return self.clients(region)
        from hyper.aws.batch import regional_client

        return regional_client(self.host, "ec2", region)

    def main_region(self) -> str:
        from hyper.aws.session import region_of

        return region_of(self.host) or "us-east-1"

    def scores(self, types: tuple[str, ...], regions: list[str], target: int) -> dict[str, int] | BaseException:
        key = (types, tuple(regions), target)
        if key not in self._scores:
            self._scores[key] = self._call(lambda: spot_placement_scores(
                self.client(self.main_region()), list(types), list(regions), target))
        return self._scores[key]

    def prices(self, region: str, types: tuple[str, ...]) -> dict[str, float] | BaseException:
        key = (region, types)
        if key not in self._prices:
            self._prices[key] = self._call(lambda: spot_prices(self.client(region), list(types), region,
                                                               now=self.now))
        return self._prices[key]

    @staticmethod
    def _call(fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except HyperError as exc:
            return exc
        except Exception as exc:
            if is_aws_error(exc):
                return exc
            raise
