"""Run one job attempt as a process group: environment, output files, walltime, cancellation.

Why a process group: `qdel` and walltime must stop everything the job started (shells, pipelines,
background children), so the job runs in its own session and is signalled with ``killpg``: SIGTERM
first, SIGKILL after the grace period, exactly as PBS's kill_delay. Waiting uses a pidfd, so a trivial
job is reaped the moment it exits instead of on a polling tick.

Why a start gate: the job's process first waits on a pipe (a one-line ``sh`` that then ``exec``s the job).
The worker moves it into its cgroup and records its pid in the store, and only then opens the gate. If the
worker dies before that, the pipe's write end closes with it and the job exits without running: a job
whose identity is not recorded never runs, so a requeue can always kill the attempt it replaces.
What the job leaves behind when it ends (daemons that called ``setsid`` included) is killed: see
``hyper/worker/containment.py``.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hyper.config import private_dir, private_file
from hyper.errors import HyperError
from hyper.models import Definition, Job, JobSpec
from hyper.outputs import output_paths
from hyper.worker import memory
from hyper.retry import EXITED, KILLED, LOST
from hyper.states import JobState, RunOutcome
from hyper import diskspace
from hyper.worker import containment

BASE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ", "TERM")


@dataclass
class Outcome:
    kind: RunOutcome
    exit_code: int | None
    reason: str = ""


def job_env(job: Job, definition: Definition, workdir: Path, gpu_ids: str | None = None,
            extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment PBS, Slurm and LSF users expect, plus hyper's own names."""
    spec = job.require_spec()
    env = {k: v for k in BASE_ENV if (v := os.environ.get(k)) is not None}
    env.update(definition.environment)
    env.update(spec.env)
    jid = job.job_id
    idx = "" if job.index is None else str(job.index)
    vcpus = str(spec.vcpus or definition.vcpus)
    env.update({
        "HYPER_JOB_ID": jid, "HYPER_JOB_NAME": job.name, "HYPER_QUEUE": job.queue,
        "HYPER_DEFINITION": job.definition, "HYPER_ATTEMPT": str(job.attempts), "HYPER_WORKDIR": str(workdir),
        "HYPER_SUBMIT_DIR": spec.submit_dir, "TMPDIR": str(workdir / "tmp"),
        "PBS_JOBID": jid, "PBS_JOBNAME": job.name, "PBS_QUEUE": job.queue, "PBS_O_QUEUE": job.queue,
        "PBS_O_WORKDIR": spec.submit_dir, "PBS_ENVIRONMENT": "PBS_BATCH", "NCPUS": vcpus,
        "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", vcpus),
        "SLURM_JOB_ID": str(job.id), "SLURM_JOBID": str(job.id), "SLURM_JOB_NAME": job.name,
        "SLURM_SUBMIT_DIR": spec.submit_dir, "SLURM_CPUS_PER_TASK": vcpus, "SLURM_JOB_PARTITION": job.queue,
        "LSB_JOBID": str(job.id), "LSB_JOBNAME": job.name, "LSB_QUEUE": job.queue,
    })
    if job.index is not None:
        env.update({
            "HYPER_ARRAY_INDEX": idx, "PBS_ARRAY_INDEX": idx, "PBS_ARRAY_ID": f"{job.id}[]",
            "SLURM_ARRAY_JOB_ID": str(job.id), "SLURM_ARRAY_TASK_ID": idx, "LSB_JOBINDEX": idx,
        })
    if gpu_ids is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu_ids
    if extra:
        env.update(extra)
    return env


# filename patterns and output paths: hyper/outputs.py (the job services find the files by the same rule)


def open_output(path: Path) -> int:
    """A job's stdout or stderr file, as a descriptor: 0600, truncated, and never through a symlink at its name
    (``-o`` into a shared directory must not overwrite whatever a planted link points at).

    Its directory is made (0700 under HYPER_HOME) the first time this process writes there, not for every job:
    checking the chain of directories up to HYPER_HOME costs more than a trivial job's whole run. A directory
    removed since is made again."""
    parent = str(path.parent)
    if parent not in _output_dirs:
        private_dir(path.parent)
        _output_dirs.add(parent)
    try:
        return private_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    except FileNotFoundError:
        private_dir(path.parent)
        return private_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)


_output_dirs: set[str] = set()  # directories open_output has made or checked in this process


def _prepare_command(job: Job, workdir: Path) -> list[str]:
    spec = job.require_spec()
    if spec.command:
        return [*spec.command, *spec.args]
    script = workdir / ".hyper" / f"job-{job.id}{'' if job.index is None else '.' + str(job.index)}.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(spec.script or "")
    script.chmod(0o700)
    if (spec.script or "").startswith("#!"):
        return [str(script), *spec.args]
    return ["/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh", str(script), *spec.args]


