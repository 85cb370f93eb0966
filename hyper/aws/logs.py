"""CloudWatch Logs for an aws host: where a job's output goes, how a worker ships it, how ``qlog`` reads it.

Layout
- Log group ``/hyper/<table prefix without its trailing '-'>`` (``/hyper/hyper-prod`` for prefix ``hyper-prod-``),
  one per host, in the host's main region (workers in every region write there, so ``qlog`` has one place to
  read). Provisioning creates it with the host's retention (the main stack); if it is missing when a worker
  creates a stream, the worker creates it (idempotent) with the same retention.
- One log stream per job *attempt* and output: ``<job id>/<index or 'job'>/<attempt>/<stdout|stderr>``, e.g.
  ``42/job/1/stdout`` or ``42/7/2/stderr`` (element 7 of array 42, second run). A rerun never mixes its output
  with the run before; ``qlog`` shows the latest attempt (``--attempt N`` an earlier one). Joined output
  (``-j oe`` / ``-j eo``) has only the ``stdout`` stream. Streams are created lazily, when the first byte is
  shipped: a job that writes nothing to stderr has no stderr stream, and readers take a missing stream as
  empty output (one CreateLogStream per job for the common case, not two).
- Events: one per output line *including its newline*, so concatenating a stream's messages gives the output
  byte for byte (an empty line is the message ``"\\n"``; CloudWatch refuses empty messages). A line longer
  than an event may hold (256 KiB minus 26 bytes) is cut into several events; a line still without its
  newline is sent after ``PARTIAL_AFTER`` seconds (progress bars) or at the job's end, its rest later:
  concatenation restores both. Bytes that are not UTF-8 become U+FFFD (CloudWatch stores text).

Shipping (``LogShipper``): the job writes to local files as on every host (the source of truth); a thread tails
them every ``interval`` seconds and sends PutLogEvents batches within the API limits (10,000 events, 1,048,576
bytes counting 26 bytes per event, chronological, spanning < 24 h). It reads ahead at most ``MAX_PENDING`` bytes
past what is sent, so an outage costs no memory: the file keeps the rest. Throttling and transient errors are
retried with exponential backoff and jitter; a missing stream or group is created and the batch resent. At the
job's end ``close()`` flushes everything, retrying until ``flush_timeout``; what still cannot be sent (or what
CloudWatch rejected) is reported in ``close()``'s warnings, which the worker prints, and the local file is
kept. Nothing is dropped silently.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from hyper.aws import names, tables
from hyper.aws import session as aws
from hyper.config import Host

MAX_BATCH_EVENTS = 10_000
MAX_BATCH_BYTES = 1_048_576
EVENT_OVERHEAD = 26  # bytes CloudWatch adds to each message when it counts a batch
MAX_EVENT_BYTES = 256 * 1024 - EVENT_OVERHEAD
MAX_SPAN_MS = 24 * 3600 * 1000 - 60_000  # a batch may not span 24 h
MAX_PENDING = 4 * MAX_BATCH_BYTES  # read ahead of what is sent at most this much (the file holds the rest)
READ_CHUNK = 1 << 20
PARTIAL_AFTER = 2.0  # seconds a line without its newline waits before it is sent anyway
GET_LIMIT = 10_000
TRANSIENT_CODES = aws.THROTTLING_CODES | {"ServiceUnavailableException", "ServiceUnavailable", "InternalFailure",
                                          "InternalServerError", "OperationAbortedException", "RequestTimeout",
                                          "RequestTimeoutException",
                                          "InvalidSequenceTokenException"}  # legacy tokens: a resend succeeds
STREAMS = ("stdout", "stderr")


# names (pure) ----------------------------------------------------------------------------------------
def group_name(host: Host) -> str:
    """The host's log group: ``/hyper/`` and its table prefix without the trailing dash (hyper/aws/names.py)."""
    return names.log_group(host)


def stream_name(job_id: int, index: int | None, attempt: int, which: str) -> str:
    """``<job id>/<index or 'job'>/<attempt>/<stdout|stderr>``: one stream per attempt and output."""
    if which not in STREAMS:
        raise ValueError(f"unknown output {which!r}")
    return f"{job_id}/{'job' if index is None else index}/{attempt}/{which}"


