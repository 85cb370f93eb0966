#!/usr/bin/env python3
"""Benchmark of the embedded local host, from the installed CLI. Prints figures; asserts nothing.

    python scripts/bench_local.py [--jobs 2000] [--arrays 1000,10000,100000] [--big 1000000] [--runs 9]

Every figure is timed in the same run as its yardstick (the machine is shared, so only ratios travel):
1. yardsticks: `python -c pass`, the spawn floor (N x /bin/true, serial and two at a time), and the cost of
   creating a job's two output files (N pairs, serial)
2. throughput: N trivial jobs submit-to-all-finished, as N separate jobs (`qsub --sweep`) and as one array
   (`qsub -J`), each through `qsub` (then polled) and `qsub --wait`; as a fraction of the two-at-a-time floor
   and, per trivial job, the CPU of the workers and of the processes their jobs ran, next to one /bin/true's
3. the array curve: jobs/s as the array grows (1k/10k/100k elements; --cli-array-max caps what runs through
   the agent end to end; larger sizes run claim+finish late in the array, in-process, and say so)
4. cold start (median of --runs): qsub, qstat, qdel, qlog, each also with --help (and the first --help in a
   HYPER_HOME, which renders and caches it), vs `python -c pass`
5. `qstat` of 10,000 queued jobs, as per-row cost (Slurm's `squeue -h` costs ~4-12 us/row here, 173 ms
   for 10,000: issue 15); `qstat -Q` and `qstat ID` with --big jobs in the store
6. 8 concurrent qsub processes: aggregate submissions/s, and whether any "locked" error reached a user
Run it with the qsub/qstat of the environment you want to measure on PATH next to this python
(a non-editable `pip install .` for cold start).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def q(cmd: str) -> str:
    return str(BIN / cmd)


def median_run(argv: list[str], runs: int, **kw) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, capture_output=True, **kw)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def spawn_floor(n: int) -> tuple[float, float]:
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


def floor_cpu(n: int) -> float:
    """CPU seconds one `/bin/true` costs its process (what the spawn floor's children use, per spawn)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(n):
        subprocess.Popen(["/bin/true"], close_fds=True).wait()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) / n


def cpu_per_job(n: int) -> tuple[float, float]:
    """CPU seconds per trivial job of the workers themselves and of the processes their jobs ran (the start gate's
    shell included), for an n-element array: read from /proc of each worker after the last job, before it idles
    out (the agent's workers run `python -m hyper.cli ... worker run`)."""
    home = fresh_home()
    idle = os.environ.get("HYPER_WORKER_IDLE")
    os.environ["HYPER_WORKER_IDLE"] = "5"
    try:
        subprocess.run([q("qsub"), "-z", "-J", f"1-{n}", "--wait", "--", "/bin/true"], check=True, capture_output=True)
        own = children = 0
        tick = os.sysconf("SC_CLK_TCK")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if b"worker" in cmdline and b"run" in cmdline and home.encode() in b" ".join(cmdline):
                own += int(fields[11]) + int(fields[12])  # utime, stime
                children += int(fields[13]) + int(fields[14])  # cutime, cstime: the jobs' processes, reaped
        return own / tick / n, children / tick / n
    finally:
        if idle is None:
            os.environ.pop("HYPER_WORKER_IDLE")
        else:
            os.environ["HYPER_WORKER_IDLE"] = idle


def file_floor(n: int) -> float:
    """Jobs/s if a job only created its two output files (stdout, stderr) in one directory, as a local job does:
    on a journaling disk this, not the spawn, can be the larger share of a trivial job."""
    d = Path(tempfile.mkdtemp(prefix="hyper-bench-files-", dir=os.environ.get("HYPER_HOME")))
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    t0 = time.perf_counter()
    for i in range(n):
        for suffix in ("out", "err"):
            os.close(os.open(d / f"{i}.{suffix}", flags, 0o600))
    return n / (time.perf_counter() - t0)


def fresh_home() -> str:
    home = tempfile.mkdtemp(prefix="hyper-bench-")
    os.environ["HYPER_HOME"] = home
    subprocess.run([q("qstat")], check=True, capture_output=True)  # create the database and defaults
    return home


def wait_all(home: str, n: int, timeout: float = 3600) -> None:
    """Poll the store's counters (a read; the agent and workers write) until n tasks ended."""
    import sqlite3

    con = sqlite3.connect(next(Path(home).rglob("hyper.db")))  # the local host's store under HYPER_HOME
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done = con.execute("SELECT COALESCE(SUM(tasks), 0) FROM counts WHERE state IN "
                           "('SUCCEEDED', 'FAILED', 'DELETED')").fetchone()[0]
        if done >= n:
            return
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {n} jobs in {home}")


