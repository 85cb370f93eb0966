"""The aws host's store: the Store protocol on two DynamoDB tables (see hyper/aws/tables.py, docs/dynamodb.md).

Same semantics as the SQLite store, which is the reference; what differs is how atomicity is had without a
database-wide lock:

- Every state change is a *conditional* write. A claim is ``state = QUEUED`` and still in the ready index;
  an array element's claim advances the array record's cursor on the condition that cursor and skip still
  hold the values read, and puts the element item on the condition that it does not exist, in one
  TransactWriteItems. A finish is ``state = RUNNING AND worker = me AND attempts = n``. Losing a race is
  a ConditionalCheckFailed: the loser re-reads, never overwrites.
- Counts per (queue, definition, state) live in counter items sharded ``count_shards`` ways; each
  transition adds its delta to a randomly chosen shard *in the same transaction* as the transition, so
  counts are exact. Submission is the exception (BatchWriteItem is not transactional): its counts are
  added before the jobs are written and taken back if writing fails, so a crash can only over-count.
- An array is one record with counters (a_total, a_cursor, a_skip, a_running, a_done, a_failed,
  a_deleted, a_limit); elements become items only when they start (or are deleted before they start).
  Derived fields (the array's state and whether it is in the ready index) are recomputed by
  ``_settle_array`` after every change, with a condition on the counters it read.
- Dependency edges are meta items keyed by the target; a target's end re-evaluates its dependents. Each
  side writes before it reads (the submitter writes edges then re-reads targets, an ending target writes
  its state then reads edges), so a dependent is never left waiting for an end it missed.
- A lost job (expired lease, dead worker) is first *fenced* (its worker becomes ``lost:<worker>`` on the
  condition that the lease did not move), then handed to ``on_lost``, then requeued or failed: the late
  worker's heartbeat sees it no longer owns the job, and nobody can claim it before ``on_lost`` ran.
"""

from __future__ import annotations

import heapq
import itertools
import json
import random
import threading
import time
import uuid
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import wraps
from typing import Any, Callable, Iterable, Iterator

import botocore.exceptions as bx

from hyper.aws import session as aws
from hyper.aws.attributes import _av, _item, _unitem
from hyper.aws import tables
from hyper.config import Host
from hyper.dependencies import NEVER, PENDING, dependency_status, initial_state
from hyper.errors import HyperError
from hyper.models import RESOURCE_KINDS, Job, JobSpec, Resource
from hyper.parsing.arrays import ArraySpec, parse_array
from hyper.parsing.jobids import JobRef
from hyper.retry import LOST, next_state
from hyper.states import JobState
from hyper.store.notices import DynamoNotices
from hyper.store.base import (DeleteResult, JobFilter, LostHandler, QueueCount, Submission, WorkerInfo, already_finished,
                               cannot_hold, not_an_array, not_user_held, not_whole_job, unknown_job)

PARENT, SPEC = -1, -2  # idx of a job / array record, and of a job's large spec
INLINE_SPEC_MAX = 2048  # spec JSON up to this many bytes stays on the job item
MAX_SPEC_BYTES = 350_000  # compressed; an item holds at most 400 KB
ID_BLOCK = 1_000_000  # id shards interleave blocks of this many ids
PRIORITY_BASE = 2**31
BATCH_SIZE = 25  # BatchWriteItem limit
GET_BATCH = 100  # BatchGetItem limit
TX_ATTEMPTS = 12
PAGE = 16  # ready-index candidates read per shard and page
MAX_CANDIDATES = 64  # a claim gives up (returns None) after trying this many candidates
CANDIDATE_TTL = 2.0  # seconds a worker reuses the ready candidates it read (other processes' submissions
#                      and priorities are seen at most this late; this process's own at once)
FENCE = "lost:"
LEASE_MARGIN = 5.0  # the sweep waits this long past a worker's lease (clock skew, the kill landing); the worker has
#                    stopped its job by its lease's end (hyper/worker/fence.py)
SPEC_TTL = 400 * 86400  # a large spec outlives any queued job; set to ended + retention when the job ends
ACTIVE_STATES = ("HELD", "QUEUED", "RUNNING")
QUEUED, RUNNING, HELD, DELETED = "QUEUED", "RUNNING", "HELD", "DELETED"


# keys --------------------------------------------------------------------------------------------------
def _k(*parts: str) -> str:
    """A composite key; '#' and '%' inside names are escaped so (a#b, c) and (a, b#c) never collide."""
    return "#".join(str(p).replace("%", "%25").replace("#", "%23") for p in parts)


def _jkey(job_id: int, idx: int) -> dict:
    return {"id": {"N": str(job_id)}, "idx": {"N": str(idx)}}


def _ord(job_id: int, idx: int) -> int:
    return (job_id << 32) | (idx + 1)


def _rank(priority: int, job_id: int, idx: int) -> str:
    """Ready-index sort key: higher priority first, then id, then index (the SQLite store's order)."""
    return f"{PRIORITY_BASE - int(priority):011d}#{job_id:015d}#{idx + 1:010d}"


def _f(value) -> float | None:
    return None if value is None else float(value)


def _idx(job: Job) -> int:
    return PARENT if job.index is None else job.index


def _ref_text(ref: JobRef) -> str:
    if ref.indices is None:
        return f"{ref.id}[]" if ref.whole_array else str(ref.id)
    return f"{ref.id}[{ref.indices.text}]"


def _weight(it: dict) -> int:
    """Tasks an item stands for in the counts: 1, or an array's elements that have not started."""
    if it["idx"] >= 0 or not it.get("a_total"):
        return 1
    return it["a_total"] - it.get("a_cursor", 0) - it.get("a_skip", 0)


def _finished(state: str) -> bool:
    return JobState(state).finished


# expressions -----------------------------------------------------------------------------------------
class _Expr:
    """Placeholders for names (every attribute: DynamoDB reserves NAME, USER, STATE...) and values."""

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, dict] = {}

    def n(self, name: str) -> str:
        key = "#" + "".join(c if c.isalnum() else "_" for c in name)
        self.names[key] = name
        return key

    def v(self, value: Any) -> str:
        key = f":v{len(self.values)}"
        self.values[key] = _av(value)
        return key

    def eq(self, **pairs) -> str:
        return " AND ".join(f"{self.n(k)} = {self.v(v)}" for k, v in pairs.items())

    def apply(self, op: dict) -> dict:
        if self.names:
            op["ExpressionAttributeNames"] = self.names
        if self.values:
            op["ExpressionAttributeValues"] = self.values
        return op


class _Raw(str):
    """An update value that is already an expression (e.g. if_not_exists(...))."""


def _update(table: str, key: dict, e: _Expr, *, set_: dict | None = None, add: dict | None = None,
            cond: str | None = None) -> dict:
    """An UpdateItem request; a None value in ``set_`` removes the attribute."""
    sets, removes = [], []
    for name, value in (set_ or {}).items():
        if value is None:
            removes.append(e.n(name))
        elif isinstance(value, _Raw):
            sets.append(f"{e.n(name)} = {value}")
        else:
            sets.append(f"{e.n(name)} = {e.v(value)}")
    adds = [f"{e.n(name)} {e.v(value)}" for name, value in (add or {}).items() if value]
    parts = []
    if sets:
        parts.append("SET " + ", ".join(sets))
    if adds:
        parts.append("ADD " + ", ".join(adds))
    if removes:
        parts.append("REMOVE " + ", ".join(removes))
    op = {"TableName": table, "Key": key, "UpdateExpression": " ".join(parts)}
    if cond:
        op["ConditionExpression"] = cond
    return e.apply(op)


def _mine(op: dict) -> dict:
    """Ask for the item a claim's condition failed on: it may be this very claim, committed by a first
    attempt whose response was lost (see ``_committed``)."""
    op["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    return op


def _committed(result: "TxResult", position: int, token: str) -> bool:
    """Did the claim tagged ``token`` already commit? A claim item carries its claim token (``ct``): when the
    SDK resent a claim whose response was lost and DynamoDB did not recognise the ClientRequestToken (more than
    10 minutes later, or an endpoint that ignores tokens), the resend fails its condition on our own write.
    Without this the worker would be told "someone else has it" and the job would stay RUNNING, run by nobody,
    until its lease ran out."""
    old = result.old.get(position)
    return old is not None and old.get("ct") == token


@dataclass
class TxResult:
    ok: bool
    failed: set[int] = field(default_factory=set)  # positions of the operations whose condition failed
    old: dict[int, dict] = field(default_factory=dict)  # the items as they were, where the op asked for them

    def __bool__(self) -> bool:
        return self.ok


# batch writes ----------------------------------------------------------------------------------------
def batch_write(send: Callable[[dict], dict], requests: list[tuple[str, dict]], *, attempts: int = 8,
                base_delay: float = 0.05, max_delay: float = 2.0, threads: int = 1,
                sleep: Callable[[float], None] = time.sleep) -> list[tuple[str, dict]]:
    """Write (table, WriteRequest) pairs 25 per BatchWriteItem call.

    ``UnprocessedItems`` (DynamoDB's answer when a partition is throttled) are sent again after an
    exponential backoff with full jitter, and so is a whole batch the SDK gave up on with a throttling
    error. Returns what is still unwritten after ``attempts`` rounds (empty when everything landed): the
    caller turns it into a HyperError, so throttling is never a silent loss.
    """
    chunks = [requests[i:i + BATCH_SIZE] for i in range(0, len(requests), BATCH_SIZE)]

    def run(chunk: list[tuple[str, dict]]) -> list[tuple[str, dict]]:
        pending = chunk
        for attempt in range(attempts):
            if attempt:
                sleep(random.uniform(0, min(max_delay, base_delay * 2 ** attempt)))
            body: dict[str, list] = {}
            for table, request in pending:
                body.setdefault(table, []).append(request)
            try:
                response = send(body)
            except bx.ClientError as exc:
                if aws.error_code(exc) in aws.THROTTLING_CODES:
                    continue
                raise
            pending = [(t, r) for t, rs in (response.get("UnprocessedItems") or {}).items() for r in rs]
            if not pending:
                return []
        return pending

    if threads > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=min(threads, len(chunks))) as pool:
            results = list(pool.map(run, chunks))
    else:
        results = [run(chunk) for chunk in chunks]
    return [r for result in results for r in result]


