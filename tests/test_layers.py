"""Imports that point the wrong way (tests/test_import_graph.py catches circles; these are one-way rules).

The job services find a job's output files by the same rule the worker writes them by, and that rule lives in
hyper/outputs.py: a service that imported the worker would drag its process handling into every command.
"""

from __future__ import annotations

from tests.test_import_graph import import_graph


def test_services_and_stores_never_import_the_worker():
    graph = import_graph()
    wrong = sorted(f"{src} -> {dst}" for src, dsts in graph.items() for dst in dsts
                   if src.startswith(("hyper.services", "hyper.store")) and dst.startswith("hyper.worker"))
    assert wrong == []


def test_the_worker_and_the_job_services_share_one_output_rule():
    from hyper import outputs
    from hyper.services import joblogs
    from hyper.worker import runner

    assert runner.output_paths is outputs.output_paths is joblogs.output_paths
