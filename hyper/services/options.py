"""From a command line to directives: the command line's options become directives (no detour through
option words) and merge over the script's; ``hyper.services.submission.submit_and_wake`` then submits them.

Why a service: qsub used to turn its typer options back into PBS words, parse them again, and wake the
agent itself, and every other front-end (sbatch, bsub) repeated the waking. Here an option is applied with
its family's own handler (`hyper.parsing.directives.TABLES`, the same code that reads `#PBS -N x`), so an
option and the directive of the same name cannot mean different things.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable

from hyper.parsing.directives import TABLES, Directives


@dataclass
class SubmitOptions:
    """qsub's command-line options, as given (None: not given). PBS names, plus the Slurm long options qsub
    takes and hyper's own."""

    name: str | None = None
    queue: str | None = None
    definition: str | None = None
    array: str | None = None
    extra: list[str] = field(default_factory=list)  # -W depend=... | block=true
    dependency: str | None = None  # Slurm's --dependency
    hold: bool = False
    output: str | None = None
    error: str | None = None
    join: str | None = None
    variables: list[str] = field(default_factory=list)
    export_all: bool = False
    resources: list[str] = field(default_factory=list)
    walltime: str | None = None
    rerunnable: str | None = None
    retries: int | None = None
    priority: int | None = None
    chdir: str | None = None
    account: str | None = None
    mail_events: str | None = None
    mail_users: str | None = None
    shell: str | None = None
    project: str | None = None
    keep: str | None = None
    checkpoint: str | None = None
    job_name: str | None = None
    partition: str | None = None
    time_limit: str | None = None
    mem: str | None = None
    cpus: str | None = None
    gres: str | None = None
    stagein: list[str] = field(default_factory=list)
    stageout: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)  # the script's (or the command's) arguments


_BLOCK = {"block=true": True, "block=t": True, "block=false": False, "block=f": False}


def wants_block(opts: SubmitOptions) -> bool:
    """PBS's `-W block=true`: wait for the job, as `--wait` does."""
    return any(_BLOCK.get(w.strip().lower(), False) for w in opts.extra)


def _apply(d: Directives, family: str, option: str, value: str | None) -> None:
    """One option with its family's meaning (the handler a directive line uses)."""
    _, handler = TABLES[family][option]
    handler(value or "", d)


def command_line_directives(opts: SubmitOptions) -> Directives:
    """The command line as directives: what it overrides in the script's. Applied in qsub's documented order
    (PBS options, then Slurm's long ones, then hyper's), so a later one wins as it did."""
    d = Directives()
    for extra in opts.extra:
        if extra.strip().lower() not in _BLOCK:
            _apply(d, "PBS", "-W", extra)
    _apply_given(d, "PBS", (("-N", opts.name), ("-q", opts.queue), ("-J", opts.array), ("-o", opts.output),
                            ("-e", opts.error), ("-j", opts.join), ("-r", opts.rerunnable),
                            ("-p", None if opts.priority is None else str(opts.priority))))
    for variable in opts.variables:
        _apply(d, "PBS", "-v", variable)
    for resource in opts.resources:
        _apply(d, "PBS", "-l", resource)
    if opts.walltime is not None:
        _apply(d, "PBS", "-l", f"walltime={opts.walltime}")
    if opts.hold:
        _apply(d, "PBS", "-h", None)
    if opts.export_all:
        _apply(d, "PBS", "-V", None)
    _apply_given(d, "PBS", (("-A", opts.account), ("-m", opts.mail_events), ("-M", opts.mail_users),
                            ("-S", opts.shell), ("-P", opts.project), ("-k", opts.keep), ("-c", opts.checkpoint)))
    _apply_given(d, "SBATCH", (("--job-name", opts.job_name), ("--partition", opts.partition),
                               ("--time", opts.time_limit), ("--mem", opts.mem), ("--cpus-per-task", opts.cpus),
                               ("--gres", opts.gres)))
    _apply_hyper_options(d, opts)
    return d


def _apply_given(d: Directives, family: str, options: Iterable[tuple[str, str | None]]) -> None:
    """Apply the (option, value) pairs the command line gave (value not None), in order: a loop of its own
    so command_line_directives reads as qsub's documented order."""
    for flag, value in options:
        if value is not None:
            _apply(d, family, flag, value)


def _apply_hyper_options(d: Directives, opts: SubmitOptions) -> None:
    """The options that are no family's directive (arguments, --dependency, -d, --retries, -D, staging), last
    so they win over the PBS and Slurm ones as before."""
    from hyper.parsing.directives import parse_dependency

    d.args = list(opts.args)
    if opts.dependency:
        d.depend = parse_dependency(opts.dependency, "SBATCH")
    if opts.definition is not None:
        d.definition = opts.definition
    if opts.retries is not None:
        d.retries = opts.retries  # checked with the script's directives by the service
    if opts.chdir is not None:
        d.chdir = opts.chdir
    d.stagein += opts.stagein
    d.stageout += opts.stageout


def prepare_submission(opts: SubmitOptions, script_text: str | None, script_name: str) -> Directives:
    """The job's directives: the script's (#PBS, #SBATCH, #BSUB, #HYPER), overridden by the command line."""
    from hyper.parsing.directives import parse_directives
    from hyper.services.submission import merge_directives

    from_script = parse_directives(script_text, script_name) if script_text is not None else Directives()
    return merge_directives(from_script, command_line_directives(opts))
