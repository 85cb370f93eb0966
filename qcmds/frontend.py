"""What the Slurm and LSF front-ends (qcmds/slurm, qcmds/lsf) share with each other: reading a job script,
submitting it through the same service as qsub, and picking jobs by id and filters.

They are thin: options mean what the family's directives mean (hyper/parsing/directives.py), jobs go
through hyper/services/jobs.py, and nothing here keeps state of its own.
"""

from __future__ import annotations

import getpass
import os
import sys
from typing import TYPE_CHECKING, Callable

from hyper.errors import UsageError
from hyper.models import Job
from hyper.parsing.directives import TABLES, Directives, parse_directives, parse_options

if TYPE_CHECKING:
    from hyper.services.context import Context


def read_script(path: str | None, prog: str) -> tuple[str, str]:
    """(text, name) of the job script at `path`, or of stdin when there is none (`bsub < job.sh`)."""
    text, name = _read(path, prog)
    if not text.strip():
        raise UsageError(f"the job script {'on stdin' if name == 'STDIN' else name} is empty",
                         "give a script with a command in it")
    return text, name


def _read(path: str | None, prog: str) -> tuple[str, str]:
    if path is None or path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError("no job script given", f"{prog} job.sh, or pipe a script in: {prog} < job.sh")
        return sys.stdin.read(), "STDIN"
    try:
        with open(path, encoding="utf-8", errors="surrogateescape") as fh:
            return fh.read(), path
    except FileNotFoundError:
        raise UsageError(f"job script {path} does not exist", "check the path") from None
    except IsADirectoryError:
        raise UsageError(f"job script {path} is a directory", "give the script file") from None
    except PermissionError:
        raise UsageError(f"job script {path} is not readable", f"chmod u+r {path}") from None


def split_words(words: list[str], family: str, own_flags: tuple[str, ...] = (),
                own_values: tuple[str, ...] = ()) -> tuple[list[str], dict[str, str | bool], list[str]]:
    """Split a submit command line into (family options, the command's own options, script and its args).

    Options come first, as sbatch and bsub read them; the first word that is not an option is the script
    (or, for bsub, the command). `own_flags`/`own_values` are options of the command itself (`--parsable`,
    `--wrap`), not directives.
    """
    table = TABLES[family]
    options: list[str] = []
    own: dict[str, str | bool] = {}
    i = 0
    while i < len(words):
        word = words[i]
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if name in own_flags:
            own[name] = True
        elif name in own_values:
            if not eq:
                i += 1
                if i >= len(words):
                    raise UsageError(f"option {name} needs a value", f"e.g. {name} VALUE")
                value = words[i]
            own[name] = value
        elif word == "--":
            return options, own, words[i + 1:]
        elif not word.startswith("-") or word == "-":
            return options, own, words[i:]
        else:
            options.append(word)
            if not eq and word in table and table[word][0]:
                i += 1
                if i < len(words):
                    options.append(words[i])
        i += 1
    return options, own, []


def submit_script(ctx: Context, family: str, options: list[str], script_text: str, script_name: str,
                  family_defaults: Callable[[Directives], Directives] | None = None) -> tuple[list[Job], Directives]:
    """Submit a script with `family`'s command-line options over its directives, exactly as qsub does (one
    service call, then the local agent is woken). `family_defaults` fills in what the family's scheduler
    decides when neither says (Slurm's output file and working directory...)."""
    from hyper.services import jobs as svc
    from hyper.services.submission import submit_and_wake

    cli = parse_options(options, family)
    merged = svc.merge_directives(parse_directives(script_text, script_name), cli)
    if family_defaults is not None:
        merged = family_defaults(merged)
    jobs = submit_and_wake(ctx, merged, script=script_text, command=None, script_name=script_name,  # wakes the agent
                  submit_env=dict(os.environ), cwd=os.getcwd(), user=getpass.getuser())
    return jobs, merged


def select_jobs(ctx: Context, ids: list[str] | None, *, users: list[str] | None = None, names: list[str] | None = None,
                queues: list[str] | None = None, finished: bool = False,
                elements: bool = False) -> tuple[list[Job], list[str]]:
    """Jobs named by `ids` (any state) or, without ids, the active ones (all with `finished`), then filtered
    by user, name and queue. Returns (jobs, ids that name no job)."""
    from hyper.parsing.jobids import parse_job_ids
    from hyper.services import jobs as svc
    from hyper.store.base import JobFilter

    missing: list[str] = []
    if ids:
        jobs, missing = svc.get_jobs(ctx, parse_job_ids(ids))
    else:
        jobs = svc.list_jobs(ctx, JobFilter(include_finished=finished, elements=elements))
    jobs = [j for j in jobs if (not users or j.user in users) and (not names or j.name in names)
            and (not queues or j.queue in queues)]
    return jobs, missing


def refs_of(jobs: list[Job]) -> list:
    """The references that name exactly these jobs: a job, a whole array, or one element."""
    from hyper.parsing.arrays import parse_array
    from hyper.parsing.jobids import JobRef

    return [JobRef(j.id, None, j.is_array) if j.index is None else JobRef(j.id, parse_array(str(j.index)))
            for j in jobs]


def comma_list(values: list[str] | None) -> list[str]:
    """`-u a,b -u c` -> [a, b, c]: Slurm and LSF take lists both ways."""
    return [v for value in values or [] for v in value.replace(" ", ",").split(",") if v]


def fixed(value: object, width: int | None, right: bool) -> str:
    """A value in a fixed-width column, truncated to fit, as squeue and bjobs print them."""
    text = "" if value is None else str(value)
    if width is None:
        return text
    text = text[:width]
    return text.rjust(width) if right else text.ljust(width)
