"""`hyper` admin commands on the embedded local host: exact output, exit codes, one-line errors, no partial state."""

from __future__ import annotations

import json
import os
import stat

import yaml
from typer.testing import CliRunner

from hyper.cli.app import app
from qcmds import qsub

runner = CliRunner()


def hyper(*args, input=None):
    return runner.invoke(app, list(args), input=input)


def ok(*args, input=None) -> str:
    result = hyper(*args, input=input)
    assert result.exit_code == 0, result.stderr
    return result.stdout


def fails(*args, code: int = 1) -> str:
    """The one line on stderr of a refused command (and no traceback)."""
    result = hyper(*args)
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_fresh_local_host_lists_its_defaults(home):
    assert ok("queues", "list-queues") == (
        "Queue   Cluster Weights Priority Status Message\n"
        "------- ------- ------- -------- ------ -------\n"
        "default local           0        ACTIVE\n")
    cores = os.cpu_count()
    assert ok("clusters", "list-clusters").splitlines()[2].split() == ["local", "local", "no", "0", str(cores), "0",
                                                                       "ACTIVE"]
    data = json.loads(ok("definitions", "list-definitions", "--output", "json"))
    assert data == [{"name": "default", "image": "local", "vcpus": 1, "memory": "1GiB", "gpus": 0, "retries": 1,
                     "ratio": 1, "status": "ACTIVE", "message": ""}]


def test_add_update_list_delete_definition(home):
    assert ok("definitions", "add-definition", "big", "--vcpus", "2", "--memory", "4GiB", "--ratio", "10",
              "--timeout", "1:00:00", "--environment", "A=1,B=2") == "added definition big (ACTIVE)\n"
    assert ok("definitions", "update-definition", "big", "--memory", "8g") == "updated definition big (ACTIVE)\n"
    assert ok("definitions", "list-definitions", "-o", "csv") == (
        "Definition,Image,vCPUs,Memory,GPUs,Timeout,Retries,Ratio,Status,Message\n"
        "big,local,2,8GiB,0,01:00:00,0,10,ACTIVE,\n"
        "default,local,1,1GiB,0,,1,1,ACTIVE,\n")
    body = yaml.safe_load(ok("definitions", "list-definitions", "-o", "yaml"))
    assert body[0]["environment"] == {"A": "1", "B": "2"}
    # the definition is usable at once
    assert qsub_ok("-d", "big", "-h", "--", "true") == "1\n"
    assert fails("definitions", "delete-definition", "big") == (
        "hyper definitions: definition 'big' is in use by 1 held job(s) (delete those first, or add --force to "
        "orphan them)")
    assert ok("definitions", "delete-definition", "big", "--force") == (
        "deleted definition big; orphaned: 1 held job(s)\n")
    assert "big" not in ok("definitions", "list-definitions")


def qsub_ok(*args) -> str:
    result = runner.invoke(qsub.app, list(args))
    assert result.exit_code == 0, result.stderr
    return result.stdout


def test_bad_values_are_one_line_and_write_nothing(home):
    before = ok("export")
    assert fails("definitions", "add-definition", "d", "--ratio", "0", code=2) == (
        "hyper definitions: ratio 0 is out of range (give 1 or more)")
    assert fails("definitions", "add-definition", "d", "--memory", "5x", code=2) == (
        "hyper definitions: memory '5x' does not parse (write e.g. 512mb, 4gb, 4G or 16GiB)")
    assert fails("definitions", "add-definition", "d", "--vcpus", "two", code=2) == (
        "hyper definitions: vcpus must be a whole number, not 'two' (e.g. vcpus: 1)")
    assert fails("definitions", "add-definition", "d", "--image", "nope") == (
        "hyper definitions: definition 'd' names image 'nope', which does not exist (images: none; add one with "
        "`hyper images add-image` or use --image local)")
    assert fails("queues", "add-queue", "q", "--cluster", "nope") == (
        "hyper queues: queue 'q' names cluster 'nope', which does not exist (clusters: local; add one with "
        "`hyper clusters add-cluster`)")
    assert fails("queues", "add-queue", "default") == (
        "hyper queues: queue 'default' already exists (change it with `hyper queues update-queue default` or pick "
        "another name)")
    assert fails("queues", "add-queue", "9lives", code=2) == (
        "hyper queues: queue name '9lives' is not valid (start with a letter; letters, digits, - and _ only; at "
        "most 63 characters)")
    assert fails("queues", "update-queue", "nope", "--priority", "1") == (
        "hyper queues: unknown queue 'nope' (list them with `hyper queues list-queues`)")
    assert fails("clusters", "add-cluster", "c", "--type", "batch") == (
        "hyper clusters: cluster 'c' is of type batch but this host is local (use --type local, or create an aws "
        "host with `hyper hosts create-host`)")
    assert fails("clusters", "add-cluster", "c", "--min-vcpus", "8", "--max-vcpus", "4") == (
        "hyper clusters: cluster 'c': min-vcpus 8 exceeds max-vcpus 4 (raise --max-vcpus or lower --min-vcpus)")
    assert fails("regions", "add-region", "us-east-1") == (
        "hyper regions: regions are for aws hosts; a local host runs jobs on this machine (create an aws host "
        "with `hyper hosts create-host NAME --type aws --main-region ...`)")
    assert fails("definitions", "update-definition", "default", code=2) == (
        "hyper definitions: nothing to change in definition 'default' (give at least one option; see "
        "`hyper definitions update-definition --help`)")
    assert ok("export") == before


