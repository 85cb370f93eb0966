"""The q-commands' fast path (qcmds/launch.py) cannot drift from their typer interface: the option tables match
the typer commands option for option, the run functions take the typer functions' parameters, and for a table
of argument lists both paths print the same and exit the same. `--help` from the cache equals typer's."""

from __future__ import annotations

import getpass
import inspect
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer.main
from typer.core import TyperArgument as Argument
from typer.core import TyperOption as Option

from qcmds import launch, qdel, qlog, qstat, qsub
from qcmds.actions import run_qdel, run_qlog
from qcmds.qstat_run import run_qstat
from qcmds.qsub_run import run_qsub

APPS = {"qstat": qstat.app, "qdel": qdel.app, "qlog": qlog.app, "qsub": qsub.app}
RUNS = {"qstat": (qstat.qstat, run_qstat), "qdel": (qdel.qdel, run_qdel), "qlog": (qlog.qlog, run_qlog),
        "qsub": (qsub.qsub, run_qsub)}
ALWAYS_TYPER = {"--help", "--version", "--install-completion", "--show-completion"}


def kind_of(param: Option) -> str:
    if param.is_flag:
        return launch.FLAG
    if param.multiple:
        return launch.MULTI
    return launch.INT if param.type.name == "int" else launch.VALUE


@pytest.mark.parametrize("prog", sorted(APPS))
def test_the_fast_option_table_is_the_typer_commands(prog):
    command = typer.main.get_command(APPS[prog])
    spec = launch.SPECS[prog]
    expected = {}
    for param in command.params:
        if isinstance(param, Option):
            for word in [*param.opts, *param.secondary_opts]:
                if word not in ALWAYS_TYPER and word not in spec.declined:
                    expected[word] = (param.name, kind_of(param))
    assert spec.options == expected  # a new typer option must be added to SPECS (or to its `declined`)
    arguments = [p for p in command.params if isinstance(p, Argument)]
    assert tuple(a.name for a in arguments) == spec.positional
    assert spec.rest == (arguments[-1].nargs == -1)


@pytest.mark.parametrize("prog", sorted(RUNS))
def test_the_run_function_takes_the_typer_functions_parameters(prog):
    typer_fn, run_fn = RUNS[prog]
    typer_params = {k: v.default for k, v in inspect.signature(typer_fn).parameters.items() if k != "context"}
    run_params = {k: v.default for k, v in inspect.signature(run_fn).parameters.items()
                  if k not in ("command", "option_names")}
    assert {k: (None if v is inspect.Parameter.empty else v) for k, v in run_params.items()} == {
        k: (None if v is inspect.Parameter.empty else v) for k, v in typer_params.items()}


@pytest.mark.parametrize("prog, argv", [
    ("qstat", ["-Z"]), ("qstat", ["-q"]), ("qstat", ["--help"]), ("qstat", ["--version"]), ("qstat", ["-xf"]),
    ("qstat", ["--only-job-id-out", "false"]), ("qstat", ["--only-job-id-out=true"]), ("qstat", ["--watch"]),
    ("qstat", ["-u", "-x"]), ("qlog", []), ("qlog", ["1", "2"]), ("qlog", ["1", "-n", "x"]),
    ("qsub", ["job.sh", "-N", "x"]), ("qsub", ["-Nx", "job.sh"]), ("qsub", ["-p", "-5", "job.sh"]),
])
def test_what_the_fast_path_leaves_to_typer(prog, argv):
    assert launch.fast_args(prog, argv, {}) is None


@pytest.mark.parametrize("prog, argv", [
    ("qstat", []), ("qstat", ["-Q"]), ("qstat", ["12"]), ("qstat", ["12[]", "-x"]),
    ("qstat", ["-u", "ann", "-o", "json"]),
    ("qdel", ["12"]), ("qdel", ["12", "13[2]"]), ("qlog", ["12"]), ("qlog", ["12", "-e", "-n", "5"]),
    ("qsub", ["job.sh"]), ("qsub", ["-J", "1-100", "job.sh", "a"]), ("qsub", ["--wait", "--", "true"]),
])
def test_plain_invocations_take_the_fast_path(prog, argv):
    assert launch.fast_args(prog, argv, {}) is not None


def test_completion_goes_to_typer():
    assert launch.fast_args("qstat", [], {"_QSTAT_COMPLETE": "complete_bash"}) is None
    assert launch.fast_args("qstat", [], {}) == {"job_ids": None}


