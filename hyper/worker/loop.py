"""The worker: claim a matching job, run it in the reused work directory, record the end, repeat.

It exits after ``idle`` seconds with nothing to claim. It is the same loop on every backend: started by
the local agent as a process, by AWS Batch as an array child, by Kubernetes as a Job pod.

On an aws host each attempt's stdout/stderr is also shipped to CloudWatch Logs while it runs (see
hyper/aws/logs.py); the local files stay the source the shipper tails, and are kept. Logs are flushed
before the attempt's end is recorded, so whoever sees the job finished finds all of its output.

SIGTERM (spot interruption, ``docker stop``): the running job's process group gets SIGTERM, SIGKILL after
the grace period, and the attempt ends as LOST: the store's retry rule (hyper/retry.py, the same on
every host) requeues it for another attempt while it has retries left. The worker then exits.
``qdel``: the state check (every second locally; on DynamoDB, where it is a read, every fifth of the job's
age between 2 s and ``STATE_POLL``) sees DELETED and stops the job the same way. The lease is renewed at most
every lease/3 (lease/2 where it grows), and a worker that cannot renew in time stops its own job before the lease
ends (hyper/worker/fence.py), so the sweep, which waits lease + margin, never starts a second attempt while
the first still runs.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from hyper import diskspace
from hyper.config import private_dir
from hyper.errors import DiskFullError, HyperError
from hyper.models import Definition, Job
from hyper.retry import EXITED, LOST
from hyper.states import JobState, RunOutcome, WorkerActivity
from hyper.store.base import Store, WorkerInfo
from hyper.worker import identity
from hyper.worker.fence import LeaseKeeper, Watchdog
from hyper.outputs import output_paths
from hyper.worker.runner import Outcome, run_attempt, seal_descriptors

if TYPE_CHECKING:
    from hyper.aws.logs import LogShipper, LogWindow, WorkerStreams
    from hyper.config import Host


AHEAD_WHILE_UNDER = 2.0  # seconds: jobs shorter than this are claimed several at a time (see _pace_claims)


@dataclass
class _Shipping:
    """One attempt's output on its way to CloudWatch Logs (aws hosts): the worker's shared streams, the attempt's
    shipper and its window in those streams, kept together so each is at hand where the attempt ends."""

    streams: WorkerStreams
    shipper: LogShipper
    window: LogWindow


def _uses_hooks(job: Job) -> bool:
    """Does the job need the workflow hooks (parts, finaliser inputs, staging, notices)? Asked here, not with
    hyper.workflows.hooks.needs_hooks, so a worker whose jobs need none never imports them."""
    spec = job.spec
    return spec is not None and bool(spec.split or spec.finalizes or spec.stagein or spec.stageout or spec.notify)


class Worker:
    def __init__(self, store: Store, worker_id: str, queue: str, definition: str, workdir: Path,
                 logs_dir: Path, idle: float, lease: float, kill_grace: float, gpu_ids: str | None = None,
                 max_jobs: int | None = None, host: Host | None = None) -> None:
        self.store = store
        self.host = host if host is not None else store.host
        self.aws = getattr(self.host, "type", None) == "aws"  # ship logs to CloudWatch
        self.id = worker_id
        self.queue = queue
        self.definition_name = definition
        self.workdir = workdir
        self.logs_dir = logs_dir
        self.idle = idle
        # longest wait between empty polls: the store says what a poll costs (SQLite: nothing; DynamoDB: a
        # query per ready shard, so an idle worker must not ask five times a second)
        self.poll_ceiling = store.IDLE_POLL_CEILING
        # how often the registry item says IDLE/BUSY (a write on DynamoDB; liveness is the lease renewal)
        self.touch_every = store.TOUCH_EVERY
        self.lease = lease
        self.kill_grace = kill_grace
        self.gpu_ids = gpu_ids
        self.max_jobs = max_jobs
        self.jobs_run = 0
        # a renewal during the last job carried the registry touch (store.RENEWAL_TOUCHES): none due when it ends
        self._touched_by_renewal = False
        self._stop = False
        self.extra_env = identity.job_env(worker_id, self.aws)
        self.log_warnings: list[str] = []
        self._watchdog: Watchdog | None = None  # aws: stops a job past its lease even if this worker freezes
        # aws: this worker's CloudWatch streams, shared by its jobs (hyper/aws/logs.py)
        self._streams: WorkerStreams | None = None
        # jobs claimed ahead (several array elements in one claim where claims are costly: _pace_claims)
        self.claim_ahead = max(1, int(store.CLAIM_AHEAD))
        self._take = 1
        self._ahead: list[Job] = []
        self._ran_for = 0.0

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True  # the running job is stopped and requeued by run_attempt

    def run(self) -> int:
        definition = self.store.get_resource("definition", self.definition_name)
        if not isinstance(definition, Definition):
            raise HyperError(f"unknown definition {self.definition_name!r}",
                             "list definitions with `hyper definitions list-definitions`")
        if threading.current_thread() is threading.main_thread():  # (benchmarks run several in threads)
            signal.signal(signal.SIGTERM, self._on_sigterm)
        private_dir(self.workdir)  # 0700 under HYPER_HOME: job scripts and their files
        seal_descriptors()
        now = time.time()
        if not any(w.id == self.id for w in self.store.list_workers(live_since=now - 60)):
            self.store.register_worker(WorkerInfo(self.id, self.queue, self.definition_name,
                                                  identity.host_text(self.aws), os.getpid(), now, now,
                                                  WorkerActivity.IDLE))
        idle_since = time.monotonic()
        last_touch = 0.0
        backoff = 0.005
        try:
            while not self._stop:
                now = time.time()
                try:
                    job = self._claim(now)
                except HyperError as exc:  # throttled, or many workers racing for one array: not idle, retry
                    self._warn(f"claim failed, retrying: {exc.message}")
                    time.sleep(min(self.poll_ceiling, 1.0))
                    idle_since = time.monotonic()
                    continue
                if job is None:
                    mono = time.monotonic()
                    if mono - idle_since >= self.idle:
                        if not self._work_left():
                            break
                        idle_since = mono  # claims lost races (or an array waits at its %limit): stay
                    if mono - last_touch >= self.touch_every:
                        self.store.touch_worker(self.id, now, WorkerActivity.IDLE, self.jobs_run)
                        last_touch = mono
                    time.sleep(backoff)
                    backoff = min(backoff * 2, self.poll_ceiling)
                    continue
                backoff = 0.005
                if self._stop:  # SIGTERM arrived while claiming: give the job back without starting it
                    self.store.finish(job, self.id, LOST, None, "worker interrupted (SIGTERM)", time.time())
                    break
                self._ran_for = 0.0
                self._run_job(job, definition)
                self.jobs_run += 1
                if self.claim_ahead > 1:
                    self._pace_claims(self._ran_for)
                idle_since = time.monotonic()
                if time.monotonic() - last_touch >= self.touch_every and not self._touched_by_renewal:
                    # (a job that renewed its lease touched the registry then: its count shows at the next
                    # renewal or idle touch, and a stream of long jobs costs no touch of its own)
                    self.store.touch_worker(self.id, time.time(), WorkerActivity.BUSY, self.jobs_run)
                    last_touch = time.monotonic()
                if self.max_jobs and self.jobs_run >= self.max_jobs:
                    break
        finally:
            self._release_ahead()
            if self._watchdog is not None:
                self._watchdog.close()
            self.store.touch_worker(self.id, time.time(), WorkerActivity.EXITED, self.jobs_run)
        return 0

    def _work_left(self) -> bool:
        """Is anything of this worker's (queue, definition) still queued? A worker never idles out while
        there is: its claims may have lost races for one array's record, and the scheduler counts it as
        capacity, so leaving would strand the work until the next tick starts another worker (minutes)."""
        try:
            return self.store.backlog().get((self.queue, self.definition_name), 0) > 0
        except HyperError:
            return False

    def _claim(self, now: float) -> Job | None:
        """The next job, or None; on a local host nothing is claimed while the disk is full (a job started then
        would fail for want of room, not for anything it did), and a store that cannot write waits too."""
        if not self.aws and diskspace.is_full(self.workdir):
            return None
        while self._ahead:  # claimed ahead with an earlier claim: still ours (not qdel'd meanwhile)?
            job = self._ahead.pop(0)
            if self.store.peek(job, self.id) is JobState.RUNNING:
                return job
        try:
            if self._take > 1:
                jobs = self.store.claim_many(self.queue, self.definition_name, self.id, now + self.lease, now,
                                             self._take)
                self._ahead = jobs[1:]
                return jobs[0] if jobs else None
            return self.store.claim(self.queue, self.definition_name, self.id, now + self.lease, now)
        except DiskFullError:
            return None

    def _pace_claims(self, ran_for: float) -> None:
        """Claim several jobs at once only while they are short: the number doubles after each job whose
        process ran less than AHEAD_WHILE_UNDER seconds (up to the store's CLAIM_AHEAD) and drops to one after
        a longer one, which gives back what it holds, so no job waits behind a long one while other workers
        are idle."""
        if ran_for < AHEAD_WHILE_UNDER:
            self._take = min(self._take * 2, self.claim_ahead)
            return
        self._take = 1
        self._release_ahead()

    def _release_ahead(self) -> None:
        """Give back the jobs claimed ahead and not started (QUEUED again, no attempt spent)."""
        while self._ahead:
            job = self._ahead.pop()
            try:
                self.store.release(job, self.id, time.time())
            except HyperError as exc:  # the sweep gives it back later (claimed ahead: no attempt spent)
                self._warn(f"could not give back job {job.job_id}: {exc.message}")

    def _finish(self, job: Job, kind: RunOutcome, exit_code: int | None, reason: str,
                log: str | None = None) -> JobState | None:
        """Record the end, waiting for room if the disk is full: the outcome is known and must not be lost."""
        delay = 0.5
        while True:
            try:
                return self.store.finish(job, self.id, kind, exit_code, reason, time.time(), log=log)
            except DiskFullError:
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _warn(self, message: str) -> None:
        self.log_warnings.append(message)
        sys.stderr.write(f"hyper worker {self.id}: warning: {message}\n")
        sys.stderr.flush()

    def _host(self) -> Host:
        """The host the workflow hooks and a job's AWS credentials work with. Only a worker on a store opened by
        path (no host) lacks one, and it cannot run jobs that need it: one line says so, not a traceback."""
        if self.host is None:
            raise HyperError(f"worker {self.id} has no host, which its workflow jobs and job roles need",
                             "start workers with `hyper worker` (or pass host=)")
        return self.host

    def _shipping(self, job: Job) -> _Shipping | None:
        """This attempt's output shipping on an aws host, into this worker's shared streams; None elsewhere."""
        if not self.aws:
            return None
        if self._streams is None:
            from hyper.aws import logs

            self._streams = logs.WorkerStreams(self._host(), self.id)
        out, err = output_paths(job, self.logs_dir)
        shipper, window = self._streams.shipper({"stdout": out, "stderr": err})
        return _Shipping(self._streams, shipper, window)

    def _run_job(self, job: Job, definition: Definition) -> None:
        """One claimed job: its inputs and AWS credentials, the attempt under a renewed lease (and, on aws, a
        watchdog and the output shipped), then its end recorded."""
        renew_every = self.lease / 3
        check_every = min(1.0, renew_every)
        stop_before = min(self.kill_grace, self.lease / 3)
        pgid = 0

        def extended(until: float) -> None:
            if self._watchdog is not None and pgid:
                self._watchdog.arm(pgid, until)

        self._touched_by_renewal = False
        touches = self.store.RENEWAL_TOUCHES

        def renew(until: float) -> JobState | None:
            state = self.store.heartbeat(job, self.id, until, jobs_run=self.jobs_run if touches else None)
            self._touched_by_renewal = self._touched_by_renewal or (touches and state is not None)
            return state

        check = LeaseKeeper(renew,
                            lambda: self.store.peek(job, self.id), self.lease, renew_every, stop_before,
                            on_renew=extended, until=job.lease,
                            peek_ceiling=self.store.STATE_POLL, max_lease=self.store.MAX_LEASE)
        workflow = _uses_hooks(job)
        extra_env = self._attempt_env(job, definition, workflow, check, check_every)
        if extra_env is None:
            return  # not run: its record says why (or it was deleted or taken over meanwhile)
        shipping = self._shipping(job)

        began = 0.0

        def on_start(pid: int) -> None:
            nonlocal pgid, began
            began = time.monotonic()
            if self.aws:  # the job stops at its lease's end even if this worker freezes
                check.renew_if_due()
                if self._watchdog is None:
                    self._watchdog = Watchdog(self.workdir / ".hyper", stop_before)
                pgid = pid
                self._watchdog.arm(pid, check.until)
            if shipping is not None:
                shipping.shipper.start()  # the files are open (truncated) and the job runs: tail them from here
            self.store.set_pid(job, self.id, pid, log=shipping.window.text() if shipping is not None else None)

        try:
            outcome: Outcome = run_attempt(
                job, definition, self.workdir, self.logs_dir, check=check, check_every=check_every,
                kill_grace=self.kill_grace, stop_requested=lambda: self._stop, on_start=on_start,
                gpu_ids=self.gpu_ids, extra_env=extra_env)
        finally:
            if began:
                self._ran_for = time.monotonic() - began  # the job's own run time (pacing claims ahead)
            self._attempt_over(job, shipping)
        self._record_end(job, outcome, check, shipping, workflow)

    def _attempt_env(self, job: Job, definition: Definition, workflow: bool, check: LeaseKeeper,
                     check_every: float) -> dict[str, str] | None:
        """What the worker adds to the job's environment: its own names, the workflow inputs' and the job's AWS
        credentials. None when the job must not start; its end is then recorded already (the inputs or the
        credentials failed), or the store says what happened (deleted or taken over while its inputs arrived)."""
        extra_env = self.extra_env
        if workflow:
            from hyper.workflows import hooks  # parts, finaliser inputs, staging, notices

            host = self._host()
            try:  # downloads may outlast the lease: it is renewed meanwhile
                env = hooks.with_lease(lambda: hooks.before_job(self.store, host, job, self.workdir,
                                                                self.logs_dir), check, check_every)
            except HyperError as exc:  # never start a job without its inputs; say why in its record
                state = self.store.finish(job, self.id, EXITED, 1, f"inputs: {exc.message}", time.time())
                hooks.job_ended(self.store, host, job, state, self.id)
                return None
            if env is None:
                return None  # deleted or taken over while its inputs arrived: the store says what happened
            extra_env = {**extra_env, **env}
        if definition.job_role or definition.secrets:  # the job's own AWS rights, never the worker's
            from hyper.worker.credentials import job_aws_env

            try:
                return {**extra_env, **job_aws_env(self._host(), definition, job)}
            except HyperError as exc:
                state = self.store.finish(job, self.id, EXITED, 1, f"job role or secrets: {exc.message}",
                                          time.time())
                if workflow:
                    from hyper.workflows import hooks

                    hooks.job_ended(self.store, self._host(), job, state, self.id)
                return None
        return extra_env

    def _attempt_over(self, job: Job, shipping: _Shipping | None) -> None:
        """The process has ended (or never started): disarm the watchdog and flush the attempt's output."""
        if self._watchdog is not None:
            self._watchdog.disarm()
        if shipping is not None:
            # before finish: whoever sees the job ended finds all of its output. Interrupted (SIGTERM),
            # the container has ~30 s before SIGKILL in all: flush for a few seconds only.
            for warning in shipping.shipper.close(5.0 if self._stop else None):
                self._warn(f"job {job.job_id} attempt {job.attempts}: {warning}")

    def _record_end(self, job: Job, outcome: Outcome, check: LeaseKeeper, shipping: _Shipping | None,
                    workflow: bool) -> None:
        """Record how the attempt ended, after its results are out (whoever sees it ended finds them); unless the
        store already says what happened (deleted, taken over), when we only stopped the process."""
        if not outcome.kind.recorded:
            if shipping is not None:  # its end is not recorded by us: our next jobs go to fresh streams
                shipping.streams.ended(shipping.shipper, shipping.window)
                shipping.streams.abandon()
            if check.fenced:
                self._warn(f"job {job.job_id} attempt {job.attempts} stopped: {check.fenced}")
            return  # the store already says what happened; we only stopped the process
        if workflow:  # results out before the end is recorded: whoever sees it ended finds them
            from hyper.workflows import hooks

            for warning in hooks.after_job(self._host(), job, self.workdir, self.logs_dir):
                self._warn(f"job {job.job_id}: {warning}")
        done = shipping.streams.ended(shipping.shipper, shipping.window) if shipping is not None else None
        state = self._finish(job, outcome.kind, outcome.exit_code, outcome.reason,
                             log=done.text() if done else None)
        if shipping is not None and state is None:  # taken from us meanwhile: the window stays open in the record
            shipping.streams.abandon()
        if workflow:
            from hyper.workflows import hooks

            hooks.job_ended(self.store, self._host(), job, state, self.id)