# log group -------------------------------------------------------------------------------------------
def _logs(host: Host, max_attempts: int | None = None):
    return aws.client(host, "logs", max_attempts=max_attempts)


def _create_group(client, host: Host, retention_days: int | None = None) -> bool:
    """Create the group (True) unless it exists (False), with the host's retention; botocore errors propagate."""
    name = group_name(host)
    try:
        client.create_log_group(logGroupName=name)
    except client.exceptions.ResourceAlreadyExistsException:
        return False
    from hyper.aws.templates import log_retention

    days = retention_days if retention_days is not None else tables.settings(host)["retention_days"]
    try:
        client.put_retention_policy(logGroupName=name, retentionInDays=log_retention(max(1, int(days))))
    except Exception as exc:  # the logs are there and kept (forever): only the expiry is missing
        if aws.error_code(exc) not in aws.DENIED_CODES:
            raise
    return True


def ensure_group(host: Host, retention_days: int | None = None) -> str:
    """Create the host's log group if it is missing (idempotent); returns its name.

    Provisioning creates it (the main stack, hyper/aws/templates.py) and workers may not create groups (their
    role has logs:CreateLogStream and logs:PutLogEvents only), so the shipper calls this only when a stream
    cannot be created because the group is missing; tests and benchmarks call it directly.
    """
    with aws.aws_errors(host, "logs", f"create log group {group_name(host)}"):
        _create_group(_logs(host), host, retention_days)
    return group_name(host)


# events ----------------------------------------------------------------------------------------------
def _char_cut(data: bytes, limit: int) -> int:
    """The largest cut <= limit that does not split a UTF-8 character of valid UTF-8 ``data``."""
    cut = min(limit, len(data))
    while 0 < cut < len(data) and (data[cut] & 0xC0) == 0x80:
        cut -= 1
    return cut or min(limit, len(data))


def _incomplete_tail(data: bytes) -> int:
    """How many trailing bytes of ``data`` are an unfinished UTF-8 character (0..3)."""
    for back in range(1, min(4, len(data)) + 1):
        b = data[-back]
        if b & 0xC0 == 0x80:
            continue  # continuation byte: look further back for the lead byte
        need = 2 if b & 0xE0 == 0xC0 else 3 if b & 0xF0 == 0xE0 else 4 if b & 0xF8 == 0xF0 else 1
        return back if need > back else 0
    return 0


def messages(chunk: bytes) -> list[str]:
    """``chunk`` (whole lines, or a partial line) as CloudWatch messages of at most MAX_EVENT_BYTES."""
    out: list[str] = []
    for line in _split_nl(chunk):
        encoded = line.decode("utf-8", "replace").encode("utf-8")
        while encoded:
            cut = _char_cut(encoded, MAX_EVENT_BYTES)
            out.append(encoded[:cut].decode("utf-8"))
            encoded = encoded[cut:]
    return out


def _split_nl(chunk: bytes) -> list[bytes]:
    """Split on b'\\n' only (a '\\r' progress line stays within its line)."""
    parts = chunk.split(b"\n")
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def batches(events: list[tuple[int, str]]) -> Iterator[tuple[int, int]]:
    """(start, end) slices of ``events`` that each fit one PutLogEvents call."""
    start = 0
    while start < len(events):
        size = 0
        end = start
        first_ts = events[start][0]
        while end < len(events) and end - start < MAX_BATCH_EVENTS:
            ts, msg = events[end]
            n = len(msg.encode("utf-8")) + EVENT_OVERHEAD
            if end > start and (size + n > MAX_BATCH_BYTES or ts - first_ts > MAX_SPAN_MS):
                break
            size += n
            end += 1
        yield start, end
        start = end


# shipping --------------------------------------------------------------------------------------------
@dataclass
class _Stream:
    which: str
    path: Path
    name: str
    offset: int = 0
    partial: bytes = b""
    partial_since: float | None = None
    pending: list[tuple[int, str]] = field(default_factory=list)
    pending_bytes: int = 0
    created: bool = False
    failed: str | None = None
    rejected: int = 0
    events: int = 0
    bytes: int = 0


