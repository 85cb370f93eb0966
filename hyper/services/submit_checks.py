"""What qsub refuses before anything is stored, and why each limit exists.

Every check raises one ``UsageError`` naming the bad input and the fix; none writes anything, so a refused
submission leaves no partial state. The limits mirror what PBS and Slurm users already know:

- ``MAX_NAME`` (236 characters, PBS's job name limit); a name is printable text without ``/`` (it becomes
  part of file names through ``%x``) and valid UTF-8 (it is stored and printed).
- ``MAX_RETRIES`` (100): more reruns than that is a mistake, and SQLite integers end at 2**63.
- ``max_array_size`` per host (``DEFAULT_MAX_ARRAY_SIZE`` = 1,000,000 elements, as Slurm's MaxArraySize):
  a ``max_array_size: N`` line in the host's entry of ``hosts.yaml``, or ``HYPER_MAX_ARRAY_SIZE``, changes it.
"""

from __future__ import annotations

import os
import unicodedata

from hyper.errors import UsageError

MAX_NAME = 236
MAX_RETRIES = 100
DEFAULT_MAX_ARRAY_SIZE = 1_000_000


def check_text(what: str, value: str | None) -> None:
    """Stored strings must be valid UTF-8: undecodable bytes arrive from argv as lone surrogates."""
    if value is None:
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise UsageError(f"{what} is not valid UTF-8 text", f"write {what} with UTF-8 characters only") from None


def check_name(name: str) -> None:
    check_text("the job name", name)
    if not name:
        raise UsageError("the job name is empty", "give a name with -N NAME")
    if len(name) > MAX_NAME:
        raise UsageError(f"the job name has {len(name):,} characters; at most {MAX_NAME} are allowed",
                         "give a shorter name with -N")
    if "/" in name:
        raise UsageError(f"the job name {name!r} contains '/'", "job names become file names (%x): drop the '/'")
    bad = next((c for c in name if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp")), None)
    if bad is not None:
        raise UsageError(f"the job name {name!r} contains the control character U+{ord(bad):04X}",
                         "use printable characters only")


def derived_name(text: str) -> str:
    """A default name taken from a file or program name, made storable instead of refused: the user did not
    type it as a name (undecodable bytes and control characters become '?', long names are cut)."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join("?" if unicodedata.category(c) in ("Cc", "Cf", "Zl", "Zp") else c for c in text)
    return text[:MAX_NAME] or "STDIN"


def check_retries(retries: int) -> None:
    if retries < 0:
        raise UsageError(f"--retries {retries} is negative", "give 0 or more")
    if retries > MAX_RETRIES:
        raise UsageError(f"--retries {retries} is more than the maximum of {MAX_RETRIES}",
                         f"give at most {MAX_RETRIES} (reruns after lost workers or failures)")


def max_array_size(extra: dict | None) -> int:
    raw = os.environ.get("HYPER_MAX_ARRAY_SIZE") or (extra or {}).get("max_array_size")
    try:
        return int(raw) if raw else DEFAULT_MAX_ARRAY_SIZE
    except (TypeError, ValueError):
        raise UsageError(f"HYPER_MAX_ARRAY_SIZE={raw!r} is not a whole number", "e.g. HYPER_MAX_ARRAY_SIZE=100000")


def check_array_size(count: int, limit: int, host: str) -> None:
    if count > limit:
        raise UsageError(f"the array has {count:,} elements; host {host!r} allows at most {limit:,}",
                         "split it into several arrays, or raise max_array_size for the host "
                         "(hosts.yaml or HYPER_MAX_ARRAY_SIZE)")


def check_script(script: str, name: str) -> None:
    """A job script must be text with at least one command: binary files and empty scripts are mistakes."""
    where = f"job script {name}" if name and name != "STDIN" else "the job script (stdin)"
    if "\0" in script or any("\udc80" <= c <= "\udcff" for c in script):
        raise UsageError(f"{where} is a binary file, not a script",
                         "give a text script, or run a program with qsub -- PROGRAM ARGS")
    if not any(line.strip() and not line.lstrip().startswith("#") for line in script.splitlines()):
        raise UsageError(f"{where} is empty: it has no commands to run", "add the commands the job should run")


def check_chdir(chdir: str, local: bool) -> None:
    check_text("the -D directory", chdir)
    if local and not os.path.isdir(chdir):
        raise UsageError(f"-D {chdir}: no such directory", "create it first, or give an existing directory")
