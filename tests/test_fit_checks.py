"""Definitions that can never start are refused where they are made, with the largest size that fits.

ECS keeps part of every instance's memory (hyper.backends.instances.ECS_RESERVE), so a 16 GiB worker never
starts on a 16 GiB g5.xlarge: it would wait RUNNABLE for ever. add/update of a definition (and apply, which
validates the same way), an update of a cluster that would strand a definition, and qsub to a queue whose
cluster cannot hold the definition all say so in one line. The stores here are small in-memory stand-ins
for the Store protocol's resource calls (no AWS is involved in these checks).
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from hyper.backends import instances
from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Image, Queue, Region
from hyper.parsing.directives import Directives
from hyper.services import submission
from hyper.services import resources as res

US, EU = "us-east-1", "eu-west-1"
GPU = Cluster(name="gpu", type="batch", regions=[US, EU], instance_types=["g5.xlarge", "g5.2xlarge"],
              gpus_per_instance=1, max_vcpus=256, overrides={EU: {"instance_types": ["g5.xlarge"]}},
              environment_generation=1)
CPU = Cluster(name="cpu", type="batch", regions=[US], instance_types=["c5.large", "m5.xlarge"], max_vcpus=64,
              environment_generation=1)
TRAIN = Definition(name="train", image="worker", vcpus=4, memory_mib=16384, gpus=1)


class Records:
    """The resource half of the Store protocol, in memory."""

    def __init__(self, *found):
        self.found = {(r.KIND, r.name): r for r in found}

    def get_resource(self, kind, name):
        return self.found.get((kind, name))

    def list_resources(self, kind):
        return [r for (k, _), r in sorted(self.found.items()) if k == kind]


def view(*found) -> res.ResourceView:
    base = [Region(name=US, main=True, vpc_cidr="10.20.0.0/16"), Region(name=EU, vpc_cidr="10.30.0.0/16"),
            Image(name="worker", uri="public.ecr.aws/acme/worker:1")]
    return res.ResourceView(Records(*base, *found))


def test_a_definition_no_cluster_can_hold_is_refused_with_the_largest_size_that_fits():
    only_small = Cluster(**{**GPU.to_dict(), "instance_types": ["g5.xlarge"], "overrides": {}})
    with pytest.raises(HyperError) as err:
        res.validate(TRAIN, view(only_small), "aws")
    assert err.value.message == (
        "definition train (4 vCPU, 16384 MiB, 1 GPU) fits no instance type of cluster gpu (g5.xlarge); the "
        "largest, g5.xlarge, leaves 4 vCPU, 15144 MiB and 1 GPU after the ECS agent's reserve")
    assert "lower --vcpus, --memory or --gpus" in err.value.hint
    res.validate(Definition(**{**TRAIN.to_dict(), "memory_mib": 14336}), view(only_small), "aws")  # fits


def test_one_region_whose_override_cannot_hold_it_is_enough_to_refuse():
    """us-east-1 has g5.2xlarge, but eu-west-1 only g5.xlarge: the workers planned there would never start."""
    with pytest.raises(HyperError, match=r"fits no instance type of cluster gpu \(g5.xlarge\)"):
        res.validate(TRAIN, view(GPU), "aws")


def test_with_several_clusters_each_ones_largest_worker_is_named():
    with pytest.raises(HyperError) as err:
        res.validate(Definition(**{**TRAIN.to_dict(), "gpus": 2}), view(GPU, CPU), "aws")
    assert err.value.message == (
        "definition train (4 vCPU, 16384 MiB, 2 GPU) fits no cluster's instance types; the largest worker each "
        "holds after the node agent's reserve: cpu: 4 vCPU, 15144 MiB on m5.xlarge; gpu: 8 vCPU, 30545 MiB, "
        "1 GPU on g5.2xlarge")


def test_clusters_hyper_cannot_judge_count_as_fitting():
    families = Cluster(**{**CPU.to_dict(), "instance_types": ["c7a", "m7a"]})
    res.validate(Definition(name="big", image="worker", vcpus=64, memory_mib=500_000), view(families), "aws")
    # but no instance of a CPU-only cluster has a GPU, whatever its types
    with pytest.raises(HyperError, match="wants 1 GPU"):
        res.validate(TRAIN, view(families), "aws")


def test_a_cluster_update_that_would_strand_a_definition_is_refused():
    fitting = Definition(**{**TRAIN.to_dict(), "memory_mib": 20000})
    only_big = Cluster(**{**GPU.to_dict(), "regions": [US], "overrides": {}})
    v = view(only_big, fitting)
    smaller = Cluster(**{**only_big.to_dict(), "instance_types": ["g5.xlarge"]})
    v.staged[("cluster", "gpu")] = smaller
    with pytest.raises(HyperError) as err:
        res.validate_dependents(smaller, v, "aws")
    assert err.value.message == (
        "that change would strand definition 'train': definition train (4 vCPU, 20000 MiB, 1 GPU) fits no "
        "instance type of cluster gpu (g5.xlarge); the largest, g5.xlarge, leaves 4 vCPU, 15144 MiB and 1 GPU "
        "after the ECS agent's reserve")
    bigger = Cluster(**{**only_big.to_dict(), "instance_types": ["g5.2xlarge", "g5.4xlarge"]})
    v.staged[("cluster", "gpu")] = bigger
    res.validate_dependents(bigger, v, "aws")
    # a definition that never fitted this cluster (a GPU one on a CPU cluster) does not block its changes
    v = view(CPU, TRAIN)
    res.validate_dependents(Cluster(**{**CPU.to_dict(), "instance_types": ["c5.large"]}), v, "aws")


def test_qsub_to_a_queue_whose_cluster_cannot_hold_the_definition_is_refused():
    """A definition recorded before these checks (or fitting another cluster) cannot be sent where it never
    starts."""
    store = Records(GPU, Queue(name="gpu", cluster="gpu"), TRAIN)
    ctx = SimpleNamespace(store=store, host=SimpleNamespace(name="prod", type="aws"))
    with pytest.raises(HyperError) as err:
        submission._queue_and_definition(ctx, Directives(queue="gpu", definition="train"))
    assert err.value.message.startswith("queue 'gpu' cannot start it: definition train (4 vCPU, 16384 MiB, 1 GPU) "
                                        "fits no instance type of cluster gpu (g5.xlarge)")


def test_the_table_knows_the_shipped_cluster_types():
    for itype in ("c7i.large", "c7i.xlarge", "m7i.large", "g5.xlarge", "g5.2xlarge", "g4dn.xlarge"):
        assert itype in instances.SIZES
