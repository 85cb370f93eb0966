"""Issue 11 on the embedded local host, with real processes: credentials never leave the submitter, the
owner is the OS user of the uid, and qdel/qhold/qrls/qlog of another user's job are refused."""

from __future__ import annotations

import json
import pwd
import os
import sqlite3

import yaml

from tests.conftest import cli, wait_until

ME = pwd.getpwuid(os.getuid()).pw_name
SECRETS = {"AWS_SECRET_ACCESS_KEY": "aws-s3cr3t-value", "GITHUB_TOKEN": "ghp-t0ken-value",
           "DB_PASSWORD": "pa55-value", "STRIPE_API_KEY": "sk-live-value"}


def record(job_id: str) -> dict:
    return json.loads(cli("qstat", "-x", "-f", "--output", "json", job_id, check=True).stdout)[0]


def finished(job_id: str) -> dict:
    return wait_until(lambda: (r := record(job_id))["state"] in ("SUCCEEDED", "FAILED", "DELETED") and r)


def test_sbatch_export_all_keeps_credentials_out_of_the_record_and_the_job(home, tmp_path):
    script = tmp_path / "sb.sh"
    script.write_text("#!/bin/sh\n#SBATCH -J leak\n"
                      'echo "aws=$AWS_SECRET_ACCESS_KEY gh=$GITHUB_TOKEN db=$DB_PASSWORD api=$STRIPE_API_KEY '
                      'extra=$PLAIN_SETTING"\n')
    proc = cli("qsub", str(script), env={**SECRETS, "PLAIN_SETTING": "kept"})
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    notes = [line for line in proc.stderr.splitlines() if "credentials never leave" in line]
    assert len(notes) == 1, proc.stderr
    assert all(name in notes[0] for name in SECRETS) and not any(v in proc.stderr for v in SECRETS.values())
    assert finished(job_id)["state"] == "SUCCEEDED"
    assert cli("qlog", job_id).stdout == "aws= gh= db= api= extra=kept\n"  # Slurm's export-all still holds here
    database = (home / "local" / "hyper.db").read_bytes() + b"".join(
        p.read_bytes() for p in (home / "local").glob("hyper.db-*"))
    assert not any(v.encode() in database for v in SECRETS.values())


def test_explicit_v_of_a_secret_is_dropped_and_a_host_extends_the_deny_list(home, tmp_path):
    home.mkdir(parents=True, exist_ok=True)
    (home / "hosts.yaml").write_text(yaml.safe_dump({"selected": "local", "hosts": {
        "local": {"type": "local", "env_deny": ["CORP_*"]}}}))
    proc = cli("qsub", "-v", "API_KEY=sekrit,CORP_ID,OK=1", "--", "sh", "-c", 'echo "[$API_KEY][$CORP_ID][$OK]"',
               env={"CORP_ID": "internal"})
    assert proc.returncode == 0, proc.stderr
    assert "qsub: note: not passed to the job (credentials never leave the submitter): API_KEY, CORP_ID\n" \
        in proc.stderr
    job_id = proc.stdout.strip()
    finished(job_id)
    assert cli("qlog", job_id).stdout == "[][][1]\n"


def test_the_owner_is_the_uid_not_logname(home):
    job_id = cli("qsub", "-h", "--", "true", env={"LOGNAME": "bob", "USER": "bob"}, check=True).stdout.strip()
    assert record(job_id)["user"] == ME
    cli("qdel", job_id, check=True)


def _give_to(home, job_id: str, owner: str) -> None:
    """A job recorded as another user's (as a spoofed $LOGNAME could record it before this fix)."""
    con = sqlite3.connect(home / "local" / "hyper.db")
    with con:
        con.execute("UPDATE jobs SET user = ? WHERE id = ?", (owner, int(job_id)))
    con.close()


def test_qdel_qhold_qrls_qlog_of_another_users_job_are_refused_unless_admin(home):
    job_id = cli("qsub", "-h", "--", "echo", "alice's output", check=True).stdout.strip()
    _give_to(home, job_id, "alice")
    (home / "hosts.yaml").write_text(yaml.safe_dump({"selected": "local", "hosts": {
        "local": {"type": "local", "admins": []}}}))  # nobody is an admin of this host, not even root
    for command in ("qdel", "qrls", "qhold"):
        proc = cli(command, job_id)
        verb = {"qdel": "delete", "qrls": "release", "qhold": "hold"}[command]
        assert (proc.returncode, proc.stderr) == (
            1, f"{command}: job {job_id} belongs to alice: only its owner or an admin may {verb} it\n")
    proc = cli("qlog", job_id)
    assert proc.returncode == 1 and proc.stderr.startswith(
        f"qlog: job {job_id} belongs to alice: only its owner or an admin may read the output of it")
    assert record(job_id)["state"] == "HELD"
    # an admin of the host (by default root, as a PBS manager) may act on anyone's job
    (home / "hosts.yaml").write_text(yaml.safe_dump({"selected": "local", "hosts": {
        "local": {"type": "local", "admins": [ME]}}}))
    cli("qdel", job_id, check=True)
    assert record(job_id)["state"] == "DELETED"


