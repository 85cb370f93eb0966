"""The Slurm and LSF front-ends and PBS Pro's output shapes (issue 18), as tools call them: through the
launchers `hyper shims install` writes, on a fresh local host with real jobs."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import BIN, cli, wait_until

FINISHED = ("SUCCEEDED", "FAILED", "DELETED")


@pytest.fixture
def shim_bin(home, tmp_path, monkeypatch) -> Path:
    bin_dir = tmp_path / "bin"
    cli("hyper", "shims", "install", str(bin_dir), check=True)
    return bin_dir


def run(bin_dir: Path, name: str, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """A shim as a tool runs it: by name, from PATH."""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.run([name, *args], input=input, capture_output=True, text=True, timeout=60, env=env)


def state(job_id: str) -> str:
    return json.loads(cli("qstat", "-x", "--output", "json", job_id, check=True).stdout)[0]["state"]


def finished(job_id: str) -> str:
    return wait_until(lambda: (s := state(job_id)) in FINISHED and s, timeout=60)


def running(job_id: str) -> None:
    wait_until(lambda: state(job_id) == "RUNNING", timeout=60)


# ------------------------------------------------------------------------------------------ install

def test_install_writes_launchers_refuses_to_shadow_a_real_slurm_and_removes_only_its_own(home, tmp_path):
    target, elsewhere = tmp_path / "bin", tmp_path / "real-slurm"
    proc = cli("hyper", "shims", "install", str(target), "--family", "slurm")
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in target.iterdir()) == ["sacct", "sbatch", "scancel", "squeue"]
    assert os.access(target / "sbatch", os.X_OK) and "hyper shim" in (target / "sbatch").read_text()

    elsewhere.mkdir()
    (elsewhere / "bsub").write_text("#!/bin/sh\necho real LSF\n")
    (elsewhere / "bsub").chmod(0o755)
    path = f"{elsewhere}{os.pathsep}{os.environ['PATH']}"
    refused = cli("hyper", "shims", "install", str(target), "--family", "lsf", env={"PATH": path})
    assert refused.returncode == 1 and not (target / "bjobs").exists()  # nothing written
    assert refused.stderr.splitlines() == [
        f"hyper shims install: a real bsub is on PATH ({elsewhere}/bsub); hyper's lsf commands would shadow it "
        "(keep them in a directory you add to PATH only for hyper, and pass --force)"]
    assert cli("hyper", "shims", "install", str(target), "--family", "lsf", "--force", env={"PATH": path}).returncode == 0

    (target / "mine").write_text("keep me\n")
    foreign = tmp_path / "other"
    foreign.mkdir()
    (foreign / "squeue").write_text("not hyper's\n")
    proc = cli("hyper", "shims", "install", str(foreign))
    assert proc.returncode == 1 and "exists and was not written by hyper" in proc.stderr
    assert (foreign / "squeue").read_text() == "not hyper's\n" and not (foreign / "sbatch").exists()

    removed = json.loads(cli("hyper", "shims", "remove", str(target), "--output", "json", check=True).stdout)
    assert sorted(r["name"] for r in removed) == sorted(
        ["sbatch", "squeue", "scancel", "sacct", "bsub", "bjobs", "bkill", "bpeek"])
    assert [p.name for p in target.iterdir()] == ["mine"]


# ------------------------------------------------------------------------------------------ Slurm

def test_sbatch_squeue_sacct_scancel_speak_slurm(shim_bin, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\n#SBATCH -J hello\n#SBATCH --mem=100M\necho out $SLURM_JOB_ID in $PWD\necho err >&2\n")
    first = run(shim_bin, "sbatch", str(script))
    assert (first.returncode, first.stdout) == (0, "Submitted batch job 1\n")
    assert finished("1") == "SUCCEEDED"
    # Slurm's defaults: the submit directory, stdout and stderr together in slurm-%j.out there
    assert (tmp_path / "slurm-1.out").read_text() == f"out 1 in {tmp_path}\nerr\n"

    assert run(shim_bin, "sbatch", "--parsable", "-J", "sleeper", "--wrap", "sleep 60").stdout == "2\n"
    assert run(shim_bin, "sbatch", "--parsable", "--wrap", "exit 3").stdout == "3\n"
    assert run(shim_bin, "sbatch", "--parsable", "--time=0:01", "--wrap", "sleep 60").stdout == "4\n"
    assert run(shim_bin, "sbatch", "--parsable", "-H", "-J", "held", "--wrap", "true").stdout == "5\n"
    running("2")
    finished("3"), finished("4")

    assert run(shim_bin, "squeue", "-h", "-o", "%i %t %T %j %R").stdout == (
        "2 R RUNNING sleeper localhost\n5 PD PENDING held (JobHeldUser)\n")
    table = run(shim_bin, "squeue", "-t", "PD").stdout.splitlines()
    assert table[0].split() == ["JOBID", "PARTITION", "NAME", "USER", "ST", "TIME", "NODES", "NODELIST(REASON)"]
    assert [line.split()[:5] for line in table[1:]] == [["5", "default", "held", getpass.getuser(), "PD"]]
    assert run(shim_bin, "squeue", "-h", "--me", "-j", "1,3", "-o", "%i %T").stdout == "1 COMPLETED\n3 FAILED\n"
    assert run(shim_bin, "squeue", "-h", "-u", "nobody-else").stdout == ""

    # Parsl's probe and status poll, word for word
    assert run(shim_bin, "sacct", "-X").returncode == 0
    polled = run(shim_bin, "sacct", "-X", "--noheader", "--format=jobid,state%20", "--job", "1,2,3,4")
    assert [line.split() for line in polled.stdout.splitlines()] == [
        ["1", "COMPLETED"], ["2", "RUNNING"], ["3", "FAILED"], ["4", "TIMEOUT"]]

    # Snakemake's Slurm executor's poll
    snakemake = run(shim_bin, "sacct", "-X", "--parsable2", "--clusters", "all", "--noheader",
                    "--format=JobIdRaw,State", "--starttime", "2000-01-01T00:00", "--endtime", "now", "--name", "hello")
    assert snakemake.stdout == "1|COMPLETED\n"

    assert run(shim_bin, "scancel", "-n", "held").returncode == 0
    assert run(shim_bin, "scancel", "2").returncode == 0
    finished("2")
    assert state("5") == "DELETED"
    parsable = run(shim_bin, "sacct", "-P", "-j", "1,2,3,5", "--format=JobID,JobName,State,ExitCode").stdout
    assert parsable.splitlines() == ["JobID|JobName|State|ExitCode", "1|hello|COMPLETED|0:0",
                                     "2|sleeper|CANCELLED|" + parsable.splitlines()[2].rsplit("|", 1)[1],
                                     "3|wrap|FAILED|3:0", "5|held|CANCELLED|0:0"]
    unknown = run(shim_bin, "scancel", "99")
    assert (unknown.returncode, unknown.stderr) == (
        1, "scancel: error: Kill job error on job id 99: Invalid job id specified\n")


def test_slurm_front_ends_refuse_bad_input_in_one_line(shim_bin):
    cases = [
        (("squeue", "-o", "%i %Q"), 2, "squeue: squeue format field %Q is not supported"),
        (("sacct", "--format=JobID,Bogus"), 2, "sacct: sacct field 'Bogus' is not supported"),
        (("squeue", "-t", "WAITING"), 2, "squeue: invalid job state specified: WAITING"),
        (("sbatch", "/no/such/job.sh"), 2, "sbatch: job script /no/such/job.sh does not exist (check the path)"),
        (("sbatch", "--nodes=4", "--wrap", "true"), 2, "sbatch: --nodes=4 asks for several nodes"),
        (("scancel",), 2, "scancel: no job identification provided"),
        (("bkill",), 2, "bkill: no job id given"),
        (("bsub",), 2, "bsub: the job script on stdin is empty"),
        (("sbatch", "--parsable"), 2, "sbatch: the job script on stdin is empty"),
        (("bjobs", "-o", "jobid nope"), 2, "bjobs: bjobs field 'nope' is not supported"),
    ]
    for args, code, start in cases:
        proc = run(shim_bin, *args, input="")
        assert proc.returncode == code, (args, proc.stderr)
        assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(start), (args, proc.stderr)
        assert "Traceback" not in proc.stderr
    assert cli("qstat", "-x").stdout == ""  # nothing was submitted


# ------------------------------------------------------------------------------------------ LSF

def test_bsub_bjobs_bkill_bpeek_speak_lsf(shim_bin, tmp_path):
    script = "#BSUB -J piped\n#BSUB -n 1\n#BSUB -R \"span[hosts=1]\"\n#BSUB -o out-%J.txt\necho lsf $LSB_JOBID in $PWD\n"
    piped = run(shim_bin, "bsub", input=script)
    assert piped.stdout == "Job <1> is submitted to queue <default>.\n"
    assert piped.stderr == "bsub: note: no effect here, ignored: -R span[hosts=1]\n"
    assert finished("1") == "SUCCEEDED"
    assert (tmp_path / "out-1.txt").read_text() == f"lsf 1 in {tmp_path}\n"  # LSF's %J, the submit directory

    (tmp_path / "job.sh").write_text("#!/bin/sh\n#BSUB -J fromfile\nexit 4\n")
    assert run(shim_bin, "bsub", str(tmp_path / "job.sh")).stdout == "Job <2> is submitted to queue <default>.\n"
    assert run(shim_bin, "bsub", "-J", "ticker", "sh", "-c", "echo tick; sleep 60").returncode == 0
    finished("2")
    running("3")
    wait_until(lambda: "tick" in run(shim_bin, "bpeek", "3").stdout, timeout=30)
    assert run(shim_bin, "bpeek", "3").stdout == "<< output from stdout >>\ntick\n"

    # Parsl's status poll, word for word
    assert run(shim_bin, "bjobs", "-noheader", "-o", "jobid stat", "1", "2", "3").stdout == "1 DONE\n2 EXIT\n3 RUN\n"
    assert run(shim_bin, "bjobs", "-noheader", "-o", "jobid job_name exit_code").stdout == "3 ticker -\n"
    assert run(shim_bin, "bjobs", "-a", "-noheader", "-o", "jobid stat exit_code delimiter=','").stdout == (
        "1,DONE,-\n2,EXIT,4\n3,RUN,-\n")
    header = run(shim_bin, "bjobs").stdout.splitlines()[0]
    assert header.split() == ["JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME", "SUBMIT_TIME"]

    assert run(shim_bin, "bkill", "3").stdout == "Job <3> is being terminated\n"
    finished("3")
    again = run(shim_bin, "bkill", "3")
    assert (again.returncode, again.stderr) == (0, "Job <3>: Job has already finished\n")
    missing = run(shim_bin, "bjobs", "42")
    assert (missing.returncode, missing.stderr) == (255, "Job <42> is not found\n")
    assert run(shim_bin, "bjobs").stderr == "No unfinished job found\n"


# ------------------------------------------------------------------------------------------ PBS shapes

def test_qstat_f_F_json_and_dsv_are_pbs_pro_documents(home, tmp_path):
    account = cli("qsub", "-A", "project-7", "-N", "done", "-l", "walltime=00:05:00", "--", "true")
    assert (account.returncode, account.stdout) == (0, "1\n")
    assert account.stderr == "qsub: note: no effect here, ignored: -A project-7\n"
    assert cli("qsub", "-N", "sleeper", "--", "sleep", "60", check=True).stdout == "2\n"
    finished("1")
    running("2")

    # Parsl's PBSProProvider, word for word: the ids as qsub printed them are the keys it looks up
    doc = json.loads(cli("qstat", "-x", "-f", "-F", "json", "1", "2", check=True).stdout)
    assert set(doc) == {"timestamp", "pbs_version", "pbs_server", "Jobs"} and doc["pbs_server"] == "local"
    assert list(doc["Jobs"]) == ["1", "2"]
    done, sleeper = doc["Jobs"]["1"], doc["Jobs"]["2"]
    assert (done["Job_Name"], done["job_state"], done["queue"], done["Exit_status"]) == ("done", "F", "default", 0)
    assert done["Resource_List"] == {"ncpus": 1, "nodect": 1, "place": "pack", "select": "1:ncpus=1",
                                     "mem": "1024mb", "walltime": "00:05:00"}
    assert done["Job_Owner"].startswith(getpass.getuser() + "@")
    assert sleeper["job_state"] == "R" and "Exit_status" not in sleeper

    # PBS Pro's own key form when the caller used it, or named no job
    assert list(json.loads(cli("qstat", "-f", "-F", "json", "2.local", check=True).stdout)["Jobs"]) == ["2.local"]
    assert list(json.loads(cli("qstat", "-x", "-f", "-F", "json", check=True).stdout)["Jobs"]) == [
        "1.local", "2.local"]

    dsv = cli("qstat", "-x", "-f", "-F", "dsv", "-D", ",", "1.local", check=True).stdout.splitlines()
    assert len(dsv) == 1 and dsv[0].startswith("Job Id: 1.local,Job_Name=done,Job_Owner=")
    assert ",job_state=F,queue=default," in dsv[0] and ",Resource_List.walltime=00:05:00," in dsv[0]
    assert ",Exit_status=0," in dsv[0]

    alternate = cli("qstat", "-a", check=True).stdout.splitlines()
    assert alternate[3].split() == ["Job", "ID", "Username", "Queue", "Jobname", "SessID", "NDS", "TSK", "Memory",
                                    "Time", "S", "Time"]
    assert alternate[5].split()[:4] == ["2", getpass.getuser()[:8], "default", "sleeper"]
    assert alternate[5].split()[-2] == "R"
    # hyper's own JSON is unchanged
    assert json.loads(cli("qstat", "-x", "--output", "json", "1", check=True).stdout)[0]["state"] == "SUCCEEDED"
    assert cli("qstat", "-F", "csv", "1").stdout.splitlines()[0] == "Job ID,Name,User,Time Use,S,Queue"  # as before
    cli("qdel", "2.local", check=True)  # PBS Pro's id form, as its tools pass it back
    assert finished("2") == "DELETED"