def test_cluster_in_use_needs_force_and_qsub_then_says_why(home):
    assert ok("queues", "add-queue", "fast", "--priority", "5") == "added queue fast (ACTIVE)\n"
    assert fails("clusters", "delete-cluster", "local") == (
        "hyper clusters: cluster 'local' is in use by queue default, queue fast (delete those first, or add "
        "--force to orphan them)")
    assert ok("clusters", "delete-cluster", "local", "--force") == (
        "deleted cluster local; orphaned: queue default, queue fast\n")
    result = runner.invoke(qsub.app, ["-q", "fast", "--", "true"])
    assert result.exit_code == 1
    assert result.stderr == ("qsub: queue 'fast' has no compute: its cluster 'local' was deleted (an admin can fix "
                             "it with `hyper queues update-queue fast --cluster NAME`)\n")
    assert ok("clusters", "add-cluster", "local") == "added cluster local (ACTIVE)\n"
    assert qsub_ok("-q", "fast", "-h", "--", "true") == "1\n"


def test_guided_prompt_asks_for_missing_fields_with_defaults(home):
    # answers: cluster (default local), weights (empty), priority 7
    result = hyper("queues", "add-queue", "asked", "--guided", input="\n\n7\n")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "added queue asked (ACTIVE)"
    assert "cluster (cluster whose compute runs the queue's jobs) [local]:" in result.stdout
    rows = yaml.safe_load(ok("queues", "list-queues", "-o", "yaml"))
    assert {"name": "asked", "cluster": "local", "priority": 7, "status": "ACTIVE", "message": ""} in rows
    # a bad answer is explained and asked again
    result = hyper("definitions", "add-definition", "g", "--guided", "--image", "local",
                   input="\nlots\n2GiB\n\n\n\n\n")
    assert result.exit_code == 0, result.stderr
    assert "memory 'lots' does not parse" in result.stderr
    assert "g,local,1,2GiB" in ok("definitions", "list-definitions", "-o", "csv")


def test_hosts_create_list_select_delete_local(home):
    assert ok("hosts", "create-host", "lab") == f"created local host lab ({home / 'hosts' / 'lab'}); selected\n"
    mode = stat.S_IMODE((home / "hosts.yaml").stat().st_mode)
    assert mode == 0o600
    assert ok("hosts", "list-hosts") == (
        "  Host  Type  Main region Profile Endpoint State\n"
        "- ----- ----- ----------- ------- -------- " + "-" * len(str(home / "hosts" / "lab")) + "\n"
        f"  local local                              {home / 'local'}\n"
        f"* lab   local                              {home / 'hosts' / 'lab'}\n")
    # jobs go to the selected host; --host and HYPER_HOST override it
    assert qsub_ok("-h", "--", "true") == "1\n"
    assert qsub_ok("--host", "local", "-h", "--", "true") == "1\n"
    assert fails("hosts", "create-host", "lab") == (
        "hyper hosts: host 'lab' already exists (pick another name, or select it with `hyper hosts select-host "
        "lab`)")
    assert fails("hosts", "create-host", "Lab!", code=2).startswith("hyper hosts: host name 'Lab!' is not valid")
    assert fails("hosts", "create-host", "x", "--type", "aws", code=2) == (
        "hyper hosts: an aws host needs a main region (where its tables live) (add --main-region us-east-1)")
    assert fails("hosts", "create-host", "x", "--type", "aws", "--main-region", "mars-1", code=2) == (
        "hyper hosts: 'mars-1' is not an AWS region name (e.g. us-east-1, eu-west-1, ap-southeast-2)")
    assert fails("hosts", "select-host", "nope") == "hyper hosts: unknown host 'nope' (known hosts: lab, local)"
    assert ok("hosts", "select-host", "local") == "selected host local\n"
    # no terminal to confirm on: nothing is deleted
    assert fails("hosts", "delete-host", "lab", "--purge") == (
        "hyper hosts: nothing deleted: confirmation needs a terminal (pass --yes in scripts)")
    assert (home / "hosts" / "lab" / "hyper.db").exists()
    assert ok("hosts", "delete-host", "lab", "--purge", "--yes").endswith(
        f"deleted host lab; removed directory {home / 'hosts' / 'lab'}\n")
    assert not (home / "hosts" / "lab").exists()
    assert "lab" not in ok("hosts", "list-hosts")
    assert fails("hosts", "delete-host", "local", "--yes") == (
        "hyper hosts: the local host is built in and cannot be forgotten (add --purge to erase its jobs and "
        "resources)")


