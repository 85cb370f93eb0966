"""Issue 14: scripts written for PBS, Slurm, LSF and the Cyclone seed run as their authors meant, on the local
host with real processes (qsub -> agent -> worker -> job)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import cli, wait_until


def status(job_id: str) -> dict:
    return json.loads(cli("qstat", "-x", "-f", "--output", "json", job_id, check=True).stdout)[0]


def wait_finished(job_id: str, timeout: float = 60) -> dict:
    return wait_until(lambda: (s := status(job_id))["state"] in ("SUCCEEDED", "FAILED", "DELETED") and s,
                      timeout)


def submit(*args: str, input: str | None = None) -> str:
    return cli("qsub", *args, input=input, check=True).stdout.strip()


def script(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------- working directory and output files


def test_slurm_script_runs_in_submit_dir_and_writes_slurm_jobid_out(home, tmp_path):
    (tmp_path / "input.txt").write_text("data from the submit dir\n")
    job = script(tmp_path / "s.sh", "#!/bin/bash\n#SBATCH --job-name=reader\ncat input.txt\necho \"cwd=$PWD\"\n"
                                    "echo to-stderr >&2\n")
    job_id = submit(job)
    rec = wait_finished(job_id)
    assert rec["state"] == "SUCCEEDED", rec
    out = tmp_path / f"slurm-{job_id}.out"
    assert out.read_text() == f"data from the submit dir\ncwd={tmp_path}\nto-stderr\n"  # stderr joined, as Slurm
    assert rec["output_path"] == str(out) and rec["error_path"] == "(joined into output)"
    assert cli("qlog", job_id).stdout == out.read_text()


def test_slurm_chdir_still_overrides_and_output_follows_it(home, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    job_id = submit(script(tmp_path / "s.sh", f"#!/bin/sh\n#SBATCH --chdir={other}\npwd\n"))
    wait_finished(job_id)
    assert (other / f"slurm-{job_id}.out").read_text() == f"{other}\n"


def test_slurm_array_default_output_per_element(home, tmp_path):
    job_id = submit(script(tmp_path / "a.sh", "#!/bin/sh\n#SBATCH --array=1-3\necho $SLURM_ARRAY_TASK_ID\n"))
    assert job_id.endswith("[]")
    wait_finished(job_id)
    base = job_id[:-2]
    for i in (1, 2, 3):
        assert (tmp_path / f"slurm-{base}_{i}.out").read_text() == f"{i}\n"


def test_lsf_array_writes_out_jobid_index_in_submit_dir(home, tmp_path):
    (tmp_path / "in.txt").write_text("x\n")
    job_id = submit(script(tmp_path / "l.sh", "#!/bin/sh\n#BSUB -J sweep[1-3]\n#BSUB -o out.%J.%I\n"
                                              "cat in.txt; echo \"element $LSB_JOBINDEX\"\n"))
    wait_finished(job_id)
    base = job_id[:-2]
    for i in (1, 2, 3):
        assert (tmp_path / f"out.{base}.{i}").read_text() == f"x\nelement {i}\n"
    assert cli("qlog", f"{base}[2]").stdout == "x\nelement 2\n"


def test_lsf_without_o_keeps_output_in_hyper_logs(home, tmp_path):
    job_id = submit(script(tmp_path / "l.sh", "#!/bin/sh\n#BSUB -J plain\npwd\n"))
    rec = wait_finished(job_id)
    assert cli("qlog", job_id).stdout == f"{tmp_path}\n"  # LSF: runs in the submit dir
    assert rec["output_path"].startswith(str(home))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hyper-home", "l.sh"]


def test_pbs_script_writes_name_o_id_and_keeps_worker_dir(home, tmp_path):
    job_id = submit(script(tmp_path / "p.sh", "#!/bin/sh\n#PBS -N pbsjob\necho out; echo err >&2; pwd\n"))
    rec = wait_finished(job_id)
    assert (tmp_path / f"pbsjob.o{job_id}").read_text().startswith(f"out\n{home}/local/work/slot-")
    assert (tmp_path / f"pbsjob.e{job_id}").read_text() == "err\n"
    assert rec["output_path"] == str(tmp_path / f"pbsjob.o{job_id}")
    assert cli("qlog", "-e", job_id).stdout == "err\n"


def test_pbs_array_default_output_per_element(home, tmp_path):
    job_id = submit(script(tmp_path / "p.sh", "#!/bin/sh\n#PBS -N arr\n#PBS -J 1-2\n#PBS -j oe\n"
                                              "echo $PBS_ARRAY_INDEX\n"))
    wait_finished(job_id)
    base = job_id[:-2]
    assert (tmp_path / f"arr.o{base}.1").read_text() == "1\n"
    assert (tmp_path / f"arr.o{base}.2").read_text() == "2\n"
    assert not list(tmp_path.glob("arr.e*"))


def test_pbs_array_with_fixed_output_file_gets_one_note(home, tmp_path):
    proc = cli("qsub", script(tmp_path / "p.sh", "#!/bin/sh\n#PBS -J 1-3\n#PBS -o fixed.out\n#PBS -j oe\necho\n"))
    assert proc.returncode == 0
    notes = [line for line in proc.stderr.splitlines() if "fixed.out" in line]
    assert notes == ["qsub: note: every element of the array writes -o fixed.out, so each overwrites the last; "
                     "add ^array_index^ (PBS), %a (Slurm) or %I (LSF) to the name"]
    assert "fixed" not in cli("qsub", "-J", "1-2", "-o", "e.^array_index^", "--", "true").stderr


def test_plain_command_keeps_worker_dir_and_hyper_logs(home, tmp_path):
    job_id = submit("--", "pwd")
    rec = wait_finished(job_id)
    assert cli("qlog", job_id).stdout.startswith(f"{home}/local/work/")
    assert rec["output_path"] == f"{home}/local/logs/{job_id}.out"


# ---------------------------------------------------------------- arguments


def test_script_arguments_after_the_script(home, tmp_path):
    args = script(tmp_path / "args.sh", "#!/bin/sh\nfor a in \"$@\"; do echo \"[$a]\"; done\n")
    job_id = submit(args, "a", "b c", "-N")  # options stop at the script: -N is the script's
    wait_finished(job_id)
    assert cli("qlog", job_id).stdout == "[a]\n[b c]\n[-N]\n"
    assert status(job_id)["name"] == "args.sh"


def test_pbs_dash_F_and_double_dash_arguments(home, tmp_path):
    args = script(tmp_path / "args.sh", "echo \"$# $1 $2\"\n")
    first = submit("-F", "x 'y z'", args)
    second = submit(args, "--", "p", "q")
    wait_finished(first), wait_finished(second)
    assert cli("qlog", first).stdout == "2 x y z\n"
    assert cli("qlog", second).stdout == "2 p q\n"
