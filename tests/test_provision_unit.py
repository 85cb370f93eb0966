"""provision.deploy's outcomes without AWS: a wait that timed out is not a failure while the stack goes on."""

from __future__ import annotations

from types import SimpleNamespace

from hyper.aws import stacks
from hyper.config import Host
from hyper.errors import HyperError
from hyper.models import Region
from hyper.services import provision


def _timeout():
    raise HyperError("stack t-network in us-east-1 is still CREATE_IN_PROGRESS after 3600 s", "it goes on")


def test_a_timed_out_wait_leaves_the_resource_creating(monkeypatch):
    ctx = SimpleNamespace(host=Host(name="t", type="aws", main_region="us-east-1"))
    step = provision.Step("deploy-stack", "us-east-1", "t-network", run=_timeout)
    monkeypatch.setattr(stacks, "stack_status",
                        lambda host, region, name: stacks.StackResult(name, region, "CREATE_IN_PROGRESS"))
    assert provision.deploy(ctx, Region(name="us-east-1"), [step]) == (
        "CREATING", "deploy-stack t-network in us-east-1: CREATE_IN_PROGRESS (still going)")
    assert not step.done


def test_a_failed_step_stops_the_rest_and_says_why(monkeypatch):
    ctx = SimpleNamespace(host=Host(name="t", type="aws", main_region="us-east-1"))
    monkeypatch.setattr(stacks, "stack_status",
                        lambda host, region, name: stacks.StackResult(name, region, "ROLLBACK_COMPLETE"))
    later = provision.Step("deploy-stack", "eu-west-1", "t-network", run=lambda: None)
    first = provision.Step("deploy-stack", "us-east-1", "t-network", run=_timeout)
    status, message = provision.deploy(ctx, Region(name="us-east-1"), [first, later])
    assert status == "FAILED" and message.startswith("deploy-stack t-network in us-east-1: stack t-network")
    assert not first.done and not later.done
