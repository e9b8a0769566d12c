"""A DynamoDB table read as rows of a SQL table, so that a SQL target can be repaired from a
DynamoDB source through the SQL repair (repair.py: lock or read the target, read the source, write
what still differs): each item, read strongly consistent, becomes the row of canonical texts that
the target's columns hold for its attributes (the inverse of sql_items.item_value).

A value is written only where the row holds exactly the item's value: it is mapped to the
column's text, and that text must map back to the same DynamoDB value (1.5 has no integer column
value, 0.10000000000000001 no double, a NULL attribute no SQL value apart from an absent one, a
set or a binary inside a map no JSON). An item with such a value, or with an attribute the target
has no column for, is refused with the reason; it is never written in part."""

from __future__ import annotations

import base64
import json
import math
import re
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ..dialects.expressions import float_of_bits
from ..dialects.portable import arguments
from ..models import Column, Key, Kind, TablePlan
from ..normalize import INVALID_MARK, canonical_text
from ..repair import UNWRITABLE
from .connector import DynamoConnector
from .sql_items import item_value
from .values import REPLICATION_PREFIX, Item, canonical_number, canonical_value

Row = dict[str, str | None]
# Bits of the integer types that are narrower than 64 (PostgreSQL's names, then MySQL's).
_INTEGER_BITS = {"int2": 16, "int4": 32, "int8": 64, "tinyint": 8, "smallint": 16, "mediumint": 24, "int": 32}
_INTEGER_BITS |= {"integer": 32, "bigint": 64}
_PRECISION_SCALE = re.compile(r"\((\d+)\s*,\s*(\d+)\)")


class Unholdable(ValueError):
    """An attribute value the column cannot hold exactly."""


class ItemRows:
    """The source side of a repair: a DynamoDB table (with its own plan) answering fetch_rows with
    rows under the target's column names."""

    def __init__(self, items: DynamoConnector, plan: TablePlan) -> None:
        self.items = items
        self.plan = plan

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[Row]:
        held = self.items.get_items(self.plan, keys)  # strongly consistent
        return [item_row(plan, item, self.plan.ignore) for item in held.values()]

    def close(self) -> None:
        self.items.close()


def item_row(plan: TablePlan, item: Item, ignore: Sequence[str] = ()) -> Row:
    """The row that holds the item's values in the columns of `plan`; UNWRITABLE says why it
    cannot (and the columns concerned hold a text no real value has, so the row differs). The
    `ignore`d attributes (the diff's --ignore) are not carried."""
    columns = {c.name: c for c in [*plan.key, *plan.columns]}
    row: Row = {name: None for name in columns}  # an absent attribute is a NULL
    problems: list[str] = []
    for name, value in item.items():
        if name.startswith(REPLICATION_PREFIX) or name in ignore or name in plan.ignore:
            continue
        column = columns.get(name)
        if column is None:
            problems.append(f"the attribute {name} has no column in the target")
            continue
        try:
            row[name] = column_text(column, value)
        except Unholdable as exc:
            problems.append(f"{name}: {exc}")
            row[name] = INVALID_MARK + "unholdable"
    if problems:
        row[UNWRITABLE] = "; ".join(problems)
    return row


def column_text(column: Column, value: dict[str, Any]) -> str:
    """The column's canonical text for an attribute value, if it holds exactly that value."""
    wanted = canonical_value(value)
    try:
        text = _text(column, wanted)
    except (ValueError, TypeError, ArithmeticError) as exc:
        raise Unholdable(f"a {column.native_type} column cannot hold {_shown(wanted)}") from exc
    if text is None or _canonical(item_value(column, text)) != _canonical(wanted) or not _stored_as_is(column, text):
        raise Unholdable(f"a {column.native_type} column cannot hold {_shown(wanted)} exactly")
    return text