class LogShipper:
    """Tails one job attempt's output files into CloudWatch Logs while it runs; ``close()`` flushes.

    ``start()`` is called once the job's files are open (truncated) and its process runs; ``close()`` after it
    ended and before its end is recorded, so a reader that sees the job finished finds all of its output.
    """

    def __init__(self, host: Host, job_id: int, index: int | None, attempt: int, files: dict[str, Path], *,
                 interval: float = 1.0, flush_timeout: float = 20.0, base_delay: float = 0.2,
                 max_delay: float = 5.0, sleep: Callable[[float], None] = time.sleep):
        self.host = host
        self.group = group_name(host)
        self.streams = [_Stream(which, Path(path), stream_name(job_id, index, attempt, which))
                        for which, path in files.items() if path is not None]
        self.interval = interval
        self.flush_timeout = flush_timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.calls = 0  # CloudWatch requests made (the benchmark reports them)
        self._client = None
        self._last_ts = 0
        self._failures = 0  # consecutive transient failures (backoff)
        self._retry_at = 0.0
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None
        self._errors: list[str] = []
        self._last_error = ""

    # lifecycle
    def start(self) -> "LogShipper":
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="hyper-log-shipper", daemon=True)
            self._thread.start()
        return self

    def close(self, flush_timeout: float | None = None) -> list[str]:
        """Ship what is left (retrying until flush_timeout); returns warnings, empty when all was shipped."""
        if self._thread is None:
            return []  # never started: the job did not run, its files may hold someone else's output
        if flush_timeout is not None:
            self.flush_timeout = flush_timeout
        self._closing.set()
        self._thread.join(self.flush_timeout + 30)
        if self._thread.is_alive():
            self._errors.append(f"shipping to CloudWatch did not finish within {self.flush_timeout + 30:.0f} s")
        return self.warnings()

    def warnings(self) -> list[str]:
        out = list(dict.fromkeys(self._errors))
        for s in self.streams:
            if s.failed:
                out.append(f"{s.which} of this attempt was not fully shipped to CloudWatch Logs "
                           f"({self.group} {s.name}): {s.failed}; the full output is kept in {s.path}")
            elif s.rejected:
                out.append(f"CloudWatch Logs rejected {s.rejected} event(s) of {s.which} ({self.group} {s.name}, "
                           f"timestamps out of range); the full output is kept in {s.path}")
        return out

    def _run(self) -> None:
        while not self._closing.wait(self.interval):
            try:
                self._pump(final=False)
            except Exception as exc:  # never let the thread die quietly: the final flush retries
                self._errors.append(f"log shipping: {type(exc).__name__}: {exc}")
        deadline = time.monotonic() + self.flush_timeout
        try:
            self._pump(final=True, deadline=deadline)
        except Exception as exc:
            for s in self.streams:
                if s.failed is None and (s.pending or s.partial or self._unread(s)):
                    s.failed = f"{type(exc).__name__}: {exc}"

    # reading the files
    @staticmethod
    def _unread(s: _Stream) -> bool:
        try:
            return s.path.stat().st_size > s.offset
        except OSError:
            return False

    def _now_ms(self) -> int:
        self._last_ts = max(self._last_ts, int(time.time() * 1000))
        return self._last_ts

    def _read(self, s: _Stream, final: bool) -> bool:
        """Move new output of ``s`` into its pending events; True if anything is left in the file."""
        if s.failed:
            return False
        more = False
        try:
            with open(s.path, "rb") as fh:
                while s.pending_bytes < MAX_PENDING:
                    fh.seek(s.offset)
                    data = fh.read(READ_CHUNK)
                    if not data:
                        break
                    s.offset += len(data)
                    self._add(s, s.partial + data)
                more = fh.seek(0, 2) > s.offset
        except FileNotFoundError:
            pass  # not there (yet, or removed): nothing to ship
        except OSError as exc:
            s.failed = f"cannot read {s.path}: {exc.strerror}"
            return False
        if s.partial and not more:
            age = time.monotonic() - (s.partial_since or time.monotonic())
            if final or age >= PARTIAL_AFTER or len(s.partial) >= MAX_EVENT_BYTES:
                keep = 0 if final else _incomplete_tail(s.partial)
                head, tail = (s.partial[:-keep], s.partial[-keep:]) if keep else (s.partial, b"")
                if head:
                    self._queue(s, head)
                s.partial = tail
                s.partial_since = time.monotonic() if tail else None
        return more

    def _add(self, s: _Stream, data: bytes) -> None:
        cut = data.rfind(b"\n") + 1
        rest = data[cut:]
        if len(rest) >= MAX_EVENT_BYTES:  # a huge line without its newline (yet): send all but a split character
            cut = len(data) - _incomplete_tail(rest)
            rest = data[cut:]
        if cut:
            self._queue(s, data[:cut])
        if rest and not s.partial:
            s.partial_since = time.monotonic()
        elif not rest:
            s.partial_since = None
        elif cut:
            s.partial_since = time.monotonic()  # a new partial line started
        s.partial = rest

    def _queue(self, s: _Stream, chunk: bytes) -> None:
        ts = self._now_ms()
        for msg in messages(chunk):
            s.pending.append((ts, msg))
            s.pending_bytes += len(msg) + EVENT_OVERHEAD

    # sending
    def _pump(self, final: bool, deadline: float | None = None) -> None:
        while True:
            more = False
            for s in self.streams:
                more = self._read(s, final) or more
            for s in self.streams:
                if s.pending and not s.failed:
                    self._send(s, final, deadline)
            if final and any(s.pending and not s.failed for s in self.streams):
                continue  # _send gave up on a transient error only if the deadline passed (then failed is set)
            if not more or not final:
                return

    def client(self):
        if self._client is None:
            self._client = _logs(self.host, max_attempts=1)  # the shipper backs off itself (see _handle)
        return self._client

    def _send(self, s: _Stream, final: bool, deadline: float | None) -> None:
        client = self.client()
        while s.pending and not s.failed:
            now = time.monotonic()
            if now < self._retry_at:
                if not final:
                    return  # try again on a later tick
                if deadline is not None and self._retry_at > deadline:
                    s.failed = self._last_error or "CloudWatch Logs kept failing"
                    return
                self.sleep(self._retry_at - now)
            start, end = next(batches(s.pending))
            batch = s.pending[start:end]
            try:
                if not s.created:
                    self._create_stream(s)
                self.calls += 1
                resp = client.put_log_events(logGroupName=self.group, logStreamName=s.name,
                                             logEvents=[{"timestamp": ts, "message": m} for ts, m in batch])
            except Exception as exc:
                if not self._handle(s, exc, final, deadline):
                    return
                continue
            self._failures = 0
            self._retry_at = 0.0
            info = resp.get("rejectedLogEventsInfo") or {}
            s.rejected += _rejected_count(info, len(batch))
            self._sent(s, end)

    @staticmethod
    def _sent(s: _Stream, end: int) -> None:
        sent = sum(len(m) + EVENT_OVERHEAD for _, m in s.pending[:end])
        s.events += end
        s.bytes += sent
        s.pending_bytes -= sent
        del s.pending[:end]

    def _create_stream(self, s: _Stream) -> None:
        client = self.client()
        try:
            self.calls += 1
            client.create_log_stream(logGroupName=self.group, logStreamName=s.name)
        except client.exceptions.ResourceAlreadyExistsException:
            pass
        except client.exceptions.ResourceNotFoundException:  # no group (not provisioned, deleted by hand)
            self.calls += 2
            _create_group(client, self.host)
            try:
                client.create_log_stream(logGroupName=self.group, logStreamName=s.name)
            except client.exceptions.ResourceAlreadyExistsException:
                pass
        s.created = True

    def _handle(self, s: _Stream, exc: Exception, final: bool, deadline: float | None) -> bool:
        """Decide what a failed request means; True to try again at once (or after the backoff)."""
        code = aws.error_code(exc)
        text = f"{code}: {aws._one_line(exc)}" if code else f"{type(exc).__name__}: {aws._one_line(exc)}"
        self._last_error = text
        if code == "ResourceNotFoundException":
            self._failures += 1
            if s.created and self._failures <= 5:
                s.created = False  # stream (or group) vanished: create it and resend
                return True
            s.failed = text
            return False
        if code == "DataAlreadyAcceptedException":  # legacy sequence tokens: the batch is already there
            self._sent(s, next(batches(s.pending))[1])
            return True
        transient = code in TRANSIENT_CODES or (not code and type(exc).__module__.startswith(("botocore", "urllib3")))
        if not transient:
            s.failed = text
            return False
        self._failures += 1
        delay = random.uniform(self.base_delay, min(self.max_delay, self.base_delay * 2 ** self._failures))
        self._retry_at = time.monotonic() + delay
        if final and deadline is not None and self._retry_at > deadline:
            s.failed = f"{text} (still failing after {self.flush_timeout:.0f} s of retries)"
            return False
        return final  # while the job runs, the next tick retries


