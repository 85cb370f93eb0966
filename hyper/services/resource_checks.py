"""Integrity of admin-managed resources: what a resource refers to exists, its values make sense together,
definitions fit some cluster, and a change does not break what refers to it (before anything is written)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hyper.backends import check_cluster, cluster_type, types_for
from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Image, Queue, Region, Resource
from hyper.parsing.durations import format_memory
from hyper.states import JobState
from hyper.services.resource_fields import PLURAL

if TYPE_CHECKING:
    from hyper.store.base import Store


def validate(resource: Resource, view: "ResourceView", host_type: str) -> None:
    """Everything a resource refers to exists; values make sense together."""
    if isinstance(resource, (Region, Image)) and host_type == "local":
        raise HyperError(f"{resource.KIND}s are for aws hosts; a local host runs jobs on this machine"
                         + ("; its definitions use --image local" if isinstance(resource, Image) else ""),
                         "create an aws host with `hyper hosts create-host NAME --type aws --main-region ...`")
    if isinstance(resource, Cluster):
        _validate_cluster(resource, view, host_type)
    elif isinstance(resource, Queue):
        _validate_queue(resource, view, host_type)
    elif isinstance(resource, Image):
        _validate_image(resource, view, host_type)
    elif isinstance(resource, Definition):
        _validate_definition(resource, view, host_type)
    elif isinstance(resource, Region):
        _validate_region(resource, view, host_type)


def _validate_cluster(resource: Cluster, view: "ResourceView", host_type: str) -> None:
    """Its type suits the host, its regions exist (and are deployed where it needs their network)."""
    kind = cluster_type(resource.type)
    if kind.host != host_type:
        raise HyperError(f"cluster {resource.name!r} is of type {resource.type} but this host is {host_type}",
                         "use " + " or ".join(f"--type {t}" for t in types_for(host_type))
                         + (", or create an aws host with `hyper hosts create-host`" if host_type == "local"
                            else ""))
    check_cluster(resource)
    for region in resource.regions:
        found = view.get("region", region)
        if found is None:
            raise HyperError(f"cluster {resource.name!r} names region {region!r}, which this host does not have",
                             f"add it with `hyper regions add-region {region}` or drop it from --regions")
        if kind.needs_network and ("region", region) not in view.staged and \
                found.status not in ("ACTIVE", "UPDATING"):
            verb = "init-main-region" if isinstance(found, Region) and found.main else "update-region"
            raise HyperError(f"cluster {resource.name!r} needs region {region}'s network, which is "
                             f"{found.status}", f"deploy it first: `hyper regions {verb} {region} "
                             "--vpc-cidr CIDR` (or --vpc-id and --subnets)")
    for region in resource.overrides:
        if view.get("region", region) is None:
            raise HyperError(f"cluster {resource.name!r} overrides region {region!r}, which this host does "
                             "not have", f"add it with `hyper regions add-region {region}`")
    if resource.max_vcpus < resource.min_vcpus:
        raise HyperError(f"cluster {resource.name!r}: min-vcpus {resource.min_vcpus} exceeds max-vcpus "
                         f"{resource.max_vcpus}", "raise --max-vcpus or lower --min-vcpus")
    if resource.allocation_strategy.startswith("SPOT") and not resource.spot:
        raise HyperError(f"cluster {resource.name!r}: {resource.allocation_strategy} needs spot capacity",
                         "add --spot true or use BEST_FIT_PROGRESSIVE")


def _validate_queue(resource: Queue, view: "ResourceView", host_type: str) -> None:
    """Its cluster exists; weighted regions exist and hold the cluster's compute."""
    cluster = view.get("cluster", resource.cluster)
    if not isinstance(cluster, Cluster):
        raise HyperError(f"queue {resource.name!r} names cluster {resource.cluster!r}, which does not exist",
                         f"clusters: {', '.join(view.names('cluster')) or 'none'}; add one with "
                         "`hyper clusters add-cluster`")
    if isinstance(resource.weights, dict):
        for region in resource.weights:
            if view.get("region", region) is None:
                raise HyperError(f"queue {resource.name!r} weighs region {region!r}, which this host does "
                                 "not have", f"regions: {', '.join(view.names('region')) or 'none'}")
            if cluster.regions and region not in cluster.regions:
                raise HyperError(f"queue {resource.name!r} weighs region {region!r}, where cluster "
                                 f"{cluster.name!r} has no compute", f"its regions: {', '.join(cluster.regions)}")
        if resource.weights and not any(resource.weights.values()):
            raise HyperError(f"queue {resource.name!r}: every region weight is 0", "give one region weight 1+")


