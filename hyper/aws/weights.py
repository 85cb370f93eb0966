"""Auto region weights: EC2 spot placement scores and spot prices, combined into integer weights (pure), and
the two EC2 calls that fetch them (through any client object with those methods, so tests pass fakes).

The formula (:func:`compute_weights`)
-------------------------------------
For each region ``r`` of the queue's cluster, two factors, each in (0, 1]:

* capacity ``S(r) = score(r) / 10`` from the spot placement score (1..10, higher is likelier to get the
  capacity). A region with score 1 keeps a tenth of the best region's share: small, not nothing.
* price ``P(r) = cheapest / price(r)`` from the spot price (USD/h, lower is better): a region twice as
  expensive as the cheapest gets half the factor.

``f(r) = S(r) * P(r)`` and ``weight(r) = max(1, round(100 * f(r) / max f))``: the best region gets 100, every
region with data at least 1, so the scheduler's largest-remainder split sees weights proportional to f.

Missing data:

* a source with no data for any region (API unavailable, on-demand cluster...) is left out (factor 1 for all);
* a region missing from a source that has data for other regions gets factor 0, hence weight 0: both APIs
  leave a region out when the instance types are not offered there as spot, and workers that can never start
  would count as pending and hold back the regions that can run them;
* no data at all: equal weights (100 each);
* if the sources cover disjoint regions (every product 0), prices are dropped and scores alone decide:
  capacity first, so at least one region always has a positive weight when any region has data.

Recorded shapes (AWS EC2 API reference):
``GetSpotPlacementScores`` -> ``{"SpotPlacementScores": [{"Region": "us-east-1", "Score": 7}], "NextToken": ...}``
(``AvailabilityZoneId`` only with SingleAvailabilityZone), paginated by NextToken;
``DescribeSpotPriceHistory`` -> ``{"SpotPriceHistory": [{"AvailabilityZone": "us-east-1a", "InstanceType":
"g5.xlarge", "ProductDescription": "Linux/UNIX", "SpotPrice": "0.402800", "Timestamp": datetime}],
"NextToken": ""}`` (an empty NextToken ends the listing).
"""

from __future__ import annotations

import math
import re
import statistics
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    from hyper.config import Host

SCALE = 100  # the best region's weight
MAX_SCORE = 10
MAX_PAGES = 50  # a listing longer than this is a bug or a loop: stop reading it
EXACT_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9-]+$")  # g5.xlarge, u-6tb1.metal; not families (c7i) or optimal


def exact_types(instance_types: Iterable[str]) -> tuple[list[str], list[str]]:
    """(exact instance types, the rest): only exact types can be scored and priced."""
    exact: list[str] = []
    other: list[str] = []
    for t in instance_types:
        (exact if EXACT_TYPE.match(str(t).strip().lower()) else other).append(str(t).strip())
    return sorted(set(exact)), sorted(set(other))


