"""Real clients of PBS, Slurm and LSF run unchanged on hyper's local host (issue 18), end to end.

dask-jobqueue's PBSCluster, SLURMCluster and LSFCluster and Parsl's PBSProProvider, SlurmProvider and
LSFProvider (with Parsl's scaling strategy, so the state they poll decides what they do) start workers as
hyper jobs through `qsub` and the shims `hyper shims install` writes, compute, scale in, and leave no job
behind. Their schedulers listen on 127.0.0.1 only (dask: interface="lo"; Parsl: address="127.0.0.1").
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import BIN, cli, stop_agent, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture
def shims(home, tmp_path, monkeypatch) -> Path:
    """The Slurm and LSF shims in a private directory, first on PATH (with this venv's commands after it).

    HYPER_HOME is short here: a job's TMPDIR lies under it, and Parsl's worker pool opens a Unix socket
    there (multiprocessing's manager), which fails past 107 bytes under pytest's deep tmp_path.
    """
    short = Path(tempfile.mkdtemp(prefix="hy-", dir="/tmp"))
    monkeypatch.setenv("HYPER_HOME", str(short))
    # these workers run for tens of seconds on a shared, loaded machine: the default lease, not conftest's 4 s,
    # whose heartbeat a busy moment can miss (the job would then count as lost and end under the client)
    monkeypatch.delenv("HYPER_LEASE", raising=False)
    bin_dir = tmp_path / "shims"
    cli("hyper", "shims", "install", str(bin_dir), check=True)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    yield bin_dir
    stop_agent(short)
    shutil.rmtree(short, ignore_errors=True)


def jobs() -> list[dict]:
    """Every job hyper has, finished or not."""
    return json.loads(cli("qstat", "-x", "--output", "json", check=True).stdout)


def active() -> list[dict]:
    return [j for j in jobs() if j["state"] in ("QUEUED", "RUNNING", "HELD")]


# ------------------------------------------------------------------------------------------ dask-jobqueue

def dask_cluster(kind: str, tmp_path: Path):
    import dask_jobqueue

    common = dict(cores=1, processes=1, memory="500MB", interface="lo", python=sys.executable,
                  local_directory=str(tmp_path / "dask"), death_timeout=60)
    if kind == "pbs":
        return dask_jobqueue.PBSCluster(walltime="00:10:00", **common)
    if kind == "slurm":
        return dask_jobqueue.SLURMCluster(walltime="00:10:00", **common)
    # LSF's -M unit is site configuration (lsf.conf); hyper reads a bare -M number as MB
    return dask_jobqueue.LSFCluster(walltime="00:10", lsf_units="mb", use_stdin=True, **common)


@pytest.mark.parametrize("kind", ["pbs", "slurm", "lsf"])
def test_dask_jobqueue_cluster_starts_computes_scales_in_and_leaves_no_job(kind, shims, tmp_path):
    from dask.distributed import Client

    with dask_cluster(kind, tmp_path) as cluster:
        cluster.scale(2)
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=120)
            assert len(active()) == 2 and all(j["state"] == "RUNNING" for j in active())
            assert sum(client.gather(client.map(lambda x: x * x, range(100)))) == 328350
            cluster.scale(1)  # scale in: dask-jobqueue cancels one job (qdel / scancel / bkill)
            wait_until(lambda: len(client.scheduler_info()["workers"]) == 1, timeout=60)
            wait_until(lambda: len(active()) == 1, timeout=60)
            assert client.submit(lambda: 42).result(timeout=60) == 42
    wait_until(lambda: not active(), timeout=60)
    submitted = jobs()
    assert len(submitted) == 2 and {j["state"] for j in submitted} == {"DELETED"}


# ------------------------------------------------------------------------------------------ Parsl

def parsl_provider(kind: str):
    """A Parsl provider polling every second (Parsl's default is a minute; the test cannot wait that long)."""
    from parsl.providers import LSFProvider, PBSProProvider, SlurmProvider

    base = {"pbspro": PBSProProvider, "slurm": SlurmProvider, "lsf": LSFProvider}[kind]

    class Polled(base):
        @property
        def status_polling_interval(self):
            return 1

    # worker_init as a site would write it: the workers import the apps' module (this test module) by name
    repo = Path(__file__).resolve().parent.parent
    options = dict(init_blocks=1, min_blocks=0, max_blocks=2, nodes_per_block=1, cmd_timeout=60,
                   worker_init=f"export PYTHONPATH={repo}")
    if kind == "pbspro":
        return Polled(account="hyper-test", cpus_per_node=1, walltime="00:10:00", **options)  # qsub -A
    if kind == "slurm":
        return Polled(walltime="00:10:00", **options)
    return Polled(walltime="00:10:00", **options)  # LSF: #BSUB -nnodes 1 (request_by_nodes)


@pytest.mark.parametrize("kind", ["pbspro", "slurm", "lsf"])
def test_parsl_provider_scales_out_computes_scales_in_and_leaves_no_job(kind, shims, tmp_path):
    import parsl
    from parsl.config import Config
    from parsl.executors import HighThroughputExecutor

    provider = parsl_provider(kind)
    executor = HighThroughputExecutor(label="hyper", address="127.0.0.1", max_workers_per_node=1,
                                      provider=provider, heartbeat_period=2, heartbeat_threshold=20)
    config = Config(executors=[executor], strategy="htex_auto_scale", strategy_period=0.5, max_idletime=3,
                    run_dir=str(tmp_path / "runinfo"))

    @parsl.python_app
    def square(x):
        return x * x

    with parsl.load(config):
        assert sum(f.result(timeout=180) for f in [square(i) for i in range(20)]) == 2470
        # idle for max_idletime: the strategy cancels its blocks through the provider (qdel/scancel/bkill)
        wait_until(lambda: not active(), timeout=90)
        # and Parsl sees them end through its next status poll (sacct / bjobs / qstat -x -f -F json)
        wait_until(lambda: all(r["status"].terminal for r in provider.resources.values()), timeout=30)
        states = {job_id: record["status"].state.name for job_id, record in provider.resources.items()}
    submitted = jobs()
    # Parsl read every block's state right: had it taken a running block for COMPLETED (what hyper's own
    # qstat JSON made it do), it would have submitted more blocks than max_blocks to replace it
    assert 1 <= len(submitted) <= 2, submitted
    assert {j["state"] for j in submitted} <= {"DELETED", "SUCCEEDED"}, [
        (j["job_id"], j["state"], j.get("exit_code"), j.get("reason")) for j in submitted]
    assert set(states.values()) <= {"CANCELLED", "COMPLETED"}, states