def test_apply_and_export_round_trip(home, tmp_path):
    conf = tmp_path / "conf"
    conf.mkdir()
    (conf / "a.yaml").write_text(
        "# comments and empty documents are fine\n"
        "queues:\n"
        "  - name: gpu\n"
        "    priority: 3\n"
        "definitions:\n"
        "  - name: train\n"
        "    vcpus: 2\n"
        "    memory: 2GiB\n"
        "    ratio: 5\n"
        "    timeout: 2h\n")
    (conf / "b.yml").write_text("clusters:\n  - name: big\n    max-vcpus: 2\n---\n")
    assert ok("apply", "-f", str(conf), "--dry-run") == (
        "cluster big: would create\nqueue gpu: would create\ndefinition train: would create\n"
        "3 resources, 3 to change\n")
    assert "train" not in ok("definitions", "list-definitions")
    assert ok("apply", "-f", str(conf)) == (
        "cluster big: created\nqueue gpu: created\ndefinition train: created\n3 resources, 3 changed\n")
    assert "train,local,2,2GiB,0,02:00:00,0,5,ACTIVE," in ok("definitions", "list-definitions", "-o", "csv")
    assert ok("apply", "-f", str(conf)).endswith("3 resources, 0 changed\n")
    # declarative: a key left out goes back to its default
    (conf / "a.yaml").write_text("queues:\n  - name: gpu\n")
    assert ok("apply", "-f", str(conf / "a.yaml")) == "queue gpu: updated\n1 resources, 1 changed\n"
    exported = tmp_path / "all.yaml"
    assert ok("export", "--file", str(exported)) == f"wrote {exported}\n"
    body = yaml.safe_load(exported.read_text())
    assert [q["name"] for q in body["queues"]] == ["default", "gpu"]
    assert ok("apply", "-f", str(exported)).endswith("6 resources, 0 changed\n")


def test_apply_errors_name_file_and_line_and_write_nothing(home, tmp_path):
    f = tmp_path / "q.yaml"
    before = ok("export")
    f.write_text("queues:\n  - name: ok1\n  - name: gpu\n    wieghts: {a: 1}\n")
    assert fails("apply", "-f", str(f), code=2) == (
        f"hyper apply: {f}:4: unknown queue key 'wieghts' (queue keys: cluster, max-cost-per-hour, name, priority, "
        "weights)")
    f.write_text("queus:\n  - name: gpu\n")
    assert fails("apply", "-f", str(f), code=2) == (
        f"hyper apply: {f}:1: unknown section 'queus' (use one of regions, clusters, images, queues, definitions)")
    f.write_text("definitions:\n  - name: d\n    memory: lots\n")
    assert fails("apply", "-f", str(f), code=2) == (
        f"hyper apply: {f}:2: definition d: memory 'lots' does not parse (write e.g. 512mb, 4gb, 4G or 16GiB)")
    f.write_text("queues:\n  - name: ok2\n  - name: q\n    cluster: missing\n")
    assert fails("apply", "-f", str(f)) == (
        f"hyper apply: {f}:3: queue 'q' names cluster 'missing', which does not exist (clusters: local; add one "
        "with `hyper clusters add-cluster`)")
    f.write_text("queues:\n  - name: a\n  - name: a\n")
    assert fails("apply", "-f", str(f), code=2) == (
        f"hyper apply: {f}:3: queue 'a' is also defined at {f}:2 (keep one of them)")
    f.write_text("queues: [\n")
    assert fails("apply", "-f", str(f), code=2).startswith(f"hyper apply: {f}:2: not valid YAML")
    assert fails("apply", "-f", str(tmp_path / "none.yaml"), code=2) == (
        f"hyper apply: no such file or directory: {tmp_path / 'none.yaml'} (check the path given to -f)")
    assert ok("export") == before  # ok1 and ok2 were valid, but nothing is written when anything is wrong


