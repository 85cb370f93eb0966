#!/usr/bin/env python3
"""The aws-host figures in one run, against a moto server on 127.0.0.1 (a benchmark: it prints, it does not judge).

    python scripts/bench_aws.py [--singles 200] [--separate 1000] [--array 10000]

1. Submission into DynamoDB through the qsub path (services.jobs.submit): single jobs one call each, a
   10,000-element array (one record), and 1,000 separate jobs from one process in one call (BatchWriteItem,
   25 items per request, threads).
2. Scheduler planning for 100 queues x 10 regions (scripts/bench_scheduler.py, pure: no AWS calls).
3. Worker per-job overhead, claim + logs + complete (scripts/bench_worker_aws.py).
Figures against moto are moto's speed and hyper's request counts, not AWS latency.
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--singles", type=int, default=200)
    ap.add_argument("--separate", type=int, default=1000)
    ap.add_argument("--array", type=int, default=10000)
    ap.add_argument("--worker-jobs", type=int, default=200)
    opts = ap.parse_args()
    print(f"machine: {os.cpu_count()} cores, python {sys.version.split()[0]}; DynamoDB is moto on 127.0.0.1")
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
