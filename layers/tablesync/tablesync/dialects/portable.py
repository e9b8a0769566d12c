"""A column's type as every dialect can read and write it, for `tablesync copy --create` and
`--evolve-schema`: each dialect reads its own native types into a PortableType (portable_type) and
writes one as its own DDL (column_ddl), choosing the type that holds exactly the values of the
source's, so that a diff of the copy against its source is exact (docs/copy.md has the table).
Pure: no connection."""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import SchemaError
from ..models import Column, Kind

_ARGUMENTS = re.compile(r"\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?\)")


@dataclass(frozen=True)
class PortableType:
    """What a column holds, whatever its engine's name for it."""

    kind: Kind
    integer_bytes: int = 8  # INTEGER: 1, 2, 3, 4 or 8
    unsigned: bool = False
    precision: int | None = None  # DECIMAL: None for unbounded
    scale: int | None = None
    float_bytes: int = 8  # FLOAT: 4 or 8
    length: int | None = None  # TEXT, BYTES: None for unbounded
    fixed: bool = False  # TEXT: char(n) (padded); BYTES: binary(n)
    fraction_digits: int = 6  # TIMESTAMP, TIMESTAMPTZ, TIME: digits of the seconds' fraction
    native_boolean: bool = True  # BOOLEAN: a true boolean (MySQL's tinyint(1) holds -128..127)


def arguments(native_type: str) -> tuple[int | None, int | None]:
    """The (n) or (p, s) of a type name, as numbers."""
    found = _ARGUMENTS.search(native_type)
    if found is None:
        return None, None
    return int(found.group(1)), int(found.group(2)) if found.group(2) is not None else None


def unmappable(column: Column, target: str, why: str = "") -> SchemaError:
    reason = f" ({why})" if why else ""
    return SchemaError(
        f"column {column.name!r}: {column.native_type} has no exact equivalent in {target}{reason}; "
        "leave it out (--ignore) or create the table yourself"
    )
