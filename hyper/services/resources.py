"""Admin-managed resources (regions, clusters, queues, images, job definitions): fields, parsing, integrity.

One table of fields per kind drives everything: the `hyper <kind>s add-…` options, the guided prompts, YAML
`apply`/`export` and `list-*` output. Values arrive as strings (command line, prompts) or YAML scalars; both
go through the same parsers, so `--memory 4GiB` and `memory: 4GiB` mean the same. Every check runs before
anything is written.

This module holds the use cases; the field tables and parsers are in hyper/services/resource_fields.py and the
integrity checks in hyper/services/resource_checks.py, re-exported here for the CLI and ``apply``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar

from hyper.backends import cluster_type, default_type
from hyper.errors import HyperError, UsageError
from hyper.models import RESOURCE_KINDS, Cluster, Region, Resource
from hyper.services.resource_checks import ResourceView, users_of, validate, validate_dependents
from hyper.services.resource_fields import (FIELDS, KIND_ORDER, PLURAL, SINGULAR, _bool, build, check_name, field_map,
                                            to_mapping)

if TYPE_CHECKING:
    from hyper.services.context import Context
    from hyper.services.provision import Step

__all__ = ["FIELDS", "KIND_ORDER", "PLURAL", "SINGULAR", "ResourceView", "UsageError", "_bool", "add", "build",
           "check_name", "check_new", "default_max_vcpus", "default_type", "delete", "field_map", "init_main_region",
           "initial_status", "list_all", "planned_steps", "prompt_defaults", "save", "to_mapping", "update", "validate",
           "validate_dependents"]


R = TypeVar("R", bound=Resource)  # save hands back the resource it was given, as its own kind


def initial_status(host_type: str) -> tuple[str, str]:
    """Local resources are live at once; on aws they wait for provisioning (CloudFormation)."""
    if host_type == "local":
        return "ACTIVE", ""
    return "PENDING", "recorded in the host's store; not yet deployed to AWS"


def check_new(ctx: Context, kind: str, name: str) -> None:
    """The name is valid and free (also asked before a guided prompt, so nobody answers questions in vain)."""
    check_name(kind, name)
    if ctx.store.get_resource(kind, name) is not None:
        raise HyperError(f"{kind} {name!r} already exists",
                         f"change it with `hyper {PLURAL[kind]} update-{kind} {name}` or pick another name")


def add(ctx: Context, kind: str, name: str, values: dict[str, Any], *, dry_run: bool = False) -> Resource:
    store = ctx.store
    check_new(ctx, kind, name)
    values = dict(values)
    if kind == "cluster" and not values.get("type"):
        values["type"] = default_type(ctx.host.type)
    resource = build(kind, name, values)
    resource.status, resource.message = initial_status(ctx.host.type)
    _defaults(ctx, resource)
    validate(resource, ResourceView(store), ctx.host.type)
    return save(ctx, resource, "CREATING", dry_run=dry_run)

def save(ctx: Context, resource: R, busy: str, *, dry_run: bool = False, previous: Resource | None = None,
         steps: list[Step] | None = None) -> R:
    """Record the resource, then make AWS match it (stacks, job definitions); status says how that went.

    The steps are rendered before anything is written, so a template that cannot be rendered (bad input)
    leaves the store untouched. With ``dry_run`` nothing is written or sent: ``planned_steps(resource)`` says what
    would be.
    """
    from hyper.services import provision

    if steps is None:  # `apply` hands over the steps it already rendered
        steps = provision.plan(ctx, resource, previous=previous)
    setattr(resource, _STEPS, steps)  # not a field: never stored or exported, only read by planned_steps
    if dry_run:
        return resource
    if steps:
        resource.status, resource.message = busy, "deploying: " + ", ".join(s.describe() for s in steps)
    # a new resource is put-if-absent: of two racing `add`s one wins, the other is told it exists
    ctx.store.put_resource(resource, replace=busy != "CREATING")
    if steps or ctx.host.type == "aws":
        resource.status, resource.message = provision.deploy(ctx, resource, steps)
        ctx.store.put_resource(resource, replace=True)
    return resource


_STEPS = "steps"


def planned_steps(resource: Resource) -> list[Step]:
    """The steps `save` planned for `resource` (what a dry run prints): kept on the object `save` returns, as an
    attribute outside the dataclass's fields, so the add/update/init commands keep their one return value."""
    steps: list[Step] = getattr(resource, _STEPS)
    return steps


def default_max_vcpus(regional: bool) -> int:
    """A local cluster is this machine's cores; a regional one starts at 256 vCPUs per region."""
    import os

    return 256 if regional else (os.cpu_count() or 1)


def _defaults(ctx: Context, resource: Resource, view: "ResourceView | None" = None) -> None:
    """Fill what was left out; `view` lets `apply` see regions it is about to create."""
    if isinstance(resource, Cluster):
        if not resource.type:
            resource.type = default_type(ctx.host.type)
        regional = cluster_type(resource.type).regional
        if regional and not resource.regions:
            resource.regions = (view or ResourceView(ctx.store)).names("region")
        if not resource.max_vcpus:
            resource.max_vcpus = default_max_vcpus(regional)


