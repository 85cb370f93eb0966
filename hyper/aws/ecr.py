"""ECR for the images hyper builds: the host's replication rule, digests, and each region's own replica.

Workers in a region pull with that region's execution role, which may only read the host's repositories in
its own region (``network_template._iam_resources``); so every region's job definition names the replica in its
own region, pinned by digest (a tag can move; the digest is the same in every replica).

ECR keeps one replication configuration per account and region (``PutReplicationConfiguration`` replaces
it whole). hyper reads it (``DescribeRegistry``), replaces only its own rule (PREFIX_MATCH on the host's
repository prefix, to the host's other regions) and writes the result, so the account's other rules stay.

ECR replicates only what is pushed after a rule names a region. An image that existed before its region was
added is pushed again: its manifest put under a fresh tag (``REPLICATE_TAG`` and a unique suffix), which
replicates it to every destination.

Every repository hyper creates has immutable tags (a tag names one image for ever, so nobody can swap what a
tag means) and, when the host names a KMS key, that key's encryption. So each build is pushed under its own
tag, derived from the build context's content (``context_tag``): building the same directory again is a
no-op, a changed directory is a new tag. Nothing is ever pushed twice under one tag, and no tag moves.

Every function takes the ECR client, so tests pass moto's, or a client answering with recorded responses
where moto has no implementation (DescribeImageReplicationStatus, more than one rule).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

from hyper.errors import HyperError

if TYPE_CHECKING:
    from hyper.aws.session import AwsClient
    from hyper.models import Resource

MAX_RULES = 10  # ECR: rules per replication configuration
MAX_DESTINATIONS = 25  # ECR: destinations per rule
REPLICATE_TAG = "hyper-replicate"  # the stem of the fresh tag an image is pushed again under (new regions)
LEGACY_TAG = "latest"  # what hyper pushed before tags were immutable: an image recorded without a tag
BUILD_TAG_STEM = "ctx-"  # build tags: ctx-<24 hex digits of the build context's content hash>
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


def sync_replication(ecr: AwsClient, prefix: str, account: str, regions: Iterable[str]) -> dict[str, Any]:
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


def context_tag(path: str) -> str:
    """The tag a build of directory ``path`` is pushed under: a hash of every file's relative path, exec bit
    and content (symlinks by their target). The same directory gives the same tag, so pushing it again is
    skipped; any change gives a new one, because an immutable repository refuses to move a tag."""
    root = Path(path)
    if not root.is_dir():
        raise HyperError(f"build context {path} is not a directory", "give --path the directory of a Dockerfile")
    digest = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            file = Path(dirpath) / name
            rel = file.relative_to(root).as_posix()
            if file.is_symlink():
                body = b"link:" + os.readlink(file).encode()
            else:
                body = (b"x:" if os.access(file, os.X_OK) else b"f:") + file.read_bytes()
            digest.update(rel.encode() + b"\0" + hashlib.sha256(body).digest())
    return BUILD_TAG_STEM + digest.hexdigest()[:24]


def ensure_repository(ecr: AwsClient, repository: str, *, host_name: str, kms_key_arn: str | None = None) -> None:
    """The repository exists with immutable tags, scan on push, and the host's KMS key when it names one.

    An existing repository made mutable (older hyper) is made immutable. Its encryption cannot change (ECR
    fixes it at creation): a repository encrypted otherwise than the host asks is refused, not used."""
    wanted = {"encryptionType": "KMS", "kmsKey": kms_key_arn} if kms_key_arn else {"encryptionType": "AES256"}
    try:
        ecr.create_repository(repositoryName=repository, imageTagMutability="IMMUTABLE",
                              imageScanningConfiguration={"scanOnPush": True}, encryptionConfiguration=wanted,
                              tags=[{"Key": "hyper:host", "Value": host_name}])
        return
    except ecr.exceptions.RepositoryAlreadyExistsException:
        pass
    found = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
    have = found.get("encryptionConfiguration") or {"encryptionType": "AES256"}
    if have.get("encryptionType") != wanted["encryptionType"] or (kms_key_arn and have.get("kmsKey") != kms_key_arn):
        what = f"KMS key {have['kmsKey']}" if have.get("kmsKey") else have.get("encryptionType", "AES256")
        raise HyperError(f"ECR repository {repository} is encrypted with {what}, not "
                         f"{kms_key_arn or 'AES256'}, and ECR cannot change a repository's encryption",
                         f"delete the repository (`aws ecr delete-repository --repository-name {repository} "
                         "--force`) and run the same command again, or set the host's kms_key to match")
    make_immutable(ecr, repository, found)


def make_immutable(ecr: AwsClient, repository: str, found: dict | None = None) -> bool:
    """Switch a repository an older hyper made with mutable tags to immutable ones (``found``: its
    DescribeRepositories entry, if already read). False when the repository does not exist."""
    if found is None:
        try:
            found = ecr.describe_repositories(repositoryNames=[repository])["repositories"][0]
        except ecr.exceptions.RepositoryNotFoundException:
            return False
    if found.get("imageTagMutability") != "IMMUTABLE":
        ecr.put_image_tag_mutability(repositoryName=repository, imageTagMutability="IMMUTABLE")
    return True


def find_digest(ecr: AwsClient, repository: str, tag: str) -> str | None:
    """The digest ``repository:tag`` points at, or None when there is no such image (or repository)."""
    try:
        found = ecr.describe_images(repositoryName=repository, imageIds=[{"imageTag": tag}])["imageDetails"]
    except (ecr.exceptions.ImageNotFoundException, ecr.exceptions.RepositoryNotFoundException):
        return None
    return found[0]["imageDigest"] if found else None


def built_digest(ecr: AwsClient, repository: str, image: Resource) -> str:
    """The digest every region pins for an image hyper built: the one recorded at its build, else (an image
    built by an older hyper) the digest of the tag it recorded or of ``:latest``."""
    return getattr(image, "digest", "") or image_digest(ecr, repository, getattr(image, "tag", "") or LEGACY_TAG)


def image_digest(ecr: AwsClient, repository: str, tag: str = LEGACY_TAG) -> str:
    """The digest ``repository:tag`` points at (the same in every replica)."""
    found = find_digest(ecr, repository, tag)
    if found is None:
        raise HyperError(f"ECR repository {repository} has no image tagged {tag}",
                         "build and push it first (`hyper images update-image NAME --path DIR`)")
    return found


def replica_uri(account: str, region: str, repository: str, digest: str) -> str:
    """The image in ``region``'s registry, pinned by digest."""
    suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
    return f"{account}.dkr.ecr.{region}.{suffix}/{repository}@{digest}"


