"""The embedded store: one SQLite file in WAL mode, shared by qsub, qstat, the agent and its workers.

Why SQLite: it is a real transactional database in the standard library, good for ~36k commits/s here,
and every process on the host can open it. Writes run in ``BEGIN IMMEDIATE`` transactions, so a claim
(select the next ready job, mark it RUNNING) is atomic across processes: a job is never claimed twice.

The store is split by concern: the schema and row mapping (hyper/store/sqlite_schema.py), the work cycle
of claims, finishes and requeues (sqlite_running.py), deletes and holds (sqlite_edits.py) and completion
notices (notices.py) are mixins or helpers of SQLiteStore, which keeps connections, errors, creation and
upgrades, submit and the reads.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

from hyper.config import private_dir, private_file
from hyper.dependencies import blockers, initial_state
from hyper.errors import DiskFullError, HyperError
from hyper.models import Job, Resource, resource_class
from hyper.parsing.jobids import JobRef
from hyper.states import JobState
from hyper.store.notices import SQLiteNotices
from hyper.store.base import JobFilter, QueueCount, StoreDefaults, Submission, WorkerInfo
from hyper.store.sqlite_edits import SQLiteEdits
from hyper.store.sqlite_running import SQLiteRunning
from hyper.store.sqlite_schema import (
    COLS,
    SCHEMA,
    SCHEMA_VERSION,
    SELECT,
    SELECT_NO_SPEC,
    UPGRADES,
    _private_database,
    _row_to_job,
    _set_wal,
    _statements,
    busy_timeout,
)

if TYPE_CHECKING:
    from hyper.parsing.arrays import ArraySpec


def _parse_array(text: str) -> ArraySpec:
    """hyper.parsing.arrays, imported when an array is first met: a qstat or qdel of plain jobs never needs it."""
    from hyper.parsing.arrays import parse_array

    return parse_array(text)


class SQLiteStore(SQLiteRunning, SQLiteEdits, SQLiteNotices, StoreDefaults):
    """Store protocol on one SQLite file; safe to use from many processes and threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._local = threading.local()
        self._specs: dict[int, ArraySpec] = {}
        self._retry_on_exit: dict[int, bool] = {}  # job id -> its spec's retry_on_exit (specs never change)
        try:
            private_dir(self.path.parent)
            _private_database(self.path)
        except OSError as exc:
            raise HyperError(f"cannot create {self.path.parent}: {exc.strerror}",
                             "set HYPER_HOME to a directory you can write") from None
        if self.path.parent.exists() and not os.access(self.path.parent, os.R_OK | os.W_OK | os.X_OK):
            raise HyperError(f"cannot use {self.path.parent}: permission denied",
                             "fix its permissions or set HYPER_HOME to a directory you can write")
        with self._errors():
            self._create_if_missing()
            self._migrate()

    # connection handling ---------------------------------------------------------------------------
    @property
    def con(self) -> sqlite3.Connection:
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=busy_timeout(), isolation_level=None,
                                  check_same_thread=False)
            _set_wal(con)
            # WAL + NORMAL: a process crash loses nothing committed; a power cut may lose the last few
            # claims/finishes (those jobs run again). submit() commits with FULL: no acknowledged job is lost.
            con.execute("PRAGMA synchronous=NORMAL")
            self._local.con = con
        return con

    def close(self) -> None:
        con = getattr(self._local, "con", None)
        if con is not None:
            con.close()
            self._local.con = None

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite failures into one-line errors that say which file and what to do."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                raise HyperError(
                    f"the job database {self.path} stayed locked for {busy_timeout():g} s",
                    f"another process holds it; find it with `fuser {self.path}` and stop it") from None
            if "disk is full" in text:
                raise DiskFullError(
                    f"the disk holding the job database {self.path} is full",
                    "free some space there; the jobs already stored are kept and run once there is room") from None
            if "unable to open" in text or "readonly" in text or "disk I/O" in text:
                raise HyperError(f"cannot open the job database {self.path}: {text}",
                                 "check the permissions and free space of HYPER_HOME") from None
            raise HyperError(f"job database {self.path}: {text}",
                             "check the free space and permissions of HYPER_HOME, then try again") from None
        except sqlite3.DatabaseError as exc:
            raise HyperError(f"the job database {self.path} is corrupt: {exc}",
                             "move the file aside (a new one is created); its jobs are lost") from None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: takes the write lock first, so read-then-update is atomic."""
        with self._errors():
            con = self.con
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def _create_if_missing(self) -> None:
        """Create a new database whole, or not at all: built under a temporary name and linked into place, so
        ``hyper.db`` is never empty while it is in use. An empty one was therefore truncated by something
        (a full disk, a stray ``>``): it is refused like any corrupt database, never silently replaced by a
        fresh one whose ids restart at 1."""
        if self.path.exists():
            self._refuse_empty()
            return
        import fcntl

        lock = os.open(f"{self.path}.init", os.O_RDWR | os.O_CREAT, 0o600)
        tmp = self.path.with_name(f".{self.path.name}.new-{os.getpid()}-{threading.get_ident()}")
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if self.path.exists():  # another process created it while we waited
                self._refuse_empty()
                return
            os.close(private_file(tmp, os.O_RDONLY | os.O_CREAT))  # 0600 before SQLite writes a page
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode=WAL")
                self._create_or_upgrade(con)
            finally:
                con.close()  # checkpoints: the file alone holds the schema, no -wal is left to rename
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                pass
        finally:
            tmp.unlink(missing_ok=True)
            os.close(lock)

    def _refuse_empty(self) -> None:
        try:
            empty = self.path.stat().st_size == 0
            wal = Path(f"{self.path}-wal")
            if empty and wal.exists() and wal.stat().st_size > 0:
                empty = False  # created by an older hyper: its first pages may still be in the WAL
        except OSError:
            return
        if empty:
            raise HyperError(f"the job database {self.path} is corrupt: it is empty (0 bytes)",
                             "restore it from a backup; moving it aside starts afresh with ids from 1") from None

    def _migrate(self) -> None:
        con = self.con
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise HyperError(f"the job database {self.path} has schema {version}, newer than this hyper "
                             f"({SCHEMA_VERSION})", "upgrade hyper")
        # first use (or an upgrade): one process at a time, under a lock file, so concurrent first-time
        # qsubs never meet mid-creation, where SQLite answers "locked" at once instead of waiting
        import fcntl

        lock = os.open(f"{self.path}.init", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._create_or_upgrade(con)
        finally:
            os.close(lock)  # drops the lock

    def _create_or_upgrade(self, con: sqlite3.Connection) -> None:
        con.execute("BEGIN IMMEDIATE")
        try:
            current = con.execute("PRAGMA user_version").fetchone()[0]  # re-read under the write lock
            if current == 0:
                for statement in _statements(SCHEMA):
                    con.execute(statement)
                con.execute("INSERT INTO meta VALUES ('next_id', '1')")
                current = 1
            for step in range(current + 1, SCHEMA_VERSION + 1):
                for statement in UPGRADES[step]:
                    con.execute(statement)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            con.execute("COMMIT")
        except BaseException:
            con.execute("ROLLBACK")
            raise

    # resources --------------------------------------------------------------------------------------
    def put_resource(self, resource: Resource, *, replace: bool = False) -> None:
        import time

        body = json.dumps(resource.to_dict())
        with self._tx() as con:
            if replace:
                con.execute("INSERT OR REPLACE INTO resources VALUES (?, ?, ?, ?)",
                            (resource.KIND, resource.name, body, time.time()))
            elif con.execute("INSERT OR IGNORE INTO resources VALUES (?, ?, ?, ?)",
                             (resource.KIND, resource.name, body, time.time())).rowcount == 0:
                raise HyperError(f"{resource.KIND} {resource.name!r} already exists",
                                 f"pick another name or update the existing {resource.KIND}")

    def get_resource(self, kind: str, name: str) -> Resource | None:
        with self._errors():
            row = self.con.execute("SELECT body FROM resources WHERE kind = ? AND name = ?",
                                   (kind, name)).fetchone()
        return resource_class(kind).from_dict(json.loads(row[0])) if row else None

    def list_resources(self, kind: str) -> list[Resource]:
        with self._errors():
            rows = self.con.execute("SELECT body FROM resources WHERE kind = ? ORDER BY name", (kind,))
            return [resource_class(kind).from_dict(json.loads(r[0])) for r in rows]

    def delete_resource(self, kind: str, name: str) -> bool:
        with self._tx() as con:
            return con.execute("DELETE FROM resources WHERE kind = ? AND name = ?", (kind, name)).rowcount > 0

    # submit -----------------------------------------------------------------------------------------
    def submit(self, submissions: list[Submission], now: float) -> list[Job]:
        """Insert jobs atomically: every job with its id, or none (a bad dependency rolls back all)."""
        out: list[Job] = []
        with self._errors():
            self.con.execute("PRAGMA synchronous=FULL")  # qsub prints the id only once it is on disk
        try:
            self._submit(submissions, now, out)
        finally:
            with self._errors():
                self.con.execute("PRAGMA synchronous=NORMAL")
        return out

    def _submit(self, submissions: list[Submission], now: float, out: list[Job]) -> None:
        with self._tx() as con:
            next_id = int(con.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()[0])
            rows: list[tuple] = []
            dep_rows: list[tuple[int, str, int, int]] = []
            for sub in submissions:
                job = sub.job
                job.id = next_id
                next_id += 1
                job.submitted = now
                pending, never = self._check_dependencies(con, job, sub.depends)
                dep_rows.extend((job.id, kind, tid, -1 if tidx is None else tidx) for kind, tid, tidx in sub.depends)
                job.state, job.reason = initial_state(sub.hold, pending, never)
                spec = _parse_array(job.array) if job.array else None
                total = spec.count if spec else None
                ready = int(job.state is JobState.QUEUED)
                rows.append((
                    job.id, -1, job.name, job.user, job.queue, job.definition, job.state.value, job.reason,
                    ready, int(sub.hold), job.priority, now, job.retries,
                    json.dumps(job.spec.to_dict()) if job.spec else None,
                    json.dumps(job.depends) if job.depends else None,
                    job.array, total, spec.limit if spec else None,
                ))
                job.array_total = total or 0
                out.append(job)
            con.executemany(
                "INSERT INTO jobs (id, idx, name, user, queue, definition, state, reason, ready, user_hold, "
                "priority, submitted, retries, spec, depends, array, a_total, a_limit) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            con.executemany("INSERT OR IGNORE INTO deps VALUES (?, ?, ?, ?)", dep_rows)
            self._insert_notices(con, out, now)
            con.execute("UPDATE meta SET value = ? WHERE key = 'next_id'", (str(next_id),))

    def _check_dependencies(self, con: sqlite3.Connection, job: Job,
                            depends: Iterable[tuple[str, int, int | None]]) -> tuple[str, str]:
        """Targets must exist now; returns (first pending, first never-satisfiable) as text for reasons."""
        resolved = []
        for kind, tid, tidx in depends:
            row = con.execute("SELECT state FROM jobs WHERE id = ? AND idx = ?",
                              (tid, -1 if tidx is None else tidx)).fetchone()
            if row is None and tidx is not None:
                # an element that has not started yet: pending if its array is still alive
                parent = con.execute("SELECT state, array FROM jobs WHERE id = ? AND idx = -1", (tid,)).fetchone()
                if parent and parent[1] and tidx in self._array(tid, parent[1]):
                    row = ("QUEUED",) if not JobState(parent[0]).finished else (parent[0],)
            if row is None:
                target = f"{tid}" if tidx is None else f"{tid}[{tidx}]"
                raise HyperError(f"dependency {kind}:{target} names no job",
                                 "check the id with `qstat -x`; depend only on jobs that exist")
            resolved.append((kind, tid, -1 if tidx is None else tidx, JobState(row[0])))
        return blockers(resolved)

    def _array(self, job_id: int, text: str) -> ArraySpec:
        spec = self._specs.get(job_id)
        if spec is None:
            spec = self._specs[job_id] = _parse_array(text)
        return spec

    # reads ------------------------------------------------------------------------------------------
    def get_jobs(self, refs: Iterable[JobRef]) -> tuple[list[Job], list[str]]:
        """Jobs for the given ids, in order; ids that name no job come back in the second list."""
        found, missing = [], []
        with self._errors():
            con = self.con
            for ref in refs:
                parent_row = con.execute(SELECT + " WHERE id = ? AND idx = -1", (ref.id,)).fetchone()
                if parent_row is None:
                    missing.append(ref.text)
                    continue
                parent = _row_to_job(parent_row)
                if ref.indices is None:
                    found.append(parent)
                    continue
                if parent.array is None:
                    missing.append(ref.text)
                    continue
                spec = self._array(parent.id, parent.array)
                for index in ref.indices:
                    if index not in spec:
                        missing.append(f"{ref.id}[{index}]")
                        continue
                    found.append(self._element(con, parent, parent_row, index))
        return found, missing

    def _element(self, con: sqlite3.Connection, parent: Job, parent_row: tuple, index: int) -> Job:
        row = con.execute(SELECT + " WHERE id = ? AND idx = ?", (parent.id, index)).fetchone()
        if row is not None:
            return _row_to_job(row, parent_row[COLS.index("spec")])
        # not started: its state is the array's pending state
        state = parent.state if parent.state in (JobState.HELD, JobState.DELETED) else JobState.QUEUED
        if parent.state.finished and state is not JobState.DELETED:
            state = JobState.DELETED
        return Job(id=parent.id, index=index, name=parent.name, user=parent.user, queue=parent.queue,
                   definition=parent.definition, state=state, priority=parent.priority,
                   submitted=parent.submitted, retries=parent.retries, spec=parent.spec, array=parent.array)

    def list_jobs(self, flt: JobFilter) -> Iterator[Job]:
        where, args = ["idx = -1"], []
        if not flt.include_finished:
            where.append("state IN ('HELD', 'QUEUED', 'RUNNING')")
        if flt.queue:
            where.append("queue = ?")
            args.append(flt.queue)
        if flt.user:
            where.append("user = ?")
            args.append(flt.user)
        select = SELECT if flt.with_spec else SELECT_NO_SPEC
        sql = select + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id, idx"
        if flt.limit:
            sql += f" LIMIT {int(flt.limit)}"
        with self._errors():
            con = self.con
            for row in con.execute(sql, args).fetchall():
                job = _row_to_job(row, with_spec=flt.with_spec)
                yield job
                if flt.elements and job.is_array:  # elements follow their array; the limit counts jobs only
                    active = "" if flt.include_finished else " AND state IN ('HELD', 'QUEUED', 'RUNNING')"
                    for erow in con.execute(select + " WHERE id = ? AND idx >= 0" + active + " ORDER BY idx",
                                            (job.id,)).fetchall():
                        yield _row_to_job(erow, with_spec=flt.with_spec)

    def counts(self) -> list[QueueCount]:
        with self._errors():
            rows = self.con.execute("SELECT queue, definition, state, tasks FROM counts WHERE tasks != 0 "
                                    "ORDER BY queue, definition, state").fetchall()
        return [QueueCount(q, d, JobState(s), n) for q, d, s, n in rows]

    def backlog(self) -> dict[tuple[str, str], int]:
        with self._errors():
            rows = self.con.execute("SELECT queue, definition, tasks FROM counts "
                                    "WHERE state = 'QUEUED' AND tasks > 0").fetchall()
        return {(q, d): n for q, d, n in rows}

    def running_tasks(self) -> dict[tuple[str, str], int]:
        with self._errors():
            rows = self.con.execute("SELECT queue, definition, tasks FROM counts "
                                    "WHERE state = 'RUNNING' AND tasks > 0").fetchall()
        return {(q, d): n for q, d, n in rows}
    # workers ----------------------------------------------------------------------------------------
    def register_worker(self, info: WorkerInfo) -> None:
        with self._tx() as con:
            con.execute("INSERT OR REPLACE INTO workers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (info.id, info.queue, info.definition, info.host, info.pid, info.started,
                         info.heartbeat, info.state, info.jobs_run))

    def touch_worker(self, worker: str, now: float, state: str, jobs_run: int) -> None:
        with self._tx() as con:
            con.execute("UPDATE workers SET heartbeat = ?, state = ?, jobs_run = ? WHERE id = ?",
                        (now, state, jobs_run, worker))

    def list_workers(self, live_since: float | None = None) -> list[WorkerInfo]:
        sql = "SELECT * FROM workers"
        args: tuple[float, ...] = ()
        if live_since is not None:
            sql, args = sql + " WHERE state != 'EXITED' AND heartbeat >= ?", (live_since,)
        with self._errors():
            return [WorkerInfo(*row) for row in self.con.execute(sql + " ORDER BY started, id", args).fetchall()]

    def prune_workers(self, before: float) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM workers WHERE state = 'EXITED' AND heartbeat < ?", (before,))