def _stored_as_is(column: Column, text: str) -> bool:
    """Whether the column stores the text's value without changing it: within its integer width,
    its length, its seconds' fraction digits, its single precision (SQLite's types store anything)."""
    native, base = column.native_type.lower(), (column.base_type or "").lower()
    limit, _ = arguments(native)
    kind = column.kind
    if kind is Kind.INTEGER and base == "year":
        return int(text) == 0 or 1901 <= int(text) <= 2155
    if kind is Kind.INTEGER and base in _INTEGER_BITS:
        bits = _INTEGER_BITS[base]
        low, high = (0, 2**bits - 1) if "unsigned" in native else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
        value = int(text)
        return bool(low <= value <= high)
    if kind is Kind.FLOAT and base in ("float4", "float"):  # PostgreSQL real, MySQL float: 4 bytes
        number = float_of_bits(text)
        single: float = struct.unpack(">f", struct.pack(">f", number))[0]
        return math.isnan(number) or single == number
    if kind is Kind.TEXT and limit is not None and base in ("varchar", "bpchar", "char"):
        return len(text) <= limit
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.TIME) and base:
        # PostgreSQL keeps 6 digits unless told; MySQL none (its types are named bare).
        digits = limit if limit is not None else (6 if "time zone" in native else 0)
        fraction = text.partition(".")[2].split(" ")[0].split("+")[0]
        return len(fraction.rstrip("0")) <= digits
    return True


def _fits(column: Column, number: Decimal) -> bool:
    """Whether a decimal column of declared precision and scale holds the number without rounding
    it (PostgreSQL rounds silently, MariaDB truncates)."""
    declared = _PRECISION_SCALE.search(column.native_type)
    if declared is None:
        return True  # numeric without a precision, SQLite: any number
    precision, scale = int(declared.group(1)), int(declared.group(2))
    if number == 0:
        return True
    _, digits, exponent = number.normalize().as_tuple()
    assert isinstance(exponent, int)
    fraction = max(0, -exponent)
    whole = max(0, len(digits) + exponent)
    return fraction <= scale and whole <= precision - scale


def _text(column: Column, wanted: Any) -> str | None:
    kind, tag = column.kind, wanted[0]
    if kind is Kind.DECIMAL and tag == "N" and not _fits(column, Decimal(wanted[1])):
        raise ValueError("more digits than the column's precision and scale")
    if kind is Kind.INTEGER and tag == "N":
        number = Decimal(wanted[1])
        if number != number.to_integral_value():
            raise ValueError("not a whole number")
        return canonical_text(kind, int(number))
    if kind is Kind.DECIMAL and tag == "N":
        return canonical_text(kind, Decimal(wanted[1]))
    if kind is Kind.FLOAT and tag == "N":
        return canonical_text(kind, float(Decimal(wanted[1])))
    if kind is Kind.BOOLEAN and tag == "BOOL":
        return "1" if wanted[1] else "0"
    if kind is Kind.BYTES and tag == "B":
        return base64.b64decode(wanted[1]).hex()
    if kind is Kind.JSON and tag in ("M", "L"):
        return _json(wanted)
    if kind is not None and kind not in (Kind.BOOLEAN, Kind.BYTES, Kind.JSON, Kind.FLOAT) and tag == "S":
        return canonical_text(kind, wanted[1])
    return None


def _json(wanted: Any) -> str:
    """A map or list as JSON text, numbers exact (no double on the way)."""
    tag = wanted[0]
    if tag == "M":
        members = (f"{json.dumps(k, ensure_ascii=False)}:{_json(v)}" for k, v in sorted(wanted[1].items()))
        return "{" + ",".join(members) + "}"
    if tag == "L":
        return "[" + ",".join(_json(v) for v in wanted[1]) + "]"
    if tag == "S":
        return json.dumps(wanted[1], ensure_ascii=False)
    if tag == "N":
        return canonical_number(wanted[1])
    if tag == "BOOL":
        return "true" if wanted[1] else "false"
    if tag == "NULL":
        return "null"
    raise ValueError(f"JSON has no {tag}")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _shown(wanted: Any) -> str:
    text = _canonical(wanted)
    return text if len(text) <= 80 else text[:77] + "..."
