"""Keep every process of a job attempt findable, so nothing a job started outlives it.

Why: killing the job's process group misses anything that left the group (`setsid` daemons, double forks),
and a worker killed with -9 leaves its job running unsupervised. Two mechanisms, chosen per machine:

- **cgroup v2**, where this process can create cgroups: each worker gets ``<cgroup2 mount>/hyper/<worker id>``
  and its job is moved into it *before the job runs* (see ``runner``'s start gate), so every descendant is
  born inside it; ``cgroup.kill`` ends them all at once, whatever sessions they made. A new agent finds a dead
  worker's leftovers by the worker id alone (it is in the job's row).
- otherwise **a tracked session**: the job runs in its own session and the worker is a child subreaper
  (``PR_SET_CHILD_SUBREAPER``), so a daemon that escapes the session is re-parented to the worker, not to
  init; at the job's end the worker kills every descendant it still has. An agent finds the processes of a
  dead worker's job by the identity in their environment (``HYPER_JOB_ID`` and ``HYPER_ATTEMPT``).

``HYPER_CGROUP_ROOT`` names the parent cgroup directory to use (``off`` disables cgroups).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

_PR_SET_CHILD_SUBREAPER = 36
_root_cache: dict[str, Path | None] = {}


def _cgroup2_mount() -> Path | None:
    try:
        with open("/proc/self/mounts") as fh:
            for line in fh:
                fields = line.split()
                if len(fields) > 2 and fields[2] == "cgroup2":
                    return Path(fields[1])
    except OSError:
        pass
    return None


def cgroup_root() -> Path | None:
    """The writable parent of hyper's per-worker cgroups, or None where cgroup v2 cannot be used."""
    setting = os.environ.get("HYPER_CGROUP_ROOT", "")
    if setting in _root_cache:
        return _root_cache[setting]
    root: Path | None = None
    if setting.lower() != "off":
        base = Path(setting) if setting else (_cgroup2_mount() or Path("/nonexistent")) / "hyper"
        try:
            base.mkdir(exist_ok=True)
            if (base / "cgroup.procs").exists() and os.access(base / "cgroup.procs", os.W_OK):
                root = base
        except OSError:
            root = None
    _root_cache[setting] = root
    return root


def worker_cgroup(worker_id: str) -> Path | None:
    root = cgroup_root()
    return None if root is None or not worker_id else root / worker_id


def enter_cgroup(worker_id: str, pid: int) -> Path | None:
    """Move ``pid`` (a job held at its start gate) into the worker's cgroup; None if cgroups are not usable.

    The directory is made once per worker process, not per job (a trivial job's whole run costs about a
    millisecond); if the agent pruned it meanwhile (``prune_empty``, between two jobs) it is made again, and
    the memory limit it held is written again too."""
    group = worker_cgroup(worker_id)
    if group is None:
        return None
    key = str(group)
    for first_try in (True, False):
        try:
            if key not in _made:
                group.mkdir(exist_ok=True)
                _made.add(key)
            _write(f"{key}/cgroup.procs", f"{pid}\n")
            return group
        except FileNotFoundError:  # pruned since we made it: make it again, once
            _forget(group)
            if not first_try:
                return None
        except OSError:
            return None
    return None


_made: set[str] = set()  # per-worker cgroups this process made (or found) already
_limits: dict[str, int] = {}  # the memory.max (MiB) this process last wrote into each of them
_no_memory_controller: set[str] = set()  # parents found without the memory controller


def _forget(group: Path) -> None:
    """The group is gone (pruned or removed): the next job makes it, and writes its memory limit, again."""
    _made.discard(str(group))
    _limits.pop(str(group), None)


def _write(path: str, text: str) -> None:
    with open(path, "w") as fh:
        fh.write(text)


def _read(path: str) -> str:
    with open(path) as fh:
        return fh.read()


