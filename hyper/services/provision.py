"""What a resource is in AWS, and making it so: CloudFormation stacks, job definitions, ECR repositories.

``plan(ctx, resource)`` is pure apart from reading the store: a list of steps, each with the exact template
or request it would send, so ``--dry-run`` prints precisely what ``deploy`` would do. ``deploy`` runs the
steps and returns the status and message the resource should show (ACTIVE, or FAILED with CloudFormation's
reasons and the way out). Local hosts have nothing to deploy: their resources are live once recorded.

  region R            network stack `<prefix>network` in R (+ `<prefix>main` log group stack if R is main)
  cluster C (batch)   stack `<prefix>cluster-C` in every region C spans (after its instance types are checked)
  cluster C (eks)     stack `<prefix>eks-C` (worker role, Pod Identity; --create-eks: EKS + node group) and the
                      namespace + service account, in every region C spans (hyper/provisioning/eks.py)
  queue Q             nothing of its own: it runs on its cluster's Batch job queue
  image I             an ECR repository replicated to every region (built and pushed with docker), or its URI
  definition D        a Batch job definition in every region, registered by content hash
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable

from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Image, Region, Resource


@dataclass
class Step:
    action: str  # deploy-stack | delete-stack | register-definition | deregister-definition | repository
    region: str
    target: str  # stack, job definition or repository name
    body: dict[str, Any] = field(default_factory=dict)  # the template or request, for --dry-run
    run: Callable[[], Any] | None = None
    done: bool = False  # set once it ran without failing

    def describe(self) -> str:
        return f"{self.action} {self.target} in {self.region}"


def _regions(ctx, view=None) -> list[Region]:
    found = view.all("region") if view is not None else ctx.store.list_resources("region")
    return sorted(found, key=lambda r: (not r.main, r.name))


def _image_uri(ctx, definition: Definition) -> str:
    image = ctx.store.get_resource("image", definition.image)
    if not isinstance(image, Image):
        raise HyperError(f"definition {definition.name!r}: image {definition.image!r} does not exist",
                         "add it with `hyper images add-image`")
    if image.uri:
        return image.uri
    from hyper.aws import names

    account = _account(ctx)
    return f"{account}.dkr.ecr.{ctx.host.main_region}.amazonaws.com/{names.repository(ctx.host, image.name)}:latest"


def _account(ctx) -> str:
    from hyper.aws.session import aws_errors, client

    with aws_errors(ctx.host, "sts", "get_caller_identity"):
        return client(ctx.host, "sts").get_caller_identity()["Account"]


def plan(ctx, resource: Resource, *, delete: bool = False, view=None,
         previous: Resource | None = None) -> list[Step]:
    """The steps that make AWS match `resource` (or remove it); empty on a local host.

    ``view`` (a ResourceView) lets `apply --dry-run` plan against regions it has not written yet.
    """
    if ctx.host.type != "aws":
        return []
    from hyper.aws import names, stacks, templates

    host = ctx.host
    steps: list[Step] = []
    if isinstance(resource, Region):
        network = names.stack(host, "network")
        if delete:
            steps.append(Step("delete-stack", resource.name, network,
                              run=lambda: stacks.delete_stack(host, resource.name, network)))
            return steps
        others = [r for r in _regions(ctx, view) if r.name != resource.name]
        template = templates.render_region_stack(host, resource, other_regions=others,
                                                 legacy_batch_role=_legacy_environments(ctx, resource.name, view))
        steps.append(Step("deploy-stack", resource.name, network, template,
                          lambda: stacks.deploy_stack(host, resource.name, network, template)))
        if resource.main or resource.name == host.main_region:
            main = names.stack(host, "main")
            main_template = templates.render_main_stack(host)
            steps.append(Step("deploy-stack", resource.name, main, main_template,
                              lambda: stacks.deploy_stack(host, resource.name, main, main_template)))
    elif isinstance(resource, Cluster):
        from hyper.provisioning import provisioner_for

        provisioner = provisioner_for(resource.type)
        if provisioner is not None:  # one module per cluster type (hyper/provisioning/)
            return provisioner(ctx, resource, delete=delete, previous=previous, view=view)
        if resource.type != "batch":
            return []
        name = names.stack(host, "cluster", resource.name)
        if not delete:  # a change Batch cannot make in place deploys a new compute environment (blue/green)
            resource.environment_generation, why = templates.environment_generation(
                previous if isinstance(previous, Cluster) else None, resource)
            if why:
                steps.append(Step("replace-compute-environment", ",".join(resource.regions),
                                  names.compute_environment(host, resource.name, resource.environment_generation),
                                  {"reason": why, "replaces": names.compute_environment(
                                      host, resource.name, previous.environment_generation)}, done=True))
        if isinstance(previous, Cluster) and previous.type == "batch" and not delete:
            for region in sorted(set(previous.regions) - set(resource.regions)):  # dropped: remove its share
                steps.append(Step("delete-stack", region, name,
                                  run=lambda region=region: stacks.delete_stack(host, region, name)))
        for region in resource.regions:
            if delete:
                steps.append(Step("delete-stack", region, name,
                                  run=lambda region=region: stacks.delete_stack(host, region, name)))
                continue
            template = templates.render_cluster_stack(host, resource, region)

            def run(region=region, template=template):
                stacks.check_cluster_region(host, resource, region)
                stacks.ensure_batch_service_linked_role(host)
                return stacks.deploy_stack(host, region, name, template)

            steps.append(Step("deploy-stack", region, name, template, run))
    elif isinstance(resource, Definition):
        target = names.job_definition(host, resource.name)
        image_uri = functools.cache(lambda: _image_uri(ctx, resource))  # one lookup for every region's step
        for region in (r.name for r in _regions(ctx, view)):
            if delete:
                steps.append(Step("deregister-definition", region, target,
                                  run=lambda region=region: stacks.deregister_job_definitions(host, region,
                                                                                              resource.name)))
                continue
            steps.append(Step("register-definition", region, target,
                              {"image": resource.image, "vcpus": resource.vcpus, "memory_mib": resource.memory_mib,
                               "gpus": resource.gpus},
                              lambda region=region: stacks.register_job_definition(host, region, resource,
                                                                                   image_uri())))
    elif isinstance(resource, Image) and resource.path and delete:
        repo = names.repository(host, resource.name)  # ours: built here; an adopted --uri is never touched
        steps.append(Step("delete-repository", host.main_region, repo, run=lambda: _delete_repository(ctx, repo)))
    elif isinstance(resource, Image) and resource.path and not delete:
        repo = names.repository(host, resource.name)
        regions = [r.name for r in _regions(ctx, view)]
        steps.append(Step("repository", host.main_region, repo, {"replicate_to": regions[1:],
                                                                  "build": resource.path},
                          lambda: _build_and_push(ctx, resource, repo, regions)))
    return steps


def _legacy_environments(ctx, region: str, view=None) -> bool:
    """Whether a batch cluster in ``region`` still has a compute environment made with the custom Batch
    service role (generation 0): the region's network stack must keep exporting that role until it is replaced."""
    clusters = view.all("cluster") if view is not None else ctx.store.list_resources("cluster")
    return any(c.type == "batch" and c.environment_generation == 0 and region in c.regions for c in clusters)


