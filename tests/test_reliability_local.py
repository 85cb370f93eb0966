"""Reliability of the local host under faults (issue 12) and job containment (issue 11): real processes and a
real SQLite file; each test reproduces a defect found by the chaos review (../shared/reviews/reliability-chaos.md)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import cli, wait_until


def status(job_id: str) -> dict:
    return json.loads(cli("qstat", "-x", "-f", "--output", "json", job_id, check=True).stdout)[0]


def wait_finished(job_id: str, timeout: float = 30) -> dict:
    return wait_until(lambda: (s := status(job_id))["state"] in ("SUCCEEDED", "FAILED", "DELETED") and s, timeout)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# D2: the worker dies between starting the job's process and recording its pid ------------------------------
DIES_AT_START = """
import os, sys
from pathlib import Path
from hyper.models import Definition, Job, JobSpec
from hyper.worker.runner import run_attempt
marker, work = sys.argv[1], Path(sys.argv[2])
job = Job(id=7, name="j", user="u", queue="default", definition="default", attempts=1,
          spec=JobSpec(command=["sh", "-c", f"echo ran >> {marker}; sleep 2; echo done >> {marker}"],
                       submit_dir=str(work)))
def die(pid):  # what a kill -9 between Popen and set_pid leaves: a started process, no pid in the store
    print(pid, flush=True)
    os._exit(9)
run_attempt(job, Definition(name="default"), work, work / "logs", check=lambda: None, check_every=1.0,
            kill_grace=1.0, stop_requested=lambda: False, on_start=die, extra_env={"HYPER_WORKER_ID": "wdies"})
