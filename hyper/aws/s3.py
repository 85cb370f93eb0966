"""The host's S3 bucket: split parts, staged files and part outputs of jobs on an aws host.

The main region's stack creates it (hyper/aws/templates.py, ``render_main_stack``): encrypted (SSE-S3),
public access blocked, every object expired by a lifecycle rule after the host's retention, so parts and
staged files go away with the finished jobs they belong to. Its name is the host's prefix, ``data-`` and the
account id (bucket names are global), unless the host's ``bucket`` setting or ``HYPER_BUCKET`` names another.
Transfers use boto3's managed transfer (multipart for large files, never a whole file in memory).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from hyper.aws import session as aws
from hyper.config import Host
from hyper.errors import HyperError

_accounts: dict[tuple, str] = {}


def bucket_stem(host: Host) -> str:
    """The host prefix as a bucket-name part: lower case, only letters, digits and `-`."""
    from hyper.aws.names import prefix

    stem = re.sub(r"[^a-z0-9-]+", "-", prefix(host).lower()).strip("-")
    return (stem or "hyper") + "-data-"


def bucket_name(host: Host) -> str:
    explicit = os.environ.get("HYPER_BUCKET") or (host.extra or {}).get("bucket")
    if explicit:
        return str(explicit)
    key = (host.profile, aws.endpoint_of(host), aws.region_of(host))
    account = _accounts.get(key)
    if account is None:
        with aws.aws_errors(host, "sts", "find the account of the host's bucket"):
            account = aws.client(host, "sts").get_caller_identity()["Account"]
        _accounts[key] = account
    return (bucket_stem(host) + account)[:63]


def _client(host: Host) -> aws.AwsClient:
    return aws.client(host, "s3")


def upload(host: Host, path: str | os.PathLike, key: str) -> None:
    import boto3.exceptions

    bucket = bucket_name(host)
    try:
        client = _client(host)
        client.upload_file(str(path), bucket, key)
    except boto3.exceptions.S3UploadFailedError as exc:  # (boto3's transfer wraps the ClientError in this)
        if "NoSuchBucket" in str(exc):
            raise HyperError(f"the host's bucket {bucket} does not exist ({aws.where_text(host)})",
                             "an admin creates it by redeploying the main region: hyper regions update-region "
                             f"{host.main_region or 'MAIN'}") from None
        raise HyperError(f"upload of {path} to s3://{bucket}/{key} failed: {' '.join(str(exc).split())}",
                         "check the host's credentials and the bucket") from None
    except HyperError:
        raise
    except Exception as exc:
        raise aws.translate(exc, host, "s3", f"upload {path} to s3://{bucket}/{key}") from None


def download(host: Host, key: str, path: str | os.PathLike) -> None:
    """Fetch one object to a file (its directory is made); a missing object is a one-line error."""
    import botocore.exceptions as bx

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    bucket = bucket_name(host)
    try:
        _client(host).download_file(bucket, key, str(path))
    except bx.ClientError as exc:
        if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            raise HyperError(f"s3://{bucket}/{key} does not exist",
                             "it expired with the job's retention, or the upload at submit failed") from None
        raise aws.translate(exc, host, "s3", f"download s3://{bucket}/{key}") from None


def exists(host: Host, key: str) -> bool:
    import botocore.exceptions as bx

    try:
        _client(host).head_object(Bucket=bucket_name(host), Key=key)
        return True
    except bx.ClientError as exc:
        if aws.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
            return False
        raise aws.translate(exc, host, "s3", f"look for s3://{bucket_name(host)}/{key}") from None


def delete_prefix(host: Host, prefix: str) -> int:
    """Delete every object under a prefix (a submission that failed half-way leaves nothing behind)."""
    client, bucket, deleted = _client(host), bucket_name(host), 0
    with aws.aws_errors(host, "s3", f"delete s3://{bucket}/{prefix}"):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=bucket, Delete={"Objects": keys, "Quiet": True})
                deleted += len(keys)
    return deleted
