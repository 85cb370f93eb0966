"""Job options from `#HYPER`, `#PBS`, `#SBATCH` and `#BSUB` directives, and from qsub's command line.

Each family keeps its own meanings (`-J` is an array in PBS, a name in Slurm and LSF; `-t` is a walltime in
Slurm); the command line is PBS. `#HYPER` is PBS plus the seed's `-n` name, `-r` retries and `-d` definition.
Like PBS and Slurm, directives are read up to the first executable line of the script. Every problem is a
UsageError naming the file and line, raised before anything is submitted.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from hyper.errors import UsageError
from hyper.parsing.durations import parse_duration, parse_memory
from hyper.parsing.jobids import JobRef, parse_job_id

if TYPE_CHECKING:
    from hyper.parsing.arrays import ArraySpec

DEPENDENCY_KINDS = ("afterok", "afternotok", "afterany")
_ALIASES = {"afterokarray": "afterok", "afternotokarray": "afternotok", "afteranyarray": "afterany"}
_DEP_HINT = "write afterok:12, afternotok:12:13 or afterany:12[] (several types separated by commas)"
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PREFIXES = {"#HYPER": "HYPER", "#PBS": "PBS", "#SBATCH": "SBATCH", "#BSUB": "BSUB"}


def _parse_array(text: str) -> ArraySpec:
    """hyper.parsing.arrays, imported when a script or command line asks for an array: most qsubs do not."""
    from hyper.parsing.arrays import parse_array

    return parse_array(text)


@dataclass(frozen=True)
class Dependency:
    kind: str  # afterok | afternotok | afterany
    ref: JobRef

    @property
    def text(self) -> str:
        return f"{self.kind}:{self.ref.text}"


@dataclass
class Directives:
    """What a user asked for; None means "not said here", so the command line can override field by field."""

    name: str | None = None
    queue: str | None = None
    definition: str | None = None
    retries: int | None = None
    rerunnable: bool | None = None
    walltime: int | None = None  # seconds
    output: str | None = None
    error: str | None = None
    join: str | None = None  # "oe", "eo" or "n"
    env: dict[str, str | None] = field(default_factory=dict)  # None: take the value from the submitter
    export_all: bool | None = None
    # export_all came only from Slurm's implicit default (an #SBATCH script), not from -V/--export=ALL: an aws
    # host does not apply it (hyper/services/environment.py); not part of equality, it says why, not what
    export_default: bool = field(default=False, compare=False)
    array: ArraySpec | None = None
    depend: list[Dependency] = field(default_factory=list)
    hold: bool | None = None
    chdir: str | None = None
    vcpus: int | None = None
    memory_mib: int | None = None
    gpus: int | None = None
    priority: int | None = None
    ignored: list[str] = field(default_factory=list)  # accepted options that have no effect here
    stagein: list[str] = field(default_factory=list)  # PBS staging specs (hyper/workflows/staging.py)
    stageout: list[str] = field(default_factory=list)
    # which family's directives the script used (PBS, SBATCH, BSUB, HYPER; None: none): its working directory
    # and default output files follow that family's documented behaviour (hyper/services/jobs.py)
    family: str | None = field(default=None, compare=False)
    args: list[str] = field(default_factory=list)  # the script's own arguments (`qsub job.sh a b`, PBS -F)
    retry_on_exit: bool | None = None  # True: non-zero exits count as failures to retry (own retries imply it)


# ---------------------------------------------------------------- dependencies


def parse_dependency(text: str, style: str = "PBS") -> list[Dependency]:
    """PBS `afterok:12:13,afterany:14`, Slurm the same (ids may be `12_3`), LSF `done(12) && exit(13)`."""
    text = text.strip()
    if style == "BSUB":
        return _parse_lsf_dependency(text)
    if style == "SBATCH" and "?" in text:
        raise UsageError(f"dependency '{text}' uses ? (any of)", "hyper needs every dependency met: use commas")
    deps: list[Dependency] = []
    for clause in filter(None, text.split(",")):
        kind, sep, ids = clause.partition(":")
        kind = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
        if kind not in DEPENDENCY_KINDS:
            raise UsageError(f"dependency type '{kind}' in '{text}' is not supported", _DEP_HINT)
        if not sep or not ids:
            raise UsageError(f"dependency '{clause}' names no job", _DEP_HINT)
        for word in ids.split(":"):
            word = word.split("+")[0]  # Slurm after:12+5 (minutes) has no meaning for these kinds
            try:
                deps.append(Dependency(kind, parse_job_id(word)))
            except UsageError:
                raise UsageError(f"dependency '{text}': job id '{word}' does not parse", _DEP_HINT) from None
    if not deps:
        raise UsageError(f"dependency '{text}' is empty", _DEP_HINT)
    return deps


_LSF_KINDS = {"done": "afterok", "exit": "afternotok", "ended": "afterany"}
_LSF_TERM = re.compile(r"^(done|exit|ended)\(\s*([^)\s,]+)\s*\)$")


def _parse_lsf_dependency(text: str) -> list[Dependency]:
    if "||" in text or "!" in text:
        raise UsageError(f"dependency '{text}' uses || or !", "hyper needs every dependency met: join with &&")
    deps = []
    for term in text.split("&&"):
        m = _LSF_TERM.match(term.strip())
        if not m:
            raise UsageError(f"dependency term '{term.strip()}' is not supported",
                             "write done(12), exit(12) or ended(12), joined with &&")
        try:
            deps.append(Dependency(_LSF_KINDS[m.group(1)], parse_job_id(m.group(2))))
        except UsageError:
            raise UsageError(f"dependency '{text}': job id '{m.group(2)}' does not parse", _DEP_HINT) from None
    return deps


# ---------------------------------------------------------------- small value parsers


def _env_list(text: str, d: Directives) -> None:
    """`A=1,B` as PBS -v takes it: B's value comes from the submitting environment."""
    for item in filter(None, (x.strip() for x in re.split(r",(?=\s*[A-Za-z_][A-Za-z0-9_]*(?:=|,|$))", text))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not _NAME.match(key):
            raise UsageError(f"environment variable name '{key}' is not valid",
                             "write NAME=value or NAME, separated by commas")
        d.env[key] = value.strip().strip("'\"") if eq else None


_WHOLE = re.compile(r"\s*([+-]?)0*([0-9]+)\s*")  # ASCII digits only: int() would also take '١' and '1_000'


def _int(text: str, what: str, low: int = 0, high: int | None = None) -> int:
    m = _WHOLE.fullmatch(text)
    if not m:
        raise UsageError(f"{what} '{text}' is not a whole number", f"give a number, e.g. {max(low, 1)}")
    bounds = f"{low}..{high}" if high is not None else f"{low} or more"
    if len(m.group(2)) > 18:  # int() refuses more than 4300 digits; no count or priority comes near 18
        raise UsageError(f"{what} {text.strip()} is out of range", f"give {bounds}")
    value = int(m.group(1) + m.group(2))
    if value < low or (high is not None and value > high):
        raise UsageError(f"{what} {value} is out of range", f"give {bounds}")
    return value


def _yes_no(text: str, option: str) -> bool:
    value = text.strip().lower()
    if value in ("y", "yes", "true"):
        return True
    if value in ("n", "no", "false"):
        return False
    raise UsageError(f"{option} takes y or n (rerunnable), not '{text}'",
                     "for a number of retries use --retries N or `#HYPER -r N`")


def _pbs_resources(text: str, d: Directives) -> None:
    """`-l walltime=1:00:00,ncpus=4,mem=4gb,ngpus=1` and `select=1:ncpus=2:ngpus=1`, Torque's `nodes=1:ppn=4`."""
    for item in filter(None, (x.strip() for x in text.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not value:
            raise UsageError(f"resource '{item}' has no value", "write -l key=value, e.g. -l walltime=1:00:00")
        if key in ("select", "nodes"):
            count, *chunk = value.split(":")
            if not (count.isascii() and count.isdigit()):  # ASCII: isdigit() alone takes '²', which int() refuses
                raise UsageError(f"{key}={count} is not a number of nodes", "a hyper job runs on one worker: use 1")
            if count.lstrip("0") != "1":  # compared as text: int() refuses more than 4300 digits
                raise UsageError(f"{key}={count} asks for several nodes", "a hyper job runs on one worker: use 1")
            for part in chunk:
                sub_key, _, sub_value = part.partition("=")
                _pbs_resource("ncpus" if sub_key == "ppn" else sub_key, sub_value, d, item)
        else:
            _pbs_resource(key, value, d, item)


def _pbs_resource(key: str, value: str, d: Directives, item: str) -> None:
    if key == "walltime":
        d.walltime = parse_duration(value, "s")
    elif key in ("ncpus", "ppn"):
        d.vcpus = _int(value, "ncpus", 1)
    elif key in ("ngpus", "gpus"):
        d.gpus = _int(value, key, 0)
    elif key == "mem":
        d.memory_mib = parse_memory(value, plain_unit="")
    elif key in ("place", "host", "vnode", "arch", "cput", "pcput", "vmem", "pmem", "file", "software", "mpiprocs",
                 "ompthreads"):
        d.ignored.append(f"-l {item}")
    else:
        raise UsageError(f"resource '{key}' is not known", "use walltime, ncpus, ngpus, mem or select=1:...")


def _pbs_attributes(text: str, d: Directives) -> None:
    """`-W depend=afterok:12,block=true,...`: depend is kept, the rest has no effect here."""
    for item in re.split(r",(?=\s*[a-z_]+=)", text):
        key, _, value = item.partition("=")
        key = key.strip().lower()
        if key == "depend":
            d.depend = [*d.depend, *parse_dependency(value, "PBS")]
        elif key in ("stagein", "stageout"):
            getattr(d, key).append(value.strip())
        elif key in ("group_list", "umask", "sandbox", "run_count", "release_nodes_on_stageout"):
            d.ignored.append(f"-W {item.strip()}")
        elif key == "block":
            raise UsageError("-W block=true only works on the qsub command line", "use qsub --wait")
        else:
            raise UsageError(f"-W attribute '{key}' is not known", "use -W depend=afterok:ID")


def _join(value: str) -> str:
    value = value.strip().lower()
    if value not in ("oe", "eo", "n"):
        raise UsageError(f"-j takes oe, eo or n, not '{value}'", "-j oe puts stderr into the output file")
    return value


def _strip_host(path: str) -> str:
    """PBS allows `host:path` for -o/-e; the job writes where it runs, so the host part is dropped."""
    head, sep, tail = path.partition(":")
    return tail if sep and head and "/" not in head else path


def _set(attr: str, convert: Callable[[str], object] = str) -> Callable[[str, Directives], None]:
    def apply(value: str, d: Directives) -> None:
        setattr(d, attr, convert(value))

    return apply


def _flag(attr: str, value: object = True) -> Callable[[str, Directives], None]:
    def apply(_: str, d: Directives) -> None:
        setattr(d, attr, value)

    return apply


def _unsupported(option: str, hint: str) -> Callable[[str, Directives], None]:
    def apply(_: str, d: Directives) -> None:
        raise UsageError(f"{option} is not supported", hint)

    return apply


def _add_depend(style: str) -> Callable[[str, Directives], None]:
    def apply(value: str, d: Directives) -> None:
        d.depend = [*d.depend, *parse_dependency(value, style)]

    return apply


def _queue(value: str, d: Directives) -> None:
    d.queue = value.split("@")[0]  # PBS queue@server


def _priority(value: str, d: Directives) -> None:
    d.priority = _int(value, "priority", -1024, 1023)


# ---------------------------------------------------------------- option tables: option -> (takes value, apply)

Option = tuple[bool, Callable[[str, Directives], None]]


def _ignore(option: str, takes: bool = True) -> Option:
    def apply(value: str, d: Directives) -> None:
        d.ignored.append(f"{option} {value}".strip())

    return takes, apply


_PBS: dict[str, Option] = {
    "-N": (True, _set("name")),
    "-q": (True, _queue),
    "-J": (True, _set("array", _parse_array)),
    "-t": (True, _set("array", _parse_array)),  # Torque arrays
    "-o": (True, _set("output", _strip_host)),
    "-e": (True, _set("error", _strip_host)),
    "-j": (True, _set("join", _join)),
    "-v": (True, _env_list),
    "-V": (False, _flag("export_all")),
    "-l": (True, _pbs_resources),
    "-W": (True, _pbs_attributes),
    "-h": (False, _flag("hold")),
    "-r": (True, lambda v, d: setattr(d, "rerunnable", _yes_no(v, "-r"))),
    "-p": (True, _priority),
    "-d": (True, _set("chdir")),  # Torque's working directory
    "-D": (True, _set("chdir")),
    "-a": (True, _unsupported("-a (deferred start time)", "submit later with `at` or cron")),
    "-I": (False, _unsupported("-I (interactive job)", "run the command directly, or qsub --wait")),
    "-m": _ignore("-m"), "-M": _ignore("-M"), "-A": _ignore("-A"), "-P": _ignore("-P"), "-S": _ignore("-S"),
    "-k": _ignore("-k"), "-c": _ignore("-c"), "-u": _ignore("-u"), "-C": _ignore("-C"),
    "-X": _ignore("-X", False), "-z": _ignore("-z", False),
}

_HYPER: dict[str, Option] = {
    **_PBS,
    "-n": (True, _set("name")), "--name": (True, _set("name")),
    "-r": (True, _set("retries", lambda v: _int(v, "retries", 0))),
    "--retries": (True, _set("retries", lambda v: _int(v, "retries", 0))),
    "-d": (True, _set("definition")), "--definition": (True, _set("definition")),
    "--queue": (True, _queue),
    "--stagein": (True, lambda v, d: d.stagein.append(v.strip())),
    "--stageout": (True, lambda v, d: d.stageout.append(v.strip())),
}


def _slurm_export(value: str, d: Directives) -> None:
    items = [x.strip() for x in value.split(",") if x.strip()]
    rest = []
    for item in items:
        if item.upper() == "ALL":
            d.export_all = True
        elif item.upper() == "NONE":
            d.export_all = False
        else:
            rest.append(item)
    if rest:
        if d.export_all is None:
            d.export_all = False  # --export=A,B exports only those
        _env_list(",".join(rest), d)


def _slurm_gres(value: str, d: Directives) -> None:
    for item in value.split(","):
        parts = item.split(":")
        if parts[0] != "gpu":
            d.ignored.append(f"--gres={item}")
            continue
        count = parts[-1] if len(parts) > 1 else "1"
        d.gpus = _int(count, "gpus", 0)


def _slurm_gpus(value: str, d: Directives) -> None:
    d.gpus = _int(value.split(":")[-1], "gpus", 0)


def _slurm_nodes(value: str, d: Directives) -> None:
    if value.strip() not in ("1", "1-1"):
        raise UsageError(f"--nodes={value} asks for several nodes", "a hyper job runs on one worker: use 1")


def _one_node(value: str, option: str) -> None:
    if value.strip().lstrip("0") != "1":
        raise UsageError(f"{option} {value} asks for several nodes", "a hyper job runs on one worker: use 1")


def _slurm_mem(value: str, d: Directives) -> None:
    d.memory_mib = parse_memory(value, "m")


_SLURM: dict[str, Option] = {}
for _names, _option in (
    (("-J", "--job-name"), (True, _set("name"))),
    (("-p", "--partition"), (True, _queue)),
    (("-a", "--array"), (True, _set("array", _parse_array))),
    (("-t", "--time"), (True, _set("walltime", lambda v: parse_duration(v, "m")))),
    (("-o", "--output"), (True, _set("output"))),
    (("-e", "--error"), (True, _set("error"))),
    (("--export",), (True, _slurm_export)),
    (("-d", "--dependency"), (True, _add_depend("SBATCH"))),
    (("-H", "--hold"), (False, _flag("hold"))),
    (("-D", "--chdir"), (True, _set("chdir"))),
    (("-c", "--cpus-per-task"), (True, _set("vcpus", lambda v: _int(v, "cpus-per-task", 1)))),
    (("--mem",), (True, _slurm_mem)),
    (("--gres",), (True, _slurm_gres)),
    (("-G", "--gpus", "--gpus-per-node", "--gpus-per-task"), (True, _slurm_gpus)),
    (("-N", "--nodes"), (True, _slurm_nodes)),
    (("--nice",), (True, lambda v, d: setattr(d, "priority", -_int(v, "nice", -1023, 1024)))),
    (("--priority",), (True, _priority)),
    (("--requeue",), (False, _flag("rerunnable", True))),
    (("--no-requeue",), (False, _flag("rerunnable", False))),
    (("--begin",), (True, _unsupported("--begin (deferred start time)", "submit later with `at` or cron"))),
):
    for _name in _names:
        _SLURM[_name] = _option
for _name in ("-A", "--account", "--mail-type", "--mail-user", "--qos", "-q", "--comment", "-C", "--constraint",
              "--open-mode", "--signal", "--reservation", "--licenses", "-L", "--mem-per-cpu", "--mem-per-gpu",
              "--distribution", "-m", "--tmp", "--nodelist", "-w", "--exclude", "-x", "--ntasks-per-node",
              "-n", "--ntasks", "--time-min", "--wckey", "--cluster", "-M", "--clusters", "--uid", "--gid"):
    _SLURM[_name] = _ignore(_name)
for _name in ("--exclusive", "--parsable", "--kill-on-invalid-dep", "--no-kill", "-k", "--oversubscribe",
              "-s", "--contiguous", "--wait", "-W", "--get-user-env", "-Q", "--quiet", "-v", "--verbose"):
    _SLURM[_name] = _ignore(_name, False)


def _lsf_name(value: str, d: Directives) -> None:
    """`-J name[1-100]%10`: LSF puts the array in the name."""
    m = re.fullmatch(r"([^\[]*)(\[[^\]]*\](?:%[0-9]+)?)?", value.strip())
    if not m:
        raise UsageError(f"-J '{value}' does not parse", "write -J name or -J 'name[1-100]%10'")
    if m.group(1):
        d.name = m.group(1)
    if m.group(2):
        d.array = _parse_array(m.group(2).replace("]", "", 1).replace("[", "", 1))


def _lsf_gpu(value: str, d: Directives) -> None:
    m = re.search(r"num=([0-9]+)", value)
    if m:
        d.gpus = _int(m.group(1), "gpu num", 0)
    else:
        d.gpus = 1 if value.strip() == "-" else _int(value, "gpu num", 0)


def _lsf_env(value: str, d: Directives) -> None:
    if value.strip().lower() == "all":
        d.export_all = True
    elif value.strip().lower() == "none":
        d.export_all = False
    else:
        _env_list(value.replace(" ", ""), d)


def _lsf_requirements(value: str, d: Directives) -> None:
    """`-R "rusage[mem=4000] span[hosts=1]"`: memory (MB, LSF's default unit) and ngpus are requests; the
    rest (select, order, same, span[hosts=1]) has no meaning on one worker and is noted."""
    used = False
    for m in re.finditer(r"rusage\[([^\]]*)\]", value):
        for item in re.split(r"[,:]", m.group(1)):
            key, _, amount = item.partition("=")
            key = key.strip()
            if key == "mem":
                d.memory_mib = parse_memory(amount.strip().split("/")[0], "m")
                used = True
            elif key in ("ngpus_physical", "ngpus"):
                d.gpus = _int(amount.strip(), key, 0)
                used = True
    if re.search(r"span\[\s*hosts\s*=\s*(?!1\b)", value) or re.search(r"span\[\s*ptile", value):
        raise UsageError(f"-R '{value}' spreads the job over several hosts", "a hyper job runs on one worker")
    rest = re.sub(r"rusage\[[^\]]*\]", "", value).strip()
    if rest or not used:
        d.ignored.append(f"-R {value}")


_LSF: dict[str, Option] = {
    "-J": (True, _lsf_name),
    "-q": (True, _queue),
    "-W": (True, _set("walltime", lambda v: parse_duration(v, "m", "hm"))),
    "-o": (True, _set("output")), "-oo": (True, _set("output")),
    "-e": (True, _set("error")), "-eo": (True, _set("error")),
    "-w": (True, _add_depend("BSUB")),
    "-n": (True, _set("vcpus", lambda v: _int(v, "-n", 1))),
    "-nnodes": (True, lambda v, d: _one_node(v, "-nnodes")),  # LSF on CORAL machines; Parsl's LSFProvider
    "-M": (True, _set("memory_mib", lambda v: parse_memory(v, "m"))),
    "-gpu": (True, _lsf_gpu),
    "-H": (False, _flag("hold")),
    "-cwd": (True, _set("chdir")),
    "-r": (False, _flag("rerunnable", True)),
    "-rn": (False, _flag("rerunnable", False)),
    "-sp": (True, _priority),
    "-env": (True, _lsf_env),
    "-b": (True, _unsupported("-b (deferred start time)", "submit later with `at` or cron")),
    "-I": (False, _unsupported("-I (interactive job)", "run the command directly, or qsub --wait")),
    "-R": (True, _lsf_requirements), "-P": _ignore("-P"), "-G": _ignore("-G"), "-u": _ignore("-u"), "-m": _ignore("-m"),
    "-x": _ignore("-x", False), "-B": _ignore("-B", False), "-N": _ignore("-N", False),
}

TABLES = {"PBS": _PBS, "HYPER": _HYPER, "SBATCH": _SLURM, "BSUB": _LSF}


# ---------------------------------------------------------------- parsing


def parse_options(words: list[str], family: str = "PBS", where: str | None = None,
                  into: Directives | None = None) -> Directives:
    """Apply `words` (already split like a shell would) with `family`'s meanings.

    `where` ("job.sh:3") prefixes every error so the user can find the line.
    """
    table = TABLES[family]
    d = into if into is not None else Directives()
    i = 0
    try:
        while i < len(words):
            word = words[i]
            option, value = word, None
            if word.startswith("--") and "=" in word:
                option, _, value = word.partition("=")
            elif word not in table and word.startswith("-") and not word.startswith("--") and len(word) > 2 \
                    and word[:2] in table and table[word[:2]][0]:
                option, value = word[:2], word[2:]  # -Nname, -l walltime=1:00 glued
            if option not in table:
                if not word.startswith("-"):
                    raise UsageError(f"unexpected '{word}' in {family} options",
                                     "directives take options only, e.g. -N name")
                raise UsageError(f"{family} option {option} is not known", _family_hint(family))
            takes_value, apply = table[option]
            if takes_value and value is None:
                i += 1
                if i >= len(words):
                    raise UsageError(f"{family} option {option} needs a value", _family_hint(family))
                value = words[i]
            elif not takes_value and value is not None:
                raise UsageError(f"{family} option {option} takes no value", _family_hint(family))
            apply(value or "", d)
            i += 1
    except UsageError as exc:
        if where:
            raise UsageError(f"{where}: {exc.message}", exc.hint) from None
        raise
    return d


def _family_hint(family: str) -> str:
    return {"PBS": "see `qsub --help` for the PBS options hyper reads",
            "HYPER": "#HYPER takes -n NAME, -q QUEUE, -r RETRIES, -d DEFINITION and PBS options",
            "SBATCH": "use e.g. --job-name, --partition, --array, --time, --output, --dependency",
            "BSUB": "use e.g. -J, -q, -W, -o, -e, -w, -n, -M"}[family]


def parse_directives(text: str, path: str) -> Directives:
    """Directives of a script, up to its first executable line; later lines override earlier ones."""
    d = Directives()
    slurm_seen = False
    # "\n" only: str.splitlines() also splits on \f, \v, \x1c-\x1e, \x85, U+2028 and U+2029, which neither the
    # shell nor an editor counts as lines, so errors would name the wrong line
    for number, line in enumerate(text.split("\n"), 1):
        line = line.removesuffix("\r")  # CRLF files
        stripped = line.strip()
        if not stripped or (number == 1 and stripped.startswith("#!")):
            continue
        if not stripped.startswith("#"):
            break  # the first command ends the directives, as in PBS and Slurm
        prefix, _, rest = stripped.partition(" ")
        if "\t" in prefix:
            prefix, _, more = prefix.partition("\t")
            rest = f"{more} {rest}"
        family = _PREFIXES.get(prefix)
        if family is None:
            continue
        where = f"{path}:{number}"
        try:
            words = shlex.split(rest, comments=True)
        except ValueError as exc:
            raise UsageError(f"{where}: {exc}", "close the quote") from None
        slurm_seen = slurm_seen or family == "SBATCH"
        if d.family is None or d.family == "HYPER":  # a script written for a scheduler keeps that family
            d.family = family
        parse_options(words, family, where, into=d)
    if slurm_seen:
        # Slurm's defaults: export the submitting environment; stderr goes with stdout unless -e says otherwise
        if d.export_all is None:
            d.export_all = True
            d.export_default = True
        if d.error is None and d.join is None:
            d.join = "oe"
    return d