def _validate_image(resource: Image, view: "ResourceView", host_type: str) -> None:
    """Exactly one of a directory to build or an existing URI."""
    if bool(resource.path) == bool(resource.uri):
        raise HyperError(f"image {resource.name!r} needs exactly one of --path (a directory to build) or "
                         "--uri (an existing image)", "e.g. --path example-worker-image")
    if resource.path:
        from pathlib import Path

        if not (Path(resource.path) / "Dockerfile").is_file():
            raise HyperError(f"image {resource.name!r}: {resource.path} holds no Dockerfile",
                             "point --path at a directory with a Dockerfile")


def _validate_definition(resource: Definition, view: "ResourceView", host_type: str) -> None:
    """It fits some cluster, its image exists, and on a local host this machine."""
    check_definition_fits(resource, view.all("cluster"))
    if resource.image != "local" and view.get("image", resource.image) is None:
        raise HyperError(f"definition {resource.name!r} names image {resource.image!r}, which does not exist",
                         f"images: {', '.join(view.names('image')) or 'none'}; add one with "
                         "`hyper images add-image`" + (" or use --image local" if host_type == "local" else ""))
    if resource.image == "local" and host_type != "local":
        raise HyperError(f"definition {resource.name!r} uses image local on an aws host",
                         "add an image with `hyper images add-image` and name it with --image")
    if host_type == "local":  # a worker bigger than this machine would never start: say so now, not never
        from hyper.services.context import host_size

        cores, memory = host_size()
        if resource.vcpus > cores:
            raise HyperError(f"definition {resource.name!r} has {resource.vcpus} vCPUs but this local host has "
                             f"{cores} cores, so its jobs could never start", f"use --vcpus {cores} or fewer")
        if memory and resource.memory_mib > memory:
            raise HyperError(f"definition {resource.name!r} has {format_memory(resource.memory_mib)} of memory "
                             f"but this local host has {format_memory(memory)}, so its jobs could never start",
                             f"use --memory {format_memory(memory)} or less")


def _validate_region(resource: Region, view: "ResourceView", host_type: str) -> None:
    """A new VPC's CIDR is valid and overlaps no other region's."""
    if resource.vpc_id and resource.vpc_cidr:
        raise HyperError(f"region {resource.name!r}: give --vpc-cidr (new VPC) or --vpc-id (existing), not both",
                         "drop one of them")
    if resource.vpc_cidr:
        import ipaddress

        try:
            net = ipaddress.ip_network(resource.vpc_cidr)
        except ValueError:
            raise HyperError(f"region {resource.name!r}: vpc-cidr {resource.vpc_cidr!r} is not a CIDR",
                             "e.g. 10.20.0.0/16") from None
        for other in view.all("region"):
            if isinstance(other, Region) and other.name != resource.name and other.vpc_cidr and \
                    net.overlaps(ipaddress.ip_network(other.vpc_cidr)):
                raise HyperError(f"region {resource.name!r}: vpc-cidr {resource.vpc_cidr} overlaps "
                                 f"{other.vpc_cidr} of region {other.name!r}", "pick a CIDR that does not overlap")



FIT_HINT = ("lower --vcpus, --memory or --gpus to a size that fits, or give a cluster bigger instance types "
            "(`hyper clusters update-cluster NAME --instance-types ...`)")


def check_definition_fits(definition: Definition, clusters: list[Resource]) -> None:
    """A definition's worker must fit some cluster's instances after the node agent's reserve (ECS keeps
    memory for itself: a 16 GiB worker never starts on a 16 GiB instance, it waits RUNNABLE for ever).
    Clusters whose instance types are not all in hyper's table (families, `optimal`) cannot be judged and
    count as fitting."""
    from hyper.backends import instances

    judged = [(c, instances.fits_cluster(definition, c)) for c in clusters if isinstance(c, Cluster)]
    if not judged or any(fit is not False for _, fit in judged):
        return
    if len(judged) == 1:
        cluster = judged[0][0]
        raise HyperError(instances.cluster_fit_problem(definition, cluster) or
                         f"definition {definition.name} wants {definition.gpus} GPU(s); cluster {cluster.name}'s "
                         f"instances have {cluster.gpus_per_instance or 0}", FIT_HINT)
    largest = "; ".join(f"{c.name}: " + (instances.largest_fit(c, c.regions[0] if c.regions else None, reserve=reserve)
                                         or f"{c.gpus_per_instance or 0} GPU per instance")
                        for c, reserve in ((c, instances.reserve_for(c)) for c, _ in judged))
    raise HyperError(f"definition {definition.name} ({instances.needs(definition)}) fits no cluster's instance "
                     f"types; the largest worker each holds after the node agent's reserve: {largest}", FIT_HINT)


