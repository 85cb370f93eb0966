"""Walltimes and memory sizes as PBS, Slurm and LSF users write them.

PBS: `walltime=1:30:00` (a plain number is seconds), `mem=4gb` (a plain number is bytes).
Slurm: `--time=90` (minutes), `1-12:00:00`, `--mem=4G` (a plain number is megabytes).
LSF: `-W 1:30` (hours:minutes), `-M 4GB`.
"""

from __future__ import annotations

import math
import re

from hyper.errors import UsageError

# Every pattern is re.ASCII: `\d` must only match digits int() and float() take, and IGNORECASE must not fold
# 'ſ' (U+017F) to s, 'ı' (U+0131) to i or the Kelvin sign to k.
_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "d": 86400}
# Patterns as text, compiled by re's own cache on first use: qstat imports this module for format_duration
# only, and compiling them up front cost it about half a millisecond of start-up (issue 15).
_SUFFIXED = r"(\d+(?:\.\d+)?)\s*(d|hr|h|min|m|sec|s)"
_NUMBER = r"\d+(?:\.\d+)?"
_DAY_FORM = r"\d+-[\d:]+"
_DURATION_HINT = "write HH:MM:SS (e.g. 1:30:00), D-HH:MM:SS, or 90m / 2h / 1h30m"
MAX_SECONDS = 100 * 365 * 86400  # 100 years: far beyond any walltime, far below float and int64 limits
MAX_MIB = 1024**4  # 1024 PiB


def parse_duration(text: str, plain_unit: str = "s", two_parts: str = "ms", what: str = "walltime") -> int:
    """Seconds in `text`.

    plain_unit: the unit of a bare number ("s" for PBS, "m" for Slurm and LSF).
    two_parts: what `A:B` means: "ms" (minutes:seconds, PBS and Slurm) or "hm" (hours:minutes, LSF).
    """
    raw = text
    text = text.strip()
    fail = UsageError(f"{what} '{raw}' does not parse", _DURATION_HINT)
    if not text:
        raise fail
    if re.fullmatch(_DAY_FORM, text, re.ASCII):  # Slurm D-HH[:MM[:SS]]
        day_text, _, text = text.partition("-")
        parts = text.split(":")
        if len(parts) > 3 or not all(p.isdigit() for p in parts):  # ASCII digits: _DAY_FORM is re.ASCII
            raise fail
        # int() refuses numbers of more than 4300 digits, and anything near that long is too large anyway
        if any(len(p.lstrip("0")) > len(str(MAX_SECONDS)) for p in [day_text, *parts]):
            raise _too_large(raw, what)
        days = int(day_text)
        h, m, s = ([int(p) for p in parts] + [0, 0])[:3]
        return _checked(days * 86400 + h * 3600 + m * 60 + s, raw, what)
    if re.fullmatch(_NUMBER, text, re.ASCII):
        return _checked(float(text) * _UNITS[plain_unit], raw, what)
    if ":" in text:
        parts = text.split(":")
        if len(parts) > 3 or not all(re.fullmatch(_NUMBER, p, re.ASCII) for p in parts):
            raise fail
        values = [float(p) for p in parts]
        if len(values) == 3:
            seconds = values[0] * 3600 + values[1] * 60 + values[2]
        elif two_parts == "hm":
            seconds = values[0] * 3600 + values[1] * 60
        else:
            seconds = values[0] * 60 + values[1]
        return _checked(seconds, raw, what)
    total, pos = 0.0, 0
    compact = text.replace(" ", "")
    for match in re.finditer(_SUFFIXED, compact, re.IGNORECASE | re.ASCII):
        if match.start() != pos:
            raise fail
        total += float(match.group(1)) * _UNITS[match.group(2).lower()]
        pos = match.end()
    if pos != len(compact) or pos == 0:
        raise fail
    return _checked(total, raw, what)


def _too_large(raw: str, what: str) -> UsageError:
    return UsageError(f"{what} '{raw}' is too large", f"give at most {MAX_SECONDS // 86400} days")


def _checked(seconds: float, raw: str, what: str) -> int:
    """Whole seconds, or a UsageError for zero and for values too large (float() of 309+ digits is inf)."""
    if not math.isfinite(seconds) or seconds > MAX_SECONDS:
        raise _too_large(raw, what)
    seconds = round(seconds)
    if seconds <= 0:
        raise UsageError(f"{what} '{raw}' is zero", "give a positive duration, e.g. 0:10:00")
    return seconds


def format_duration(seconds: float | None) -> str:
    """`HH:MM:SS` as qstat shows it (hours may pass 24); `--` when unknown."""
    if seconds is None:
        return "--"
    total = max(0, int(seconds))
    return f"{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


_MEMORY = r"(\d+(?:\.\d+)?)\s*([kmgtp]?)(i?)(b|w)?"
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}


def parse_memory(text: str, plain_unit: str = "m") -> int:
    """MiB in `text` (rounded up). Units k/m/g/t with optional i and b (binary, as PBS and Slurm use them).

    plain_unit: the unit of a bare number ("" = bytes for PBS, "m" for Slurm and LSF).
    """
    m = re.fullmatch(_MEMORY, text.strip(), re.IGNORECASE | re.ASCII)
    if not m:
        raise UsageError(f"memory '{text}' does not parse", "write e.g. 512mb, 4gb, 4G or 16GiB")
    number, prefix, _, word = m.groups()
    if not prefix and not word:
        prefix = plain_unit
    size = float(number) * 1024 ** _POWERS[prefix.lower()]
    if word and word.lower() == "w":
        size *= 8  # PBS words are 8 bytes
    if not math.isfinite(size) or size > MAX_MIB * 1024**2:  # float() of 309+ digits is inf
        raise UsageError(f"memory '{text}' is too large", "give at most 1024PiB")
    mib = -(-int(size) // 1024**2)
    if mib <= 0:
        raise UsageError(f"memory '{text}' is zero", "give a positive size, e.g. 512mb")
    return mib


def format_memory(mib: int | None) -> str:
    """`512MiB`, `4GiB`, `1.5GiB`; `--` when unknown."""
    if mib is None:
        return "--"
    if mib >= 1024:
        # whole GiB as a plain integer (never `:g`'s 1.04858e+06), anything else with one decimal
        return f"{mib // 1024}GiB" if mib % 1024 == 0 else f"{mib / 1024:.1f}GiB"
    return f"{mib}MiB"
