#!/usr/bin/env python3
"""Benchmark of the two stores, SQLite and DynamoDB (moto's server on 127.0.0.1). Prints figures; asserts nothing.

    python scripts/bench_store.py [--only sqlite|dynamodb] [--sqlite-singles 5000] [--dynamo-singles 500]
                                  [--bulk 10000] [--sqlite-claims 5000] [--dynamo-claims 100]
                                  [--big 100000] [--dynamo-jobs 10000] [--dynamo-runs 1]

Per store, on one fresh store:
1. single submits: N jobs through the qsub path (services.jobs.submit, one job and one store.submit per call)
2. claim transitions: QUEUED -> RUNNING through store.claim, one worker, as the worker loop does; then the
   `qstat -q default` query on that small store
3. bulk submit: --bulk jobs in one services.jobs.submit call with a parameter sweep (qsub --sweep), which is
   one store.submit call; SQLite writes one transaction, DynamoDB its BatchWriteItem path (25 items per
   request, 8 threads)
4. qstat views: store topped up (held jobs) to --big jobs (SQLite) or --dynamo-jobs (DynamoDB); time the
   store query behind `qstat -q default` (list_jobs(JobFilter(queue=...)), every row read) and behind
   `qstat -Q` (counts()); SQLite also with 99% of the jobs finished (bench set-up by SQL, as bench_local.py)

DynamoDB figures come from moto, not AWS: moto runs in a child process (one request at a time, as the tests
run it) and answers every GSI query by scanning the whole table, so index-driven figures (claim, qstat) are
upper bounds that grow with the table, not DynamoDB's latency (on a busy machine a 10,000-job qstat can exceed
the store's 30 s read timeout: the failure is printed and the run goes on). Nothing leaves 127.0.0.1: fake credentials,
no instance metadata, no shared AWS config files.
"""

from __future__ import annotations

import argparse
from pathlib import Path
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid

from hyper.errors import HyperError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.local_moto
from tests.local_moto import FAKE_ENV as MOTO_ENV, UNSET, start_moto  # noqa: E402

QUEUE = DEFINITION = "default"

FAKE_ENV = {**MOTO_ENV, "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}
SUBMIT_ENV = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "USER": "bench", "SHELL": "/bin/sh"}


# moto's server -----------------------------------------------------------------------------------------
def _moto_child(conn, stop) -> None:
    """Child process: moto's server, so it does not share the benchmark's GIL."""
    server, url = start_moto()
    conn.send(url)
    stop.wait()
    server.stop()


class Moto:
    """moto's server on 127.0.0.1, in a child process (default) or a thread of this process."""

    def __init__(self, in_process: bool = False):
        self.in_process = in_process
        self.server = self.proc = self.stop_event = None
        self.url = ""

    def __enter__(self) -> "Moto":
        if self.in_process:
            self.server, self.url = start_moto()
            return self
        ctx = multiprocessing.get_context("spawn")
        parent, child = ctx.Pipe()
        self.stop_event = ctx.Event()
        self.proc = ctx.Process(target=_moto_child, args=(child, self.stop_event), daemon=True)
        self.proc.start()
        deadline = time.monotonic() + 60
        while not parent.poll(0.2):
            if not self.proc.is_alive() or time.monotonic() > deadline:
                self.proc.terminate()
                raise RuntimeError(f"moto's server did not start (child exit code {self.proc.exitcode})")
        self.url = parent.recv()
        return self

    def __exit__(self, *exc) -> None:
        if self.server is not None:
            self.server.stop()
        if self.proc is not None:
            self.stop_event.set()
            self.proc.join(10)
            if self.proc.is_alive():
                self.proc.terminate()
                self.proc.join(5)


