"""Where a worker runs, as it records itself in the store, and what of its environment a job inherits.

A worker writes one text into its worker record's ``host`` field: the machine's name, then ``key=value``
details when known, e.g. ``ip-10-0-1-7 region=eu-west-1 batch_job=6f1c...:12``. ``qstat -f`` reads them back
with ``parse_host``. (The record has no dedicated fields for them; the text keeps old readers working.)
"""

from __future__ import annotations

import os
import socket

from hyper.placement import parse_host  # noqa: F401  (where it lived; readers import it from there)

# what a job on AWS Batch / ECS inherits from its container: where it runs, never the container's
# credentials (the worker's role: it could rewrite every job of the host). A job gets its definition's job
# role instead, if it has one (hyper/worker/credentials.py). A job's environment is otherwise built from
# scratch, see runner.job_env.
CONTAINER_ENV = (
    "AWS_BATCH_JOB_ID", "AWS_BATCH_JOB_ATTEMPT", "AWS_BATCH_JQ_NAME", "AWS_BATCH_CE_NAME",
    "AWS_REGION", "AWS_DEFAULT_REGION",
)


def region(environ: dict[str, str] | None = None) -> str | None:
    """The region this worker runs in: HYPER_REGION (set by the scheduler), else the container's AWS_REGION."""
    env = os.environ if environ is None else environ
    return env.get("HYPER_REGION") or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None


def batch_job(environ: dict[str, str] | None = None) -> str | None:
    """The AWS Batch job this worker is (``<job id>:<array index>`` for an array child)."""
    env = os.environ if environ is None else environ
    job = env.get("AWS_BATCH_JOB_ID")
    if not job:
        return None
    index = env.get("AWS_BATCH_JOB_ARRAY_INDEX")
    return f"{job}:{index}" if index and not job.endswith(f":{index}") else job


def host_text(aws: bool, environ: dict[str, str] | None = None) -> str:
    text = socket.gethostname()
    if not aws:
        return text
    details = {"region": region(environ), "batch_job": batch_job(environ)}
    return " ".join([text, *(f"{k}={v}" for k, v in details.items() if v)])


def job_env(worker_id: str, aws: bool, environ: dict[str, str] | None = None) -> dict[str, str]:
    """Variables a job gets from the worker running it: HYPER_WORKER_ID, and on AWS the container's."""
    env = os.environ if environ is None else environ
    out = {"HYPER_WORKER_ID": worker_id}
    if env.get("AWS_BATCH_JOB_ID"):
        out["AWS_BATCH_JOB_ID"] = env["AWS_BATCH_JOB_ID"]
    if aws:
        out.update({k: env[k] for k in CONTAINER_ENV if env.get(k)})
    return out
