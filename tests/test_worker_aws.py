"""The worker on an aws host, as AWS Batch starts it: claims from DynamoDB, ships output to CloudWatch Logs.

Everything talks to moto's server on 127.0.0.1 through boto3 exactly as to AWS. Workers are real processes
(`hyper worker run` or the image's start.sh) with the environment Batch gives a container; the job records
are checked through the host's own store, the logs through a boto3 logs client.
"""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import threading
import time
import urllib.request
import zlib
from pathlib import Path

import pytest

from hyper.aws.log_reading import StreamReader, stream_exists
from hyper.config import Host
from tests.conftest import BIN, cli, wait_until

ROOT = Path(__file__).resolve().parent.parent



def _logs_client(endpoint: str):
    import boto3

    return boto3.client("logs", region_name="us-east-1", endpoint_url=endpoint)


def _stream_text(endpoint: str, group: str, stream: str, first: int | None = None,
                 last: int | None = None) -> str | None:
    """A stream's messages joined, only those stamped within [first, last] when given (one attempt's window in
    a worker's shared stream); read here with boto3 directly, not through hyper's reader."""
    client = _logs_client(endpoint)
    try:
        events = client.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    except client.exceptions.ResourceNotFoundException:
        return None
    return "".join(e["message"] for e in events if (first is None or e["timestamp"] >= first)
                   and (last is None or e["timestamp"] <= last))


