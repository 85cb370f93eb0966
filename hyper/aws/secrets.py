"""Secrets Manager reads: the HMAC key that signs completion notices (never written anywhere by hyper)."""

from __future__ import annotations

from hyper.aws import session as aws
from hyper.config import Host


def secret_value(host: Host, secret_id: str) -> str:
    """The current value of a secret (name or ARN) in the host's main region, read when it is needed."""
    with aws.aws_errors(host, "secretsmanager", f"read secret {secret_id}"):
        found = aws.client(host, "secretsmanager").get_secret_value(SecretId=secret_id)
    return found.get("SecretString") or found["SecretBinary"].decode()
