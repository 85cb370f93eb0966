"""How a local job's process starts (hyper/worker/runner.py): posix_spawn behind the start gate, in the job's
directory, with only stdin, stdout and stderr; and the per-worker caches that keep a trivial job cheap (the
output directory, the worker's cgroup and its memory limit) stay right when what they remember is removed."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from hyper.models import Definition, Job, JobSpec
from hyper.states import RunOutcome
from hyper.worker import containment, runner


def _job(tmp_path: Path, command: list[str], **spec) -> Job:
    return Job(id=5, name="j", user="u", queue="default", definition="default", attempts=1,
               spec=JobSpec(command=command, submit_dir=str(tmp_path), **spec))


def _run(job: Job, work: Path) -> runner.Outcome:
    return runner.run_attempt(job, Definition(name="default"), work, work / "logs", check=lambda: None,
                              check_every=1.0, kill_grace=1.0, stop_requested=lambda: False, on_start=lambda pid: None)


def _out(work: Path, name: str = "5.out") -> str:
    return (work / "logs" / name).read_text()


def test_the_job_runs_in_its_directory_with_the_shells_pwd_and_no_oldpwd(tmp_path):
    chdir = tmp_path / "here"
    chdir.mkdir()
    work = tmp_path / "work"
    outcome = _run(_job(tmp_path, ["sh", "-c", 'pwd; echo "PWD=$PWD OLDPWD=${OLDPWD-unset}"'], chdir=str(chdir)),
                   work)
    assert (outcome.kind, outcome.exit_code) == (RunOutcome.EXITED, 0)
    assert _out(work).splitlines() == [str(chdir), f"PWD={chdir} OLDPWD=unset"]


def test_a_missing_directory_or_program_is_said_before_the_gate_hides_it(tmp_path):
    work = tmp_path / "work"
    gone = _run(_job(tmp_path, ["true"], chdir=str(tmp_path / "gone")), work)
    assert (gone.exit_code, gone.reason) == (127, "cannot start true: No such file or directory")
    missing = _run(_job(tmp_path, ["no-such-program-here"]), work)
    assert (missing.exit_code, missing.reason) == (127, "cannot start no-such-program-here: No such file or directory")


@pytest.mark.skipif(os.geteuid() == 0, reason="root enters every directory")
def test_a_directory_the_job_cannot_enter_is_said_before_the_gate(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o600)
    outcome = _run(_job(tmp_path, ["true"], chdir=str(locked)), tmp_path / "work")
    assert (outcome.exit_code, outcome.reason) == (127, "cannot start true: Permission denied")


def test_exit_codes_and_signals_read_as_popen_and_pbs_say_them(tmp_path):
    work = tmp_path / "work"
    assert _run(_job(tmp_path, ["sh", "-c", "exit 3"]), work).exit_code == 3
    killed = _run(_job(tmp_path, ["sh", "-c", "kill -9 $$"]), work)
    assert (killed.exit_code, killed.reason) == (265, "killed by signal 9")


def test_stderr_joined_into_stdout_shares_one_file(tmp_path):
    work = tmp_path / "work"
    _run(_job(tmp_path, ["sh", "-c", "echo out; echo err >&2"], join="oe"), work)
    assert sorted(_out(work).split()) == ["err", "out"]
    assert not (work / "logs" / "5.err").exists()


def test_a_job_gets_no_descriptor_the_worker_holds(tmp_path):
    """posix_spawn passes on whatever is inheritable (Popen closed it); the worker seals its descriptors once."""
    work = tmp_path / "work"
    probe = _job(tmp_path, ["sh", "-c", "if [ -e /proc/$$/fd/77 ]; then echo leaked; else echo sealed; fi"])
    read_end, write_end = os.pipe()
    os.dup2(write_end, 77, inheritable=True)  # what a careless parent could have left the worker
    try:
        _run(probe, work)
        assert _out(work).strip() == "leaked"  # the probe sees it: without the seal it would reach every job
        runner.seal_descriptors()
        _run(probe, work)
        assert _out(work).strip() == "sealed"
    finally:
        for fd in (77, read_end, write_end):
            os.close(fd)


def test_an_output_directory_removed_between_jobs_is_made_again(tmp_path):
    work = tmp_path / "work"
    job = _job(tmp_path, ["echo", "hi"])
    _run(job, work)
    shutil.rmtree(work / "logs")  # someone cleaned up while the worker lives: its cache still names the directory
    assert _run(job, work).exit_code == 0
    assert _out(work) == "hi\n"


@pytest.fixture
def fake_cgroups(tmp_path, monkeypatch) -> Path:
    """A cgroup v2 tree laid out in plain files (these machines delegate no writable cgroup2 to tests)."""
    root = tmp_path / "cg" / "hyper"
    root.mkdir(parents=True)
    (root / "cgroup.procs").write_text("")
    (root / "cgroup.controllers").write_text("memory pids\n")
    (root / "cgroup.subtree_control").write_text("")
    monkeypatch.setenv("HYPER_CGROUP_ROOT", str(root))
    containment._root_cache.clear()
    yield root
    containment._root_cache.clear()


def test_a_pruned_worker_cgroup_is_made_again_with_its_memory_limit(fake_cgroups):
    group = containment.enter_cgroup("wcache", 4242)
    assert group == fake_cgroups / "wcache"
    assert (group / "cgroup.procs").read_text() == "4242\n"
    assert containment.limit_memory(group, 256)
    (group / "memory.max").write_text("max\n")  # only written once while the limit stays the same
    assert containment.limit_memory(group, 256)
    assert (group / "memory.max").read_text() == "max\n"
    shutil.rmtree(group)  # the agent pruned the empty group between two jobs
    assert containment.enter_cgroup("wcache", 4343) == group
    assert (group / "cgroup.procs").read_text() == "4343\n"
    assert containment.limit_memory(group, 256)
    assert (group / "memory.max").read_text() == f"{256 * 1024 * 1024}\n"


def test_a_job_starts_with_the_signals_python_ignores_back_at_their_defaults(tmp_path):
    """Python ignores SIGPIPE and SIGXFSZ and an ignored signal survives exec: Popen restored them, and so must
    posix_spawn, or `yes | head` in a job would print "Broken pipe" errors instead of ending quietly."""
    import signal

    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN  # the worker's own state (Python's start-up)
    work = tmp_path / "work"
    _run(_job(tmp_path, ["sh", "-c", "grep SigIgn /proc/$$/status; yes | head -1"]), work)
    ignored_line, first = _out(work).splitlines()
    ignored = int(ignored_line.split()[1], 16)
    assert not ignored & (1 << (signal.SIGPIPE - 1)) and not ignored & (1 << (signal.SIGXFSZ - 1))
    assert first == "y" and (work / "logs" / "5.err").read_text() == ""