def limit_memory(group: Path, limit_mib: int) -> bool:
    """A hard memory limit for the job in its worker's cgroup (``memory.max``, and no swap), where the memory
    controller is delegated to hyper's subtree; False where it is not, and the RSS watch in
    :mod:`hyper.worker.memory` stops the job instead. One job runs in a worker's cgroup at a time, and the
    limit stays written between jobs: a worker whose jobs all ask the same size writes it once."""
    key = str(group)
    if _limits.get(key) == limit_mib:
        return True
    parent = group.parent
    if str(parent) in _no_memory_controller:
        return False
    try:
        if "memory" not in (parent / "cgroup.controllers").read_text().split():
            _no_memory_controller.add(str(parent))  # not delegated: it will not be while this worker lives
            return False
        if "memory" not in (parent / "cgroup.subtree_control").read_text().split():
            (parent / "cgroup.subtree_control").write_text("+memory\n")
        (group / "memory.max").write_text(f"{limit_mib * 1024 * 1024}\n")
        swap = group / "memory.swap.max"
        if swap.exists():
            swap.write_text("0\n")
    except OSError:
        return False
    _limits[key] = limit_mib
    return True


def oom_kills(group: Path | None) -> int:
    """How many processes the kernel killed in ``group`` for passing ``memory.max`` (``memory.events``)."""
    if group is None:
        return 0
    try:
        for line in (group / "memory.events").read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return 0


def kill_cgroup(group: Path, remove: bool = True) -> None:
    """Kill every process in ``group`` and wait (briefly) until it is empty; remove it if asked."""
    procs = f"{group}/cgroup.procs"
    deadline = time.monotonic() + 5.0
    while True:
        try:
            pids = [int(p) for p in _read(procs).split()]
        except OSError:  # no such group (never made, or pruned): nothing in it
            pids = []
        if not pids:
            break
        try:
            _write(f"{group}/cgroup.kill", "1\n")
        except OSError:  # kernels before 5.14 have no cgroup.kill
            for pid in pids:
                _kill(pid)
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    if remove:
        _forget(group)
        try:
            group.rmdir()
        except OSError:
            pass


def prune_empty() -> int:
    """Remove empty per-worker cgroups (left by workers that ended under an agent that was killed). Safe for
    other hosts' live workers: a cgroup with processes cannot be removed, and an empty one is recreated by
    its worker before its next job. Returns how many were removed."""
    root = cgroup_root()
    removed = 0
    if root is None:
        return removed
    for group in root.iterdir():
        if group.is_dir():
            try:
                group.rmdir()
                removed += 1
            except OSError:
                pass
    return removed


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False where that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _stat(pid: int) -> tuple[int, str] | None:
    """(ppid, state) of a process, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return int(fields[1]), fields[0]
    except (OSError, IndexError, ValueError):
        return None


def _pids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` in the process tree."""
    children: dict[int, list[int]] = {}
    for pid in _pids():
        info = _stat(pid)
        if info is not None and info[1] != "Z":
            children.setdefault(info[0], []).append(pid)
    out, todo = [], list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def kill_descendants(exclude: set[int] | None = None) -> int:
    """SIGKILL every descendant of this process (a job's leftovers re-parented to the subreaper worker) and
    reap them; returns how many were killed."""
    killed = 0
    for _ in range(20):  # a fork during the sweep adds a child: sweep again until none is left
        pids = [p for p in descendants(os.getpid()) if p not in (exclude or set())]
        if not pids:
            break
        for pid in pids:
            killed += _kill(pid)
        reap()
        time.sleep(0.002)
    reap()
    return killed


def reap() -> None:
    """Collect exited children we never started ourselves (adopted orphans), so no zombie is left."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def processes_of(job_id: str, attempt: int) -> list[int]:
    """Processes whose environment says they belong to this attempt of this job (what survives a worker)."""
    wanted = (f"HYPER_JOB_ID={job_id}\0".encode(), f"HYPER_ATTEMPT={attempt}\0".encode())
    out = []
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/environ", "rb") as fh:
                environ = b"\0" + fh.read()
        except OSError:
            continue
        if all(b"\0" + w in environ for w in wanted):
            out.append(pid)
    return out


def _kill(pid: int) -> int:
    try:
        os.kill(pid, signal.SIGKILL)
        return 1
    except (ProcessLookupError, PermissionError):
        return 0