# enters the job's directory, waits for the worker's go on its stdin (the pipe), swaps it for /dev/null and becomes
# the job; EOF (the worker is gone) ends it unrun. (stdin, not a numbered fd: dash redirects only fds 0-9. The `cd`
# is here because posix_spawn has no working directory of its own; OLDPWD is the shell's, not the job's.)
GATE = 'cd -- "$1" || exit 126; unset OLDPWD; shift; read -r _ || exit 125; exec </dev/null; exec "$@"'
GATE_SHELL = "/bin/sh"


def seal_descriptors() -> None:
    """Make every descriptor above stderr close-on-exec, once per worker: jobs start with posix_spawn, which
    (unlike Popen's close_fds) passes on whatever is inheritable, and a job must get only its stdin, stdout and
    stderr (whatever started the worker may have left it more)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        return
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the listing's own descriptor, closed by now
                pass


# what Python ignores in the worker and Popen's restore_signals gave back to a child: a job runs with SIGPIPE
# and SIGXFSZ at their defaults (`yes | head` ends yes quietly, as in a terminal)
RESTORED_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class Child:
    """The job's process, as much of ``subprocess.Popen`` as the watch needs: started with ``os.posix_spawn``,
    which costs the worker a fraction of Popen's per-job work (Popen encodes the environment in Python and
    closes descriptors one by one; posix_spawn does it in C, and hyper's own descriptors are close-on-exec)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """The exit status (negative: killed by that signal, as Popen says it), or None while it runs."""
        return self._wait(os.WNOHANG)

    def wait(self) -> int:
        code = self._wait(0)
        assert code is not None
        return code

    def _wait(self, flags: int) -> int | None:
        if self.returncode is not None:
            return self.returncode
        try:
            pid, status = os.waitpid(self.pid, flags)
        except ChildProcessError:  # reaped by someone else (a subreaper sweep): it has ended
            self.returncode = 0
            return 0
        if pid == 0:
            return None
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode


def _missing_program(argv: list[str], cwd: str, env: dict[str, str]) -> str | None:
    """Why argv[0] cannot be executed, checked before the gate hides it behind the shell's exit 127."""
    program = argv[0]
    if os.sep in program:
        path = program if os.path.isabs(program) else os.path.join(cwd, program)
        if not os.path.exists(path):
            return "No such file or directory"
        if os.path.isdir(path) or not os.access(path, os.X_OK):
            return "Permission denied"
        return None
    return None if shutil.which(program, path=env.get("PATH", os.defpath)) else "No such file or directory"


def kill_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def run_attempt(job: Job, definition: Definition, workdir: Path, logs_dir: Path,
                check: Callable[[], JobState | None], check_every: float, kill_grace: float,
                stop_requested: Callable[[], bool], on_start: Callable[[int], None],
                gpu_ids: str | None = None, extra_env: dict[str, str] | None = None) -> Outcome:
    """Start the job, watch it, and return how it ended.

    ``check`` renews the lease and returns the job's state in the store (None: we lost ownership);
    ``stop_requested`` is the worker's own SIGTERM (spot interruption): the job is then returned to
    the queue for another attempt. ``extra_env`` is what the worker adds to the job's environment
    (HYPER_WORKER_ID, AWS_BATCH_JOB_ID...). ``on_start`` runs once the output files are open and the
    process runs (the worker starts shipping the files to CloudWatch there).
    """
    spec = job.require_spec()
    tmp = f"{workdir}/tmp"  # the job's TMPDIR, in the reused work directory (a job may have removed it)
    if not os.path.isdir(tmp):
        os.makedirs(tmp, exist_ok=True)
    out_path, err_path = output_paths(job, logs_dir)
    started = _spawn(job, definition, workdir, out_path, err_path, gpu_ids, extra_env)
    if isinstance(started, Outcome):
        return started
    proc, gate_write = started
    worker_id = (extra_env or {}).get("HYPER_WORKER_ID", "")
    group = containment.enter_cgroup(worker_id, proc.pid)
    if group is None:
        containment.become_subreaper()  # no cgroup: whatever leaves the session comes back to us
    memory_limit = spec.memory_mib or definition.memory_mib  # the job's request, else its worker's size
    kernel_limit = bool(group is not None and memory_limit and containment.limit_memory(group, memory_limit))
    oom_before = containment.oom_kills(group) if kernel_limit else 0
    _open_gate(proc, gate_write, group, on_start)
    outputs = [p for p in (out_path, err_path) if p is not None]
    watch = _Watch(proc, check, check_every, kill_grace, stop_requested, _walltime(spec, definition),
                   memory_limit, outputs)
    code, ending = watch.run()
    kill_group(proc.pid, signal.SIGKILL)  # anything the job left behind in its group
    oom = kernel_limit and containment.oom_kills(group) > oom_before
    _clean_up(group)  # and anything that left the group (setsid daemons)
    return _ended(code, ending, oom, memory_limit, outputs)


