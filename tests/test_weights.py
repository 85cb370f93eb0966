"""Auto region weights: the formula (pure, hypothesis), the EC2 calls on recorded responses through fake clients,
the refresh on an aws host on moto's server (which does not implement GetSpotPlacementScores: the queue keeps its
weights and says so), `hyper queues refresh-weights`, and the scheduler's periodic refresh."""

from __future__ import annotations

import copy
import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest
import typer
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.parsers import ResponseParserError
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hyper.aws.weights import (compute_weights, exact_types, failure_text, region_prices, spot_placement_scores,
                               spot_prices)
from hyper.cli.weights import add_refresh_command
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Queue, Region
from hyper.scheduler.aws import BatchScheduler
from hyper.services import weights as service
from tests.test_scheduler_aws import HOST, FakeBatch, FakeStore, sizes_by_region

NOW = 1_795_000_000.0  # 2026-11-18 11:06:40 UTC
TYPES = ["g5.xlarge", "g5.2xlarge", "g6.xlarge"]


# ---------------------------------------------------------------- the formula (pure)


def test_scores_and_prices_combine_into_weights_of_the_best_region_100():
    weights, note = compute_weights({"us-east-1": 9, "eu-west-1": 6}, {"us-east-1": 0.5, "eu-west-1": 0.6},
                                    ["us-east-1", "eu-west-1"])
    # f = score/10 * cheapest/price: 0.9 and 0.6 * 0.5/0.6 = 0.5 -> 100 and round(100 * 0.5 / 0.9) = 56
    assert weights == {"us-east-1": 100, "eu-west-1": 56}
    assert note == "from spot placement scores and spot prices"


def test_low_scores_keep_a_small_share_and_missing_data_rules():
    regions = ["us-east-1", "eu-west-1", "ap-south-1"]
    # score 1 against 10: a tenth of the share, not nothing
    assert compute_weights({"us-east-1": 10, "eu-west-1": 1, "ap-south-1": 5}, None, regions)[0] == {
        "us-east-1": 100, "eu-west-1": 10, "ap-south-1": 50}
    # a region the scores leave out gets 0 (its instance types are not offered as spot there)
    weights, note = compute_weights({"us-east-1": 4, "eu-west-1": 8}, None, regions)
    assert weights == {"us-east-1": 50, "eu-west-1": 100, "ap-south-1": 0}
    assert note == ("from spot placement scores; no data for ap-south-1 (weight 0: instance types not offered as "
                    "spot there?)")
    # prices alone: a region twice as expensive gets half
    assert compute_weights(None, {"us-east-1": 1.0, "eu-west-1": 2.0, "ap-south-1": 4.0}, regions)[0] == {
        "us-east-1": 100, "eu-west-1": 50, "ap-south-1": 25}
    # no data at all: equal weights
    assert compute_weights(None, {}, regions) == (
        {"us-east-1": 100, "eu-west-1": 100, "ap-south-1": 100},
        "equal weights (no spot placement score or spot price for any region)")
    # scores and prices for different regions: capacity first
    assert compute_weights({"us-east-1": 3}, {"eu-west-1": 0.2}, regions) == (
        {"us-east-1": 100, "eu-west-1": 0, "ap-south-1": 0},
        "from spot placement scores (the spot prices cover other regions); no data for eu-west-1, ap-south-1 "
        "(weight 0: instance types not offered as spot there?)")
    # data for regions outside the cluster is ignored; garbage is no data; tiny shares stay positive
    assert compute_weights({"us-west-2": 10, "us-east-1": "x"}, {"us-east-1": -1.0}, ["us-east-1"])[0] == {
        "us-east-1": 100}
    assert compute_weights({"us-east-1": 10, "eu-west-1": 1}, {"us-east-1": 0.01, "eu-west-1": 1.0},
                           ["us-east-1", "eu-west-1"])[0] == {"us-east-1": 100, "eu-west-1": 1}
    assert compute_weights({}, {}, []) == ({}, "no regions")


