"""bsub: submit a job with LSF's options: a script on stdin (`bsub < job.sh`), a script file as the argument
(its #BSUB lines are read), or a command (`bsub sleep 60`). Prints `Job <N> is submitted to queue <Q>.`
As in LSF, the job runs in the submit directory with the submitting environment."""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors
from hyper.parsing.directives import Directives
from qcmds.common import APP_SETTINGS

app = typer.Typer(**APP_SETTINGS)
RAW = {"ignore_unknown_options": True, "allow_extra_args": True, "allow_interspersed_args": False}


@app.command(context_settings=RAW)
@cli_errors("bsub")
def bsub(
    words: Annotated[Optional[List[str]], typer.Argument(
        help="[OPTIONS] [SCRIPT | COMMAND ARGS] (stdin without one): -J NAME[1-10], -q, -W, -o, -e, -w, -n, -M, "
             "-gpu, -cwd, -env, -H; -K waits for the job.")] = None,
) -> None:
    """Submit a job (LSF's bsub over hyper)."""
    import shlex

    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from qcmds.frontend import read_script, split_words, submit_script

    options, own, rest = split_words(list(words or []), "BSUB", own_flags=("-K",))
    ctx = open_context(None)
    if len(rest) == 1 and os.path.isfile(rest[0]):
        text, name = read_script(rest[0], "bsub")
        jobs, merged = submit_script(ctx, "BSUB", options, text, name, lsf_defaults)
    elif rest:  # a command line, run by the shell as LSF runs it
        text = f"#!/bin/sh\n{shlex.join(rest) if len(rest) > 1 else rest[0]}\n"
        jobs, merged = submit_script(ctx, "BSUB", options, text, os.path.basename(rest[0]), lsf_defaults)
    else:
        text, name = read_script(None, "bsub")
        jobs, merged = submit_script(ctx, "BSUB", options, text, name, lsf_defaults)
    if merged.ignored:
        sys.stderr.write(f"bsub: note: no effect here, ignored: {', '.join(merged.ignored)}\n")
    sys.stdout.write(f"Job <{jobs[0].id}> is submitted to queue <{jobs[0].queue}>.\n")
    sys.stdout.flush()
    if "-K" in own:
        sys.stdout.write("<<Waiting for dispatch ...>>\n")
        sys.stdout.flush()
        code = svc.wait_for(ctx, jobs)
        sys.stdout.write("<<Job is finished>>\n")
        raise typer.Exit(code)


def _lsf_pattern(path: str | None) -> str | None:
    """LSF's %J (job id) and %I (array index) in -o/-e, as the worker's Slurm-style patterns (%A, %a)."""
    return None if path is None else path.replace("%J", "%A").replace("%I", "%a")


def lsf_defaults(d: Directives) -> Directives:
    """LSF's defaults when neither the script nor the options say: the submit directory and environment."""
    return dataclasses.replace(d, chdir=d.chdir or os.getcwd(),
                               export_all=True if d.export_all is None else d.export_all,
                               output=_lsf_pattern(d.output), error=_lsf_pattern(d.error))


def main() -> None:
    app(prog_name="bsub")