def test_qsub_fast_arguments():
    assert launch.fast_args("qsub", ["-h", "-l", "a=1", "-l", "b=2", "-p", "5", "job.sh", "x", "y"], {}) == {
        "hold": True, "resources": ["a=1", "b=2"], "priority": 5, "script": "job.sh", "script_args": ["x", "y"],
        "command": None}
    assert launch.fast_args("qsub", ["-N", "n", "--", "echo", "-x"], {}) == {
        "name": "n", "script": None, "script_args": None, "command": ["echo", "-x"]}


CASES = [
    ("qstat", []), ("qstat", ["-Q"]), ("qstat", ["1"]), ("qstat", ["1", "2"]), ("qstat", ["99"]),
    ("qstat", ["1", "-x"]), ("qstat", ["-x"]), ("qstat", ["-u", "USER"]), ("qstat", ["-u", "nobody-else"]),
    ("qstat", ["-q", "default"]), ("qstat", ["-q", "nope"]), ("qstat", ["-o", "json"]), ("qstat", ["--output=csv"]),
    ("qstat", ["-f", "1"]), ("qstat", ["-s"]), ("qstat", ["-n", "-w"]), ("qstat", ["-i"]), ("qstat", ["-r"]),
    ("qstat", ["--only-job-id-out"]), ("qstat", ["--state", "H"]), ("qstat", ["--state", "bogus"]),
    ("qstat", ["-o", "bogus"]), ("qstat", ["abc"]), ("qstat", ["-Q", "-o", "yaml"]), ("qstat", ["--since", "2h"]),
    ("qstat", ["-t", "3[]"]), ("qstat", ["-a"]), ("qstat", ["-Z"]), ("qstat", ["-q"]), ("qstat", ["-F", "dsv"]),
    ("qdel", ["1"]), ("qdel", ["1", "2"]), ("qdel", ["99"]), ("qdel", ["abc"]), ("qdel", ["-u", "USER"]),
    ("qdel", ["--state", "H"]), ("qdel", []), ("qdel", ["-q", "nope"]), ("qdel", ["3[1]"]),
    ("qlog", ["1"]), ("qlog", ["99"]), ("qlog", ["1", "-e"]), ("qlog", ["1", "-n", "5"]), ("qlog", []),
    ("qsub", ["-h", "--", "true"]), ("qsub", ["-h", "-N", "named", "--", "echo", "hi"]), ("qsub", ["-h", "job.sh"]),
    ("qsub", ["-h", "job.sh", "a", "b"]), ("qsub", ["-h", "job.sh", "-x"]),
    ("qsub", ["-h", "-l", "walltime=1:00:00", "-l", "select=1:ncpus=1", "job.sh"]),
    ("qsub", ["-h", "-p", "5", "job.sh"]), ("qsub", ["-h", "-q", "nope", "job.sh"]), ("qsub", ["-h", "missing.sh"]),
    ("qsub", ["-h", "--"]), ("qsub", ["-h", "-J", "1-3", "job.sh"]),
    ("qsub", ["-h", "-W", "depend=afterok:1", "job.sh"]),
    ("qsub", ["-h", "-v", "A=1", "-V", "job.sh"]), ("qsub", ["-h", "-z", "job.sh"]), ("qsub", ["-I", "job.sh"]),
    ("qsub", ["-h", "job.sh", "--", "x"]), ("qsub", ["-h", "-a", "1200", "job.sh"]),
    ("qsub", ["-h", "-F", "a b", "job.sh"]),
]
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d|\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}")


