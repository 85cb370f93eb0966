"""Names of everything hyper creates in AWS, from one place (pure).

Every name starts with the host's prefix (its table prefix, default ``hyper-<host>-``), so two hosts in one
account and region never collide (the seed named resources after queues and two deployments clashed).
Provisioning creates resources under these names; the scheduler and workers find them by the same names.
"""

from __future__ import annotations

from hyper.config import Host


def prefix(host: Host) -> str:
    """Every AWS name of the host starts with this (its tables' prefix)."""
    return host.table_prefix if host.table_prefix is not None else f"hyper-{host.name}-"


def table_names(host: Host) -> dict[str, str]:
    p = prefix(host)
    return {"jobs": f"{p}jobs", "meta": f"{p}meta"}


def job_queue(host: Host, cluster: str) -> str:
    """The Batch job queue of a cluster (the same name in every region it spans)."""
    return f"{prefix(host)}{cluster}"


def compute_environment(host: Host, cluster: str, generation: int = 0) -> str:
    """A cluster's Batch compute environment in each region. Generations 0 and 1 keep the plain name; a
    compute environment that cannot be updated in place is replaced by the next generation (``-2``, ``-3``...),
    a new name CloudFormation creates beside the old one before it deletes it."""
    return f"{prefix(host)}{cluster}" + (f"-{generation}" if generation > 1 else "")


def job_definition(host: Host, definition: str) -> str:
    """The Batch job definition of a hyper definition; its revisions are content-hashed registrations."""
    return f"{prefix(host)}{definition}"


def stack(host: Host, kind: str, name: str = "") -> str:
    """A CloudFormation stack: `<prefix>network`, `<prefix>cluster-<name>`, `<prefix>main`."""
    body = f"{kind}-{name}" if name else kind
    return f"{prefix(host)}{body}".rstrip("-")[:128]


def log_group(host: Host) -> str:
    return "/hyper/" + prefix(host).rstrip("-")


def repository(host: Host, image: str) -> str:
    """An ECR repository of an image (lower case: ECR's rule)."""
    return f"{prefix(host)}{image}".lower()


# ---------------------------------------------------------------- Batch jobs the scheduler submits
# A worker array is found again (after a scheduler restart) by its tags; its name says the same for humans
# and is the fallback when tags are missing. Batch job names: 1-128 letters, digits, `-` and `_`, starting
# with a letter or digit.
TAG_HOST = "hyper:host"
TAG_PREFIX = "hyper:prefix"  # the deployment's identity: the same tables whatever a machine calls the host
TAG_QUEUE = "hyper:queue"
TAG_DEFINITION = "hyper:definition"
BATCH_NAME_MAX = 128


def _batch_safe(text: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in text)


def batch_job_name(host: Host, queue: str, definition: str, tick: str) -> str:
    """`<prefix><queue>-<definition>-<tick>`: the worker array a scheduler tick starts for one pair.

    ``tick`` is lower-case letters and digits (no `-`), so the name ends in it unambiguously. Characters Batch
    refuses become `_`; a name over 128 characters keeps its tick and a hash of the rest.
    """
    import zlib

    head = _batch_safe(f"{prefix(host)}{queue}-{definition}-")
    if not head[:1].isalnum():
        head = "h" + head
    name = head + tick
    if len(name) > BATCH_NAME_MAX:
        digest = f"{zlib.crc32(head.encode()):08x}"
        name = head[:BATCH_NAME_MAX - len(tick) - len(digest) - 1] + digest + "-" + tick
    return name


def batch_job_tags(host: Host, queue: str, definition: str) -> dict[str, str]:
    """Tags on every worker array: which deployment, queue and definition it serves."""
    return {TAG_HOST: host.name, TAG_PREFIX: prefix(host), TAG_QUEUE: queue, TAG_DEFINITION: definition}
