"""What a resource is in AWS, and making it so: CloudFormation stacks, job definitions, ECR repositories.

``plan(ctx, resource)`` is pure apart from reading the store: a list of steps, each with the exact template
or request it would send, so ``--dry-run`` prints precisely what ``deploy`` would do. ``deploy`` runs the
steps and returns the status and message the resource should show (ACTIVE, or FAILED with CloudFormation's
reasons and the way out). Local hosts have nothing to deploy: their resources are live once recorded.

  region R            network stack `<prefix>network` in R (+ `<prefix>main` log group stack if R is main); a
                      hub region also gets the images built before it (ECR rule + push again) and every
                      definition registered there
  cluster C (batch)   stack `<prefix>cluster-C` in every region C spans (after its instance types are checked;
                      a change Batch cannot make in place deploys a new compute environment generation)
  cluster C (eks)     stack `<prefix>eks-C` (worker role, Pod Identity; --create-eks: EKS + node group) and the
                      namespace + service account, in every region C spans (hyper/provisioning/eks.py)
  queue Q             nothing of its own: it runs on its cluster's Batch job queue
  image I             an ECR repository (immutable tags; the host's KMS key if set) under the host's one
                      replication rule, merged into the account's registry configuration (hyper/aws/ecr.py),
                      built and pushed with docker under its build context's content tag; or its URI
  definition D        a Batch job definition in every region, registered by content hash, naming the region's
                      own replica pinned by digest (a hub region waits for it: ImageRefs)
"""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Image, Region, Resource

if TYPE_CHECKING:
    from hyper.aws.stacks import StackResult
    from hyper.config import Host
    from hyper.services.context import Context
    from hyper.services.resource_checks import ResourceView


@dataclass
class Step:
    action: str  # deploy-stack | delete-stack | register-definition | deregister-definition | repository |
    #             update-replication | replicate-images | replace-compute-environment (shown, nothing to run)
    region: str
    target: str  # stack, job definition or repository name
    body: dict[str, Any] = field(default_factory=dict)  # the template or request, for --dry-run
    run: Callable[[], Any] | None = None
    done: bool = False  # set once it ran without failing

    def describe(self) -> str:
        return f"{self.action} {self.target} in {self.region}"


def _regions(ctx: Context, view: ResourceView | None = None) -> list[Region]:
    found = view.all("region") if view is not None else ctx.store.list_resources("region")
    return sorted((r for r in found if isinstance(r, Region)), key=lambda r: (not r.main, r.name))


class ImageRefs:
    """The image a definition's workers pull in each region (looked up when a step runs, once per plan).

    An adopted image (``--uri``) is that URI everywhere, as given: hyper cannot replicate a registry it does
    not own, so its owner makes it pullable from every region (a public or cross-region-readable registry,
    or one URI per region through separate definitions). An image hyper built is its replica in the region's
    own registry, pinned by the digest its build recorded (``ecr.built_digest``); a hub region waits (bounded)
    until ECR says that replica is COMPLETE. ``image`` is the record being deployed in the same plan (its
    build sets the digest when the step runs), else the image is read from the store when needed.
    """

    def __init__(self, ctx: Context, definition: Definition, view: ResourceView | None = None, *,
                 wait: float | None = None, image: Image | None = None) -> None:
        self.ctx, self.definition, self.view = ctx, definition, view
        self.wait = wait
        self._image = image
        self._digest: str | None = None
        self._account: str | None = None

    def image(self) -> Image:
        if self._image is not None:
            return self._image
        found = (self.view.get("image", self.definition.image) if self.view is not None
                 else self.ctx.store.get_resource("image", self.definition.image))
        if not isinstance(found, Image):
            raise HyperError(f"definition {self.definition.name!r}: image {self.definition.image!r} does not exist",
                             "add it with `hyper images add-image`")
        return found

    def uri(self, region: str) -> str:
        image = self.image()
        if image.uri:
            return image.uri
        from hyper.aws import ecr as registry
        from hyper.aws import names
        from hyper.aws.session import aws_errors, client

        host = self.ctx.host
        repo = names.repository(host, image.name)
        account = self._account = self._account or _account(self.ctx)
        with aws_errors(host, "ecr", f"find the image of {repo}"):
            main = client(host, "ecr")
            if self._digest is None:
                self._digest = registry.built_digest(main, repo, image)
            if region != host.main_region:
                wait = self.wait if self.wait is not None else _replication_wait()
                registry.wait_for_replica(main, repo, self._digest, region, account, timeout=wait)
        return registry.replica_uri(account, region, repo, self._digest)


