"""One boto3 session per host, clients with explicit retry settings, and AWS failures as one-line errors.

A host names a profile (or none: the standard credential chain), a main region and optionally an endpoint
(moto in tests, a VPC endpoint, LocalStack). Credentials never come from hyper's own files.

Retries: botocore's ``standard`` mode by default (exponential backoff with jitter, retry quota, throttling
and transient errors retried), ``adaptive`` on request (it adds a client-side token bucket that slows a
bulk submitter down when DynamoDB throttles it; AWS recommends it only for single-tenant clients such as
one ``qsub`` process). Order of precedence: the host's ``retry_mode`` / ``max_attempts`` settings, then
``AWS_RETRY_MODE`` / ``AWS_MAX_ATTEMPTS``, then standard with 5 attempts.

Every expected failure (no credentials, unknown profile, no region, unreachable endpoint, access denied,
throttling after the last retry, missing table) becomes ``HyperError(message, hint)``: one line saying
which profile, region and endpoint were tried and what to do, never a botocore traceback.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator, TypeAlias

from hyper.config import Host
from hyper.errors import HyperError

# boto3 ships no types (pyproject's mypy overrides): its sessions and clients are Any, named for the reader
AwsSession: TypeAlias = Any
AwsClient: TypeAlias = Any

DEFAULT_RETRY_MODE = "standard"
DEFAULT_MAX_ATTEMPTS = 5
RETRY_MODES = ("standard", "adaptive", "legacy")

THROTTLING_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "Throttling", "RequestLimitExceeded",
    "TooManyRequestsException", "LimitExceededException", "RequestThrottled", "RequestThrottledException",
    "SlowDown", "ThrottledException",
})
CREDENTIAL_CODES = frozenset({
    "UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException",
    "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException", "RequestExpired", "InvalidAccessKeyId",
    "AuthFailure", "MissingAuthenticationToken",
})
DENIED_CODES = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation", "Forbidden"})

_lock = threading.Lock()
_sessions: dict[tuple, Any] = {}
_clients: dict[tuple, Any] = {}


# what a host resolves to -----------------------------------------------------------------------------
def region_of(host: Host) -> str | None:
    return host.main_region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")


def main_region(host: Host) -> str:
    """The region a host's own calls go to; a one-line error when neither the host nor the environment names one."""
    region = region_of(host)
    if not region:
        raise HyperError(f"no AWS region for host {host.name!r}",
                         "set the host's main region (hyper hosts create-host --main-region ...) or AWS_REGION")
    return region


def endpoint_of(host: Host) -> str | None:
    """The endpoint a host talks to; None means AWS itself (boto3 still honours AWS_ENDPOINT_URL*)."""
    return host.endpoint_url or None


def credentials_text(host: Host) -> str:
    if host.profile:
        return f"profile {host.profile!r}"
    if os.environ.get("AWS_PROFILE"):
        return f"profile {os.environ['AWS_PROFILE']!r} (from AWS_PROFILE)"
    return "the default credential chain"


def where_text(host: Host) -> str:
    region = region_of(host) or "(no region)"
    endpoint = endpoint_of(host)
    return f"region {region}" + (f" at {endpoint}" if endpoint else "")


def retry_settings(host: Host, max_attempts: int | None = None) -> dict:
    """The botocore ``retries`` dict for this host (pure: used by clients and shown by --dry-run)."""
    extra = host.extra or {}
    mode = str(extra.get("retry_mode") or os.environ.get("AWS_RETRY_MODE") or DEFAULT_RETRY_MODE)
    if mode not in RETRY_MODES:
        raise HyperError(f"unknown AWS retry mode {mode!r} for host {host.name!r}",
                         f"use one of {', '.join(RETRY_MODES)} (host setting retry_mode or AWS_RETRY_MODE)")
    if max_attempts is None:
        raw = extra.get("max_attempts") or os.environ.get("AWS_MAX_ATTEMPTS") or DEFAULT_MAX_ATTEMPTS
        try:
            max_attempts = int(raw)
        except (TypeError, ValueError):
            raise HyperError(f"max_attempts {raw!r} for host {host.name!r} is not a whole number",
                             "set it like max_attempts: 5") from None
    return {"mode": mode, "max_attempts": max(1, max_attempts)}


# sessions and clients --------------------------------------------------------------------------------
_CREDENTIAL_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                   "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_EC2_METADATA_DISABLED")


def _env_key() -> tuple:
    """Where credentials come from: a changed environment gets a new session, not a stale cached one."""
    return tuple(os.environ.get(k) for k in _CREDENTIAL_ENV)


def session(host: Host) -> AwsSession:
    """The boto3 session of a host (one per profile and region, shared by every client of the process)."""
    key = (host.profile, region_of(host), _env_key())
    with _lock:
        found = _sessions.get(key)
        if found is not None:
            return found
        import boto3
        import botocore.exceptions as bx

        try:
            found = boto3.Session(profile_name=host.profile or None, region_name=region_of(host))
        except bx.ProfileNotFound:
            raise _profile_not_found(host) from None
        except bx.BotoCoreError as exc:
            raise HyperError(f"cannot set up AWS for host {host.name!r}: {_one_line(exc)}",
                             "check ~/.aws/config and the host's profile and region") from None
        _sessions[key] = found
        return found


