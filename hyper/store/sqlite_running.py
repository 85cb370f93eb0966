"""The embedded store's work cycle: claim, pid, heartbeat, finish, requeue of lost jobs and the dependency
re-evaluation a job's end triggers; a mixin of SQLiteStore (hyper/store/sqlite.py).

Every step is one ``BEGIN IMMEDIATE`` transaction, so a claim is atomic across processes (a job is never
claimed twice), and an array's claim and finish touch its parent row and the element, never its other
started elements (arrays stay flat in N).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, ContextManager

from hyper.array_state import ended_array, unended_state
from hyper.dependencies import blockers, effective_state, still_held
from hyper.models import Job, JobSpec
from hyper.retry import LOST, next_state
from hyper.states import JobState
from hyper.store.base import LostHandler
from hyper.store.sqlite_schema import COLS, SELECT, _array_ready, _idx, _row_to_job

if TYPE_CHECKING:
    import sqlite3

    from hyper.parsing.arrays import ArraySpec


class SQLiteRunning:
    """The worker's side of the jobs table; needs SQLiteStore's _tx, _errors, con and _array."""

    if TYPE_CHECKING:  # provided by SQLiteStore and SQLiteEdits, declared for the type checker only
        @property
        def con(self) -> sqlite3.Connection: ...
        def _errors(self) -> ContextManager[None]: ...
        def _tx(self) -> ContextManager[sqlite3.Connection]: ...
        def _array(self, job_id: int, text: str) -> ArraySpec: ...
        def _parent_row(self, con: sqlite3.Connection, job_id: int) -> dict | None: ...
        _retry_on_exit: dict[int, bool]

    def claim(self, queue: str, definition: str, worker: str, lease_until: float, now: float) -> Job | None:
        """Take the next ready job of (queue, definition) for this worker, or None.

        Atomic: the write lock is held from the select to the update, so two workers never get the same
        job; an array hands out its next element, creating that element's row only now.
        """
        with self._tx() as con:
            row = con.execute(
                SELECT + " WHERE ready = 1 AND queue = ? AND definition = ? "
                "ORDER BY priority DESC, id, idx LIMIT 1", (queue, definition)).fetchone()
            if row is None:
                return None
            r = dict(zip(COLS, row))
            if r["idx"] == -1 and r["array"] is not None:
                return self._claim_element(con, r, worker, lease_until, now)
            con.execute("UPDATE jobs SET state = 'RUNNING', ready = 0, attempts = attempts + 1, worker = ?, "
                        "lease = ?, started = ?, ended = NULL, pid = NULL, exit_code = NULL "
                        "WHERE id = ? AND idx = ?", (worker, lease_until, now, r["id"], r["idx"]))
            parent_spec = None
            if r["idx"] >= 0:  # a requeued element: count it running again on its array
                con.execute("UPDATE jobs SET a_running = a_running + 1 WHERE id = ? AND idx = -1", (r["id"],))
                self._settle_array(con, r["id"], now)
                parent_spec = con.execute("SELECT spec FROM jobs WHERE id = ? AND idx = -1",
                                          (r["id"],)).fetchone()[0]
            job = _row_to_job(row, parent_spec)
            job.state, job.attempts, job.worker, job.lease, job.started = (
                JobState.RUNNING, job.attempts + 1, worker, lease_until, now)
            job.ended = job.pid = job.exit_code = None
            return job

    def _claim_element(self, con: sqlite3.Connection, r: dict, worker: str, lease_until: float,
                       now: float) -> Job | None:
        spec = self._array(r["id"], r["array"])
        cursor, skip = r["a_cursor"], r["a_skip"]
        while True:
            index = spec.index_at(cursor)
            cursor += 1
            if skip and con.execute("SELECT 1 FROM jobs WHERE id = ? AND idx = ?", (r["id"], index)).fetchone():
                skip -= 1  # deleted before it started: step over it
                continue
            break
        con.execute(
            "INSERT INTO jobs (id, idx, name, user, queue, definition, state, reason, priority, submitted, "
            "started, attempts, retries, worker, lease) "
            "VALUES (?, ?, ?, ?, ?, ?, 'RUNNING', '', ?, ?, ?, 1, ?, ?, ?)",
            (r["id"], index, r["name"], r["user"], r["queue"], r["definition"], r["priority"], r["submitted"],
             now, r["retries"], worker, lease_until))
        con.execute("UPDATE jobs SET a_cursor = ?, a_skip = ?, a_running = a_running + 1, "
                    "started = COALESCE(started, ?) WHERE id = ? AND idx = -1", (cursor, skip, now, r["id"]))
        # the parent as it is now, from the row read above (saves reading it again in this transaction)
        self._settle_array(con, r["id"], now, {**r, "a_cursor": cursor, "a_skip": skip,
                                               "a_running": r["a_running"] + 1})
        spec_obj = JobSpec.from_dict(json.loads(r["spec"])) if r["spec"] else None
        return Job(id=r["id"], index=index, name=r["name"], user=r["user"], queue=r["queue"],
                   definition=r["definition"], state=JobState.RUNNING, priority=r["priority"],
                   submitted=r["submitted"], started=now, attempts=1, retries=r["retries"], worker=worker,
                   lease=lease_until, spec=spec_obj)

    def _settle_array(self, con: sqlite3.Connection, job_id: int, now: float, prow: dict | None = None) -> None:
        """Recompute an array's state and readiness from its counters; end it when every element ended.
        ``prow``: the array's row as it now is in this transaction, when the caller has it (else it is read)."""
        if prow is None:
            prow = self._parent_row(con, job_id)
        if prow is None or prow["array"] is None:
            return
        state = JobState(prow["state"])
        remaining = prow["a_total"] - prow["a_cursor"] - prow["a_skip"]
        ended = ended_array(prow["a_total"], prow["a_done"], prow["a_failed"], prow["a_deleted"])
        if ended is not None:
            if not state.finished:
                final, reason = ended
                con.execute("UPDATE jobs SET state = ?, ready = 0, ended = ?, reason = ?, a_running = 0 "
                            "WHERE id = ? AND idx = -1", (final.value, now, reason, job_id))
                self._resolve_dependents(con, job_id, -1, final, now)
            return
        state = unended_state(state, remaining)
        old_state, old_ready = prow["state"], prow["ready"]
        prow["state"] = state.value
        ready = _array_ready(prow)
        # write only what changed: rewriting `state` (even to the same value) makes SQLite maintain the
        # partial jobs_active* indexes, which costs time that grows with the array's started elements
        if state.value != old_state:
            con.execute("UPDATE jobs SET state = ?, ready = ? WHERE id = ? AND idx = -1",
                        (state.value, ready, job_id))
        elif ready != old_ready:
            con.execute("UPDATE jobs SET ready = ? WHERE id = ? AND idx = -1", (ready, job_id))
        # requeued elements wait while the array is at its %limit of running elements
        under_limit = prow["a_limit"] is None or prow["a_running"] < prow["a_limit"]
        # through the partial index of requeued elements (usually none): O(log N) however many started
        element_ready = int(under_limit and state in (JobState.QUEUED, JobState.RUNNING))
        con.execute("UPDATE jobs INDEXED BY jobs_requeued SET ready = ? "
                    "WHERE id = ? AND idx >= 0 AND state = 'QUEUED' AND ready != ?",
                    (element_ready, job_id, element_ready))

    def claim_many(self, queue: str, definition: str, worker: str, lease_until: float, now: float,
                   limit: int) -> list[Job]:
        """One job, as ``claim``: a local claim is one short transaction on this machine, so claiming ahead
        would only let a worker hold jobs another could start (the worker asks for more only where the store's
        CLAIM_AHEAD says claims are costly)."""
        job = self.claim(queue, definition, worker, lease_until, now)
        return [job] if job is not None else []

    def release(self, job: Job, worker: str, now: float) -> JobState | None:
        """Nothing is ever claimed ahead here (see claim_many), so there is nothing to give back."""
        return None

    def set_pid(self, job: Job, worker: str, pid: int, log: str | None = None) -> None:
        # (``log`` is for hosts that ship output: a local job's output is its files)
        with self._tx() as con:
            con.execute("UPDATE jobs SET pid = ? WHERE id = ? AND idx = ? AND worker = ?",
                        (pid, job.id, _idx(job), worker))

    def heartbeat(self, job: Job, worker: str, lease_until: float, jobs_run: int | None = None) -> JobState | None:
        """Extend the lease; returns the job's state, or None if this worker no longer owns the job (``jobs_run``
        is ignored: a registry touch costs nothing here, the worker makes its own)."""
        with self._tx() as con:
            row = con.execute("SELECT state, worker FROM jobs WHERE id = ? AND idx = ?",
                              (job.id, _idx(job))).fetchone()
            if row is None or row[1] != worker:
                return None
            if row[0] == "RUNNING":
                con.execute("UPDATE jobs SET lease = ? WHERE id = ? AND idx = ?", (lease_until, job.id, _idx(job)))
            return JobState(row[0])

    def peek(self, job: Job, worker: str) -> JobState | None:
        """The job's state without renewing its lease; None if this worker no longer owns the job."""
        with self._errors():
            row = self.con.execute("SELECT state, worker FROM jobs WHERE id = ? AND idx = ?",
                                   (job.id, _idx(job))).fetchone()
        return None if row is None or row[1] != worker else JobState(row[0])

    def finish(self, job: Job, worker: str, outcome: str, exit_code: int | None, reason: str,
               now: float, log: str | None = None) -> JobState | None:
        """Record a run's end if this worker still owns it; applies the retry policy (``log``: see set_pid)."""
        with self._tx() as con:
            return self._finish(con, job.id, _idx(job), worker, outcome, exit_code, reason, now)

    def _finish(self, con: sqlite3.Connection, job_id: int, idx: int, worker: str | None, outcome: str,
                exit_code: int | None, reason: str, now: float) -> JobState | None:
        row = con.execute("SELECT state, attempts, retries, spec, worker FROM jobs WHERE id = ? AND idx = ?",
                          (job_id, idx)).fetchone()
        if row is None or row[0] != "RUNNING" or row[4] != worker:
            return None  # deleted, or requeued after our lease expired: someone else owns it now
        prow = self._parent_row(con, job_id) if idx >= 0 else None  # an element: its array's row
        retry_on_exit = (self._retries_on_exit(job_id, prow["spec"]) if prow is not None
                         else bool(row[3] and json.loads(row[3]).get("retry_on_exit")))
        state, why = next_state(outcome, exit_code, row[1], row[2], retry_on_exit, reason)
        if state is JobState.QUEUED:
            con.execute("UPDATE jobs SET state = 'QUEUED', ready = 1, reason = ?, worker = NULL, lease = NULL, "
                        "pid = NULL, exit_code = ?, ended = ? WHERE id = ? AND idx = ?",
                        (why, exit_code, now, job_id, idx))
        else:
            con.execute("UPDATE jobs SET state = ?, ready = 0, reason = ?, exit_code = ?, ended = ?, lease = NULL "
                        "WHERE id = ? AND idx = ?", (state.value, why, exit_code, now, job_id, idx))
        if prow is not None:
            done, failed = int(state is not JobState.QUEUED), int(state is JobState.FAILED)
            con.execute("UPDATE jobs SET a_running = a_running - 1, a_done = a_done + ?, a_failed = a_failed + ? "
                        "WHERE id = ? AND idx = -1", (done, failed, job_id))
            now_row = {**prow, "a_running": prow["a_running"] - 1, "a_done": prow["a_done"] + done,
                       "a_failed": prow["a_failed"] + failed}
            self._settle_array(con, job_id, now, now_row)
        if state.finished:
            self._resolve_dependents(con, job_id, idx, state, now)
        return state

    def _retries_on_exit(self, job_id: int, spec_text: str | None) -> bool:
        """An array's ``retry_on_exit`` (its spec never changes once submitted, so the answer is kept for its next
        elements instead of parsing the spec again at every element's end)."""
        known = self._retry_on_exit.get(job_id)
        if known is None:
            known = bool(spec_text and json.loads(spec_text).get("retry_on_exit"))
            if len(self._retry_on_exit) > 4096:
                self._retry_on_exit.clear()
            self._retry_on_exit[job_id] = known
        return known

    def requeue_expired(self, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """Return jobs whose lease ran out to the queue (or fail them when their retries are spent)."""
        with self._tx() as con:
            rows = con.execute(SELECT + " WHERE state = 'RUNNING' AND lease < ? ORDER BY id, idx", (now,)).fetchall()
            return self._lose(con, rows, "worker lost (lease expired)", now, on_lost)

    def requeue_worker(self, worker: str, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """A worker is known dead (its process exited): requeue its jobs at once, not at lease expiry."""
        with self._tx() as con:
            rows = con.execute(SELECT + " WHERE state = 'RUNNING' AND worker = ? ORDER BY id, idx",
                               (worker,)).fetchall()
            out = self._lose(con, rows, f"worker {worker} died", now, on_lost)
            con.execute("UPDATE workers SET state = 'EXITED', heartbeat = ? WHERE id = ?", (now, worker))
            return out

    def _lose(self, con: sqlite3.Connection, rows: list[tuple], reason: str, now: float,
              on_lost: LostHandler | None) -> list[Job]:
        lost = []
        for row in rows:
            job_id, idx = row[COLS.index("id")], row[COLS.index("idx")]
            parent_spec = None
            if idx >= 0:  # an element: its spec is its array's
                parent_spec = con.execute("SELECT spec FROM jobs WHERE id = ? AND idx = -1", (job_id,)).fetchone()[0]
            job = _row_to_job(row, parent_spec)
            if on_lost is not None:
                on_lost(job)  # e.g. kill an orphaned process group before anyone may start the job again
            state = self._finish(con, job.id, _idx(job), job.worker, LOST, None, reason, now)
            # the row was read RUNNING, owned by job.worker, in this same transaction: _finish always decides
            assert state is not None
            job.state = state
            lost.append(job)
        return lost

    # dependencies -----------------------------------------------------------------------------------
    def _resolve_dependents(self, con: sqlite3.Connection, job_id: int, idx: int | None, state: JobState,
                            now: float) -> None:
        """Re-evaluate the jobs that depend on job_id (idx -1), one element (idx >= 0) or any of it (None)."""
        if idx is None:
            rows = con.execute("SELECT DISTINCT job FROM deps WHERE on_job = ? ORDER BY job", (job_id,))
        else:
            rows = con.execute("SELECT DISTINCT job FROM deps WHERE on_job = ? AND on_idx = ? ORDER BY job",
                               (job_id, idx))
        for (dependent,) in rows.fetchall():
            self._reevaluate(con, dependent, now)

    def _reevaluate(self, con: sqlite3.Connection, job_id: int, now: float) -> None:
        prow = self._parent_row(con, job_id)
        if prow is None or prow["state"] != "HELD":
            return
        rows = con.execute(
            "SELECT d.kind, d.on_job, d.on_idx, t.state, p.state FROM deps d "
            "LEFT JOIN jobs t ON t.id = d.on_job AND t.idx = d.on_idx "
            "LEFT JOIN jobs p ON p.id = d.on_job AND p.idx = -1 WHERE d.job = ?", (job_id,)).fetchall()
        pending, never = blockers((kind, tid, tidx, effective_state(tstate, parent_state))
                                  for kind, tid, tidx, tstate, parent_state in rows)
        reason = still_held(pending, never, bool(prow["user_hold"]))
        if not reason:
            prow["state"] = "QUEUED"
            ready = _array_ready(prow) if prow["array"] else 1
            con.execute("UPDATE jobs SET state = 'QUEUED', ready = ?, reason = '' WHERE id = ? AND idx = -1",
                        (ready, job_id))
            if prow["array"]:
                self._settle_array(con, job_id, now)
            return
        con.execute("UPDATE jobs SET reason = ? WHERE id = ? AND idx = -1", (reason, job_id))

