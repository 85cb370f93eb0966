"""The embedded store's schema and row mapping (hyper/store/sqlite.py is the store itself).

Layout (schema version 1, then UPGRADES):
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
from pathlib import Path

from hyper.array_state import claimable
from hyper.config import PRIVATE_FILE, tighten
from hyper.models import Job, JobSpec
from hyper.states import JobState
from hyper.store.notices import SQLITE_TABLE

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


SELECT_NO_SPEC = SELECT.replace(" spec,", " NULL,", 1)  # listings that show no spec skip reading its JSON
_STATES = {s.value: s for s in JobState}


def _row_to_job(row: tuple, parent_spec: str | None = None, with_spec: bool = True) -> Job:
    """A Job from a row in COLS order. Unpacked by position, not through a dict: `qstat` maps every row it shows,
    so this is most of its per-row cost."""
    (id_, idx, name, user, queue, definition, state, reason, _ready, _user_hold, priority, submitted, started,
     ended, exit_code, attempts, retries, worker, lease, pid, spec, depends, array, a_total, a_cursor, a_skip,
     a_running, a_done, a_failed, a_deleted, _a_limit) = row
    spec_text = (spec or parent_spec) if with_spec else None
    return Job(
        id=id_, index=None if idx < 0 else idx, name=name, user=user, queue=queue, definition=definition,
        state=_STATES[state], reason=reason, priority=priority, submitted=submitted, started=started, ended=ended,
        exit_code=exit_code, attempts=attempts, retries=retries, worker=worker, lease=lease, pid=pid,
        spec=JobSpec.from_dict(json.loads(spec_text)) if spec_text else None,
        array=array, array_total=a_total or 0, array_started=a_cursor - a_skip if a_total else 0,
        array_done=a_done, array_failed=a_failed, array_running=a_running, array_deleted=a_deleted,
        depends=json.loads(depends) if depends else [],
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
    return int(claimable(JobState(row["state"]), remaining, row["a_running"], row["a_limit"]))


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
