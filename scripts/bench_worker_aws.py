#!/usr/bin/env python3
"""Worker per-job overhead on an aws host (claim + logs + complete), against a moto server on 127.0.0.1.

    python scripts/bench_worker_aws.py [--jobs 200] [--workers 1]

Starts moto's ThreadedMotoServer (one request at a time, as tests/moto_server.py: moto is not thread-safe),
creates an aws host (DynamoDB tables, a queue and a definition), submits one array of N trivial jobs
(``echo``), then runs the real worker loop in this process until the array is done, twice: with CloudWatch
Logs shipping (what runs on Batch) and without it (the same loop, logs only in local files). Prints
jobs/s, ms per job, and the AWS requests per job by operation (counted with botocore's own event hooks).
Figures against moto measure hyper's request count and moto's speed, not AWS latency: multiply the
requests per job by a real round trip (~5-10 ms in-region) for an AWS estimate.
"""

from __future__ import annotations

import argparse
import collections
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


from tests.local_moto import start_moto  # noqa: E402  (after the sys.path line)


def environment() -> None:
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
                       "HYPER_HOME": tempfile.mkdtemp(prefix="hyper-bench-aws-")})
    empty = Path(os.environ["HYPER_HOME"]) / "aws-empty"
    os.environ["AWS_CONFIG_FILE"] = str(empty / "config")
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = str(empty / "credentials")
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_REGION"):
        os.environ.pop(key, None)


class Counter:
    """Counts requests and their time per service.operation with botocore's own before/after-call events."""

    def __init__(self):
        self.calls: collections.Counter = collections.Counter()
        self.seconds: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.local = threading.local()

    def hook(self, client) -> None:
        service = client.meta.service_model.service_name

        def before(model, **kwargs):
            self.local.t0 = time.perf_counter()
            with self.lock:
                self.calls[f"{service}.{model.name}"] += 1

        def after(model, **kwargs):
            spent = time.perf_counter() - getattr(self.local, "t0", time.perf_counter())
            with self.lock:
                self.seconds[service] += spent

        client.meta.events.register("before-call", before)
        client.meta.events.register("after-call", after)

    def snapshot(self) -> tuple[collections.Counter, collections.Counter]:
        with self.lock:
            return collections.Counter(self.calls), collections.Counter(self.seconds)


def setup(endpoint: str, name: str, prefix: str):
    from hyper.models import Cluster, Definition, Image, Queue
    from hyper.services.context import open_context
    from hyper.services.hosts import create_host

    create_host(name, "aws", main_region="us-east-1", table_prefix=prefix, endpoint_url=endpoint)
    ctx = open_context(name)
    store = ctx.store
    store.put_resource(Cluster(name="c", type="batch", max_vcpus=64), replace=True)
    store.put_resource(Queue(name="q", cluster="c"), replace=True)
    store.put_resource(Image(name="w", uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/w:1"), replace=True)
    store.put_resource(Definition(name="d", image="w", vcpus=1, memory_mib=1024, ratio=10), replace=True)
    return ctx


def hook_clients(ctx, counter: Counter) -> None:
    """Every client the store and the shipper use (clients are shared per endpoint: hook them once)."""
    from hyper.aws import session

    for service in ("dynamodb", "logs"):
        for attempts in (None, 1, 2, 3):
            counter.hook(session.client(ctx.host, service, max_attempts=attempts))


def submit(ctx, n: int) -> int:
    from hyper.parsing.directives import Directives
    from hyper.parsing.arrays import parse_array
    from hyper.services import jobs as svc

    d = Directives(queue="q", definition="d", array=parse_array(f"1-{n}"))
    jobs = svc.submit(ctx, d, script=None, command=["echo", "hello from a trivial job"], script_name="",
                      submit_env=dict(os.environ), cwd=os.getcwd(), user="bench")
    return jobs[0].id


def run_workers(ctx, workers: int, ship: bool, tag: str) -> tuple[float, int]:
    from hyper.worker.loop import Worker

    done = []

    def one(k: int) -> None:
        home = Path(os.environ["HYPER_HOME"])
        w = Worker(ctx.store, f"{tag}-{k}", "q", "d", home / "work" / f"{tag}-{k}", home / "logs" / tag,
                   idle=0.3, lease=60, kill_grace=5)
        w.aws = ship  # False: the same loop with output only in local files
        done.append(w)
        w.run()

    t0 = time.perf_counter()
    threads = [threading.Thread(target=one, args=(k,)) for k in range(1, workers)]
    for t in threads:
        t.start()
    one(0)
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0 - 0.3  # minus the final idle wait
    return elapsed, sum(w.jobs_run for w in done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    environment()
    server, endpoint = start_moto()
    try:
        from hyper.aws import logs
        from hyper.parsing.jobids import JobRef

        print(f"moto server {endpoint}; {args.jobs} trivial jobs (echo), {args.workers} worker(s) in-process")
        print(f"{'mode':<30}{'jobs/s':>7}{'ms/job':>8}{'ddb ms':>8}{'logs ms':>8}{'req/job':>8}"
              "   requests per job by operation")
        counter = None
        for ship in (False, True):  # each on fresh tables: moto answers queries by scanning
            ctx = setup(endpoint, f"bench{int(ship)}", f"bench-worker-{int(ship)}-")
            if counter is None:
                counter = Counter()
                hook_clients(ctx, counter)
            logs.ensure_group(ctx.host)
            job_id = submit(ctx, args.jobs)
            calls0, secs0 = counter.snapshot()
            elapsed, ran = run_workers(ctx, args.workers, ship, "ship" if ship else "local")
            calls1, secs1 = counter.snapshot()
            calls, secs = calls1 - calls0, secs1 - secs0
            assert ran == args.jobs, f"{ran} of {args.jobs} jobs ran"
            states = {j.state.value for j in ctx.store.get_jobs([JobRef(job_id, None, True)])[0]}
            per = {k: v / ran for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}
            total = sum(calls.values()) / ran
            mode = "claim+run+logs+complete" if ship else "claim+run+complete (no logs)"
            detail = ", ".join(f"{k.split('.')[1]} {v:.2f}" for k, v in per.items() if v >= 0.01)
            print(f"{mode:<30}{ran / elapsed:>7.1f}{elapsed / ran * 1000:>8.1f}"
                  f"{secs['dynamodb'] / ran * 1000:>8.1f}{secs['logs'] / ran * 1000:>8.1f}{total:>8.1f}   {detail}"
                  f"   [{'/'.join(sorted(states))}]")
        t0 = time.perf_counter()
        import subprocess

        for _ in range(50):
            subprocess.run(["echo", "x"], stdout=subprocess.DEVNULL)
        spent = time.perf_counter() - t0
        print(f"{'process spawn floor':<30}{50 / spent:>7.1f}{spent / 50 * 1000:>8.1f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