"""


def test_job_never_runs_unless_its_identity_was_recorded(tmp_path):
    """Old code: the job ran to completion unsupervised while the requeued attempt ran too (3 of 3 overlaps)."""
    marker = tmp_path / "marker"
    proc = subprocess.run([sys.executable, "-c", DIES_AT_START, str(marker), str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 9, proc.stderr
    job_pid = int(proc.stdout.split()[0])
    wait_until(lambda: not alive(job_pid), timeout=5)
    time.sleep(0.3)
    assert not marker.exists()  # the attempt never ran a line of the job


# D1: capacity counts every live worker process, busy or idle ------------------------------------------------
def test_busy_worker_with_stale_heartbeat_still_counts(home):
    """Old code counted only workers with a heartbeat newer than max(10 s, lease): a worker busy with a long
    job dropped out and the agent started more workers than the host has cores."""
    from hyper.backends.local import LocalAgent
    from hyper.config import Host, Settings
    from hyper.store.base import WorkerInfo
    from hyper.store.sqlite import SQLiteStore

    store = SQLiteStore(home / "local" / "hyper.db")
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "--worker-id", "wbusy"])
    done = subprocess.Popen([sys.executable, "-c", "pass", "--worker-id", "wdone"])
    done.wait()
    try:
        long_ago = time.time() - 300
        store.register_worker(WorkerInfo("wbusy", "default", "default", "localhost", busy.pid, long_ago, long_ago,
                                          "BUSY"))
        store.register_worker(WorkerInfo("wdone", "default", "default", "localhost", done.pid, long_ago, long_ago,
                                          "BUSY"))
        # a fresh row whose pid is some other process (pid reuse): not a worker
        store.register_worker(WorkerInfo("wreused", "default", "default", "localhost", os.getpid(), time.time(),
                                         time.time(), "IDLE"))
        agent = LocalAgent(Host(), store, Settings(lease=4))
        assert [w.id for w in agent._live_workers(time.time())] == ["wbusy"]
        states = {w.id: w.state for w in store.list_workers()}
        assert states["wdone"] == "EXITED" and states["wreused"] == "EXITED"
    finally:
        busy.kill()
        busy.wait()


# issue 11: a job's processes never outlive it ---------------------------------------------------------------
@pytest.mark.parametrize("cgroups", ["default", "off"])
def test_setsid_daemon_does_not_outlive_its_job(home, tmp_path, monkeypatch, cgroups):
    """Old code: `setsid` put the daemon in its own session, out of reach of the job's group kill."""
    if cgroups == "off":
        monkeypatch.setenv("HYPER_CGROUP_ROOT", "off")  # the tracked-session fallback (subreaper worker)
    pidfile = tmp_path / "daemon.pid"
    job_id = cli("qsub", "--", "sh", "-c",
                 f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 313' & sleep 0.5; exit 0", check=True).stdout.strip()
    assert wait_finished(job_id)["state"] == "SUCCEEDED"
    daemon = int(pidfile.read_text())
    wait_until(lambda: not alive(daemon), timeout=5)


# D3: orphans after the agent and the worker die -------------------------------------------------------------
def test_new_agent_kills_orphans_of_dead_agent_and_worker(home, tmp_path, monkeypatch):
    """Old code: a worker busy for longer than max(10 s, lease) was invisible to a new agent, so its orphaned job
    ran to completion unsupervised and was then run again when the lease (60 s) expired."""
    import sqlite3

    monkeypatch.setenv("HYPER_LEASE", "60")
    marks = tmp_path / "marks"
    job_id = cli("qsub", "--retries", "1", "--", "sh", "-c",
                 f"echo start $HYPER_ATTEMPT >> {marks}; sleep 6; echo end $HYPER_ATTEMPT >> {marks}",
                 check=True).stdout.strip()
    rec = wait_until(lambda: (s := status(job_id))["state"] == "RUNNING" and s.get("pid") and s)
    db = sqlite3.connect(home / "local" / "hyper.db", isolation_level=None)
    (worker_pid,) = db.execute("SELECT pid FROM workers WHERE id = ?", (rec["worker"],)).fetchone()
    # the worker has been busy for 100 s (a busy worker does not refresh its row)
    db.execute("UPDATE workers SET heartbeat = heartbeat - 100 WHERE id = ?", (rec["worker"],))
    db.close()
    agent_pid = int((home / "local" / "agent.lock").read_text())
    os.kill(agent_pid, signal.SIGKILL)
    os.kill(worker_pid, signal.SIGKILL)
    wait_until(lambda: not alive(agent_pid) and not alive(worker_pid), timeout=5)
    from hyper.backends.local import ensure_agent
    from hyper.config import Host

    ensure_agent(Host())  # what the next qsub does
    wait_until(lambda: not alive(rec["pid"]), timeout=5)  # found and killed at once, not at lease expiry
    final = wait_finished(job_id, timeout=30)
    assert final["state"] == "SUCCEEDED" and final["attempts"] == 2
    assert marks.read_text().split("\n") == ["start 1", "start 2", "end 2", ""]


# D6: a zero-length hyper.db -------------------------------------------------------------------------------
def test_zero_length_database_is_refused_not_recreated(home):
    """Old code: an empty hyper.db was silently recreated and job ids restarted at 1."""
    assert cli("qsub", "-h", "--", "true", check=True).stdout.strip() == "1"
    cli("qdel", "1", check=True)
    db = home / "local" / "hyper.db"
    for extra in ("-wal", "-shm"):
        Path(f"{db}{extra}").unlink(missing_ok=True)
    db.write_bytes(b"")
    for command in (("qsub", "-h", "--", "true"), ("qstat",)):
        proc = cli(*command)
        assert proc.returncode != 0
        assert proc.stderr == (f"{command[0]}: the job database {db} is corrupt: it is empty (0 bytes) (restore it "
                               "from a backup; moving it aside starts afresh with ids from 1)\n")
        assert "Traceback" not in proc.stderr
    assert db.stat().st_size == 0  # nothing was written over it


def test_concurrent_first_opens_create_one_database(tmp_path):
    """The whole-or-nothing creation must not turn the first-time race into 'empty database' errors."""
    code = ("import sys; from hyper.store.sqlite import SQLiteStore; from hyper.errors import HyperError\n"
            "try:\n    SQLiteStore(sys.argv[1]).close()\nexcept HyperError as e:\n    sys.exit(str(e))\n")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "db" / "hyper.db")],
                              stderr=subprocess.PIPE, text=True) for _ in range(8)]
    errors = [p.communicate(timeout=60)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, errors
    assert sorted(os.listdir(tmp_path / "db")) == ["hyper.db", "hyper.db.init"]


# D5: input that crashed qsub or should be refused: one line, non-zero exit, nothing stored --------------------
REFUSED = [
    (["--retries", "99999999999999999999999", "job.sh"], "--retries 99999999999999999999999 is more than the maximum"),
    (["-N", "\udcff", "job.sh"], "the job name is not valid UTF-8 text"),
    (["-N", "a\nb", "job.sh"], "the job name 'a\\nb' contains the control character U+000A"),
    (["-N", "a/b", "job.sh"], "the job name 'a/b' contains '/'"),
    (["-N", "x" * 100_000, "job.sh"], "the job name has 100,000 characters; at most 236 are allowed"),
    (["nul-name.sh"], "the job name 'a\\x00b' contains the control character U+0000"),
    (["-J", "1-100000000", "job.sh"], "the array has 100,000,000 elements; host 'local' allows at most 1,000,000"),
    (["-W", "depend=afterok:1[]", "job.sh"], "dependency afterok:1[] names an array, but job 1 is not an array"),
    (["-J", "1-3", "--sweep", "params.jsonl", "job.sh"], "-J and --sweep both make many jobs from one submission"),
    (["binary.sh"], "job script binary.sh is a binary file, not a script"),
    (["-D", "/nonexistent/dir", "--", "true"], "-D /nonexistent/dir: no such directory"),
    (["empty.sh"], "job script empty.sh is empty: it has no commands to run"),
    (["comments-only.sh"], "job script comments-only.sh is empty: it has no commands to run"),
]


def test_bad_input_is_refused_in_one_line_and_stores_nothing(home, tmp_path):
    """Old code: tracebacks (OverflowError, UnicodeEncodeError) or silently stored jobs for each of these."""
    (tmp_path / "job.sh").write_text("echo hi\n")
    (tmp_path / "nul-name.sh").write_bytes(b"#PBS -N a\0b\necho hi\n")
    (tmp_path / "params.jsonl").write_text('{"a": 1}\n')
    (tmp_path / "binary.sh").write_bytes(Path("/bin/true").read_bytes())
    (tmp_path / "empty.sh").write_text("")
    (tmp_path / "comments-only.sh").write_text("#!/bin/sh\n#PBS -N nothing\n\n")
    assert cli("qsub", "-h", "--", "true", check=True).stdout == "1\n"  # job 1: not an array
    for args, message in REFUSED:
        proc = subprocess.run([str(Path(sys.executable).parent / "qsub"), "-h", *args], capture_output=True,
                              env=os.environ, cwd=tmp_path, timeout=60)
        err = proc.stderr.decode("utf-8", "replace")
        assert proc.returncode != 0, args[:2]
        assert err.startswith(f"qsub: {message}") and err.count("\n") == 1, err[:300]
    assert cli("qstat", "-x", "--only-job-id-out").stdout == "1\n"  # nothing else was stored
    assert cli("qsub", "-h", "--", "true", check=True).stdout == "2\n"  # and no id was used up


def test_undecodable_program_name_still_runs(home, tmp_path):
    """A default name taken from a program is made storable, not refused (the user did not type it as a name)."""
    program = tmp_path / "prog\udcff"
    program.write_text("#!/bin/sh\necho ran\n")
    program.chmod(0o755)
    proc = subprocess.run([str(Path(sys.executable).parent / "qsub"), "--", str(program)], capture_output=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.decode().strip()
    record = wait_finished(job_id)
    assert record["state"] == "SUCCEEDED" and record["name"] == "prog\ufffd"


# D4: a full disk fails only the job that filled it --------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """HYPER_HOME on a 16 MiB tmpfs of its own (needs root to mount; skipped otherwise)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
    home = mount / "hyper-home"
    monkeypatch.setenv("HYPER_HOME", str(home))
    yield home
    from tests.conftest import stop_agent

    stop_agent(home)
    time.sleep(0.5)
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_fails_only_the_job_that_filled_it_and_recovers(home, small_disk, tmp_path):
    """Old code: the agent and its workers died on 'database or disk is full', queued jobs stalled, and qsub
    told users to move their job database aside (losing every job)."""
    hog = cli("qsub", "--", "sh", "-c", "head -c 40000000 /dev/zero; echo never", check=True).stdout.strip()
    other = cli("qsub", "--", "sh", "-c", "sleep 1; echo fine", check=True).stdout.strip()
    lock = small_disk / "local" / "agent.lock"  # qsub started the agent; it writes its lock once it runs
    agent = int(wait_until(lambda: lock.exists() and lock.read_text().strip().isdigit() and lock.read_text()))
    rec = wait_finished(hog)
    assert rec["state"] == "FAILED" and rec["reason"] == "disk full (output truncated to 64 KiB)", rec["reason"]
    out = small_disk / "local" / "logs" / f"{hog}.out"
    assert out.stat().st_size < 100_000 and out.read_bytes().endswith(b"output truncated here: the disk is full\n")
    assert wait_finished(other)["state"] == "SUCCEEDED"
    assert alive(agent)  # the agent lived through it

    filler = small_disk / "filler"  # someone else fills the disk: qsub refuses, saying nothing about discarding
    with open(filler, "wb") as fh:
        try:
            while True:
                fh.write(b"\0" * (1 << 20))
                fh.flush()
        except OSError:
            pass
    proc = cli("qsub", "--", "echo", "later")
    assert proc.returncode != 0
    assert proc.stderr.startswith(f"qsub: the disk holding {small_disk / 'local'} is full")
    assert proc.stderr.count("\n") == 1 and "aside" not in proc.stderr and "lost" not in proc.stderr
    filler.unlink()  # space returns: everything works again without anyone restarting anything
    later = cli("qsub", "--", "echo", "later", check=True).stdout.strip()
    assert wait_finished(later)["state"] == "SUCCEEDED"
    assert cli("qstat", "-x", "--only-job-id-out").stdout.split() == [hog, other, later]


def test_agent_start_prunes_empty_worker_cgroups(home, tmp_path):
    """Workers that ended under a killed agent left empty cgroups behind; the next agent removes them."""
    from hyper.worker import containment

    if containment.cgroup_root() is None:
        pytest.skip("no writable cgroup v2 here")
    stale = containment.cgroup_root() / "wstale-test"
    stale.mkdir(exist_ok=True)
    job_id = cli("qsub", "--", "true", check=True).stdout.strip()
    assert wait_finished(job_id)["state"] == "SUCCEEDED"
    assert not stale.exists()
