#!/usr/bin/env python3
"""Scheduler planning time for 100 queues x 10 regions: the pure planner, the SubmitJob rendering, live-worker
counting from DescribeJobs answers, and a whole dry-run tick against an in-memory Batch (no network).

    python scripts/bench_scheduler.py [--queues 100] [--regions 10] [--repeat 30]

Figures are wall-clock milliseconds per tick (median and 95th percentile over --repeat runs).
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
import uuid

from hyper.aws import names
from hyper.aws.batch import ACTIVE_STATUSES, QueueListing, live_workers, render_submissions
from hyper.config import Host
from hyper.models import Cluster, Definition, Queue, Region
from hyper.scheduler.aws import BatchScheduler
from hyper.scheduler.planner import Demand, plan_regions
from hyper.store.base import StoreDefaults

HOST = Host(name="bench", type="aws", main_region="us-east-1", table_prefix="hyper-bench-")
ALL_REGIONS = ["us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-central-1", "eu-north-1", "ap-south-1",
               "ap-northeast-1", "ap-southeast-2", "sa-east-1", "ca-central-1", "eu-west-2"]


def timed(fn, repeat: int) -> tuple[float, float, object]:
    samples, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, int(0.95 * len(samples)))], result


def world(n_queues: int, n_regions: int, n_clusters: int, room_vcpus: int, seed: int = 7):
    rng = random.Random(seed)
    regions = ALL_REGIONS[:n_regions]
    clusters = [Cluster(name=f"c{i}", type="batch", max_vcpus=room_vcpus, regions=list(regions))
                for i in range(n_clusters)]
    queues, definitions, demands, weights, backlog = [], [], [], {}, {}
    for i in range(n_queues):
        q = Queue(name=f"q{i}", cluster=f"c{i % n_clusters}", priority=rng.choice([0, 0, 0, 5]),
                  weights={r: rng.randint(1, 5) for r in regions})
        d = Definition(name=f"d{i}", image="img", vcpus=rng.choice([1, 2, 4, 8]), memory_mib=4096,
                       gpus=rng.choice([0, 1]), ratio=rng.randint(1, 50))
        queues.append(q)
        definitions.append(d)
        tasks = rng.randint(1, 100_000)
        backlog[(q.name, d.name)] = tasks
        demands.append(Demand(q.name, d.name, q.cluster, tasks, d.ratio, d.vcpus, d.gpus,
                              rng.randint(0, 20), q.priority))
        weights[(q.name, d.name)] = dict(q.weights)
    room = {(c.name, r): room_vcpus for c in clusters for r in regions}
    return regions, clusters, queues, definitions, demands, weights, room, backlog


class MemoryBatch:
    """Batch answering from memory with DescribeJobs-shaped records: 10 unfinished arrays per job queue."""

    max_pages = 100

    def __init__(self, regions, clusters, queues, definitions):
        self.regions = regions
        self.jobs = {}
        for r in regions:
            for c in clusters:
                qname = names.job_queue(HOST, c.name)
                mine = [q for q in queues if q.cluster == c.name][:10]
                self.jobs[(r, qname)] = [{
                    "jobId": str(uuid.uuid4()), "jobName": names.batch_job_name(HOST, q.name, f"d{q.name[1:]}", "t1"),
                    "status": "RUNNABLE", "arrayProperties": {"size": 10, "statusSummary": {"SUCCEEDED": 2}},
                    "tags": names.batch_job_tags(HOST, q.name, f"d{q.name[1:]}"),
                    "container": {"resourceRequirements": [{"type": "VCPU", "value": "1"}]}} for q in mine]

    def job_queues(self, region, queue_names):
        return {n: {"jobQueueName": n, "state": "ENABLED", "status": "VALID"} for n in queue_names}

    def definition_revision(self, region, name):
        return 1

    def active_jobs(self, region, job_queue, also=()):
        return QueueListing([j for j in self.jobs.get((region, job_queue), []) if j["status"] in ACTIVE_STATUSES])

    def submit(self, region, request):
        raise AssertionError("a dry run sends nothing")


class MemoryStore(StoreDefaults):
    def __init__(self, resources, backlog):
        self.resources, self._backlog = resources, backlog

    def backlog(self):
        return dict(self._backlog)

    def list_resources(self, kind):
        return [r for r in self.resources if r.KIND == kind]

    def requeue_expired(self, now, on_lost=None):
        return []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queues", type=int, default=100)
    ap.add_argument("--regions", type=int, default=10)
    ap.add_argument("--clusters", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=30)
    args = ap.parse_args()
    print(f"scheduler planning: {args.queues} queues x {args.regions} regions, {args.clusters} clusters "
          f"(median / p95 of {args.repeat} runs)")

    for label, room_vcpus in (("room for everything", 10**7), ("contended (256 vCPUs per cluster and region)", 256)):
        regions, clusters, queues, definitions, demands, weights, room, backlog = world(
            args.queues, args.regions, args.clusters, room_vcpus)
        med, p95, counts = timed(lambda: plan_regions(demands, weights, room), args.repeat)
        workers = sum(counts.values())
        print(f"  plan_regions, {label}: {med:.2f} / {p95:.2f} ms -> {workers} workers in {len(counts)} "
              f"(queue, definition, region) cells")
        defs = {d.name: d for d in definitions}
        clusters_of = {q.name: q.cluster for q in queues}
        med, p95, reqs = timed(lambda: render_submissions(HOST, counts, defs, clusters_of, "t20261123000000abcd"),
                               args.repeat)
        print(f"  render_submissions, {label}: {med:.2f} / {p95:.2f} ms -> {len(reqs)} SubmitJob requests "
              f"({len(reqs) / 50:.1f} s of Batch's 50 SubmitJob/s)")

    regions, clusters, queues, definitions, demands, weights, room, backlog = world(
        args.queues, args.regions, args.clusters, 4096)
    batch = MemoryBatch(regions, clusters, queues, definitions)
    jobs = [j for listing in batch.jobs.values() for j in listing]
    pairs = [(q.name, d.name) for q in queues for d in definitions]
    med, p95, live = timed(lambda: live_workers(jobs, "hyper-bench-", pairs), args.repeat)
    print(f"  live_workers over {len(jobs)} described jobs: {med:.2f} / {p95:.2f} ms "
          f"-> {sum(j.workers for j in live)} live workers")
    store = MemoryStore([Region(name=r) for r in regions] + clusters + queues + definitions, backlog)
    scheduler = BatchScheduler(HOST, store, api=batch)
    med, p95, report = timed(lambda: scheduler.tick(dry_run=True), args.repeat)
    print(f"  whole dry-run tick (in-memory Batch and store, {len(regions)} region threads): {med:.2f} / {p95:.2f} ms "
          f"-> {len(report.requests)} requests, {len(report.problems)} problems")


if __name__ == "__main__":
    main()
