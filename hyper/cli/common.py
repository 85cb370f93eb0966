"""What every command line shares: the error boundary and machine/human output.

Only the CLI layers (hyper/cli, qcmds) import typer and rich, and rich only when a human is looking
(a TTY), so `qsub` and scripted `qstat` stay fast.
"""

from __future__ import annotations

import functools
import os
import sys
from typing import TYPE_CHECKING, Any, Callable, Iterable, Sequence, TextIO

from hyper.errors import EXIT_ERROR, HyperError

if TYPE_CHECKING:
    from hyper.services.context import Context

FORMATS = ("table", "json", "yaml", "csv")
HOST_CHOICE: dict[str, str | None] = {"host": None}  # `hyper --host NAME`, set by the app's callback


def open_cli_context() -> Context:
    """The context of the host chosen by --host, $HYPER_HOST or the selection (the services' door)."""
    from hyper.services.context import open_context

    return open_context(HOST_CHOICE["host"])


def debug_enabled() -> bool:
    return os.environ.get("HYPER_DEBUG", "") not in ("", "0")


def print_error(prog: str, message: str, hint: str | None = None) -> None:
    """One line on stderr: what was wrong, then how to fix it; red only on a terminal."""
    line = f"{prog}: {message}" + (f" ({hint})" if hint else "")
    if sys.stderr.isatty() and not os.environ.get("NO_COLOR"):
        line = f"\x1b[31m{line}\x1b[0m"
    sys.stderr.write(line + "\n")


def cli_errors(prog: str) -> Callable:
    """Decorator for command functions: HyperError -> one line + its exit code, never a traceback."""

    def wrap(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except HyperError as exc:
                if debug_enabled():
                    raise
                print_error(prog, exc.message, exc.hint)
                raise SystemExit(exc.exit_code) from None
            except KeyboardInterrupt:
                raise SystemExit(130) from None
            except BrokenPipeError:  # `qstat | head`: the reader left, nothing to report
                sys.stderr.close()
                raise SystemExit(0) from None
            except OSError as exc:
                if debug_enabled():
                    raise
                print_error(prog, f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "),
                            "set HYPER_DEBUG=1 for details")
                raise SystemExit(EXIT_ERROR) from None

        return inner

    return wrap


def show_version(value: bool) -> None:
    """`--version` on every command (an eager option callback): the installed package's version."""
    if value:
        import typer
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("hyper-hpc")
        except PackageNotFoundError:  # run from a source tree that was never installed
            text = "unknown"
        sys.stdout.write(f"hyper {text}\n")
        raise typer.Exit(0)


def check_format(fmt: str | None) -> str:
    fmt = (fmt or "table").lower()
    if fmt not in FORMATS:
        raise HyperError(f"unknown output format {fmt!r}", f"use one of {', '.join(FORMATS)}", 2)
    return fmt


def render(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], fmt: str | None = None,
           *, title: str | None = None, full_rows: Sequence[dict[str, Any]] | None = None,
           out: TextIO | None = None) -> None:
    """Print rows as a table (rich on a TTY, aligned plain text otherwise), JSON, YAML or CSV.

    ``columns`` are (key, header) pairs for the table and CSV; JSON and YAML print ``full_rows`` (every
    field) when given, so machines get the whole record and humans a readable summary.
    """
    out = out or sys.stdout
    fmt = check_format(fmt)
    if fmt == "json":
        import json

        json.dump(list(full_rows if full_rows is not None else rows), out, indent=2, default=str)
        out.write("\n")
    elif fmt == "yaml":
        import yaml

        yaml.safe_dump(_plain(full_rows if full_rows is not None else rows), out, sort_keys=False)
    elif fmt == "csv":
        import csv

        writer = csv.writer(out, lineterminator="\n")
        writer.writerow([h for _, h in columns])
        for row in rows:
            writer.writerow(["" if row.get(k) is None else row.get(k) for k, _ in columns])
    elif out.isatty():
        _rich_table(rows, columns, title, out)
    else:
        out.write(plain_table(rows, columns))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def plain_table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """PBS-style text: headers, a dashed rule, left-aligned columns; stable for scripts and tests.

    Built column-wise with one format string: `qstat` of 10,000 jobs spends most of its printing here."""
    keys = [k for k, _ in columns]
    cells = [[h for _, h in columns]]
    cells.extend(["" if v is None else str(v) for v in map(row.get, keys)] for row in rows)
    widths = [max(map(len, column)) for column in zip(*cells)]
    line = " ".join(f"{{:<{w}}}" for w in widths).format
    lines = [line(*cells[0]).rstrip(), " ".join("-" * w for w in widths)]
    lines.extend(line(*r).rstrip() for r in cells[1:])
    return "\n".join(lines) + "\n"


def _rich_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, str]], title: str | None,
                out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, box=None, header_style="bold", pad_edge=False)
    for _, header in columns:
        table.add_column(header)
    for row in rows:
        table.add_row(*("" if row.get(k) is None else str(row.get(k)) for k, _ in columns))
    Console(file=out).print(table)
