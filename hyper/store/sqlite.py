"""The embedded store: one SQLite file in WAL mode, shared by qsub, qstat, the agent and its workers.

Why SQLite: it is a real transactional database in the standard library, good for ~36k commits/s here,
and every process on the host can open it. Writes run in ``BEGIN IMMEDIATE`` transactions, so a claim
(select the next ready job, mark it RUNNING) is atomic across processes: a job is never claimed twice.

Layout (schema version 1):
- ``jobs``: one row per single job, per array (``idx = -1``) and per *started* array element
  (``idx >= 0``). An array of a million elements is one row until elements start; ``a_cursor`` is the
  position of the next element to start and ``a_skip`` counts elements deleted before they started.
- ``deps``: (job, kind, target) edges; a target's end re-evaluates only its own dependents.
- ``counts``: tasks per (queue, definition, state), kept by triggers, so ``qstat -Q`` and the scheduler's
  backlog read a handful of rows however many jobs the table holds.
- ``resources``: admin records (clusters, queues, definitions) as JSON bodies.
- ``workers``: live worker registry, so a restarted agent counts the workers it did not start.
- ``notices`` (version 3): one completion notice per ``--notify`` job, written in the submit transaction
  (hyper/store/notices.py).
- ``jobs_requeued`` (version 4): a partial index of requeued array elements, so settling an array is O(requeued).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator

from hyper.config import PRIVATE_FILE, tighten, private_dir, private_file
from hyper.dependencies import NEVER, PENDING, dependency_status, initial_state
from hyper.errors import DiskFullError, HyperError
from hyper.models import RESOURCE_KINDS, Job, JobSpec, Resource
from hyper.parsing.arrays import ArraySpec, parse_array
from hyper.parsing.jobids import JobRef
from hyper.retry import LOST, next_state
from hyper.states import JobState
from hyper.store.notices import SQLITE_TABLE, SQLiteNotices
from hyper.store.base import (
    DeleteResult,
    JobFilter,
    LostHandler,
    QueueCount,
    StoreDefaults,
    Submission,
    WorkerInfo,
    already_finished,
    cannot_hold,
    not_an_array,
    not_user_held,
    not_whole_job,
    unknown_job,
)

SCHEMA_VERSION = 4
# what each version adds to the one before (a fresh database runs SCHEMA, then every step)
UPGRADES: dict[int, list[str]] = {
    2: [  # plain `qstat` and `qstat -u USER` read active jobs without scanning the whole history
        "CREATE INDEX IF NOT EXISTS jobs_active_id ON jobs (id) WHERE idx = -1 AND state IN ('HELD', 'QUEUED', "
        "'RUNNING')",
        "CREATE INDEX IF NOT EXISTS jobs_active_user ON jobs (user, id) WHERE idx = -1 AND state IN ('HELD', "
        "'QUEUED', 'RUNNING')",
    ],
    3: SQLITE_TABLE,  # completion notices (`qsub --notify URL`): hyper/store/notices.py
    4: [  # an array's requeued elements, so settling an array visits those few, not every started element
        "CREATE INDEX IF NOT EXISTS jobs_requeued ON jobs (id, idx, ready) WHERE idx >= 0 AND state = 'QUEUED'",
    ],
}


def busy_timeout() -> float:
    """How long a writer waits for the lock before giving up (HYPER_DB_TIMEOUT, default 15 s)."""
    try:
        return float(os.environ.get("HYPER_DB_TIMEOUT", "15"))
    except ValueError:
        return 15.0

_WEIGHT = "(CASE WHEN {r}.idx >= 0 OR {r}.a_total IS NULL THEN 1 ELSE {r}.a_total - {r}.a_cursor - {r}.a_skip END)"

SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE resources (
    kind TEXT NOT NULL, name TEXT NOT NULL, body TEXT NOT NULL, updated REAL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE jobs (
    id INTEGER NOT NULL, idx INTEGER NOT NULL DEFAULT -1,
    name TEXT NOT NULL, user TEXT NOT NULL, queue TEXT NOT NULL, definition TEXT NOT NULL,
    state TEXT NOT NULL, reason TEXT NOT NULL DEFAULT '', ready INTEGER NOT NULL DEFAULT 0,
    user_hold INTEGER NOT NULL DEFAULT 0, priority INTEGER NOT NULL DEFAULT 0,
    submitted REAL, started REAL, ended REAL, exit_code INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0, retries INTEGER NOT NULL DEFAULT 0,
    worker TEXT, lease REAL, pid INTEGER,
    spec TEXT, depends TEXT,
    array TEXT, a_total INTEGER, a_cursor INTEGER NOT NULL DEFAULT 0, a_skip INTEGER NOT NULL DEFAULT 0,
    a_running INTEGER NOT NULL DEFAULT 0, a_done INTEGER NOT NULL DEFAULT 0,
    a_failed INTEGER NOT NULL DEFAULT 0, a_deleted INTEGER NOT NULL DEFAULT 0, a_limit INTEGER,
    PRIMARY KEY (id, idx)
) WITHOUT ROWID;
CREATE INDEX jobs_ready ON jobs (queue, definition, priority DESC, id, idx) WHERE ready = 1;
CREATE INDEX jobs_active ON jobs (queue, id) WHERE idx = -1 AND state IN ('HELD', 'QUEUED', 'RUNNING');
CREATE INDEX jobs_running ON jobs (lease) WHERE state = 'RUNNING';
CREATE INDEX jobs_worker ON jobs (worker) WHERE state = 'RUNNING';
CREATE TABLE deps (
    job INTEGER NOT NULL, kind TEXT NOT NULL, on_job INTEGER NOT NULL, on_idx INTEGER NOT NULL,
    PRIMARY KEY (job, kind, on_job, on_idx)
) WITHOUT ROWID;
CREATE INDEX deps_target ON deps (on_job, on_idx);
CREATE TABLE counts (
    queue TEXT NOT NULL, definition TEXT NOT NULL, state TEXT NOT NULL, tasks INTEGER NOT NULL,
    PRIMARY KEY (queue, definition, state)
) WITHOUT ROWID;
CREATE TABLE workers (
    id TEXT PRIMARY KEY, queue TEXT NOT NULL, definition TEXT NOT NULL, host TEXT, pid INTEGER,
    started REAL, heartbeat REAL, state TEXT NOT NULL, jobs_run INTEGER NOT NULL DEFAULT 0
);
CREATE TRIGGER jobs_count_insert AFTER INSERT ON jobs BEGIN
    INSERT INTO counts VALUES (NEW.queue, NEW.definition, NEW.state, {_WEIGHT.format(r="NEW")})
    ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks;
END;
CREATE TRIGGER jobs_count_update AFTER UPDATE OF state, a_cursor, a_skip ON jobs
WHEN OLD.state IS NOT NEW.state OR OLD.a_cursor IS NOT NEW.a_cursor OR OLD.a_skip IS NOT NEW.a_skip BEGIN
    UPDATE counts SET tasks = tasks - {_WEIGHT.format(r="OLD")}
    WHERE queue = OLD.queue AND definition = OLD.definition AND state = OLD.state;
    INSERT INTO counts VALUES (NEW.queue, NEW.definition, NEW.state, {_WEIGHT.format(r="NEW")})
    ON CONFLICT DO UPDATE SET tasks = tasks + excluded.tasks;
END;
CREATE TRIGGER jobs_count_delete AFTER DELETE ON jobs BEGIN
    UPDATE counts SET tasks = tasks - {_WEIGHT.format(r="OLD")}
    WHERE queue = OLD.queue AND definition = OLD.definition AND state = OLD.state;
END;
"""