def _spawn(job: Job, definition: Definition, workdir: Path, out_path: Path, err_path: Path | None,
           gpu_ids: str | None, extra_env: dict[str, str] | None) -> tuple[Child, int] | Outcome:
    """Open the output files and start the job's process waiting at its gate.

    Returns the process and the gate's write end, or the attempt's Outcome when it cannot start: a missing
    program or working directory is found here, before the gate shell would hide it behind a bare exit 126 or
    127. The output files are closed in the worker either way (the job holds its own copies).
    """
    spec = job.require_spec()
    try:
        stdout = open_output(out_path)
    except OSError as exc:
        return Outcome(EXITED, 1, f"cannot open output file: {exc}")
    try:
        stderr = open_output(err_path) if err_path is not None else stdout  # -j oe: one file for both
    except OSError as exc:
        os.close(stdout)
        return Outcome(EXITED, 1, f"cannot open output file: {exc}")
    cwd = os.path.abspath(spec.chdir or str(workdir))
    env = job_env(job, definition, workdir, gpu_ids, extra_env)
    gate_read = gate_write = -1
    try:
        argv = _prepare_command(job, workdir)
        if not os.path.isdir(cwd):
            raise OSError(2, "No such file or directory")
        if not os.access(cwd, os.X_OK):  # said here, as Popen's chdir said it, not as the gate's `cd` failing
            raise OSError(13, "Permission denied")
        missing = _missing_program(argv, cwd, env)
        if missing:
            raise OSError(2 if missing.startswith("No such") else 13, missing)
        gate_read, gate_write = os.pipe()
        pid = os.posix_spawn(GATE_SHELL, [GATE_SHELL, "-c", GATE, "hyper-job", cwd, *argv], env,
                             file_actions=[(os.POSIX_SPAWN_DUP2, gate_read, 0), (os.POSIX_SPAWN_DUP2, stdout, 1),
                                           (os.POSIX_SPAWN_DUP2, stderr, 2)],
                             setsid=True, setsigdef=RESTORED_SIGNALS)
    except OSError as exc:
        for fd in (gate_read, gate_write):
            if fd >= 0:
                os.close(fd)
        return Outcome(EXITED, 127, f"cannot start {spec.command[0] if spec.command else 'script'}: "
                                    f"{exc.strerror}")
    finally:
        os.close(stdout)
        if stderr != stdout:
            os.close(stderr)
    os.close(gate_read)
    return Child(pid), gate_write


def _open_gate(proc: Child, gate_write: int, group: Path | None,
               on_start: Callable[[int], None]) -> None:
    """Record the job's identity (``on_start``), then let it run; if recording fails the job is killed unrun,
    so no attempt ever runs that a requeue could not find and kill."""
    try:
        on_start(proc.pid)  # the job's identity is in the store before it can do anything
        try:
            os.write(gate_write, b"go\n")
        except BrokenPipeError:
            pass  # the gate shell already ended (it could not read the pipe): its exit code says so below
    except BaseException:
        kill_group(proc.pid, signal.SIGKILL)
        proc.wait()
        _clean_up(group)
        raise
    finally:
        os.close(gate_write)


def _walltime(spec: JobSpec, definition: Definition) -> int | None:
    """The attempt's time limit in seconds: the job's walltime, capped by its definition's timeout."""
    walltime = spec.walltime or definition.timeout
    if spec.walltime and definition.timeout:
        walltime = min(spec.walltime, definition.timeout)
    return walltime


