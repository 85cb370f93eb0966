"""The worker-backend protocol every compute type implements, and the shapes the generic scheduler tick passes.

A backend answers four questions for the tick in :mod:`hyper.scheduler.loop` (in the spirit of Parsl's
providers and dask-jobqueue's one class per scheduler):

* ``inventory``: which of our workers exist per (queue, definition, region) and in what :class:`WorkerState`,
  which regions can take new workers, what is already using each region's capacity;
* ``prepare``: last checks that need the backend's API before rendering (a Batch job definition's revision,
  an EKS namespace); a region that fails them is dropped from the pair's weights with one problem line;
* ``render``: **pure**; the exact requests that would start the planned workers (``--dry-run`` prints them);
* ``submit`` and ``cancel``;
* ``ended``: which registered workers (not EXITED in the store) the backend has seen end (a Batch job
  SUCCEEDED/FAILED, a pod Succeeded/Failed): the tick requeues their jobs at once instead of waiting for their
  lease, which on DynamoDB grows with a long job's age (hyper/worker/fence.py);
* ``capacity``: the cluster's (vCPUs, GPUs or None) cap in a region; ``hourly_price``: one worker's USD/h
  there (spend limits).

Each backend translates its own states (Batch job statuses, pod phases, local process states) to the one
:class:`WorkerState` through a table kept next to it, so the tick and the reports speak one language.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, Sequence

from hyper.errors import HyperError
from hyper.models import Cluster, Definition, Queue
from hyper.store.base import WorkerInfo


class WorkerState(str, enum.Enum):
    PENDING = "PENDING"  # asked for, waiting for capacity (Batch SUBMITTED..RUNNABLE, pod Pending)
    STARTING = "STARTING"  # placed, container starting
    RUNNING = "RUNNING"
    STUCK = "STUCK"  # pending longer than the host's stuck limit: not counted as live, shown with a reason
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    UNKNOWN = "UNKNOWN"

    @property
    def live(self) -> bool:
        """Counts against the target: asked for or running, and not given up on."""
        return self in (WorkerState.PENDING, WorkerState.STARTING, WorkerState.RUNNING, WorkerState.UNKNOWN)


@dataclass
class Pair:
    """One (queue, definition) with queued work, on its cluster, as the tick plans it."""

    queue: Queue
    definition: Definition
    cluster: Cluster
    backlog: int
    regions: list[str]  # regions shown in the plan (the queue's weighted regions)
    weights: dict[str, int]  # weights still usable this tick (backends drop regions they cannot use)
    enabled: list[str]  # every usable region of the cluster: workers there count as live whatever the weights

    @property
    def key(self) -> tuple[str, str]:
        return (self.queue.name, self.definition.name)


@dataclass
class Stuck:
    """Workers waiting too long for capacity: shown with the reason, not counted as live (so they get replaced
    once the cause is fixed, and a definition that can never start does not block its queue silently)."""

    queue: str
    definition: str
    region: str
    workers: int
    since: float  # seconds waiting
    reason: str
    backend: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Inventory:
    """What a backend found in the regions it was asked about."""

    live: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (queue, definition, region) -> workers
    used: dict[tuple[str, str], int] = field(default_factory=dict)  # (cluster, region) -> vCPUs of live workers
    used_gpus: dict[tuple[str, str], int] = field(default_factory=dict)  # (cluster, region) -> their GPUs
    usable: set[tuple[str, str]] = field(default_factory=set)  # (cluster, region) that may get new workers
    known: set[tuple[str, str]] = field(default_factory=set)  # (cluster, region) whose live workers are known
    stuck: list[Stuck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def add_live(self, queue: str, definition: str, region: str, n: int) -> None:
        key = (queue, definition, region)
        self.live[key] = self.live.get(key, 0) + n

    def add_used(self, cluster: str, region: str, vcpus: int) -> None:
        self.used[(cluster, region)] = self.used.get((cluster, region), 0) + vcpus

    def merge(self, other: Inventory) -> None:
        """Add another backend's findings to these: the tick asks each backend about its own pairs only."""
        self.problems.extend(other.problems)
        self.stuck.extend(other.stuck)
        self.usable |= other.usable
        self.known |= other.known
        for k, n in other.live.items():
            self.live[k] = self.live.get(k, 0) + n
        for key, n in other.used.items():
            self.used[key] = self.used.get(key, 0) + n
        for key, n in other.used_gpus.items():
            self.used_gpus[key] = self.used_gpus.get(key, 0) + n


@dataclass
class Request:
    """One request that would start workers: the backend's exact body, which --dry-run prints."""

    backend: str
    region: str
    queue: str
    definition: str
    workers: int
    name: str
    body: Any  # a Batch SubmitJob request, a Kubernetes manifest, a local argv

    def to_dict(self) -> dict:
        return {"backend": self.backend, "region": self.region, "queue": self.queue, "definition": self.definition,
                "workers": self.workers, "name": self.name, "body": self.body}


@dataclass
class Submitted:
    region: str
    queue: str
    definition: str
    workers: int
    job_name: str
    job_id: str
    backend: str = "batch"

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class WorkerBackend(Protocol):
    """One compute type (a ``cluster.type``); see the module docstring for what each step does."""

    kind: ClassVar[str]

    def inventory(self, pairs: Sequence[Pair], known_pairs: Sequence[tuple[str, str]]) -> Inventory: ...

    def prepare(self, pairs: dict[tuple[str, str], Pair], wanted: dict[tuple[str, str], int]) -> list[str]: ...

    def render(self, counts: dict[tuple[str, str, str], int], pairs: dict[tuple[str, str], Pair],
               tick: str) -> list[Any]: ...

    def submit(self, requests: Sequence[Any]) -> list[tuple[Submitted | None, str | None]]: ...

    def cancel(self, worker_ids: Sequence[str]) -> list[bool]: ...

    def ended(self, workers: Sequence[WorkerInfo]) -> list[str]: ...

    def hourly_price(self, pair: Pair, region: str) -> float | None: ...

    def capacity(self, cluster: Cluster, region: str) -> tuple[int, int | None]: ...


def setting(extra: dict, key: str, default: float | None) -> float | None:
    """A numeric host setting (``host.extra``), or `default` when unset; one-line error when not a number."""
    raw = extra.get(key)
    if raw in (None, ""):
        return default
    try:
        return float(raw)
    except (TypeError, ValueError):
        raise HyperError(f"host setting {key}={raw!r} is not a number", f"set it like {key}: 60") from None


def problem(message: str, hint: str | None = None) -> str:
    return message + (f" ({hint})" if hint else "")
