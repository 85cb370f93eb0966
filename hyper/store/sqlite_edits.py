"""The embedded store's deletes and holds (qdel, qhold, qrls): a mixin of SQLiteStore (hyper/store/sqlite.py).

Kept apart from claims and finishes because they change jobs from the user's side: a delete marks a job
DELETED and its worker, which watches the state, stops it; elements not yet started are skipped by moving
the array's counters, never by writing a row per element.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ContextManager, Iterable

from hyper.parsing.jobids import JobRef
from hyper.states import JobState
from hyper.store.base import (
    DeleteResult,
    already_finished,
    hold_refusal,
    not_an_array,
    unknown_job,
)
from hyper.store.sqlite_schema import COLS, SELECT

if TYPE_CHECKING:
    import sqlite3

    from hyper.parsing.arrays import ArraySpec


class SQLiteEdits:
    """qdel/qhold/qrls on the jobs table; needs SQLiteStore's _tx, _array and _settle_array."""

    if TYPE_CHECKING:  # provided by SQLiteStore and SQLiteRunning, declared for the type checker only
        def _tx(self) -> ContextManager[sqlite3.Connection]: ...
        def _array(self, job_id: int, text: str) -> ArraySpec: ...
        def _settle_array(self, con: sqlite3.Connection, job_id: int, now: float) -> None: ...
        def _resolve_dependents(self, con: sqlite3.Connection, job_id: int, idx: int | None, state: JobState,
                                now: float) -> None: ...
        def _reevaluate(self, con: sqlite3.Connection, job_id: int, now: float) -> None: ...

    def delete(self, refs: Iterable[JobRef], now: float) -> list[DeleteResult]:
        """Mark jobs DELETED; running ones are stopped by their worker, which sees the state change."""
        results: list[DeleteResult] = []
        with self._tx() as con:
            for ref in refs:
                prow = self._parent_row(con, ref.id)
                if prow is None:
                    results.append(unknown_job(ref.text))
                    continue
                if ref.indices is None:
                    results.append(self._delete_whole(con, prow, now))
                elif prow["array"] is None:
                    results.append(not_an_array(ref.text, ref.id))
                else:
                    results.extend(self._delete_elements(con, prow, ref.indices, now))
        return results

    def _parent_row(self, con: sqlite3.Connection, job_id: int) -> dict | None:
        row = con.execute(SELECT + " WHERE id = ? AND idx = -1", (job_id,)).fetchone()
        return dict(zip(COLS, row)) if row else None

    def _delete_whole(self, con: sqlite3.Connection, prow: dict, now: float) -> DeleteResult:
        jid = f"{prow['id']}[]" if prow["array"] else str(prow["id"])
        if JobState(prow["state"]).finished:
            return already_finished(jid, prow["state"])
        if prow["array"]:
            remaining = prow["a_total"] - prow["a_cursor"] - prow["a_skip"]
            rows = con.execute("SELECT idx, state FROM jobs WHERE id = ? AND idx >= 0 AND state IN "
                               "('HELD', 'QUEUED', 'RUNNING')", (prow["id"],)).fetchall()
            running = sum(1 for _, s in rows if s == "RUNNING")
            con.execute("UPDATE jobs SET state = 'DELETED', ready = 0, ended = ?, reason = 'deleted by qdel' "
                        "WHERE id = ? AND idx >= 0 AND state IN ('HELD', 'QUEUED', 'RUNNING')", (now, prow["id"]))
            # the rest of the array is deleted as a block: the parent row carries it in its weight
            con.execute("UPDATE jobs SET state = 'DELETED', ready = 0, ended = ?, reason = 'deleted by qdel', "
                        "a_running = a_running - ?, a_done = a_done + ?, a_deleted = a_deleted + ? "
                        "WHERE id = ? AND idx = -1",
                        (now, running, remaining + len(rows), remaining + len(rows), prow["id"]))
            # dependents of the array and of any element, started or not: none of them can start any more
            self._resolve_dependents(con, prow["id"], None, JobState.DELETED, now)
            return DeleteResult(jid, True)
        con.execute("UPDATE jobs SET state = 'DELETED', ready = 0, ended = ?, reason = 'deleted by qdel' "
                    "WHERE id = ? AND idx = -1", (now, prow["id"]))
        self._resolve_dependents(con, prow["id"], -1, JobState.DELETED, now)
        return DeleteResult(jid, True)

    def _delete_elements(self, con: sqlite3.Connection, prow: dict, indices: ArraySpec,
                         now: float) -> list[DeleteResult]:
        spec = self._array(prow["id"], prow["array"])
        results = []
        for index in indices:
            jid = f"{prow['id']}[{index}]"
            position = spec.position_of(index)
            if position is None:
                results.append(unknown_job(jid, f"not an index of {prow['id']}[]"))
                continue
            row = con.execute("SELECT state FROM jobs WHERE id = ? AND idx = ?", (prow["id"], index)).fetchone()
            if row is None and JobState(prow["state"]).finished:
                results.append(already_finished(jid, prow["state"]))
                continue
            if row is None:
                con.execute(
                    "INSERT INTO jobs (id, idx, name, user, queue, definition, state, reason, priority, submitted, "
                    "ended, retries) VALUES (?, ?, ?, ?, ?, ?, 'DELETED', 'deleted by qdel', ?, ?, ?, ?)",
                    (prow["id"], index, prow["name"], prow["user"], prow["queue"], prow["definition"],
                     prow["priority"], prow["submitted"], now, prow["retries"]))
                con.execute("UPDATE jobs SET a_skip = a_skip + 1, a_done = a_done + 1, a_deleted = a_deleted + 1 "
                            "WHERE id = ? AND idx = -1", (prow["id"],))
            elif JobState(row[0]).finished:
                results.append(already_finished(jid, row[0]))
                continue
            else:
                con.execute("UPDATE jobs SET state = 'DELETED', ready = 0, ended = ?, reason = 'deleted by qdel' "
                            "WHERE id = ? AND idx = ?", (now, prow["id"], index))
                con.execute("UPDATE jobs SET a_running = a_running - ?, a_done = a_done + 1, "
                            "a_deleted = a_deleted + 1 WHERE id = ? AND idx = -1",
                            (int(row[0] == "RUNNING"), prow["id"]))
            self._resolve_dependents(con, prow["id"], index, JobState.DELETED, now)
            results.append(DeleteResult(jid, True))
        self._settle_array(con, prow["id"], now)
        return results

    def set_hold(self, refs: Iterable[JobRef], hold: bool, now: float) -> list[DeleteResult]:
        """qhold / qrls on whole jobs: a held job keeps its place but is not started."""
        results = []
        with self._tx() as con:
            for ref in refs:
                prow = self._parent_row(con, ref.id)
                if prow is None:
                    results.append(unknown_job(ref.text))
                    continue
                refused = hold_refusal(ref, prow["state"], bool(prow["user_hold"]), hold)
                if refused is not None:
                    results.append(refused)
                    continue
                if hold:
                    con.execute("UPDATE jobs SET user_hold = 1, state = 'HELD', ready = 0, "
                                "reason = 'held by user (release with qrls)' WHERE id = ? AND idx = -1", (ref.id,))
                    if prow["array"]:
                        self._settle_array(con, ref.id, now)  # its requeued elements wait too
                else:
                    con.execute("UPDATE jobs SET user_hold = 0 WHERE id = ? AND idx = -1", (ref.id,))
                    self._reevaluate(con, ref.id, now)
                results.append(DeleteResult(ref.text, True))
        return results