def throughput(n: int, shape: str, wait: bool) -> float:
    """Submit-to-all-finished through the CLI: `shape` is 'separate' (--sweep) or 'array' (-J)."""
    home = fresh_home()
    args = [q("qsub"), "-z"]
    if shape == "array":
        args += ["-J", f"1-{n}"]
    else:
        sweep = Path(home) / "sweep.jsonl"
        sweep.write_text("".join(json.dumps({"i": i}) + "\n" for i in range(n)))
        args += ["--sweep", str(sweep)]
    if wait:
        args.append("--wait")
    t0 = time.perf_counter()
    subprocess.run(args + ["--", "/bin/true"], check=True, capture_output=True)
    if not wait:
        wait_all(home, n)
    return n / (time.perf_counter() - t0)


def array_late_rate(n: int, window: int = 1050) -> float:
    """claim+finish jobs/s over `window` elements near the end of an n-element array (in-process, no spawn)."""
    from hyper.models import Job, JobSpec
    from hyper.retry import EXITED
    from hyper.store.base import Submission
    from hyper.store.sqlite import SQLiteStore

    store = SQLiteStore(Path(tempfile.mkdtemp(prefix="hyper-bench-")) / "hyper.db")
    spec = JobSpec(command=["/bin/true"], submit_dir="/tmp")
    store.submit([Submission(Job(name="a", user="b", queue="q", definition="d", spec=spec, array=f"1-{n}"))],
                 time.time())

    def run(k: int) -> float:
        t0 = time.perf_counter()
        for _ in range(k):
            job = store.claim("q", "d", "w", time.time() + 60, time.time())
            store.finish(job, "w", EXITED, 0, "", time.time())
        return k / (time.perf_counter() - t0)

    # fast-forward (set-up only): the first n - window elements ran and succeeded, exactly the rows and
    # counters the worker path leaves behind, written in bulk so the old O(N^2) code can be measured too
    window = min(window, n)
    done = n - window
    con = store.con
    con.execute("BEGIN IMMEDIATE")
    con.executemany("INSERT INTO jobs (id, idx, name, user, queue, definition, state, submitted, started, ended, "
                    "attempts, worker, exit_code) VALUES (1, ?, 'a', 'b', 'q', 'd', 'SUCCEEDED', 0, 0, 0, 1, 'w', 0)",
                    ((i,) for i in range(1, done + 1)))
    con.execute("UPDATE jobs SET a_cursor = ?, a_done = ?, started = 0 WHERE id = 1 AND idx = -1",
                (done, done))
    con.execute("COMMIT")
    run(min(50, window))  # warm up
    return run(window - 50)


def cold_starts(runs: int) -> dict[str, float]:
    fresh_home()
    subprocess.run([q("qsub"), "-h", "--", "true"], check=True, capture_output=True)  # job 1, held
    # the q-commands keep typer's --help text per HYPER_HOME, terminal and source (qcmds/help_cache.py): the
    # first --help in a HYPER_HOME renders it with typer, later ones print the copy. Both are shown.
    first_help = median_run([q("qsub"), "--help"], 1)
    cases = {
        "qsub -h -- true": [q("qsub"), "-h", "--", "true"],
        "qsub --help": [q("qsub"), "--help"],
        "qstat": [q("qstat")],
        "qstat --help": [q("qstat"), "--help"],
        "qstat 1": [q("qstat"), "1"],
        "qstat -Q": [q("qstat"), "-Q"],
        "qdel 999999 (unknown id)": [q("qdel"), "999999"],
        "qdel --help": [q("qdel"), "--help"],
        "qlog 1": [q("qlog"), "1"],
        "qlog --help": [q("qlog"), "--help"],
    }
    return {"qsub --help, the first in this HYPER_HOME (typer renders it)": first_help,
            **{label: median_run(argv, runs) for label, argv in cases.items()}}


def fill(n: int, hold: bool, finish_fraction: float = 0.0) -> str:
    """A store with n jobs (in-process bulk insert: set-up only), a fraction of them already finished."""
    home = fresh_home()
    from hyper.models import Job, JobSpec
    from hyper.services.context import open_context
    from hyper.store.base import Submission

    ctx = open_context()
    spec = JobSpec(command=["/bin/true"], submit_dir="/tmp")
    for start in range(0, n, 20000):
        ctx.store.submit([Submission(Job(name="t", user="bench", queue="default", definition="default",
                                         spec=spec), hold=hold) for _ in range(min(20000, n - start))],
                         time.time())
    if finish_fraction:
        ctx.store.con.execute("UPDATE jobs SET state = 'SUCCEEDED', user_hold = 0, ended = submitted "
                              "WHERE id <= ?", (int(n * finish_fraction),))
    ctx.store.close()
    return home


