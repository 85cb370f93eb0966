"""Self-fencing: a job never outlives its worker's lease, even when the worker itself is frozen.

Two parts:

- ``LeaseKeeper`` is the worker's side. It renews the lease every lease/3 (on DynamoDB, where a renewal is a
  write, a long job's lease grows with its age up to ``max_lease`` and renewals come half a lease apart; see
  docs/dynamodb.md) and, on a schedule of their own, *peeks* at the job's state for ``qdel`` (a cheap read),
  every fifth of the job's age between 2 s and ``peek_ceiling``: a qdel soon after the start (the common case:
  a wrong submission) is seen within seconds, and a one-hour job costs ~78 peeks, not 3,600. It knows until
  when the last successful renewal holds; once a renewal can no longer land in time it tells the runner to stop
  the job (SIGTERM, SIGKILL by the lease's end), so the sweep, which waits lease + margin, never hands the job
  to a second worker while the first attempt still runs.
- A worker that is frozen (SIGSTOP, a stalled VM, a long GC pause) cannot stop anything. So on an aws host the
  worker also runs a watchdog process (``python -m hyper.worker.fence``, one per worker, started with its first
  job, in its own session) that holds the running job's process group and lease end in a small file the worker
  rewrites at each start and renewal ("<pgid> <epoch seconds>", replaced atomically). If the end passes without
  a renewal, the watchdog sends the group SIGTERM ``grace`` seconds before it and SIGKILL at it. It exits once
  the worker is gone and so is its job.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

from hyper.states import JobState

TICK = 0.2  # the watchdog's resolution


PEEK_FLOOR = 2.0  # seconds between a young job's qdel checks (LeaseKeeper._peeked)
RETRY_SLACK = 10.0  # a renewal half a lease after the last must leave this long to retry it (renew_gap)


class LeaseKeeper:
    """``check()`` for run_attempt: renew every ``renew_every``, peek otherwise, fence when renewals fail.

    Returns the job's state (RUNNING / DELETED / ...), or None when this worker must stop the job: another
    worker owns it now, or the lease can no longer be renewed before it ends (``self.fenced`` says which).
    """

    def __init__(self, renew: Callable[[float], JobState | None], peek: Callable[[], JobState | None],
                 lease: float, renew_every: float, stop_before: float, now: Callable[[], float] = time.time,
                 on_renew: Callable[[float], None] | None = None, until: float | None = None,
                 peek_ceiling: float = 1.0, max_lease: float | None = None):
        self.renew, self.peek, self.lease = renew, peek, lease
        self.renew_every = renew_every
        # a long job's lease grows with its age (twice the time it has run, up to max_lease), and renewals come
        # half a lease apart (renew_gap): a one-hour job beats 11 times (max_lease 900 s) instead of 180 (each beat
        # is a DynamoDB write). What it costs: a worker that dies without its backend noticing holds its job for
        # up to the lease it last took; the scheduler requeues the jobs of workers their backend saw end at once.
        self.max_lease = max_lease if max_lease is not None and max_lease > lease else lease
        self.stop_before = stop_before  # stop the job this long before the lease ends (the kill grace)
        self.now = now
        self.on_renew = on_renew
        start = now()
        self.until = until if until is not None else start + lease  # the claim's lease
        self.next_renew = self.until - lease + self.renew_gap(lease)  # counted from the claim
        self.started = start
        self.peek_ceiling = peek_ceiling
        self.next_peek = start
        self.peeks = self.renewals = 0
        self.fenced = ""
        self.errors: list[str] = []

    def lease_at(self, t: float) -> float:
        """The lease a renewal at ``t`` takes: the base lease, or twice the job's age up to ``max_lease``."""
        return min(self.max_lease, max(self.lease, 2 * (t - self.started)))

    def renew_gap(self, lease: float) -> float:
        """Seconds from a renewal that took ``lease`` to the next. Where leases grow (``max_lease``: DynamoDB, a
        renewal is a write), half the lease once the other half leaves RETRY_SLACK seconds or more for retries
        (one a second) before the job is stopped: an hour then costs 11 renewals instead of 17. Else a third."""
        gap = self.renew_every * lease / self.lease
        if self.max_lease > self.lease and lease / 2 - self.stop_before >= RETRY_SLACK:
            return max(gap, lease / 2)
        return gap

    def renew_if_due(self) -> JobState | None:
        """Before the job starts: a claim that took a while to get going renews at once (no read otherwise)."""
        return self() if self.now() >= self.next_renew else JobState.RUNNING

    def __call__(self) -> JobState | None:
        t = self.now()
        if t >= self.next_renew:
            lease = self.lease_at(t)
            try:
                self.renewals += 1
                state = self.renew(t + lease)
            except Exception as exc:  # DynamoDB unreachable or throttled: try again at the next check
                self.errors.append(f"{type(exc).__name__}: {exc}")
                state = JobState.RUNNING
            else:
                if state is not None:
                    self.until = t + lease
                    self.next_renew = t + self.renew_gap(lease)
                    if self.on_renew is not None:
                        self.on_renew(self.until)
                if state is not JobState.RUNNING:
                    return self._fence_if_late(state)
            # a renewal of the worker's own item reads nothing (DynamoDB): qdel is seen by the peeks below
        if t < self.next_peek:
            return self._fence_if_late(JobState.RUNNING)
        try:
            self.peeks += 1
            state = self.peek()
            self._peeked(t)
        except Exception as exc:
            self.errors.append(f"{type(exc).__name__}: {exc}")
            state = JobState.RUNNING
        return self._fence_if_late(state)

    def _peeked(self, t: float) -> None:
        """The next qdel check: a fifth of the job's age from now, 2 s at first, ``peek_ceiling`` at most (60 s on
        DynamoDB, where a check is half a read unit; 1 s on SQLite). A job qdel'd in its first minutes stops
        within seconds; an hour of running costs about 75 checks."""
        self.next_peek = t + min(self.peek_ceiling, max(PEEK_FLOOR, (t - self.started) / 5))

    def _fence_if_late(self, state: JobState | None) -> JobState | None:
        if state is not None and self.now() >= self.until - self.stop_before:
            self.fenced = (f"the lease could not be renewed before it ended "
                           f"({self.errors[-1] if self.errors else 'no renewal landed'})")
            return None
        return state