def _replication_wait() -> float:
    """Seconds a hub registration waits for its replica (HYPER_REPLICATION_WAIT; ECR's usual is minutes)."""
    import os

    from hyper.aws.ecr import REPLICATION_WAIT

    try:
        return max(0.0, float(os.environ.get("HYPER_REPLICATION_WAIT", REPLICATION_WAIT)))
    except ValueError:
        return REPLICATION_WAIT


def _built_images(ctx: Context, view: ResourceView | None = None) -> list[Image]:
    found = view.all("image") if view is not None else ctx.store.list_resources("image")
    return [i for i in found if isinstance(i, Image) and i.path]


def _sync_replication(ctx: Context, regions: list[str]) -> None:
    """The host's ECR replication rule names exactly ``regions`` (none: the rule goes), others' rules kept."""
    from hyper.aws import ecr as registry
    from hyper.aws import names
    from hyper.aws.session import aws_errors, client

    host = ctx.host
    with aws_errors(host, "ecr", "update the registry's replication rules"):
        registry.sync_replication(client(host, "ecr"), names.prefix(host), _account(ctx),
                                  [r for r in regions if r != host.main_region])


def _replicate_images(ctx: Context, images: list[Image], regions: list[str]) -> None:
    """Images built before a region existed: the rule gains it, and each is pushed again so ECR copies it."""
    from hyper.aws import ecr as registry
    from hyper.aws import names
    from hyper.aws.session import aws_errors, client

    _sync_replication(ctx, regions)
    with aws_errors(ctx.host, "ecr", "push existing images again for replication"):
        ecr = client(ctx.host, "ecr")
        for image in images:
            repo = names.repository(ctx.host, image.name)
            digest = image.digest or registry.find_digest(ecr, repo, image.tag or registry.LEGACY_TAG)
            if digest and registry.make_immutable(ecr, repo):  # a build that failed: nothing to replicate
                registry.replicate_existing(ecr, repo, digest)


def _account(ctx: Context) -> str:
    from hyper.aws.session import aws_errors, client

    with aws_errors(ctx.host, "sts", "get_caller_identity"):
        account: str = client(ctx.host, "sts").get_caller_identity()["Account"]
        return account


def plan(ctx: Context, resource: Resource, *, delete: bool = False, view: ResourceView | None = None,
         previous: Resource | None = None) -> list[Step]:
    """The steps that make AWS match `resource` (or remove it); empty on a local host.

    ``view`` (a ResourceView) lets `apply --dry-run` plan against regions it has not written yet.
    """
    if ctx.host.type != "aws":
        return []
    from hyper.aws import names, stacks

    host = ctx.host
    steps: list[Step] = []
    if not delete and isinstance(resource, (Region, Image)):
        from hyper.aws import kms

        kms.resolve(host)  # the log group and repositories use the host's key: it must exist and be enabled
    if isinstance(resource, Region):
        steps += _plan_region(ctx, resource, delete, view)
    elif isinstance(resource, Cluster):
        from hyper.provisioning import provisioner_for

        provisioner = provisioner_for(resource.type)  # one module per cluster type (hyper/provisioning/)
        planned: list[Step] = (provisioner(ctx, resource, delete=delete, previous=previous, view=view)
                               if provisioner else [])
        return planned
    elif isinstance(resource, Definition):
        target = names.job_definition(host, resource.name)
        refs = ImageRefs(ctx, resource, view)  # one digest lookup for every region's step
        for region in (r.name for r in _regions(ctx, view)):
            if delete:
                steps.append(Step("deregister-definition", region, target,
                                  run=functools.partial(stacks.deregister_job_definitions, host, region,
                                                        resource.name)))
                continue
            steps.append(_register_step(host, resource, region, refs))
    elif isinstance(resource, Image) and resource.path:
        steps += _plan_built_image(ctx, resource, delete, view)
    return steps


