"""What a q-command's fast path may import (issue 15: qsub/qstat/qdel/qlog start in at most 4x `python -c pass`).

Start-up is almost all imports, so the budget is kept as a list of modules each path must not load, checked in a
fresh interpreter per command (sys.modules after the command ran), not by timing: typer, click and rich (the fast
path and the cached --help exist to skip them), boto3 and yaml (not on a fresh local host), decimal (DynamoDB
attributes only), and for qstat/qdel/qlog what only qsub needs -- directive parsing, environment planning,
backends -- the array parser when no element id is given, and the resource kinds they never read
(hyper/resource_records.py: each dataclass costs about a millisecond to create).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

NEVER = ("typer", "click", "rich", "boto3", "botocore", "yaml", "decimal", "hyper.aws.attributes")
QSUB_ONLY = ("hyper.services.submission", "hyper.parsing.directives", "hyper.services.environment",
             "hyper.backends", "hyper.services.options", "shlex")
NOT_FOR_PLAIN_IDS = ("hyper.parsing.arrays", "hyper.resource_records")  # element ids; clusters, definitions...

DRIVER = """
import json, sys
from qcmds.launch import launch
sys.argv = sys.argv[1:]  # [prog, args...], as the console script sees them
try:
    launch(sys.argv[0])
finally:
    sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def run(home: Path, prog: str, *argv: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`prog argv` as the console script runs it (qcmds.launch), in a fresh interpreter; its loaded modules."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_COMPLETE") and k not in ("HYPER_HOST",
                                                                                              "HYPER_NO_FASTPATH")}
    proc = subprocess.run([sys.executable, "-c", DRIVER, prog, *argv], capture_output=True, text=True,
                          env={**env, "HYPER_HOME": str(home), "COLUMNS": "100"}, cwd=home.parent, timeout=60)
    marker = proc.stderr.rpartition("\nMODULES ")[2]
    return proc, set(json.loads(marker))


@pytest.fixture(scope="module")
def held_home(tmp_path_factory) -> Path:
    """A fresh local host with a held job (1) and a held array (2[]): nothing runs, no agent starts."""
    home = tmp_path_factory.mktemp("budget") / "hyper-home"
    for argv in (["-h", "--", "true"], ["-h", "-J", "1-3", "--", "true"]):
        proc, _ = run(home, "qsub", *argv)
        assert proc.returncode == 0, proc.stderr
    return home


def loaded(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if n in modules or any(m.startswith(n + ".") for m in modules))


@pytest.mark.parametrize("prog, argv", [("qstat", []), ("qstat", ["1"]), ("qstat", ["-Q"]), ("qdel", ["999999"]),
                                        ("qlog", ["1"])])
def test_qstat_qdel_qlog_load_neither_typer_nor_what_only_qsub_needs(held_home, prog, argv):
    proc, modules = run(held_home, prog, *argv)
    assert "Traceback" not in proc.stderr
    assert loaded(modules, NEVER + QSUB_ONLY + NOT_FOR_PLAIN_IDS) == []


def test_qsub_loads_no_cli_framework_nor_aws(held_home):
    proc, modules = run(held_home, "qsub", "-h", "--", "true")
    assert proc.returncode == 0, proc.stderr
    assert loaded(modules, NEVER + ("hyper.parsing.arrays",)) == []  # no -J: no array parser
    assert "hyper.services.submission" in modules  # the check sees the path that submits


def test_element_ids_still_parse_arrays(held_home):
    """The array parser is deferred, not dropped: an element id loads it and finds the element."""
    proc, modules = run(held_home, "qstat", "2[1]")
    assert proc.returncode == 0, proc.stderr
    assert "2[1]" in proc.stdout and "hyper.parsing.arrays" in modules


@pytest.mark.parametrize("prog", ["qsub", "qstat", "qdel", "qlog"])
def test_help_from_the_cache_loads_no_cli_framework_nor_the_store(held_home, prog):
    first, _ = run(held_home, prog, "--help")  # renders with typer and keeps the copy
    second, modules = run(held_home, prog, "--help")
    assert first.returncode == second.returncode == 0 and second.stdout == first.stdout
    assert loaded(modules, NEVER + ("dataclasses", "sqlite3", "hyper.models", "hyper.store")) == []


LEAN_DRIVER = """
import json, runpy, sys
sys.argv = ["hyper"] + sys.argv[1:]
try:
    runpy.run_module("hyper.cli", run_name="__main__", alter_sys=True)
finally:
    sys.stderr.write("\\nMODULES " + json.dumps(sorted(sys.modules)) + "\\n")
"""


def run_hyper(home: Path, *argv: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`python -m hyper.cli argv` (how the agent starts itself and its workers); its loaded modules."""
    env = {k: v for k, v in os.environ.items() if k not in ("HYPER_HOST",)}
    proc = subprocess.run([sys.executable, "-c", LEAN_DRIVER, *argv], capture_output=True, text=True,
                          env={**env, "HYPER_HOME": str(home), "HYPER_AGENT_IDLE": "0.1"}, cwd=home.parent, timeout=60)
    return proc, set(json.loads(proc.stderr.rpartition("\nMODULES ")[2]))


def test_the_agent_and_its_workers_start_without_the_cli_framework(held_home):
    """Each local worker paid ~110 ms of typer and the admin commands before its first claim."""
    worker, modules = run_hyper(held_home, "--host", "local", "worker", "run", "--queue", "default",
                                "--definition", "default", "--worker-id", "wlean", "--idle", "0")
    assert worker.returncode == 0, worker.stderr
    assert loaded(modules, ("typer", "click", "rich", "boto3")) == []
    agent, modules = run_hyper(held_home, "--host", "local", "agent", "run")
    assert agent.returncode == 0, agent.stderr
    assert loaded(modules, ("typer", "click", "rich", "boto3")) == []


@pytest.mark.parametrize("argv, said", [
    (["worker", "run", "--queue", "default"], "Missing option '--definition'"),
    (["worker", "run", "--queue", "default", "--definition", "default", "--idle", "soon"], "'soon' is not a valid float"),
    (["worker", "run", "--queue=default", "--definition", "default", "--nope", "1"], "No such option: --nope"),
])
def test_anything_but_the_agents_own_argument_list_is_read_by_typer(held_home, argv, said):
    proc, modules = run_hyper(held_home, "--host", "local", *argv)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert "typer" in modules