COLS = (
    "id idx name user queue definition state reason ready user_hold priority submitted started ended "
    "exit_code attempts retries worker lease pid spec depends array a_total a_cursor a_skip a_running "
    "a_done a_failed a_deleted a_limit"
).split()
SELECT = "SELECT " + ", ".join(COLS) + " FROM jobs"


def _row_to_job(row: tuple, parent_spec: str | None = None, with_spec: bool = True) -> Job:
    r = dict(zip(COLS, row))
    spec_text = (r["spec"] or parent_spec) if with_spec else None
    return Job(
        id=r["id"],
        index=None if r["idx"] < 0 else r["idx"],
        name=r["name"],
        user=r["user"],
        queue=r["queue"],
        definition=r["definition"],
        state=JobState(r["state"]),
        reason=r["reason"],
        priority=r["priority"],
        submitted=r["submitted"],
        started=r["started"],
        ended=r["ended"],
        exit_code=r["exit_code"],
        attempts=r["attempts"],
        retries=r["retries"],
        worker=r["worker"],
        lease=r["lease"],
        pid=r["pid"],
        spec=JobSpec.from_dict(json.loads(spec_text)) if spec_text else None,
        array=r["array"],
        array_total=r["a_total"] or 0,
        array_started=r["a_cursor"] - r["a_skip"] if r["a_total"] else 0,
        array_done=r["a_done"],
        array_failed=r["a_failed"],
        array_running=r["a_running"],
        array_deleted=r["a_deleted"],
        depends=json.loads(r["depends"]) if r["depends"] else [],
    )