def _valid_price(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v > 0 else None


def _valid_score(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    if not math.isfinite(v) or v <= 0:
        return None
    return min(float(MAX_SCORE), max(1.0, v))


def compute_weights(scores: dict[str, int] | None, prices: dict[str, float] | None, regions: list[str]
                    ) -> tuple[dict[str, int], str]:
    """Integer weights (0..100) per region from spot placement scores and spot prices; see the module doc.

    Returns ``(weights, note)``; ``weights`` has every region of `regions`, the note says which data decided.
    """
    regions = list(dict.fromkeys(regions))
    s = {r: v for r in regions if (v := _valid_score((scores or {}).get(r))) is not None}
    p = {r: v for r in regions if (v := _valid_price((prices or {}).get(r))) is not None}
    if not regions:
        return {}, "no regions"
    if not s and not p:
        return {r: SCALE for r in regions}, "equal weights (no spot placement score or spot price for any region)"

    def factors(use_scores: bool, use_prices: bool) -> dict[str, float]:
        cheapest = min(p.values()) if use_prices else 0.0
        out = {}
        for r in regions:
            f = 1.0
            if use_scores:
                f *= s[r] / MAX_SCORE if r in s else 0.0
            if use_prices:
                f *= cheapest / p[r] if r in p else 0.0
            out[r] = f
        return out

    used = [name for name, have in (("spot placement scores", s), ("spot prices", p)) if have]
    f = factors(bool(s), bool(p))
    if max(f.values()) <= 0:  # scores and prices cover different regions: capacity first
        f = factors(True, False)
        used = ["spot placement scores (the spot prices cover other regions)"]
    best = max(f.values())
    weights = {r: (max(1, round(SCALE * v / best)) if v > 0 else 0) for r, v in f.items()}
    note = "from " + " and ".join(used)
    missing = [r for r in regions if weights[r] == 0]
    if missing:
        note += f"; no data for {', '.join(missing)} (weight 0: instance types not offered as spot there?)"
    return weights, note


# ---------------------------------------------------------------- aggregation (pure)
def region_prices(per_region: dict[str, dict[str, float]]) -> dict[str, float]:
    """One USD/h figure per region from {region: {instance type: price}}, comparable across regions.

    The mean over the basket of instance types priced in every region that has prices; when no type is
    priced everywhere, the mean over the region's own types (less comparable, still a price level).
    """
    priced = {r: {t: v for t, v in types.items() if _valid_price(v)} for r, types in per_region.items()}
    priced = {r: types for r, types in priced.items() if types}
    if not priced:
        return {}
    basket = set.intersection(*(set(types) for types in priced.values()))
    out = {}
    for r, types in priced.items():
        keys = sorted(basket) if basket else sorted(types)
        out[r] = statistics.fmean(float(types[t]) for t in keys)
    return out


# ---------------------------------------------------------------- the calls
def spot_placement_scores(client: Any, instance_types: list[str], regions: list[str], target_capacity: int
                          ) -> dict[str, int]:
    """{region: score 1..10} for running `target_capacity` vCPUs of `instance_types` in each of `regions`.

    One call (in any region) scores many regions; pages are followed by NextToken. A region the answer leaves
    out is absent from the result (compute_weights gives it weight 0).
    """
    request = {"InstanceTypes": list(instance_types), "TargetCapacity": max(1, int(target_capacity)),
               "TargetCapacityUnitType": "vcpu", "RegionNames": list(regions), "SingleAvailabilityZone": False}
    out: dict[str, int] = {}
    token = None
    for _ in range(MAX_PAGES):
        response = client.get_spot_placement_scores(**request, **({"NextToken": token} if token else {}))
        for item in response.get("SpotPlacementScores") or []:
            region, score = item.get("Region"), item.get("Score")
            if region and score is not None and not item.get("AvailabilityZoneId"):
                out[region] = max(out.get(region, 0), int(score))
        token = response.get("NextToken")
        if not token:
            break
    return out


def _stamp(value: Any) -> float:
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=timezone.utc)).timestamp()
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return 0.0


def spot_prices(client: Any, instance_types: list[str], region: str, *, now: datetime | None = None
                ) -> dict[str, float]:
    """{instance type: USD/h} in `region` (`client` is that region's EC2 client): per availability zone the
    latest Linux/UNIX price, then the median over the zones. Types without a price are left out."""
    start = now or datetime.now(timezone.utc)
    request = {"InstanceTypes": list(instance_types), "ProductDescriptions": ["Linux/UNIX"], "StartTime": start}
    latest: dict[tuple[str, str], tuple[float, float]] = {}  # (type, zone) -> (timestamp, price)
    token = None
    for _ in range(MAX_PAGES):
        response = client.describe_spot_price_history(**request, **({"NextToken": token} if token else {}))
        for item in response.get("SpotPriceHistory") or []:
            price = _valid_price(item.get("SpotPrice"))
            itype, zone = item.get("InstanceType"), item.get("AvailabilityZone") or ""
            if price is None or not itype:
                continue
            when = _stamp(item.get("Timestamp"))
            key = (itype, zone)
            if key not in latest or when >= latest[key][0]:
                latest[key] = (when, price)
        token = response.get("NextToken")
        if not token:
            break
    by_type: dict[str, list[float]] = {}
    for (itype, _), (_, price) in latest.items():
        by_type.setdefault(itype, []).append(price)
    return {t: statistics.median(v) for t, v in sorted(by_type.items())}


# ---------------------------------------------------------------- failures as one short line
def is_aws_error(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    return module.startswith(("botocore", "boto3", "urllib3"))


def failure_text(exc: BaseException, host: Host | None = None, action: str = "") -> str:
    """Why a call failed, in one short line (AccessDenied, throttled, not implemented by the endpoint...)."""
    from hyper.errors import HyperError

    if isinstance(exc, HyperError):
        return _short(exc.message)
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        err = response["Error"]
        code, message = str(err.get("Code") or ""), _short(str(err.get("Message") or ""), 160)
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        from hyper.aws.session import DENIED_CODES, THROTTLING_CODES

        if code in THROTTLING_CODES:
            return f"throttled after every retry ({code})"
        if code in DENIED_CODES or code == "UnauthorizedOperation":
            return f"access denied ({code}: {message})" if message else f"access denied ({code})"
        if code:
            return f"{code}: {message}" if message else code
        return f"HTTP {status}" if status else _short(str(exc))
    name = type(exc).__name__
    if name == "ResponseParserError":  # an error page instead of an EC2 answer (moto: HTTP 500, not implemented)
        return "the endpoint did not answer like EC2 (HTTP 500 or an error page: not implemented there?)"
    if host is not None and is_aws_error(exc):
        from hyper.aws.session import translate

        return _short(translate(exc, host, "ec2", action).message)
    return _short(f"{name}: {exc}")


def _short(text: str, limit: int = 240) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