def fake_aws_env(scratch: str) -> None:
    for key in UNSET:
        os.environ.pop(key, None)
    os.environ.update(FAKE_ENV)
    empty = os.path.join(scratch, "aws-empty")  # never a developer's ~/.aws
    os.environ["AWS_CONFIG_FILE"] = os.path.join(empty, "config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.path.join(empty, "credentials")


# stores ------------------------------------------------------------------------------------------------
def sqlite_context():
    """The local host of a fresh HYPER_HOME, opened as qsub opens it."""
    from hyper.services.context import open_context

    ctx = open_context()
    return ctx, ctx.store, "one transaction (executemany)"


def dynamo_context(endpoint: str, index_shards: int | None):
    """An aws host on moto with fresh tables, opened as the commands open it (Context -> open_store)."""
    from hyper.aws.tables import ensure_tables
    from hyper.config import Host, Settings
    from hyper.services.context import Context, bootstrap_local

    extra = {} if index_shards is None else {"index_shards": index_shards}
    host = Host(name="bench", type="aws", main_region="us-east-1", table_prefix=f"bench{uuid.uuid4().hex[:8]}-",
                endpoint_url=endpoint, extra=extra)
    ensure_tables(host)
    ctx = Context(host, Settings())
    store = ctx.store
    bootstrap_local(store)  # a cluster, the default queue and definition, as the contract tests set them up
    shards = f"{store.index_shards} index / {store.count_shards} count / {store.id_shards} id shards"
    return ctx, store, f"store.submit(list): BatchWriteItem x25, 8 threads; {shards}"


# phases ------------------------------------------------------------------------------------------------
def submit_args() -> dict:
    return dict(script=None, command=["/bin/true"], script_name="", submit_env=SUBMIT_ENV, cwd="/tmp",
                user="bench")


def single_submits(ctx, n: int) -> float:
    from hyper.parsing.directives import Directives
    from hyper.services import jobs as svc

    args = submit_args()
    t0 = time.perf_counter()
    for _ in range(n):
        svc.submit(ctx, Directives(), **args)
    return n / (time.perf_counter() - t0)


def bulk_submit(ctx, n: int, hold: bool = False) -> float:
    """n jobs in one qsub --sweep call: one store.submit of n jobs. Returns seconds."""
    from hyper.parsing.directives import Directives
    from hyper.services import jobs as svc

    sweep = [{"i": i} for i in range(n)]
    t0 = time.perf_counter()
    jobs = svc.submit(ctx, Directives(hold=hold or None), sweep=sweep, **submit_args())
    elapsed = time.perf_counter() - t0
    if len(jobs) != n:
        print(f"WARNING: a bulk submit of {n:,} jobs returned {len(jobs):,}")
    return elapsed


def claims(store, n: int) -> tuple[float, int]:
    """Claim up to n queued jobs as one worker does (store.claim with a lease). Returns (per s, claimed)."""
    ids = []
    t0 = time.perf_counter()
    for _ in range(n):
        now = time.time()
        job = store.claim(QUEUE, DEFINITION, "bench-worker", now + 60, now)
        if job is None:
            break
        ids.append(job.id)
    rate = len(ids) / (time.perf_counter() - t0)
    if len(set(ids)) != len(ids) or ids != sorted(ids):  # a sanity check, not a test: say it, carry on
        print(f"WARNING: claims came back duplicated or out of submission order: {ids[:20]}...")
    return rate, len(ids)


def total_jobs(store) -> int:
    return sum(c.tasks for c in store.counts())


def fill(ctx, store, target: int, chunk: int) -> tuple[int, float]:
    """Top the store up to `target` jobs with held jobs (bulk submits of `chunk`). Returns (jobs, seconds)."""
    have = total_jobs(store)
    t0 = time.perf_counter()
    while have < target:
        k = min(chunk, target - have)
        bulk_submit(ctx, k, hold=True)
        have += k
    return have, time.perf_counter() - t0


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:,.0f} ms" if value >= 100 else f"{value:.1f} ms" if value >= 1 else f"{value:.3f} ms"


