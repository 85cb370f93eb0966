"""qsub's options become directives through the service (hyper/services/submission.py) with exactly the meaning
the same words have in a `#PBS` line, and the service, not the command, wakes the local agent."""

from __future__ import annotations

import dataclasses
import time

import pytest

from hyper.errors import UsageError
from hyper.parsing.directives import parse_options
from hyper.services.options import SubmitOptions, command_line_directives, prepare_submission, wants_block


@pytest.mark.parametrize("opts, pbs_words, slurm_words", [
    (SubmitOptions(name="a", queue="default", array="1-10%2", hold=True),
     ["-N", "a", "-q", "default", "-J", "1-10%2", "-h"], []),
    (SubmitOptions(output="o.txt", error="e.txt", join="oe", rerunnable="n", priority=-5),
     ["-o", "o.txt", "-e", "e.txt", "-j", "oe", "-r", "n", "-p", "-5"], []),
    (SubmitOptions(variables=["A=1,B"], export_all=True, resources=["select=1:ncpus=2:mem=4gb"], walltime="1:00:00"),
     ["-v", "A=1,B", "-l", "select=1:ncpus=2:mem=4gb", "-l", "walltime=1:00:00", "-V"], []),
    (SubmitOptions(extra=["depend=afterok:1", "block=true"], account="acct", mail_events="abe", shell="/bin/bash"),
     ["-W", "depend=afterok:1", "-A", "acct", "-m", "abe", "-S", "/bin/bash"], []),
    (SubmitOptions(job_name="s", partition="default", time_limit="90", mem="4G", cpus="2"),
     [], ["--job-name=s", "--partition=default", "--time=90", "--mem=4G", "--cpus-per-task=2"]),
])
def test_an_option_means_what_the_same_words_mean_in_a_directive(opts, pbs_words, slurm_words):
    expected = parse_options(slurm_words, "SBATCH", into=parse_options(pbs_words, "PBS"))
    assert dataclasses.asdict(command_line_directives(opts)) == dataclasses.asdict(expected)


def test_block_true_asks_to_wait_and_is_no_directive():
    assert wants_block(SubmitOptions(extra=["block=true"])) and not wants_block(SubmitOptions(extra=["block=f"]))
    assert command_line_directives(SubmitOptions(extra=["BLOCK=TRUE"])).depend == []


def test_the_command_line_overrides_the_script():
    script = "#!/bin/sh\n#PBS -N fromscript\n#PBS -q other\necho hi\n"
    merged = prepare_submission(SubmitOptions(name="fromcli"), script, "job.sh")
    assert (merged.name, merged.queue) == ("fromcli", "other")


def test_a_bad_option_value_is_a_usage_error():
    with pytest.raises(UsageError):
        command_line_directives(SubmitOptions(resources=["walltime=soon"]))


def test_the_service_wakes_the_agent_only_for_jobs_that_can_start(home):
    import os

    from hyper.backends.local import agent_running
    from hyper.services.context import open_context
    from hyper.services.submission import submit_and_wake as submit

    ctx = open_context()
    kwargs = dict(script=None, command=["true"], script_name="", submit_env=dict(os.environ), cwd=str(home),
                  user="tester")
    submit(ctx, prepare_submission(SubmitOptions(hold=True), None, ""), **kwargs)
    assert not agent_running(ctx.host)  # a held job waits for qrls: nothing to start
    (job,) = submit(ctx, prepare_submission(SubmitOptions(), None, ""), **kwargs)
    deadline = time.monotonic() + 30
    while not agent_running(ctx.host) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert agent_running(ctx.host)
