#!/usr/bin/env python3
"""Benchmark of the embedded local host. Prints figures; asserts nothing (targets live in the issue).

    python scripts/bench_local.py [--jobs 2000] [--big 1000000]

1. fork-exec floor: N trivial /bin/true processes, serial and two at a time (this machine's ceiling)
2. hyper throughput: N trivial jobs from submit to all finished, through agent + workers
3. time to submit a 10,000-element array (one record)
4. time to submit 1,000 separate jobs from one process (one transaction each)
5. qsub cold start (a new process: `qsub -h -- true`)
6. qstat latency with a store of --big jobs (summary -Q, one id, the active view)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def fork_exec_floor(n: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    for _ in range(n):
        subprocess.Popen(["/bin/true"], close_fds=True).wait()
    serial = n / (time.perf_counter() - t0)

    def half():
        for _ in range(n // 2):
            subprocess.Popen(["/bin/true"], close_fds=True).wait()

    threads = [threading.Thread(target=half) for _ in range(2)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return serial, n / (time.perf_counter() - t0)


def fresh_home() -> str:
    home = tempfile.mkdtemp(prefix="hyper-bench-")
    os.environ["HYPER_HOME"] = home
    return home


def throughput(n: int) -> tuple[float, float]:
    fresh_home()
    from hyper.backends.local import ensure_agent
    from hyper.models import Job, JobSpec
    from hyper.services.context import open_context
    from hyper.store.base import Submission

    ctx = open_context()
    spec = JobSpec(command=["/bin/true"], submit_dir=os.getcwd())
    t0 = time.perf_counter()
    ctx.store.submit([Submission(Job(name="t", user="bench", queue="default", definition="default", spec=spec))
                      for _ in range(n)], time.time())
    submitted = time.perf_counter() - t0
    ensure_agent(ctx.host)
    while True:
        done = {c.state.value: c.tasks for c in ctx.store.counts()}.get("SUCCEEDED", 0)
        if done >= n:
            break
        time.sleep(0.02)
    total = time.perf_counter() - t0
    return n / total, submitted


def submit_array_and_singles() -> tuple[float, float, float]:
    fresh_home()
    from hyper.parsing.directives import Directives
    from hyper.parsing.arrays import parse_array
    from hyper.services import jobs as svc
    from hyper.services.context import open_context

    ctx = open_context()
    args = dict(script=None, command=["/bin/true"], script_name="", submit_env=dict(os.environ),
                cwd=os.getcwd(), user="bench")
    d = Directives(hold=True)
    d.array = parse_array("1-10000")
    t0 = time.perf_counter()
    svc.submit(ctx, d, **args)
    array_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(1000):
        svc.submit(ctx, Directives(hold=True), **args)
    singles_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([str(BIN / "qsub"), "-h", "-J", "1-10000", "--", "true"], check=True, capture_output=True)
    cli_array_s = time.perf_counter() - t0
    return array_s, singles_s, cli_array_s


def cold_start(runs: int = 15) -> float:
    fresh_home()
    subprocess.run([str(BIN / "qsub"), "-h", "--", "true"], check=True, capture_output=True)  # create the db
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(BIN / "qsub"), "-h", "--", "true"], check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def qstat_latency(big: int) -> dict[str, float]:
    """Fill a store with `big` jobs (1% still queued), then time qstat views as new processes."""
    fresh_home()
    from hyper.models import Job, JobSpec
    from hyper.services.context import open_context
    from hyper.store.base import Submission

    ctx = open_context()
    spec = JobSpec(command=["/bin/true"], submit_dir="/tmp")
    t0 = time.perf_counter()
    chunk = 20000
    for start in range(0, big, chunk):
        ctx.store.submit([Submission(Job(name="t", user="bench", queue="default", definition="default",
                                         spec=spec), hold=True) for _ in range(min(chunk, big - start))],
                         time.time())
    fill = time.perf_counter() - t0
    # finish 99% of them directly (bench set-up only): the counters follow through the triggers
    con = ctx.store.con
    con.execute("UPDATE jobs SET state = 'SUCCEEDED', user_hold = 0, ended = submitted WHERE id <= ?",
                (int(big * 0.99),))
    out = {"fill_s": fill}
    for label, args in (("qstat -Q", ["-Q"]), ("qstat ID", [str(big // 2)]),
                        (f"qstat (active view, {big - int(big * 0.99)} jobs)", [])):
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([str(BIN / "qstat"), *args], check=True, capture_output=True)
            times.append(time.perf_counter() - t0)
        out[label] = statistics.median(times)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--big", type=int, default=1_000_000)
    a = ap.parse_args()
    os.environ.setdefault("HYPER_AGENT_IDLE", "2")
    os.environ.setdefault("HYPER_WORKER_IDLE", "1")
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}")
    serial, parallel = fork_exec_floor(a.jobs)
    print(f"fork-exec floor ({a.jobs} x /bin/true): {serial:,.0f}/s serial, {parallel:,.0f}/s two at a time")
    rate, submit_s = throughput(a.jobs)
    print(f"hyper throughput ({a.jobs} trivial jobs, submit to all finished): {rate:,.0f} jobs/s "
          f"= {100 * rate / serial:.0f}% of the serial floor, {100 * rate / parallel:.0f}% of the parallel floor "
          f"(bulk submit took {submit_s * 1000:.0f} ms)")
    array_s, singles_s, cli_array_s = submit_array_and_singles()
    print(f"submit a 10,000-element array: {array_s * 1000:.1f} ms in-process, {cli_array_s * 1000:.0f} ms as a qsub process")
    print(f"submit 1,000 separate jobs from one process: {singles_s * 1000:.0f} ms ({1000 / singles_s:,.0f} jobs/s)")
    print(f"qsub cold start (median of 15): {cold_start() * 1000:.0f} ms")
    lat = qstat_latency(a.big)
    print(f"store with {a.big:,} jobs filled in {lat.pop('fill_s'):.1f} s")
    for label, seconds in lat.items():
        print(f"{label} at {a.big:,} jobs: {seconds * 1000:.0f} ms")


if __name__ == "__main__":
    main()
