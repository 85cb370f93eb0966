"""Admin-managed resources (regions, clusters, queues, images, job definitions): fields, parsing, integrity.

One table of fields per kind drives everything: the `hyper <kind>s add-…` options, the guided prompts, YAML
`apply`/`export` and `list-*` output. Values arrive as strings (command line, prompts) or YAML scalars; both
go through the same parsers, so `--memory 4GiB` and `memory: 4GiB` mean the same. Every check runs before
anything is written.

This module holds the fields and their parsers; integrity checks are in hyper/services/resource_checks.py
and the use cases (add, update, delete, apply's save) in hyper/services/resources.py.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Callable

from hyper.backends import CLUSTER_TYPES
from hyper.errors import UsageError
from hyper.models import RESOURCE_KINDS, Queue, Region, Resource
from hyper.parsing.durations import format_duration, format_memory, parse_duration, parse_memory

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
