"""Entry points of qsub, qstat, qdel and qlog: plain invocations skip typer, everything else goes to it.

Why: importing typer (and the click and rich it brings) costs about three times Python's own start-up,
more than the work of a `qstat` or a `qsub job.sh`. The interface stays typer's (qcmds/qsub.py...); this
module only recognises the simple argument lists that need no parser's judgement -- known options, each
value a separate word that does not look like an option, no `--help` or `--version` -- and calls the same
function the typer command calls (qcmds/qstat_run.py, qsub_run.py, actions.py) with the same keyword
arguments. Anything else (unknown or combined options, `--opt=value` of flags, usage errors, completion)
falls back to the typer app, so errors and help read exactly as before.
tests/test_fastpath.py checks that the option tables below match the typer commands option for option,
and that both paths print the same and exit the same for a table of argument lists.

`--help` is served from a cache of typer's own output (qcmds/help_cache.py), filled the first time.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING's value, which mypy reads alike, without importing typing here
if TYPE_CHECKING:
    from typing import Any, Callable, Mapping

FLAG, VALUE, MULTI, INT = "flag", "value", "multi", "int"


class Spec:
    """A command's options as the fast path reads them: option word -> (parameter name, kind).

    A plain class, not a dataclass: `qsub --help` from the cache should not pay for importing dataclasses.
    """

    def __init__(self, options: dict[str, tuple[str, str]], positional: tuple[str, ...], rest: bool = True,
                 interspersed: bool = True, dash_dash: bool = False, declined: frozenset[str] = frozenset()):
        self.options = options
        self.positional = positional  # parameter names of the arguments; the last takes the rest when `rest`
        self.rest = rest
        self.interspersed = interspersed  # options may follow arguments (click's default); qsub's stop at the script
        self.dash_dash = dash_dash  # qsub: what follows `--` is the command (or the script's arguments)
        self.declined = declined  # typer-only options (tests/test_fastpath.py checks the others are all here)


def _opts(kind: str, **names: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    return {word: (name, kind) for name, words in names.items() for word in words}


SPECS = {
    "qstat": Spec(
        options={**_opts(FLAG, finished=("-x",), full=("-f",), queues=("-Q",), elements=("-t",),
                         alternative=("-a",), comment=("-s",), nodes=("-n",), wide=("-w",), only_queued=("-i",),
                         only_running=("-r",), only_ids=("--only-job-id-out",)),
                 **_opts(VALUE, queue=("-q", "--queue"), user=("-u", "--user"), since=("--since",),
                         state=("--state", "--filter-status"), job_name=("--job-name",),
                         output=("--output", "-o"), pbs_format=("-F",), delimiter=("-D",), host=("--host",))},
        positional=("job_ids",), declined=frozenset({"--watch"})),
    "qdel": Spec(
        options=_opts(VALUE, user=("-u", "--user"), state=("--state",), queue=("-q", "--queue"),
                      name=("-j", "--job-name"), host=("--host",)),
        positional=("job_ids",)),
    "qlog": Spec(
        options={**_opts(FLAG, stderr=("-e", "--stderr"), follow=("-f", "--follow")),
                 **_opts(INT, tail=("--tail", "-n"), attempt=("--attempt",)),
                 **_opts(VALUE, host=("--host",))},
        positional=("job_id",), rest=False),
    "qsub": Spec(
        options={**_opts(FLAG, hold=("-h", "--hold"), export_all=("-V",), retry_on_exit=("--retry-on-exit",),
                         wait=("--wait",), quiet=("-z", "--quiet"), interactive=("-I",), x11=("-X",)),
                 **_opts(VALUE, name=("-N", "--name"), queue=("-q", "--queue"), definition=("-d", "--definition"),
                         array=("-J", "--array", "-t"), dependency=("--dependency",), output=("-o", "--output"),
                         error=("-e", "--error"), join=("-j",), walltime=("--walltime",), rerunnable=("-r",),
                         chdir=("--chdir", "-D"), sweep=("--sweep",), split=("--split",),
                         finalize=("--finalize",), finalize_after=("--finalize-after",), notify=("--notify",),
                         args_text=("-F",), account=("-A", "--account"), mail_events=("-m",),
                         mail_users=("-M",), shell=("-S",), project=("-P",), keep=("-k",), checkpoint=("-c",),
                         job_name=("--job-name",), partition=("--partition",), time_limit=("--time",),
                         mem=("--mem",), cpus=("--cpus-per-task",), gres=("--gres",), deferred=("-a",),
                         host=("--host",)),
                 **_opts(MULTI, extra=("-W",), variables=("-v",), resources=("-l",), stagein=("--stagein",),
                         stageout=("--stageout",)),
                 **_opts(INT, retries=("--retries",), priority=("-p", "--priority"),
                         lines_per_part=("--lines-per-part",), parts=("--parts",))},
        positional=("script", "script_args"), interspersed=False, dash_dash=True),
}
_BOOLEAN_WORDS = ("true", "false", "yes", "no")  # `--only-job-id-out true`: the typer path's cyclone_booleans


def fast_args(prog: str, argv: list[str], environ: Mapping[str, str] = os.environ) -> dict[str, Any] | None:
    """The keyword arguments of `prog`'s run function for `argv`, or None when typer should decide."""
    if f"_{prog.upper()}_COMPLETE" in environ:
        return None
    spec = SPECS[prog]
    kwargs: dict[str, Any] = {}
    if spec.dash_dash and "--" in argv:
        cut = argv.index("--")
        kwargs["command"], argv = argv[cut + 1:], argv[:cut]
    words: list[str] = []
    i = 0
    while i < len(argv):
        word = argv[i]
        if word.startswith("-") and word != "-" and not (words and not spec.interspersed):
            name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
            if name not in spec.options:
                return None
            param, kind = spec.options[name]
            if kind == FLAG:
                nxt = argv[i + 1].lower() if i + 1 < len(argv) else ""
                if eq or (name in ("--only-job-id-out",) and nxt in _BOOLEAN_WORDS):
                    return None
                kwargs[param] = True
            else:
                if not eq:
                    i += 1
                    if i >= len(argv):
                        return None  # a missing value: typer says so
                    value = argv[i]
                if not _store(kwargs, param, kind, value):
                    return None
        elif word.startswith("-") and word != "-" and len(spec.positional) > 1:
            return None  # `qsub job.sh -x`: typer notes options placed after the script
        else:
            words.append(word)
        i += 1
    if not _place(spec, words, kwargs):
        return None
    if spec.dash_dash:
        kwargs.setdefault("command", None)
    return kwargs


