"""Completion notices: one signed JSON POST when a job or an array ends (``qsub --notify URL``).

A job that can never run (held by a dependency that can never be satisfied, e.g. an ``afterok`` finaliser
whose parts failed) counts as over: its notice says ``"event": "job.blocked"``, state HELD, and why, so a
receiver never waits forever for a workflow that will not finish (the seed's watcher hung on a failed job).

Exactly once per end, never lost silently: the notice's record (hyper/store/notices.py) is written with the
job; whoever sees the end (the worker that finished the job or its array's last element, or the sweep of the
local agent / aws scheduler) takes it with a conditional update, POSTs, and records the outcome. A failed
POST is retried with exponential backoff (``HYPER_NOTIFY_BACKOFF`` seconds doubling, ``HYPER_NOTIFY_ATTEMPTS``
tries in all) by the sweep; after the last try the record says FAILED with the HTTP status or error, which
``qstat -f`` shows. A sender that dies between the POST and the record leaves a lease that expires and the
notice is sent again, with the same ``X-Hyper-Delivery`` id, so a receiver can drop the repeat.

Signature: when the host has a secret (``HYPER_NOTIFY_SECRET`` in the senders' environment; on an aws host
the Secrets Manager secret ``<prefix>notify``, or the one named by ``HYPER_NOTIFY_SECRET_ID`` or the host's
``notify_secret_id`` setting: hyper/aws/secrets.py), the body is signed with HMAC-SHA256:
``X-Hyper-Signature: sha256=<hex>``. hyper reads the secret when it sends and never writes it anywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from hyper.config import Host
from hyper.errors import UsageError
from hyper.models import Job
from hyper.parsing.jobids import JobRef

if TYPE_CHECKING:
    from hyper.store.base import Store

SIGNATURE_HEADER = "X-Hyper-Signature"
DELIVERY_HEADER = "X-Hyper-Delivery"
USER_AGENT = "hyper-notify/1"


def _float_env(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


def settings() -> dict:
    return {"attempts": max(1, int(_float_env("HYPER_NOTIFY_ATTEMPTS", 5))),
            "backoff": _float_env("HYPER_NOTIFY_BACKOFF", 2.0), "timeout": _float_env("HYPER_NOTIFY_TIMEOUT", 10.0),
            "lease": _float_env("HYPER_NOTIFY_LEASE", 60.0)}


# at submit -----------------------------------------------------------------------------------------------
def check_url(url: str) -> str | None:
    """A malformed URL is refused; an unreachable one is accepted with a note (it may be up when the job ends)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"--notify {url!r} is not an http(s) URL", "e.g. --notify https://example.org/hooks/hyper")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname, port), timeout=2).close()
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return (f"{parts.hostname}:{port} is not reachable from here ({why}); the notice is sent when the job "
                "ends, retried, and its outcome shown by qstat -f")
    return None


BLOCKED = "dependency can never be satisfied"  # hyper/dependencies.py words it so for every store


def can_never_run(job: Job) -> bool:
    """Held for good: an afterok finaliser whose parts failed will never run, so it will never end either."""
    return job.state.value == "HELD" and job.reason.startswith(BLOCKED)


def is_over(job: Job) -> bool:
    """When a notice is due: the job ended, or it can never run (its receiver must not wait forever)."""
    return job.state.finished or can_never_run(job)


# the document ------------------------------------------------------------------------------------------------
def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds") if ts else None


def host_identity(host: Host) -> str:
    """The same on every machine of a deployment (an aws worker calls its host whatever it likes)."""
    if host.type == "aws":
        from hyper.aws.tables import prefix

        return prefix(host).rstrip("-")
    return host.name


def _counts(array: Job) -> dict:
    failed, deleted = array.array_failed, array.array_deleted
    return {"total": array.array_total, "succeeded": max(0, array.array_done - failed - deleted), "failed": failed,
            "deleted": deleted}


def document(job: Job, host: Host, array: Job | None = None) -> dict:
    """What the receiver gets: who, what state, exit code, times; an array's element counts."""
    doc: dict[str, Any] = {
        "event": "job.blocked" if can_never_run(job) else "job.ended", "host": host_identity(host),
        "job_id": job.job_id, "id": job.id, "name": job.name, "user": job.user, "queue": job.queue,
        "state": job.state.value, "exit_code": job.exit_code, "reason": job.reason, "submitted": _iso(job.submitted),
        "started": _iso(job.started), "ended": _iso(job.ended)}
    if job.is_array:
        doc["array"] = _counts(job)
    final = job.spec.finalizes if job.spec else None
    if final:
        doc["finalizes"] = f"{final['array']}[]"
        doc["parts"] = final.get("parts")
        if array is not None:  # how the parts it finalised ended
            doc["array"] = _counts(array)
    return doc


