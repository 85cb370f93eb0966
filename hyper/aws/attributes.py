"""Python values <-> DynamoDB AttributeValues, for the low-level client the stores use (floats exactly, via
their repr; bytes as B; lists and maps nested). Plumbing shared by every DynamoDB item hyper writes."""

from __future__ import annotations

from decimal import Decimal
from typing import Any


def _num(value: int | float) -> str:
    if isinstance(value, bool):
        raise TypeError("bool is not a number")
    if isinstance(value, int):
        return str(value)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{value} cannot be stored in DynamoDB")
    return format(Decimal(repr(value)), "f")


def _av(value: Any) -> dict:
    """A Python value as a DynamoDB AttributeValue (floats exactly, via their repr)."""
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, (int, float)):
        return {"N": _num(value)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (bytes, bytearray)):
        return {"B": bytes(value)}
    if isinstance(value, (list, tuple)):
        return {"L": [_av(v) for v in value]}
    if isinstance(value, dict):
        return {"M": {str(k): _av(v) for k, v in value.items()}}
    if isinstance(value, (set, frozenset)) and value and all(isinstance(v, str) for v in value):
        return {"SS": sorted(value)}  # (DynamoDB has no empty set: the caller leaves an empty one out)
    raise TypeError(f"cannot store {type(value).__name__} in DynamoDB")


def _py(av: dict) -> Any:
    ((kind, value),) = av.items()
    if kind == "S":
        return value
    if kind == "N":
        return int(value) if value.lstrip("-").isdigit() else float(value)
    if kind == "BOOL":
        return value
    if kind == "NULL":
        return None
    if kind == "B":
        return bytes(value)
    if kind == "L":
        return [_py(v) for v in value]
    if kind == "M":
        return {k: _py(v) for k, v in value.items()}
    if kind in ("SS", "BS"):
        return set(value)
    if kind == "NS":
        return {int(v) if v.lstrip("-").isdigit() else float(v) for v in value}
    raise TypeError(f"unknown DynamoDB type {kind}")


def _item(data: dict) -> dict:
    return {k: _av(v) for k, v in data.items() if v is not None}


def _unitem(item: dict) -> dict:
    return {k: _py(v) for k, v in item.items()}
