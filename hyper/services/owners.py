"""Who owns a job, who is calling, and who may change someone else's job.

The owner is recorded at submit from an identity the caller cannot choose: on an aws host the ARN STS
returns for its credentials (hyper/aws/identity.py), on a local host the OS user of the process's uid
(never ``$LOGNAME``/``$USER``, which anyone can set). ``qdel``/``qhold``/``qrls`` and ``qlog`` act on a
job only for its owner or an admin: on an aws host an identity matching the host's admin patterns (in its
config item, which only the admin policy can write), on a local host the users in the host's ``admins``
setting (default: root).

On an aws host this is checked by hyper, not by IAM: IAM keys the jobs table by job id, not owner, so a
user calling DynamoDB directly with the user policy could still change another's job item. Users who
must not be able to do that need separate hosts (see the README's role table).
"""

from __future__ import annotations

import fnmatch
import os
from typing import TYPE_CHECKING

from hyper.errors import HyperError
from hyper.parsing.jobids import JobRef
from hyper.store.base import DeleteResult, Refusal

if TYPE_CHECKING:
    from hyper.services.context import Context

LOCAL_ADMINS = ("root",)


def local_user() -> str:
    """The OS user of this process's real uid (the uid's number when it has no name)."""
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def caller(ctx: Context) -> str:
    """The identity recorded as a job's owner when this process submits it."""
    if ctx.host.type == "aws":
        from hyper.aws.identity import caller_arn

        return caller_arn(ctx.host)
    return local_user()


def display_name(user: str) -> str:
    """What a table shows for an owner: an ARN's last part (the IAM user, or the role session's name)."""
    return user.rsplit("/", 1)[-1] if user.startswith("arn:") else user


def matches(owner: str, who: str) -> bool:
    """``qstat -u NAME``: a full owner, or its display name."""
    return owner == who or display_name(owner) == who


def is_admin(ctx: Context, who: str) -> bool:
    if ctx.host.type == "aws":
        from hyper.aws.identity import is_admin as aws_admin

        return aws_admin(ctx.host, who)
    admins = (ctx.host.extra or {}).get("admins", list(LOCAL_ADMINS))
    if isinstance(admins, str):
        admins = admins.split(",")
    return any(fnmatch.fnmatchcase(who, str(a).strip()) for a in admins or [])


def refuse(label: str, owner: str, action: str) -> DeleteResult:
    return DeleteResult(label, False, f"job {label} belongs to {display_name(owner)}: only its owner or an admin "
                                      f"may {action} it", Refusal.NOT_OWNER)


def split_owned(ctx: Context, refs: list[JobRef], action: str) -> tuple[list[JobRef], list[DeleteResult]]:
    """The refs the caller may act on, and a refusal for each of the others' jobs (unknown ids pass through,
    so the store reports them as it always does). An admin may act on every job."""
    who = caller(ctx)
    owners: dict[int, str] = {}
    parents = list({ref.id: JobRef(ref.id) for ref in refs}.values())
    if parents:
        found, _ = ctx.store.get_jobs(parents)
        owners = {job.id: job.user for job in found}
    if all(owner == who for owner in owners.values()):
        return refs, []
    if is_admin(ctx, who):
        return refs, []
    allowed, refused = [], []
    for ref in refs:
        owner = owners.get(ref.id)
        if owner is None or owner == who:
            allowed.append(ref)
        else:
            refused.append(refuse(ref.text, owner, action))
    return allowed, refused


def check_owner(ctx: Context, owner: str, label: str, action: str) -> None:
    """Raise unless the caller owns the job or is an admin (one job: qlog)."""
    who = caller(ctx)
    if owner != who and not is_admin(ctx, who):
        raise HyperError(refuse(label, owner, action).message,
                         "ask its owner, or an admin of the host")
