"""ECR for the images hyper builds: the host's replication rule, digests, and each region's own replica.

Workers in a region pull with that region's execution role, which may only read the host's repositories in
its own region (``network_template._iam_resources``); so every region's job definition names the replica in its
own region, pinned by digest (a tag can move; the digest is the same in every replica).

ECR keeps one replication configuration per account and region (``PutReplicationConfiguration`` replaces
it whole). hyper reads it (``DescribeRegistry``), replaces only its own rule (PREFIX_MATCH on the host's
repository prefix, to the host's other regions) and writes the result, so the account's other rules stay.

ECR replicates only what is pushed after a rule names a region. An image that existed before its region was
added is pushed again (its manifest put under ``REPLICATE_TAG``), which replicates it to every destination.

Every function takes the ECR client, so tests pass moto's, or a client answering with recorded responses
where moto has no implementation (DescribeImageReplicationStatus, more than one rule).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable

from hyper.errors import HyperError

MAX_RULES = 10  # ECR: rules per replication configuration
MAX_DESTINATIONS = 25  # ECR: destinations per rule
REPLICATE_TAG = "hyper-replicate"  # the tag an image is pushed again under, to replicate it to new regions
REPLICATION_WAIT = 900.0  # seconds a hub-region registration waits for its replica


def host_filter(prefix: str) -> dict[str, str]:
    """The repository filter of a host's rule: every repository hyper builds starts with its prefix."""
    return {"filter": prefix.lower(), "filterType": "PREFIX_MATCH"}


def _is_hosts(rule: dict, prefix: str) -> bool:
    """A rule hyper wrote for this host: its own filter, or (older hyper) one filter per repository of it."""
    filters = rule.get("repositoryFilters") or []
    return bool(filters) and all(f.get("filterType") == "PREFIX_MATCH" and
                                 str(f.get("filter", "")).startswith(prefix.lower()) for f in filters)


def merged_configuration(configuration: dict | None, prefix: str, account: str,
                         regions: Iterable[str]) -> dict[str, Any]:
    """The registry's replication configuration with this host's rule set to ``regions`` (none: no rule).

    Pure. Other rules are kept as they are and in their order; the host's rule comes last.
    """
    rules = [dict(r) for r in (configuration or {}).get("rules") or [] if not _is_hosts(r, prefix)]
    destinations = [{"region": r, "registryId": account} for r in sorted(set(regions))]
    if len(destinations) > MAX_DESTINATIONS:
        raise HyperError(f"ECR replicates a rule to at most {MAX_DESTINATIONS} regions; the host has "
                         f"{len(destinations)} besides its main region", "remove regions the host does not use")
    if destinations:
        rules.append({"destinations": destinations, "repositoryFilters": [host_filter(prefix)]})
    if len(rules) > MAX_RULES:
        raise HyperError(f"the account's ECR registry already has {len(rules) - 1} replication rules, and "
                         f"{MAX_RULES} is ECR's limit", "merge some of the account's own rules, then run again")
    return {"rules": rules}


def sync_replication(ecr, prefix: str, account: str, regions: Iterable[str]) -> dict[str, Any]:
    """Make the host's rule replicate to ``regions`` (empty: remove it), keeping every other rule.

    Writes only when something changes; returns the configuration now in force.
    """
    current = ecr.describe_registry().get("replicationConfiguration") or {"rules": []}
    wanted = merged_configuration(current, prefix, account, regions)
    if _normal(wanted) != _normal(current):
        ecr.put_replication_configuration(replicationConfiguration=wanted)
    return wanted


def _normal(configuration: dict) -> list:
    out = []
    for rule in configuration.get("rules") or []:
        out.append((sorted((d["region"], d["registryId"]) for d in rule.get("destinations") or []),
                    sorted((f["filter"], f["filterType"]) for f in rule.get("repositoryFilters") or [])))
    return out


def image_digest(ecr, repository: str, tag: str = "latest") -> str:
    """The digest ``repository:tag`` points at (the same in every replica)."""
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        found = []
    if not found:
        raise HyperError(f"ECR repository {repository} has no image tagged {tag}",
                         "build and push it first (`hyper images update-image NAME --path DIR`)")
    return found[0]["imageDigest"]


def replica_uri(account: str, region: str, repository: str, digest: str) -> str:
    """The image in ``region``'s registry, pinned by digest."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}/{repository}@{digest}"


def replication_status(ecr, repository: str, digest: str, region: str, account: str) -> tuple[str, str]:
    """(IN_PROGRESS | COMPLETE | FAILED | MISSING, failure code) of the image's replica in ``region``."""
    answer = ecr.describe_image_replication_status(repositoryName=repository, imageId={"imageDigest": digest})
    for status in answer.get("replicationStatuses") or []:
        if status.get("region") == region and status.get("registryId", account) == account:
            return status.get("status", "IN_PROGRESS"), status.get("failureCode", "")
    return "MISSING", ""


def wait_for_replica(ecr, repository: str, digest: str, region: str, account: str, *,
                     timeout: float = REPLICATION_WAIT, sleep: Callable[[float], None] = time.sleep,
                     clock: Callable[[], float] = time.monotonic) -> None:
    """Return once the image's replica in ``region`` is COMPLETE; a HyperError when it FAILED or the bounded
    wait ran out (nothing is registered then: running the same command again later picks it up)."""
    deadline = clock() + timeout
    delay = 2.0
    while True:
        status, failure = replication_status(ecr, repository, digest, region, account)
        if status == "COMPLETE":
            return
        if status == "FAILED":
            raise HyperError(f"ECR could not replicate {repository}@{digest[:19]} to {region}"
                             + (f" ({failure})" if failure else ""),
                             f"check the account's replication rules and {region}'s ECR quotas, then run "
                             "`hyper images update-image` for it")
        if clock() >= deadline:
            what = "has not started" if status == "MISSING" else "is still in progress"
            raise HyperError(f"replication of {repository}@{digest[:19]} to {region} {what} after {timeout:g} s",
                             "nothing was registered there; run the same command (or `hyper apply`) again "
                             "once ECR shows the replica")
        sleep(min(delay, max(0.0, deadline - clock())))
        delay = min(delay * 1.5, 30.0)


def replicate_existing(ecr, repository: str, tag: str = "latest") -> str | None:
    """Push ``repository:tag``'s manifest again under ``REPLICATE_TAG``, so ECR replicates it to regions the
    rule gained after it was pushed. Returns its digest, or None when the repository holds no such image."""
    try:
        images = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageTag": tag}]).get("images") or []
    except ecr.exceptions.RepositoryNotFoundException:
        return None
    if not images:
        return None
    image = images[0]
    ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageTag": REPLICATE_TAG}])  # a missing tag: fine
    request = {"repositoryName": repository, "imageManifest": image["imageManifest"], "imageTag": REPLICATE_TAG}
    if image.get("imageManifestMediaType"):
        request["imageManifestMediaType"] = image["imageManifestMediaType"]
    ecr.put_image(**request)
    return image["imageId"]["imageDigest"]
