"""`qsub --help` (and qstat's, qdel's, qlog's) without importing typer: typer's own output, cached.

Why: rendering help needs typer, click and rich (~150 ms here), more than everything else a q-command does.
The first `--help` runs typer as always and keeps a copy of exactly what it wrote; later ones print that
copy. The copy is keyed by everything the text depends on -- the command, the files that define its
options and help (the command module, qcmds/common.py, hyper/cli/common.py), the installed typer and rich,
the Python version, whether stdout is a terminal and its size, and the environment variables rich and
typer read (COLUMNS, TERM, NO_COLOR, FORCE_COLOR...) -- so an edit, an upgrade or a wider terminal renders
afresh. The copies live under $HYPER_HOME/cache/help (private, like everything under HYPER_HOME).
tests/test_fastpath.py checks that the cached text equals typer's.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing.TYPE_CHECKING's value, which mypy reads alike, without importing typing here
if TYPE_CHECKING:
    from typing import Any, BinaryIO, Mapping, TextIO

_ENV_NAMES = ("COLUMNS", "LINES", "TERM", "COLORTERM", "NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE",
              "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES", "LANG", "LC_ALL", "LC_CTYPE",
              "PYTHONIOENCODING", "CLICOLOR", "CLICOLOR_FORCE")
_MODULES = ("qcmds.common", "hyper.cli.common", "typer", "rich")


def cache_key(prog: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """What typer's help text for `prog` depends on, as one line; None when a source file cannot be found.

    Kept whole (not hashed) in the cached file's first line and compared on reading, so two keys never
    share a copy, and no hash library is imported on the way."""
    from importlib.util import find_spec

    parts: list[object] = [prog, sys.version, sys.stdout.encoding]
    for name in (f"qcmds.{prog}", *_MODULES):
        spec = find_spec(name)
        if spec is None or not spec.origin:
            return None
        st = os.stat(spec.origin)
        parts.append((spec.origin, st.st_mtime_ns, st.st_size))
    for fd in (0, 1, 2):
        tty = os.isatty(fd)
        parts.append((fd, tty, tuple(os.get_terminal_size(fd)) if tty else None))
    parts.extend((k, v) for k, v in sorted(environ.items()) if k in _ENV_NAMES or k.startswith(("_TYPER", "TYPER")))
    return repr(parts)


def cache_path(prog: str, key: str) -> str:
    """$HYPER_HOME/cache/help/PROG-CRC.txt (hyper.config.hyper_home's rule, without importing pathlib)."""
    from zlib import crc32

    home = os.path.expanduser(os.environ.get("HYPER_HOME") or "~/.hyper")
    return os.path.join(home, "cache", "help", f"{prog}-{crc32(key.encode()):08x}.txt")


class _Tee:
    """sys.stdout for typer while it renders help: writes go through, and a copy is kept."""

    def __init__(self, real: TextIO) -> None:
        self.real, self.bypassed = real, False
        self.copy: list[str] = []

    def write(self, text: str) -> int:
        written = self.real.write(text)  # first: click probes with b"" and expects the real stream's TypeError
        self.copy.append(text)
        return written

    @property
    def buffer(self) -> BinaryIO:
        """Bytes written to the buffer would miss the copy: then nothing is cached."""
        self.bypassed = True
        return self.real.buffer

    def __getattr__(self, name: str) -> Any:
        # isatty, fileno, encoding, flush...: the real stream's, so rich sizes it alike
        return getattr(self.real, name)


def cached_help(prog: str) -> None:
    """Print `prog --help` from the cache and exit 0; on a miss, run typer, keep its text, and exit as it does."""
    if f"_{prog.upper()}_COMPLETE" in os.environ:
        return
    try:
        key = cache_key(prog)
    except OSError:
        return
    if key is None:
        return
    path = cache_path(prog, key)
    try:
        with open(path, encoding="utf-8") as fh:
            first, text = fh.readline(), fh.read()
    except (OSError, UnicodeDecodeError):
        first, text = "", None
    if text is not None and first == key + "\n":
        sys.stdout.write(text)
        sys.stdout.flush()
        sys.exit(0)
    import importlib

    tee = _Tee(sys.stdout)
    sys.stdout = tee
    try:
        importlib.import_module(f"qcmds.{prog}").main()
    except SystemExit as exc:
        sys.stdout = tee.real
        if exc.code in (0, None) and not tee.bypassed:
            _store(path, key + "\n" + "".join(tee.copy))
        raise
    finally:
        sys.stdout = tee.real


def _store(path: str, text: str) -> None:
    """Write the copy atomically (a concurrent --help reads the old copy or the new, never half)."""
    import tempfile
    from pathlib import Path

    from hyper.config import private_dir

    try:
        private_dir(Path(path).parent)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".help-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError:
        pass  # no cache this time: the next --help renders again
