"""CloudWatch Logs for an aws host: where a job's output goes, how a worker ships it, how ``qlog`` reads it.

Layout
- Log group ``/hyper/<table prefix without its trailing '-'>`` (``/hyper/hyper-prod`` for prefix ``hyper-prod-``),
  one per host, in the host's main region (workers in every region write there, so ``qlog`` has one place to
  read). Provisioning creates it with the host's retention (the main stack); if it is missing when a worker
  creates a stream, the worker creates it (idempotent) with the same retention.
- One pair of log streams per *worker*: ``workers/<worker id>/<generation>/<stdout|stderr>``. A worker runs its jobs
  one after another, and each job's events fall into their own time window: the first at or after the window's
  start, which is at least 2 ms after the previous job's last event. The window (``LogWindow``: stream, first ms,
  last ms) is written into the job record per attempt when the job starts and again when it ends, so ``qlog``
  reads exactly one attempt's events (GetLogEvents between the window's bounds) and ``--attempt N`` an earlier
  one. Why not one stream per attempt (the layout before): CreateLogStream allows about 50 calls per second per
  account and region, which capped job starts there; a worker now creates its two streams once, with its first
  output. A worker whose attempt was taken from it (fenced, or its end could not be recorded) moves on to a new
  generation of streams, so an attempt whose window never got its end holds the rest of its stream alone.
  Joined output (``-j oe`` / ``-j eo``) uses only the ``stdout`` stream. Streams are created lazily, when the
  first byte is shipped, and readers take a missing stream as empty output. Records written by workers before
  this layout have no window: ``qlog`` reads their per-attempt stream (``<job id>/<index or 'job'>/<attempt>/
  <stdout|stderr>``, ``stream_name``).
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
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

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
    """``<job id>/<index or 'job'>/<attempt>/<stdout|stderr>``: the per-attempt stream of records written before
    workers shared their streams (read only, for jobs that have no ``LogWindow``)."""
    if which not in STREAMS:
        raise ValueError(f"unknown output {which!r}")
    return f"{job_id}/{'job' if index is None else index}/{attempt}/{which}"


_NOT_IN_STREAM_NAMES = re.compile(r"[:*]")  # CloudWatch refuses ':' and '*' in stream names


def worker_streams_prefix(worker_id: str, generation: int = 0) -> str:
    """``workers/<worker id>/<generation>``: the streams a worker's jobs share (``/stdout`` and ``/stderr``)."""
    return f"workers/{_NOT_IN_STREAM_NAMES.sub('_', worker_id)[:400]}/{generation}"


@dataclass(frozen=True)
class LogWindow:
    """Where one attempt's output is: a worker's stream pair and the attempt's first and last event time (ms).

    ``end`` is None while the attempt runs (its events are the stream's from ``start`` on: the worker starts
    nothing else until this attempt's end is recorded) and for an attempt whose end was never recorded (its
    worker moved to a new stream generation, so the stream holds nothing after it either). Kept in the job
    record as text, ``"<prefix> <start> <end or ->"``, one per attempt."""

    prefix: str
    start: int
    end: int | None = None

    def text(self) -> str:
        return f"{self.prefix} {self.start} {'-' if self.end is None else self.end}"

    @classmethod
    def parse(cls, text: str) -> "LogWindow | None":
        parts = (text or "").split(" ")
        if len(parts) != 3 or not parts[1].isdigit() or not (parts[2] == "-" or parts[2].isdigit()):
            return None
        return cls(parts[0], int(parts[1]), None if parts[2] == "-" else int(parts[2]))

    def stream(self, which: str) -> str:
        if which not in STREAMS:
            raise ValueError(f"unknown output {which!r}")
        return f"{self.prefix}/{which}"

    def bounds(self) -> dict[str, int]:
        """GetLogEvents arguments: startTime is inclusive; endTime is exclusive on AWS (inclusive on moto), and
        the next window starts 2 ms or more after ``end``, so ``end + 1`` is right under both."""
        return {"startTime": self.start, **({} if self.end is None else {"endTime": self.end + 1})}


# log group -------------------------------------------------------------------------------------------
def _logs(host: Host, max_attempts: int | None = None) -> aws.AwsClient:
    return aws.client(host, "logs", max_attempts=max_attempts)


