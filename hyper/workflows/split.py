"""Split an input file into parts for an array: one part per element, each a file of whole lines.

Streaming: the file is read line by line (one line in memory at a time, never the whole file), once to count
lines when ``--parts K`` needs the count, and once to write the parts. Each finished part goes to the host's
area (a rename under the local data directory, or an upload to S3 and the local copy removed; four uploads
run while the next parts are written), so a split needs at most a few parts of scratch space. Parts are
``part-000001`` ... matching array indices 1..N.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from hyper.errors import UsageError

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from hyper.workflows.area import Area

MAX_PARTS = 100_000  # an array this big is already a lot of elements; beyond it use bigger parts


def part_name(index: int) -> str:
    return f"part-{index:06d}"


def check_source(path: str) -> Path:
    """The split file must be a readable regular file; one line saying what is wrong otherwise."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"split file {path} does not exist", "give the input file to split: --split FILE")
    if p.is_dir():
        raise UsageError(f"split file {path} is a directory", "give a file of lines: --split FILE")
    if not os.access(p, os.R_OK):
        raise UsageError(f"split file {path} is not readable", f"chmod u+r {path}")
    return p


def count_lines(path: Path) -> int:
    """Lines in a file (a last line without a newline counts), in 1 MiB reads."""
    lines, last = 0, b"\n"
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            lines += chunk.count(b"\n")
            last = chunk[-1:]
    return lines + (0 if last == b"\n" else 1)


def plan(path: str, lines_per_part: int | None, parts: int | None) -> tuple[Path, int, int]:
    """(source, lines per part, number of parts), validated before anything is written."""
    if lines_per_part is not None and parts is not None:
        raise UsageError("give --lines-per-part or --parts, not both", "e.g. --split data.txt --parts 100")
    if lines_per_part is None and parts is None:
        raise UsageError("--split needs --lines-per-part N or --parts K", "e.g. --split data.txt --parts 100")
    if lines_per_part is not None and lines_per_part < 1:
        raise UsageError(f"--lines-per-part {lines_per_part}: a part needs at least 1 line", "give N >= 1")
    if parts is not None and parts < 1:
        raise UsageError(f"--parts {parts}: there must be at least 1 part", "give K >= 1")
    source = check_source(path)
    total = count_lines(source)
    if total == 0:
        raise UsageError(f"split file {path} is empty (0 lines)", "nothing to split: give a file with lines")
    if parts is not None:
        lines_per_part = -(-total // parts)
    assert lines_per_part is not None  # neither given was refused above
    count = -(-total // lines_per_part)
    if count > MAX_PARTS:
        raise UsageError(f"{path} would make {count} parts, more than {MAX_PARTS}",
                         "use bigger parts: a larger --lines-per-part or a smaller --parts")
    return source, lines_per_part, count


class _Uploads:
    """Parts go to S3 a few at a time while the next ones are written (bounded: at most ``window`` parts wait
    on local disk); into the local area they are renames, done at once."""

    def __init__(self, area: Area, window: int = 8):
        self.area, self.window = area, window
        self.pending: list[Future[None]] = []
        self.pool: ThreadPoolExecutor | None = None
        if area.kind == "s3":
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="hyper-parts")

    def put(self, path: Path, key: str) -> None:
        if self.pool is None:
            self.area.put(path, key, move=True)
            return
        self.pending.append(self.pool.submit(self.area.put, path, key, move=True))
        while len(self.pending) >= self.window:
            self.pending.pop(0).result()  # re-raises an upload's failure here

    def finish(self) -> None:
        try:
            for future in self.pending:
                future.result()
        finally:
            self.pending = []
            if self.pool is not None:
                self.pool.shutdown(wait=True)


def write_parts(source: Path, lines_per_part: int, area: Area, prefix: str) -> int:
    """Write the parts to ``area`` under ``prefix``; returns how many were written."""
    index = 0
    uploads = _Uploads(area)
    try:
        with open(source, "rb") as fh:
            for first in fh:
                index += 1
                key = f"{prefix}/{part_name(index)}"
                scratch = area.scratch(key)
                _write_part(first, fh, lines_per_part - 1, scratch)
                uploads.put(scratch, key)
    finally:
        uploads.finish()
    return index


def _write_part(first: bytes, rest: Iterator[bytes], more: int, path: Path) -> None:
    """One part: ``first`` and the next ``more`` lines of ``rest`` (fewer at the end of the file)."""
    with open(path, "wb", buffering=1 << 20) as out:
        out.write(first)
        for line in itertools.islice(rest, more):
            out.write(line)
