"""The embedded local host's compute: an on-demand agent that plans and supervises worker processes.

`qsub` calls :func:`ensure_agent`; if no agent holds the host's lock, one is started detached from the
submitting shell (its own session, output to ``agent.log``). The agent runs the same planner as the
cloud scheduler, starts ``hyper worker run`` processes, requeues the jobs of workers that die, sweeps
expired leases, and exits after ``agent_idle`` seconds with nothing queued, running or alive.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import FrameType
from typing import Iterator, TextIO

from hyper.config import Host, Settings, private_dir, private_file
from hyper.errors import DiskFullError, HyperError
from hyper.models import Job
from hyper.states import WorkerActivity
from hyper.store.base import Store, WorkerInfo
from hyper.worker import containment
from hyper.worker.runner import kill_group


def lock_path(host: Host) -> Path:
    return host.data_dir / "agent.lock"


def agent_running(host: Host) -> bool:
    """True when some process holds the agent lock (a probe: takes and drops it if free)."""
    path = lock_path(host)
    if not path.exists():
        return False
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


@contextlib.contextmanager
def agent_excluded(host: Host) -> Iterator[bool]:
    """Hold the agent lock so no agent runs meanwhile (purging a host); False if one already runs."""
    path = lock_path(host)
    if not path.parent.exists():
        yield True
        return
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_agent(host: Host) -> bool:
    """Start the agent in the background unless one runs; returns True if it started one."""
    if agent_running(host):
        return False
    private_dir(host.data_dir)
    log = os.fdopen(private_file(host.data_dir / "agent.log"), "ab")
    try:
        subprocess.Popen([sys.executable, "-m", "hyper.cli", "--host", host.name, "agent", "run"],
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                         close_fds=True, cwd=str(host.data_dir))
    finally:
        log.close()
    return True


def kill_orphan(job: Job) -> None:
    """Kill what is left of a lost worker's job before the job may run again anywhere.

    Three ways to find it, each safe against pid reuse: the worker's cgroup (named by the worker id in the
    job's row; holds every process the job started), the job's process group when its leader's environment
    names this job, and any process whose environment names this job *and attempt* (daemons that left the
    group). Thanks to the start gate (hyper/worker/runner.py) a job with no recorded pid never ran.
    """
    if job.worker:
        group = containment.worker_cgroup(job.worker)
        if group is not None:
            containment.kill_cgroup(group)
    if job.pid:
        try:
            environ = Path(f"/proc/{job.pid}/environ").read_bytes()
        except OSError:  # gone (ENOENT, or ESRCH while it is being reaped) or not ours to read
            environ = None
        if environ is not None and f"HYPER_JOB_ID={job.job_id}\0".encode() in environ:
            kill_group(job.pid, signal.SIGKILL)
    for pid in containment.processes_of(job.job_id, job.attempts):
        kill_group(pid, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is dead for our purposes
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _is_worker(pid: int | None, worker_id: str) -> bool:
    """True if ``pid`` is alive and is the ``hyper worker run`` process of this worker id (not a reused pid)."""
    if not _pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return f"\0{worker_id}\0".encode() in cmdline + b"\0"


class LocalAgent:
    """Scheduler + worker supervisor for one local host. Exactly one runs per host (flock)."""

    def __init__(self, host: Host, store: Store, settings: Settings):
        self.host = host
        self.store = store
        self.settings = settings
        self.children: dict[str, subprocess.Popen] = {}
        self.slots: dict[str, int] = {}  # worker id -> work directory slot, reused by the next worker
        self.gpus: dict[str, list[int]] = {}  # worker id -> the GPUs it (and so its one running job) owns
        self._stop = False
        self._lock_fh: TextIO | None = None  # held open while the agent runs: the flock is its lock
        self._said: set[str] = set()  # scheduling problems already logged

    def acquire(self) -> bool:
        private_dir(self.host.data_dir)
        fh = self._lock_fh = os.fdopen(private_file(lock_path(self.host), os.O_RDWR | os.O_CREAT | os.O_APPEND), "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        return True

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        idle_since = time.monotonic()
        last_sweep = 0.0
        log(f"agent {os.getpid()} started for host {self.host.name}")
        containment.prune_empty()
        backoff = 0.0  # > 0 while the disk is full: one warning, then ticks slow down until space returns
        while not self._stop:
            now = time.time()
            try:
                busy = self._tick(now, last_sweep)
            except DiskFullError as exc:
                if not backoff:
                    log(f"warning: {exc.message}; retrying with back-off until there is room")
                backoff = min(max(backoff * 2, 0.5), 5.0)
                idle_since = time.monotonic()
                time.sleep(backoff)
                continue
            if backoff:
                log("disk space is back; scheduling resumes")
                backoff = 0.0
            if time.monotonic() - last_sweep >= 1.0:
                last_sweep = time.monotonic()
            if busy:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since >= self.settings.agent_idle:
                log(f"agent {os.getpid()} idle for {self.settings.agent_idle:g} s; exiting")
                break
            time.sleep(self.settings.tick)
        for child in self.children.values():
            child.wait()  # on SIGTERM workers got it too (own sessions: we forward it below)
        return 0

    def _tick(self, now: float, last_sweep: float) -> bool:
        """One pass: reap, sweep leases (once a second), provision; True while there is anything to do."""
        self._reap(now)
        if time.monotonic() - last_sweep >= 1.0:
            for job in self.store.requeue_expired(now, kill_orphan):
                log(f"job {job.job_id}: lease expired on worker {job.worker}; now {job.state.value}")
            self._workflow_sweep(now)
        backlog = self.store.backlog()
        live = self._live_workers(now)
        started = self._provision(backlog, live)
        return bool(backlog) or bool(live) or bool(self.children) or started or bool(self._notices_open)

    _notices_open = 0
    _sweeper: threading.Thread | None = None

    def _workflow_sweep(self, now: float) -> None:
        """Completion notices nobody sent (qdel, lost workers, retries) and expired parts, in a thread so a slow
        receiver never stalls scheduling; the agent stays up while notices of ended jobs wait for a retry."""
        if self._sweeper is not None and self._sweeper.is_alive():
            return

        def run() -> None:
            from hyper.workflows.hooks import sweep

            try:
                self._notices_open = sweep(self.store, self.host, f"agent-{os.getpid()}", now)
            except HyperError as exc:
                log(f"workflow sweep: {exc.message}")

        self._sweeper = threading.Thread(target=run, name="hyper-workflow-sweep", daemon=True)
        self._sweeper.start()

    def shutdown_children(self) -> None:
        for child in self.children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)

    def _reap(self, now: float) -> None:
        for wid, child in list(self.children.items()):
            code = child.poll()
            if code is None:
                continue
            del self.children[wid]
            self.slots.pop(wid, None)
            self.gpus.pop(wid, None)
            for job in self.store.requeue_worker(wid, now, kill_orphan):
                log(f"job {job.job_id}: worker {wid} exited ({code}); now {job.state.value}")
            self._forget_cgroup(wid)
        if self._stop:
            self.shutdown_children()

    def _live_workers(self, now: float) -> list[WorkerInfo]:
        """Workers that count against capacity: every worker process alive, busy or idle, ours or one a previous
        agent left behind. Liveness is the process (pid and command line), not the heartbeat: a worker busy
        with a long job does not refresh its row, and must still count. Dead ones are dropped here, their jobs
        requeued after what is left of them is killed."""
        live = []
        for w in self.store.list_workers(live_since=0.0):
            if w.id in self.children or _is_worker(w.pid, w.id):
                live.append(w)
            elif w.pid is None and w.started and w.started > now - 10.0:
                live.append(w)  # registered by a previous agent a moment before it spawned the process
            else:
                for job in self.store.requeue_worker(w.id, now, kill_orphan):
                    log(f"job {job.job_id}: worker {w.id} is gone; now {job.state.value}")
                self._forget_cgroup(w.id)
        return live

    @staticmethod
    def _forget_cgroup(wid: str) -> None:
        group = containment.worker_cgroup(wid)
        if group is not None:
            containment.kill_cgroup(group)

    def _provision(self, backlog: dict[tuple[str, str], int], live: list[WorkerInfo]) -> bool:
        """Start workers for the backlog: the generic scheduler tick with the local backend (the agent
        already swept leases and dropped dead workers, so the tick does neither)."""
        if not backlog:
            return False
        from hyper.backends.processes import LocalBackend
        from hyper.scheduler.loop import Scheduler

        report = Scheduler(self.host, self.store, backends={"local": LocalBackend(self, live)}, kinds=("local",),
                           sweep=False).tick(backlog=backlog)
        problems = set(report.problems)
        for line in sorted(problems - self._said):  # each problem once while it lasts, not every tick
            log(line)
        self._said = problems
        return bool(report.submitted)

    def _take_gpus(self, wid: str, definition: str) -> list[int] | None:
        """GPU ids for a new worker, none of them held by a live worker: a job sees only its own devices in
        CUDA_VISIBLE_DEVICES. On a host with GPUs, a worker whose definition has none gets an empty list,
        so its jobs see no GPU at all. None: this host has no GPUs to hand out."""
        from hyper.services.context import local_gpu_count

        total = local_gpu_count()
        if not total:
            return None
        d = self.store.get_resource("definition", definition)
        wanted = int(getattr(d, "gpus", 0) or 0)
        held = {g for ids in self.gpus.values() for g in ids}
        free = [g for g in range(total) if g not in held]
        if wanted > len(free):  # the planner counts GPUs per cluster; a worker never starts without its own
            raise HyperError(f"worker for definition {definition!r} needs {wanted} GPU(s); {len(free)} free")
        self.gpus[wid] = free[:wanted]
        return self.gpus[wid]

    def _spawn(self, queue: str, definition: str) -> str:
        wid = f"w{uuid.uuid4().hex[:10]}"
        now = time.time()
        gpus = self._take_gpus(wid, definition)  # before registering: a worker without its GPUs never starts
        # registered before it starts, so the next tick counts it and does not start another
        self.store.register_worker(WorkerInfo(wid, queue, definition, "localhost", None, now, now,
                                                WorkerActivity.STARTING))
        slot = min(set(range(len(self.slots) + 1)) - set(self.slots.values()))
        self.slots[wid] = slot
        workdir = self.host.data_dir / "work" / f"slot-{slot}"
        argv = [sys.executable, "-m", "hyper.cli", "--host", self.host.name, "worker", "run",
                "--queue", queue, "--definition", definition, "--worker-id", wid, "--workdir", str(workdir)]
        if gpus is not None:
            argv += ["--gpus", ",".join(str(g) for g in gpus)]
        log_file = open(self.host.data_dir / "agent.log", "ab")
        try:
            child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                                     start_new_session=True, close_fds=True)
        finally:
            log_file.close()
        self.children[wid] = child
        self.store.register_worker(WorkerInfo(wid, queue, definition, "localhost", child.pid, now, now,
                                                WorkerActivity.STARTING))
        log(f"started worker {wid} (pid {child.pid}) for queue {queue}, definition {definition}")
        return wid


def log(message: str) -> None:
    try:
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {message}\n")
        sys.stderr.flush()
    except OSError:
        pass  # agent.log is on a full disk: the agent must keep running regardless
