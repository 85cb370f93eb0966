#!/usr/bin/env python3
"""The aws-host figures in one run, against a moto server on 127.0.0.1 (a benchmark: it prints, it does not judge).

    python scripts/bench_aws.py [--singles 200] [--separate 1000] [--array 10000] [--only cost|claims|all]

1. Submission into DynamoDB through the qsub path (services.jobs.submit): single jobs one call each, a
   10,000-element array (one record), and 1,000 separate jobs from one process in one call (BatchWriteItem,
   25 items per request, threads).
2. Scheduler planning for 100 queues x 10 regions (scripts/bench_scheduler.py, pure: no AWS calls).
3. Worker per-job overhead, claim + logs + complete (scripts/bench_worker_aws.py).
4. DynamoDB cost of one job's life (submit from a new qsub process, claim (from cached candidates after a short
   job, reading every ready shard after a longer one), the start (pid and log window), lease renewals and qdel
   peeks while it runs, finish, the worker's registry touch unless a renewal carried it, one qstat): read and
   write units per table and index, counted by scripts/ddb_meter.py from before/after images (moto reports no
   per-index capacity), and $ per million jobs at 0 s, 60 s and 1 h of run time with the on-demand prices in
   PRICES. tests/test_dynamo_cost.py holds the 1 h figure under $25.
5. Claim throughput from one array with 1, 4 and 8 workers (threads, each its own store and client).
Figures against moto are moto's speed and hyper's request counts, not AWS latency.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def submissions(singles: int, separate: int, array: int) -> list[str]:
    from hyper.parsing.arrays import parse_array
    from hyper.parsing.directives import Directives
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from hyper.services.hosts import create_host
    from tests.local_moto import FAKE_ENV, UNSET, start_moto

    os.environ.update(FAKE_ENV)
    for key in UNSET:
        os.environ.pop(key, None)
    home = tempfile.mkdtemp(prefix="hyper-bench-aws-")
    os.environ.update({"HYPER_HOME": home, "AWS_CONFIG_FILE": f"{home}/none", "AWS_SHARED_CREDENTIALS_FILE":
                       f"{home}/none"})
    server, url = start_moto()
    try:
        create_host("bench", "aws", main_region="us-east-1", endpoint_url=url, table_prefix="bench-")
        ctx = open_context("bench")
        from hyper.models import Cluster, Definition, Queue

        for resource in (Cluster(name="c", type="batch", max_vcpus=64), Queue(name="default", cluster="c"),
                         Definition(name="default", image="local")):
            ctx.store.put_resource(resource, replace=True)
        args = dict(script=None, command=["true"], script_name="true", submit_env={"PATH": "/usr/bin:/bin"},
                    cwd="/tmp", user="bench")
        lines = []
        t = time.perf_counter()
        for _ in range(singles):
            svc.submit(ctx, Directives(), **args)
        spent = time.perf_counter() - t
        lines.append(f"single submits ({singles} x 1 job, one call each): {singles / spent:,.0f} jobs/s")
        t = time.perf_counter()
        svc.submit(ctx, Directives(array=parse_array(f"1-{array}")), **args)
        lines.append(f"submit a {array:,}-element array (one record): {(time.perf_counter() - t) * 1000:,.1f} ms")
        t = time.perf_counter()
        svc.submit(ctx, Directives(), sweep=[{"i": i} for i in range(separate)], **args)
        spent = time.perf_counter() - t
        lines.append(f"submit {separate:,} separate jobs from one process (batched, threaded): {spent * 1000:,.0f} ms "
                     f"= {separate / spent:,.0f} jobs/s")
        return lines
    finally:
        server.stop()


# DynamoDB on-demand, us-east-1, standard table class (per million request units; checked 2026-11)
PRICES = {"W": 0.625, "R": 0.125}
RUN_TIMES = (("0 s", 0), ("60 s", 60), ("1 h", 3600))


def _aws_env() -> str:
    from tests.local_moto import FAKE_ENV, UNSET

    os.environ.update(FAKE_ENV)
    for key in UNSET:
        os.environ.pop(key, None)
    home = tempfile.mkdtemp(prefix="hyper-bench-aws-")
    os.environ.update({"HYPER_HOME": home, "AWS_CONFIG_FILE": f"{home}/none", "AWS_SHARED_CREDENTIALS_FILE":
                       f"{home}/none"})
    return home


def _store(url: str, prefix: str, **extra):
    from hyper.aws.tables import ensure_tables
    from hyper.config import Host
    from hyper.models import Definition, Queue
    from hyper.store.dynamodb import DynamoStore

    host = Host(name="bench", type="aws", main_region="us-east-1", endpoint_url=url, table_prefix=prefix,
                extra=extra)
    ensure_tables(host)
    store = DynamoStore(host)
    for resource in (Queue(name="default", cluster="c"), Definition(name="default", image="local")):
        store.put_resource(resource, replace=True)
    return store


def _keeper_counts(run_time: float, lease: float, state_poll: float, max_lease: float | None) -> tuple[int, int]:
    """(renewals, peeks) the worker makes over ``run_time`` seconds (hyper/worker/fence.py, called each second,
    with the arguments hyper/worker/loop.py gives it)."""
    from hyper.states import JobState
    from hyper.worker.fence import LeaseKeeper

    clock = [0.0]
    keeper = LeaseKeeper(lambda until: JobState.RUNNING, lambda: JobState.RUNNING, lease, lease / 3,
                         min(10.0, lease / 3), now=lambda: clock[0], until=lease, peek_ceiling=state_poll,
                         max_lease=max_lease)
    for _ in range(int(run_time)):
        clock[0] += 1
        keeper()
    return keeper.renewals, keeper.peeks


BASE = ["submit (qsub, one job)", "started (pid, where the output goes)", "finish", "qstat (all queues, active jobs)"]
# a worker running short jobs claims from the candidates it read for the last one (CANDIDATE_TTL); one that ran for
# a minute or an hour reads every ready shard again
WARM, COLD = "claim, warm (candidates cached)", "claim, cold (reads every ready shard)"
RENEWAL, PEEK = "lease renewal (worker item)", "qdel peek (eventually consistent)"
TOUCH = "worker registry touch"  # after a job: carried by its own renewals when it had any (RENEWAL_TOUCHES)


def life_units(url: str, prefix: str = "cost-"):
    """(units per operation of one job's life, the store): each operation metered alone, per table and index,
    against the DynamoDB at ``url`` with production shard counts (16 index shards, 32 counter shards). The
    caller has set fake credentials; it deletes the store's tables when it wants them gone."""
    import boto3

    sys.path.insert(0, str(ROOT / "scripts"))
    from ddb_meter import Meter

    from hyper.models import Job, JobSpec
    from hyper.store.base import JobFilter, Submission, WorkerInfo

    store = _store(url, prefix)
    reader = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1")
    meters = [Meter(store.db, reader), Meter(store.fast, reader)]
    script = "#!/bin/bash\n#PBS -N sweep\ncd $PBS_O_WORKDIR\npython train.py --lr 0.01 --seed $PBS_ARRAY_INDEX\n"
    phases: dict[str, dict] = {}

    def measure(name, fn):
        for m in meters:
            m.reset()
        out = fn()
        total: dict = collections.defaultdict(float)
        for m in meters:
            for k, v in m.units.items():
                total[k] += v
        phases[name] = dict(total)
        return out

    now = time.time()
    store.register_worker(WorkerInfo("w1", "default", "default", "", 1, now, now, "IDLE"))
    # a queue with work in it: the claim's candidate read is shared by the claims of the next 2 s (cached)
    warm = [Submission(Job(name="warm", user="u", queue="default", definition="default",
                           spec=JobSpec(script=script))) for _ in range(20)]
    store.submit(warm, now)
    store.claim("default", "default", "w0", now + 60, now)
    list(store.list_jobs(JobFilter(with_spec=False)))  # (the first qstat of a host writes its queue registry)
    store._queues_noted.clear()  # a qsub is a new process: it reads the queue registry once
    measure("submit (qsub, one job)", lambda: store.submit(
        [Submission(Job(name="one", user="u", queue="default", definition="default",
                        spec=JobSpec(script=script)))], time.time()))
    store._forget_candidates()
    measure(COLD, lambda: store.claim("default", "default", "w2", time.time() + 60, time.time()))
    claimed = measure(WARM, lambda: store.claim("default", "default", "w1", time.time() + 60, time.time()))
    measure("started (pid, where the output goes)", lambda: store.set_pid(
        claimed, "w1", 4242, log=f"workers/w1/0 {int(time.time() * 1000)} -"))
    measure(RENEWAL, lambda: store.heartbeat(claimed, "w1", time.time() + 60, jobs_run=1))
    measure(PEEK, lambda: store.peek(claimed, "w1"))
    measure("finish", lambda: store.finish(claimed, "w1", "exited", 0, "", time.time(),
                                           log=f"workers/w1/0 {int(time.time() * 1000)} "
                                               f"{int(time.time() * 1000) + 5}"))
    measure(TOUCH, lambda: store.touch_worker("w1", time.time(), "BUSY", 1))
    measure("qstat (all queues, active jobs)", lambda: list(store.list_jobs(JobFilter(with_spec=False))))
    return phases, store


def dollars(units: dict) -> float:
    """$ per million of an operation's units ({(table, "W" or "R"): units}) at the on-demand PRICES."""
    return sum(v * PRICES[k[1]] for k, v in units.items())


def per_million(phases: dict, seconds: float, lease: float, max_lease: float | None,
                state_poll: float) -> tuple[float, int, int]:
    """($ per million jobs that run ``seconds``, renewals, peeks) at the on-demand PRICES."""
    from hyper.store.dynamodb.keys import CANDIDATE_TTL

    per = {name: dollars(units) for name, units in phases.items()}
    renewals, peeks = _keeper_counts(seconds, lease, state_poll, max_lease)
    total = (sum(per[b] for b in BASE) + renewals * per[RENEWAL] + peeks * per[PEEK]
             + (0 if renewals else per[TOUCH]) + per[WARM if seconds < CANDIDATE_TTL else COLD])
    return total, renewals, peeks


def cost(leases: list[tuple[float, float | None]]) -> list[str]:
    """Units per table/index for one job's life, and $ per million jobs (see the module docstring) for each
    (lease, max lease): the default (60 s growing to 900 s), longer growth, and fixed leases as before."""
    _aws_env()
    from tests.local_moto import start_moto

    server, url = start_moto()
    try:
        phases, store = life_units(url)
        state_poll = store.STATE_POLL
    finally:
        server.stop()

    lines = ["per operation (units; tables without the prefix, index after ':'):"]
    for name, units in phases.items():
        shown = ", ".join(f"{k[0].split('-', 1)[1]} {k[1]}={v:g}" for k, v in sorted(units.items()))
        lines.append(f"  {name:42s} {shown}")
    lines.append("$ per million jobs (on-demand: $%.3f per million write units, $%.3f per million read units):"
                 % (PRICES["W"], PRICES["R"]))
    header = "  lease (max)      " + "".join(f"{label:>10s}" for label, _ in RUN_TIMES) + "   (beats, peeks at 1 h)"
    lines.append(header)
    for lease, max_lease in leases:
        row = f"  {lease:5.0f} s ({'fixed' if max_lease is None else f'{max_lease:.0f} s':>6s})  "
        for _, seconds in RUN_TIMES:
            total, renewals, peeks = per_million(phases, seconds, lease, max_lease, state_poll)
            row += f"{total:>10.2f}"
        row += f"   ({renewals}, {peeks})"
        lines.append(row)
    dearer = dollars(phases[COLD]) - dollars(phases[WARM])
    lines.append(f"  (0 s: the claim reuses the last claim's candidates; 60 s and 1 h: it reads every ready shard, "
                 f"${dearer:.2f} more. Target: under $25 per million 1 h jobs)")
    return lines


def claim_throughput(size: int, workers: list[int], seconds: float, aheads: tuple[int, ...] = (1, 16)) -> list[str]:
    """Elements claimed (and finished at once) per second from one array, by N threads with their own stores,
    claiming one element per transaction (ahead 1, as before claim_many) or up to 16 (what a worker does while
    its jobs are short), and the transactions that committed per element."""
    import threading

    from hyper.models import Job, JobSpec
    from hyper.store.base import Submission

    _aws_env()
    from tests.local_moto import start_moto

    lines = []
    server, url = start_moto()
    try:
        for ahead in aheads:
            for n in workers:
                first = _store(url, f"claims{ahead}x{n}-", index_shards=2, count_shards=8)
                first.submit([Submission(Job(name="a", user="u", queue="default", definition="default",
                                             array=f"0-{size - 1}", spec=JobSpec(command=["true"])))], time.time())
                counts = [0] * n
                commits = [0] * n
                stop = time.monotonic() + seconds

                def run(i: int) -> None:
                    from hyper.store.dynamodb import DynamoStore

                    store = DynamoStore(first.host)
                    transact = store._transact

                    def counted(*args, **kwargs):
                        result = transact(*args, **kwargs)
                        commits[i] += bool(result)
                        return result

                    store._transact = counted
                    while time.monotonic() < stop:
                        now = time.time()
                        jobs = store.claim_many("default", "default", f"w{i}", now + 60, now, ahead)
                        if not jobs:
                            return
                        for job in jobs:
                            store.finish(job, f"w{i}", "exited", 0, "", time.time())
                            counts[i] += 1

                t = time.perf_counter()
                threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join()
                spent = time.perf_counter() - t
                done = sum(counts)
                lines.append(f"  ahead {ahead:2d}, {n} worker(s) on one {size:,}-element array: {done / spent:,.0f} "
                             f"elements claimed+finished/s ({done} in {spent:.1f} s, "
                             f"{sum(commits) / max(done, 1):.2f} transactions per element)")
    finally:
        server.stop()
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--singles", type=int, default=200)
    ap.add_argument("--separate", type=int, default=1000)
    ap.add_argument("--array", type=int, default=10000)
    ap.add_argument("--worker-jobs", type=int, default=200)
    ap.add_argument("--only", choices=("all", "cost", "claims"), default="all")
    ap.add_argument("--claim-seconds", type=float, default=20.0)
    opts = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; DynamoDB is moto on 127.0.0.1")
    if opts.only in ("all", "cost"):
        print("== DynamoDB cost of one job's life ==", flush=True)
        for line in cost([(60.0, 900.0), (60.0, 3600.0), (60.0, None), (300.0, None)]):
            print(line, flush=True)
    if opts.only in ("all", "claims"):
        print("== claim throughput per array (moto serves one request at a time) ==", flush=True)
        for line in claim_throughput(2000, [1, 4, 8], opts.claim_seconds):
            print(line, flush=True)
    if opts.only != "all":
        return
    print("== submission ==")
    for line in submissions(opts.singles, opts.separate, opts.array):
        print(line)
    sys.stdout.flush()
    print("== scheduler planning (100 queues x 10 regions) ==", flush=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_scheduler.py")], check=False)
    print("== worker per-job overhead ==", flush=True)
    subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_worker_aws.py"), "--jobs", str(opts.worker_jobs)],
                   check=False)


if __name__ == "__main__":
    main()
