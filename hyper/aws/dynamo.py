"""DynamoDB plumbing that knows nothing about jobs: expression placeholders, UpdateItem requests, batched
writes with backoff, paged and merged queries, and all-or-nothing transactions with retries.

Why a module of its own: the job store (hyper/store/dynamodb/) is about job semantics; how DynamoDB wants its
requests spelt, and how throttling and transaction conflicts are retried, lives next to the other AWS code.
"""

from __future__ import annotations

import heapq
import random
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, TypeVar

import botocore.exceptions as bx

from hyper.aws import session as aws
from hyper.aws.attributes import _av, _unitem
from hyper.config import Host
from hyper.errors import HyperError

BATCH_SIZE = 25  # BatchWriteItem limit
GET_BATCH = 100  # BatchGetItem limit
TX_ATTEMPTS = 12

_T = TypeVar("_T")
_R = TypeVar("_R")


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

    def eq(self, **pairs: Any) -> str:
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
    return _ours(result.old.get(position), token)


def _ours(old: dict | None, token: str) -> bool:
    """Is ``old``, the item a claim's condition failed on, our own claim tagged ``token`` (see ``_committed``)?"""
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


class DynamoTables:
    """Query, pool and transaction helpers mixed into a DynamoDB-backed store.

    The store sets ``host``, ``db`` (a DynamoDB client), ``jobs`` (the default table of queries and the table
    named in errors), ``_pool_lock`` and ``_executor``; it overrides ``_counter_ops`` to add its counter
    writes to every transaction attempt.
    """

    host: Host
    db: Any
    jobs: str
    _pool_lock: threading.Lock
    _executor: ThreadPoolExecutor | None

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

    def _parallel(self, fn: Callable[[_T], _R], args: list[_T]) -> list[_R]:
        if len(args) <= 2:
            return [fn(a) for a in args]
        return list(self._pool().map(fn, args))


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
        request: dict[str, Any] = {"TableName": table or self.jobs, "KeyConditionExpression": cond}
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

    def _query_all(self, **kwargs: Any) -> Iterator[dict]:
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

    def _counter_ops(self, delta: dict) -> list[dict]:
        """Extra UpdateItems for a transaction's count deltas (the store's counter shards); none here."""
        return []

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