REGION_POOL = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-south-1"]
region_lists = st.lists(st.sampled_from(REGION_POOL), min_size=1, max_size=5, unique=True)
score_maps = st.dictionaries(st.sampled_from(REGION_POOL), st.integers(1, 10))
price_maps = st.dictionaries(st.sampled_from(REGION_POOL), st.floats(0.001, 100.0, allow_nan=False))


@settings(max_examples=300, deadline=None)
@given(regions=region_lists, scores=st.none() | score_maps, prices=st.none() | price_maps)
def test_weights_properties(regions, scores, prices):
    weights, note = compute_weights(scores, prices, regions)
    assert list(weights) == regions and note
    assert all(isinstance(w, int) and 0 <= w <= 100 for w in weights.values())
    has_data = any(r in (scores or {}) or r in (prices or {}) for r in regions)
    assert max(weights.values()) == 100  # equal weights without data, the best region 100 with it
    if not has_data:
        assert set(weights.values()) == {100}
    both = [r for r in regions if r in (scores or {}) and r in (prices or {})]
    for a in both:
        for b in both:
            if scores[a] >= scores[b] and prices[a] <= prices[b]:
                assert weights[a] >= weights[b]  # better (or equal) score and price never weigh less
            if scores[a] > scores[b] and prices[a] < prices[b]:
                assert weights[a] >= weights[b] and weights[a] > 0


def test_exact_types_and_region_prices():
    assert exact_types(["g5.xlarge", "c7i", "optimal", "u-6tb1.metal", "g5.xlarge"]) == (
        ["g5.xlarge", "u-6tb1.metal"], ["c7i", "optimal"])
    # the basket: types priced in every region with prices (g6.xlarge only in us-east-1 is left out)
    assert region_prices({"us-east-1": {"g5.xlarge": 0.4, "g5.2xlarge": 0.6, "g6.xlarge": 9.0},
                          "eu-west-1": {"g5.xlarge": 0.5, "g5.2xlarge": 0.7}, "ap-south-1": {}}) == {
        "us-east-1": pytest.approx(0.5), "eu-west-1": pytest.approx(0.6)}
    # nothing in common: each region's own mean
    assert region_prices({"a": {"x.large": 1.0}, "b": {"y.large": 2.0, "z.large": 4.0}}) == {"a": 1.0, "b": 3.0}
    assert region_prices({}) == {}


# ---------------------------------------------------------------- the calls on recorded responses

T0 = datetime(2026, 11, 18, 7, 0, tzinfo=timezone.utc)


def price(zone: str, itype: str, value: str, minutes_ago: int = 0) -> dict:
    """A DescribeSpotPriceHistory record as EC2 returns it."""
    return {"AvailabilityZone": zone, "InstanceType": itype, "ProductDescription": "Linux/UNIX",
            "SpotPrice": value, "Timestamp": T0 - timedelta(minutes=minutes_ago)}


def client_error(code: str, message: str, status: int = 400, op: str = "GetSpotPlacementScores") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"RequestId": "6f7e7c1f", "HTTPStatusCode": status}}, op)