def _plan_region(ctx: Context, resource: Region, delete: bool, view: ResourceView | None) -> list[Step]:
    """A region's steps: its network stack (and the main stack in the main region, or the images and
    definitions a hub region needs), or on delete the stack and its place in the replication rule. Apart
    from plan so each kind's steps read on their own."""
    from hyper.aws import names, stacks, templates

    host = ctx.host
    steps: list[Step] = []
    network = names.stack(host, "network")
    built = _built_images(ctx, view)
    if delete:
        steps.append(Step("delete-stack", resource.name, network,
                          run=lambda: stacks.delete_stack(host, resource.name, network)))
        if built:  # hyper's replication rule stops naming the region (others' rules untouched)
            rest = [r.name for r in _regions(ctx, view) if r.name != resource.name]
            steps.append(Step("update-replication", _home(host), names.prefix(host).lower() + "*",
                              {"replicate_to": [r for r in rest if r != host.main_region]},
                              lambda: _sync_replication(ctx, rest)))
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
    else:
        steps += _new_region_images(ctx, resource, built, view)
    return steps


def _plan_built_image(ctx: Context, resource: Image, delete: bool, view: ResourceView | None) -> list[Step]:
    """An image hyper builds (``path``): its repository, build and push, and the definitions that pin it
    registered again; on delete the repository, and the replication rule with the last one. An adopted
    ``--uri`` has no steps: hyper never touches a registry it does not own."""
    from hyper.aws import names

    host = ctx.host
    steps: list[Step] = []
    repo = names.repository(host, resource.name)  # ours: built here
    if delete:
        steps.append(Step("delete-repository", _home(host), repo, run=lambda: _delete_repository(ctx, repo)))
        if not [i for i in _built_images(ctx, view) if i.name != resource.name]:  # the last one: rule goes
            steps.append(Step("update-replication", _home(host), names.prefix(host).lower() + "*",
                              {"replicate_to": []}, lambda: _sync_replication(ctx, [])))
        return steps
    regions = [r.name for r in _regions(ctx, view)]
    steps.append(Step("repository", _home(host), repo, {"replicate_to": regions[1:],
                                                              "build": resource.path},
                      lambda: _build_and_push(ctx, resource, repo, regions)))
    # definitions pin a digest: a new push is picked up by registering them again (each region's replica)
    definitions = view.all("definition") if view is not None else ctx.store.list_resources("definition")
    for definition in sorted(definitions, key=lambda d: d.name):
        if isinstance(definition, Definition) and definition.image == resource.name:
            refs = ImageRefs(ctx, definition, view, image=resource)  # the digest this build records
            steps += [_register_step(host, definition, region, refs) for region in regions]
    return steps


def _home(host: Host) -> str:
    """The region of the host's registry and replication rule (its main region, which every aws host names
    in hosts.yaml): the region the registry's steps show."""
    return host.main_region or ""


def _register_step(host: Host, definition: Definition, region: str, refs: ImageRefs) -> Step:
    from hyper.aws import names, stacks

    return Step("register-definition", region, names.job_definition(host, definition.name),
                {"image": definition.image, "vcpus": definition.vcpus, "memory_mib": definition.memory_mib,
                 "gpus": definition.gpus},
                lambda: stacks.register_job_definition(host, region, definition, refs.uri(region)))


def _new_region_images(ctx: Context, region: Region, built: list[Image],
                       view: ResourceView | None = None) -> list[Step]:
    """A hub region gets the images built before it (replicated) and every definition (registered there with
    its own replica), so the scheduler can start workers in it at once."""
    from hyper.aws import names

    host = ctx.host
    steps: list[Step] = []
    regions = sorted({r.name for r in _regions(ctx, view)} | {region.name})
    if built:
        steps.append(Step("replicate-images", _home(host), names.prefix(host).lower() + "*",
                          {"replicate_to": [r for r in regions if r != host.main_region],
                           "images": [i.name for i in built]},
                          lambda: _replicate_images(ctx, built, regions)))
    # definitions already recorded whose image is there (built or adopted); ones `apply` is about to create
    # register themselves after their image, and one whose image failed to build can run nowhere yet
    usable = {i.name for i in ctx.store.list_resources("image") if isinstance(i, Image) and i.status == "ACTIVE"}
    for definition in sorted(ctx.store.list_resources("definition"), key=lambda d: d.name):
        if isinstance(definition, Definition) and definition.image in usable:
            steps.append(_register_step(host, definition, region.name, ImageRefs(ctx, definition)))
    return steps


