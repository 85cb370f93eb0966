"""Names of everything hyper creates in AWS, from one place (pure).

Every name starts with the host's prefix (its table prefix, default ``hyper-<host>-``), so two hosts in one
account and region never collide (the seed named resources after queues and two deployments clashed).
Provisioning creates resources under these names; the scheduler and workers find them by the same names.
"""

from __future__ import annotations

from hyper.config import Host


def prefix(host: Host) -> str:
    from hyper.aws.tables import prefix as table_prefix

    return table_prefix(host)


def job_queue(host: Host, cluster: str) -> str:
    """The Batch job queue of a cluster (the same name in every region it spans)."""
    return f"{prefix(host)}{cluster}"


def compute_environment(host: Host, cluster: str) -> str:
    return f"{prefix(host)}{cluster}"


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