def _mode(path) -> int:
    return os.stat(path, follow_symlinks=False).st_mode & 0o777


def test_hyper_home_is_private_whatever_the_umask(home, tmp_path):
    import subprocess

    from tests.conftest import BIN

    proc = subprocess.run(["sh", "-c", f'umask 000; exec "{BIN}/qsub" -- sh -c "echo out; echo err >&2"'],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    job_id = proc.stdout.strip()
    assert finished(job_id)["state"] == "SUCCEEDED"
    data = home / "local"
    dirs = [home, data, data / "logs", *sorted((data / "work").glob("slot-*"))]
    assert len(dirs) >= 4
    assert {str(d): _mode(d) for d in dirs} == {str(d): 0o700 for d in dirs}
    files = [data / "hyper.db", data / "agent.log", data / "logs" / f"{job_id}.out", data / "logs" / f"{job_id}.err",
             *[p for p in (data / "hyper.db-wal", data / "hyper.db-shm") if p.exists()]]
    assert {str(f): _mode(f) for f in files} == {str(f): 0o600 for f in files}


def test_output_files_are_0600_and_never_followed_through_a_symlink(home, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "trap.out").symlink_to(victim)
    trapped = cli("qsub", "-o", str(shared / "trap.out"), "--", "echo", "overwritten", check=True).stdout.strip()
    fine = cli("qsub", "-o", str(shared / "mine.out"), "--", "echo", "mine", check=True).stdout.strip()
    rec = finished(trapped)
    assert rec["state"] == "FAILED" and "cannot open output file" in rec["reason"]
    assert victim.read_text() == "precious\n"
    assert finished(fine)["state"] == "SUCCEEDED"
    assert (shared / "mine.out").read_text() == "mine\n" and _mode(shared / "mine.out") == 0o600


def test_hosts_yaml_is_0600_even_over_a_leftover_or_planted_tmp_file(home, tmp_path):
    home.mkdir(parents=True, exist_ok=True)
    leftover = home / "hosts.tmp"
    leftover.write_text("old\n")
    os.chmod(leftover, 0o644)
    cli("hyper", "hosts", "create-host", "second", check=True)
    assert _mode(home / "hosts.yaml") == 0o600
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    (home / "hosts.tmp").symlink_to(victim)
    cli("hyper", "hosts", "select-host", "local", check=True)
    assert victim.read_text() == "precious\n" and _mode(home / "hosts.yaml") == 0o600


def test_sweep_values_are_never_read_as_shell_syntax(home, tmp_path):
    evil = '0.1"; echo INJECTED-$(id -un); #'
    params = tmp_path / "p.jsonl"
    params.write_text(json.dumps({"lr": evil}) + "\n" + json.dumps({"lr": "a b"}) + "\n")
    script = tmp_path / "train.sh"
    script.write_text('#!/bin/bash\necho "quoted={lr}"\necho bare={lr}\nprintf "%s\\n" "$HYPER_PARAM_lr"\n')
    ids = cli("qsub", "--sweep", str(params), str(script), check=True).stdout.split()
    for job_id in ids:
        assert finished(job_id)["state"] == "SUCCEEDED"
    first, second = (cli("qlog", i).stdout for i in ids)
    assert not any(line.startswith("INJECTED-") for line in first.splitlines())
    assert first.splitlines() == [f"quoted={evil}", f"bare={evil}", evil]
    assert second.splitlines() == ["quoted=a b", "bare=a b", "a b"]


def test_sweep_into_a_python_script_substitutes_the_value():
    from hyper.services.submission import runs_in_a_shell, substitute

    assert not runs_in_a_shell("#!/usr/bin/env python3\nlr = {lr}\n")
    assert runs_in_a_shell("#!/usr/bin/env -S bash -e\n") and runs_in_a_shell("echo {lr}\n")
    assert substitute("lr = {lr}\n", {"lr": 0.5}, "s") == "lr = 0.5\n"
    assert substitute("echo {lr} ${HOME}\n", {"lr": 0.5}, "s", shell=True) == "echo ${HYPER_PARAM_lr} ${HOME}\n"


def test_local_settings_admins_and_env_deny_are_kept_in_hosts_yaml(home):
    proc = cli("hyper", "hosts", "create-host", "lab", "--setting", "admins=alice,bob", "--setting",
               "env_deny=CORP_*")
    assert proc.returncode == 0, proc.stderr
    body = yaml.safe_load((home / "hosts.yaml").read_text())
    assert body["hosts"]["lab"] == {"type": "local", "admins": ["alice", "bob"], "env_deny": ["CORP_*"]}
    bad = cli("hyper", "hosts", "create-host", "lab2", "--setting", "index_shards=4")
    assert bad.returncode == 2 and "--setting is for aws hosts" in bad.stderr
    # the implicit local host's settings survive the next save of hosts.yaml
    body["hosts"]["local"] = {"type": "local", "admins": []}
    (home / "hosts.yaml").write_text(yaml.safe_dump(body))
    cli("hyper", "hosts", "select-host", "local", check=True)
    assert yaml.safe_load((home / "hosts.yaml").read_text())["hosts"]["local"] == {"type": "local", "admins": []}
