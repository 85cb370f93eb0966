"""The host's storage area for workflow files: parts of split inputs, staged files, part outputs.

Local host: a directory under the host's data directory (``<data dir>/workflows``), so parts never leave the
machine and a "transfer" is a rename or a copy. aws host: the host's S3 bucket (hyper/aws/s3.py), which
workers on any region reach; boto3 is imported only there. Keys look the same on both:
``parts/<token>/part-000001``, ``stage/<token>/in/0-data.csv``, ``stage/<token>/out/0-result.txt``,
``outputs/<array id>/<index>.out``.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TypeAlias

from hyper.config import Host
from hyper.errors import HyperError


class LocalArea:
    kind = "file"

    def __init__(self, host: Host):
        self.host = host
        self.root = host.data_dir / "workflows"

    def path(self, key: str) -> Path:
        return self.root / key

    def scratch(self, key: str) -> Path:
        """Where a producer writes a file before ``put``: beside its final place, so put is a rename."""
        path = self.root / ".tmp" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, path: Path, key: str, *, move: bool = False) -> None:
        dest = self.path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if move:
            os.replace(path, dest)
        else:
            shutil.copyfile(path, dest)

    def get(self, key: str, dest: Path) -> None:
        src = self.path(key)
        if not src.exists():
            raise HyperError(f"{src} does not exist", "it was removed with the job's retention")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    def delete(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)
        shutil.rmtree(self.root / ".tmp" / prefix, ignore_errors=True)


class S3Area:
    kind = "s3"

    def __init__(self, host: Host, scratch_dir: Path | None = None):
        self.host = host
        self._scratch = scratch_dir or host.data_dir / "scratch"

    def scratch(self, key: str) -> Path:
        path = self._scratch / key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def put(self, path: Path, key: str, *, move: bool = False) -> None:
        from hyper.aws import s3

        s3.upload(self.host, path, key)
        if move:
            Path(path).unlink(missing_ok=True)

    def get(self, key: str, dest: Path) -> None:
        from hyper.aws import s3

        s3.download(self.host, key, dest)

    def exists(self, key: str) -> bool:
        from hyper.aws import s3

        return s3.exists(self.host, key)

    def delete(self, prefix: str) -> None:
        from hyper.aws import s3

        shutil.rmtree(self._scratch / prefix, ignore_errors=True)  # first: the bucket may be what failed
        s3.delete_prefix(self.host, prefix)

    def url(self, key: str) -> str:
        from hyper.aws import s3

        return f"s3://{s3.bucket_name(self.host)}/{key}"


Area: TypeAlias = "LocalArea | S3Area"


def area_for(host: Host) -> Area:
    return S3Area(host) if host.type == "aws" else LocalArea(host)