def _delete_repository(ctx, repo: str) -> None:
    """The image's ECR repository and its images (replicas in other regions follow ECR's replication rules)."""
    from hyper.aws.session import aws_errors, client

    with aws_errors(ctx.host, "ecr", f"delete repository {repo}"):
        ecr = client(ctx.host, "ecr")
        try:
            ecr.delete_repository(repositoryName=repo, force=True)
        except ecr.exceptions.RepositoryNotFoundException:
            pass


def _build_and_push(ctx, image: Image, repo: str, regions: list[str]) -> None:
    """ECR repository (replicated to every region), then `docker build` and `docker push`."""
    import os

    docker = shutil.which(os.environ.get("HYPER_DOCKER", "docker") or "docker-not-configured")
    if docker is None:
        raise HyperError(f"image {image.name!r}: building {image.path} needs the Docker CLI, which is not installed",
                         "install Docker, or build elsewhere and give the result with --uri")
    from hyper.aws.session import aws_errors, client

    host = ctx.host
    with aws_errors(host, "ecr", f"create repository {repo}"):
        ecr = client(host, "ecr")
        try:
            ecr.create_repository(repositoryName=repo, imageScanningConfiguration={"scanOnPush": True},
                                  tags=[{"Key": "hyper:host", "Value": host.name}])
        except ecr.exceptions.RepositoryAlreadyExistsException:
            pass
        if len(regions) > 1:
            account = _account(ctx)
            ecr.put_replication_configuration(replicationConfiguration={"rules": [{
                "destinations": [{"region": r, "registryId": account} for r in regions[1:]],
                "repositoryFilters": [{"filter": repo, "filterType": "PREFIX_MATCH"}]}]})
        token = ecr.get_authorization_token()["authorizationData"][0]
    uri = _image_uri(ctx, Definition(name="-", image=image.name))
    registry = token["proxyEndpoint"].removeprefix("https://")
    import base64

    user, _, password = base64.b64decode(token["authorizationToken"]).decode().partition(":")
    for argv, stdin in ((["login", "--username", user, "--password-stdin", registry], password),
                        (["build", "-t", uri, image.path], None), (["push", uri], None)):
        proc = subprocess.run([docker, *argv], input=stdin, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise HyperError(f"image {image.name!r}: docker {argv[0]} failed: {last[0]}",
                             "fix the Dockerfile or the registry access and run `hyper images add-image` again")


def deploy(ctx, resource: Resource, steps: list[Step]) -> tuple[str, str]:
    """Run the steps; the (status, message) the resource should show. Stops at the first failure."""
    for step in steps:
        try:
            result = step.run() if step.run else None
        except HyperError as exc:
            busy = _still_going(ctx, step)
            if busy is not None:  # we stopped waiting (timeout), CloudFormation did not: list-* will catch up
                return busy.resource_status, f"{step.describe()}: {busy.status} (still going)"
            return "FAILED", f"{step.describe()}: {exc.message}" + (f" ({exc.hint})" if exc.hint else "")
        failed = getattr(result, "failed", False)
        if failed:
            return "FAILED", f"{step.describe()}: {result.message}"
        step.done = True
        if getattr(result, "in_progress", False):
            return result.resource_status, f"{step.describe()}: {result.status}"
    return "ACTIVE", ""


def _still_going(ctx, step: Step):
    """The stack of a step that raised, if it is still in progress (our wait timed out); else None."""
    if step.action not in ("deploy-stack", "delete-stack"):
        return None
    from hyper.aws import stacks

    try:
        result = stacks.stack_status(ctx.host, step.region, step.target)
    except HyperError:
        return None
    return result if result.in_progress else None


def refresh(ctx, resource: Resource) -> Resource:
    """For list-*: a resource still CREATING/UPDATING/DELETING takes its stacks' current state."""
    if ctx.host.type != "aws" or resource.status not in ("CREATING", "UPDATING", "DELETING"):
        return resource
    from hyper.aws import names, stacks

    targets: list[tuple[str, str]] = []
    if isinstance(resource, Region):
        targets.append((resource.name, names.stack(ctx.host, "network")))
    elif isinstance(resource, Cluster):
        from hyper.provisioning import provisioner

        module = provisioner(resource.type)
        name = module.stack_name(ctx.host, resource) if module else names.stack(ctx.host, "cluster", resource.name)
        targets += [(r, name) for r in resource.regions]
    if not targets:
        return resource
    results = [stacks.stack_status(ctx.host, region, name) for region, name in targets]
    failed = [r for r in results if r.failed]
    busy = [r for r in results if r.in_progress]
    if failed:
        resource.status, resource.message = "FAILED", "; ".join(f"{r.name} in {r.region}: {r.message}" for r in failed)
    elif busy:
        resource.message = "; ".join(f"{r.name} in {r.region}: {r.status}" for r in busy)
    elif resource.status == "DELETING" and all(not r.exists for r in results):
        ctx.store.delete_resource(resource.KIND, resource.name)
        resource.status, resource.message = "DELETED", ""
        return resource
    else:
        resource.status, resource.message = "ACTIVE", ""
    ctx.store.put_resource(resource, replace=True)
    return resource
