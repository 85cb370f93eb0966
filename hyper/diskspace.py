"""Free space on the local disk: when it is "full" and who is to blame, so a full disk fails one job, not the host.

Why a reserve: SQLite needs a little room to record anything (a job's end, a requeue), so "full" means less
than ``reserve()`` bytes free (``HYPER_DISK_RESERVE``, default 1 MiB), not zero. Below it, qsub refuses new
jobs, workers claim nothing, and the job whose own output holds more than the reserve is stopped, its output
truncated to make room, and failed with reason "disk full". All of it resumes by itself when space returns.
"""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_RESERVE = 1 << 20
KEEP_OUTPUT = 64 << 10  # what a disk-full job keeps of each output file


def reserve() -> int:
    try:
        return max(0, int(os.environ.get("HYPER_DISK_RESERVE", DEFAULT_RESERVE)))
    except ValueError:
        return DEFAULT_RESERVE


def free_bytes(path: Path | str) -> int | None:
    """Bytes an unprivileged writer can still use on path's filesystem (None if it cannot be asked); a path not
    made yet is answered by its nearest existing parent. (Asked before every local claim: one statvfs.)"""
    p = os.fspath(path)
    while True:
        try:
            st = os.statvfs(p)
        except FileNotFoundError:
            parent = os.path.dirname(p) or "."
            if parent == p:
                return None
            p = parent
            continue
        except OSError:
            return None
        return st.f_bavail * st.f_frsize


def is_full(path: Path) -> bool:
    free = free_bytes(path)
    return free is not None and free < reserve()


def truncate_outputs(paths: list[Path]) -> int:
    """Cut each file to its first KEEP_OUTPUT bytes plus a note; returns how many bytes were freed."""
    freed = 0
    note = b"\nhyper: output truncated here: the disk is full\n"
    for path in paths:
        try:
            size = path.stat().st_size
            if size <= KEEP_OUTPUT:
                continue
            with open(path, "r+b") as fh:
                fh.truncate(KEEP_OUTPUT)
                fh.seek(KEEP_OUTPUT)
                fh.write(note)
            freed += size - KEEP_OUTPUT
        except OSError:
            continue
    return freed


def output_size(paths: list[Path]) -> int:
    total = 0
    for path in paths:
        try:
            total += path.stat().st_size
        except OSError:
            pass
    return total