def test_gpu_definition_on_a_queue_without_gpus_is_refused_at_qsub(home, monkeypatch):
    monkeypatch.setenv("HYPER_LOCAL_GPUS", "0")
    ok("definitions", "add-definition", "gpu", "--gpus", "1")
    result = runner.invoke(qsub.app, ["-d", "gpu", "--", "nvidia-smi"])
    assert result.exit_code == 1
    assert result.stderr == ("qsub: definition 'gpu' wants 1 GPU(s) per worker but queue 'default' runs on cluster "
                             "'local' with 0 per instance (submit to a GPU queue (-q), or pick a definition with "
                             "fewer GPUs (-d))\n")
    ok("clusters", "update-cluster", "local", "--gpus-per-instance", "1")
    assert qsub_ok("-h", "-d", "gpu", "--", "nvidia-smi") == "1\n"


def test_bad_numbers_and_host_settings_are_one_line(home):
    assert fails("queues", "add-queue", "qa", "--priority=--5", code=2) == (
        "hyper queues: priority must be a whole number, not '--5' (e.g. priority: 1)")
    assert fails("definitions", "add-definition", "da", "--vcpus", "²", code=2) == (
        "hyper definitions: vcpus must be a whole number, not '²' (e.g. vcpus: 1)")
    assert fails("hosts", "create-host", "h6", "--setting", "name=zzz", code=2) == (
        "hyper hosts: --setting is for aws hosts (shards, retries, scheduler timing), except admins and env_deny "
        "(drop it, or use --type aws)")
    assert not (home / "hosts.yaml").exists()
    (home / "hosts.yaml").write_text("hosts:\n  bad: [1, 2]\n")
    assert fails("hosts", "list-hosts") == (
        f"hyper hosts: {home / 'hosts.yaml'}: host 'bad' is not a mapping (fix the file or remove that host)")
    (home / "hosts.yaml").write_text("hosts:\n  odd:\n    name: zzz\n    type: local\n")
    assert "odd" in ok("hosts", "list-hosts")  # a stray name key is ignored: the mapping key names the host


def test_host_settings_are_checked_before_anything_is_created(home):
    from hyper.services.hosts import check_settings

    assert check_settings("aws", {"index_shards": "32", "retry_mode": "adaptive"}) == {
        "index_shards": 32, "retry_mode": "adaptive"}
    for bad, message in (({"name": "x"}, "unknown host setting 'name'"),
                         ({"type": "aws"}, "unknown host setting 'type'"),
                         ({"index_shards": "abc"}, "host setting index_shards='abc' is not valid"),
                         ({"retry_mode": "sometimes"}, "host setting retry_mode='sometimes' is not valid")):
        try:
            check_settings("aws", bad)
        except Exception as exc:  # noqa: BLE001 - the message is what is checked
            assert exc.message == message
        else:
            raise AssertionError(f"{bad} was accepted")


def test_yaml_values_of_the_wrong_shape_are_named(home, tmp_path):
    f = tmp_path / "d.yaml"
    f.write_text("definitions:\n  - name: 5\n")
    assert fails("apply", "-f", str(f), code=2) == (
        f"hyper apply: {f}:2: definition name 5 must be text (quote it: name: \"5\")")
    f.write_text("definitions:\n  - name: d\n    environment: {A: {b: 1}}\n")
    assert fails("apply", "-f", str(f), code=2) == (
        f"hyper apply: {f}:2: definition d: environment 'A' must be a plain value, not a dict "
        "(e.g. environment: {A: \"1\"})")
    # guided mode checks the name before asking anything
    assert fails("queues", "add-queue", "default", "--guided") == (
        "hyper queues: queue 'default' already exists (change it with `hyper queues update-queue default` or "
        "pick another name)")