class FakeEc2:
    """An EC2 client with the two calls, answering recorded pages (NextToken as EC2 gives it) or raising."""

    def __init__(self, score_pages=None, price_pages=None, fail_scores=None, fail_prices=None):
        self.score_pages = score_pages or [[]]
        self.price_pages = price_pages or [[]]
        self.fail_scores, self.fail_prices = fail_scores, fail_prices
        self.calls: list[tuple[str, dict]] = []

    def get_spot_placement_scores(self, **kwargs):
        self.calls.append(("GetSpotPlacementScores", kwargs))
        if self.fail_scores is not None:
            raise self.fail_scores
        n = int(kwargs.get("NextToken", "0").removeprefix("tok"))
        out = {"SpotPlacementScores": self.score_pages[n],
               "ResponseMetadata": {"RequestId": "a1b2", "HTTPStatusCode": 200}}
        if n + 1 < len(self.score_pages):
            out["NextToken"] = f"tok{n + 1}"
        return out

    def describe_spot_price_history(self, **kwargs):
        self.calls.append(("DescribeSpotPriceHistory", kwargs))
        if self.fail_prices is not None:
            raise self.fail_prices
        n = int(kwargs.get("NextToken") or 0)
        return {"SpotPriceHistory": self.price_pages[n],
                "NextToken": str(n + 1) if n + 1 < len(self.price_pages) else "",  # EC2 ends with ""
                "ResponseMetadata": {"RequestId": "c3d4", "HTTPStatusCode": 200}}


def test_spot_placement_scores_pages_and_sends_the_request():
    fake = FakeEc2(score_pages=[[{"Region": "us-east-1", "Score": 9}, {"Region": "eu-west-1", "Score": 6}],
                                [{"Region": "ap-south-1", "Score": 1}]])
    assert spot_placement_scores(fake, TYPES, ["us-east-1", "eu-west-1", "ap-south-1"], 256) == {
        "us-east-1": 9, "eu-west-1": 6, "ap-south-1": 1}
    request = {"InstanceTypes": TYPES, "TargetCapacity": 256, "TargetCapacityUnitType": "vcpu",
               "RegionNames": ["us-east-1", "eu-west-1", "ap-south-1"], "SingleAvailabilityZone": False}
    assert fake.calls == [("GetSpotPlacementScores", request),
                          ("GetSpotPlacementScores", {**request, "NextToken": "tok1"})]


def test_spot_prices_take_the_latest_price_per_zone_and_the_median_over_zones():
    fake = FakeEc2(price_pages=[
        [price("us-east-1a", "g5.xlarge", "0.402800"), price("us-east-1a", "g5.xlarge", "0.900000", 30),
         price("us-east-1b", "g5.xlarge", "0.380100"), price("us-east-1c", "g5.xlarge", "0.501000")],
        [price("us-east-1a", "g5.2xlarge", "0.650000"), price("us-east-1b", "g5.2xlarge", "0.610000"),
         price("us-east-1d", "g5.2xlarge", "bad")]])
    now = T0 + timedelta(seconds=5)
    assert spot_prices(fake, ["g5.xlarge", "g5.2xlarge"], "us-east-1", now=now) == {
        "g5.2xlarge": pytest.approx(0.63), "g5.xlarge": pytest.approx(0.4028)}
    request = {"InstanceTypes": ["g5.xlarge", "g5.2xlarge"], "ProductDescriptions": ["Linux/UNIX"], "StartTime": now}
    assert fake.calls == [("DescribeSpotPriceHistory", request),
                          ("DescribeSpotPriceHistory", {**request, "NextToken": "1"})]


def test_failures_read_as_one_short_line():
    assert failure_text(client_error("UnauthorizedOperation", "You are not authorized to perform this operation.",
                                     403)) == ("access denied (UnauthorizedOperation: You are not authorized to "
                                               "perform this operation.)")
    assert failure_text(client_error("RequestLimitExceeded", "Request limit exceeded.", 503)) == (
        "throttled after every retry (RequestLimitExceeded)")
    assert failure_text(client_error("UnsupportedOperation", "The operation is not supported in this region.")) == (
        "UnsupportedOperation: The operation is not supported in this region.")
    assert failure_text(ResponseParserError("Unable to parse response (syntax error: line 1, column 0), invalid XML "
                                            "received. Further retries may succeed:\nb'<!doctype html>...'")) == (
        "the endpoint did not answer like EC2 (HTTP 500 or an error page: not implemented there?)")
    host = Host(name="t", type="aws", main_region="us-east-1", endpoint_url="http://127.0.0.1:9")
    line = failure_text(EndpointConnectionError(endpoint_url="http://127.0.0.1:9/"), host, "GetSpotPlacementScores")
    assert line.startswith("cannot reach http://127.0.0.1:9 for AWS ec2 GetSpotPlacementScores") and "\n" not in line
    assert failure_text(HyperError("no AWS region for host 't'", "set it")) == "no AWS region for host 't'"