def check_cluster_keeps_definitions(cluster: Cluster, previous: Resource | None,
                                    definitions: list[Resource]) -> None:
    """A cluster change must not leave a definition that fitted its instances with none that fits."""
    from hyper.backends import instances

    if not isinstance(previous, Cluster):
        return
    for definition in definitions:
        if not isinstance(definition, Definition) or instances.fits_cluster(definition, previous) is not True:
            continue
        if instances.fits_cluster(definition, cluster) is False:
            raise HyperError(f"that change would strand definition {definition.name!r}: "
                             f"{instances.cluster_fit_problem(definition, cluster)}",
                             "keep an instance type it fits, or shrink the definition first "
                             f"(`hyper definitions update-definition {definition.name} ...`)")


class ResourceView:
    """The store's resources with staged changes laid over them, so a whole `apply` validates before writing."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.staged: dict[tuple[str, str], Resource] = {}

    def get(self, kind: str, name: str) -> Resource | None:
        if (kind, name) in self.staged:
            return self.staged[(kind, name)]
        return self.store.get_resource(kind, name)

    def all(self, kind: str) -> list[Resource]:
        found = {r.name: r for r in self.store.list_resources(kind)}
        found.update({n: r for (k, n), r in self.staged.items() if k == kind})
        return [found[n] for n in sorted(found)]

    def names(self, kind: str) -> list[str]:
        return [r.name for r in self.all(kind)]


def users_of(store: Store, kind: str, name: str) -> list[str]:
    """What would be orphaned by deleting this resource: referring resources and live jobs."""
    users: list[str] = []
    if kind == "region":
        users += [f"cluster {c.name}" for c in store.list_resources("cluster")
                  if isinstance(c, Cluster) and name in c.regions]
        users += [f"queue {q.name}" for q in store.list_resources("queue")
                  if isinstance(q, Queue) and isinstance(q.weights, dict) and name in q.weights]
    elif kind == "cluster":
        users += [f"queue {q.name}" for q in store.list_resources("queue")
                  if isinstance(q, Queue) and q.cluster == name]
    elif kind == "image":
        users += [f"definition {d.name}" for d in store.list_resources("definition")
                  if isinstance(d, Definition) and d.image == name]
    if kind in ("queue", "definition"):
        live: dict[str, int] = {}
        for c in store.counts():
            if c.state in (JobState.HELD, JobState.QUEUED, JobState.RUNNING) and c.tasks > 0 and \
                    (c.queue if kind == "queue" else c.definition) == name:
                live[c.state.value.lower()] = live.get(c.state.value.lower(), 0) + c.tasks
        if live:
            users.append(" and ".join(f"{n} {s}" for s, n in sorted(live.items())) + " job(s)")
    return users


def validate_dependents(resource: Resource, view: "ResourceView", host_type: str) -> None:
    """A changed cluster or region must not break the queues and clusters that refer to it."""
    dependents: list[Resource] = []
    if isinstance(resource, Cluster):
        check_cluster_keeps_definitions(resource, view.store.get_resource("cluster", resource.name),
                                        view.all("definition"))
        dependents = [q for q in view.all("queue") if isinstance(q, Queue) and q.cluster == resource.name]
    elif isinstance(resource, Region):
        dependents = [c for c in view.all("cluster") if isinstance(c, Cluster) and resource.name in c.regions]
    for other in dependents:
        try:
            validate(other, view, host_type)
        except HyperError as exc:
            raise HyperError(f"that change would break {other.KIND} {other.name!r}: {exc.message}",
                             f"change {other.KIND} {other.name!r} first"
                             + (f" (`hyper {PLURAL[other.KIND]} update-{other.KIND} {other.name} ...`)")) from None