def timed(fn, runs: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def qstat_queue(ctx) -> int:
    """What `qstat -q default` asks the store for (every row read, as qstat renders them all)."""
    from hyper.services import jobs as svc
    from hyper.store.base import JobFilter

    return len(svc.list_jobs(ctx, JobFilter(queue=QUEUE)))


def bench_store(kind: str, a, endpoint: str | None) -> dict:
    print(f"\n== {kind} ==", flush=True)
    home = tempfile.mkdtemp(prefix="hyper-bench-store-")
    os.environ["HYPER_HOME"] = home
    out: dict = {}
    try:
        if kind == "sqlite":
            ctx, store, bulk_path = sqlite_context()
            singles, n_claims, big, runs, chunk = a.sqlite_singles, a.sqlite_claims, a.big, 3, 20_000
        else:
            ctx, store, bulk_path = dynamo_context(endpoint, a.index_shards)
            singles, n_claims, big, runs = a.dynamo_singles, a.dynamo_claims, a.dynamo_jobs, a.dynamo_runs
            chunk = 10_000
        out["bulk_path"] = bulk_path

        def phase(key: str, fn) -> None:
            """Run one measurement; a store error (e.g. moto timing out under load) is printed, not fatal."""
            try:
                fn()
            except HyperError as exc:
                out[key] = "failed (see above)"
                hint = " (moto is slow on a busy machine: fewer --dynamo-jobs helps)" if kind == "dynamodb" else ""
                print(f"{key}: FAILED: {exc}{hint}", flush=True)

        def single() -> None:
            rate = single_submits(ctx, singles)
            out["single"] = (rate, singles)
            print(f"single submits (qsub path, {singles:,} x 1 job): {rate:,.0f} jobs/s", flush=True)

        def claim() -> None:
            rate, got = claims(store, min(n_claims, singles))
            out["claim"] = (rate, got, singles)
            shown = f"{rate:,.0f}" if rate >= 100 else f"{rate:.1f}"
            print(f"claims QUEUED->RUNNING ({got:,} claims, {singles:,} jobs in the store): {shown}/s", flush=True)

        def bulk() -> None:
            seconds = bulk_submit(ctx, a.bulk)
            out["bulk"] = (a.bulk / seconds, seconds)
            print(f"bulk submit of {a.bulk:,} jobs (one call; {bulk_path}): {seconds:.2f} s = "
                  f"{a.bulk / seconds:,.0f} jobs/s", flush=True)

        def views() -> None:
            have, fill_s = fill(ctx, store, big, chunk)
            out["jobs"] = have
            asked = "" if have == big else f" (asked {big:,}; the earlier phases already wrote more)"
            print(f"store holds {have:,} jobs{asked}, all active; top-up took {fill_s:.1f} s", flush=True)
            phase("qstat_Q", lambda: qstat_summary(runs))
            phase("qstat_all", lambda: qstat_all(have, runs))
            if kind == "sqlite":
                phase("qstat_1pct", lambda: qstat_mostly_finished(have, runs))

        def qstat_summary(runs: int) -> None:
            seconds, _ = timed(store.counts, runs)
            out["qstat_Q"] = seconds
            print(f"qstat -Q (counts(), median of {runs}): {ms(seconds)}", flush=True)

        def qstat_all(have: int, runs: int) -> None:
            how = "one indexed SELECT" if kind == "sqlite" else f"{3 * store.index_shards} GSI queries"
            seconds, rows = timed(lambda: qstat_queue(ctx), runs)
            out["qstat_all"] = (seconds, have)
            print(f"qstat -q {QUEUE} (store query: {how}; {rows:,} rows, median of {runs}): {ms(seconds)}",
                  flush=True)

        def qstat_mostly_finished(have: int, runs: int) -> None:
            # 99% finished, as bench_local.py sets it up (direct SQL: bench set-up only; triggers keep the counts)
            keep = max(1, have // 100)
            store.con.execute("UPDATE jobs SET state = 'SUCCEEDED', ready = 0, user_hold = 0, "
                              "ended = submitted WHERE idx = -1 AND id <= ?", (have - keep,))
            seconds, rows = timed(lambda: qstat_queue(ctx), runs)
            out["qstat_1pct"] = (seconds, rows)
            print(f"qstat -q {QUEUE} with {have - keep:,} of {have:,} finished ({rows:,} rows, median of {runs}): "
                  f"{ms(seconds)}", flush=True)

        def qstat_small() -> None:
            seconds, rows = timed(lambda: qstat_queue(ctx), runs)
            out["qstat_small"] = (seconds, rows)
            print(f"qstat -q {QUEUE} with the {rows:,} jobs of the single submits (median of {runs}): {ms(seconds)}",
                  flush=True)

        for key, fn in (("single", single), ("claim", claim), ("qstat_small", qstat_small), ("bulk", bulk),
                        ("jobs", views)):
            phase(key, fn)
        store.close()
        if kind == "dynamodb":
            from hyper.aws.tables import delete_tables

            delete_tables(ctx.host)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return out


# report ------------------------------------------------------------------------------------------------
def table(results: dict) -> None:
    kinds = list(results)
    heads = {"sqlite": "SQLite", "dynamodb": "DynamoDB (moto)"}

    def col(kind: str, key: str) -> str:
        r = results[kind]
        if key not in r:
            return "not measured"
        if isinstance(r[key], str):
            return r[key]
        if key == "single":
            rate, n = r["single"]
            return f"{rate:,.0f} jobs/s (N={n:,})"
        if key == "bulk":
            rate, s = r["bulk"]
            return f"{rate:,.0f} jobs/s ({s:.1f} s)"
        if key == "claim":
            rate, n, _ = r["claim"]
            return f"{rate:,.0f} /s (N={n:,})" if rate >= 100 else f"{rate:.1f} /s (N={n:,})"
        if key == "qstat_all":
            s, n = r["qstat_all"]
            return f"{ms(s)} (N={n:,})"
        if key in ("qstat_1pct", "qstat_small"):
            s, rows = r[key]
            return f"{ms(s)} ({rows:,} rows)"
        if key == "qstat_Q":
            return ms(r["qstat_Q"])
        return ""

    rows = [("single submit (qsub path)", "single"), ("bulk submit (one call)", "bulk"),
            ("claim QUEUED->RUNNING", "claim"), ("qstat -q, small store", "qstat_small"),
            ("qstat -q, all jobs active", "qstat_all"),
            ("qstat -q, 99% finished", "qstat_1pct"), ("qstat -Q (counts)", "qstat_Q")]
    width = [max(len(label) for label, _ in rows)] + [
        max(len(heads[k]), *(len(col(k, key)) for _, key in rows)) for k in kinds]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, width)).rstrip()  # noqa: E731
    print("\n" + line(["figure", *(heads[k] for k in kinds)]))
    print(line(["-" * w for w in width]))
    for label, key in rows:
        print(line([label, *(col(k, key) for k in kinds)]))
    if "dynamodb" in results:
        n = results["dynamodb"].get("jobs", 0)
        n = f"{n:,}" if isinstance(n, int) else "?"
        print(f"\nDynamoDB figures are moto's, on this machine, and qstat ran with N={n} jobs, not 100,000. moto "
              "answers every GSI query (claim: one per index shard; qstat -q: one per state and shard) by scanning "
              "the whole table and deep-copies both tables on every TransactWriteItems (each claim), so claim and "
              "qstat figures are upper bounds that grow with the table, not DynamoDB's latency. Submits pay one "
              "HTTP round trip per request to a local Python server that handles one request at a time.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["sqlite", "dynamodb"], help="benchmark one store only")
    ap.add_argument("--sqlite-singles", type=int, default=5000, help="single submits on SQLite (default 5000)")
    ap.add_argument("--dynamo-singles", type=int, default=500, help="single submits on DynamoDB (default 500)")
    ap.add_argument("--bulk", type=int, default=10_000, help="jobs in the bulk submit (default 10000)")
    ap.add_argument("--sqlite-claims", type=int, default=5000, help="claims on SQLite (at most the singles)")
    ap.add_argument("--dynamo-claims", type=int, default=100, help="claims on DynamoDB (at most the singles)")
    ap.add_argument("--big", type=int, default=100_000, help="jobs in the SQLite store for qstat (default 100000)")
    ap.add_argument("--dynamo-jobs", type=int, default=10_000,
                    help="jobs in the DynamoDB store for qstat (default 10000; moto scans, so keep it modest)")
    ap.add_argument("--dynamo-runs", type=int, default=1,
                    help="timed runs of each DynamoDB qstat view (default 1: one qstat -q takes ~1 min on moto)")
    ap.add_argument("--index-shards", type=int, default=None,
                    help="DynamoDB GSI shards for the new tables (default: the host default, 16)")
    ap.add_argument("--moto-in-process", action="store_true",
                    help="run moto in a thread of this process (it then shares the GIL with the client)")
    a = ap.parse_args()

    kinds = [a.only] if a.only else ["sqlite", "dynamodb"]
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} cores, load average {load}, python {sys.version.split()[0]}")
    scratch = tempfile.mkdtemp(prefix="hyper-bench-aws-")
    results: dict = {}
    try:
        if "sqlite" in kinds:
            results["sqlite"] = bench_store("sqlite", a, None)
        if "dynamodb" in kinds:
            fake_aws_env(scratch)
            with Moto(a.moto_in_process) as moto:
                where = "in this process" if a.moto_in_process else "in a child process"
                print(f"\nmoto server at {moto.url} ({where}, one request at a time)")
                results["dynamodb"] = bench_store("dynamodb", a, moto.url)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    table(results)


if __name__ == "__main__":
    main()
