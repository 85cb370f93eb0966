"""Who is calling on an aws host: the caller's IAM identity (STS GetCallerIdentity) and the host's admins.

A job's owner is the ARN of the identity that submitted it, which no environment variable can change.
The host's admins are ARN patterns in the meta table's ``config`` item (written when the tables are
created: the creator, plus the host's ``admins`` setting), which only the admin policy may write
(hyper/aws/iam.py), so a user cannot make themselves an admin by editing their own hosts.yaml.
"""

from __future__ import annotations

import fnmatch
import re

from hyper.config import Host

_callers: dict[tuple, str] = {}


def caller_arn(host: Host) -> str:
    """The ARN of the credentials this process uses for the host (cached per host and credentials)."""
    from hyper.aws.session import _env_key, aws_errors, client

    key = (host.name, host.profile, host.endpoint_url, _env_key())
    if key not in _callers:
        with aws_errors(host, "sts", "get_caller_identity"):
            _callers[key] = client(host, "sts").get_caller_identity()["Arn"]
    return _callers[key]


def admin_pattern(arn: str) -> str:
    """What an admin entry matches: every session of an assumed role, or exactly an IAM user or role."""
    m = re.fullmatch(r"(arn:[\w-]+:sts::\d+:assumed-role/[^/]+)/.+", arn)
    return f"{m.group(1)}/*" if m else arn


def initial_admins(host: Host) -> list[str]:
    """Who administers a new host: its creator, and the ARNs or patterns of its ``admins`` setting."""
    extra = (host.extra or {}).get("admins") or []
    if isinstance(extra, str):
        extra = extra.split(",")
    return sorted({admin_pattern(caller_arn(host)), *(str(a).strip() for a in extra if str(a).strip())})


def host_admins(host: Host) -> list[str]:
    """The admin patterns recorded in the host's config item (none when the item predates them)."""
    from hyper.aws.session import aws_errors, client
    from hyper.aws.names import table_names

    with aws_errors(host, "dynamodb", "get_item"):
        item = client(host, "dynamodb").get_item(
            TableName=table_names(host)["meta"], Key={"pk": {"S": "config"}, "sk": {"S": "config"}},
            ConsistentRead=True).get("Item") or {}
    return [v["S"] for v in item.get("admins", {}).get("L", [])]


def is_admin(host: Host, arn: str) -> bool:
    return any(fnmatch.fnmatchcase(arn, p) for p in host_admins(host))
