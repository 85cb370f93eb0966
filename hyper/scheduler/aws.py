"""The aws host's scheduler, as it was called before the generic tick: kept so callers and tests that build a
``BatchScheduler`` with an in-memory Batch keep working. The tick itself is :mod:`hyper.scheduler.loop`; the
Batch specifics are :mod:`hyper.backends.batch`."""

from __future__ import annotations

import time
from typing import Any, Callable

from hyper.aws.batch import BatchApi
from hyper.backends.base import Submitted, problem  # noqa: F401  (re-exported)
from hyper.backends.batch import DEFAULT_SUBMIT_RATE, BatchBackend, TokenBucket  # noqa: F401
from hyper.config import Host
from hyper.errors import HyperError
from hyper.scheduler.loop import (PlanRow, Scheduler, TickReport, effective_weights, enabled_regions,  # noqa: F401
                                  region_cap, tick_id)
from hyper.store.base import Store


def BatchScheduler(host: Host, store: Store, *, api: BatchApi | None = None,
                   clock: Callable[[], float] = time.time, sleep: Callable[[float], None] = time.sleep,
                   submit_rate: float | None = None, worker_idle: float | None = None,
                   throttle_budget: float = 120.0, max_threads: int = 16,
                   weights_clients: Callable[[str], Any] | None = None, backends: dict | None = None) -> Scheduler:
    """The aws host's scheduler with its Batch backend built from these settings (other backends: registry)."""
    if host.type != "aws":
        raise HyperError(f"host {host.name!r} is a local host: its agent schedules workers itself",
                         "`hyper scheduler run` is for aws hosts; on a local host qsub starts the agent "
                         "(or run `hyper agent run`)")
    batch = BatchBackend(host, store, api=api, clock=clock, sleep=sleep, submit_rate=submit_rate,
                         worker_idle=worker_idle, throttle_budget=throttle_budget, max_threads=max_threads)
    return Scheduler(host, store, backends={"batch": batch, **(backends or {})}, clock=clock, sleep=sleep,
                     worker_idle=worker_idle, weights_clients=weights_clients)