def _statements(script: str) -> list[str]:
    """Split a script into statements (triggers hold `;` inside), so they run in one transaction."""
    out, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            out.append(buffer.strip())
            buffer = ""
    return out


def _array_ready(row: dict) -> int:
    remaining = row["a_total"] - row["a_cursor"] - row["a_skip"]
    limit = row["a_limit"]
    return int(row["state"] == "QUEUED" and remaining > 0 and (limit is None or row["a_running"] < limit))


def _private_database(path: Path) -> None:
    """Any of the database and its -wal and -shm files left wider by an older version tightened (a new
    database is built 0600 in :meth:`SQLiteStore._create_if_missing`, and its -wal/-shm take its mode)."""
    if path.is_dir():
        return  # SQLite says what is wrong with it
    for suffix in ("", "-wal", "-shm"):
        try:
            tighten(Path(f"{path}{suffix}"), PRIVATE_FILE)
        except FileNotFoundError:
            pass


class SQLiteStore(SQLiteNotices, StoreDefaults):
    """Store protocol on one SQLite file; safe to use from many processes and threads."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._local = threading.local()
        self._specs: dict[int, ArraySpec] = {}
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
    def _errors(self):
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
    def _tx(self):
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

    def _create_or_upgrade(self, con) -> None:
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
        return RESOURCE_KINDS[kind].from_dict(json.loads(row[0])) if row else None

    def list_resources(self, kind: str) -> list[Resource]:
        with self._errors():
            rows = self.con.execute("SELECT body FROM resources WHERE kind = ? ORDER BY name", (kind,))
            return [RESOURCE_KINDS[kind].from_dict(json.loads(r[0])) for r in rows]

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
            rows, dep_rows = [], []
            for sub in submissions:
                job = sub.job
                job.id = next_id
                next_id += 1
                job.submitted = now
                pending, never = self._check_dependencies(con, job, sub.depends)
                dep_rows.extend((job.id, kind, tid, -1 if tidx is None else tidx) for kind, tid, tidx in sub.depends)
                job.state, job.reason = initial_state(sub.hold, pending, never)
                spec = parse_array(job.array) if job.array else None
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

    def _check_dependencies(self, con, job: Job, depends) -> tuple[str, str]:
        """Targets must exist now; returns (first pending, first never-satisfiable) as text for reasons."""
        pending = never = ""
        for kind, tid, tidx in depends:
            row = con.execute("SELECT state FROM jobs WHERE id = ? AND idx = ?",
                              (tid, -1 if tidx is None else tidx)).fetchone()
            if row is None and tidx is not None:
                # an element that has not started yet: pending if its array is still alive
                parent = con.execute("SELECT state, array FROM jobs WHERE id = ? AND idx = -1", (tid,)).fetchone()
                if parent and parent[1] and tidx in self._array(tid, parent[1]):
                    row = ("QUEUED",) if not JobState(parent[0]).finished else (parent[0],)
            target = f"{tid}" if tidx is None else f"{tid}[{tidx}]"
            if row is None:
                raise HyperError(f"dependency {kind}:{target} names no job",
                                 "check the id with `qstat -x`; depend only on jobs that exist")
            status = dependency_status(kind, JobState(row[0]))
            if status == NEVER and not never:
                never = f"{kind}:{target} ended {row[0]}"
            elif status == PENDING and not pending:
                pending = f"{kind}:{target}"
        return pending, never

    def _array(self, job_id: int, text: str) -> ArraySpec:
        spec = self._specs.get(job_id)
        if spec is None:
            spec = self._specs[job_id] = parse_array(text)
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
                    missing.append(_ref_text(ref))
                    continue
                parent = _row_to_job(parent_row)
                if ref.indices is None:
                    found.append(parent)
                    continue
                if parent.array is None:
                    missing.append(_ref_text(ref))
                    continue
                spec = self._array(parent.id, parent.array)
                for index in ref.indices:
                    if index not in spec:
                        missing.append(f"{ref.id}[{index}]")
                        continue
                    found.append(self._element(con, parent, parent_row, index))
        return found, missing

    def _element(self, con, parent: Job, parent_row: tuple, index: int) -> Job:
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
        sql = SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id, idx"
        if flt.limit:
            sql += f" LIMIT {int(flt.limit)}"
        with self._errors():
            con = self.con
            for row in con.execute(sql, args).fetchall():
                job = _row_to_job(row, with_spec=flt.with_spec)
                yield job
                if flt.elements and job.is_array:  # elements follow their array; the limit counts jobs only
                    active = "" if flt.include_finished else " AND state IN ('HELD', 'QUEUED', 'RUNNING')"
                    for erow in con.execute(SELECT + " WHERE id = ? AND idx >= 0" + active + " ORDER BY idx",
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

    # delete / hold ----------------------------------------------------------------------------------
    def delete(self, refs: Iterable[JobRef], now: float) -> list[DeleteResult]:
        """Mark jobs DELETED; running ones are stopped by their worker, which sees the state change."""
        results: list[DeleteResult] = []
        with self._tx() as con:
            for ref in refs:
                prow = self._parent_row(con, ref.id)
                if prow is None:
                    results.append(unknown_job(_ref_text(ref)))
                    continue
                if ref.indices is None:
                    results.append(self._delete_whole(con, prow, now))
                elif prow["array"] is None:
                    results.append(not_an_array(_ref_text(ref), ref.id))
                else:
                    results.extend(self._delete_elements(con, prow, ref.indices, now))
        return results

    def _parent_row(self, con, job_id: int) -> dict | None:
        row = con.execute(SELECT + " WHERE id = ? AND idx = -1", (job_id,)).fetchone()
        return dict(zip(COLS, row)) if row else None

    def _delete_whole(self, con, prow: dict, now: float) -> DeleteResult:
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

    def _delete_elements(self, con, prow: dict, indices: ArraySpec, now: float) -> list[DeleteResult]:
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
                jid = _ref_text(ref)
                if prow is None:
                    results.append(unknown_job(jid))
                    continue
                if ref.indices is not None:
                    results.append(not_whole_job(jid, ref.id))
                    continue
                state = JobState(prow["state"])
                if hold:
                    if state is not JobState.QUEUED and state is not JobState.HELD:
                        results.append(cannot_hold(jid, state.value))
                        continue
                    con.execute("UPDATE jobs SET user_hold = 1, state = 'HELD', ready = 0, "
                                "reason = 'held by user (release with qrls)' WHERE id = ? AND idx = -1", (ref.id,))
                    if prow["array"]:
                        self._settle_array(con, ref.id, now)  # its requeued elements wait too
                else:
                    if not prow["user_hold"]:
                        results.append(not_user_held(jid))
                        continue
                    con.execute("UPDATE jobs SET user_hold = 0 WHERE id = ? AND idx = -1", (ref.id,))
                    self._reevaluate(con, ref.id, now)
                results.append(DeleteResult(jid, True))
        return results

    # claim / run / finish ---------------------------------------------------------------------------
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

    def _claim_element(self, con, r: dict, worker: str, lease_until: float, now: float) -> Job | None:
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
        self._settle_array(con, r["id"], now)
        spec_obj = JobSpec.from_dict(json.loads(r["spec"])) if r["spec"] else None
        return Job(id=r["id"], index=index, name=r["name"], user=r["user"], queue=r["queue"],
                   definition=r["definition"], state=JobState.RUNNING, priority=r["priority"],
                   submitted=r["submitted"], started=now, attempts=1, retries=r["retries"], worker=worker,
                   lease=lease_until, spec=spec_obj)

    def _settle_array(self, con, job_id: int, now: float) -> None:
        """Recompute an array's state and readiness from its counters; end it when every element ended."""
        prow = self._parent_row(con, job_id)
        if prow is None or prow["array"] is None:
            return
        state = JobState(prow["state"])
        remaining = prow["a_total"] - prow["a_cursor"] - prow["a_skip"]
        if prow["a_done"] >= prow["a_total"]:
            if not state.finished:
                final = (JobState.FAILED if prow["a_failed"] else
                         JobState.DELETED if prow["a_deleted"] else JobState.SUCCEEDED)
                reason = f"{prow['a_failed']} of {prow['a_total']} elements failed" if prow["a_failed"] else ""
                con.execute("UPDATE jobs SET state = ?, ready = 0, ended = ?, reason = ?, a_running = 0 "
                            "WHERE id = ? AND idx = -1", (final.value, now, reason, job_id))
                self._resolve_dependents(con, job_id, -1, final, now)
            return
        if state is JobState.QUEUED and remaining == 0:
            state = JobState.RUNNING
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

    def heartbeat(self, job: Job, worker: str, lease_until: float) -> JobState | None:
        """Extend the lease; returns the job's state, or None if this worker no longer owns the job."""
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

    def _finish(self, con, job_id: int, idx: int, worker: str, outcome: str, exit_code, reason, now):
        row = con.execute("SELECT state, attempts, retries, spec, worker FROM jobs WHERE id = ? AND idx = ?",
                          (job_id, idx)).fetchone()
        if row is None or row[0] != "RUNNING" or row[4] != worker:
            return None  # deleted, or requeued after our lease expired: someone else owns it now
        spec_text = row[3] or con.execute("SELECT spec FROM jobs WHERE id = ? AND idx = -1", (job_id,)).fetchone()[0]
        retry_on_exit = bool(spec_text and json.loads(spec_text).get("retry_on_exit"))
        state, why = next_state(outcome, exit_code, row[1], row[2], retry_on_exit, reason)
        if state is JobState.QUEUED:
            con.execute("UPDATE jobs SET state = 'QUEUED', ready = 1, reason = ?, worker = NULL, lease = NULL, "
                        "pid = NULL, exit_code = ?, ended = ? WHERE id = ? AND idx = ?",
                        (why, exit_code, now, job_id, idx))
        else:
            con.execute("UPDATE jobs SET state = ?, ready = 0, reason = ?, exit_code = ?, ended = ?, lease = NULL "
                        "WHERE id = ? AND idx = ?", (state.value, why, exit_code, now, job_id, idx))
        if idx >= 0:
            done = int(state is not JobState.QUEUED)
            con.execute("UPDATE jobs SET a_running = a_running - 1, a_done = a_done + ?, a_failed = a_failed + ? "
                        "WHERE id = ? AND idx = -1", (done, int(state is JobState.FAILED), job_id))
            self._settle_array(con, job_id, now)
        if state.finished:
            self._resolve_dependents(con, job_id, idx, state, now)
        return state

    def requeue_expired(self, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """Return jobs whose lease ran out to the queue (or fail them when their retries are spent)."""
        with self._tx() as con:
            rows = con.execute(SELECT + " WHERE state = 'RUNNING' AND lease < ? ORDER BY id, idx", (now,)).fetchall()
            return self._lose(con, rows, "worker lost (lease expired)", now, on_lost)

    def requeue_worker(self, worker: str, now: float, on_lost: LostHandler | None = None) -> list[Job]:
        """A worker is known dead (its process exited): requeue its jobs at once, not at lease expiry."""
        with self._tx() as con:
            rows = con.execute(SELECT + " WHERE state = 'RUNNING' AND worker = ? ORDER BY id, idx", (worker,)).fetchall()
            out = self._lose(con, rows, f"worker {worker} died", now, on_lost)
            con.execute("UPDATE workers SET state = 'EXITED', heartbeat = ? WHERE id = ?", (now, worker))
            return out

    def _lose(self, con, rows, reason: str, now: float, on_lost: LostHandler | None) -> list[Job]:
        lost = []
        for row in rows:
            job_id, idx = row[COLS.index("id")], row[COLS.index("idx")]
            parent_spec = None
            if idx >= 0:  # an element: its spec is its array's
                parent_spec = con.execute("SELECT spec FROM jobs WHERE id = ? AND idx = -1", (job_id,)).fetchone()[0]
            job = _row_to_job(row, parent_spec)
            if on_lost is not None:
                on_lost(job)  # e.g. kill an orphaned process group before anyone may start the job again
            job.state = self._finish(con, job.id, _idx(job), job.worker, LOST, None, reason, now)
            lost.append(job)
        return lost

    # dependencies -----------------------------------------------------------------------------------
    def _resolve_dependents(self, con, job_id: int, idx: int | None, state: JobState, now: float) -> None:
        """Re-evaluate the jobs that depend on job_id (idx -1), one element (idx >= 0) or any of it (None)."""
        if idx is None:
            rows = con.execute("SELECT DISTINCT job FROM deps WHERE on_job = ? ORDER BY job", (job_id,))
        else:
            rows = con.execute("SELECT DISTINCT job FROM deps WHERE on_job = ? AND on_idx = ? ORDER BY job",
                               (job_id, idx))
        for (dependent,) in rows.fetchall():
            self._reevaluate(con, dependent, now)

    def _reevaluate(self, con, job_id: int, now: float) -> None:
        prow = self._parent_row(con, job_id)
        if prow is None or prow["state"] != "HELD":
            return
        pending = never = ""
        for kind, tid, tidx, tstate, parent_state in con.execute(
                "SELECT d.kind, d.on_job, d.on_idx, t.state, p.state FROM deps d "
                "LEFT JOIN jobs t ON t.id = d.on_job AND t.idx = d.on_idx "
                "LEFT JOIN jobs p ON p.id = d.on_job AND p.idx = -1 WHERE d.job = ?", (job_id,)).fetchall():
            target = str(tid) if tidx < 0 else f"{tid}[{tidx}]"
            effective = JobState(tstate) if tstate else (
                JobState.DELETED if parent_state and JobState(parent_state).finished else JobState.QUEUED)
            status = dependency_status(kind, effective)
            if status == NEVER and not never:
                never = f"{kind}:{target} ended {effective.value}"
            elif status == PENDING and not pending:
                pending = f"{kind}:{target}"
        if never:
            reason = f"dependency can never be satisfied: {never}"
        elif prow["user_hold"]:
            reason = "held by user (release with qrls)"
        elif pending:
            reason = f"waiting for {pending}"
        else:
            prow["state"] = "QUEUED"
            ready = _array_ready(prow) if prow["array"] else 1
            con.execute("UPDATE jobs SET state = 'QUEUED', ready = ?, reason = '' WHERE id = ? AND idx = -1",
                        (ready, job_id))
            if prow["array"]:
                self._settle_array(con, job_id, now)
            return
        con.execute("UPDATE jobs SET reason = ? WHERE id = ? AND idx = -1", (reason, job_id))

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
        sql, args = "SELECT * FROM workers", ()
        if live_since is not None:
            sql, args = sql + " WHERE state != 'EXITED' AND heartbeat >= ?", (live_since,)
        with self._errors():
            return [WorkerInfo(*row) for row in self.con.execute(sql + " ORDER BY started, id", args).fetchall()]

    def prune_workers(self, before: float) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM workers WHERE state = 'EXITED' AND heartbeat < ?", (before,))


def _set_wal(con: sqlite3.Connection) -> None:
    """Switch to WAL, waiting like any writer: the switch answers "locked" at once, without SQLite's
    busy wait, while another process creates the database (what a concurrent first-time qsub met)."""
    import time

    deadline = time.monotonic() + busy_timeout()
    delay = 0.001
    while True:
        try:
            con.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _idx(job: Job) -> int:
    return -1 if job.index is None else job.index


def _ref_text(ref: JobRef) -> str:
    if ref.indices is None:
        return f"{ref.id}[]" if ref.whole_array else str(ref.id)
    return f"{ref.id}[{ref.indices.text}]"
