"""Memory limits for local jobs: the resident memory of a job's whole session, watched from /proc.

Why watched and not a cgroup: a worker runs inside whatever cgroup it was started in, and cgroup v2 lets a
process move a child into a new cgroup with a memory limit only where that hierarchy is delegated and the
memory controller enabled (not on cgroup v1 or hybrid hosts such as this project's test machines). Summing
VmRSS over the job's session catches a pipeline or a child as well as the job's own process.
"""

from __future__ import annotations

import os

PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CHECK_EVERY = 0.25  # seconds between looks: a fast allocation is caught within this


def session_rss_mib(sid: int) -> int:
    """MiB resident in every process of session ``sid`` (a job runs as its own session)."""
    total = 0
    try:
        entries = os.scandir("/proc")
    except OSError:
        return 0
    with entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as fh:
                    data = fh.read()
            except OSError:  # gone meanwhile, or not ours to read
                continue
            fields = data[data.rfind(b")") + 2:].split()  # after "pid (comm) ": state is fields[0]
            if len(fields) > 21 and int(fields[3]) == sid:  # session, then rss (pages) as stat(5) numbers them
                total += int(fields[21]) * PAGE
    return total // (1024 * 1024)


def over_limit(sid: int, limit_mib: int) -> str:
    """The reason a job is stopped for memory, or "" while it stays within ``limit_mib``."""
    used = session_rss_mib(sid)
    if used > limit_mib:
        return f"killed for memory: {used} MiB resident, limit {limit_mib} MiB"
    return ""