def run_in(home: Path, prog: str, argv: list[str], typer_only: bool, monkeypatch, capsys) -> tuple[int, str, str]:
    monkeypatch.setenv("HYPER_HOME", str(home))
    monkeypatch.setenv("HYPER_NO_FASTPATH", "1" if typer_only else "0")
    monkeypatch.chdir(home.parent)
    capsys.readouterr()
    try:
        launch.launch(prog, argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out, err = capsys.readouterr()
    return code, STAMP.sub("<time>", out), STAMP.sub("<time>", err)


def populated_home(root: Path, monkeypatch, capsys) -> Path:
    """A fresh local host with two held jobs and a held three-element array (nothing runs: no agent)."""
    home = root / "hyper-home"
    root.mkdir()
    (root / "job.sh").write_text("#!/bin/sh\n#PBS -N scripted\necho hi\n")
    for argv in (["-h", "-N", "first", "--", "true"], ["-h", "--", "true"], ["-h", "-J", "1-3", "job.sh"]):
        assert run_in(home, "qsub", argv, True, monkeypatch, capsys)[0] == 0
    return home


@pytest.mark.parametrize("prog, argv", CASES)
def test_both_paths_print_the_same_and_exit_the_same(prog, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("HYPER_HOST", raising=False)
    for key in [k for k in os.environ if k.endswith("_COMPLETE")]:
        monkeypatch.delenv(key)
    argv = [getpass.getuser() if a == "USER" else a for a in argv]
    typer_home = populated_home(tmp_path / "typer", monkeypatch, capsys)
    fast_home = populated_home(tmp_path / "fast", monkeypatch, capsys)
    by_typer = run_in(typer_home, prog, argv, True, monkeypatch, capsys)
    by_fast = run_in(fast_home, prog, argv, False, monkeypatch, capsys)
    assert by_fast == (by_typer[0], by_typer[1].replace(str(typer_home), str(fast_home)).replace(
        str(typer_home.parent), str(fast_home.parent)), by_typer[2].replace(str(typer_home.parent),
                                                                            str(fast_home.parent)))


def installed(prog: str) -> list[str]:
    return [sys.executable, "-c", f"from qcmds.launch import {prog}; {prog}()"]


@pytest.mark.e2e  # runs the installed commands
@pytest.mark.parametrize("prog", sorted(APPS))
def test_help_from_the_cache_is_typers(prog, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.endswith("_COMPLETE")}
    env.update(HYPER_HOME=str(tmp_path / "h"), COLUMNS="100")
    by_typer = subprocess.run([*installed(prog), "--help"], env={**env, "HYPER_NO_FASTPATH": "1"},
                              capture_output=True, text=True)
    first = subprocess.run([*installed(prog), "--help"], env=env, capture_output=True, text=True)
    cached = list((tmp_path / "h" / "cache" / "help").iterdir())
    second = subprocess.run([*installed(prog), "--help"], env=env, capture_output=True, text=True)
    assert by_typer.returncode == first.returncode == second.returncode == 0
    assert by_typer.stdout == first.stdout == second.stdout
    assert "Usage:" in second.stdout and len(cached) == 1
    wider = subprocess.run([*installed(prog), "--help"], env={**env, "COLUMNS": "140"}, capture_output=True, text=True)
    assert len(list((tmp_path / "h" / "cache" / "help").iterdir())) == 2  # another width renders afresh
    assert wider.stdout != second.stdout


def test_a_stale_help_copy_is_rendered_again(tmp_path, monkeypatch, capsys):
    """A copy whose key line differs (the command was edited, another terminal) is replaced, not printed."""
    from qcmds import help_cache

    monkeypatch.setenv("HYPER_HOME", str(tmp_path))
    monkeypatch.setattr(sys, "argv", ["qdel", "--help"])
    key = help_cache.cache_key("qdel")
    path = Path(help_cache.cache_path("qdel", key))
    path.parent.mkdir(parents=True)
    path.write_text("('something else',)\nstale help\n")
    with pytest.raises(SystemExit) as exit_:
        help_cache.cached_help("qdel")
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "stale help" not in out and "Usage:" in out
    assert path.read_text() == key + "\n" + out


def on_a_terminal(argv: list[str], env: dict[str, str]) -> tuple[int, bytes]:
    """Run argv with a 100x40 pseudo-terminal as stdin, stdout and stderr; its exit code and what it showed."""
    import fcntl
    import pty
    import select
    import struct
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    shown = b""
    while select.select([master], [], [], 30)[0]:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # the terminal closed: the command ended
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return proc.wait(), shown


@pytest.mark.e2e  # runs the installed commands
def test_help_on_a_terminal_from_the_cache_is_typers_in_colour(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES") and not k.endswith("_COMPLETE")}
    env.update(HYPER_HOME=str(tmp_path / "h"), TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    by_typer = on_a_terminal([*installed("qsub"), "--help"], {**env, "HYPER_NO_FASTPATH": "1"})
    first = on_a_terminal([*installed("qsub"), "--help"], env)
    cached = on_a_terminal([*installed("qsub"), "--help"], env)
    assert by_typer == first == cached
    assert by_typer[0] == 0 and b"\x1b[" in by_typer[1]  # rich's colours, kept byte for byte
