"""The embedded store's schema is versioned: an older database upgrades in place when it is opened."""

from __future__ import annotations

import sqlite3

from hyper.store import sqlite as sq


def test_version_1_database_upgrades_and_keeps_its_jobs(tmp_path):
    path = tmp_path / "hyper.db"
    con = sqlite3.connect(path)
    for statement in sq._statements(sq.SCHEMA):  # exactly what version 1 created
        con.execute(statement)
    con.execute("INSERT INTO meta VALUES ('next_id', '8')")
    con.execute("PRAGMA user_version = 1")
    con.commit()
    con.close()

    store = sq.SQLiteStore(path)
    store.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == sq.SCHEMA_VERSION == 4
    indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"jobs_active_id", "jobs_active_user", "jobs_requeued"} <= indexes
    assert "notices" in {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert con.execute("SELECT value FROM meta WHERE key = 'next_id'").fetchone()[0] == "8"
    plan = con.execute("EXPLAIN QUERY PLAN SELECT id FROM jobs WHERE idx = -1 AND state IN ('HELD', 'QUEUED', "
                       "'RUNNING') ORDER BY id, idx").fetchall()
    assert "USING INDEX jobs_active_id" in plan[0][3]


def test_a_newer_database_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "hyper.db"
    sq.SQLiteStore(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    try:
        sq.SQLiteStore(path)
    except sq.HyperError as exc:
        assert exc.message == f"the job database {path} has schema 99, newer than this hyper ({sq.SCHEMA_VERSION})"
        assert exc.hint == "upgrade hyper"
    else:
        raise AssertionError("a newer schema was opened")