# ---------------------------------------------------------------- refresh on an aws host (moto)


def record(ctx, kind: str, name: str, values: dict, **fields) -> None:
    from hyper.services.resources import build

    resource = build(kind, name, values)
    for key, value in fields.items():
        setattr(resource, key, value)
    ctx.store.put_resource(resource, replace=True)


@pytest.fixture
def aws_ctx(home, moto_endpoint):
    import boto3

    from hyper.services.context import open_context
    from hyper.services.hosts import create_host

    prefix = f"wt{uuid.uuid4().hex[:8]}-"
    create_host("t", "aws", main_region="us-east-1", endpoint_url=moto_endpoint, table_prefix=prefix,
                settings={"max_attempts": 2})
    ctx = open_context("t")
    if ctx.store.get_resource("region", "us-east-1") is None:
        record(ctx, "region", "us-east-1", {}, main=True)
    record(ctx, "region", "eu-west-1", {})
    record(ctx, "cluster", "gpu", {"type": "batch", "regions": "us-east-1,eu-west-1", "spot": "true",
                                   "instance-types": ",".join(TYPES), "max-vcpus": "256"})
    record(ctx, "queue", "q1", {"cluster": "gpu", "weights": "auto"})
    record(ctx, "queue", "fixed", {"cluster": "gpu", "weights": "us-east-1=1"})
    yield ctx
    db = boto3.client("dynamodb", region_name="us-east-1", endpoint_url=moto_endpoint)
    for table in db.list_tables()["TableNames"]:
        if table.startswith(prefix):  # created with deletion protection on: lift it first, as a purge does
            db.update_table(TableName=table, DeletionProtectionEnabled=False)
            db.delete_table(TableName=table)


def fakes(**fail) -> dict[str, FakeEc2]:
    """One fake EC2 client per region: us-east-1 scores 9 (basket $0.50/h), eu-west-1 scores 6 ($0.60/h)."""
    scores = [{"Region": "us-east-1", "Score": 9}, {"Region": "eu-west-1", "Score": 6}]
    prices = {"us-east-1": [price("us-east-1a", "g5.xlarge", "0.40"), price("us-east-1a", "g5.2xlarge", "0.60")],
              "eu-west-1": [price("eu-west-1a", "g5.xlarge", "0.50"), price("eu-west-1b", "g5.2xlarge", "0.70")]}
    return {r: FakeEc2(score_pages=[scores], price_pages=[prices[r]], **fail) for r in ("us-east-1", "eu-west-1")}


