"""Job ids as users type them: `12`, `12.host`, `12[]`, `12[3]`, `12[1-5]`, Slurm's `12_3`, and id ranges
`100-110` (so `qdel 100-110` removes eleven jobs)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable

from hyper.errors import UsageError

if TYPE_CHECKING:
    from hyper.parsing.arrays import ArraySpec

MAX_ID_RANGE = 100_000
MAX_JOB_ID = 2**63 - 1  # what the stores hold
_HINT = "job ids look like 12, 12[], 12[3], 12[1-5], 12_3 or a range 100-110"
# [0-9], not \d: int() must accept every digit ('²' is \d-free but isdigit(), Arabic-Indic digits are \d)
# compiled by re's cache on first use (a plain qstat never parses an id; compiling cost it ~0.4 ms: issue 15)
_ID = r"""^(?P<id>[0-9]+)
    (?: \[(?P<idx>[^\]]*)\]          # PBS: 12[] 12[3] 12[1-5]
      | _\[?(?P<sidx>[0-9,:%-]+)\]?   # Slurm: 12_3 12_[1-5]
      | -(?P<to>[0-9]+)               # id range: 100-110
    )?
    (?:\.[A-Za-z0-9][\w.-]*)?$     # optional .host suffix, ignored
    """


@dataclass(frozen=True)
class JobRef:
    """A reference to a job, an array (`whole_array`) or some of an array's elements (`indices`)."""

    id: int
    indices: ArraySpec | None = None
    whole_array: bool = False

    @property
    def text(self) -> str:
        if self.indices is not None:
            return f"{self.id}[{self.indices.text}]"
        return f"{self.id}[]" if self.whole_array else str(self.id)

    def __str__(self) -> str:
        return self.text


def parse_job_ids(words: Iterable[str]) -> list[JobRef]:
    """Every word parsed, or a UsageError naming the first that does not parse (nothing is acted on)."""
    refs: list[JobRef] = []
    for word in words:
        for part in _split(word):
            refs.extend(_parse_one(part))
    return refs


def _split(word: str) -> list[str]:
    """`12[],13 14` -> `12[]`, `13`, `14`: split on commas and whitespace outside brackets (`12[1,3]` is one)."""
    parts, current, depth = [], "", 0
    for char in word:
        if depth == 0 and (char == "," or char.isspace()):
            if current:
                parts.append(current)
            current = ""
            continue
        if char == "[":
            depth += 1
        elif char == "]" and depth:
            depth -= 1
        current += char
    if current:
        parts.append(current)
    return parts


def parse_job_id(word: str) -> JobRef:
    """Exactly one job, array or element (qlog, qsub dependencies)."""
    refs = _parse_one(word)
    if len(refs) != 1:
        raise UsageError(f"job id '{word}' names {len(refs)} jobs", "give one job id")
    return refs[0]


def _parse_one(word: str) -> list[JobRef]:
    text = word.strip()
    m = re.match(_ID, text, re.VERBOSE)
    if not m:
        raise UsageError(f"job id '{word}' does not parse", _HINT)
    job_id = _job_number(m.group("id"), word)
    if m.group("to") is not None:
        last = _job_number(m.group("to"), word)
        if last < job_id:
            raise UsageError(f"job id range '{word}' runs backwards", f"write {last}-{job_id}")
        if last - job_id >= MAX_ID_RANGE:
            raise UsageError(f"job id range '{word}' spans more than {MAX_ID_RANGE} ids", "split it")
        return [JobRef(i) for i in range(job_id, last + 1)]
    index_text = m.group("idx") if m.group("idx") is not None else m.group("sidx")
    if index_text is None:
        return [JobRef(job_id)]
    if index_text == "":
        return [JobRef(job_id, None, True)]
    from hyper.parsing.arrays import parse_array  # only for element ids: `qstat 12` and `qdel 12` skip it

    try:
        return [JobRef(job_id, parse_array(index_text), False)]
    except UsageError:
        raise UsageError(f"job id '{word}' does not parse", _HINT) from None


def _job_number(digits: str, word: str) -> int:
    # the length check first: int() refuses more than 4300 digits
    if len(digits.lstrip("0")) > len(str(MAX_JOB_ID)) or int(digits) > MAX_JOB_ID:
        raise UsageError(f"job id '{word}' is too large", f"job ids go up to {MAX_JOB_ID}")
    return int(digits)


def format_job_id(job_id: int, index: int | None = None, array: bool = False) -> str:
    if index is not None:
        return f"{job_id}[{index}]"
    return f"{job_id}[]" if array else str(job_id)