def _public(fn):
    """Public methods answer botocore failures with one-line HyperErrors naming the host."""

    @wraps(fn)
    def wrapper(self, *args, **kwargs):
        with aws.aws_errors(self.host, "dynamodb", fn.__name__.strip("_")):
            return fn(self, *args, **kwargs)

    return wrapper


# the store -------------------------------------------------------------------------------------------
class DynamoStore(DynamoNotices):
    """Store protocol on an aws host's DynamoDB tables; thread-safe, any number of processes."""

    SPEC_TTL = SPEC_TTL  # notices (hyper/store/notices.py) expire like specs
    IDLE_POLL_CEILING = 1.0  # longest wait between a worker's empty claims (each reads every ready shard)
    TOUCH_EVERY = 20.0  # a worker's IDLE/BUSY registry write at most this often (1 write unit each)
    STATE_POLL = 60.0  # longest wait between a running worker's qdel checks (each an eventually consistent
    #                    GetItem; hyper/worker/fence.py checks every elapsed/10 s, 1 s at first)

    def __init__(self, host: Host):
        self.host = host
        names = tables.table_names(host)
        self.jobs, self.meta = names["jobs"], names["meta"]
        self._specs: dict[int, ArraySpec] = {}
        # (queue, definition) -> (read at, candidates in claim order): one read of every ready shard serves
        # many claims, instead of 16 queries per claim
        self._candidates: dict[tuple[str, str], tuple[float, list[dict]]] = {}
        self._spec_cache: dict[int, dict] = {}
        self._pool_lock = threading.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self.batch_attempts = 8  # rounds of BatchWriteItem before unwritten jobs become an error
        with aws.aws_errors(host, "dynamodb", "open the job tables"):
            self.db = aws.client(host, "dynamodb")
            # the id counter's first try fails fast when throttled, so the submitter spills to another shard
            self.fast = aws.client(host, "dynamodb", max_attempts=2)
            config = self._load_config()
        self.index_shards = int(config["index_shards"])
        self.count_shards = int(config["count_shards"])
        self.id_shards = int(config["id_shards"])
        self.retention = int(config["retention_days"]) * 86400
        # seconds past a worker's lease before the sweep takes its job (the worker stops it by then itself)
        self.lease_margin = float((host.extra or {}).get("lease_margin", LEASE_MARGIN))
        self.STATE_POLL = float((host.extra or {}).get("state_poll", self.STATE_POLL))

    def _send_batch(self, body: dict) -> dict:
        """One BatchWriteItem call (a seam: tests put a throttling DynamoDB in front of it)."""
        return self.db.batch_write_item(RequestItems=body)

    def _load_config(self) -> dict:
        key = {"pk": {"S": "config"}, "sk": {"S": "config"}}
        try:
            found = self.db.get_item(TableName=self.meta, Key=key, ConsistentRead=True).get("Item")
        except bx.ClientError as exc:
            if aws.error_code(exc) == "ResourceNotFoundException":
                raise HyperError(f"the job tables of host {self.host.name!r} do not exist ({self.meta}, "
                                 f"{aws.where_text(self.host)})",
                                 f"if they were deleted, forget the host with `hyper hosts delete-host "
                                 f"{self.host.name}` and create it again; else check its table prefix and "
                                 "region in hosts.yaml") from None
            raise
        if found is None:  # tables created without waiting: the first store to open writes the settings
            try:
                self.db.put_item(TableName=self.meta, Item=tables.config_item(self.host),
                                 ConditionExpression="attribute_not_exists(pk)")
            except self.db.exceptions.ConditionalCheckFailedException:
                pass
            found = self.db.get_item(TableName=self.meta, Key=key, ConsistentRead=True)["Item"]
        config = dict(tables.DEFAULT_SETTINGS)
        config.update({k: v for k, v in _unitem(found).items() if k in config})
        return config

    def close(self) -> None:
        with self._pool_lock:
            if self._executor is not None:
                self._executor.shutdown(wait=False)
                self._executor = None

    def _pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="hyper-ddb")
            return self._executor

    def _parallel(self, fn, args: list) -> list:
        if len(args) <= 2:
            return [fn(a) for a in args]
        return list(self._pool().map(fn, args))

    # low-level reads and writes -------------------------------------------------------------------
    def _shard(self, job_id: int, idx: int) -> int:
        return (job_id + max(idx, 0)) % self.index_shards

    def _get(self, job_id: int, idx: int) -> dict | None:
        found = self.db.get_item(TableName=self.jobs, Key=_jkey(job_id, idx), ConsistentRead=True).get("Item")
        return _unitem(found) if found else None

    def _batch_get(self, keys: Iterable[tuple[int, int]]) -> dict[tuple[int, int], dict]:
        keys = list(dict.fromkeys(keys))
        out: dict[tuple[int, int], dict] = {}
        for start in range(0, len(keys), GET_BATCH):
            pending = {self.jobs: {"Keys": [_jkey(*k) for k in keys[start:start + GET_BATCH]],
                                   "ConsistentRead": True}}
            for attempt in range(10):
                if attempt:
                    time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))
                response = self.db.batch_get_item(RequestItems=pending)
                for raw in response.get("Responses", {}).get(self.jobs, []):
                    it = _unitem(raw)
                    out[(it["id"], it["idx"])] = it
                pending = response.get("UnprocessedKeys") or {}
                if not pending:
                    break
            else:
                raise HyperError(f"DynamoDB kept throttling reads of {self.jobs} ({aws.where_text(self.host)})",
                                 "retry later; the table is at its request limit")
        return out

    def _query(self, *, index: str | None = None, key: str, value: Any, sort: str | None = None,
               op: str = "=", sort_value: Any = None, table: str | None = None, consistent: bool = False,
               filter_: tuple[str, Any] | None = None, states: Iterable[str] | None = None,
               limit: int | None = None, start: dict | None = None) -> tuple[list[dict], dict | None]:
        """One Query page: items and the key to continue from."""
        e = _Expr()
        cond = f"{e.n(key)} = {e.v(value)}"
        if sort is not None:
            if op == "begins_with":
                cond += f" AND begins_with({e.n(sort)}, {e.v(sort_value)})"
            else:
                cond += f" AND {e.n(sort)} {op} {e.v(sort_value)}"
        filters = []
        if filter_ is not None:
            filters.append(f"{e.n(filter_[0])} = {e.v(filter_[1])}")
        if states is not None:
            filters.append(f"{e.n('state')} IN ({', '.join(e.v(s) for s in states)})")
        request = {"TableName": table or self.jobs, "KeyConditionExpression": cond}
        if index:
            request["IndexName"] = index
        elif consistent:
            request["ConsistentRead"] = True
        if filters:
            request["FilterExpression"] = " AND ".join(filters)
        if limit:
            request["Limit"] = limit
        if start:
            request["ExclusiveStartKey"] = start
        response = self.db.query(**e.apply(request))
        return [_unitem(i) for i in response.get("Items", [])], response.get("LastEvaluatedKey")

    def _query_all(self, **kwargs) -> Iterator[dict]:
        start = None
        while True:
            items, start = self._query(start=start, **kwargs)
            yield from items
            if not start:
                return

    def _merged(self, queries: list[dict], sort_key: Callable[[dict], Any]) -> Iterator[dict]:
        """Several sharded queries merged in sort order; first pages fetched in parallel, later ones lazily."""
        firsts = self._parallel(lambda q: self._query(**q), queries)

        def stream(query: dict, page: tuple[list[dict], dict | None]) -> Iterator[dict]:
            items, start = page
            while True:
                yield from items
                if not start:
                    return
                items, start = self._query(start=start, **query)

        return heapq.merge(*(stream(q, p) for q, p in zip(queries, firsts)), key=sort_key)

    def _counter_ops(self, delta: dict[tuple[str, str, str], int]) -> list[dict]:
        """UpdateItems adding `delta` to one randomly chosen counter shard per (queue, definition)."""
        grouped: dict[tuple[str, str], dict[str, int]] = {}
        for (queue, definition, state), n in delta.items():
            if n:
                states = grouped.setdefault((queue, definition), {})
                states[state] = states.get(state, 0) + n
        ops = []
        for (queue, definition), states in sorted(grouped.items()):
            states = {s: n for s, n in states.items() if n}
            if not states:
                continue
            e = _Expr()
            key = {"pk": {"S": f"cnt#{random.randrange(self.count_shards)}"}, "sk": {"S": _k(queue, definition)}}
            ops.append(_update(self.meta, key, e, set_={"q": queue, "d": definition}, add=states))
        return ops

    def _transact(self, ops: list[tuple[str, dict]], delta: dict | None = None, *,
                  token: str | None = None) -> TxResult:
        """Job writes and their count deltas, all or nothing; TxResult(False) when a condition failed.

        Conflicts with concurrent transactions on the same item (TransactionConflict) and throttling are
        retried with backoff, each time with freshly chosen counter shards. Every TransactWriteItems carries a
        ClientRequestToken (``token`` plus the attempt number: a new attempt is a different request, with
        other counter shards), so the SDK's resend of a request whose response was lost is applied once.
        An op that sets ``ReturnValuesOnConditionCheckFailure`` gets the item it failed on in ``old``.
        """
        token = token or uuid.uuid4().hex
        for attempt in range(TX_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, min(1.0, 0.01 * 2 ** attempt)))
            counters = self._counter_ops(delta or {})
            try:
                if len(ops) == 1 and not counters:
                    kind, op = ops[0]
                    {"Update": self.db.update_item, "Put": self.db.put_item,
                     "Delete": self.db.delete_item}[kind](**op)
                else:
                    items = [{kind: op} for kind, op in ops] + [{"Update": c} for c in counters]
                    self.db.transact_write_items(TransactItems=items, ClientRequestToken=f"{token[:32]}-{attempt}")
                return TxResult(True)
            except bx.ClientError as exc:
                code = aws.error_code(exc)
                if code == "ConditionalCheckFailedException":
                    old = exc.response.get("Item")
                    return TxResult(False, {0}, {0: _unitem(old)} if old else {})
                if code == "TransactionCanceledException":
                    raw = exc.response.get("CancellationReasons", [])
                    reasons = [str(r.get("Code") or "None") for r in raw]
                    failed = {i for i, r in enumerate(reasons) if r == "ConditionalCheckFailed"}
                    if failed:
                        return TxResult(False, failed, {i: _unitem(r["Item"]) for i, r in enumerate(raw)
                                                        if i in failed and r.get("Item")})
                    if any(r in ("TransactionConflict", "ProvisionedThroughputExceeded", "ThrottlingError")
                           for r in reasons):
                        continue
                    raise HyperError(f"DynamoDB cancelled a transaction on {self.jobs}: {', '.join(reasons)}",
                                     "set HYPER_DEBUG=1 and report it") from None
                if code in ("TransactionConflictException", "TransactionInProgressException") \
                        or code in aws.THROTTLING_CODES:
                    continue
                raise
        raise HyperError(f"DynamoDB transactions on {self.jobs} kept conflicting or being throttled "
                         f"({TX_ATTEMPTS} attempts, {aws.where_text(self.host)})",
                         "too many writers on the same records; retry, or raise count_shards for a new host")

    def _apply_counts(self, delta: dict) -> None:
        """Count deltas outside a transaction (submission): plain ADDs never conflict."""
        for op in self._counter_ops(delta):
            self.db.update_item(**op)

    def _state_attrs(self, it: dict, state: str, *, ready: bool, now: float, worker: str | None = None) -> dict:
        """Attributes that follow from a job's state: index keys of every GSI and the TTL."""
        job_id, idx = it["id"], it["idx"]
        shard = self._shard(job_id, idx)
        out: dict[str, Any] = {"state": state}
        if idx < 0:
            out["qs"] = _k(it["queue"], state, str(shard))
            out["us"] = _k(it["user"], state, str(shard))
        if ready:
            out["rq"] = _k(it["queue"], it["definition"], str(shard))
            out["rk"] = _rank(it.get("priority", 0), job_id, idx)
        else:
            out["rq"] = out["rk"] = None
        if state == RUNNING:
            if worker is not None:
                out["ls"] = str(shard)
                out["rw"] = worker
        else:
            out["ls"] = out["rw"] = None
        out["expires"] = int(now + self.retention) if _finished(state) else None
        return out

    def _array(self, job_id: int, text: str) -> ArraySpec:
        spec = self._specs.get(job_id)
        if spec is None:
            spec = self._specs[job_id] = parse_array(text)
        return spec

    def _spec_of(self, it: dict | None) -> JobSpec | None:
        """The full spec of a job or array record (a large one is read from its own item, then cached)."""
        if it is None or not it.get("spec"):
            return None
        if not it.get("big"):
            return JobSpec.from_dict(json.loads(it["spec"]))
        data = self._spec_cache.get(it["id"])
        if data is None:
            found = self._get(it["id"], SPEC)
            if found is None or "specz" not in found:
                return JobSpec.from_dict(json.loads(it["spec"]))  # only the summary is left
            data = json.loads(zlib.decompress(found["specz"]))
            if len(self._spec_cache) > 256:
                self._spec_cache.clear()
            self._spec_cache[it["id"]] = data
        return JobSpec.from_dict(data)

    def _expire_spec(self, it: dict, now: float) -> None:
        if it.get("big"):
            e = _Expr()
            try:
                self.db.update_item(**_update(self.jobs, _jkey(it["id"], SPEC), e,
                                              set_={"expires": int(now + self.retention)},
                                              cond="attribute_exists(id)"))
            except self.db.exceptions.ConditionalCheckFailedException:
                pass

    @staticmethod
    def _job(it: dict, spec: JobSpec | None = None) -> Job:
        if spec is None and it.get("spec"):
            spec = JobSpec.from_dict(json.loads(it["spec"]))
        total = it.get("a_total") or 0
        worker = it.get("worker")
        if worker and worker.startswith(FENCE):
            worker = worker[len(FENCE):]
        return Job(
            id=it["id"], index=None if it["idx"] < 0 else it["idx"], name=it.get("name", ""),
            user=it.get("user", ""), queue=it.get("queue", ""), definition=it.get("definition", ""),
            state=JobState(it["state"]), reason=it.get("reason", ""), priority=it.get("priority", 0),
            submitted=_f(it.get("submitted")), started=_f(it.get("started")), ended=_f(it.get("ended")),
            exit_code=it.get("exit_code"), attempts=it.get("attempts", 0), retries=it.get("retries", 0),
            worker=worker, lease=_f(it.get("lease")), pid=it.get("pid"), spec=spec, array=it.get("array"),
            array_total=total, array_started=(it.get("a_cursor", 0) - it.get("a_skip", 0)) if total else 0,
            array_done=it.get("a_done", 0), array_failed=it.get("a_failed", 0),
            array_running=it.get("a_running", 0), array_deleted=it.get("a_deleted", 0),
            depends=list(it.get("depends") or []),
        )

    # resources ------------------------------------------------------------------------------------
    @_public
    def put_resource(self, resource: Resource, *, replace: bool = False) -> None:
        item = _item({"pk": f"res#{resource.KIND}", "sk": resource.name, "body": json.dumps(resource.to_dict()),
                      "updated": time.time()})
        if replace:
            self.db.put_item(TableName=self.meta, Item=item)
            return
        try:
            self.db.put_item(TableName=self.meta, Item=item, ConditionExpression="attribute_not_exists(pk)")
        except self.db.exceptions.ConditionalCheckFailedException:
            raise HyperError(f"{resource.KIND} {resource.name!r} already exists",
                             f"pick another name or update the existing {resource.KIND}") from None

    @_public
    def get_resource(self, kind: str, name: str) -> Resource | None:
        found = self.db.get_item(TableName=self.meta, Key={"pk": {"S": f"res#{kind}"}, "sk": {"S": name}},
                                 ConsistentRead=True).get("Item")
        return RESOURCE_KINDS[kind].from_dict(json.loads(found["body"]["S"])) if found else None

    @_public
    def list_resources(self, kind: str) -> list[Resource]:
        items = self._query_all(table=self.meta, key="pk", value=f"res#{kind}", consistent=True)
        return sorted((RESOURCE_KINDS[kind].from_dict(json.loads(it["body"])) for it in items),
                      key=lambda r: r.name)

    @_public
    def delete_resource(self, kind: str, name: str) -> bool:
        response = self.db.delete_item(TableName=self.meta, Key={"pk": {"S": f"res#{kind}"}, "sk": {"S": name}},
                                       ReturnValues="ALL_OLD")
        return "Attributes" in response

    # ids ------------------------------------------------------------------------------------------
    def _id_at(self, shard: int, position: int) -> int:
        """The id at `position` (0-based) of a shard: shard k owns blocks k, k+S, k+2S... of ID_BLOCK ids."""
        return ((position // ID_BLOCK) * self.id_shards + shard) * ID_BLOCK + position % ID_BLOCK + 1

    def _allocate_ids(self, n: int, shard: int | None = None) -> list[int]:
        """n unique ids with one atomic ADD: from shard 0 (1, 2, 3...) unless it is throttled."""
        def add(db, k: int) -> int:
            response = db.update_item(TableName=self.meta, Key={"pk": {"S": "ids"}, "sk": {"S": str(k)}},
                                      UpdateExpression="ADD #n :n", ExpressionAttributeNames={"#n": "next"},
                                      ExpressionAttributeValues={":n": {"N": str(n)}}, ReturnValues="UPDATED_NEW")
            return int(response["Attributes"]["next"]["N"])

        if shard is None:
            shard = 0
            try:
                end = add(self.fast, 0)
            except bx.ClientError as exc:
                if aws.error_code(exc) not in aws.THROTTLING_CODES or self.id_shards == 1:
                    raise
                shard = random.randrange(1, self.id_shards)
                end = add(self.db, shard)
        else:
            end = add(self.db, shard)
        return [self._id_at(shard, p) for p in range(end - n, end)]

    # submit ---------------------------------------------------------------------------------------
    @_public
    def submit(self, submissions: list[Submission], now: float) -> list[Job]:
        """Write jobs (arrays as one record); a bad dependency writes nothing at all."""
        self._forget_candidates()
        subs = list(submissions)
        if not subs:
            return []
        prepared = []
        for sub in subs:
            job = sub.job
            array = parse_array(job.array) if job.array else None
            inline = blob = None
            if job.spec is not None:
                inline = json.dumps(job.spec.to_dict())
                if len(inline.encode()) > INLINE_SPEC_MAX:
                    blob = zlib.compress(inline.encode(), 6)
                    if len(blob) > MAX_SPEC_BYTES:
                        raise HyperError(
                            f"job {job.name!r}: its script and environment take {len(blob) // 1024} KB even "
                            f"compressed, more than a DynamoDB item holds",
                            "let the job read its large inputs from a file or the image (scripts in S3 are the "
                            "next step)")
                    light = job.spec.to_dict()
                    light["script"], light["env"] = None, {}
                    inline = json.dumps(light)
            prepared.append((sub, array, inline, blob))

        # dependencies: every target must exist now (read before any id is taken or anything written)
        wanted = set()
        for sub in subs:
            for _, tid, tidx in sub.depends:
                wanted.add((tid, PARENT))
                if tidx is not None:
                    wanted.add((tid, tidx))
        found = self._batch_get(wanted) if wanted else {}
        checks = [self._check_dependencies(sub.depends, found) for sub in subs]

        ids = self._allocate_ids(len(subs))
        out: list[Job] = []
        job_items, extra_items, weights = [], [], []
        delta: dict[tuple[str, str, str], int] = {}
        for (sub, array, inline, blob), (pending, never), job_id in zip(prepared, checks, ids):
            job = sub.job
            job.id, job.submitted = job_id, now
            job.state, job.reason = initial_state(sub.hold, pending, never)
            job.array_total = array.count if array else 0
            it = {
                "id": job_id, "idx": PARENT, "ord": _ord(job_id, PARENT), "name": job.name, "user": job.user,
                "queue": job.queue, "definition": job.definition, "reason": job.reason,
                "priority": job.priority, "submitted": now, "attempts": 0, "retries": job.retries,
                "uhold": bool(sub.hold), "spec": inline, "big": True if blob else None,
                "depends": list(job.depends) or None,
                "deps": [[kind, tid, PARENT if tidx is None else tidx] for kind, tid, tidx in sub.depends] or None,
            }
            if array is not None:
                it.update(array=job.array, a_total=array.count, a_limit=array.limit, a_cursor=0, a_skip=0,
                          a_running=0, a_done=0, a_failed=0, a_deleted=0)
            ready = job.state is JobState.QUEUED and (array is None or array.count > 0)
            it.update(self._state_attrs(it, job.state.value, ready=ready, now=now))
            weight = array.count if array is not None else 1
            key = (job.queue, job.definition, job.state.value)
            delta[key] = delta.get(key, 0) + weight
            weights.append((job_id, key, weight))
            job_items.append((self.jobs, {"PutRequest": {"Item": _item(it)}}))
            if blob is not None:
                extra_items.append((self.jobs, {"PutRequest": {"Item": _item(
                    {"id": job_id, "idx": SPEC, "specz": blob, "expires": int(now + SPEC_TTL)})}}))
            for kind, tid, tidx in sub.depends:
                edge = {"pk": f"dep#{tid}", "sk": f"{PARENT if tidx is None else tidx}#{job_id}", "job": job_id,
                        "kind": kind, "expires": int(now + SPEC_TTL)}
                extra_items.append((self.meta, {"PutRequest": {"Item": _item(edge)}}))
            out.append(job)

        extra_items.extend(self._notice_items(out, now))  # `--notify`: hyper/store/notices.py
        # counts first: a crash from here on can over-count (a worker too many), never strand a job
        self._apply_counts(delta)
        threads = 8 if len(job_items) + len(extra_items) > 4 * BATCH_SIZE else 1
        send = self._send_batch
        left = batch_write(send, extra_items, threads=threads, attempts=self.batch_attempts)
        if left:  # no job item is written yet: nothing is visible
            self._apply_counts({k: -n for k, n in delta.items()})
            raise self._throttled(len(subs), 0, ids)
        left = batch_write(send, job_items, threads=threads, attempts=self.batch_attempts)
        if left:
            unwritten = {int(r["PutRequest"]["Item"]["id"]["N"]) for _, r in left}
            back: dict = {}
            for job_id, key, weight in weights:
                if job_id in unwritten:
                    back[key] = back.get(key, 0) - weight
            self._apply_counts(back)
            raise self._throttled(len(subs), len(subs) - len(unwritten),
                                  sorted(unwritten))

        # close the race with targets that ended while we wrote: edges are in place, re-read the targets
        for job, (pending, never), sub in zip(out, checks, subs):
            if pending and not never and not sub.hold:
                state = self._reevaluate(job.id, now)
                if state is not None and state is not JobState.HELD:
                    job.state, job.reason = state, ""
        return out

    def _throttled(self, total: int, written: int, unwritten: list[int]) -> HyperError:
        shown = ", ".join(str(i) for i in unwritten[:5]) + (" ..." if len(unwritten) > 5 else "")
        return HyperError(f"DynamoDB throttled the submission in {aws.where_text(self.host)}: {written} of {total} "
                          f"jobs were written; {len(unwritten)} were not (ids {shown})",
                          "the jobs not written do not exist; submit them again in a moment")

    def _check_dependencies(self, depends, found: dict) -> tuple[str, str]:
        pending = never = ""
        for kind, tid, tidx in depends:
            target = f"{tid}" if tidx is None else f"{tid}[{tidx}]"
            state = None
            it = found.get((tid, PARENT if tidx is None else tidx))
            if it is not None:
                state = it["state"]
            elif tidx is not None:
                parent = found.get((tid, PARENT))
                if parent and parent.get("array") and tidx in self._array(tid, parent["array"]):
                    state = QUEUED if not _finished(parent["state"]) else parent["state"]
            if state is None:
                raise HyperError(f"dependency {kind}:{target} names no job",
                                 "check the id with `qstat -x`; depend only on jobs that exist")
            status = dependency_status(kind, JobState(state))
            if status == NEVER and not never:
                never = f"{kind}:{target} ended {state}"
            elif status == PENDING and not pending:
                pending = f"{kind}:{target}"
        return pending, never

    # reads ----------------------------------------------------------------------------------------
    @_public
    def get_jobs(self, refs: Iterable[JobRef]) -> tuple[list[Job], list[str]]:
        """Jobs for the given ids, in order; ids that name no job come back in the second list."""
        refs = list(refs)
        parents = self._batch_get((r.id, PARENT) for r in refs)
        element_keys = []
        for ref in refs:
            p = parents.get((ref.id, PARENT))
            if p is not None and ref.indices is not None and p.get("array"):
                spec = self._array(ref.id, p["array"])
                element_keys.extend((ref.id, i) for i in ref.indices if i in spec)
        elements = self._batch_get(element_keys) if element_keys else {}
        specs: dict[int, JobSpec | None] = {}

        def spec_for(p: dict) -> JobSpec | None:
            if p["id"] not in specs:
                specs[p["id"]] = self._spec_of(p)
            return JobSpec.from_dict(specs[p["id"]].to_dict()) if specs[p["id"]] else None

        found, missing = [], []
        for ref in refs:
            p = parents.get((ref.id, PARENT))
            if p is None:
                missing.append(_ref_text(ref))
                continue
            if ref.indices is None:
                found.append(self._job(p, spec_for(p)))
                continue
            if not p.get("array"):
                missing.append(_ref_text(ref))
                continue
            spec = self._array(ref.id, p["array"])
            for index in ref.indices:
                if index not in spec:
                    missing.append(f"{ref.id}[{index}]")
                    continue
                el = elements.get((ref.id, index))
                if el is not None:
                    found.append(self._job(el, spec_for(p)))
                    continue
                state = p["state"] if p["state"] in (HELD, DELETED) else QUEUED
                if _finished(p["state"]):
                    state = DELETED
                parent = self._job(p)
                found.append(Job(id=parent.id, index=index, name=parent.name, user=parent.user,
                                 queue=parent.queue, definition=parent.definition, state=JobState(state),
                                 priority=parent.priority, submitted=parent.submitted, retries=parent.retries,
                                 spec=spec_for(p), array=parent.array))
        return found, missing

    def _known_queues(self, states: Iterable[str]) -> list[str]:
        """Queues that may hold jobs: every queue resource, and every queue the counters have seen."""
        wanted = set(states)
        names = {r.name for r in self.list_resources("queue")}
        # eventually consistent (half the read units): the listing indexes it feeds are eventually consistent too
        names.update(q for (q, _, s), n in self._count_rows(consistent=False).items() if n and s in wanted)
        return sorted(names)

    def list_jobs(self, flt: JobFilter) -> Iterator[Job]:
        """Jobs and arrays by id (elements after their array with ``elements``), from the sharded indexes."""
        with aws.aws_errors(self.host, "dynamodb", "list jobs"):
            states = [s.value for s in JobState] if flt.include_finished else list(ACTIVE_STATES)
            shards = range(self.index_shards)
            if flt.user:
                queries = [dict(index="by_user", key="us", value=_k(flt.user, st, str(sh)),
                                filter_=("queue", flt.queue) if flt.queue else None, limit=None)
                           for st in states for sh in shards]
            else:
                queues = [flt.queue] if flt.queue else self._known_queues(states)
                queries = [dict(index="by_queue", key="qs", value=_k(q, st, str(sh)))
                           for q in queues for st in states for sh in shards]
            merged = self._merged(queries, sort_key=lambda it: it["ord"]) if queries else iter(())
            count = 0
            while True:
                want = GET_BATCH if not flt.limit else min(GET_BATCH, flt.limit - count)
                chunk = list(itertools.islice(merged, want))
                if not chunk:
                    return
                specs = self._listing_specs(chunk) if flt.with_spec else {}
                for it in chunk:
                    job = self._job(it, specs.get(it["id"]))
                    yield job
                    count += 1
                    if flt.elements and job.is_array:
                        for el in self._elements(job.id, active_only=not flt.include_finished):
                            yield self._job(el)
                    if flt.limit and count >= flt.limit:
                        return

    def _listing_specs(self, chunk: list[dict]) -> dict[int, JobSpec]:
        """Specs of listed jobs, read from the base table: the listing indexes do not carry them (their
        script would double every index write). Tables made before that still project ``spec``: used as is."""
        wanted = [(it["id"], PARENT) for it in chunk if "spec" not in it]
        full = self._batch_get(wanted) if wanted else {}
        return {job_id: JobSpec.from_dict(json.loads(it["spec"]))
                for (job_id, _), it in full.items() if it.get("spec")}

    def _elements(self, job_id: int, active_only: bool) -> Iterator[dict]:
        """An array's started (or deleted-before-start) elements, by index: one partition, read strongly."""
        return self._query_all(key="id", value=job_id, sort="idx", op=">=", sort_value=0, consistent=True,
                               states=ACTIVE_STATES if active_only else None)

    def _count_rows(self, consistent: bool = True) -> dict[tuple[str, str, str], int]:
        def shard(k: int) -> list[dict]:
            return list(self._query_all(table=self.meta, key="pk", value=f"cnt#{k}", consistent=consistent))

        totals: dict[tuple[str, str, str], int] = {}
        for items in self._parallel(shard, list(range(self.count_shards))):
            for it in items:
                for state in JobState:
                    n = it.get(state.value)
                    if n:
                        key = (it["q"], it["d"], state.value)
                        totals[key] = totals.get(key, 0) + int(n)
        return totals

    @_public
    def counts(self) -> list[QueueCount]:
        return [QueueCount(q, d, JobState(s), n) for (q, d, s), n in sorted(self._count_rows().items()) if n != 0]

    @_public
    def backlog(self) -> dict[tuple[str, str], int]:
        return {(q, d): n for (q, d, s), n in sorted(self._count_rows().items()) if s == QUEUED and n > 0}

    @_public
    def running_tasks(self) -> dict[tuple[str, str], int]:
        return {(q, d): n for (q, d, s), n in sorted(self._count_rows().items()) if s == RUNNING and n > 0}

    # delete / hold --------------------------------------------------------------------------------
    @_public
    def delete(self, refs: Iterable[JobRef], now: float) -> list[DeleteResult]:
        """Mark jobs DELETED; running ones are stopped by their worker, which sees the state change."""
        results: list[DeleteResult] = []
        for ref in refs:
            p = self._get(ref.id, PARENT)
            if p is None:
                results.append(unknown_job(_ref_text(ref)))
            elif ref.indices is None:
                results.append(self._delete_whole(ref.id, now))
            elif not p.get("array"):
                results.append(not_an_array(_ref_text(ref), ref.id))
            else:
                results.extend(self._delete_elements(p, ref.indices, now))
        return results

    def _delete_whole(self, job_id: int, now: float) -> DeleteResult:
        for _ in range(TX_ATTEMPTS):
            p = self._get(job_id, PARENT)
            label = f"{job_id}[]" if p.get("array") else str(job_id)
            state = p["state"]
            if _finished(state):
                return already_finished(label, state)
            q, d = p["queue"], p["definition"]
            e = _Expr()
            sets = {"ended": now, "reason": "deleted by qdel"}
            sets.update(self._state_attrs(p, DELETED, ready=False, now=now))
            if p.get("array"):
                remaining = _weight(p)
                cond = e.eq(state=state, a_cursor=p["a_cursor"], a_skip=p["a_skip"])
                op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets,
                             add={"a_done": remaining, "a_deleted": remaining}, cond=cond)
                delta = {(q, d, state): -remaining, (q, d, DELETED): remaining}
            else:
                op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets, cond=e.eq(state=state))
                delta = {(q, d, state): -1, (q, d, DELETED): 1}
            if self._transact([("Update", op)], delta):
                break
        else:
            raise self._contended(job_id)
        if p.get("array"):
            # no element can start any more (claims need the array QUEUED): delete the ones that did
            for el in list(self._elements(job_id, active_only=True)):
                self._delete_started(p, el, now)
            self._resolve_dependents(job_id, None, now)
        else:
            self._resolve_dependents(job_id, PARENT, now)
        self._expire_spec(p, now)
        return DeleteResult(label, True)

    def _delete_started(self, p: dict, el: dict | None, now: float) -> str | None:
        """Delete a started (or requeued) element; returns None, or the state it had already ended in."""
        job_id, index = p["id"], None if el is None else el["idx"]
        for attempt in range(TX_ATTEMPTS):
            if attempt:
                el = self._get(job_id, index)
            if el is None:
                return "gone"
            state = el["state"]
            if _finished(state):
                return state
            e = _Expr()
            sets = {"ended": now, "reason": "deleted by qdel"}
            sets.update(self._state_attrs(el, DELETED, ready=False, now=now))
            ops = [("Update", _update(self.jobs, _jkey(job_id, el["idx"]), e, set_=sets, cond=e.eq(state=state))),
                   ("Update", _update(self.jobs, _jkey(job_id, PARENT), _Expr(),
                                      add={"a_running": -int(state == RUNNING), "a_done": 1, "a_deleted": 1}))]
            if self._transact(ops, {(el["queue"], el["definition"], state): -1,
                                    (el["queue"], el["definition"], DELETED): 1}):
                return None
        raise self._contended(job_id)

    def _delete_elements(self, p: dict, indices: ArraySpec, now: float) -> list[DeleteResult]:
        job_id = p["id"]
        spec = self._array(job_id, p["array"])
        results = []
        for index in indices:
            label = f"{job_id}[{index}]"
            if spec.position_of(index) is None:
                results.append(unknown_job(label, f"not an index of {job_id}[]"))
                continue
            result = None
            for _ in range(TX_ATTEMPTS):
                el = self._get(job_id, index)
                if el is not None:
                    ended = self._delete_started(p, el, now)
                    result = DeleteResult(label, True) if ended is None else already_finished(label, ended)
                    break
                parent = self._get(job_id, PARENT)
                if _finished(parent["state"]):
                    result = already_finished(label, parent["state"])
                    break
                # not started: a DELETED element item the cursor will step over, counted as done at once
                item = {"id": job_id, "idx": index, "ord": _ord(job_id, index), "name": parent["name"],
                        "user": parent["user"], "queue": parent["queue"], "definition": parent["definition"],
                        "reason": "deleted by qdel", "priority": parent.get("priority", 0),
                        "submitted": parent.get("submitted"), "ended": now, "attempts": 0,
                        "retries": parent.get("retries", 0)}
                item.update(self._state_attrs(item, DELETED, ready=False, now=now))
                e = _Expr()
                ops = [("Put", {"TableName": self.jobs, "Item": _item(item),
                                "ConditionExpression": "attribute_not_exists(id)"}),
                       ("Update", _update(self.jobs, _jkey(job_id, PARENT), e,
                                          add={"a_skip": 1, "a_done": 1, "a_deleted": 1},
                                          cond=e.eq(state=parent["state"])))]
                q, d = parent["queue"], parent["definition"]
                if self._transact(ops, {(q, d, parent["state"]): -1, (q, d, DELETED): 1}):
                    result = DeleteResult(label, True)
                    break
            if result is None:
                raise self._contended(job_id)
            results.append(result)
            if result.ok:
                self._resolve_dependents(job_id, index, now)
        self._settle_array(job_id, now)
        return results

    @_public
    def set_hold(self, refs: Iterable[JobRef], hold: bool, now: float) -> list[DeleteResult]:
        """qhold / qrls on whole jobs: a held job keeps its place but is not started."""
        self._forget_candidates()
        results = []
        for ref in refs:
            label = _ref_text(ref)
            p = self._get(ref.id, PARENT)
            if p is None:
                results.append(unknown_job(label))
                continue
            if ref.indices is not None:
                results.append(not_whole_job(label, ref.id))
                continue
            if not hold:
                if not p.get("uhold"):
                    results.append(not_user_held(label))
                    continue
                e = _Expr()
                try:
                    self.db.update_item(**_update(self.jobs, _jkey(ref.id, PARENT), e, set_={"uhold": False},
                                                  cond=e.eq(uhold=True)))
                except self.db.exceptions.ConditionalCheckFailedException:
                    pass  # released by someone else meanwhile
                self._reevaluate(ref.id, now)
                results.append(DeleteResult(label, True))
                continue
            for _ in range(TX_ATTEMPTS):
                state = p["state"]
                if state not in (QUEUED, HELD):
                    results.append(cannot_hold(label, state))
                    break
                e = _Expr()
                sets = {"uhold": True, "reason": "held by user (release with qrls)"}
                sets.update(self._state_attrs(p, HELD, ready=False, now=now))
                weight_read = {"a_cursor": p["a_cursor"], "a_skip": p["a_skip"]} if p.get("array") else {}
                cond = e.eq(state=state, **weight_read)
                w = _weight(p)
                moved = {} if state == HELD else {(p["queue"], p["definition"], state): -w,
                                                  (p["queue"], p["definition"], HELD): w}  # held again: no move
                if self._transact([("Update", _update(self.jobs, _jkey(ref.id, PARENT), e, set_=sets, cond=cond))],
                                  moved):
                    results.append(DeleteResult(label, True))
                    break
                p = self._get(ref.id, PARENT)
            else:
                raise self._contended(ref.id)
        return results

    def _contended(self, job_id: int) -> HyperError:
        return HyperError(f"job {job_id} kept changing while hyper tried to update it ({TX_ATTEMPTS} attempts)",
                          "try again; many workers are finishing elements of it at once")

    # claim / run / finish -------------------------------------------------------------------------
    def _ready_candidates(self, queue: str, definition: str) -> Iterator[dict]:
        queries = [dict(index="ready", key="rq", value=_k(queue, definition, str(sh)), limit=PAGE)
                   for sh in range(self.index_shards)]
        return self._merged(queries, sort_key=lambda it: it["rk"])

    @_public
    def claim(self, queue: str, definition: str, worker: str, lease_until: float, now: float) -> Job | None:
        """Take the next ready job of (queue, definition) for this worker, or None.

        Candidates come from the sharded ready index in (priority, id, index) order; each is taken with a
        conditional write, so a candidate another worker took first (or a stale index entry) just fails
        its condition and the next one is tried.
        """
        key = (queue, definition)
        read_at, cands = self._candidates.get(key, (0.0, []))
        fresh = bool(cands) and time.monotonic() - read_at < CANDIDATE_TTL
        if not fresh:
            cands = list(itertools.islice(self._ready_candidates(queue, definition), MAX_CANDIDATES))
            self._candidates[key] = (time.monotonic(), cands)
        while cands:
            cand = cands[0]
            if cand["idx"] == PARENT and cand.get("array"):
                job = self._claim_element(cand["id"], queue, definition, worker, lease_until, now)
                if job is not None:
                    return job  # the array stays first: it may have more elements to start
            else:
                job = self._claim_item(cand["id"], cand["idx"], queue, definition, worker, lease_until, now)
            cands.pop(0)
            if job is not None:
                return job
        if fresh:  # the reused candidates were all taken: look again before saying there is nothing
            self._candidates.pop(key, None)
            return self.claim(queue, definition, worker, lease_until, now)
        return None

    def _forget_candidates(self) -> None:
        """New or released jobs of this process: the next claim reads the index again (priorities hold)."""
        self._candidates.clear()

    @_public
    def claim_job(self, job_id: int, worker: str, lease_until: float, now: float) -> Job | None:
        """Claim one named job (or the next element of a named array): the SQS-driven worker's path,
        where the message says which job to take and no index is read at all."""
        p = self._get(job_id, PARENT)
        if p is None:
            return None
        if p.get("array"):
            return self._claim_element(job_id, p["queue"], p["definition"], worker, lease_until, now)
        return self._claim_item(job_id, PARENT, p["queue"], p["definition"], worker, lease_until, now)

    def _claim_item(self, job_id: int, idx: int, queue: str, definition: str, worker: str, lease_until: float,
                    now: float) -> Job | None:
        """A single job, or an array element that was requeued (its array's %limit is checked)."""
        it = self._get(job_id, idx)
        if (it is None or it["state"] != QUEUED or "rq" not in it or it["queue"] != queue
                or it["definition"] != definition):
            return None
        ops = []
        parent = it
        if idx >= 0:
            parent = self._get(job_id, PARENT)
            if parent is None or parent["state"] not in (QUEUED, RUNNING):
                return None
            if parent.get("a_limit") is not None and parent.get("a_running", 0) >= parent["a_limit"]:
                return None
            e = _Expr()
            cond = (f"{e.n('state')} IN ({e.v(QUEUED)}, {e.v(RUNNING)}) AND (attribute_not_exists({e.n('a_limit')}) "
                    f"OR {e.n('a_running')} < {e.n('a_limit')})")
            ops.append(("Update", _update(self.jobs, _jkey(job_id, PARENT), e, add={"a_running": 1}, cond=cond)))
        e = _Expr()
        attempts = it.get("attempts", 0)
        token = uuid.uuid4().hex
        sets = {"attempts": attempts + 1, "worker": worker, "lease": lease_until, "started": now, "ended": None,
                "pid": None, "exit_code": None, "ct": token}
        sets.update(self._state_attrs(it, RUNNING, ready=False, now=now, worker=worker))
        cond = e.eq(state=QUEUED, attempts=attempts) + f" AND attribute_exists({e.n('rq')})"
        ops.insert(0, ("Update", _mine(_update(self.jobs, _jkey(job_id, idx), e, set_=sets, cond=cond))))
        result = self._transact(ops, {(queue, definition, QUEUED): -1, (queue, definition, RUNNING): 1},
                                token=token)
        if not result and not _committed(result, 0, token):
            return None
        if idx >= 0:
            self._settle_array(job_id, now)
        it.update({k: v for k, v in sets.items()})
        return self._job(it, self._spec_of(parent))

    def _claim_element(self, job_id: int, queue: str, definition: str, worker: str, lease_until: float,
                       now: float) -> Job | None:
        """Start an array's next element: advance the cursor (if it still is where we read it) and put the
        element item, in one transaction. Elements deleted before they started are stepped over."""
        for attempt in range(TX_ATTEMPTS):
            if attempt:
                time.sleep(random.uniform(0, 0.005 * attempt))
            p = self._get(job_id, PARENT)
            if p is None or p["state"] != QUEUED or p["queue"] != queue or p["definition"] != definition:
                return None
            cursor, skip = p["a_cursor"], p["a_skip"]
            limit = p.get("a_limit")
            if _weight(p) <= 0 or (limit is not None and p.get("a_running", 0) >= limit):
                self._settle_array(job_id, now)  # a stale ready entry: take the array out of the index
                return None
            spec = self._array(job_id, p["array"])
            position, left = cursor, skip
            while True:
                index = spec.index_at(position)
                position += 1
                if left and self._get(job_id, index) is not None:
                    left -= 1  # deleted before it started: step over it
                    continue
                break
            token = uuid.uuid4().hex
            element = {"id": job_id, "idx": index, "ord": _ord(job_id, index), "name": p["name"], "user": p["user"],
                       "queue": queue, "definition": definition, "reason": "", "priority": p.get("priority", 0),
                       "submitted": p.get("submitted"), "started": now, "attempts": 1,
                       "retries": p.get("retries", 0), "worker": worker, "lease": lease_until, "ct": token}
            element.update(self._state_attrs(element, RUNNING, ready=False, now=now, worker=worker))
            e = _Expr()
            cond = (e.eq(state=QUEUED, a_cursor=cursor, a_skip=skip)
                    + f" AND (attribute_not_exists({e.n('a_limit')}) OR {e.n('a_running')} < {e.n('a_limit')})")
            parent_op = _update(self.jobs, _jkey(job_id, PARENT), e,
                                set_={"a_cursor": position, "a_skip": left,
                                      "started": _Raw(f"if_not_exists({e.n('started')}, {e.v(now)})")},
                                add={"a_running": 1}, cond=cond)
            put = _mine({"TableName": self.jobs, "Item": _item(element),
                         "ConditionExpression": "attribute_not_exists(id)"})
            result = self._transact([("Update", parent_op), ("Put", put)],
                                    {(queue, definition, QUEUED): -1, (queue, definition, RUNNING): 1}, token=token)
            if result or _committed(result, 1, token):
                self._settle_array(job_id, now)
                return self._job(element, self._spec_of(p))
        return None

    def _settle_array(self, job_id: int, now: float) -> None:
        """Recompute an array's state and readiness from its counters; end it when every element ended.

        Conditional on the counters read, retried when they moved: every writer settles after its own write,
        so the last one always sees the final counters.
        """
        for _ in range(TX_ATTEMPTS * 2):
            p = self._get(job_id, PARENT)
            if p is None or not p.get("array"):
                return
            state, total = p["state"], p["a_total"]
            remaining, running, done = _weight(p), p.get("a_running", 0), p.get("a_done", 0)
            limit = p.get("a_limit")
            q, d = p["queue"], p["definition"]
            e = _Expr()
            cond = e.eq(state=state, a_cursor=p["a_cursor"], a_skip=p["a_skip"], a_running=running, a_done=done)
            if done >= total:
                if _finished(state):
                    return
                failed, deleted = p.get("a_failed", 0), p.get("a_deleted", 0)
                final = "FAILED" if failed else DELETED if deleted else "SUCCEEDED"
                sets = {"ended": now, "reason": f"{failed} of {total} elements failed" if failed else "",
                        "a_running": 0}
                sets.update(self._state_attrs(p, final, ready=False, now=now))
                op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets, cond=cond)
                if self._transact([("Update", op)], {(q, d, state): -remaining, (q, d, final): remaining}):
                    self._resolve_dependents(job_id, PARENT, now)
                    self._expire_spec(p, now)
                    return
                continue
            new_state = RUNNING if state == QUEUED and remaining == 0 else state
            want_ready = new_state == QUEUED and remaining > 0 and (limit is None or running < limit)
            if new_state == state and want_ready == ("rq" in p):
                return
            sets = self._state_attrs(p, new_state, ready=want_ready, now=now)
            op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets, cond=cond)
            delta = {} if new_state == state else {(q, d, state): -remaining, (q, d, new_state): remaining}
            if self._transact([("Update", op)], delta):
                return
        # every failed round means the counters moved: whoever moved them settles after its own write and sees
        # later counters than ours, so giving up here loses nothing. Raising would be worse: the caller's claim
        # or finish has committed, and a worker that died of it would leave its element RUNNING with nobody.

    @_public
    def set_pid(self, job: Job, worker: str, pid: int) -> None:
        e = _Expr()
        try:
            self.db.update_item(**_update(self.jobs, _jkey(job.id, _idx(job)), e, set_={"pid": pid},
                                          cond=e.eq(worker=worker)))
        except self.db.exceptions.ConditionalCheckFailedException:
            pass

    @_public
    def heartbeat(self, job: Job, worker: str, lease_until: float) -> JobState | None:
        """Extend the lease; returns the job's state, or None if this worker no longer owns the job.

        A registered worker renews its own registry item (1 write unit, in no index): its lease covers the
        job it runs, and the sweep reads it before it calls a job lost. The job item, and with it the
        ``leases`` index, is not written at all, so a beat never rewrites an index key (3 write units before,
        and the index's 16 keys throttled the table at ~8,000 running jobs). A claimer that never registered
        (tools, tests) renews the job's own lease, as before.
        """
        e = _Expr()
        try:
            self.db.update_item(**_update(self.meta, self._worker_key(worker), e, set_={"lease": lease_until},
                                          cond=f"attribute_exists(pk) AND {e.n('state')} <> {e.v('EXITED')}"))
            return self.peek(job, worker)
        except self.db.exceptions.ConditionalCheckFailedException:
            pass
        e = _Expr()
        try:
            self.db.update_item(**_update(self.jobs, _jkey(job.id, _idx(job)), e, set_={"lease": lease_until},
                                          cond=e.eq(worker=worker, state=RUNNING)))
            return JobState.RUNNING
        except self.db.exceptions.ConditionalCheckFailedException:
            it = self._get(job.id, _idx(job))
            if it is None or it.get("worker") != worker:
                return None
            return JobState(it["state"])

    @_public
    def peek(self, job: Job, worker: str) -> JobState | None:
        """The job's state without renewing anything: one eventually consistent GetItem (half a read unit), the
        worker's qdel check between lease renewals. A fence or qdel shows within about a second."""
        found = self.db.get_item(TableName=self.jobs, Key=_jkey(job.id, _idx(job)),
                                 ProjectionExpression="#s, #w",
                                 ExpressionAttributeNames={"#s": "state", "#w": "worker"}).get("Item")
        if found is None or found.get("worker", {}).get("S") != worker:
            return None
        return JobState(found["state"]["S"])

    @_public
    def finish(self, job: Job, worker: str, outcome: str, exit_code: int | None, reason: str,
               now: float) -> JobState | None:
        """Record a run's end if this worker still owns it; applies the retry policy."""
        state = self._finish(job.id, _idx(job), worker, outcome, exit_code, reason, now)
        if state == QUEUED or state is JobState.QUEUED:  # a retry is claimable again: read the index anew
            self._forget_candidates()
        return state

    def _finish(self, job_id: int, idx: int, worker: str, outcome: str, exit_code, reason: str, now: float):
        for _ in range(TX_ATTEMPTS):
            it = self._get(job_id, idx)
            if it is None or it["state"] != RUNNING or it.get("worker") != worker:
                return None  # deleted, or requeued after our lease expired: someone else owns it now
            parent = self._get(job_id, PARENT) if idx >= 0 else it
            spec_text = (parent or {}).get("spec")
            retry_on_exit = bool(spec_text and json.loads(spec_text).get("retry_on_exit"))
            state, why = next_state(outcome, exit_code, it.get("attempts", 0), it.get("retries", 0), retry_on_exit,
                                    reason)
            e = _Expr()
            sets: dict[str, Any] = {"reason": why, "exit_code": exit_code, "ended": now}
            if state is JobState.QUEUED:
                sets.update(worker=None, lease=None, pid=None)
                sets.update(self._state_attrs(it, QUEUED, ready=True, now=now))
            else:
                sets["lease"] = None
                if worker.startswith(FENCE):
                    sets["worker"] = worker[len(FENCE):]
                sets.update(self._state_attrs(it, state.value, ready=False, now=now))
            cond = e.eq(state=RUNNING, worker=worker, attempts=it.get("attempts", 0))
            ops = [("Update", _update(self.jobs, _jkey(job_id, idx), e, set_=sets, cond=cond))]
            if idx >= 0:
                done = int(state is not JobState.QUEUED)
                ops.append(("Update", _update(self.jobs, _jkey(job_id, PARENT), _Expr(),
                                              add={"a_running": -1, "a_done": done,
                                                   "a_failed": int(state is JobState.FAILED)})))
            q, d = it["queue"], it["definition"]
            if self._transact(ops, {(q, d, RUNNING): -1, (q, d, state.value): 1}):
                break
        else:
            raise self._contended(job_id)
        if idx >= 0:
            self._settle_array(job_id, now)
        if state.finished:
            self._resolve_dependents(job_id, idx, now)
            if idx < 0:
                self._expire_spec(it, now)
        return state

    @_public
    def requeue_expired(self, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """Return jobs whose lease ran out to the queue (or fail them when their retries are spent)."""
        self._forget_candidates()
        candidates = []
        for shard in range(self.index_shards):
            candidates.extend(self._query_all(index="leases", key="ls", value=str(shard), sort="lease", op="<",
                                              sort_value=now))
        if not candidates:
            return []
        # a registered worker's lease is on its own item: its jobs are lost only once that lease is past too,
        # by lease_margin (the worker stops its own job before its lease ends: no two attempts overlap)
        leases = self._worker_leases()
        keys = sorted({(it["id"], it["idx"]) for it in candidates
                       if "rw" not in it or leases.get(it["rw"], float("-inf")) < now - self.lease_margin})
        return self._lose(keys, "worker lost (lease expired)", now, on_lost, expired_before=now,
                          worker_leases=leases)

    def _worker_leases(self) -> dict[str, float]:
        """Each registered worker's lease (workers that never renewed one: -inf), read from the registry."""
        def shard(k: int) -> list[dict]:
            return list(self._query_all(table=self.meta, key="pk", value=f"wrk#{k}"))

        return {it["sk"]: float(it.get("lease", float("-inf"))) for items in
                self._parallel(shard, list(range(self.count_shards))) for it in items}

    @_public
    def requeue_worker(self, worker: str, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """A worker is known dead (its process exited): requeue its jobs at once, not at lease expiry."""
        self._forget_candidates()
        keys = sorted({(it["id"], it["idx"]) for it in self._query_all(index="by_worker", key="rw", value=worker)})
        lost = self._lose(keys, f"worker {worker} died", now, on_lost, worker=worker)
        e = _Expr()
        try:
            self.db.update_item(**_update(self.meta, self._worker_key(worker), e,
                                          set_={"state": "EXITED", "heartbeat": now,
                                                "expires": int(now + self.retention)},
                                          cond="attribute_exists(pk)"))
        except self.db.exceptions.ConditionalCheckFailedException:
            pass
        return lost

    def _lose(self, keys, reason: str, now: float, on_lost: LostHandler | None, *,
              expired_before: float | None = None, worker: str | None = None,
              worker_leases: dict[str, float] | None = None) -> list[Job]:
        lost = []
        for job_id, idx in keys:
            it = self._get(job_id, idx)
            if it is None or it["state"] != RUNNING or not it.get("worker"):
                continue
            owner = it["worker"]
            plain = owner[len(FENCE):] if owner.startswith(FENCE) else owner
            if worker is not None and plain != worker:
                continue
            if expired_before is not None and not (it.get("lease") is not None and it["lease"] < expired_before):
                continue
            if worker_leases is not None and worker_leases.get(plain, float("-inf")) >= now - self.lease_margin:
                continue  # its worker renews its lease (tables from before rw was in the index land here)
            fence = FENCE + plain
            if owner != fence:
                # fence first: the late worker's heartbeat then fails, and the lease must not have moved
                e = _Expr()
                cond = e.eq(state=RUNNING, worker=owner, lease=it["lease"])
                ops = [("Update", _update(self.jobs, _jkey(job_id, idx), e, set_={"worker": fence}, cond=cond))]
                if worker_leases is not None and plain in worker_leases:
                    # ...and its worker did not renew since the sweep read the registry
                    w = _Expr()
                    ops.append(("ConditionCheck", w.apply({
                        "TableName": self.meta, "Key": self._worker_key(plain),
                        "ConditionExpression": f"attribute_not_exists({w.n('lease')}) OR {w.n('lease')} < "
                                               f"{w.v(now - self.lease_margin)}"})))
                if not self._transact(ops):
                    continue  # it heartbeated or ended meanwhile: not lost
            job = self._job(it, self._spec_of(it if idx < 0 else self._get(job_id, PARENT)))
            if on_lost is not None:
                on_lost(job)  # e.g. kill an orphaned process group before anyone may start the job again
            job.state = self._finish(job_id, idx, fence, LOST, None, reason, now)
            if job.state is not None:
                lost.append(job)
        return lost

    # dependencies ---------------------------------------------------------------------------------
    def _resolve_dependents(self, job_id: int, idx: int | None, now: float) -> None:
        """Re-evaluate the jobs that depend on job_id (idx -1), one element (idx >= 0) or all (None)."""
        if idx is None:
            edges = self._query_all(table=self.meta, key="pk", value=f"dep#{job_id}", consistent=True)
        else:
            edges = self._query_all(table=self.meta, key="pk", value=f"dep#{job_id}", sort="sk",
                                    op="begins_with", sort_value=f"{idx}#", consistent=True)
        for dependent in sorted({int(e["job"]) for e in edges}):
            self._reevaluate(dependent, now)

    def _reevaluate(self, job_id: int, now: float) -> JobState | None:
        """A held job's dependencies again: release it, or say why it still waits. Returns its new state."""
        for _ in range(TX_ATTEMPTS):
            p = self._get(job_id, PARENT)
            if p is None or p["state"] != HELD:
                return None
            deps = p.get("deps") or []
            keys = set()
            for _, tid, tidx in deps:
                keys.add((int(tid), PARENT))
                keys.add((int(tid), int(tidx)))
            found = self._batch_get(keys) if keys else {}
            pending = never = ""
            for kind, tid, tidx in deps:
                tid, tidx = int(tid), int(tidx)
                target = str(tid) if tidx < 0 else f"{tid}[{tidx}]"
                t, parent = found.get((tid, tidx)), found.get((tid, PARENT))
                if t is not None:
                    effective = JobState(t["state"])
                elif parent is not None and _finished(parent["state"]):
                    effective = JobState.DELETED
                else:
                    effective = JobState.QUEUED
                status = dependency_status(kind, effective)
                if status == NEVER and not never:
                    never = f"{kind}:{target} ended {effective.value}"
                elif status == PENDING and not pending:
                    pending = f"{kind}:{target}"
            e = _Expr()
            if never or p.get("uhold") or pending:
                reason = (f"dependency can never be satisfied: {never}" if never else
                          "held by user (release with qrls)" if p.get("uhold") else f"waiting for {pending}")
                if reason == p.get("reason"):
                    return JobState.HELD
                op = _update(self.jobs, _jkey(job_id, PARENT), e, set_={"reason": reason}, cond=e.eq(state=HELD))
                if self._transact([("Update", op)]):
                    return JobState.HELD
                continue
            sets = {"reason": ""}
            sets.update(self._state_attrs(p, QUEUED, ready=not p.get("array"), now=now))
            extra = {"a_cursor": p["a_cursor"], "a_skip": p["a_skip"]} if p.get("array") else {}
            op = _update(self.jobs, _jkey(job_id, PARENT), e, set_=sets, cond=e.eq(state=HELD, uhold=False, **extra))
            w = _weight(p)
            if self._transact([("Update", op)], {(p["queue"], p["definition"], HELD): -w,
                                                 (p["queue"], p["definition"], QUEUED): w}):
                if p.get("array"):
                    self._settle_array(job_id, now)
                return JobState.QUEUED
        raise self._contended(job_id)

    # workers --------------------------------------------------------------------------------------
    def _worker_key(self, worker: str) -> dict:
        return {"pk": {"S": f"wrk#{zlib.crc32(worker.encode()) % self.count_shards}"}, "sk": {"S": worker}}

    @_public
    def register_worker(self, info: WorkerInfo) -> None:
        key = self._worker_key(info.id)
        item = {"pk": key["pk"]["S"], "sk": info.id, "queue": info.queue, "definition": info.definition,
                "host": info.host, "pid": info.pid, "started": info.started, "heartbeat": info.heartbeat,
                "state": info.state, "jobs_run": info.jobs_run,
                "expires": int(info.heartbeat + self.retention) if info.state == "EXITED" else None}
        self.db.put_item(TableName=self.meta, Item=_item(item))

    @_public
    def touch_worker(self, worker: str, now: float, state: str, jobs_run: int) -> None:
        e = _Expr()
        sets = {"heartbeat": now, "state": state, "jobs_run": jobs_run,
                "expires": int(now + self.retention) if state == "EXITED" else None}
        try:
            self.db.update_item(**_update(self.meta, self._worker_key(worker), e, set_=sets,
                                          cond="attribute_exists(pk)"))
        except self.db.exceptions.ConditionalCheckFailedException:
            pass

    def _workers(self) -> list[WorkerInfo]:
        def shard(k: int) -> list[dict]:
            return list(self._query_all(table=self.meta, key="pk", value=f"wrk#{k}", consistent=True))

        out = []
        for items in self._parallel(shard, list(range(self.count_shards))):
            out.extend(WorkerInfo(id=it["sk"], queue=it.get("queue", ""), definition=it.get("definition", ""),
                                  host=it.get("host", ""), pid=it.get("pid"), started=_f(it.get("started")) or 0.0,
                                  heartbeat=_f(it.get("heartbeat")) or 0.0, state=it.get("state", "IDLE"),
                                  jobs_run=it.get("jobs_run", 0)) for it in items)
        return sorted(out, key=lambda w: (w.started, w.id))

    @_public
    def list_workers(self, live_since: float | None = None) -> list[WorkerInfo]:
        workers = self._workers()
        if live_since is not None:
            workers = [w for w in workers if w.state != "EXITED" and w.heartbeat >= live_since]
        return workers

    @_public
    def remember_submission(self, region: str, batch_job_id: str, at: float, keep: float) -> None:
        """The scheduler's record of a worker array it submitted, kept ``keep`` seconds (TTL), so a scheduler
        restarted before Batch's ListJobs shows the array still counts its workers (no double provisioning).
        One partition: writes follow SubmitJob, at most 50/s per account."""
        item = {"pk": "sched", "sk": f"{region}#{batch_job_id}", "region": region, "job": batch_job_id,
                "at": at, "expires": int(at + keep) + 1}
        self.db.put_item(TableName=self.meta, Item=_item(item))

    @_public
    def recent_submissions(self, since: float) -> list[tuple[str, str, float]]:
        """(region, Batch job id, submitted at) of the worker arrays submitted since ``since``."""
        found = self._query_all(table=self.meta, key="pk", value="sched", consistent=True)
        return sorted((it["region"], it["job"], _f(it["at"]) or 0.0) for it in found
                      if (_f(it.get("at")) or 0.0) >= since)

    @_public
    def prune_workers(self, before: float) -> None:
        for w in self._workers():
            if w.state == "EXITED" and w.heartbeat < before:
                self.db.delete_item(TableName=self.meta, Key=self._worker_key(w.id))
