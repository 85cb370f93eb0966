"""What a job may hold of AWS: its definition's job role and secrets, never the worker's own credentials.

A worker's container credentials (the Batch job role, EKS Pod Identity) let it claim and finish every job of
the host; a job holding them could rewrite other users' jobs. So the worker:

* passes a job none of its credential variables (``identity.job_env`` keeps only region and Batch ids);
* for a definition with ``job_role`` (``--job-role``), assumes that role for each job attempt (session
  ``hyper-<job>``, tagged with the job id) and passes the job only those temporary keys;
* for a definition's ``secrets`` (``--secret NAME=ARN``), passes each value as ``NAME``: on Batch the
  container already holds them (the job definition's ``secrets``, resolved by Batch with the execution
  role), elsewhere the worker reads them from Secrets Manager or SSM Parameter Store itself.

The remaining limit, said plainly: the job runs under the worker's uid in the worker's container, so a job
that reads the worker's ``/proc/<pid>/environ`` finds the container credentials URI and can ask the ECS
credentials endpoint (169.254.170.2) for the worker's role. Jobs of users who must not be able to do that
need their own workers (a definition per trust domain) until jobs run under a separate uid or network
namespace (the process-containment work of issue 11).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from hyper.errors import HyperError
from hyper.models import Definition, Job

if TYPE_CHECKING:
    from hyper.config import Host

ROLE_SESSION_SECONDS = 3600  # STS's default; a longer one needs the role's MaxSessionDuration raised


def job_role_env(host: Host, definition: Definition, job: Job) -> dict[str, str]:
    """Temporary keys of the definition's job role for this job ({} when it has none)."""
    if not definition.job_role:
        return {}
    from hyper.aws.session import aws_errors, client

    with aws_errors(host, "sts", f"assume the job role {definition.job_role}"):
        creds = client(host, "sts").assume_role(
            RoleArn=definition.job_role, RoleSessionName=f"hyper-{job.id}-{job.index if job.index is not None else 0}",
            DurationSeconds=ROLE_SESSION_SECONDS,
            Tags=[{"Key": "hyper:job", "Value": job.job_id}, {"Key": "hyper:owner", "Value": job.user[-256:]}],
        )["Credentials"]
    return {"AWS_ACCESS_KEY_ID": creds["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
            "AWS_SESSION_TOKEN": creds["SessionToken"]}


def secret_env(host: Host, definition: Definition, environ: dict[str, str] | None = None) -> dict[str, str]:
    """The definition's secrets by name: from the container (Batch resolved them) or fetched here."""
    env = os.environ if environ is None else environ
    out = {}
    for name, arn in sorted((definition.secrets or {}).items()):
        if env.get("AWS_BATCH_JOB_ID") and name in env:
            out[name] = env[name]
        else:
            out[name] = _fetch(host, arn)
    return out


def _fetch(host: Host, arn: str) -> str:
    from hyper.aws.session import aws_errors, client

    region = arn.split(":")[3] or None
    if ":secretsmanager:" in arn:
        with aws_errors(host, "secretsmanager", f"read the secret {arn}"):
            return client(host, "secretsmanager", region=region).get_secret_value(SecretId=arn)["SecretString"]
    if ":ssm:" in arn:
        name = "/" + arn.split(":parameter/", 1)[1]
        with aws_errors(host, "ssm", f"read the parameter {arn}"):
            return client(host, "ssm", region=region).get_parameter(Name=name, WithDecryption=True)[
                "Parameter"]["Value"]
    raise HyperError(f"secret {arn} is neither a Secrets Manager secret nor an SSM parameter",
                     "fix the definition with `hyper definitions update-definition NAME --secret NAME=ARN`")


def job_aws_env(host: Host, definition: Definition, job: Job) -> dict[str, str]:
    """Everything AWS-related a job gets on top of its environment (role keys, then secrets)."""
    if not definition.job_role and not definition.secrets:
        return {}
    return {**job_role_env(host, definition, job), **secret_env(host, definition)}