def host_secret(host: Host) -> bytes | None:
    raw = os.environ.get("HYPER_NOTIFY_SECRET")
    if raw:
        return raw.encode()
    if host.type != "aws":
        return None
    from hyper.aws.secrets import notify_secret_name, optional_secret, secret_value

    secret_id = os.environ.get("HYPER_NOTIFY_SECRET_ID") or (host.extra or {}).get("notify_secret_id")
    if secret_id:  # named on purpose: a missing one is an error to record, not a reason to send unsigned
        from hyper.aws import session as aws

        with aws.aws_errors(host, "secretsmanager", f"read secret {secret_id}"):
            return secret_value(host, str(secret_id)).encode()
    value = optional_secret(host, notify_secret_name(host))
    return value.encode() if value is not None else None


def sign(body: bytes, secret: bytes) -> str:
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def post(url: str, body: bytes, headers: dict, timeout: float) -> tuple[bool, int | None, str]:
    """One POST: (delivered, HTTP status, error text). 2xx is delivered; anything else is retried."""
    import requests

    try:
        response = requests.post(url, data=body, headers=headers, timeout=timeout, allow_redirects=False)
    except requests.RequestException as exc:
        text = " ".join(str(exc).split())
        return False, None, f"{type(exc).__name__}: {text}"[:300]
    if 200 <= response.status_code < 300:
        return True, response.status_code, ""
    return False, response.status_code, f"HTTP {response.status_code} {response.reason or ''}".strip()[:300]


# sending ----------------------------------------------------------------------------------------------------
def deliver(store: Store, host: Host, job_id: int, owner: str, now: float | None = None, job: Job | None = None
            ) -> dict | None:
    """Send the notice of job ``job_id`` if it ended and nobody else holds the notice; returns the record."""
    conf = settings()
    if job is None:
        jobs, _ = store.get_jobs([JobRef(job_id)])
        job = jobs[0] if jobs else None
    if job is None or not is_over(job):
        return None
    now = time.time() if now is None else now
    notice = store.claim_notice(job_id, owner, now + conf["lease"], now)
    if notice is None:
        return None
    array = None
    if job.spec is not None and job.spec.finalizes:
        found, _ = store.get_jobs([JobRef(int(job.spec.finalizes["array"]))])
        array = found[0] if found else None
    body = json.dumps(document(job, host, array), sort_keys=True).encode()
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               DELIVERY_HEADER: f"{host_identity(host)}-{job.id}-{int((job.submitted or 0) * 1000)}"}
    error = ""
    try:
        secret = host_secret(host)
    except Exception as exc:  # a secret that cannot be read is an outcome to record, not a crash
        secret, error = None, f"cannot read the signing secret: {getattr(exc, 'message', exc)}"
    if secret is not None:
        headers[SIGNATURE_HEADER] = sign(body, secret)
    ok, status = False, None
    if not error:
        ok, status, error = post(notice["url"], body, headers, conf["timeout"])
    attempts = notice["attempts"] + 1
    ended = time.time()
    if ok:
        state, next_at = "SENT", 0.0
    elif attempts >= conf["attempts"]:
        state, next_at = "FAILED", 0.0
    else:
        state, next_at = "PENDING", ended + conf["backoff"] * 2 ** (attempts - 1)
    store.record_notice(job_id, owner, state, next_at=next_at, status=status, error=error, now=ended)
    return store.get_notice(job_id)


def sweep(store: Store, host: Host, owner: str, now: float | None = None) -> int:
    """Send every notice that is due; returns how many notices of ended jobs are still open (to retry)."""
    now = time.time() if now is None else now
    notices = store.open_notices()
    found, _ = store.get_jobs([JobRef(n["job"]) for n in notices]) if notices else ([], [])
    ended = {j.id: j for j in found if is_over(j)}  # one read for all (a batch on DynamoDB)
    waiting = 0
    for notice in notices:
        job = ended.get(notice["job"])
        if job is None:
            continue  # its job has not ended yet: nothing to send
        due = (notice["state"] == "PENDING" and notice["next_at"] <= now) or (
            notice["state"] == "SENDING" and (notice["lease"] or 0) < now)
        if due:
            result = deliver(store, host, notice["job"], owner, now, job=job)
            if result is not None and result["state"] in ("SENT", "FAILED"):
                continue
        waiting += 1
    return waiting


def describe(notice: dict | None) -> str | None:
    """One line for qstat -f: where it goes and what happened."""
    if not notice:
        return None
    tries = notice["attempts"]
    head = f"{notice['state']} {notice['url']}"
    if notice["state"] == "SENT":
        plural = "s" if tries != 1 else ""
        return f"{head} (HTTP {notice['status']}, {tries} attempt{plural}, {_iso(notice['updated'])})"
    if notice["state"] == "FAILED":
        return f"{head} (gave up after {tries} attempts: {notice['error']})"
    if tries:
        return f"{head} (attempt {tries} failed: {notice['error']}; next try {_iso(notice['next_at'])})"
    return head