def _store(kwargs: dict[str, Any], param: str, kind: str, value: str) -> bool:
    """Keep an option's value as its parameter's kind wants it; False when typer should judge the value
    (one that looks like an option, or an INT that is not digits). Apart from fast_args to keep the word
    loop readable."""
    if value.startswith("-"):
        return False  # `-N -x`: click would take it as the value; leave that judgement to typer
    if kind == INT:
        if not (value.isascii() and value.isdigit()):
            return False
        kwargs[param] = int(value)
    elif kind == MULTI:
        kwargs.setdefault(param, []).append(value)
    else:
        kwargs[param] = value
    return True


def _place(spec: Spec, words: list[str], kwargs: dict[str, Any]) -> bool:
    """Put the argument words into their parameters as click does; False when click would complain."""
    if len(spec.positional) == 1 and spec.rest:
        kwargs[spec.positional[0]] = words or None
        return True
    if len(spec.positional) == 1:
        if len(words) != 1:
            return False  # qlog without an id, or with two: typer's usage error
        kwargs[spec.positional[0]] = words[0]
        return True
    first, others = spec.positional
    kwargs[first] = words[0] if words else None
    kwargs[others] = words[1:] or None
    return True


def _run(prog: str, kwargs: dict[str, Any]) -> None:
    """Call the command's run function under the same error boundary as the typer command."""
    from hyper.cli.common import cli_errors

    fn: Callable[..., int]
    if prog == "qstat":
        from qcmds.qstat_run import run_qstat as fn
    elif prog == "qsub":
        from qcmds.qsub_run import run_qsub as fn  # option_names stays empty: no fast script argument is an option
    elif prog == "qdel":
        from qcmds.actions import run_qdel as fn
    else:
        from qcmds.actions import run_qlog as fn
    code = cli_errors(prog)(fn)(**kwargs)
    sys.exit(code if isinstance(code, int) else 0)


def launch(prog: str, argv: list[str] | None = None) -> None:
    """Run `prog` with `argv` (default: the command line): the fast path when it applies, else typer."""
    argv = sys.argv[1:] if argv is None else argv
    if os.environ.get("HYPER_NO_FASTPATH", "") in ("", "0"):
        if argv == ["--help"]:
            from qcmds.help_cache import cached_help

            cached_help(prog)  # exits when it printed; returns when it could not
        else:
            kwargs = fast_args(prog, argv)
            if kwargs is not None:
                _run(prog, kwargs)
    import importlib

    sys.argv[1:] = argv
    importlib.import_module(f"qcmds.{prog}").main()


def qsub() -> None:
    launch("qsub")


def qstat() -> None:
    launch("qstat")


def qdel() -> None:
    launch("qdel")


def qlog() -> None:
    launch("qlog")
