"""Shared fixtures: every test gets its own HYPER_HOME and short timeouts, and real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
pytest_plugins = ["tests.moto_server"]  # moto_server / moto_endpoint fixtures for every module

FAST = {
    "HYPER_AGENT_IDLE": "2",
    "HYPER_WORKER_IDLE": "1",
    "HYPER_KILL_GRACE": "1",
    "HYPER_LEASE": "4",
    "HYPER_TICK": "0.05",
}


# The end-to-end lane: tests that start real local processes (a HYPER_HOME with an agent) or talk to moto's
# server. `pytest -m "not e2e"` is the fast lane for editing; `.ci/run` runs both lanes.
E2E_FIXTURES = {"home", "moto_server", "moto_endpoint"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        callspec = getattr(item, "callspec", None)
        dynamo_param = callspec is not None and "dynamodb" in callspec.params.values()
        if E2E_FIXTURES & set(getattr(item, "fixturenames", ())) or dynamo_param:
            item.add_marker(pytest.mark.e2e)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A private HYPER_HOME; agents started in it are stopped when the test ends."""
    h = tmp_path / "hyper-home"
    monkeypatch.setenv("HYPER_HOME", str(h))
    monkeypatch.delenv("HYPER_HOST", raising=False)
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    yield h
    stop_agent(h)


def stop_agent(h: Path) -> None:
    lock = h / "local" / "agent.lock"
    if lock.exists():
        text = lock.read_text().strip()
        if text.isdigit():
            try:
                os.kill(int(text), signal.SIGTERM)
            except ProcessLookupError:
                pass
    # stray workers of this home (they exit on idle anyway; do not leave them behind)
    subprocess.run(["pkill", "-f", f"hyper.cli --host local worker run .*{h}"], check=False)


def cli(name: str, *args: str, input: str | None = None, check: bool = False, timeout: float = 60,
        env: dict | None = None) -> subprocess.CompletedProcess:
    """Run an installed console script as a user would."""
    proc = subprocess.run([str(BIN / name), *args], input=input, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
    if check and proc.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc


def wait_until(predicate, timeout: float = 30, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"condition not met within {timeout} s")