def replication_status(ecr: AwsClient, repository: str, digest: str, region: str, account: str) -> tuple[str, str]:
    """(IN_PROGRESS | COMPLETE | FAILED | MISSING, failure code) of the image's replica in ``region``."""
    answer = ecr.describe_image_replication_status(repositoryName=repository, imageId={"imageDigest": digest})
    for status in answer.get("replicationStatuses") or []:
        if status.get("region") == region and status.get("registryId", account) == account:
            return status.get("status", "IN_PROGRESS"), status.get("failureCode", "")
    return "MISSING", ""


def wait_for_replica(ecr: AwsClient, repository: str, digest: str, region: str, account: str, *,
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


def replication_tag(clock: Callable[[], float] = time.time) -> str:
    """A tag never used before, for pushing an image again: immutable tags cannot be moved or reused."""
    return f"{REPLICATE_TAG}-{int(clock())}-{uuid.uuid4().hex[:8]}"


def replicate_existing(ecr: AwsClient, repository: str, digest: str) -> str | None:
    """Push image ``digest``'s manifest again under a fresh tag (``replication_tag``), so ECR replicates it to
    regions the rule gained after it was pushed; no tag is moved or deleted. Returns the new tag, or None
    when the repository holds no such image."""
    try:
        images = ecr.batch_get_image(repositoryName=repository, imageIds=[{"imageDigest": digest}]).get("images") or []
    except ecr.exceptions.RepositoryNotFoundException:
        return None
    if not images:
        return None
    image = images[0]
    tag = replication_tag()
    request = {"repositoryName": repository, "imageManifest": image["imageManifest"], "imageTag": tag}
    if image.get("imageManifestMediaType"):
        request["imageManifestMediaType"] = image["imageManifestMediaType"]
    ecr.put_image(**request)
    return tag
