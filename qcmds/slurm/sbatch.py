"""sbatch: submit a script with Slurm's options and directives; prints `Submitted batch job N`
(`--parsable`: `N`). Slurm's defaults hold: the job runs in the submit directory, with the submitting
environment, writing stdout and stderr to `slurm-%j.out` there."""

from __future__ import annotations

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
@cli_errors("sbatch")
def sbatch(
    words: Annotated[Optional[List[str]], typer.Argument(
        help="[OPTIONS] [SCRIPT] (stdin without one): --job-name, --partition, --array, --time, --output, "
             "--error, --dependency, --cpus-per-task, --mem, --gres, --chdir, --export, --hold; --parsable, "
             "--wrap CMD, --wait.")] = None,
) -> None:
    """Submit a batch script (Slurm's sbatch over hyper)."""
    from hyper.errors import UsageError
    from hyper.services import jobs as svc
    from hyper.services.context import open_context
    from qcmds.frontend import read_script, split_words, submit_script

    options, own, rest = split_words(list(words or []), "SBATCH", own_flags=("--parsable", "--wait", "-W"),
                                     own_values=("--wrap",))
    if "--wrap" in own:
        if rest:
            raise UsageError(f"--wrap and a script ({rest[0]}) given together", "give one of them")
        text, name = f"#!/bin/sh\n# This script was created by sbatch --wrap.\n\n{own['--wrap']}\n", "wrap"
    else:
        if len(rest) > 1:
            raise UsageError(f"arguments after the script ({' '.join(rest[1:])}) are not passed on here",
                             f"run it through --wrap, e.g. sbatch --wrap '{' '.join(rest)}'")
        text, name = read_script(rest[0] if rest else None, "sbatch")
    ctx = open_context(None)
    jobs, merged = submit_script(ctx, "SBATCH", options, text, name, slurm_defaults)
    if merged.ignored:
        sys.stderr.write(f"sbatch: note: no effect here, ignored: {', '.join(merged.ignored)}\n")
    job_number = jobs[0].id
    sys.stdout.write(f"{job_number}\n" if "--parsable" in own else f"Submitted batch job {job_number}\n")
    sys.stdout.flush()
    if "--wait" in own or "-W" in own:
        raise typer.Exit(svc.wait_for(ctx, jobs))


def slurm_defaults(d: Directives) -> Directives:
    """What Slurm does when neither the script nor the options say: run in the submit directory with the
    submitting environment, stdout to `slurm-%j.out` (`slurm-%A_%a.out` for arrays) there, and stderr into
    the same file unless --error names one (Slurm has no -j)."""
    import dataclasses

    return dataclasses.replace(
        d, chdir=d.chdir or os.getcwd(), export_all=True if d.export_all is None else d.export_all,
        output=d.output or ("slurm-%A_%a.out" if d.array else "slurm-%j.out"), join=None if d.error else "oe")


def main() -> None:
    app(prog_name="sbatch")