class Watchdog:
    """The worker's out-of-process fence (see the module docstring): one process per worker, started with its
    first job; ``arm(pgid, until)`` for each job and after each renewal, ``disarm()`` when the job ended."""

    def __init__(self, directory: Path, grace: float):
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"fence-{os.getpid()}-{id(self):x}"
        self.disarm()
        self.proc = subprocess.Popen([sys.executable, "-m", "hyper.worker.fence", str(os.getpid()), str(self.path),
                                      str(grace)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True, close_fds=True)
        # (no pipe of the worker's: whoever waits for a killed worker's output must not wait for the watchdog)

    def arm(self, pgid: int, until: float) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(f"{pgid} {until!r}")
        os.replace(tmp, self.path)

    def disarm(self) -> None:
        self.arm(0, 0.0)

    def close(self) -> None:
        """The worker exits: stop the watchdog and remove its file."""
        self.disarm()
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        try:
            self.path.unlink()
        except OSError:
            pass


def _alive(pid: int, group: bool = False) -> bool:
    try:
        (os.killpg if group else os.kill)(pid, 0)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def watch(worker: int, path: Path, grace: float) -> int:
    """The watchdog's loop: stop the armed process group when its lease runs out. Returns when the worker is
    gone and so is the job it ran (a killed worker's job still stops at its lease's end)."""
    pgid, until, termed = 0, 0.0, False
    while True:
        try:
            text = path.read_text().split()
            armed = (int(text[0]), float(text[1]))
        except (OSError, ValueError, IndexError):
            armed = (pgid, until)  # being replaced, or removed: keep the last value
        if armed != (pgid, until):
            if armed[0] != pgid or armed[1] - grace > time.time():
                termed = False  # another job, or renewed after all
            pgid, until = armed
        job_alive = pgid > 0 and _alive(pgid, group=True)
        if not job_alive and not _alive(worker):
            return 0
        t = time.time()
        if job_alive and t >= until:
            _signal(pgid, signal.SIGKILL)
        elif job_alive and t >= until - grace and not termed:
            termed = _signal(pgid, signal.SIGTERM)
        time.sleep(TICK)


def _signal(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


if __name__ == "__main__":
    sys.exit(watch(int(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])))
