"""Completion notices in the store: one record per job submitted with ``--notify URL``.

Why a record of its own, written in the same submission as the job: a notice must be sent once per job end
and never be lost silently, whoever sees the end (the worker that finished the job or its array's last
element, or the agent's / scheduler's sweep after a qdel or a lost worker). Senders take the record with a
conditional update (PENDING -> SENDING with a lease), so two workers ending an array's last two elements at
once cannot both send; a sender that dies mid-send leaves a lease that expires, and the sweep sends again
(the receiver can recognise the repeat by the ``X-Hyper-Delivery`` header). The outcome (SENT, or FAILED
after the last retry, with the HTTP status or error) stays on the record for ``qstat -f``.

States: PENDING (waiting for the job to end, or for the next retry at ``next_at``), SENDING (taken by
``owner`` until ``lease``), SENT, FAILED.

Both stores mix these methods in: ``SQLiteNotices`` (a ``notices`` table, schema version 3) and
``DynamoNotices`` (items in the meta table: ``ntc#<shard>`` while open, ``ntcx#<shard>`` once final; the open
item then expires within a day or two, so the sweep's queries read open notices and recent tombstones only).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, ContextManager, Iterable, TypeVar

if TYPE_CHECKING:
    import sqlite3

    from hyper.aws.session import AwsClient
    from hyper.models import Job

_T = TypeVar("_T")
_R = TypeVar("_R")

OPEN_STATES = ("PENDING", "SENDING")
FINAL_STATES = ("SENT", "FAILED")
TOMBSTONE_SECONDS = 86400  # an open DynamoDB item outlives its outcome this long (then TTL removes it)
FIELDS = ("job", "url", "state", "attempts", "next_at", "owner", "lease", "status", "error", "updated")

SQLITE_TABLE = [
    "CREATE TABLE IF NOT EXISTS notices (job INTEGER PRIMARY KEY, url TEXT NOT NULL, state TEXT NOT NULL, "
    "attempts INTEGER NOT NULL DEFAULT 0, next_at REAL NOT NULL DEFAULT 0, owner TEXT, lease REAL, status INTEGER, "
    "error TEXT NOT NULL DEFAULT '', updated REAL)",
    "CREATE INDEX IF NOT EXISTS notices_open ON notices (job) WHERE state IN ('PENDING', 'SENDING')",
]


def new_notice(job_id: int, url: str, now: float) -> dict:
    return {"job": job_id, "url": url, "state": "PENDING", "attempts": 0, "next_at": 0.0, "owner": None,
            "lease": None, "status": None, "error": "", "updated": now}


class SQLiteNotices:
    """Notice records on the local host's SQLite file (``self._tx`` / ``self.con`` come from SQLiteStore)."""

    if TYPE_CHECKING:  # provided by SQLiteStore (hyper/store/sqlite.py), declared for the type checker only
        @property
        def con(self) -> sqlite3.Connection: ...
        def _errors(self) -> ContextManager[None]: ...
        def _tx(self) -> ContextManager[sqlite3.Connection]: ...

    def _insert_notices(self, con: sqlite3.Connection, jobs: Iterable[Job], now: float) -> None:
        """Called inside submit's transaction: the job and its notice are written together or not at all."""
        rows = [(j.id, j.spec.notify, now) for j in jobs if j.spec is not None and j.spec.notify]
        if rows:
            con.executemany("INSERT INTO notices (job, url, state, updated) VALUES (?, ?, 'PENDING', ?)", rows)

    def get_notice(self, job_id: int) -> dict | None:
        with self._errors():
            row = self.con.execute(f"SELECT {', '.join(FIELDS)} FROM notices WHERE job = ?", (job_id,)).fetchone()
        return dict(zip(FIELDS, row)) if row else None

    def open_notices(self) -> list[dict]:
        """Open notices of jobs that ended or can never run (or that a sender holds): others cannot be due yet."""
        cols = ", ".join(f"n.{f}" for f in FIELDS)
        with self._errors():
            rows = self.con.execute(
                f"SELECT {cols} FROM notices n JOIN jobs j ON j.id = n.job AND j.idx = -1 "
                "WHERE n.state IN ('PENDING', 'SENDING') AND (n.state = 'SENDING' OR j.state IN ('SUCCEEDED', "
                "'FAILED', 'DELETED') OR (j.state = 'HELD' AND j.reason LIKE 'dependency can never be satisfied%')) "
                "ORDER BY n.job").fetchall()
        return [dict(zip(FIELDS, r)) for r in rows]

    def claim_notice(self, job_id: int, owner: str, lease_until: float, now: float) -> dict | None:
        """Take the notice to send it: only one caller wins until its lease runs out."""
        with self._tx() as con:
            taken = con.execute(
                "UPDATE notices SET state = 'SENDING', owner = ?, lease = ?, updated = ? WHERE job = ? AND "
                "((state = 'PENDING' AND next_at <= ?) OR (state = 'SENDING' AND lease < ?))",
                (owner, lease_until, now, job_id, now, now)).rowcount
        return self.get_notice(job_id) if taken else None

    def record_notice(self, job_id: int, owner: str, state: str, *, next_at: float = 0.0, status: int | None = None,
                      error: str = "", now: float | None = None) -> bool:
        """The outcome of one attempt, if ``owner`` still holds the notice (a late sender changes nothing)."""
        now = time.time() if now is None else now
        with self._tx() as con:
            return con.execute(
                "UPDATE notices SET state = ?, attempts = attempts + 1, next_at = ?, owner = NULL, lease = NULL, "
                "status = ?, error = ?, updated = ? WHERE job = ? AND state = 'SENDING' AND owner = ?",
                (state, next_at, status, error, now, job_id, owner)).rowcount == 1


