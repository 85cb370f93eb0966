"""Provisioning of a cluster of type ``batch``: one CloudFormation stack ``<prefix>cluster-<name>`` per region
(compute environment + job queue, hyper/aws/templates.py), replaced blue/green when Batch cannot update the
compute environment in place, and removed from regions the cluster no longer spans."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hyper.aws import names
from hyper.config import Host
from hyper.models import Cluster
from hyper.provisioning.steps import removal_steps

if TYPE_CHECKING:
    from hyper.aws.stacks import StackResult
    from hyper.services.context import Context
    from hyper.services.provision import Step
    from hyper.services.resource_checks import ResourceView


def stack_name(host: Host, cluster: Cluster) -> str:
    return names.stack(host, "cluster", cluster.name)


def plan_cluster(ctx: Context, resource: Cluster, *, delete: bool = False, previous: Cluster | None = None,
                 view: ResourceView | None = None) -> list[Step]:
    """Steps per region; ``--dry-run`` prints them (a replacement shows its reason)."""
    from hyper.aws import stacks, templates
    from hyper.services.provision import Step

    host = ctx.host
    name = stack_name(host, resource)
    steps: list[Step] = []
    if not delete:  # a change Batch cannot make in place deploys a new compute environment (blue/green)
        prior = previous if isinstance(previous, Cluster) else None
        resource.environment_generation, why = templates.environment_generation(prior, resource)
        if why and prior is not None:  # (there is a reason only when a previous batch cluster is replaced)
            steps.append(Step("replace-compute-environment", ",".join(resource.regions),
                              names.compute_environment(host, resource.name, resource.environment_generation),
                              {"reason": why, "replaces": names.compute_environment(
                                  host, resource.name, prior.environment_generation)}, done=True))
    steps += removal_steps(host, resource, previous, name, delete=delete)  # all on delete, else dropped regions
    if delete:
        return steps
    for region in resource.regions:
        template = templates.render_cluster_stack(host, resource, region)

        def run(region: str = region, template: dict = template) -> StackResult:
            stacks.check_cluster_region(host, resource, region)
            stacks.ensure_batch_service_linked_role(host)
            return stacks.deploy_stack(host, region, name, template)

        steps.append(Step("deploy-stack", region, name, template, run))
    return steps
