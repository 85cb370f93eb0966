"""The host's own KMS key (host setting ``kms_key``): which key it is, and that it can be used.

When set, the key encrypts the host's tables (``hyper.aws.tables``), its log group (the main stack,
``hyper.aws.templates``) and the ECR repositories hyper creates (``hyper.aws.ecr``), and the roles that use
those through their services get ``kms:*`` rights on that key only (``hyper.aws.iam.key_statements``).

The setting takes a key id, a key ARN, an alias name or an alias ARN. ``resolve`` asks KMS once
(DescribeKey) for the key's ARN and refuses a key that does not exist, is not enabled, is no symmetric
encryption key or lives outside the main region (tables and the log group are there, and KMS keys are
regional). ``policy_arn`` gives the ARN for IAM policies without asking KMS when the setting already says it
(a key id or key ARN), so ``hyper iam policy`` stays offline for those; an alias needs KMS.
"""

from __future__ import annotations

import re

from hyper.config import Host
from hyper.errors import HyperError

_KEY_ID = re.compile(r"(mrk-[0-9a-f]{32}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
_KEY_ARN = re.compile(r"arn:aws[a-z-]*:kms:([a-z0-9-]+):(\d{12}):key/" + _KEY_ID.pattern)
_ARN_REGION = re.compile(r"arn:aws[a-z-]*:kms:([a-z0-9-]+):")
_resolved: dict[tuple, str] = {}  # (host name, main region, endpoint, setting) -> key ARN: one DescribeKey


def key_setting(host: Host) -> str:
    """The host's ``kms_key`` setting as given ("" when unset: AWS-owned encryption everywhere)."""
    return str((host.extra or {}).get("kms_key") or "").strip()


def _hint(host: Host) -> str:
    return (f"set kms_key in hosts.yaml to an enabled symmetric key in {host.main_region} (key id, ARN or "
            "alias), or remove it")


def resolve(host: Host) -> str | None:
    """The ARN of the host's key (None when unset), checked with KMS once per process."""
    key = key_setting(host)
    if not key:
        return None
    cache = (host.name, host.main_region, host.endpoint_url, key)
    if cache in _resolved:
        return _resolved[cache]
    _check_region(host, key, key)
    from hyper.aws.session import aws_errors, client

    with aws_errors(host, "kms", f"describe key {key}"):
        kms = client(host, "kms")
        try:
            meta = kms.describe_key(KeyId=key)["KeyMetadata"]
        except kms.exceptions.NotFoundException:
            raise HyperError(f"host setting kms_key={key!r}: KMS has no such key in {host.main_region}",
                             _hint(host)) from None
    if meta.get("KeyState") != "Enabled":
        raise HyperError(f"host setting kms_key={key!r}: the key is {meta.get('KeyState', 'not enabled')}",
                         f"enable it (`aws kms enable-key --key-id {meta.get('KeyId', key)}`), or name another "
                         "key as kms_key in hosts.yaml")
    if meta.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT" or meta.get(
            "KeySpec", meta.get("CustomerMasterKeySpec", "SYMMETRIC_DEFAULT")) != "SYMMETRIC_DEFAULT":
        raise HyperError(f"host setting kms_key={key!r}: the key is not a symmetric encryption key "
                         "(DynamoDB, CloudWatch Logs and ECR take only those)", _hint(host))
    arn = meta["Arn"]
    _check_region(host, key, arn)
    _resolved[cache] = arn
    return arn


def _check_region(host: Host, key: str, arn: str) -> None:
    """A key (or alias) ARN must be in the main region: the tables and the log group it encrypts are there."""
    found = _ARN_REGION.match(arn)
    if found and host.main_region and found.group(1) != host.main_region:
        raise HyperError(f"host setting kms_key={key!r}: the key is in {found.group(1)}, the host's tables and "
                         f"log group in {host.main_region}", _hint(host))


def policy_arn(host: Host, partition: str, account: str) -> str | None:
    """The key's ARN for an IAM policy or template (None when unset). A key ARN is used as given, a key id
    is completed with the main region and ``account`` (may be ``${AWS::AccountId}``); an alias is resolved."""
    key = key_setting(host)
    if not key:
        return None
    if _KEY_ARN.fullmatch(key):
        _check_region(host, key, key)
        return key
    if _KEY_ID.fullmatch(key):
        return f"arn:{partition}:kms:{host.main_region}:{account}:key/{key}"
    return resolve(host)