def client(host: Host, service: str, *, region: str | None = None,
           max_attempts: int | None = None) -> AwsClient:
    """A client for `service` in `region` (default: the host's main region), from the host's one session,
    endpoint and retry settings; cached, since boto3 clients are thread-safe and slow to create."""
    region = region or main_region(host)
    retries = retry_settings(host, max_attempts)
    key = (host.profile, region, endpoint_of(host), service, retries["mode"], retries["max_attempts"], _env_key())
    with _lock:
        found = _clients.get(key)
    if found is not None:
        return found
    sess = session(host)
    from botocore.config import Config

    config = Config(region_name=region, retries=retries, connect_timeout=5, read_timeout=30,
                    max_pool_connections=32)
    with _lock:
        found = _clients.get(key)
        if found is None:
            try:
                found = sess.client(service, endpoint_url=endpoint_of(host), config=config)
            except Exception as exc:  # e.g. a malformed endpoint URL
                raise translate(exc, host, service, f"create a client for {region}") from None
            _clients[key] = found
    return found


def forget(host: Host | None = None) -> None:
    """Drop cached sessions and clients (tests switch credentials; long-lived agents after a profile edit)."""
    with _lock:
        _sessions.clear()
        _clients.clear()


# errors ----------------------------------------------------------------------------------------------
def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def _profile_not_found(host: Host) -> HyperError:
    profile = host.profile or os.environ.get("AWS_PROFILE", "")
    return HyperError(f"AWS profile {profile!r} (host {host.name!r}) is not in ~/.aws/config or ~/.aws/credentials",
                      f"create it with `aws configure --profile {profile}` (or `aws configure sso`), "
                      "or point the host at an existing profile")


def error_code(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str((response.get("Error") or {}).get("Code") or "")


def translate(exc: BaseException, host: Host, service: str = "", action: str = "") -> HyperError:
    """An AWS failure as one HyperError naming profile / region / endpoint and the fix."""
    if isinstance(exc, HyperError):
        return exc
    import botocore.exceptions as bx

    what = " ".join(x for x in (f"AWS {service}" if service else "AWS", action) if x)
    where = where_text(host)
    creds = credentials_text(host)
    if isinstance(exc, bx.ProfileNotFound):
        return _profile_not_found(host)
    if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
        fix = (f"run `aws sso login --profile {host.profile}` or `aws configure --profile {host.profile}`"
               if host.profile else "set AWS_PROFILE, run `aws configure`, or give the host a profile")
        return HyperError(f"no usable AWS credentials for host {host.name!r} from {creds} ({where})", fix)
    if isinstance(exc, bx.NoRegionError):
        return HyperError(f"no AWS region for host {host.name!r}",
                          "set the host's main region or AWS_REGION")
    if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionClosedError,
                        bx.ReadTimeoutError, bx.SSLError, bx.ProxyConnectionError)):
        endpoint = endpoint_of(host) or f"the {service or 'AWS'} endpoint of {region_of(host)}"
        hint = ("check that the endpoint is running and the host's endpoint_url is right"
                if endpoint_of(host) else "check the network, proxy settings and the host's region")
        return HyperError(f"cannot reach {endpoint} for {what} (host {host.name!r}, {where}): "
                          f"{type(exc).__name__}", hint)
    if isinstance(exc, bx.ClientError):
        code = error_code(exc)
        message = _one_line((exc.response.get("Error") or {}).get("Message") or exc)
        if code in CREDENTIAL_CODES:
            fix = (f"refresh them: `aws sso login --profile {host.profile}`" if host.profile
                   else "refresh them, or give the host a profile that works (`aws sts get-caller-identity`)")
            return HyperError(f"AWS rejected the credentials from {creds} for {what} ({where}): {code}", fix)
        if code in DENIED_CODES:
            return HyperError(f"access denied for {what} with {creds} ({where}): {message}",
                              "grant that permission to the IAM identity, or use another profile")
        if code in THROTTLING_CODES:
            return HyperError(f"{what} was throttled in {where} after every retry ({code})",
                              "the table or account is at its request limit; retry later, submit in bigger "
                              "batches, or raise max_attempts / use retry_mode adaptive for bulk clients")
        if code == "ResourceNotFoundException":
            return HyperError(f"{what}: {message} ({where})",
                              f"create the host's resources first (hyper hosts create-host {host.name})")
        return HyperError(f"{what} failed ({where}): {code}: {message}",
                          "set HYPER_DEBUG=1 for the full response")
    if isinstance(exc, bx.ParamValidationError):
        return HyperError(f"{what}: invalid request: {_one_line(exc)}", "this is a bug in hyper; please report it")
    if isinstance(exc, bx.BotoCoreError):
        return HyperError(f"{what} failed ({where}, {creds}): {_one_line(exc)}",
                          "check the host's profile, region and endpoint")
    return HyperError(f"{what} failed: {type(exc).__name__}: {_one_line(exc)}", "set HYPER_DEBUG=1 for details")


@contextmanager
def aws_errors(host: Host, service: str = "", action: str = "") -> Iterator[None]:
    """Turn botocore exceptions raised inside the block into HyperError (HyperError passes through)."""
    try:
        yield
    except HyperError:
        raise
    except Exception as exc:
        module = type(exc).__module__ or ""
        if module.startswith(("botocore", "boto3", "urllib3")):
            raise translate(exc, host, service, action) from None
        raise
