"""The base of every record (serialisation) and of the admin-managed resources.

Apart from hyper/models.py so that hyper/resource_records.py can build on them without importing hyper.models:
the resource kinds a job never needs are created only when used (issue 15's cold start).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, Self

_FIELDS: dict[type, frozenset[str]] = {}


def _fields(cls: type[Record]) -> frozenset[str]:
    """Field names per class, computed once: listing 100,000 jobs builds 200,000 records."""
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = frozenset(f.name for f in dataclasses.fields(cls))
    return known


class Record:
    """Serialisation shared by every record: unknown keys are dropped so old rows load in new code."""

    # declared (not set) so the type checker knows every record is a dataclass; @dataclass fills it per subclass
    __dataclass_fields__: ClassVar[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        known = _fields(cls)
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class Resource(Record):
    """An admin-managed object; ``kind`` names its table section, ``status``/``message`` its deployment."""

    KIND: ClassVar[str] = ""
    name: str = ""
    status: str = "ACTIVE"
    message: str = ""