class _Watch:
    """One attempt's watch loop: wait for the process, and end it on walltime, memory, a full disk, qdel, a
    lost lease or the worker's own SIGTERM. State in one object so each decision is a small method."""

    def __init__(self, proc: Child, check: Callable[[], JobState | None], check_every: float,
                 kill_grace: float, stop_requested: Callable[[], bool], walltime: int | None, memory_limit: int,
                 outputs: list[Path]) -> None:
        self.proc = proc
        self.check = check
        self.check_every = check_every
        self.kill_grace = kill_grace
        self.stop_requested = stop_requested
        self.walltime = walltime or 0  # only read once the deadline (set only with a walltime) has passed
        self.memory_limit = memory_limit
        self.outputs = outputs
        self.deadline = time.monotonic() + walltime if walltime else None
        self.next_check = time.monotonic() + check_every
        self.next_memory = time.monotonic() + memory.CHECK_EVERY if memory_limit else None
        self.ending: Outcome | None = None
        self.term_sent_at: float | None = None

    def run(self) -> tuple[int, Outcome | None]:
        """Watch until the process ends: its exit status, and why we ended it (None: it ended by itself)."""
        try:
            pidfd: int | None = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            pidfd = None
        poller = select.poll()
        if pidfd is not None:
            poller.register(pidfd, select.POLLIN)
        try:
            while True:
                timeout_ms = self._timeout_ms(time.monotonic(), pidfd is not None)
                poller.poll(max(0, timeout_ms)) if pidfd is not None else time.sleep(max(0, timeout_ms) / 1000)
                code = self.proc.poll()
                if code is not None:
                    return code, self.ending
                self._step(time.monotonic())
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def _timeout_ms(self, now: float, have_pidfd: bool) -> int:
        """How long to wait for the process before the next thing to look at (a pidfd wakes us at its exit;
        without one we poll every 50 ms)."""
        wake = self.next_check
        if self.deadline and self.ending is None:
            wake = min(wake, self.deadline)
        if self.term_sent_at is not None:
            wake = min(wake, self.term_sent_at + self.kill_grace)
        if self.next_memory is not None and self.ending is None:
            wake = min(wake, self.next_memory)
        return max(0, int((wake - now) * 1000)) if have_pidfd else min(50, int((wake - now) * 1000))

    def _step(self, now: float) -> None:
        """One look while the process runs: start ending it, escalate to SIGKILL, or keep the lease alive."""
        if self.ending is None and self._over_memory(now):
            return
        if self.ending is None:
            self.ending = self._why_end(now)
            if self.ending is not None:
                kill_group(self.proc.pid, signal.SIGTERM)
                self.term_sent_at = now
                return
        elif self.term_sent_at is not None and now >= self.term_sent_at + self.kill_grace:
            kill_group(self.proc.pid, signal.SIGKILL)
            self.term_sent_at = None  # wait for the kill to land
        if now >= self.next_check:  # keep the lease alive while we wait for the group to die
            _checked(self.check)
            self.next_check = now + self.check_every

    def _over_memory(self, now: float) -> bool:
        """Kill the group when its memory is over the limit: at once, as the kernel's OOM killer would, with no
        grace period to allocate more."""
        if self.next_memory is None or now < self.next_memory:
            return False
        self.next_memory = now + memory.CHECK_EVERY
        why = memory.over_limit(self.proc.pid, self.memory_limit)
        if not why:
            return False
        kill_group(self.proc.pid, signal.SIGKILL)
        self.ending = Outcome(KILLED, None, why)
        return True

    def _why_end(self, now: float) -> Outcome | None:
        """Why the job must end now (None: it may go on); asks the store only every ``check_every``."""
        if self.stop_requested():
            return Outcome(LOST, None, "worker interrupted (SIGTERM)")
        if self.deadline and now >= self.deadline:
            return Outcome(KILLED, None, f"walltime {_hms(self.walltime)} exceeded")
        if now < self.next_check:
            return None
        if _fills_disk(self.outputs):
            return Outcome(KILLED, None, "disk full")
        state = _checked(self.check)
        self.next_check = now + self.check_every
        if state is None:
            return Outcome(RunOutcome.DISOWNED, None, "lease lost to another worker")
        if state is JobState.DELETED:
            return Outcome(RunOutcome.DELETED, None, "deleted by qdel")
        return None


def _ended(code: int, ending: Outcome | None, oom: bool, memory_limit: int, outputs: list[Path]) -> Outcome:
    """How the attempt ended, from its exit status and why we ended it (if we did); a signal n is reported as
    256 + n, as PBS does."""
    exit_code = code if code >= 0 else 256 - code  # signal n -> 256 + n, as PBS reports it
    if oom and ending is None:  # the kernel enforced memory.max before the RSS watch saw it
        return Outcome(KILLED, exit_code, f"killed for memory: cgroup limit {memory_limit} MiB")
    if (ending is not None and ending.reason == "disk full") or (code != 0 and _fills_disk(outputs)):
        # only this job fails: its output makes room again so its end (and everything else) can be recorded
        diskspace.truncate_outputs(outputs)
        return Outcome(KILLED, exit_code, f"disk full (output truncated to {diskspace.KEEP_OUTPUT // 1024} KiB)")
    if ending is not None:
        ending.exit_code = exit_code
        return ending
    return Outcome(EXITED, exit_code, "" if code >= 0 else f"killed by signal {-code}")


def _checked(check: Callable[[], JobState | None]) -> JobState | None:
    """The store's answer; while it cannot be written (a full disk) the job keeps running and we ask again."""
    try:
        return check()
    except HyperError:
        return JobState.RUNNING


def _fills_disk(outputs: list[Path]) -> bool:
    """The disk is full and this job's own output is what filled it (more than the reserve)."""
    return bool(outputs) and diskspace.is_full(outputs[0]) and diskspace.output_size(outputs) > diskspace.reserve()


def _clean_up(group: Path | None) -> None:
    if group is not None:
        containment.kill_cgroup(group, remove=False)  # the worker's next job reuses it
    else:
        containment.kill_descendants()


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