def _legacy_environments(ctx: Context, region: str, view: ResourceView | None = None) -> bool:
    """Whether a batch cluster in ``region`` still has a compute environment made with the custom Batch
    service role (generation 0): the region's network stack must keep exporting that role until it is replaced."""
    clusters = view.all("cluster") if view is not None else ctx.store.list_resources("cluster")
    return any(isinstance(c, Cluster) and c.type == "batch" and c.environment_generation == 0
               and region in c.regions for c in clusters)


def _delete_repository(ctx: Context, repo: str) -> None:
    """The image's ECR repository and its images (replicas in other regions follow ECR's replication rules)."""
    from hyper.aws.session import aws_errors, client

    with aws_errors(ctx.host, "ecr", f"delete repository {repo}"):
        ecr = client(ctx.host, "ecr")
        try:
            ecr.delete_repository(repositoryName=repo, force=True)
        except ecr.exceptions.RepositoryNotFoundException:
            pass


def _build_and_push(ctx: Context, image: Image, repo: str, regions: list[str]) -> None:
    """ECR repository (immutable tags, the host's KMS key, replicated to every region), then `docker build`
    and `docker push` under the build context's content tag, unless that tag is already there (the same
    directory was built before: an immutable tag cannot be pushed twice, and needs no second push). Records
    the tag and its digest on ``image``: every region's job definition pins that digest."""
    import os

    from hyper.aws import ecr as registry
    from hyper.aws import kms
    from hyper.aws.session import aws_errors, client

    host = ctx.host
    tag = registry.context_tag(image.path)
    with aws_errors(host, "ecr", f"find {repo}:{tag}"):
        digest = registry.find_digest(client(host, "ecr"), repo, tag)
    docker = shutil.which(os.environ.get("HYPER_DOCKER", "docker") or "docker-not-configured")
    if docker is None and digest is None:
        raise HyperError(f"image {image.name!r}: building {image.path} needs the Docker CLI, which is not installed",
                         "install Docker, or build elsewhere and give the result with --uri")
    key = kms.resolve(host)
    with aws_errors(host, "ecr", f"create repository {repo}"):
        ecr = client(host, "ecr")
        registry.ensure_repository(ecr, repo, host_name=host.name, kms_key_arn=key)
    _sync_replication(ctx, regions)  # before the push: ECR replicates only what is pushed after its rule
    if digest is None:
        assert docker is not None  # refused above, before anything was created, when it is missing
        with aws_errors(host, "ecr", "get_authorization_token"):
            token = ecr.get_authorization_token()["authorizationData"][0]
        _docker_push(docker, image, token, f"{_account(ctx)}.dkr.ecr.{host.main_region}.amazonaws.com/{repo}:{tag}")
        with aws_errors(host, "ecr", f"find {repo}:{tag}"):
            digest = registry.image_digest(ecr, repo, tag)
    image.tag, image.digest = tag, digest


def _docker_push(docker: str, image: Image, token: dict, uri: str) -> None:
    """docker login (password on stdin), build -t URI, push URI; the first failure is one line."""
    import base64

    registry = token["proxyEndpoint"].removeprefix("https://")
    user, _, password = base64.b64decode(token["authorizationToken"]).decode().partition(":")
    for argv, stdin in ((["login", "--username", user, "--password-stdin", registry], password),
                        (["build", "-t", uri, image.path], None), (["push", uri], None)):
        proc = subprocess.run([docker, *argv], input=stdin, capture_output=True, text=True)
        if proc.returncode != 0:
            last = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
            raise HyperError(f"image {image.name!r}: docker {argv[0]} failed: {last[0]}",
                             "fix the Dockerfile or the registry access and run `hyper images add-image` again")


def deploy(ctx: Context, resource: Resource, steps: list[Step]) -> tuple[str, str]:
    """Run the steps; the (status, message) the resource should show. Stops at the first failure."""
    for step in steps:
        if step.run is None:  # shown in the plan, nothing to run
            step.done = True
            continue
        try:
            result = step.run()
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


def _still_going(ctx: Context, step: Step) -> StackResult | None:
    """The stack of a step that raised, if it is still in progress (our wait timed out); else None."""
    if step.action not in ("deploy-stack", "delete-stack"):
        return None
    from hyper.aws import stacks

    try:
        result = stacks.stack_status(ctx.host, step.region, step.target)
    except HyperError:
        return None
    return result if result.in_progress else None


def refresh(ctx: Context, resource: Resource) -> Resource:
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
        if module is not None:
            targets += [(r, module.stack_name(ctx.host, resource)) for r in resource.regions]
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
