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
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from hyper.config import private_dir, private_file
from hyper.errors import HyperError
from hyper.models import Definition, Job
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
    spec = job.spec
    env = {k: os.environ[k] for k in BASE_ENV if k in os.environ}
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


def open_output(path: Path):
    """A job's stdout or stderr file: 0600, truncated, and never through a symlink at its name (``-o`` into a
    shared directory must not overwrite whatever a planted link points at)."""
    private_dir(path.parent)
    return os.fdopen(private_file(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), "wb")


def _prepare_command(job: Job, workdir: Path) -> list[str]:
    spec = job.spec
    if spec.command:
        return [*spec.command, *spec.args]
    script = workdir / ".hyper" / f"job-{job.id}{'' if job.index is None else '.' + str(job.index)}.sh"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(spec.script or "")
    script.chmod(0o700)
    if (spec.script or "").startswith("#!"):
        return [str(script), *spec.args]
    return ["/bin/bash" if os.path.exists("/bin/bash") else "/bin/sh", str(script), *spec.args]


# waits for the worker's go on its stdin (the pipe), swaps it for /dev/null and becomes the job; EOF (the worker
# is gone) ends it unrun. (stdin, not a numbered fd: dash redirects only fds 0-9.)
GATE = 'read -r _ || exit 125; exec </dev/null; exec "$@"'
GATE_SHELL = "/bin/sh"


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
    spec = job.spec
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    out_path, err_path = output_paths(job, logs_dir)
    try:
        stdout = open_output(out_path)
        stderr = open_output(err_path) if err_path is not None else subprocess.STDOUT
    except OSError as exc:
        return Outcome(EXITED, 1, f"cannot open output file: {exc}")
    cwd = spec.chdir or str(workdir)
    env = job_env(job, definition, workdir, gpu_ids, extra_env)
    worker_id = (extra_env or {}).get("HYPER_WORKER_ID", "")
    gate_read = gate_write = -1
    try:
        argv = _prepare_command(job, workdir)
        missing = _missing_program(argv, cwd, env) if os.path.isdir(cwd) else None
        if missing:
            raise OSError(2 if missing.startswith("No such") else 13, missing)
        gate_read, gate_write = os.pipe()
        proc = subprocess.Popen([GATE_SHELL, "-c", GATE, "hyper-job", *argv], cwd=cwd, env=env,
                                stdin=gate_read, stdout=stdout, stderr=stderr, start_new_session=True, close_fds=True)
    except OSError as exc:
        for fd in (gate_read, gate_write):
            if fd >= 0:
                os.close(fd)
        return Outcome(EXITED, 127, f"cannot start {spec.command[0] if spec.command else 'script'}: "
                                    f"{exc.strerror}")
    finally:
        stdout.close()
        if stderr is not subprocess.STDOUT:
            stderr.close()
    os.close(gate_read)
    group = containment.enter_cgroup(worker_id, proc.pid)
    if group is None:
        containment.become_subreaper()  # no cgroup: whatever leaves the session comes back to us
    memory_limit = spec.memory_mib or definition.memory_mib  # the job's request, else its worker's size
    kernel_limit = bool(group is not None and memory_limit and containment.limit_memory(group, memory_limit))
    oom_before = containment.oom_kills(group) if kernel_limit else 0
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
    outputs = [p for p in (out_path, err_path) if p is not None]
    walltime = spec.walltime or definition.timeout
    if spec.walltime and definition.timeout:
        walltime = min(spec.walltime, definition.timeout)
    deadline = time.monotonic() + walltime if walltime else None
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        pidfd = None
    poller = select.poll()
    if pidfd is not None:
        poller.register(pidfd, select.POLLIN)
    next_check = time.monotonic() + check_every
    next_memory = time.monotonic() + memory.CHECK_EVERY if memory_limit else None
    ending: Outcome | None = None
    term_sent_at: float | None = None
    try:
        while True:
            now = time.monotonic()
            wake = next_check
            if deadline and ending is None:
                wake = min(wake, deadline)
            if term_sent_at is not None:
                wake = min(wake, term_sent_at + kill_grace)
            if next_memory is not None and ending is None:
                wake = min(wake, next_memory)
            timeout_ms = max(0, int((wake - now) * 1000)) if pidfd is not None else min(50, int((wake - now) * 1000))
            poller.poll(max(0, timeout_ms)) if pidfd is not None else time.sleep(max(0, timeout_ms) / 1000)
            code = proc.poll()
            if code is not None:
                break
            now = time.monotonic()
            if ending is None and next_memory is not None and now >= next_memory:
                next_memory = now + memory.CHECK_EVERY
                why = memory.over_limit(proc.pid, memory_limit)
                if why:  # as the kernel's OOM killer would: at once, no grace period to allocate more
                    kill_group(proc.pid, signal.SIGKILL)
                    ending = Outcome(KILLED, None, why)
                    continue
            if ending is None:
                if stop_requested():
                    ending = Outcome(LOST, None, "worker interrupted (SIGTERM)")
                elif deadline and now >= deadline:
                    ending = Outcome(KILLED, None, f"walltime {_hms(walltime)} exceeded")
                elif now >= next_check and _fills_disk(outputs):
                    ending = Outcome(KILLED, None, "disk full")
                elif now >= next_check:
                    state = _checked(check)
                    next_check = now + check_every
                    if state is None:
                        ending = Outcome(RunOutcome.DISOWNED, None, "lease lost to another worker")
                    elif state is JobState.DELETED:
                        ending = Outcome(RunOutcome.DELETED, None, "deleted by qdel")
                if ending is not None:
                    kill_group(proc.pid, signal.SIGTERM)
                    term_sent_at = now
                    continue
            elif term_sent_at is not None and now >= term_sent_at + kill_grace:
                kill_group(proc.pid, signal.SIGKILL)
                term_sent_at = None  # wait for the kill to land
            if now >= next_check:  # keep the lease alive while we wait for the group to die
                _checked(check)
                next_check = now + check_every
    finally:
        if pidfd is not None:
            os.close(pidfd)
    kill_group(proc.pid, signal.SIGKILL)  # anything the job left behind in its group
    oom = kernel_limit and containment.oom_kills(group) > oom_before
    _clean_up(group)  # and anything that left the group (setsid daemons)
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


def _clean_up(group) -> None:
    if group is not None:
        containment.kill_cgroup(group, remove=False)  # the worker's next job reuses it
    else:
        containment.kill_descendants()


def _hms(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}"
