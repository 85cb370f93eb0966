"""Issue 14: scripts written for PBS, Slurm, LSF and the Cyclone seed run as their authors meant, on the local
host with real processes (qsub -> agent -> worker -> job)."""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import BIN, cli, wait_until


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
    proc = cli("qsub", args, "a", "b c", "-N")  # options stop at the script: -N is the script's
    assert proc.stderr == ("qsub: note: -N after the script are the script's arguments; put qsub options before "
                           "the script\n")
    job_id = proc.stdout.strip()
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


# ---------------------------------------------------------------- retries


def runs_of(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_own_retries_cover_a_non_zero_exit(home, tmp_path):
    runs = tmp_path / "runs"
    job_id = submit("--retries", "2", "--", "sh", "-c", f"echo x >> {runs}; exit 3")
    rec = wait_finished(job_id)
    assert rec["state"] == "FAILED" and rec["attempts"] == 3 and runs_of(runs) == 3
    hyper_runs = tmp_path / "hyper-runs"
    job_id = submit(script(tmp_path / "r.sh", f"#!/bin/sh\n#HYPER -r 1\necho x >> {hyper_runs}\nexit 1\n"))
    assert wait_finished(job_id)["attempts"] == 2 and runs_of(hyper_runs) == 2


def test_definition_retries_cover_lost_workers_only_unless_retry_on_all(home, tmp_path):
    once = tmp_path / "once"
    job_id = submit("--", "sh", "-c", f"echo x >> {once}; exit 5")  # default definition: retries 1 (infra)
    rec = wait_finished(job_id)
    assert (rec["state"], rec["attempts"], rec["retries"], runs_of(once)) == ("FAILED", 1, 1, 1)
    cli("hyper", "definitions", "add-definition", "flaky", "--retries", "1", "--retry-on", "all", "--no-guided",
        check=True)
    assert "retry-on: all" in cli("hyper", "definitions", "list-definitions", "--output", "yaml").stdout
    twice = tmp_path / "twice"
    job_id = submit("-d", "flaky", "--", "sh", "-c", f"echo x >> {twice}; exit 5")
    assert wait_finished(job_id)["attempts"] == 2 and runs_of(twice) == 2


def test_pbs_rerunnable_n_drops_the_default_retries(home):
    job_id = submit("-h", "-r", "n", "--", "true")
    assert status(job_id)["retries"] == 0
    assert status(submit("-h", "-r", "y", "--", "true"))["retries"] == 1  # the definition's (infra only)


# ---------------------------------------------------------------- qsub options


def test_pbs_options_on_the_command_line_are_noted(home):
    proc = cli("qsub", "-h", "-A", "acct", "-m", "abe", "-M", "a@b.c", "-S", "/bin/bash", "-P", "proj", "-k", "oe",
               "-c", "n", "-W", "group_list=g", "-p", "5", "--", "true")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ("qsub: note: no effect here, ignored: -W group_list=g, -A acct, -m abe, -M a@b.c, "
                           "-S /bin/bash, -P proj, -k oe, -c n\n")
    assert status(proc.stdout.strip())["priority"] == 5


def test_interactive_and_x11_are_refused_in_one_line(home):
    for flag in ("-I", "-X"):
        proc = cli("qsub", flag, "--", "true")
        assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1
        assert proc.stderr.startswith(f"qsub: {flag} (")
    assert cli("qstat", "-x").stdout == ""


def test_slurm_long_options_on_qsub(home):
    job_id = submit("-h", "--job-name", "sl", "--partition", "default", "--time", "90", "--mem", "512M",
                    "--cpus-per-task", "1", "--gres", "gpu:0", "--", "true")
    rec = status(job_id)
    assert (rec["name"], rec["queue"], rec["walltime"], rec["memory_mib"], rec["vcpus"]) == \
        ("sl", "default", 5400, 512, 1)


def test_unknown_option_is_one_line_on_every_command(home):
    for command in ("qsub", "qstat", "qdel", "qlog", "qhold", "qrls", "qget"):
        proc = cli(command, "-Z")
        assert proc.returncode == 2, command
        assert proc.stderr == f"{command}: no such option: -Z (see {command} --help)\n"
        near = cli(command, "--install-completio")  # click's suggestion stays on the same line
        assert near.returncode == 2 and len(near.stderr.splitlines()) == 1, near.stderr


def test_version_and_completion_on_every_command(home):
    for command in ("qsub", "qstat", "qdel", "qlog", "qhold", "qrls", "qget", "hyper"):
        version = cli(command, "--version")
        assert version.returncode == 0 and version.stdout.startswith("hyper 0."), command
        assert "--install-completion" in cli(command, "--help").stdout, command
    shown = cli("qstat", "--show-completion", "bash", env={"SHELL": "/bin/bash"})
    script_text = shown.stdout
    assert "_QSTAT_COMPLETE" in script_text, (shown.returncode, shown.stderr)  # (failed once in a full run)


# ---------------------------------------------------------------- qstat


def test_qstat_t_lists_every_subjob_including_queued_ones(home):
    job_id = submit("-h", "-J", "1-4", "--", "true")
    assert cli("qstat", "-t", "--only-job-id-out").stdout.split() == ["1[]", "1[1]", "1[2]", "1[3]", "1[4]"]
    rows = [line.split() for line in cli("qstat", "-t").stdout.splitlines()[2:]]
    assert [r[-2] for r in rows] == ["H"] * 5
    assert cli("qstat", "-t", job_id, "--only-job-id-out").stdout.split() == ["1[]", "1[1]", "1[2]", "1[3]", "1[4]"]


def test_qstat_selectors_and_states(home):
    held = submit("-h", "-N", "waiting_one_with_a_long_name", "--", "true")
    running = submit("-N", "runner", "--", "sleep", "30")
    wait_until(lambda: status(running)["state"] == "RUNNING")
    assert cli("qstat", "-i", "--only-job-id-out").stdout.split() == [held]
    assert cli("qstat", "-r", "--only-job-id-out").stdout.split() == [running]
    assert cli("qstat", "--state", "H,R", "--only-job-id-out").stdout.split() == [held, running]
    assert cli("qstat", "--filter-status", "running", "--only-job-id-out").stdout.split() == [running]
    assert cli("qstat", "--job-name", "runner", "--only-job-id-out", "true").stdout.split() == [running]
    assert cli("qstat", "--only-job-id-out", "false").stdout.splitlines()[0].startswith("Job ID")
    assert "waiting_one_with_a_long_name" in cli("qstat", "-w").stdout
    assert "waiting_one_with_a_long_name" not in cli("qstat").stdout
    assert json.loads(cli("qstat", "-o", "json").stdout)[0]["job_id"] == held
    assert cli("qstat", "--state", "nope").stderr.startswith("qstat: state 'NOPE' is not known")
    cli("qdel", running, check=True)


def test_qstat_unknown_queue_is_an_error(home):
    proc = cli("qstat", "-x", "-q", "nosuchq")
    assert proc.returncode == 1
    assert proc.stderr == "qstat: unknown queue 'nosuchq' (queues on host local: default)\n"


def test_qstat_s_and_f_say_why_a_job_waits(home):
    held = submit("-h", "--", "true")
    first = submit("-h", "--", "true")
    dependent = submit("-W", f"depend=afterok:{first}", "--", "true")
    limited = submit("-J", "1-3%1", "--", "sleep", "30")
    wait_until(lambda: status(f"{limited[:-2]}[1]")["state"] == "RUNNING")
    comments = {line.split()[0]: line for line in cli("qstat", "-s").stdout.splitlines()[2:]}
    assert "Held: held by user (release with qrls)" in comments[held]
    assert f"Dependency: waiting for afterok:{first}" in comments[dependent]
    assert "array limit: 1 of at most 1 elements running" in comments[limited]
    assert f"    comment = Dependency: waiting for afterok:{first}\n" in cli("qstat", "-f", dependent).stdout
    cli("qdel", limited, check=True)


def test_qstat_f_is_in_human_units(home):
    first = submit("-h", "--", "true")
    job_id = submit("-h", "-l", "walltime=1:30:00", "-l", "mem=1gb", "-W", f"depend=afterany:{first}", "--",
                    "sh", "-c", "exit 3")
    text = cli("qstat", "-f", job_id).stdout
    assert "    walltime = 1:30:00\n" in text and "    memory = 1GiB\n" in text
    assert f"    depends = afterany:{first}\n" in text
    assert "    command = sh -c 'exit 3'\n" in text and "[" not in text.split("\n", 1)[1]


def test_qstat_x_keeps_to_a_window_unless_since_says_more(home):
    job_id = submit("--", "true")
    wait_finished(job_id)
    assert cli("qstat", "-x", "--only-job-id-out").stdout.split() == [job_id]
    time.sleep(1.2)
    assert cli("qstat", "-x", "--since", "1", "--only-job-id-out").stdout == ""
    assert cli("qstat", "--since", "1h", "--only-job-id-out").stdout.split() == [job_id]  # --since implies -x
    assert cli("qstat", "-x", "--since", "all", "--only-job-id-out").stdout.split() == [job_id]


def test_qstat_watch_redraws_until_interrupted(home):
    submit("-h", "--", "true")
    proc = subprocess.Popen([str(BIN / "qstat"), "--watch", "0.2"], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 130
    stamps = [line for line in out.splitlines() if line.startswith("--- 20") and line.endswith(" ---")]
    assert len(stamps) >= 3 and out.count("Job ID") == len(stamps)


# ---------------------------------------------------------------- qdel, qhold


def test_qdel_with_nothing_is_quiet(home):
    proc = cli("qdel")
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")


def test_qdel_range_is_one_summary_line(home):
    ids = [submit("-h", "--", "true") for _ in range(6)]
    cli("qdel", ids[0], check=True)
    proc = cli("qdel", "1-10")
    assert proc.returncode == 1  # a finished job among them: the general error, as before
    assert proc.stderr == "qdel: deleted 5 jobs; 1 had finished; 4 unknown ids\n"
    assert cli("qdel", "20-30").returncode == 153  # only unknown ids: PBS's 153


def test_qdel_by_user_state_queue_and_name(home):
    held = submit("-h", "-N", "alpha", "--", "true")
    other = submit("-h", "-N", "beta", "--", "true")
    assert cli("qdel", "-j", "alpha").returncode == 0
    assert status(held)["state"] == "DELETED" and status(other)["state"] == "HELD"
    cli("hyper", "queues", "add-queue", "side", "--cluster", "local", "--no-guided", check=True)
    side = submit("-h", "-q", "side", "--", "true")
    ids = cli("qstat", "-q", "side", "--only-job-id-out", "true").stdout.split()
    assert cli("qdel", "-q", "side", *ids).returncode == 0  # the seed README's idiom
    assert status(side)["state"] == "DELETED" and status(other)["state"] == "HELD"
    assert cli("qdel", "-u", "nobody-else").returncode == 0 and status(other)["state"] == "HELD"
    assert cli("qdel", "--state", "R").returncode == 0 and status(other)["state"] == "HELD"
    assert cli("qdel", "--state", "Q,H", "-u", getpass.getuser()).returncode == 0
    assert status(other)["state"] == "DELETED"


def test_qhold_and_qrls_of_an_unknown_job_exit_153(home):
    for command in ("qhold", "qrls"):
        proc = cli(command, "99999")
        assert proc.returncode == 153 and proc.stderr == f"{command}: unknown job id 99999\n"


# ---------------------------------------------------------------- resources choose the definition


def add_definition(name: str, *options: str) -> None:
    cli("hyper", "definitions", "add-definition", name, *options, "--no-guided", check=True)


def test_resource_requests_pick_the_smallest_fitting_definition(home, tmp_path):
    add_definition("two", "--vcpus", "2", "--memory", "2GiB")
    add_definition("wide", "--vcpus", "2", "--memory", "4GiB")
    add_definition("fat", "--vcpus", "1", "--memory", "6GiB")
    picks = {
        ("-l", "select=1:ncpus=2:mem=2gb"): "two",
        ("--cpus-per-task", "2", "--mem", "3G"): "wide",
        ("-l", "mem=5gb"): "fat",
        ("-l", "ncpus=1"): "default",
    }
    for options, expected in picks.items():
        assert status(submit("-h", *options, "--", "true"))["definition"] == expected, options
    lsf = submit("-h", script(tmp_path / "l.sh", "#!/bin/sh\n#BSUB -n 2\n#BSUB -R 'rusage[mem=3000] span[hosts=1]'\n"
                                                 "true\n"))
    assert status(lsf)["definition"] == "wide"
    slurm = submit("-h", script(tmp_path / "s.sh", "#!/bin/sh\n#SBATCH --cpus-per-task=2 --mem=1G\ntrue\n"))
    assert status(slurm)["definition"] == "two"
    proc = cli("qsub", "-l", "mem=50gb", "--", "true")
    assert proc.returncode == 1 and proc.stderr == (
        "qsub: the job asks for 50GiB of memory but definition 'default' gives 1GiB; no definition on queue "
        "'default' fits, the largest is 'fat' (1 vCPUs, 6GiB, 0 GPUs) (ask for less, or an admin adds a bigger "
        "definition with `hyper definitions add-definition`)\n")


def test_a_definition_bigger_than_the_local_host_is_refused(home):
    cores = os.cpu_count()
    proc = cli("hyper", "definitions", "add-definition", "huge", "--vcpus", str(cores + 2), "--no-guided")
    assert proc.returncode == 1
    assert proc.stderr == (f"hyper definitions: definition 'huge' has {cores + 2} vCPUs but this local host has "
                           f"{cores} cores, so its jobs could never start (use --vcpus {cores} or fewer)\n")
    proc = cli("hyper", "definitions", "add-definition", "huge", "--memory", "100TiB", "--no-guided")
    assert proc.returncode == 1 and "so its jobs could never start" in proc.stderr
    assert "huge" not in cli("hyper", "definitions", "list-definitions").stdout


def test_a_job_that_could_never_run_is_refused_at_submit(home):
    """A definition written before its host shrank (the cap lowered) would queue jobs for ever."""
    add_definition("pair", "--vcpus", "2")
    cli("hyper", "clusters", "update-cluster", "local", "--max-vcpus", "1", check=True)
    proc = cli("qsub", "-d", "pair", "--", "true")
    assert proc.returncode == 1
    assert proc.stderr == ("qsub: definition 'pair' asks for 2 vCPUs and host 'local' has 1, so its jobs could "
                           "never start (pick a smaller definition with -d NAME (hyper definitions "
                           "list-definitions))\n")
    assert cli("qstat", "-x").stdout == ""


def test_local_gpus_are_never_shared(home, tmp_path, monkeypatch):
    monkeypatch.setenv("HYPER_LOCAL_GPUS", "2")
    add_definition("gpu", "--gpus", "1")
    locks = tmp_path / "locks"
    locks.mkdir()
    body = (f'echo "gpu=$CUDA_VISIBLE_DEVICES"; mkdir {locks}/gpu$CUDA_VISIBLE_DEVICES || echo CLASH; '
            f'sleep 1; rmdir {locks}/gpu$CUDA_VISIBLE_DEVICES')
    gpu_jobs = [submit("-l", "ngpus=1", "--", "sh", "-c", body) for _ in range(4)]
    cpu_job = submit("--", "sh", "-c", 'echo "gpu=[${CUDA_VISIBLE_DEVICES-unset}]"')
    for job_id in gpu_jobs:
        assert wait_finished(job_id)["definition"] == "gpu"
    seen = [cli("qlog", j).stdout for j in gpu_jobs]
    assert sorted(set(seen)) == ["gpu=0\n", "gpu=1\n"], seen  # both GPUs used, each job on its own
    wait_finished(cpu_job)
    assert cli("qlog", cpu_job).stdout == "gpu=[]\n"  # a CPU job sees no GPU at all


def test_memory_is_enforced_and_the_reason_says_so(home):
    """RSS of the job's session is watched (cgroup v1/hybrid here: no delegated v2 memory controller)."""
    hog = "import time; x = bytearray(400 * 1024 * 1024); time.sleep(5); print('survived')"
    proc = cli("qsub", "--wait", "-l", "mem=100mb", "--", sys.executable, "-c", hog)
    assert proc.returncode == 137
    rec = status(proc.stdout.strip())
    assert rec["state"] == "FAILED" and rec["exit_code"] == 137
    assert rec["reason"].startswith("killed for memory: ") and rec["reason"].endswith("limit 100 MiB")
    assert "survived" not in cli("qlog", proc.stdout.strip()).stdout
    within = cli("qsub", "--wait", "-l", "mem=600mb", "--", sys.executable, "-c",
                 "x = bytearray(300 * 1024 * 1024); print('ok')")
    assert within.returncode == 0


def test_resources_and_priority_are_the_reasons_on_a_full_cluster(home):
    cli("hyper", "clusters", "add-cluster", "one", "--type", "local", "--max-vcpus", "1", check=True)
    cli("hyper", "queues", "add-queue", "low", "--cluster", "one", "--no-guided", check=True)
    cli("hyper", "queues", "add-queue", "urgent", "--cluster", "one", "--priority", "50", "--no-guided",
        check=True)
    busy = submit("-q", "low", "--", "sleep", "60")
    wait_until(lambda: status(busy)["state"] == "RUNNING")
    urgent = submit("-q", "urgent", "--", "true")
    low = submit("-q", "low", "--", "true")
    assert "    comment = Resources: 1 of 1 vCPUs of cluster one are busy\n" in cli("qstat", "-f", urgent).stdout
    assert ("    comment = Priority: queue urgent (priority 50) has 1 queued task(s) on cluster one\n"
            in cli("qstat", "-f", low).stdout)
    cli("qdel", busy, urgent, low, check=True)


def test_ctrl_c_during_wait_says_the_job_keeps_running(home):
    proc = subprocess.Popen([str(BIN / "qsub"), "--wait", "--", "sleep", "60"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    wait_until(lambda: cli("qstat", "-r", "--only-job-id-out").stdout.strip())
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130 and out == "1\n"
    assert err == "qsub: stopped waiting; 1 keeps running (qdel 1 stops it)\n"
    assert status("1")["state"] == "RUNNING"
    cli("qdel", "1", check=True)


def test_qstat_t_never_shows_finished_or_deleted_elements_as_queued(home):
    held = submit("-h", "-J", "1-4", "--", "true")
    cli("qdel", "1[2]", check=True)
    assert cli("qstat", "-t", "--only-job-id-out").stdout.split() == ["1[]", "1[1]", "1[3]", "1[4]"]
    cli("qdel", held, check=True)
    running = submit("-J", "1-4%1", "--", "sh", "-c", "test $PBS_ARRAY_INDEX -lt 3 || sleep 30")
    base = running[:-2]
    wait_until(lambda: status(f"{base}[3]")["state"] == "RUNNING")
    rows = [line.split() for line in cli("qstat", "-t").stdout.splitlines()[2:]]
    assert [(r[0], r[-2]) for r in rows] == [(running, "B"), (f"{base}[3]", "R"), (f"{base}[4]", "Q")]
    cli("qdel", running, check=True)


def test_every_filename_pattern_expands():
    from hyper.models import Job
    from hyper.outputs import expand_path

    element = Job(id=12, index=3, name="sweep", user="ann", array="1-5")
    host = os.uname().nodename.split(".")[0]
    assert expand_path("%j|%A|%a|%x|%u|%N|%J|%I|^array_index^|%%", element) == f"12_3|12|3|sweep|ann|{host}|12|3|3|%"
    single = Job(id=7, name="one", user="ann")
    assert expand_path("out.%J.%I|%j|%a|^array_index^", single) == "out.7.0|7||"  # LSF's %I is 0 outside arrays


def test_pbs_join_eo_writes_the_error_file(home, tmp_path):
    job_id = submit(script(tmp_path / "p.sh", "#!/bin/sh\n#PBS -N both\n#PBS -j eo\necho out; echo err >&2\n"))
    wait_finished(job_id)
    assert (tmp_path / f"both.e{job_id}").read_text() == "out\nerr\n"
    assert not (tmp_path / f"both.o{job_id}").exists()
