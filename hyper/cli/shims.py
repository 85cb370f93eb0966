"""`hyper shims install DIR` / `remove DIR`: Slurm and LSF commands over hyper, in a directory of your choice."""

from __future__ import annotations

import sys
from typing import Annotated, List, Optional

import typer

from hyper.cli.common import cli_errors, render
from hyper.cli.options import OutputOption

app = typer.Typer(no_args_is_help=True, help="Slurm/LSF commands (sbatch, squeue, bsub, ...) over hyper, on request.")
COLUMNS = [("name", "Command"), ("family", "Family"), ("action", "Action"), ("path", "Path")]
FamilyOption = Annotated[Optional[List[str]], typer.Option("--family", help="slurm, lsf or all (default: all).")]


@app.command("install")
@cli_errors("hyper shims install")
def install_cmd(
    directory: Annotated[str, typer.Argument(help="Directory for the commands; put it on PATH for hyper jobs.")],
    family: FamilyOption = None,
    force: Annotated[bool, typer.Option("--force", help="Shadow a real Slurm/LSF on PATH, replace foreign files.")
                     ] = False,
    output: OutputOption = "table",
) -> None:
    """Write sbatch, squeue, scancel, sacct (slurm) and bsub, bjobs, bkill, bpeek (lsf) launchers into DIR.

    They are never installed by default: on a machine with a real Slurm or LSF they would shadow it.
    """
    from hyper.services import shims

    results = shims.install(directory, family, force=force)
    render([vars(r) for r in results], COLUMNS, output)
    if output == "table":
        sys.stderr.write(f"use them with: export PATH={results[0].path.rsplit('/', 1)[0]}:$PATH\n")


@app.command("remove")
@cli_errors("hyper shims remove")
def remove_cmd(
    directory: Annotated[str, typer.Argument(help="Directory the commands were installed into.")],
    family: FamilyOption = None,
    output: OutputOption = "table",
) -> None:
    """Delete the launchers hyper wrote into DIR (never a file it did not write)."""
    from hyper.services import shims

    render([vars(r) for r in shims.remove(directory, family)], COLUMNS, output)