class AwsHost:
    """An aws host on moto made through the CLI, with helpers to start workers as Batch would."""

    def __init__(self, home: Path, endpoint: str, prefix: str):
        self.home, self.endpoint, self.prefix = home, endpoint, prefix
        self.group = f"/hyper/{prefix.rstrip('-')}"
        cli("hyper", "hosts", "create-host", "t", "--type", "aws", "--main-region", "us-east-1",
            "--endpoint-url", endpoint, "--table-prefix", prefix, check=True)
        self.procs: list[subprocess.Popen] = []
        self._store = None
        # the records a worker needs, written straight to the host's store: `hyper apply` would also deploy
        # Batch stacks and job definitions into moto, which these tests do not use (Batch is not running them)
        from hyper.models import Cluster, Definition, Image, Queue

        for resource in (Cluster(name="c", type="batch", max_vcpus=16), Queue(name="q", cluster="c"),
                         Image(name="w", uri="123456789012.dkr.ecr.us-east-1.amazonaws.com/w:1"),
                         Definition(name="d", image="w", vcpus=1, memory_mib=1024, ratio=10)):
            self.store.put_resource(resource, replace=True)

    @property
    def store(self):
        if self._store is None:
            from hyper.services.context import open_context

            self._store = open_context("t").store
        return self._store

    def jobs(self, job_id: int, indices: str | None = None) -> list:
        from hyper.parsing.arrays import parse_array
        from hyper.parsing.jobids import JobRef

        found, _ = self.store.get_jobs([JobRef(job_id, None if indices is None else parse_array(indices), False)])
        return found

    def job(self, job_id: int, index: int | None = None):
        found = self.jobs(job_id, None if index is None else str(index))
        return found[0] if found else None

    def worker_env(self, batch_job: str, index: int) -> dict:
        return {**os.environ, "AWS_BATCH_JOB_ID": batch_job, "AWS_BATCH_JOB_ARRAY_INDEX": str(index),
                "AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": "us-east-1"}

    def worker(self, name: str, idle: float = 2.0, batch_job: str = "batch-7", index: int = 0) -> subprocess.Popen:
        """`hyper worker run` as a Batch array child would run it (the image's start.sh does the same)."""
        proc = subprocess.Popen(
            [str(BIN / "hyper"), "--host", "t", "worker", "run", "--queue", "q", "--definition", "d",
             "--worker-id", name, "--workdir", str(self.home.parent / "work" / name), "--idle", str(idle)],
            env=self.worker_env(batch_job, index), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def entrypoint(self, container: Path, index: int) -> subprocess.Popen:
        """The worker image's start.sh in its own 'container' directory (own HYPER_HOME, like a fresh container)."""
        container.mkdir(parents=True)
        env = {**self.worker_env("batch-9", index), "PATH": f"{BIN}:{os.environ['PATH']}",
               "HYPER_HOME": str(container / ".hyper"), "HYPER_TABLE_PREFIX": self.prefix,
               "HYPER_MAIN_REGION": "us-east-1", "HYPER_QUEUE": "q", "HYPER_DEFINITION": "d",
               "HYPER_WORKER_IDLE": "2"}
        proc = subprocess.Popen(["sh", str(ROOT / "example-worker-image" / "start.sh")], cwd=container, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(proc)
        return proc

    def stream(self, job_id: int, index: int | None, attempt: int, which: str = "stdout") -> str | None:
        """One attempt's output as its record says: "<worker streams> <first ms> <last ms or ->" per attempt."""
        job = self.job(job_id, index)
        mark = (job.logs if job is not None else {}).get(str(attempt))
        if not mark:
            return None
        prefix, first, last = mark.split(" ")
        return _stream_text(self.endpoint, self.group, f"{prefix}/{which}", int(first),
                            None if last == "-" else int(last))

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def aws_host(home, moto_endpoint, request):
    prefix = f"wk{zlib.crc32(request.node.name.encode()) % 10**6}-"
    host = AwsHost(home, moto_endpoint, prefix)
    yield host
    host.stop()


def _kill_group(pid: int | None) -> None:
    if pid:
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


# the happy path ------------------------------------------------------------------------------------------
def test_array_elements_run_once_each_across_workers_with_output_in_cloudwatch(aws_host):
    job = cli("qsub", "-q", "q", "-d", "d", "-J", "1-20", "--", "sh", "-c",
              'echo "element $HYPER_ARRAY_INDEX batch=$AWS_BATCH_JOB_ID"; echo "err $HYPER_ARRAY_INDEX" >&2',
              check=True).stdout.strip()
    assert job == "1[]"
    workers = [aws_host.worker("batch-7-0", index=0), aws_host.entrypoint(aws_host.home.parent / "container", 2)]
    for proc in workers:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert "warning" not in err, err

    elements = aws_host.jobs(1, "1-20")
    assert [(e.state.value, e.attempts, e.exit_code) for e in elements] == [("SUCCEEDED", 1, 0)] * 20
    used = {e.worker for e in elements}
    assert used <= {"batch-7-0", "batch-9-2"}
    outputs = [aws_host.stream(1, i, 1) for i in range(1, 21)]
    batch_ids = {"batch-7-0": "batch-7", "batch-9-2": "batch-9"}
    assert outputs == [f"element {i} batch={batch_ids[e.worker]}\n" for i, e in enumerate(elements, 1)]
    assert [aws_host.stream(1, i, 1, "stderr") for i in range(1, 21)] == [f"err {i}\n" for i in range(1, 21)]

    # one stream pair per worker, not per job: 20 elements made at most 4 streams (CreateLogStream is limited
    # to ~50 per second per account and region), and every element's window is its own
    streams = _logs_client(aws_host.endpoint).describe_log_streams(logGroupName=aws_host.group)["logStreams"]
    assert sorted(s["logStreamName"] for s in streams) == sorted(
        f"workers/{w}/0/{which}" for w in used for which in ("stderr", "stdout"))
    windows = sorted(tuple(int(x) for x in e.logs["1"].split(" ")[1:]) for e in elements)
    assert all(a <= b for a, b in windows)
    by_worker = {}
    for e in elements:
        by_worker.setdefault(e.worker, []).append(tuple(int(x) for x in e.logs["1"].split(" ")[1:]))
    for spans in by_worker.values():  # within one worker's streams the windows never touch
        spans.sort()
        assert all(spans[i][1] + 2 <= spans[i + 1][0] for i in range(len(spans) - 1)), spans

    # qlog reads CloudWatch (the workers' local files are gone with their containers)
    e3 = elements[2]
    assert cli("qlog", "1[3]", check=True).stdout == f"element 3 batch={batch_ids[e3.worker]}\n"
    assert cli("qlog", "-e", "--tail", "1", "1[3]", check=True).stdout == "err 3\n"
    bad = cli("qlog", "1[]")
    assert bad.returncode == 2 and "is an array" in bad.stderr

    full = json.loads(cli("qstat", "-f", "1[3]", "--output", "json", check=True).stdout)[0]
    assert full["worker"] == e3.worker and full["region"] == "us-east-1"
    assert full["batch_job_id"] == f"{batch_ids[e3.worker]}:{e3.worker[-1]}"
    first, last = e3.logs["1"].split(" ")[1:]
    assert (full["log_group"], full["log_stream"], full["log_window_ms"]) == (
        aws_host.group, f"workers/{e3.worker}/0/stdout", f"{first}..{last}")


# faults --------------------------------------------------------------------------------------------------
RERUN = ('if [ "$HYPER_ATTEMPT" = 1 ]; then echo "first run"; trap "echo got TERM; exit 143" TERM; '
         'sleep 60 & wait; fi; echo "run $HYPER_ATTEMPT done"')


def _running(host: AwsHost, job_id: int):
    def check():
        job = host.job(job_id)
        return job if job is not None and job.state.value == "RUNNING" and job.pid else None

    return wait_until(check, timeout=30, step=0.2)


def test_killed_worker_lease_expires_then_job_is_requeued_and_runs_again(aws_host, monkeypatch):
    monkeypatch.setenv("HYPER_LEASE", "2")  # the worker renews it every 0.5 s
    job_id = cli("qsub", "-q", "q", "-d", "d", "--retries", "1", "--", "sh", "-c", RERUN, check=True).stdout.strip()
    first = aws_host.worker("w-killed")
    running = _running(aws_host, int(job_id))
    wait_until(lambda: aws_host.stream(1, None, 1) == "first run\n", timeout=15, step=0.2)  # shipped while running
    first.send_signal(signal.SIGKILL)  # the container vanishes: no flush, no finish
    first.communicate(timeout=10)
    _kill_group(running.pid)  # the container's processes die with it
    assert aws_host.job(1).state.value == "RUNNING"  # until its lease runs out and a sweep finds it
    requeued = wait_until(lambda: aws_host.store.requeue_expired(time.time()), timeout=15, step=0.5)
    assert [j.job_id for j in requeued] == ["1"]
    job = aws_host.job(1)
    assert (job.state.value, job.attempts) == ("QUEUED", 1) and "lease expired" in job.reason

    second = aws_host.worker("w-second", idle=1)
    assert second.communicate(timeout=60)[0] == "" and second.returncode == 0
    job = aws_host.job(1)
    assert (job.state.value, job.attempts, job.exit_code, job.worker) == ("SUCCEEDED", 2, 0, "w-second")
    assert cli("qlog", "1", check=True).stdout == "run 2 done\n"  # the latest attempt
    assert cli("qlog", "--attempt", "1", "1", check=True).stdout == "first run\n"


def test_sigterm_to_worker_stops_the_job_and_requeues_it(aws_host):
    job_id = cli("qsub", "-q", "q", "-d", "d", "--retries", "1", "--", "sh", "-c", RERUN, check=True).stdout.strip()
    first = aws_host.worker("w-spot")
    running = _running(aws_host, int(job_id))
    follow = subprocess.Popen([str(BIN / "qlog"), "-f", job_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    wait_until(lambda: aws_host.stream(1, None, 1) == "first run\n", timeout=15, step=0.2)
    t0 = time.monotonic()
    first.send_signal(signal.SIGTERM)  # spot interruption
    out, err = first.communicate(timeout=20)
    assert first.returncode == 0, err
    assert time.monotonic() - t0 < 5
    wait_until(lambda: _gone(running.pid), timeout=2)  # the job's whole process group is gone
    job = aws_host.job(1)
    assert (job.state.value, job.attempts) == ("QUEUED", 1)
    assert job.reason == "worker interrupted (SIGTERM) (run 1 of 2); requeued"
    assert aws_host.stream(1, None, 1) == "first run\ngot TERM\n"  # flushed before the attempt ended

    second = aws_host.worker("w-next", idle=1)
    second.communicate(timeout=60)
    job = aws_host.job(1)
    assert (job.state.value, job.attempts, job.exit_code) == ("SUCCEEDED", 2, 0)
    # qlog -f followed attempt 1, then switched to the rerun's stream, and ended with the job
    assert follow.communicate(timeout=30)[0] == "first run\ngot TERM\nrun 2 done\n"


def test_qdel_stops_a_running_job_within_seconds(aws_host):
    job_id = cli("qsub", "-q", "q", "-d", "d", "--", "sh", "-c", "echo started; sleep 60", check=True).stdout.strip()
    worker = aws_host.worker("w-del", idle=1)
    running = _running(aws_host, int(job_id))
    t0 = time.monotonic()
    assert cli("qdel", job_id).returncode == 0
    wait_until(lambda: _gone(running.pid), timeout=10, step=0.1)
    stopped = time.monotonic() - t0
    assert stopped < 5, stopped
    job = aws_host.job(1)
    assert job.state.value == "DELETED" and job.attempts == 1
    # the worker ships the rest of the output after the kill, before it records the end (it may lag under load)
    wait_until(lambda: aws_host.stream(1, None, 1) == "started\n", timeout=30, step=0.2)
    out, err = worker.communicate(timeout=30)  # the worker goes on (idles out)
    assert worker.returncode == 0, err


def _gone(pgid: int) -> bool:
    """No live process in the group (killed ones may linger as zombies until init reaps them)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return False
    return True


# the shipper on its own ------------------------------------------------------------------------------------
def _host(endpoint: str, prefix: str) -> Host:
    return Host(name="ship", type="aws", main_region="us-east-1", table_prefix=prefix, endpoint_url=endpoint)


def test_shipper_respects_batch_limits_and_round_trips_output(moto_endpoint, tmp_path):
    from hyper.aws import logs

    host = _host(moto_endpoint, "ship-limits-")
    assert logs.ensure_group(host) == "/hyper/ship-limits" and logs.ensure_group(host) == "/hyper/ship-limits"
    out = tmp_path / "out"
    out.write_bytes(b"")
    shipper = logs.LogShipper(host, {"stdout": "5/job/1/stdout", "stderr": "5/job/1/stderr"},
                              {"stdout": out, "stderr": tmp_path / "err"}, interval=0.05)
    shipper.start()
    body = b"".join(b"line %d\n" % i for i in range(12_000))  # more events than one call may carry
    body += b"\n" + "ünïcødé ✓\n".encode() + b"x" * 600_000 + b"\n"  # an empty line, UTF-8, a 600 kB line
    body += b"tail without newline"
    with open(out, "ab") as fh:
        for i in range(0, len(body), 100_000):
            fh.write(body[i:i + 100_000])
            fh.flush()
            time.sleep(0.01)
    assert shipper.close() == []
    reader = StreamReader(host, "5/job/1/stdout")
    assert reader.read() == body  # byte for byte, though cut into events of at most 256 KiB
    assert reader.read() == b""  # nothing new
    assert StreamReader(host, "5/job/1/stdout").tail(2) == b"x" * 600_000 + b"\ntail without newline"
    assert StreamReader(host, "5/job/1/stderr").read() == b""  # no stderr output: no stream at all
    assert not stream_exists(host, "5/job/1/stderr")
    assert shipper.calls >= 3  # a stream, then several PutLogEvents (10,000 events / 1 MiB per call)
    for start, end in logs.batches([(1, "a" * 300_000)] * 5):
        assert end - start <= 3


class _Throttler:
    """A proxy in front of moto that answers PutLogEvents with ThrottlingException (the first n, or always)."""

    def __init__(self, upstream: str, throttle: int):
        self.upstream, self.left, self.throttled = upstream, throttle, 0
        parent = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("X-Amz-Target", "").endswith("PutLogEvents") and parent.left:
                    parent.left -= 1
                    parent.throttled += 1
                    reply = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"}).encode()
                    self.send_response(400)
                    self.send_header("Content-Type", "application/x-amz-json-1.1")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                req = urllib.request.Request(parent.upstream + self.path, data=body, headers=headers, method="POST")
                try:
                    resp = urllib.request.urlopen(req, timeout=30)
                    status, data, rh = resp.status, resp.read(), resp.headers
                except urllib.error.HTTPError as exc:
                    status, data, rh = exc.code, exc.read(), exc.headers
                self.send_response(status)
                for k, v in rh.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def test_shipper_backs_off_on_throttling_and_never_drops_silently(moto_endpoint, tmp_path):
    from hyper.aws import logs

    out = tmp_path / "out"
    out.write_text("one\ntwo\n")
    flaky = _Throttler(moto_endpoint, throttle=4)
    try:
        host = _host(flaky.url, "ship-throttle-")
        logs.ensure_group(host)
        shipper = logs.LogShipper(host, {"stdout": "6/2/1/stdout"}, {"stdout": out}, base_delay=0.05).start()
        assert shipper.close() == []
        assert flaky.throttled == 4
        assert StreamReader(host, "6/2/1/stdout").read() == b"one\ntwo\n"
    finally:
        flaky.close()

    always = _Throttler(moto_endpoint, throttle=10**6)
    try:
        host = _host(always.url, "ship-throttle-")
        shipper = logs.LogShipper(host, {"stdout": "6/3/1/stdout"}, {"stdout": out}, base_delay=0.05,
                                  max_delay=0.2, flush_timeout=1.0).start()
        t0 = time.monotonic()
        warnings = shipper.close()
        assert time.monotonic() - t0 < 10
        assert len(warnings) == 1 and "ThrottlingException" in warnings[0] and str(out) in warnings[0], warnings
        assert out.read_text() == "one\ntwo\n"  # the local output is kept
    finally:
        always.close()