def _create_group(client: aws.AwsClient, host: Host, retention_days: int | None = None) -> bool:
    """Create the group (True) unless it exists (False), with the host's retention; botocore errors propagate."""
    name = group_name(host)
    from hyper.aws.kms import resolve

    key = resolve(host)  # the host's KMS key, as the main stack gives it (a role that may not see it fails here)
    try:
        client.create_log_group(logGroupName=name, **({"kmsKeyId": key} if key else {}))
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

    ``names`` maps each output (stdout/stderr) to its stream; ``files`` to its local file. Every event is
    stamped at or after ``floor_ms`` (the attempt's window start) and never before an earlier event, so
    ``last_ms`` bounds the attempt's window. ``created`` is shared by the shipper of a worker's next job: a
    stream is created once per worker, not once per job.

    ``start()`` is called once the job's files are open (truncated) and its process runs; ``close()`` after it
    ended and before its end is recorded, so a reader that sees the job finished finds all of its output.
    """

    def __init__(self, host: Host, names: dict[str, str], files: dict[str, Path | None], *, floor_ms: int = 0,
                 created: set[str] | None = None, interval: float = 1.0, flush_timeout: float = 20.0,
                 base_delay: float = 0.2, max_delay: float = 5.0, sleep: Callable[[float], None] = time.sleep):
        self.host = host
        self.group = group_name(host)
        self.created = created if created is not None else set()
        self.streams = [_Stream(which, Path(path), names[which], created=names[which] in self.created)
                        for which, path in files.items() if path is not None]
        self.interval = interval
        self.flush_timeout = flush_timeout
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.sleep = sleep
        self.calls = 0  # CloudWatch requests made (the benchmark reports them)
        self._client = None
        self._last_ts = floor_ms
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

    @property
    def last_ms(self) -> int:
        """The latest event time stamped so far (the floor when there was none): the window's end."""
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

    def client(self) -> aws.AwsClient:
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
        self.created.add(s.name)

    def _handle(self, s: _Stream, exc: Exception, final: bool, deadline: float | None) -> bool:
        """Decide what a failed request means; True to try again at once (or after the backoff)."""
        code = aws.error_code(exc)
        text = f"{code}: {aws._one_line(exc)}" if code else f"{type(exc).__name__}: {aws._one_line(exc)}"
        self._last_error = text
        if code == "ResourceNotFoundException":
            self._failures += 1
            if s.created and self._failures <= 5:
                s.created = False  # stream (or group) vanished: create it and resend
                self.created.discard(s.name)
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


# a worker's streams ---------------------------------------------------------------------------------
class WorkerStreams:
    """One worker's stream pair, shared by the jobs it runs one after another (see the module docstring).

    ``shipper(files)`` starts an attempt: its window begins at least 2 ms after the previous attempt's last
    event. ``ended(shipper, window)`` closes the window; when the attempt's end could not be recorded (qdel, or
    the job was taken from this worker) ``abandon()`` moves the worker to fresh streams, so that open window
    holds nothing else.
    """

    def __init__(self, host: Host, worker_id: str, **shipper_options: Any):
        self.host = host
        self.worker_id = worker_id
        self.generation = 0
        self.created: set[str] = set()
        self.last_ms = 0
        self.options = shipper_options

    def shipper(self, files: dict[str, Path | None]) -> tuple[LogShipper, LogWindow]:
        start = max(int(time.time() * 1000), self.last_ms + 2)
        window = LogWindow(worker_streams_prefix(self.worker_id, self.generation), start)
        names = {which: window.stream(which) for which in STREAMS}
        return LogShipper(self.host, names, files, floor_ms=start, created=self.created, **self.options), window

    def ended(self, shipper: LogShipper, window: LogWindow) -> LogWindow:
        """The attempt's window with its end (after ``shipper.close()``): what the job record keeps."""
        done = LogWindow(window.prefix, window.start, max(window.start, shipper.last_ms))
        self.last_ms = done.end or window.start
        return done

    def abandon(self) -> None:
        """The attempt's end did not reach its record (qdel, fenced, taken over): later jobs use new streams."""
        self.generation += 1
