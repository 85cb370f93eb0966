"""Secrets Manager reads: the HMAC key that signs completion notices (never written anywhere by hyper).

The host's key is the secret named ``<prefix>notify`` in the main region, by convention, so every sender (a
worker in any region, the scheduler) finds it with no setting to carry around, and IAM can scope
``secretsmanager:GetSecretValue`` to that one name; ``HYPER_NOTIFY_SECRET_ID`` or the host's
``notify_secret_id`` setting names another. Values are kept in memory for five minutes (a rotated key is
picked up after at most that long).
"""

from __future__ import annotations

import time

from hyper.aws import session as aws
from hyper.config import Host

CACHE_SECONDS = 300.0
_cache: dict[tuple, tuple[float, str | None]] = {}


def notify_secret_name(host: Host) -> str:
    from hyper.aws.names import prefix

    return f"{prefix(host)}notify"


def optional_secret(host: Host, secret_id: str) -> str | None:
    """The secret's value, or None when no secret has that name (the host signs nothing)."""
    import botocore.exceptions as bx

    key = (host.profile, aws.endpoint_of(host), aws.region_of(host), secret_id)
    found = _cache.get(key)
    if found is not None and time.monotonic() - found[0] < CACHE_SECONDS:
        return found[1]
    try:
        value: str | None = secret_value(host, secret_id)
    except bx.ClientError as exc:  # (aws_errors lets HyperError through; a missing secret is not one)
        if aws.error_code(exc) != "ResourceNotFoundException":
            raise aws.translate(exc, host, "secretsmanager", f"read secret {secret_id}") from None
        value = None
    _cache[key] = (time.monotonic(), value)
    return value


def secret_value(host: Host, secret_id: str) -> str:
    """The current value of a secret (name or ARN) in the host's main region, read when it is needed."""
    found = aws.client(host, "secretsmanager").get_secret_value(SecretId=secret_id)
    return found.get("SecretString") or found["SecretBinary"].decode()
