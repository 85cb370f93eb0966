"""The cgroup v2 memory limit of a local job (issue 14). These machines have no delegated cgroup v2 memory
controller, so the kernel's interface files are laid out in a directory exactly as cgroup v2 documents them
(cgroup.controllers, cgroup.subtree_control, memory.max, memory.swap.max, memory.events); where the
controller is missing the RSS watch (tests/test_hpc_habits.py) is what stops a job."""

from __future__ import annotations

from pathlib import Path

from hyper.worker import containment


def _hierarchy(tmp_path: Path, controllers: str) -> Path:
    root = tmp_path / "hyper"
    group = root / "w-1"
    group.mkdir(parents=True)
    (root / "cgroup.controllers").write_text(controllers + "\n")
    (root / "cgroup.subtree_control").write_text("\n")
    for name in ("memory.max", "memory.swap.max"):
        (group / name).write_text("max\n")
    (group / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\noom_group_kill 0\n")
    return group


def test_the_limit_is_written_with_no_swap_and_the_controller_enabled(tmp_path):
    group = _hierarchy(tmp_path, "cpuset cpu io memory pids")
    assert containment.limit_memory(group, 512)
    assert (group / "memory.max").read_text() == f"{512 * 1024 * 1024}\n"
    assert (group / "memory.swap.max").read_text() == "0\n"
    assert (group.parent / "cgroup.subtree_control").read_text() == "+memory\n"


def test_without_the_memory_controller_nothing_is_written(tmp_path):
    group = _hierarchy(tmp_path, "cpu pids")
    assert not containment.limit_memory(group, 512)
    assert (group / "memory.max").read_text() == "max\n"


def test_oom_kills_are_read_from_memory_events(tmp_path):
    group = _hierarchy(tmp_path, "memory")
    assert containment.oom_kills(group) == 1
    (group / "memory.events").write_text("oom 2\noom_kill 2\n")
    assert containment.oom_kills(group) == 2
    assert containment.oom_kills(None) == 0
    assert containment.oom_kills(tmp_path / "gone") == 0
