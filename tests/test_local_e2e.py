"""End to end on the embedded local host, with real processes: qsub -> agent -> worker -> job -> qstat/qlog."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import time
from pathlib import Path


from tests.conftest import cli, wait_until


def status(job_id: str) -> dict:
    out = cli("qstat", "-x", "-f", "--output", "json", job_id, check=True).stdout
    return json.loads(out)[0]


def wait_finished(job_id: str, timeout: float = 30) -> dict:
    return wait_until(lambda: (s := status(job_id))["state"] in ("SUCCEEDED", "FAILED", "DELETED") and s,
                      timeout)


def submit(*args: str, input: str | None = None) -> str:
    return cli("qsub", *args, input=input, check=True).stdout.strip()


def test_command_job_runs_and_logs(home):
    job_id = submit("--", "echo", "hello world")
    assert job_id == "1"
    rec = wait_finished(job_id)
    assert rec["state"] == "SUCCEEDED" and rec["exit_code"] == 0 and rec["attempts"] == 1
    assert cli("qlog", job_id).stdout == "hello world\n"
    table = cli("qstat", "-x").stdout.splitlines()
    assert table[0].split() == ["Job", "ID", "Name", "User", "Time", "Use", "S", "Queue"]
    assert table[2].split()[0] == "1" and table[2].split()[-2:] == ["F", "default"]


def test_script_directives_and_environment(home, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text(
        "#!/bin/bash\n"
        "#PBS -N envcheck\n"
        "#PBS -l walltime=00:05:00\n"
        "#PBS -v FOO=bar\n"
        "echo \"id=$PBS_JOBID slurm=$SLURM_JOB_ID hyper=$HYPER_JOB_ID name=$PBS_JOBNAME foo=$FOO\"\n"
        "echo \"workdir=$PBS_O_WORKDIR cwd=$(pwd)\"\n"
        "echo oops >&2\n")
    job_id = submit(str(script))
    rec = wait_finished(job_id)
    assert rec["name"] == "envcheck" and rec["walltime"] == 300
    out = cli("qlog", job_id).stdout.splitlines()
    assert out[0] == f"id={job_id} slurm={job_id} hyper={job_id} name=envcheck foo=bar"
    assert out[1].startswith(f"workdir={tmp_path} cwd={home}/local/work/slot-")
    assert cli("qlog", "-e", job_id).stdout == "oops\n"


def test_stdin_script_and_wait_exit_code(home):
    proc = cli("qsub", "--wait", input="echo from-stdin\nexit 3\n")
    assert proc.returncode == 3
    job_id = proc.stdout.strip()
    assert cli("qlog", job_id).stdout == "from-stdin\n"
    assert status(job_id)["name"] == "STDIN"


def test_array_elements_get_their_index(home):
    job_id = submit("-J", "1-5", "--",
                    "sh", "-c", "echo $PBS_ARRAY_INDEX $SLURM_ARRAY_TASK_ID $LSB_JOBINDEX $HYPER_ARRAY_INDEX $PBS_JOBID")
    assert job_id == "1[]"
    rec = wait_finished(job_id)
    assert rec["state"] == "SUCCEEDED" and rec["array_done"] == 5
    assert cli("qlog", "1[3]").stdout == "3 3 3 3 1[3]\n"
    ids = cli("qstat", "-x", "-t", "--only-job-id-out").stdout.split()
    assert ids == ["1[]", "1[1]", "1[2]", "1[3]", "1[4]", "1[5]"]


def test_dependencies(home):
    bad = submit("--", "sh", "-c", "exit 1")
    ok_after = submit("-W", f"depend=afterok:{bad}", "--", "echo", "never")
    notok_after = submit("-W", f"depend=afternotok:{bad}", "--", "echo", "ran")
    assert wait_finished(notok_after)["state"] == "SUCCEEDED"
    assert cli("qlog", notok_after).stdout == "ran\n"
    rec = status(ok_after)
    assert rec["state"] == "HELD"
    assert rec["reason"] == f"dependency can never be satisfied: afterok:{bad} ended FAILED"
    full = cli("qstat", "-f", ok_after).stdout
    assert "reason = dependency can never be satisfied" in full


def test_qdel_stops_whole_process_group(home, tmp_path):
    pids = tmp_path / "pids"
    job_id = submit("--", "sh", "-c", f"sleep 300 & echo $! > {pids}; echo $$ >> {pids}; wait")
    wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 2)
    children = [int(p) for p in pids.read_text().split()]
    proc = cli("qdel", job_id)
    assert proc.returncode == 0 and proc.stdout == ""
    wait_until(lambda: not any(_alive(p) for p in children), timeout=10)
    rec = status(job_id)
    assert rec["state"] == "DELETED"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0] != "Z"


def test_qdel_many_and_unknown(home):
    ids = [submit("-h", "--", "true") for _ in range(3)]
    listed = cli("qstat", "--only-job-id-out").stdout.split()
    assert listed == ids
    proc = cli("qdel", *listed, "99")
    assert proc.returncode == 153
    assert proc.stderr == "qdel: unknown job id 99\n"
    assert cli("qstat").stdout == ""
    assert [status(i)["state"] for i in ids] == ["DELETED"] * 3


def test_walltime_kills_and_fails(home):
    job_id = submit("-l", "walltime=00:00:01", "--", "sleep", "60")
    rec = wait_finished(job_id, timeout=20)
    assert rec["state"] == "FAILED"
    assert rec["reason"] == "walltime 00:00:01 exceeded"
    assert rec["exit_code"] == 128 + signal.SIGTERM  # the code qsub --wait exits with (issue 14)
    assert "    exit_code = 143\n" in cli("qstat", "-x", "-f", job_id).stdout
    waited = cli("qsub", "--wait", "-l", "walltime=00:00:01", "--", "sleep", "60")
    assert waited.returncode == 128 + signal.SIGTERM


def test_retry_on_exit_counts_runs(home, tmp_path):
    runs = tmp_path / "runs"
    job_id = submit("--retries", "2", "--retry-on-exit", "--", "sh", "-c", f"echo x >> {runs}; exit 4")
    rec = wait_finished(job_id)
    assert rec["state"] == "FAILED" and rec["attempts"] == 3 and rec["exit_code"] == 4
    assert runs.read_text() == "x\nx\nx\n"


def test_killed_worker_requeues_without_double_run(home, tmp_path):
    marker, started = tmp_path / "marker", tmp_path / "started"
    script = tmp_path / "flaky.sh"
    script.write_text(f"#!/bin/sh\necho $$ >> {started}\n"
                      f"if [ ! -f {marker} ]; then touch {marker}; sleep 300; fi\necho finished\n")
    job_id = submit("--retries", "1", str(script))
    rec = wait_until(lambda: (s := status(job_id))["state"] == "RUNNING" and s.get("pid") and s)
    first_pid = rec["pid"]
    worker_pid = _worker_pid(home, rec["worker"])
    os.kill(worker_pid, signal.SIGKILL)
    rec = wait_finished(job_id, timeout=30)
    assert rec["state"] == "SUCCEEDED" and rec["attempts"] == 2
    assert cli("qlog", job_id).stdout == "finished\n"
    assert not _alive(first_pid)  # the orphaned first run was killed before the rerun


def _worker_pid(home: Path, worker_id: str) -> int:
    from hyper.store.sqlite import SQLiteStore

    store = SQLiteStore(home / "local" / "hyper.db")
    (w,) = [w for w in store.list_workers() if w.id == worker_id]
    return w.pid


def test_killed_agent_loses_nothing(home, tmp_path):
    job_id = submit("--", "sh", "-c", "sleep 1; echo survived")
    wait_until(lambda: status(job_id)["state"] == "RUNNING")
    agent_pid = int((home / "local" / "agent.lock").read_text())
    os.kill(agent_pid, signal.SIGKILL)
    assert wait_finished(job_id)["state"] == "SUCCEEDED"
    assert cli("qlog", job_id).stdout == "survived\n"
    second = submit("--", "echo", "again")  # a new agent starts on demand
    assert wait_finished(second)["state"] == "SUCCEEDED"


def test_sweep_substitutes_parameters(home, tmp_path):
    params = tmp_path / "sweep.jsonl"
    params.write_text('{"lr": 0.1, "seed": 1}\n\n{"lr": 0.01, "seed": 2}\n')
    ids = submit("--sweep", str(params), "--", "echo", "lr={lr}", "seed={seed}").split()
    assert len(ids) == 2
    for job_id, expected in zip(ids, ["lr=0.1 seed=1\n", "lr=0.01 seed=2\n"]):
        wait_finished(job_id)
        assert cli("qlog", job_id).stdout == expected


def test_output_path_and_follow(home, tmp_path):
    job_id = submit("-o", "out_%j.txt", "-j", "oe", "--", "sh", "-c", "echo a; sleep 1; echo b >&2")
    follow = cli("qlog", "-f", job_id)
    assert follow.stdout == "a\nb\n"
    assert (tmp_path / f"out_{job_id}.txt").read_text() == "a\nb\n"
    assert cli("qlog", "--tail", "1", job_id).stdout == "b\n"


def _submit_many(home: str, n: int, out_dir: str, results) -> None:
    os.environ["HYPER_HOME"] = home
    from hyper.parsing.directives import Directives
    from hyper.services import jobs as svc
    from hyper.services.context import open_context

    ctx = open_context()
    ids = []
    for _ in range(n):
        (job,) = svc.submit(ctx, Directives(), script=None,
                            command=["sh", "-c", f"echo x >> {out_dir}/$HYPER_JOB_ID"], script_name="",
                            submit_env=dict(os.environ), cwd=out_dir, user="bench")
        ids.append(job.id)
    results.put(ids)


def test_concurrent_submitters_unique_ids_each_run_once(home, tmp_path):
    out_dir = tmp_path / "runs"
    out_dir.mkdir()
    mp = multiprocessing.get_context("spawn")
    results = mp.Queue()
    procs = [mp.Process(target=_submit_many, args=(str(home), 500, str(out_dir), results)) for _ in range(8)]
    for p in procs:
        p.start()
    ids = [i for _ in procs for i in results.get(timeout=120)]
    for p in procs:
        p.join()
    assert sorted(ids) == list(range(1, 4001))
    cli("qstat", check=True)
    submit("--", "true")  # starts the agent through the normal path (a held job alone would not)
    wait_until(lambda: len(os.listdir(out_dir)) == 4000, timeout=180, step=0.5)
    wait_until(lambda: "4001" in cli("qstat", "-Q", "--output", "csv").stdout, timeout=30)
    summary = cli("qstat", "-Q", "--output", "json").stdout
    (row,) = json.loads(summary)
    assert row["succeeded"] == 4001 and row["failed"] == 0 and row["held"] == 0
    assert all((out_dir / name).read_text() == "x\n" for name in os.listdir(out_dir))


def test_held_job_starts_no_agent_and_qrls_runs_it(home, tmp_path):
    from hyper.backends.local import agent_running
    from hyper.config import Host

    marker = tmp_path / "ran"
    job_id = submit("-h", "--", "sh", "-c", f"echo yes > {marker}")
    time.sleep(0.5)
    assert not agent_running(Host())  # nothing can run: no agent to idle
    assert cli("qrls", job_id).returncode == 0
    wait_until(marker.exists, timeout=30)
    assert wait_finished(job_id)["state"] == "SUCCEEDED"
