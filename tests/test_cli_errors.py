"""Exact output and exit codes of the q-commands, and the one-line errors for bad input (nothing written)."""

from __future__ import annotations

import getpass
import sqlite3

import pytest
from typer.testing import CliRunner

from qcmds import qdel, qlog, qstat, qsub

runner = CliRunner()


def run(app, *args, input=None):
    return runner.invoke(app.app, list(args), input=input)


def no_jobs() -> bool:
    return run(qstat, "-x", "--only-job-id-out").stdout == ""


def test_qstat_table_is_exact(home):
    assert run(qsub, "-h", "-N", "first", "--", "true").stdout == "1\n"
    assert run(qsub, "-h", "-J", "1-3", "--", "true").stdout == "2[]\n"
    user = getpass.getuser()[:16]
    w = max(4, len(user))
    result = run(qstat)
    assert result.exit_code == 0
    assert result.stdout == (
        f"Job ID Name  {'User'.ljust(w)} Time Use S Queue\n"
        f"------ ----- {'-' * w} -------- - -------\n"
        f"1      first {user.ljust(w)} 0        H default\n"
        f"2[]    true  {user.ljust(w)} 0        H default\n")
    assert run(qstat, "--only-job-id-out").stdout == "1\n2[]\n"
    csv = run(qstat, "--output", "csv").stdout.splitlines()
    assert csv[0] == "Job ID,Name,User,Time Use,S,Queue"
    assert csv[1] == f"1,first,{user},0,H,default"
    summary = run(qstat, "-Q").stdout.splitlines()
    assert summary[0].split() == ["Queue", "Total", "Queued", "Running", "Held", "Succeeded", "Failed", "Deleted"]
    assert summary[2].split() == ["default", "4", "0", "0", "4", "0", "0", "0"]


def test_qsub_quiet_prints_nothing(home):
    result = run(qsub, "-z", "-h", "--", "true")
    assert (result.exit_code, result.stdout) == (0, "")


@pytest.mark.parametrize("args, code, message", [
    (["-q", "nope", "--", "true"], 1, "qsub: unknown queue 'nope' (queues on host local: default)\n"),
    (["-d", "nope", "--", "true"], 1, "qsub: unknown job definition 'nope' (definitions on host local: default)\n"),
    (["missing.sh"], 2, "qsub: job script missing.sh does not exist (check the path, or run a command with "
                        "qsub -- cmd args)\n"),
    (["-W", "depend=afterok:42", "--", "true"], 1,
     "qsub: dependency afterok:42 names no job (check the id with `qstat -x`; depend only on jobs that exist)\n"),
    (["-l", "ncpus=64", "--", "true"], 1,
     "qsub: the job asks for 64 vCPUs but definition 'default' gives 1; no definition on queue 'default' fits, "
     "the largest is 'default' (1 vCPUs, 1GiB, 0 GPUs) (ask for less, or an admin adds a bigger definition "
     "with `hyper definitions add-definition`)\n"),
    (["-a", "1200", "--", "true"], 2,
     "qsub: -a (PBS deferred start time) is not supported (submit later with `at`/cron, or use --sweep FILE "
     "for parameter sweeps)\n"),
    (["--"], 2, "qsub: nothing follows -- (e.g. qsub -- python train.py)\n"),
])
def test_qsub_bad_input_one_line_nothing_written(home, args, code, message):
    result = run(qsub, *args)
    assert (result.exit_code, result.stderr) == (code, message)
    assert "Traceback" not in result.output
    assert no_jobs()


def test_qsub_bad_array_names_it(home):
    result = run(qsub, "-J", "5-1", "--", "true")
    assert result.exit_code == 2
    assert result.stderr.startswith("qsub: ") and "'5-1'" in result.stderr and result.stderr.count("\n") == 1
    assert no_jobs()


def test_malformed_directive_names_file_and_line(home, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\n#PBS -N ok\n#PBS -l walltime=abc\necho hi\n")
    result = run(qsub, str(script))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"qsub: {script}:3: ")
    assert result.stderr.count("\n") == 1
    assert no_jobs()


def test_bad_job_ids(home):
    result = run(qdel, "12", "abc")
    assert result.exit_code == 2
    assert result.stderr.startswith("qdel: job id 'abc' does not parse")
    result = run(qstat, "99")
    assert (result.exit_code, result.stderr) == (153, "qstat: Unknown Job Id 99\n")
    result = run(qlog, "7")
    assert (result.exit_code, result.stderr) == (153, "qlog: unknown job id 7 (list jobs with `qstat -x`)\n")


def test_retries_flag_collision_with_pbs_r(home):
    result = run(qsub, "-r", "2", "--", "true")
    assert result.exit_code == 2 and "-r" in result.stderr
    assert no_jobs()


def test_unusable_hyper_home(home, monkeypatch, tmp_path):
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    monkeypatch.setenv("HYPER_HOME", str(blocker))
    result = run(qstat)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"qstat: cannot create {blocker}/local")
    assert "HYPER_HOME" in result.stderr


def test_corrupt_database(home):
    db = home / "local" / "hyper.db"
    db.parent.mkdir(parents=True)
    db.write_bytes(b"this is not a database" * 100)
    result = run(qstat)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"qstat: the job database {db} is corrupt")
    assert "Traceback" not in result.output


def test_locked_database(home, monkeypatch):
    assert run(qsub, "-h", "--", "true").exit_code == 0
    monkeypatch.setenv("HYPER_DB_TIMEOUT", "0.3")
    con = sqlite3.connect(home / "local" / "hyper.db", isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    try:
        result = run(qsub, "--", "true")
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert result.exit_code == 1
    assert "stayed locked for 0.3 s" in result.stderr
    assert run(qstat, "-x", "--only-job-id-out").stdout == "1\n"