def concurrent_qsubs(procs: int = 8, each: int = 15) -> tuple[float, int, list[str]]:
    """`procs` shells each running `each` qsubs one after another, on a fresh host (first use included)."""
    home = tempfile.mkdtemp(prefix="hyper-bench-")
    os.environ["HYPER_HOME"] = home
    script = f'for i in $(seq {each}); do "{q("qsub")}" -h -- true >/dev/null || echo FAILED; done'
    t0 = time.perf_counter()
    shells = [subprocess.Popen(["/bin/sh", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for _ in range(procs)]
    outs = [s.communicate() for s in shells]
    elapsed = time.perf_counter() - t0
    errors = [line for out, err in outs for line in (err + out).splitlines() if line.strip()]
    ok = procs * each - sum(1 for e in errors if e == "FAILED")
    return ok / elapsed, ok, errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--arrays", default="1000,10000,100000")
    ap.add_argument("--cli-array-max", type=int, default=10000,
                    help="largest array run end to end through qsub and the agent")
    ap.add_argument("--big", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--skip", default="", help="comma list of sections to skip: throughput,cpu,arrays,cold,"
                                               "qstat,concurrent")
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    os.environ.setdefault("HYPER_AGENT_IDLE", "2")
    os.environ.setdefault("HYPER_WORKER_IDLE", "1")
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}, python {sys.version.split()[0]}, "
          f"commands from {BIN}")
    py = median_run([sys.executable, "-c", "pass"], a.runs)
    print(f"python -c pass (median of {a.runs}): {py * 1000:.0f} ms")
    serial, parallel = spawn_floor(a.jobs)
    print(f"spawn floor ({a.jobs} x /bin/true): {serial:,.0f}/s serial, {parallel:,.0f}/s two at a time")
    print(f"output-file floor ({a.jobs} x creating a stdout and a stderr file): {file_floor(a.jobs):,.0f}/s serial")

    if "throughput" not in skip:
        for shape in ("separate", "array"):
            for wait in (False, True):
                rate = throughput(a.jobs, shape, wait)
                how = "qsub --wait" if wait else "qsub, then poll"
                print(f"throughput, {a.jobs} trivial jobs as {'one array' if shape == 'array' else 'separate jobs'}"
                      f" via {how}: {rate:,.0f} jobs/s = {rate / parallel:.2f} of the two-at-a-time floor")
    if "cpu" not in skip:
        own, jobs = cpu_per_job(a.jobs)
        print(f"CPU per trivial job ({a.jobs}-element array): workers {own * 1000:.2f} ms, the jobs' processes "
              f"{jobs * 1000:.2f} ms (start gate included); one /bin/true of the floor {floor_cpu(500) * 1000:.2f} ms")
    if "arrays" not in skip:
        curve = []
        for n in (int(x) for x in a.arrays.split(",")):
            if n <= a.cli_array_max:
                rate = throughput(n, "array", False)
                curve.append(f"{n:,}: {rate:,.0f}/s end to end")
            else:
                curve.append(f"{n:,}: (end to end skipped, > --cli-array-max)")
            curve.append(f"{n:,}: {array_late_rate(n):,.0f}/s store claim+finish over its last 1,000")
        print("array curve (jobs/s):\n  " + "\n  ".join(curve))
    if "cold" not in skip:
        for label, seconds in cold_starts(a.runs).items():
            print(f"cold start {label}: {seconds * 1000:.0f} ms = {seconds / py:.1f}x python -c pass")
    if "qstat" not in skip:
        fill(10000, hold=True)
        t10k = median_run([q("qstat")], a.runs)
        fresh_home()
        t0 = median_run([q("qstat")], a.runs)
        per_row = (t10k - t0) / 10000 * 1e6
        print(f"qstat of 10,000 queued jobs: {t10k * 1000:.0f} ms ({t0 * 1000:.0f} ms empty), {per_row:.1f} us/row "
              f"(squeue -h: ~4-12 us/row, 173 ms for 10,000; Slurm is not installed here)")
        fill(a.big, hold=True, finish_fraction=0.99)
        for label, args in (("qstat -Q", ["-Q"]), ("qstat ID", [str(a.big // 2)])):
            print(f"{label} with {a.big:,} jobs in the store: {median_run([q('qstat'), *args], a.runs) * 1000:.0f} ms")
    if "concurrent" not in skip:
        rate, ok, errors = concurrent_qsubs()
        locked = [e for e in errors if "locked" in e]
        print(f"8 concurrent qsub processes (fresh host): {rate:,.0f} submissions/s aggregate, {ok} ok, "
              f"{len(locked)} 'locked' errors" + (f": {locked[0]}" if locked else ""))


if __name__ == "__main__":
    main()