def _rejected_count(info: dict, n: int) -> int:
    if not info:
        return 0
    count = 0
    if "tooOldLogEventEndIndex" in info:
        count += int(info["tooOldLogEventEndIndex"]) + 1
    if "expiredLogEventEndIndex" in info:
        count = max(count, int(info["expiredLogEventEndIndex"]) + 1)
    if "tooNewLogEventStartIndex" in info:
        count += n - int(info["tooNewLogEventStartIndex"])
    return min(count, n)


# reading ---------------------------------------------------------------------------------------------
class StreamReader:
    """Reads one stream forward, page by page; ``read()`` again returns only what arrived since."""

    def __init__(self, host: Host, name: str):
        self.host = host
        self.group = group_name(host)
        self.name = name
        self.token: str | None = None

    def _get(self, **kwargs) -> dict | None:
        client = _logs(self.host)
        with aws.aws_errors(self.host, "logs", f"read {self.group} {self.name}"):
            try:
                return client.get_log_events(logGroupName=self.group, logStreamName=self.name, **kwargs)
            except client.exceptions.ResourceNotFoundException:
                return None  # no output yet (streams are created with the first byte)

    def read(self) -> bytes:
        """Everything after what was read before (the whole stream the first time)."""
        return b"".join(self.pages())

    def pages(self) -> Iterator[bytes]:
        while True:
            kwargs: dict = {"startFromHead": True, "limit": GET_LIMIT}
            if self.token:
                kwargs["nextToken"] = self.token
            resp = self._get(**kwargs)
            if resp is None:
                return
            events = resp.get("events", ())
            if events:
                yield "".join(e["message"] for e in events).encode("utf-8")
            token = resp.get("nextForwardToken")
            if not token or token == self.token:
                return
            self.token = token

    def tail(self, n: int) -> bytes:
        """The last ``n`` lines; afterwards ``read()`` continues from the stream's end."""
        limit = min(GET_LIMIT, max(n, 1) + 16)
        resp = self._get(startFromHead=False, limit=limit)
        if resp is None:
            return b""
        self.token = resp.get("nextForwardToken")
        pages = ["".join(e["message"] for e in resp.get("events", ()))]
        back = resp.get("nextBackwardToken")
        while resp.get("events") and "".join(pages).count("\n") <= n and back:
            resp = self._get(startFromHead=False, limit=limit, nextToken=back)
            if resp is None or not resp.get("events"):
                break
            pages.insert(0, "".join(e["message"] for e in resp["events"]))
            if resp.get("nextBackwardToken") == back:
                break
            back = resp.get("nextBackwardToken")
        lines = "".join(pages).encode("utf-8").splitlines(keepends=True)
        return b"".join(lines[-n:]) if n else b""


def stream_exists(host: Host, name: str) -> bool:
    client = _logs(host)
    with aws.aws_errors(host, "logs", "describe log streams"):
        try:
            found = client.describe_log_streams(logGroupName=group_name(host), logStreamNamePrefix=name)
        except client.exceptions.ResourceNotFoundException:
            return False
    return any(s["logStreamName"] == name for s in found.get("logStreams", ()))