def test_refresh_on_moto_keeps_the_weights_when_placement_scores_are_unavailable(aws_ctx):
    # moto answers GetSpotPlacementScores with HTTP 500: never raised, said in the result and the queue's note
    (r,) = service.refresh(aws_ctx, now=NOW)
    assert (r.queue, r.source, r.weights, r.refreshed, r.problem, r.written) == ("q1", "kept", {}, False, True, True)
    assert r.note == ("spot placement scores unavailable: the endpoint did not answer like EC2 (HTTP 500 or an "
                      "error page: not implemented there?); equal weights until they can be computed")
    stored = aws_ctx.store.get_resource("queue", "q1")
    assert (stored.auto_weights, stored.auto_weights_at, stored.auto_weights_note) == ({}, 0.0, r.note)

    # with a client that answers, the weights are computed and stored
    clients = fakes()
    (r,) = service.refresh(aws_ctx, ["q1"], clients=clients.__getitem__, now=NOW)
    assert (r.weights, r.source, r.refreshed, r.written) == ({"us-east-1": 100, "eu-west-1": 56}, "scores+prices",
                                                            True, True)
    assert r.note == ("from spot placement scores and spot prices for g5.2xlarge,g5.xlarge,g6.xlarge at 256 vCPUs: "
                      "us-east-1 score 9 $0.5000/h, eu-west-1 score 6 $0.6000/h")
    stored = aws_ctx.store.get_resource("queue", "q1")
    assert (stored.auto_weights, stored.auto_weights_at, stored.weights) == (r.weights, NOW, "auto")
    scores_calls = [c for c in clients["us-east-1"].calls if c[0] == "GetSpotPlacementScores"]
    assert [c[1]["RegionNames"] for c in scores_calls] == [["us-east-1", "eu-west-1"]]  # one call, main region
    assert not [c for c in clients["eu-west-1"].calls if c[0] == "GetSpotPlacementScores"]

    # moto again: the last weights stay, and the note says from when
    (r,) = service.refresh(aws_ctx, now=NOW + 3600)
    assert (r.weights, r.source, r.at) == ({"us-east-1": 100, "eu-west-1": 56}, "kept", NOW)
    assert r.note.endswith("; kept the weights of 2026-11-18 11:06 UTC")
    stored = aws_ctx.store.get_resource("queue", "q1")
    assert (stored.auto_weights, stored.auto_weights_at, stored.auto_weights_note) == (r.weights, NOW, r.note)


def test_refresh_rules_for_prices_on_demand_families_and_names(aws_ctx):
    ctx = aws_ctx
    # prices refused in one region: scores alone, and the note says so
    clients = fakes()
    clients["eu-west-1"].fail_prices = client_error("UnauthorizedOperation", "not authorized", 403,
                                                    "DescribeSpotPriceHistory")
    (r,) = service.refresh(ctx, clients=clients.__getitem__, now=NOW)
    assert (r.weights, r.source) == ({"us-east-1": 100, "eu-west-1": 67}, "scores")
    assert r.note.endswith("; spot prices unavailable (eu-west-1: access denied (UnauthorizedOperation: not "
                           "authorized)): weights from scores only")
    # throttled scores: kept
    clients = fakes(fail_scores=client_error("RequestLimitExceeded", "Request limit exceeded.", 503))
    (r,) = service.refresh(ctx, clients=clients.__getitem__, now=NOW + 60)
    assert (r.weights, r.source, r.problem) == ({"us-east-1": 100, "eu-west-1": 67}, "kept", True)
    assert r.note.startswith("spot placement scores unavailable: throttled after every retry (RequestLimitExceeded)")
    # dry run: computed, nothing stored
    (r,) = service.refresh(ctx, clients=fakes().__getitem__, now=NOW + 120, dry_run=True)
    assert (r.weights, r.written) == ({"us-east-1": 100, "eu-west-1": 56}, False)
    assert ctx.store.get_resource("queue", "q1").auto_weights == {"us-east-1": 100, "eu-west-1": 67}

    # families and optimal cannot be scored: kept, no call made
    record(ctx, "cluster", "fam", {"type": "batch", "regions": "us-east-1", "spot": "true",
                                   "instance-types": "c7i,optimal"})
    record(ctx, "queue", "qf", {"cluster": "fam", "weights": "auto"})
    clients = fakes()
    (r,) = service.refresh(ctx, ["qf"], clients=clients.__getitem__, now=NOW)
    assert r.note == ("no exact instance types to score in us-east-1 (instance types c7i, optimal: families and "
                      "optimal cannot be scored); equal weights until they can be computed")
    assert r.hint.startswith("list exact types: `hyper clusters update-cluster fam --instance-types")
    assert not clients["us-east-1"].calls

    # on-demand: equal weights, no call made
    record(ctx, "cluster", "od", {"type": "batch", "regions": "us-east-1,eu-west-1", "spot": "false",
                                  "instance-types": "c5.large"})
    record(ctx, "queue", "qo", {"cluster": "od", "weights": "auto"})
    (r,) = service.refresh(ctx, ["qo"], clients=clients.__getitem__, now=NOW)
    assert (r.weights, r.source, r.note) == (
        {"us-east-1": 100, "eu-west-1": 100}, "equal",
        "equal weights: cluster od is on-demand (spot scores and prices do not apply)")
    assert not clients["us-east-1"].calls

    # named queues must exist and be auto (checked before anything is refreshed)
    with pytest.raises(HyperError, match=r"queue 'fixed' has fixed weights \(us-east-1=1\), not auto"):
        service.refresh(ctx, ["qo", "fixed"], clients=clients.__getitem__)
    with pytest.raises(HyperError, match="queue 'nope' does not exist"):
        service.refresh(ctx, ["nope"], clients=clients.__getitem__)
    assert [r.queue for r in service.refresh(ctx, clients=fakes().__getitem__, now=NOW)] == ["q1", "qf", "qo"]


