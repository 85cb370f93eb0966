"""Local workers: ``hyper worker run`` processes on this machine, started by the local host's agent.

The agent (:class:`hyper.backends.local.LocalAgent`) keeps supervising its processes (reaping, orphan
kills, lease sweeps); for provisioning it runs the same generic tick as the cloud scheduler with this backend:
the inventory is the agent's live workers, the one place is ``localhost`` with the cluster's vCPUs (default:
this machine's cores) and GPUs as caps, a request is the worker argv, and submitting spawns the processes.
"""

from __future__ import annotations

import os
import signal
import sys
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

from hyper.backends.base import Inventory, Pair, Submitted, WorkerState
from hyper.models import Cluster
from hyper.store.base import WorkerInfo

PLACE = "localhost"

# the store's local worker states in the one worker-state language
LOCAL_STATES: dict[str, WorkerState] = {
    "STARTING": WorkerState.STARTING, "IDLE": WorkerState.RUNNING, "BUSY": WorkerState.RUNNING,
    "EXITED": WorkerState.SUCCEEDED,
}


@dataclass
class LocalRequest:
    queue: str
    definition: str
    workers: int
    argv: list[str]  # each worker gets its own --worker-id and --workdir when spawned
    region: str = PLACE

    @property
    def job_name(self) -> str:
        return f"{self.queue}-{self.definition}"

    def to_dict(self) -> dict:
        return {"backend": "local", "region": self.region, "queue": self.queue, "definition": self.definition,
                "workers": self.workers, "argv": self.argv}


class LocalBackend:
    kind: ClassVar[str] = "local"
    place: ClassVar[str] = PLACE  # one place to run, whatever regions and weights say

    def __init__(self, agent: Any, live: Sequence[Any] = ()):
        self.agent = agent
        self.live = list(live)  # WorkerInfo of workers that count (the agent already dropped dead ones)

    def capacity(self, cluster: Cluster, region: str) -> tuple[int, int | None]:
        return int(cluster.max_vcpus or os.cpu_count() or 1), int(cluster.gpus_per_instance or 0)  # as before: 0 GPUs

    def inventory(self, pairs: Sequence[Pair], known_pairs: Sequence[tuple[str, str]]) -> Inventory:
        inv = Inventory()
        clusters = {p.cluster.name for p in pairs}
        for c in clusters:
            inv.usable.add((c, PLACE))
            inv.known.add((c, PLACE))
        store = self.agent.store
        queues = {q.name: q for q in store.list_resources("queue")}
        definitions = {d.name: d for d in store.list_resources("definition")}
        for w in self.live:
            if LOCAL_STATES.get(w.state, WorkerState.RUNNING) not in (WorkerState.STARTING, WorkerState.RUNNING):
                continue
            inv.add_live(w.queue, w.definition, PLACE, 1)
            q, d = queues.get(w.queue), definitions.get(w.definition)
            if q is not None and d is not None:
                inv.add_used(q.cluster, PLACE, d.vcpus)
                inv.used_gpus[(q.cluster, PLACE)] = inv.used_gpus.get((q.cluster, PLACE), 0) + d.gpus
        return inv

    def prepare(self, pairs: dict[tuple[str, str], Pair], wanted: dict[tuple[str, str], int]) -> list[str]:
        return []

    def render(self, counts: dict[tuple[str, str, str], int], pairs: dict[tuple[str, str], Pair],
               tick: str) -> list[LocalRequest]:
        host = self.agent.host.name
        return [LocalRequest(q, d, n, [sys.executable, "-m", "hyper.cli", "--host", host, "worker", "run",
                                       "--queue", q, "--definition", d])
                for (q, d, _), n in sorted(counts.items()) if n > 0]

    def submit(self, requests: Sequence[LocalRequest]) -> list[tuple[Submitted | None, str | None]]:
        out: list[tuple[Submitted | None, str | None]] = []
        for req in requests:
            for _ in range(req.workers):
                wid = self.agent._spawn(req.queue, req.definition)
                out.append((Submitted(PLACE, req.queue, req.definition, 1, req.job_name, str(wid or ""),
                                      self.kind), None))
        return out

    def cancel(self, worker_ids: Sequence[str]) -> list[bool]:
        out = []
        for wid in worker_ids:
            child = self.agent.children.get(wid)
            if child is not None and child.poll() is None:
                child.send_signal(signal.SIGTERM)
                out.append(True)
            else:
                out.append(False)
        return out

    def ended(self, workers: Sequence[WorkerInfo]) -> list[str]:
        """None here: the local agent requeues a dead worker's jobs itself, the moment its process exits."""
        return []

    def hourly_price(self, pair: Pair, region: str) -> float | None:
        return 0.0  # this machine is already paid for