def update(ctx: Context, kind: str, name: str, values: dict[str, Any], *, dry_run: bool = False) -> Resource:
    store = ctx.store
    current = store.get_resource(kind, name)
    if current is None:
        raise HyperError(f"unknown {kind} {name!r}", f"list them with `hyper {PLURAL[kind]} list-{PLURAL[kind]}`")
    resource = build(kind, name, values, base=current)
    view = ResourceView(store)
    validate(resource, view, ctx.host.type)
    view.staged[(kind, name)] = resource
    validate_dependents(resource, view, ctx.host.type)
    return save(ctx, resource, "UPDATING", dry_run=dry_run, previous=current)


def delete(ctx: Context, kind: str, name: str, force: bool = False, *, dry_run: bool = False) -> list[str]:
    """Delete (its stacks first); refuses while in use unless forced, and returns what was orphaned."""
    store = ctx.store
    resource = store.get_resource(kind, name)
    if resource is None:
        raise HyperError(f"unknown {kind} {name!r}", f"list them with `hyper {PLURAL[kind]} list-{PLURAL[kind]}`")
    if isinstance(resource, Region) and resource.main and len(store.list_resources("region")) > 1:
        raise HyperError(f"region {name!r} is the main region and other regions depend on it",
                         "delete the other regions first")
    users = users_of(store, kind, name)
    if users and not force:
        raise HyperError(f"{kind} {name!r} is in use by {', '.join(users)}",
                         "delete those first, or add --force to orphan them")
    from hyper.services import provision

    steps = provision.plan(ctx, resource, delete=True)
    if dry_run:
        return [s.describe() for s in steps]
    if steps:
        before = (resource.status, resource.message)
        resource.status, resource.message = "DELETING", ", ".join(s.describe() for s in steps)
        store.put_resource(resource, replace=True)
        status, message = provision.deploy(ctx, resource, steps)
        if status == "FAILED":
            # refused before anything was removed (e.g. a stack still in use): the resource is as it was
            resource.status, resource.message = before if not any(s.done for s in steps) else (status, message)
            store.put_resource(resource, replace=True)
            raise HyperError(f"{kind} {name!r} could not be deleted: {message}",
                             f"fix the cause and run `hyper {PLURAL[kind]} delete-{kind} {name}` again")
    store.delete_resource(kind, name)
    return users


def init_main_region(ctx: Context, name: str, values: dict[str, Any], *, dry_run: bool = False) -> Region:
    """The host's main region (its tables, dispatch queues and logs live there); exactly one."""
    store = ctx.store
    mains = [r for r in store.list_resources("region") if isinstance(r, Region) and r.main]
    if mains and mains[0].name != name:
        raise HyperError(f"the main region is already {mains[0].name}", "a host has one main region; "
                         "add others with `hyper regions add-region`")
    if ctx.host.type == "aws" and ctx.host.main_region and ctx.host.main_region != name:
        raise HyperError(f"host {ctx.host.name!r} keeps its tables in {ctx.host.main_region}, not {name}",
                         f"run `hyper regions init-main-region {ctx.host.main_region}`")
    existing = store.get_resource("region", name)
    region = build("region", name, values, base=existing)
    if not isinstance(region, Region):  # build makes the kind it is given
        raise HyperError(f"building region {name!r} made a {region.KIND}", "report this as a bug in hyper")
    region.main = True
    if existing is None:
        region.status, region.message = initial_status(ctx.host.type)
    validate(region, ResourceView(store), ctx.host.type)
    return save(ctx, region, "CREATING" if existing is None else "UPDATING", dry_run=dry_run)


def list_all(ctx: Context, kind: str, *, refresh: bool = False) -> list[Resource]:
    """Every resource of a kind; with ``refresh``, ones still deploying take their stacks' current state."""
    found = sorted(ctx.store.list_resources(kind), key=lambda r: r.name)
    if refresh and ctx.host.type == "aws":
        from hyper.services import provision

        found = [r for r in (provision.refresh(ctx, r) for r in found) if r.status != "DELETED"]
    return found


def prompt_defaults(ctx: Context, kind: str) -> dict[str, Any]:
    """Defaults the guided prompt offers: the model's own, with references filled from what exists."""
    blank = RESOURCE_KINDS[kind]()
    out = {f.key: f.show(getattr(blank, f.attr)) for f in FIELDS[kind]}
    store = ctx.store
    if kind == "cluster":
        out["type"] = default_type(ctx.host.type)
        out["regions"] = [r.name for r in store.list_resources("region")]
        out["max-vcpus"] = default_max_vcpus(cluster_type(out["type"]).regional)
    elif kind == "queue":
        clusters = sorted(c.name for c in store.list_resources("cluster"))
        out["cluster"] = clusters[0] if clusters else ""
        out["weights"] = None
    elif kind == "definition":
        images = sorted(i.name for i in store.list_resources("image"))
        out["image"] = "local" if ctx.host.type == "local" else (images[0] if images else "")
        out["timeout"] = "none"
    elif kind == "region":
        taken = [r.vpc_cidr for r in store.list_resources("region") if isinstance(r, Region) and r.vpc_cidr]
        out["vpc-cidr"] = next(f"10.{n}.0.0/16" for n in range(10, 250, 10) if f"10.{n}.0.0/16" not in taken)
    return out