def test_refresh_weights_command(aws_ctx):
    app = typer.Typer()

    @app.callback()
    def _group() -> None:
        """queues"""

    add_refresh_command(app)
    runner = CliRunner()
    out = runner.invoke(app, ["refresh-weights"])
    assert out.exit_code == 0, out.output  # an unavailable API is said, not an error
    note = ("spot placement scores unavailable: the endpoint did not answer like EC2 (HTTP 500 or an error page: "
            "not implemented there?); equal weights until they can be computed")
    assert out.stdout == ("Queue Cluster Weights Source Note\n"
                          "----- ------- ------- ------ " + "-" * len(note) + "\n"
                          "q1    gpu     equal   kept   " + note + "\n")
    out = runner.invoke(app, ["refresh-weights", "q1", "--output", "json", "--dry-run"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout) == [{
        "queue": "q1", "cluster": "gpu", "regions": ["us-east-1", "eu-west-1"], "weights": {}, "source": "kept",
        "note": "spot placement scores unavailable: the endpoint did not answer like EC2 (HTTP 500 or an error "
                "page: not implemented there?); equal weights until they can be computed",
        "computed_at": None, "refreshed": False, "written": False}]
    out = runner.invoke(app, ["refresh-weights", "fixed"])
    assert (out.exit_code, out.stdout) == (1, "")
    assert out.stderr == ("hyper queues: queue 'fixed' has fixed weights (us-east-1=1), not auto "
                          "(`hyper queues update-queue fixed --weights auto` to have them computed)\n")


# ---------------------------------------------------------------- the scheduler refreshes them periodically


class WritableStore(FakeStore):
    """FakeStore whose resources are copied in and out, as a real store's are."""

    def list_resources(self, kind):
        return copy.deepcopy(super().list_resources(kind))

    def get_resource(self, kind, name):
        return next((copy.deepcopy(r) for r in self.resources if r.KIND == kind and r.name == name), None)

    def put_resource(self, resource, *, replace=False):
        self.resources = [r for r in self.resources if (r.KIND, r.name) != (resource.KIND, resource.name)]
        self.resources.append(copy.deepcopy(resource))


def spot_resources():
    return [Region(name="us-east-1", main=True), Region(name="eu-west-1"),
            Cluster(name="gpu", type="batch", max_vcpus=1024, spot=True, instance_types=list(TYPES),
                    regions=["us-east-1", "eu-west-1"]),
            Queue(name="q1", cluster="gpu", weights="auto"),
            Definition(name="small", image="img", vcpus=1, memory_mib=2048, ratio=10)]


def test_scheduler_refreshes_stale_auto_weights_and_plans_with_them():
    clock = [NOW]
    store = WritableStore(spot_resources(), {("q1", "small"): 1000})
    clients = fakes()
    batch = FakeBatch()
    s = BatchScheduler(HOST, store, api=batch, clock=lambda: clock[0], sleep=lambda _: None,
                       weights_clients=clients.__getitem__)
    report = s.tick()
    assert report.problems == []
    assert sizes_by_region(batch) == {"us-east-1": 64, "eu-west-1": 36}  # 100 workers split 100:56
    q = store.get_resource("queue", "q1")
    assert (q.auto_weights, q.auto_weights_at) == ({"us-east-1": 100, "eu-west-1": 56}, NOW)
    calls = len(clients["us-east-1"].calls)
    assert calls == 2  # the scores (for both regions) and us-east-1's prices

    clock[0] += 899  # still fresh: no call
    s.tick()
    assert len(clients["us-east-1"].calls) == calls
    clock[0] += 1  # 900 s (weights_refresh): refreshed
    s.tick()
    assert len(clients["us-east-1"].calls) == calls + 2
    assert store.get_resource("queue", "q1").auto_weights_at == NOW + 900


def test_scheduler_weights_problems_never_fail_the_tick_and_dry_run_writes_nothing():
    clock = [NOW]
    store = WritableStore(spot_resources(), {("q1", "small"): 1000})
    denied = fakes(fail_scores=client_error("UnauthorizedOperation", "You are not authorized to perform this "
                                                                     "operation.", 403))
    batch = FakeBatch()
    s = BatchScheduler(HOST, store, api=batch, clock=lambda: clock[0], sleep=lambda _: None,
                       weights_clients=denied.__getitem__)
    report = s.tick()
    assert report.problems == [
        "queue q1: auto weights not refreshed: spot placement scores unavailable: access denied "
        "(UnauthorizedOperation: You are not authorized to perform this operation.); equal weights until they can "
        "be computed (grant ec2:GetSpotPlacementScores and ec2:DescribeSpotPriceHistory (a refused target capacity: "
        "lower the host setting weights_target_vcpus), or give queue q1 fixed weights)"]
    assert sizes_by_region(batch) == {"us-east-1": 50, "eu-west-1": 50}  # equal weights; the tick went on
    assert store.get_resource("queue", "q1").auto_weights_note.startswith("spot placement scores unavailable")
    clock[0] += 60
    assert s.tick().problems == []  # not retried every tick: once per weights_refresh
    assert len(denied["us-east-1"].calls) == 1

    # a store failing while writing is a problem line too
    class Broken(WritableStore):
        def put_resource(self, resource, *, replace=False):
            raise HyperError("AWS dynamodb PutItem was throttled in region us-east-1 after every retry")

    s = BatchScheduler(HOST, Broken(spot_resources(), {("q1", "small"): 10}), api=FakeBatch(),
                       clock=lambda: NOW, sleep=lambda _: None, weights_clients=fakes().__getitem__)
    assert s.tick().problems == ["auto weights not refreshed: AWS dynamodb PutItem was throttled in region "
                                 "us-east-1 after every retry"]

    # --dry-run: planned with the fresh weights, nothing stored
    store = WritableStore(spot_resources(), {("q1", "small"): 1000})
    batch = FakeBatch()
    s = BatchScheduler(HOST, store, api=batch, clock=lambda: NOW, sleep=lambda _: None,
                       weights_clients=fakes().__getitem__)
    report = s.tick(dry_run=True)
    assert {r.region: r.new for r in report.rows} == {"us-east-1": 64, "eu-west-1": 36}
    assert store.get_resource("queue", "q1").auto_weights == {} and not batch.submits

    # weights_refresh: 0 turns the refresh off
    off = Host(name=HOST.name, type="aws", main_region="us-east-1", table_prefix=HOST.table_prefix,
               extra={"weights_refresh": 0})
    clients = fakes()
    BatchScheduler(off, WritableStore(spot_resources(), {("q1", "small"): 10}), api=FakeBatch(), clock=lambda: NOW,
                   sleep=lambda _: None, weights_clients=clients.__getitem__).tick()
    assert not clients["us-east-1"].calls