class DynamoNotices:
    """Notice records as meta-table items (``self.db``/``self.meta``/``self.count_shards``/``SPEC_TTL`` from
    DynamoStore)."""

    SPEC_TTL: int
    db: AwsClient
    meta: str
    count_shards: int
    retention: int

    if TYPE_CHECKING:  # provided by DynamoTables (hyper/aws/dynamo.py), declared for the type checker only
        def _parallel(self, fn: Callable[[_T], _R], args: list[_T]) -> list[_R]: ...

    def _notice_key(self, job_id: int, final: bool = False) -> dict:
        return {"pk": {"S": f"{'ntcx' if final else 'ntc'}#{job_id % self.count_shards}"}, "sk": {"S": str(job_id)}}

    def _notice_items(self, jobs: Iterable[Job], now: float) -> list[tuple[str, dict]]:
        """Put requests for submit's batch: written before the job items, so no job exists without its notice."""
        from hyper.aws.attributes import _item  # here, not at the top: the local store never pays for decimal

        out = []
        for job in jobs:
            if job.spec is not None and job.spec.notify:
                # expires long after any job could end, like dependency edges: a submission whose job items
                # were never written (throttled) leaves no notice behind for ever
                body = {**new_notice(job.id, job.spec.notify, now), "pk": self._notice_key(job.id)["pk"]["S"],
                        "sk": str(job.id), "expires": int(now + self.SPEC_TTL)}
                out.append((self.meta, {"PutRequest": {"Item": _item(body)}}))
        return out

    @staticmethod
    def _notice_from(item: dict) -> dict:
        from hyper.aws.attributes import _unitem

        data = _unitem(item)
        out = {k: data.get(k) for k in FIELDS}
        out["job"] = int(data["sk"])
        out["attempts"] = int(out["attempts"] or 0)
        out["next_at"] = float(out["next_at"] or 0.0)
        out["error"] = out["error"] or ""
        return out

    def get_notice(self, job_id: int) -> dict | None:
        for final in (True, False):  # an outcome, else the open record
            item = self.db.get_item(TableName=self.meta, Key=self._notice_key(job_id, final),
                                    ConsistentRead=True).get("Item")
            if item:
                return self._notice_from(item)
        return None

    def open_notices(self) -> list[dict]:
        def shard(k: int) -> list[dict]:
            found: list[dict] = []
            start = None
            while True:
                args = {"TableName": self.meta, "KeyConditionExpression": "pk = :p", "ConsistentRead": True,
                        "ExpressionAttributeValues": {":p": {"S": f"ntc#{k}"}}}
                if start:
                    args["ExclusiveStartKey"] = start
                page = self.db.query(**args)
                found.extend(n for n in map(self._notice_from, page.get("Items", [])) if n["state"] in OPEN_STATES)
                start = page.get("LastEvaluatedKey")
                if not start:
                    return found

        out = [n for items in self._parallel(shard, list(range(self.count_shards))) for n in items]
        return sorted(out, key=lambda n: n["job"])

    def claim_notice(self, job_id: int, owner: str, lease_until: float, now: float) -> dict | None:
        from hyper.aws.attributes import _av

        try:
            item = self.db.update_item(
                TableName=self.meta, Key=self._notice_key(job_id), ReturnValues="ALL_NEW",
                UpdateExpression="SET #s = :sending, #o = :owner, #l = :lease, #u = :now",
                ConditionExpression="(#s = :pending AND #n <= :now) OR (#s = :sending AND #l < :now)",
                ExpressionAttributeNames={"#s": "state", "#o": "owner", "#l": "lease", "#u": "updated",
                                          "#n": "next_at"},
                ExpressionAttributeValues={":sending": _av("SENDING"), ":pending": _av("PENDING"),
                                           ":owner": _av(owner), ":lease": _av(lease_until), ":now": _av(now)},
            )["Attributes"]
        except self.db.exceptions.ConditionalCheckFailedException:
            return None
        return self._notice_from(item)

    def record_notice(self, job_id: int, owner: str, state: str, *, next_at: float = 0.0, status: int | None = None,
                      error: str = "", now: float | None = None) -> bool:
        from hyper.aws.attributes import _av, _item

        now = time.time() if now is None else now
        current = self.db.get_item(TableName=self.meta, Key=self._notice_key(job_id), ConsistentRead=True).get("Item")
        if not current:
            return False
        notice = self._notice_from(current)
        if notice["state"] != "SENDING" or notice["owner"] != owner:
            return False
        notice.update(state=state, attempts=notice["attempts"] + 1, next_at=next_at, owner=None, lease=None,
                      status=status, error=error, updated=now)
        cond: dict[str, Any] = {"ConditionExpression": "#s = :sending AND #o = :owner",
                "ExpressionAttributeNames": {"#s": "state", "#o": "owner"},
                "ExpressionAttributeValues": {":sending": _av("SENDING"), ":owner": _av(owner)}}
        if state in OPEN_STATES:
            body = {**notice, "pk": self._notice_key(job_id)["pk"]["S"], "sk": str(job_id)}
            body.pop("job")
            try:
                self.db.put_item(TableName=self.meta, Item=_item(body), **cond)
                return True
            except self.db.exceptions.ConditionalCheckFailedException:
                return False
        # final: the outcome goes to the closed partition, kept as long as finished jobs are (TTL); the open item
        # becomes a tombstone that TTL removes within a day or two (workers may not DeleteItem: least privilege)
        body = {**notice, "pk": self._notice_key(job_id, True)["pk"]["S"], "sk": str(job_id),
                "expires": int(now + self.retention)}
        body.pop("job")
        update = {"TableName": self.meta, "Key": self._notice_key(job_id),
                  "UpdateExpression": "SET #s = :final, #x = :expires REMOVE #o",
                  "ConditionExpression": cond["ConditionExpression"],
                  "ExpressionAttributeNames": {**cond["ExpressionAttributeNames"], "#x": "expires"},
                  "ExpressionAttributeValues": {**cond["ExpressionAttributeValues"], ":final": _av(state),
                                                ":expires": _av(int(now + TOMBSTONE_SECONDS))}}
        try:
            self.db.transact_write_items(TransactItems=[{"Update": update},
                                                        {"Put": {"TableName": self.meta, "Item": _item(body)}}])
            return True
        except self.db.exceptions.TransactionCanceledException:
            return False
