"""Admin-managed resources (regions, clusters, queues, images, job definitions): fields, parsing, integrity.

One table of fields per kind drives everything: the `hyper <kind>s add-…` options, the guided prompts, YAML
`apply`/`export` and `list-*` output. Values arrive as strings (command line, prompts) or YAML scalars; both
go through the same parsers, so `--memory 4GiB` and `memory: 4GiB` mean the same. Every check runs before
anything is written.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable

from hyper.backends import CLUSTER_TYPES, check_cluster, cluster_type, default_type, types_for
from hyper.errors import HyperError, UsageError
from hyper.models import RESOURCE_KINDS, Cluster, Definition, Image, Queue, Region, Resource
from hyper.parsing.durations import format_duration, format_memory, parse_duration, parse_memory
from hyper.states import JobState

KIND_ORDER = ("region", "cluster", "image", "queue", "definition")  # apply order: referents first
PLURAL = {"region": "regions", "cluster": "clusters", "image": "images", "queue": "queues",
          "definition": "definitions"}
SINGULAR = {v: k for k, v in PLURAL.items()}
ALLOCATION_STRATEGIES = ("BEST_FIT", "BEST_FIT_PROGRESSIVE", "SPOT_CAPACITY_OPTIMIZED",
                         "SPOT_PRICE_CAPACITY_OPTIMIZED")
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")
_WHOLE = re.compile(r"-?[0-9]{1,12}", re.ASCII)  # 12 digits: far above any real count, inside every store
_REGION = re.compile(r"^(us|eu|ap|sa|ca|me|af|il|mx|cn|us-gov)-[a-z]+-\d$")


# ---------------------------------------------------------------- value parsers (string or YAML value)


def _int(low: int = 0, high: int | None = None) -> Callable[[Any, str], int]:
    def parse(value: Any, key: str) -> int:
        text = str(value).strip()
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not _WHOLE.fullmatch(text):
            raise UsageError(f"{key} must be a whole number, not {value!r}", f"e.g. {key}: {max(low, 1)}")
        number = int(text)
        if number < low or (high is not None and number > high):
            raise UsageError(f"{key} {number} is out of range",
                             f"give {low}..{high}" if high is not None else f"give {low} or more")
        return number

    return parse


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "yes", "y", "1", "on"):
        return True
    if text in ("false", "no", "n", "0", "off"):
        return False
    raise UsageError(f"{key} must be true or false, not {value!r}", f"e.g. {key}: true")


def _str(value: Any, key: str) -> str:
    if isinstance(value, (dict, list)):
        raise UsageError(f"{key} must be text, not a {type(value).__name__}", f"e.g. {key}: value")
    return "" if value is None else str(value)


def _list(value: Any, key: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    if isinstance(value, list) and all(isinstance(x, (str, int)) for x in value):
        return [str(x) for x in value]
    raise UsageError(f"{key} must be a list of names", f"e.g. --{key} a,b or {key}: [a, b]")


def _usd(value: Any, key: str) -> float:
    """A non-negative amount of US dollars (0: no limit)."""
    try:
        number = float(str(value).strip().lstrip("$")) if not isinstance(value, bool) else -1.0
    except ValueError:
        number = -1.0
    if not (0 <= number < 1e9):
        raise UsageError(f"{key} must be US dollars per hour (0 or more), not {value!r}", f"e.g. --{key} 25")
    return number


def _k8s_name(value: Any, key: str) -> str:
    """A Kubernetes / EKS name: lower-case letters, digits and '-', starting and ending alphanumeric."""
    text = _str(value, key).strip()
    if text and not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", text) and key == "namespace":
        raise UsageError(f"{key} {text!r} is not a Kubernetes name", "lower-case letters, digits and '-', e.g. hyper")
    if text and key == "eks-cluster" and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}", text):
        raise UsageError(f"{key} {text!r} is not an EKS cluster name", "letters, digits, '-' and '_', e.g. gpu")
    return text


def _mapping(value: Any, key: str) -> dict[str, str]:
    """`a=1,b=2` or a YAML mapping."""
    if value is None or value == "":
        return {}
    if isinstance(value, dict):
        nested = [k for k, v in value.items() if isinstance(v, (dict, list))]
        if nested:
            raise UsageError(f"{key} {nested[0]!r} must be a plain value, not a {type(value[nested[0]]).__name__}",
                             f"e.g. {key}: {{{nested[0]}: \"1\"}}")
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    if isinstance(value, str):
        out = {}
        for item in filter(None, (x.strip() for x in value.split(","))):
            k, eq, v = item.partition("=")
            if not eq or not k.strip():
                raise UsageError(f"{key} item {item!r} is not NAME=VALUE", f"e.g. --{key} A=1,B=2")
            out[k.strip()] = v.strip()
        return out
    raise UsageError(f"{key} must be a mapping", f"e.g. --{key} A=1,B=2")


_ROLE_ARN = re.compile(r"arn:aws[\w-]*:iam::\d{12}:role/[\w+=,.@/-]+")
_SECRET_ARN = re.compile(r"arn:aws[\w-]*:(secretsmanager:[\w-]+:\d{12}:secret:[\w/+=.@-]+"
                         r"|ssm:[\w-]+:\d{12}:parameter/[\w/.-]+)")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _job_role(value: Any, key: str) -> str:
    text = _str(value, key).strip()
    if text and not _ROLE_ARN.fullmatch(text):
        raise UsageError(f"{key} {text!r} is not an IAM role ARN",
                         "e.g. --job-role arn:aws:iam::123456789012:role/hyper-prod-job-train, or '' for none")
    return text


def _secrets(value: Any, key: str) -> dict[str, str]:
    """NAME=ARN of a Secrets Manager secret or an SSM parameter: the job gets the value as $NAME."""
    out = _mapping(value, key)
    for name, arn in out.items():
        if not _ENV_NAME.fullmatch(name):
            raise UsageError(f"{key} name {name!r} is not an environment variable name", "e.g. --secret DB_PASS=ARN")
        if not _SECRET_ARN.fullmatch(arn):
            raise UsageError(f"{key} {name}: {arn!r} is not a Secrets Manager secret or SSM parameter ARN",
                             f"e.g. --secret {name}=arn:aws:secretsmanager:us-east-1:123456789012:secret:NAME")
    return out


def _environment(value: Any, key: str) -> dict[str, str]:
    """A definition's plain environment: stored in the store and in the Batch job definition as text, so
    nothing named like a credential (hyper/services/environment.py's deny list)."""
    from hyper.services.environment import DENY_PATTERNS, denied

    out = _mapping(value, key)
    for name in out:
        if denied(name, DENY_PATTERNS):
            raise UsageError(f"{key} {name} looks like a credential: it would be stored as plain text",
                             f"keep it in Secrets Manager or SSM and pass --secret {name}=ARN")
    return out


def _weights(value: Any, key: str) -> dict[str, int] | str:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    raw = _mapping(value, key)
    return {region: _int(0)(weight, f"{key} of {region}") for region, weight in raw.items()}


def _memory(value: Any, key: str) -> int:
    return parse_memory(str(value), "m") if not isinstance(value, int) else _int(1)(value, key)


def _duration(value: Any, key: str) -> int | None:
    if value in (None, "", "none", 0, "0"):
        return None
    return parse_duration(str(value), "s", what=key)


def _choice(choices: tuple[str, ...], upper: bool = False) -> Callable[[Any, str], str]:
    def parse(value: Any, key: str) -> str:
        text = _str(value, key).strip()
        text = text.upper() if upper else text.lower()
        if text and text not in choices:
            raise UsageError(f"{key} {value!r} is not one of {', '.join(choices)}", f"e.g. {key}: {choices[0]}")
        return text

    return parse


def _show_weights(value: Any) -> Any:
    return value if isinstance(value, str) else dict(value)


@dataclass(frozen=True)
class Field:
    key: str  # YAML key and --option name
    attr: str  # model attribute
    parse: Callable[[Any, str], Any]
    help: str
    show: Callable[[Any], Any] = lambda v: v  # model value -> YAML / table value
    prompt: bool = True  # asked for by the guided prompt


FIELDS: dict[str, tuple[Field, ...]] = {
    "region": (
        Field("vpc-cidr", "vpc_cidr", _str, "CIDR of a new VPC, e.g. 10.20.0.0/16"),
        Field("vpc-id", "vpc_id", _str, "an existing VPC to use instead of a new one", prompt=False),
        Field("subnets", "subnets", _list, "subnets of the existing VPC (comma separated)", prompt=False),
        Field("route-tables", "route_tables", _list, "the existing VPC's private route tables: with "
              "--vpc-endpoints, S3 (image layers) and DynamoDB go through gateway endpoints, not NAT", prompt=False),
        Field("vpc-endpoints", "vpc_endpoints", _bool, "create VPC endpoints for ECR and logs"),
    ),
    "cluster": (
        Field("type", "type", _choice(tuple(sorted(CLUSTER_TYPES))), ", ".join(sorted(CLUSTER_TYPES))),
        Field("regions", "regions", _list, "regions it spans (comma separated; default: all)"),
        Field("instance-types", "instance_types", _list, "instance types, e.g. g5.xlarge,g5.2xlarge"),
        Field("spot", "spot", _bool, "spot (true) or on-demand (false) capacity"),
        Field("min-vcpus", "min_vcpus", _int(0), "vCPUs kept running when idle"),
        Field("max-vcpus", "max_vcpus", _int(1), "vCPU cap per region"),
        Field("gpus-per-instance", "gpus_per_instance", _int(0), "GPUs each instance has"),
        Field("allocation-strategy", "allocation_strategy", _choice(ALLOCATION_STRATEGIES, upper=True),
              "Batch allocation strategy", prompt=False),
        Field("overrides", "overrides", lambda v, k: _overrides(v, k), "per-region overrides (YAML only)",
              show=lambda v: _show_overrides(v), prompt=False),
        Field("eks-cluster", "eks_cluster", _k8s_name, "eks: the EKS cluster's name in each region", prompt=False),
        Field("namespace", "namespace", _k8s_name, "eks: namespace for worker Jobs (default hyper)", prompt=False),
        Field("kubeconfig", "kubeconfig", _str, "eks: kubeconfig file (default $KUBECONFIG)", prompt=False),
        Field("context", "context", _str, "eks: kubeconfig context (default: current)", prompt=False),
        Field("template", "template", _str, "eks: Jinja2 Job template replacing the packaged one", prompt=False),
        Field("create-eks", "create_eks", _bool, "eks: also create the EKS cluster and a GPU node group",
              show=lambda v: v or None, prompt=False),
    ),
    "queue": (
        Field("cluster", "cluster", _str, "cluster whose compute runs the queue's jobs"),
        Field("weights", "weights", _weights, "region weights, e.g. us-east-1=3,eu-west-1=1, or auto",
              show=_show_weights),
        Field("priority", "priority", _int(-1024, 1023), "higher runs first when queues share a cluster"),
        Field("max-cost-per-hour", "max_cost_per_hour", _usd, "USD/h all its workers may cost together (0: no "
              "limit)", show=lambda v: v or None, prompt=False),
    ),
    "image": (
        Field("path", "path", _str, "directory with a Dockerfile to build"),
        Field("uri", "uri", _str, "an existing image URI to adopt instead of building"),
    ),
    "definition": (
        Field("image", "image", _str, "worker image (an image name, or `local` on a local host)"),
        Field("vcpus", "vcpus", _int(1), "vCPUs per worker"),
        Field("memory", "memory_mib", _memory, "memory per worker, e.g. 4GiB", show=format_memory),
        Field("gpus", "gpus", _int(0), "GPUs per worker"),
        Field("timeout", "timeout", _duration, "longest a job may run, e.g. 12:00:00 (none: no limit)",
              show=lambda v: format_duration(v) if v else None),
        Field("retries", "retries", _int(0, 9), "reruns after a failure (2 = at most 3 runs)"),
        Field("retry-on", "retry_on", _choice(("infra", "all")), "what --retries covers: infra (lost workers, "
              "the default) or all (non-zero exits too); a job's own -r/--retries always covers both",
              show=lambda v: v if v == "all" else None, prompt=False),
        Field("ratio", "ratio", _int(1), "jobs per worker: N queued jobs want ceil(N/ratio) workers"),
        Field("environment", "environment", _environment, "environment for every job, e.g. A=1,B=2", prompt=False),
        Field("job-role", "job_role", _job_role, "IAM role ARN each job takes on (named <prefix>job-...; "
              "default: none, never the worker's)", show=lambda v: v or None, prompt=False),
        Field("secret", "secrets", _secrets, "job secrets NAME=ARN (Secrets Manager / SSM), never plain text",
              show=lambda v: dict(v) or None, prompt=False),
    ),
}
_OVERRIDE_KEYS = {"max-vcpus": "max_vcpus", "min-vcpus": "min_vcpus", "instance-types": "instance_types"}


def _overrides(value: Any, key: str) -> dict[str, dict]:
    if value in (None, "", {}):
        return {}
    if not isinstance(value, dict):
        raise UsageError(f"{key} must map regions to settings", "e.g. overrides: {us-east-1: {max-vcpus: 64}}")
    out = {}
    for region, body in value.items():
        if not isinstance(body, dict):
            raise UsageError(f"{key} of {region} must be a mapping", "e.g. {max-vcpus: 64}")
        settings = {}
        for k, v in body.items():
            if k not in _OVERRIDE_KEYS:
                raise UsageError(f"unknown override {k!r} for {region}", f"use {', '.join(_OVERRIDE_KEYS)}")
            settings[_OVERRIDE_KEYS[k]] = _list(v, k) if k == "instance-types" else _int(0)(v, k)
        out[str(region)] = settings
    return out


def _show_overrides(value: dict[str, dict]) -> dict[str, dict]:
    keys = {attr: key for key, attr in _OVERRIDE_KEYS.items()}
    return {region: {keys.get(k, k): v for k, v in body.items()} for region, body in (value or {}).items()}


def field_map(kind: str) -> dict[str, Field]:
    return {f.key: f for f in FIELDS[kind]}


def build(kind: str, name: str, values: dict[str, Any], base: Resource | None = None) -> Resource:
    """A resource of `kind` from user values (strings or YAML scalars) over `base` (or the defaults)."""
    check_name(kind, name)
    fields = field_map(kind)
    resource = dataclasses.replace(base) if base is not None else RESOURCE_KINDS[kind](name=name)
    for key, value in values.items():
        if value is None:
            continue
        f = fields.get(key) or fields.get(key.replace("_", "-"))
        if f is None:
            raise UsageError(f"unknown {kind} field {key!r}", f"{kind} fields: {', '.join(fields)}")
        setattr(resource, f.attr, f.parse(value, f.key))
    return resource


def check_name(kind: str, name: str) -> None:
    if kind == "region":
        if not _REGION.fullmatch(name):
            raise UsageError(f"{name!r} is not an AWS region name", "e.g. us-east-1, eu-west-1, ap-southeast-2")
        return
    if not _NAME.fullmatch(name):
        raise UsageError(f"{kind} name {name!r} is not valid",
                         "start with a letter; letters, digits, - and _ only; at most 63 characters")


def to_mapping(resource: Resource, with_status: bool = False) -> dict[str, Any]:
    """The YAML/JSON form: user-facing keys and units (memory as 4GiB, timeout as HH:MM:SS)."""
    out: dict[str, Any] = {"name": resource.name}
    if isinstance(resource, Region):
        out["main"] = resource.main
    for f in FIELDS[resource.KIND]:
        value = f.show(getattr(resource, f.attr))
        if value not in (None, "", [], {}) or f.key in ("spot", "gpus", "retries", "priority"):
            out[f.key] = value
    if with_status:
        if isinstance(resource, Queue) and resource.weights == "auto" and resource.auto_weights_at:
            out["auto-weights"] = dict(resource.auto_weights)
            out["auto-weights-note"] = resource.auto_weights_note
        out["status"] = resource.status
        out["message"] = resource.message
    return out


# ---------------------------------------------------------------- integrity


def validate(resource: Resource, view: "ResourceView", host_type: str) -> None:
    """Everything a resource refers to exists; values make sense together."""
    if isinstance(resource, (Region, Image)) and host_type == "local":
        raise HyperError(f"{resource.KIND}s are for aws hosts; a local host runs jobs on this machine"
                         + ("; its definitions use --image local" if isinstance(resource, Image) else ""),
                         "create an aws host with `hyper hosts create-host NAME --type aws --main-region ...`")
    if isinstance(resource, Cluster):
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
                verb = "init-main-region" if found.main else "update-region"
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
    elif isinstance(resource, Queue):
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
    elif isinstance(resource, Image):
        if bool(resource.path) == bool(resource.uri):
            raise HyperError(f"image {resource.name!r} needs exactly one of --path (a directory to build) or "
                             "--uri (an existing image)", "e.g. --path example-worker-image")
        if resource.path:
            from pathlib import Path

            if not (Path(resource.path) / "Dockerfile").is_file():
                raise HyperError(f"image {resource.name!r}: {resource.path} holds no Dockerfile",
                                 "point --path at a directory with a Dockerfile")
    elif isinstance(resource, Definition):
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
    elif isinstance(resource, Region):
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
                if other.name != resource.name and other.vpc_cidr and \
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
    largest = "; ".join(f"{c.name}: " + (instances.largest_fit(c, (c.regions or [None])[0], reserve=reserve)
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

    def __init__(self, store):
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


def users_of(store, kind: str, name: str) -> list[str]:
    """What would be orphaned by deleting this resource: referring resources and live jobs."""
    users: list[str] = []
    if kind == "region":
        users += [f"cluster {c.name}" for c in store.list_resources("cluster") if name in c.regions]
        users += [f"queue {q.name}" for q in store.list_resources("queue")
                  if isinstance(q.weights, dict) and name in q.weights]
    elif kind == "cluster":
        users += [f"queue {q.name}" for q in store.list_resources("queue") if q.cluster == name]
    elif kind == "image":
        users += [f"definition {d.name}" for d in store.list_resources("definition") if d.image == name]
    if kind in ("queue", "definition"):
        live = {}
        for c in store.counts():
            if c.state in (JobState.HELD, JobState.QUEUED, JobState.RUNNING) and c.tasks > 0 and \
                    (c.queue if kind == "queue" else c.definition) == name:
                live[c.state.value.lower()] = live.get(c.state.value.lower(), 0) + c.tasks
        if live:
            users.append(" and ".join(f"{n} {s}" for s, n in sorted(live.items())) + " job(s)")
    return users


# ---------------------------------------------------------------- use cases


def initial_status(host_type: str) -> tuple[str, str]:
    """Local resources are live at once; on aws they wait for provisioning (CloudFormation)."""
    if host_type == "local":
        return "ACTIVE", ""
    return "PENDING", "recorded in the host's store; not yet deployed to AWS"


def check_new(ctx, kind: str, name: str) -> None:
    """The name is valid and free (also asked before a guided prompt, so nobody answers questions in vain)."""
    check_name(kind, name)
    if ctx.store.get_resource(kind, name) is not None:
        raise HyperError(f"{kind} {name!r} already exists",
                         f"change it with `hyper {PLURAL[kind]} update-{kind} {name}` or pick another name")


def add(ctx, kind: str, name: str, values: dict[str, Any], *, dry_run: bool = False) -> Resource:
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


def validate_dependents(resource: Resource, view: "ResourceView", host_type: str) -> None:
    """A changed cluster or region must not break the queues and clusters that refer to it."""
    dependents: list[Resource] = []
    if isinstance(resource, Cluster):
        check_cluster_keeps_definitions(resource, view.store.get_resource("cluster", resource.name),
                                        view.all("definition"))
        dependents = [q for q in view.all("queue") if q.cluster == resource.name]
    elif isinstance(resource, Region):
        dependents = [c for c in view.all("cluster") if resource.name in c.regions]
    for other in dependents:
        try:
            validate(other, view, host_type)
        except HyperError as exc:
            raise HyperError(f"that change would break {other.KIND} {other.name!r}: {exc.message}",
                             f"change {other.KIND} {other.name!r} first"
                             + (f" (`hyper {PLURAL[other.KIND]} update-{other.KIND} {other.name} ...`)")) from None


def save(ctx, resource: Resource, busy: str, *, dry_run: bool = False, previous: Resource | None = None,
         steps: list | None = None) -> Resource:
    """Record the resource, then make AWS match it (stacks, job definitions); status says how that went.

    The steps are rendered before anything is written, so a template that cannot be rendered (bad input)
    leaves the store untouched. With ``dry_run`` nothing is written or sent: ``resource.steps`` says what would be.
    """
    from hyper.services import provision

    if steps is None:  # `apply` hands over the steps it already rendered
        steps = provision.plan(ctx, resource, previous=previous)
    resource.steps = steps  # type: ignore[attr-defined]
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


def default_max_vcpus(regional: bool) -> int:
    """A local cluster is this machine's cores; a regional one starts at 256 vCPUs per region."""
    import os

    return 256 if regional else (os.cpu_count() or 1)


def _defaults(ctx, resource: Resource, view: "ResourceView | None" = None) -> None:
    """Fill what was left out; `view` lets `apply` see regions it is about to create."""
    if isinstance(resource, Cluster):
        if not resource.type:
            resource.type = default_type(ctx.host.type)
        regional = cluster_type(resource.type).regional
        if regional and not resource.regions:
            resource.regions = (view or ResourceView(ctx.store)).names("region")
        if not resource.max_vcpus:
            resource.max_vcpus = default_max_vcpus(regional)


def update(ctx, kind: str, name: str, values: dict[str, Any], *, dry_run: bool = False) -> Resource:
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


def delete(ctx, kind: str, name: str, force: bool = False, *, dry_run: bool = False) -> list[str]:
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


def init_main_region(ctx, name: str, values: dict[str, Any], *, dry_run: bool = False) -> Region:
    """The host's main region (its tables, dispatch queues and logs live there); exactly one."""
    store = ctx.store
    mains = [r for r in store.list_resources("region") if r.main]
    if mains and mains[0].name != name:
        raise HyperError(f"the main region is already {mains[0].name}", "a host has one main region; "
                         "add others with `hyper regions add-region`")
    if ctx.host.type == "aws" and ctx.host.main_region and ctx.host.main_region != name:
        raise HyperError(f"host {ctx.host.name!r} keeps its tables in {ctx.host.main_region}, not {name}",
                         f"run `hyper regions init-main-region {ctx.host.main_region}`")
    existing = store.get_resource("region", name)
    region = build("region", name, values, base=existing)
    region.main = True
    if existing is None:
        region.status, region.message = initial_status(ctx.host.type)
    validate(region, ResourceView(store), ctx.host.type)
    return save(ctx, region, "CREATING" if existing is None else "UPDATING", dry_run=dry_run)


def list_all(ctx, kind: str, *, refresh: bool = False) -> list[Resource]:
    """Every resource of a kind; with ``refresh``, ones still deploying take their stacks' current state."""
    found = sorted(ctx.store.list_resources(kind), key=lambda r: r.name)
    if refresh and ctx.host.type == "aws":
        from hyper.services import provision

        found = [r for r in (provision.refresh(ctx, r) for r in found) if r.status != "DELETED"]
    return found


def prompt_defaults(ctx, kind: str) -> dict[str, Any]:
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
        taken = [r.vpc_cidr for r in store.list_resources("region") if r.vpc_cidr]
        out["vpc-cidr"] = next(f"10.{n}.0.0/16" for n in range(10, 250, 10) if f"10.{n}.0.0/16" not in taken)
    return out
