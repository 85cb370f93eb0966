"""Array index specifications: PBS `1-1000:2%50`, Slurm `0-15,20%4`, a single `7`.

An array is stored as one record holding this spec's text; elements materialise as they start. So the
spec must answer "which index is the n-th element" and "where is index i" without listing the indices:
a million-element array is a handful of integers here, never a million-entry list.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import Iterator

from hyper.errors import UsageError

MAX_INDEX = 2**31 - 1
_HINT = "write ranges like 1-100, 1-100:2, 0-15,20 or 1-1000%50 (at most 50 at once)"
_RANGE = re.compile(r"^(\d+)(?:-(\d+)(?::(\d+))?)?$", re.ASCII)  # ASCII: int() must accept every digit


def _number(digits: str) -> int:
    """The value of ASCII `digits`, or MAX_INDEX + 1 for anything larger than MAX_INDEX.

    Any index or limit above MAX_INDEX is rejected and any step above it leaves one index in a range, so the
    exact value of a longer number never matters; capping also keeps int() clear of its 4300-digit limit.
    """
    significant = digits.lstrip("0")
    return int(significant or "0") if len(significant) <= len(str(MAX_INDEX)) else MAX_INDEX + 1


@dataclass(frozen=True)
class Range:
    """start..stop inclusive, every `step`-th index; `stop` is always an index of the range."""

    start: int
    stop: int
    step: int = 1

    @property
    def count(self) -> int:
        return (self.stop - self.start) // self.step + 1

    @property
    def text(self) -> str:
        if self.start == self.stop:
            return str(self.start)
        return f"{self.start}-{self.stop}" + (f":{self.step}" if self.step != 1 else "")


@dataclass(frozen=True)
class ArraySpec:
    """Ordered, non-overlapping ranges of indices and an optional limit on elements running at once."""

    ranges: tuple[Range, ...]
    limit: int | None = None
    _offsets: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        offsets, total = [], 0
        for r in self.ranges:
            offsets.append(total)
            total += r.count
        object.__setattr__(self, "_offsets", tuple(offsets))

    @property
    def count(self) -> int:
        if not self.ranges:
            return 0
        return self._offsets[-1] + self.ranges[-1].count

    def index_at(self, position: int) -> int:
        """The array index of the element at `position` (0-based, in submission order)."""
        if not 0 <= position < self.count:
            raise IndexError(position)
        k = bisect.bisect_right(self._offsets, position) - 1
        r = self.ranges[k]
        return r.start + (position - self._offsets[k]) * r.step

    def position_of(self, index: int) -> int | None:
        """Where `index` sits in submission order, or None when it is not an index of this array."""
        starts = [r.start for r in self.ranges]
        k = bisect.bisect_right(starts, index) - 1
        if k < 0:
            return None
        r = self.ranges[k]
        if index > r.stop or (index - r.start) % r.step:
            return None
        return self._offsets[k] + (index - r.start) // r.step

    def __contains__(self, index: object) -> bool:
        return isinstance(index, int) and self.position_of(index) is not None

    def __iter__(self) -> Iterator[int]:
        for r in self.ranges:
            yield from range(r.start, r.stop + 1, r.step)

    def __len__(self) -> int:
        return self.count

    @property
    def text(self) -> str:
        """Canonical text; parse_array(spec.text) == spec."""
        body = ",".join(r.text for r in self.ranges)
        return body + (f"%{self.limit}" if self.limit is not None else "")

    def __str__(self) -> str:
        return self.text


def parse_array(text: str) -> ArraySpec:
    """Parse `1-1000:2%50`, `0-15,20`, `7`; ranges must ascend without overlapping."""
    raw = text
    text = text.strip().replace(" ", "")
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    limit = None
    if "%" in text:
        text, _, limit_text = text.partition("%")
        if not (limit_text.isascii() and limit_text.isdigit()) or _number(limit_text) < 1:
            raise UsageError(f"array range '{raw}' has a bad limit '%{limit_text}'",
                             "the number after % is how many elements may run at once, e.g. 1-100%10")
        limit = _number(limit_text)
        if limit > MAX_INDEX:
            raise UsageError(f"array range '{raw}' has a limit above {MAX_INDEX}", "use a smaller limit")
    if not text:
        raise UsageError(f"array range '{raw}' is empty", _HINT)
    ranges: list[Range] = []
    for part in text.split(","):
        m = _RANGE.match(part)
        if not m:
            raise UsageError(f"array range '{raw}' does not parse at '{part}'", _HINT)
        start = _number(m.group(1))
        stop = _number(m.group(2)) if m.group(2) is not None else start
        step = _number(m.group(3)) if m.group(3) is not None else 1
        if max(start, stop) > MAX_INDEX:
            raise UsageError(f"array range '{raw}' has an index above {MAX_INDEX}", "use smaller indices")
        if stop < start:
            raise UsageError(f"array range '{raw}' runs backwards at '{part}'", f"write {stop}-{start}")
        if step < 1:
            raise UsageError(f"array range '{raw}' has step 0 at '{part}'", "the step after : must be 1 or more")
        stop -= (stop - start) % step  # 1-10:4 ends at 9: keep `stop` a real index
        if stop == start:
            step = 1  # 5-5:3 and 1-3:5 hold one index: canonical step 1, so parse_array(spec.text) == spec
        if ranges and start <= ranges[-1].stop:
            raise UsageError(f"array range '{raw}' overlaps or is out of order at '{part}'",
                             "list ranges in ascending order without overlaps, e.g. 0-15,20")
        ranges.append(Range(start, stop, step))
    return ArraySpec(tuple(ranges), limit)
