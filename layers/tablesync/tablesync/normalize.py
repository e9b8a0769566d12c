"""Canonical text forms of values and the row hash, in Python.

The dialect modules compute the same texts inside their databases (docs/normalization.md is the
specification); this module is the reference they are tested against, and it computes the row hash
itself for SQLite (as a registered SQL function) and compares fetched rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import struct
import uuid
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .models import Kind

NULL_FIELD = "N"
FIELD_SEPARATOR = "|"
HASH_HEX_DIGITS = 15  # 60 bits of each row's SHA-256
# Kinds whose canonical text may contain any character: written as <octet length>:<text>.
LENGTH_PREFIXED = frozenset({Kind.TEXT, Kind.UUID, Kind.JSON})


def canonical_decimal(value: Decimal) -> str:
    if value.is_nan():
        return "NaN"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None


def canonical_float(value: Any) -> str:
    number = float(value)
    if number == 0.0:
        number = 0.0  # -0.0 and 0.0 are one value in every engine's comparisons
    return struct.pack(">d", number).hex()


def _parse_datetime(value: Any) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day)
    text = str(value).strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    return dt.datetime.fromisoformat(text)


def canonical_timestamp(value: Any) -> str:
    """Timestamps with a time zone are shown in UTC; naive ones are taken as they are."""
    moment = _parse_datetime(value)
    if moment.tzinfo is not None:
        moment = moment.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f").rjust(26, "0")


def canonical_time(value: Any) -> str:
    if isinstance(value, dt.timedelta):
        micros = value // dt.timedelta(microseconds=1)
        sign = "-" if micros < 0 else ""
        micros = abs(micros)
        seconds, micro = divmod(micros, 1_000_000)
        minutes, second = divmod(seconds, 60)
        hours, minute = divmod(minutes, 60)
        return f"{sign}{hours:02d}:{minute:02d}:{second:02d}.{micro:06d}"
    if isinstance(value, dt.time):
        return value.strftime("%H:%M:%S.%f")
    return dt.time.fromisoformat(str(value).strip()).strftime("%H:%M:%S.%f")


def canonical_json(value: Any) -> str:
    """Semantic JSON form: sorted keys, no whitespace, numbers as trimmed decimals."""
    parsed = json.loads(value, parse_float=Decimal, parse_int=Decimal) if isinstance(value, str | bytes) else value
    return _dump_json(parsed)


def _dump_json(value: Any) -> str:
    if isinstance(value, dict):
        items = sorted(value.items())
        return "{" + ",".join(_dump_json(k) + ":" + _dump_json(v) for k, v in items) + "}"
    if isinstance(value, list):
        return "[" + ",".join(_dump_json(v) for v in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, int | float | Decimal):
        return canonical_decimal(_to_decimal(value))
    return json.dumps(value, ensure_ascii=False)


def canonical_text(kind: Kind, value: Any) -> str | None:
    """The canonical text of one value; None for SQL NULL."""
    if value is None:
        return None
    if kind is Kind.INTEGER or kind is Kind.BOOLEAN or kind is Kind.DECIMAL:
        if isinstance(value, bool):
            return "1" if value else "0"
        if isinstance(value, int):
            return str(value)
        return canonical_decimal(_to_decimal(value))
    if kind is Kind.FLOAT:
        return canonical_float(value)
    if kind is Kind.TEXT or kind is Kind.JSON:
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value).decode("utf-8")
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False)
        return str(value)
    if kind is Kind.UUID:
        return str(uuid.UUID(str(value))) if not isinstance(value, uuid.UUID) else str(value)
    if kind is Kind.BYTES:
        if isinstance(value, str):
            return value.encode("utf-8").hex()
        return bytes(value).hex()
    if kind is Kind.TIMESTAMP or kind is Kind.TIMESTAMPTZ:
        return canonical_timestamp(value)
    if kind is Kind.DATE:
        if isinstance(value, dt.datetime):
            value = value.date()
        if isinstance(value, dt.date):
            return value.strftime("%Y-%m-%d").rjust(10, "0")
        return dt.date.fromisoformat(str(value).strip()[:10]).strftime("%Y-%m-%d").rjust(10, "0")
    if kind is Kind.TIME:
        return canonical_time(value)
    raise ValueError(f"unknown kind {kind}")


def comparable_text(kind: Kind, value: Any) -> str | None:
    """Canonical text for comparing fetched rows: JSON compared by meaning, not by spelling."""
    text = canonical_text(kind, value)
    if text is not None and kind is Kind.JSON:
        return canonical_json(text)
    return text


def row_string(kinds: Sequence[Kind], values: Iterable[Any]) -> str:
    fields = []
    for kind, value in zip(kinds, values, strict=True):
        text = canonical_text(kind, value)
        if text is None:
            fields.append(NULL_FIELD)
        elif kind in LENGTH_PREFIXED:
            fields.append(f"{len(text.encode('utf-8'))}:{text}")
        else:
            fields.append(text)
    return FIELD_SEPARATOR.join(fields)


def hash_row_string(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_HEX_DIGITS], 16)


def row_hash(kinds: Sequence[Kind], values: Iterable[Any]) -> int:
    return hash_row_string(row_string(kinds, values))
