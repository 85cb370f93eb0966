"""Workflows on the local host: split input, finaliser, completion notices, staging (issue 17).

Real processes (qsub, the agent, its workers), real files, and a real HTTP receiver on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sqlite3
import threading
import time
import tracemalloc
from pathlib import Path

import pytest

from hyper.config import Host
from hyper.workflows import split
from hyper.workflows.area import LocalArea
from tests.conftest import cli, wait_until
from tests.http_listener import Receiver, closed_port_url

PART = "#!/bin/sh\nawk '{s+=$1} END {print s}' \"$HYPER_PART_FILE\"\necho \"$HYPER_PART_INDEX/$HYPER_PARTS\" >&2\n"
FINAL = ("#!/bin/sh\nfor f in $(cat \"$HYPER_PART_OUTPUTS\"); do cat \"$f\"; done"
         " | awk '{s+=$1} END {print \"total\", s}'\n")
# joins the parts' outputs in the order the finaliser was given them, then their total
JOIN = ("#!/bin/sh\ncat $(cat \"$HYPER_PART_OUTPUTS\") > joined.txt\ncat joined.txt\n"
        "awk '{s+=$1} END {print \"total\", s}' joined.txt\n")


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()


def _store():
    from hyper.services.context import open_context

    return open_context().store


def _full(job_id: str) -> str:
    return cli("qstat", "-f", job_id, check=True).stdout


def _notice_line(job_id: str) -> str:
    return next((line.strip() for line in _full(job_id).splitlines() if line.strip().startswith("notify = ")), "")


def race_claims(store, job_id: int, senders: int) -> list[int]:
    """``senders`` threads claim one notice at the same moment; returns who won."""
    barrier, wins = threading.Barrier(senders), []

    def claim(n: int) -> None:
        barrier.wait()
        if store.claim_notice(job_id, f"w{n}", time.time() + 60, time.time()):
            wins.append(n)

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(senders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return wins


def _scripts(tmp_path: Path) -> None:
    (tmp_path / "part.sh").write_text(PART)
    (tmp_path / "final.sh").write_text(FINAL)


# the whole flow ----------------------------------------------------------------------------------------------
def test_split_runs_every_part_finalises_in_order_and_notifies_once_signed(home, tmp_path, receiver, monkeypatch):
    monkeypatch.setenv("HYPER_NOTIFY_SECRET", "s3cret")
    _scripts(tmp_path)
    (tmp_path / "join.sh").write_text(JOIN)
    (tmp_path / "in.txt").write_text("".join(f"{i}\n" for i in range(1, 1001)))
    done = cli("qsub", "--split", "in.txt", "--lines-per-part", "100", "--finalize", "join.sh",
               "--notify", receiver.url, "part.sh", check=True)
    assert done.stdout == "1[]\n"  # one submission: the array's id
    assert "qsub: note: finaliser 2 runs after 1[] (afterany)" in done.stderr
    table = cli("qstat", check=True).stdout
    assert "1[]" in table and "part.sh.final" in table  # the finaliser shows with its array
    wait_until(lambda: receiver.posts, timeout=60)
    logs = home / "local" / "logs"
    sums = [sum(range(100 * (i - 1) + 1, 100 * i + 1)) for i in range(1, 11)]
    assert (logs / "2.out").read_text() == "".join(f"{n}\n" for n in sums) + "total 500500\n"  # in part order
    # every element got its own part, in order: part i holds lines 100(i-1)+1 .. 100i
    for i in range(1, 11):
        assert (logs / f"1.{i}.out").read_text() == f"{sums[i - 1]}\n"
        assert (logs / f"1.{i}.err").read_text() == f"{i}/10\n"
    time.sleep(1.5)  # a second notice would come from the agent's sweep within a second
    assert len(receiver.posts) == 1
    post = receiver.posts[0]
    expected = "sha256=" + hmac.new(b"s3cret", post["body"], hashlib.sha256).hexdigest()
    assert post["headers"]["X-Hyper-Signature"] == expected
    doc = json.loads(post["body"])
    assert (doc["job_id"], doc["state"], doc["exit_code"], doc["finalizes"], doc["parts"]) == ("2", "SUCCEEDED", 0,
                                                                                               "1[]", 10)
    assert doc["ended"] and doc["started"] and doc["submitted"]
    assert doc["array"] == {"total": 10, "succeeded": 10, "failed": 0, "deleted": 0}
    assert _notice_line("2").startswith(f"notify = SENT {receiver.url} (HTTP 204, 1 attempt")
    assert "split = 10 parts of 100 lines from" in _full("1[]")


def test_a_notice_on_an_array_is_sent_once_however_many_workers_end_its_elements(home, tmp_path, receiver):
    out = cli("qsub", "-J", "1-24", "--notify", receiver.url, "--", "sh", "-c", "exit $((HYPER_ARRAY_INDEX % 5 == 0))",
              check=True).stdout.strip()
    assert out == "1[]"
    wait_until(lambda: receiver.posts, timeout=60)
    time.sleep(1.5)
    assert len(receiver.posts) == 1
    doc = receiver.documents()[0]
    assert doc["state"] == "FAILED" and doc["array"] == {"total": 24, "succeeded": 20, "failed": 4, "deleted": 0}
    workers = {w.id for w in _store().list_workers()}
    assert len(workers) >= 2  # the elements really ended on several workers


def test_claiming_a_notice_has_one_winner_among_racing_senders(home):
    """Eight threads claim the same notice at once (SQLite store): exactly one may send it."""
    from hyper.models import Job, JobSpec
    from hyper.store.base import Submission

    store = _store()
    job = store.submit([Submission(Job(name="n", user="u", queue="default", definition="default",
                                       spec=JobSpec(command=["true"], notify="http://127.0.0.1:9/x")))], time.time())[0]
    wins = race_claims(store, job.id, 8)
    assert len(wins) == 1
    assert store.get_notice(job.id)["state"] == "SENDING"
    assert not store.record_notice(job.id, "somebody-else", "SENT", status=200)  # a late sender changes nothing
    assert store.record_notice(job.id, f"w{wins[0]}", "SENT", status=200)


def test_a_notice_that_fails_is_retried_with_backoff_and_recorded(home, monkeypatch):
    monkeypatch.setenv("HYPER_NOTIFY_BACKOFF", "0.2")
    monkeypatch.setenv("HYPER_NOTIFY_ATTEMPTS", "3")
    r = Receiver([500, 503, 204])
    try:
        cli("qsub", "--notify", r.url, "--", "true", check=True)
        wait_until(lambda: _notice_line("1").startswith("notify = SENT"), timeout=60)
        assert [p["status"] for p in r.posts] == [500, 503, 204]
        assert "3 attempts" in _notice_line("1")
        ids = {p["headers"]["X-Hyper-Delivery"] for p in r.posts}
        assert len(ids) == 1  # the same delivery id each time: a receiver can drop repeats
    finally:
        r.stop()


def test_an_unreachable_notify_url_is_accepted_with_a_note_and_its_failure_recorded(home, monkeypatch):
    monkeypatch.setenv("HYPER_NOTIFY_BACKOFF", "0.1")
    monkeypatch.setenv("HYPER_NOTIFY_ATTEMPTS", "2")
    url = closed_port_url()
    done = cli("qsub", "--notify", url, "--", "true", check=True)
    assert done.stdout == "1\n"
    port = url.split(":")[2].split("/")[0]
    assert done.stderr == (f"qsub: note: 127.0.0.1:{port} is not reachable from here (Connection refused); the "
                           "notice is sent when the job ends, retried, and its outcome shown by qstat -f\n")
    wait_until(lambda: _notice_line("1").startswith("notify = FAILED"), timeout=60)
    assert _notice_line("1").startswith(f"notify = FAILED {url} (gave up after 2 attempts: ConnectionError")


def test_a_job_deleted_before_it_ran_is_notified_by_the_sweep(home, receiver):
    cli("qsub", "-h", "--notify", receiver.url, "--", "true", check=True)  # held: no worker will ever end it
    cli("qdel", "1", check=True)  # wakes the agent: its sweep finds the notice nobody sent
    wait_until(lambda: receiver.posts, timeout=60)
    assert receiver.documents()[0]["state"] == "DELETED"
    assert _notice_line("1").startswith("notify = SENT")


def test_an_element_whose_part_is_gone_fails_with_the_reason_and_parts_expire(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPER_PART_RETENTION", "0")
    (tmp_path / "in.txt").write_text("1\n2\n")
    _scripts(tmp_path)
    cli("qsub", "-h", "--split", "in.txt", "--parts", "2", "part.sh", check=True)
    parts = home / "local" / "workflows" / "parts"
    (part,) = parts.iterdir()
    (part / "part-000002").unlink()
    cli("qrls", "1[]", check=True)
    wait_until(lambda: "inputs: part 2 of job 1" in _full("1[2]"), timeout=60)
    assert (home / "local" / "logs" / "1.1.out").read_text() == "1\n"
    wait_until(lambda: not part.exists(), timeout=30)  # ended, retention 0: the agent's sweep removes them


def test_afterok_finaliser_does_not_run_when_a_part_fails_and_the_notice_says_so(home, tmp_path, receiver):
    (tmp_path / "in.txt").write_text("1\n2\nboom\n")
    (tmp_path / "final.sh").write_text(FINAL)
    (tmp_path / "part.sh").write_text('#!/bin/sh\ngrep -q boom "$HYPER_PART_FILE" && exit 3\ncat "$HYPER_PART_FILE"\n')
    cli("qsub", "--split", "in.txt", "--parts", "3", "--finalize", "final.sh", "--finalize-after", "afterok",
        "--notify", receiver.url, "part.sh", check=True)
    wait_until(lambda: receiver.posts, timeout=60)  # the receiver is not left waiting for a finaliser that never runs
    doc = receiver.documents()[0]
    assert (doc["event"], doc["job_id"], doc["state"]) == ("job.blocked", "2", "HELD")
    assert doc["reason"] == "dependency can never be satisfied: afterok:1 ended FAILED"
    assert doc["array"] == {"total": 3, "succeeded": 2, "failed": 1, "deleted": 0}
    assert not (home / "local" / "logs" / "2.out").exists()
    time.sleep(1.2)
    assert len(receiver.posts) == 1


def test_local_staging_copies_in_before_and_out_after(home, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "in.csv").write_text("a,b\n")
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#PBS -W stagein=in.csv@here:data/in.csv\n#HYPER --stageout out.txt@here:res/out.txt\n"
                      "tr a-z A-Z < in.csv > out.txt\n")
    cli("qsub", "--wait", str(script), check=True)
    assert (tmp_path / "res" / "out.txt").read_text() == "A,B\n"
    got = cli("qget", "1", check=True).stdout
    assert got == f"{tmp_path / 'res' / 'out.txt'}\n"


# bad input: one line each, nothing stored ----------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--split", "nope.txt", "--parts", "2"], "qsub: split file nope.txt does not exist"),
    (["--split", "empty.txt", "--parts", "2"], "qsub: split file empty.txt is empty (0 lines)"),
    (["--split", "sub", "--parts", "2"], "qsub: split file sub is a directory"),
    (["--split", "in.txt", "--lines-per-part", "0"], "qsub: --lines-per-part 0: a part needs at least 1 line"),
    (["--split", "in.txt", "--parts", "0"], "qsub: --parts 0: there must be at least 1 part"),
    (["--split", "in.txt"], "qsub: --split needs --lines-per-part N or --parts K"),
    (["-W", "stagein=x@h:missing.csv"], "qsub: stagein file {tmp}/missing.csv does not exist"),
    (["--notify", "ftp://example.org/x"], "qsub: --notify 'ftp://example.org/x' is not an http(s) URL"),
    (["--finalize", "final.sh"], "qsub: --finalize needs an array to finalise"),
])
def test_bad_workflow_input_is_one_line_and_stores_nothing(home, tmp_path, args, message):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "in.txt").write_text("1\n2\n")
    (tmp_path / "sub").mkdir()
    _scripts(tmp_path)
    done = cli("qsub", *args, "part.sh")
    assert done.returncode != 0
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(message.format(tmp=tmp_path) + " ("), lines  # "(hint)" follows
    assert cli("qstat", "-x", check=True).stdout == ""
    parts = home / "local" / "workflows" / "parts"
    assert not parts.exists() or not any(parts.iterdir())


def test_unreadable_split_file_is_named(home, tmp_path):
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    (tmp_path / "secret.txt").write_text("1\n")
    (tmp_path / "secret.txt").chmod(0)
    done = cli("qsub", "--split", "secret.txt", "--parts", "1", "--", "true")
    assert done.stderr.splitlines() == ["qsub: split file secret.txt is not readable (chmod u+r secret.txt)"]


# the split itself -----------------------------------------------------------------------------------------------
def test_parts_are_written_streaming_and_join_back_to_the_input(tmp_path):
    """A 24 MB input split with at most a few hundred KB of Python memory: never the whole file."""
    src = tmp_path / "big.txt"
    with open(src, "w") as fh:
        for i in range(600_000):
            fh.write(f"line {i:09d} {'x' * 24}\n")
    area = LocalArea(Host(name="local"))
    area.root = tmp_path / "area"
    tracemalloc.start()
    source, per_part, count = split.plan(str(src), None, 7)
    made = split.write_parts(source, per_part, area, "parts/t")
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert (per_part, count, made) == (85_715, 7, 7)
    assert peak < 4 << 20, peak  # the file is 24 MB
    joined = b"".join((area.root / "parts" / "t" / split.part_name(i)).read_bytes() for i in range(1, 8))
    assert joined == src.read_bytes()
    assert not any((area.root / ".tmp").rglob("part-*"))


def test_a_last_line_without_newline_is_counted():
    import tempfile

    with tempfile.NamedTemporaryFile("w", delete=False) as fh:
        fh.write("a\nb\nc")
    assert split.count_lines(Path(fh.name)) == 3


def test_a_hook_given_a_job_read_without_its_spec_says_so_in_one_line(tmp_path):
    """The hooks only see jobs read whole; a row without its spec is a HyperError naming the job, not a crash."""
    from hyper.errors import HyperError
    from hyper.models import Job
    from hyper.workflows import hooks

    with pytest.raises(HyperError, match=r"job 7\[2\] was read without its spec"):
        hooks.after_job(Host(name="local"), Job(id=7, index=2, array="1-3"), tmp_path, tmp_path)


# the store's schema --------------------------------------------------------------------------------------------
def test_a_version_2_database_gains_the_notices_table_and_keeps_its_jobs(tmp_path):
    from hyper.store import sqlite as sq

    path = tmp_path / "hyper.db"
    con = sqlite3.connect(path)
    for statement in sq._statements(sq.SCHEMA):
        con.execute(statement)
    for statement in sq.UPGRADES[2]:
        con.execute(statement)
    con.execute("INSERT INTO meta VALUES ('next_id', '5')")
    con.execute("INSERT INTO jobs (id, name, user, queue, definition, state) VALUES (4, 'old', 'u', 'q', 'd', "
                "'SUCCEEDED')")
    con.execute("PRAGMA user_version = 2")
    con.commit()
    con.close()
    store = sq.SQLiteStore(path)
    assert store.get_notice(4) is None and store.open_notices() == []
    from hyper.parsing.jobids import JobRef

    assert store.get_jobs([JobRef(4)])[0][0].name == "old"
    store.close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == sq.SCHEMA_VERSION
    assert con.execute("SELECT name FROM sqlite_master WHERE name = 'notices'").fetchone()


def test_a_sender_that_died_mid_send_is_replaced_after_its_lease(home, receiver):
    """A worker killed between taking the notice and recording it: the sweep sends it once its lease is over."""
    cli("qsub", "-h", "--notify", receiver.url, "--", "true", check=True)
    store = _store()
    assert store.claim_notice(1, "dead-worker", time.time() + 2, time.time())  # taken, never recorded
    cli("qdel", "1", check=True)
    time.sleep(1)
    assert receiver.posts == []  # its lease still holds: nobody else may send
    wait_until(lambda: receiver.posts, timeout=30)
    time.sleep(1.2)
    assert len(receiver.posts) == 1
    assert _notice_line("1").startswith(f"notify = SENT {receiver.url} (HTTP 204, 1 attempt")


def test_inputs_that_take_long_keep_the_lease_and_a_deleted_job_does_not_start():
    from hyper.states import JobState
    from hyper.workflows.hooks import with_lease

    renewals = []

    def check(state=JobState.RUNNING):
        renewals.append(time.monotonic())
        return state

    assert with_lease(lambda: (time.sleep(0.5), {"A": "1"})[1], check, 0.05) == {"A": "1"}
    assert len(renewals) >= 3  # renewed while the "download" ran
    assert with_lease(lambda: (time.sleep(0.2), {"A": "1"})[1], lambda: JobState.DELETED, 0.05) is None
    with pytest.raises(ValueError):
        with_lease(lambda: int("x"), check, 0.05)


def test_a_finaliser_of_a_stepped_array_gets_every_element_output_in_index_order(home, tmp_path):
    (tmp_path / "f.sh").write_text('#!/bin/sh\ncat $(cat "$HYPER_PART_OUTPUTS")\necho "of $HYPER_PARTS"\n')
    cli("qsub", "--wait", "-J", "0-8:2", "--finalize", "f.sh", "--", "sh", "-c", "echo part $HYPER_ARRAY_INDEX",
        check=True)
    assert (home / "local" / "logs" / "2.out").read_text() == "part 0\npart 2\npart 4\npart 6\npart 8\nof 5\n"
