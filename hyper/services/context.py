"""Opening a host: which store it uses, and the defaults a fresh local host needs to run `qsub job.sh`."""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from hyper.config import Host, Settings, current_host
from hyper.errors import HyperError
from hyper.store.base import Store

DEFAULT_QUEUE = "default"
DEFAULT_DEFINITION = "default"
LOCAL_CLUSTER = "local"


class Context:
    """What every service call needs: the host, its store and the timing settings.

    A plain class, not a dataclass: creating one costs about a millisecond of every q-command's start-up
    (issue 15), and nothing compares or copies contexts."""

    def __init__(self, host: Host, settings: Settings) -> None:
        self.host = host
        self.settings = settings

    def __repr__(self) -> str:
        return f"Context(host={self.host!r}, settings={self.settings!r})"

    @cached_property
    def store(self) -> Store:
        return open_store(self.host)

    @property
    def logs_dir(self) -> Path:
        return self.host.data_dir / "logs"


def open_context(host_name: str | None = None) -> Context:
    return Context(current_host(host_name), Settings.from_env())


def open_store(host: Host) -> Store:
    if host.type == "local":
        from hyper.store.sqlite import SQLiteStore

        store = SQLiteStore(host.data_dir / "hyper.db")
        bootstrap_local(store)
        return store
    if host.type == "aws":
        from hyper.store.dynamodb import DynamoStore  # boto3 is imported only here, never on the local path

        return DynamoStore(host)
    raise HyperError(f"host {host.name!r} has unknown type {host.type!r}",
                     "fix its type in $HYPER_HOME/hosts.yaml (local or aws)")


def local_gpu_count() -> int:
    """GPUs a local host may hand out: HYPER_LOCAL_GPUS, else the devices nvidia-smi lists, else 0."""
    raw = os.environ.get("HYPER_LOCAL_GPUS")
    if raw is not None:
        return int(raw) if raw.isdigit() else 0
    import shutil
    import subprocess

    if not shutil.which("nvidia-smi"):
        return 0
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def host_size() -> tuple[int, int]:
    """This machine's cores and memory (MiB; 0 when unknown): the most a local host can ever give one worker."""
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1024 * 1024)
    except (ValueError, OSError):
        memory = 0
    return os.cpu_count() or 1, memory


def bootstrap_local(store: Store) -> None:
    """A fresh local host gets a `local` cluster (all cores), a `default` queue and definition."""
    if store.get_resource("queue", DEFAULT_QUEUE) is not None:
        return
    from hyper.models import Cluster, Definition, Queue  # here: only a fresh host creates them

    if store.get_resource("cluster", LOCAL_CLUSTER) is None:
        store.put_resource(Cluster(name=LOCAL_CLUSTER, type="local", max_vcpus=os.cpu_count() or 1,
                                   gpus_per_instance=local_gpu_count()), replace=True)
    if store.get_resource("definition", DEFAULT_DEFINITION) is None:
        store.put_resource(Definition(name=DEFAULT_DEFINITION, image="local", vcpus=1, memory_mib=1024,
                                      retries=1, ratio=1), replace=True)
    store.put_resource(Queue(name=DEFAULT_QUEUE, cluster=LOCAL_CLUSTER), replace=True)
