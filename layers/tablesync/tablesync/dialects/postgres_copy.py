"""PostgreSQL's types for `tablesync copy`: its columns read as portable types, and portable types
written as its DDL (docs/copy.md, "Types"). Pure."""

from __future__ import annotations

import re

from ..models import Column, Kind
from .portable import PortableType, arguments, unmappable

_INTEGER_BYTES = {"int2": 2, "int4": 4, "int8": 8}


def portable_type(column: Column) -> PortableType:
    kind, base = column.kind, column.base_type or ""
    if kind is None:
        raise unmappable(column, "the other engines")
    first, second = arguments(column.native_type)
    if kind is Kind.INTEGER:
        return PortableType(kind, integer_bytes=_INTEGER_BYTES.get(base, 8))
    if kind is Kind.DECIMAL:
        return PortableType(kind, precision=first, scale=second if first is not None else None)
    if kind is Kind.FLOAT:
        return PortableType(kind, float_bytes=4 if base == "float4" else 8)
    if kind is Kind.TEXT:
        return PortableType(kind, length=first if base in ("varchar", "bpchar") else None, fixed=base == "bpchar")
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.TIME):
        return PortableType(kind, fraction_digits=first if first is not None else 6)
    return PortableType(kind)


def column_ddl(column: Column, portable: PortableType, key: bool) -> str:
    kind = portable.kind
    if kind is Kind.INTEGER:
        size = portable.integer_bytes + (1 if portable.unsigned else 0)  # unsigned needs the next size
        if size <= 2:
            return "smallint"
        if size <= 4:
            return "integer"
        if size <= 8:
            return "bigint"
        return "numeric(20,0)"
    if kind is Kind.BOOLEAN:
        return "boolean" if portable.native_boolean else "smallint"  # MySQL's tinyint(1) holds -128..127
    if kind is Kind.DECIMAL:
        if portable.precision is None:
            return "numeric"
        return f"numeric({portable.precision},{portable.scale or 0})"
    if kind is Kind.FLOAT:
        return "real" if portable.float_bytes == 4 else "double precision"
    if kind is Kind.TEXT:
        collate = ' COLLATE "C"' if key else ""  # byte order: the key's index serves tablesync's ranges
        if portable.fixed and portable.length:
            return f"character({portable.length}){collate}"
        if portable.length:
            return f"character varying({portable.length}){collate}"
        return f"text{collate}"
    if kind is Kind.TIMESTAMP:
        return f"timestamp({portable.fraction_digits}) without time zone"
    if kind is Kind.TIMESTAMPTZ:
        return f"timestamp({portable.fraction_digits}) with time zone"
    if kind is Kind.TIME:
        return f"time({portable.fraction_digits}) without time zone"
    return {Kind.UUID: "uuid", Kind.JSON: "jsonb", Kind.BYTES: "bytea", Kind.DATE: "date"}[kind]


# --- rows in another engine's bulk format (dialects/loader.py's fast paths) ----------------------
def values_field(column: Column, quote: str) -> str:
    """A column as a MySQL literal (its VALUES form), NULL as NULL: texts quoted with MySQL's
    backslash escapes, bytes as X'..', times in their ISO form, numbers as PostgreSQL writes them
    (doubles in their shortest exact form: extra_float_digits is 1)."""
    kind = column.kind
    if kind in (Kind.INTEGER, Kind.DECIMAL, Kind.FLOAT):
        text = f"{quote}::text"
    elif kind is Kind.BOOLEAN:
        text = f"CASE WHEN {quote} THEN '1' WHEN NOT {quote} THEN '0' END"  # NULL stays NULL
    elif kind is Kind.BYTES:
        text = f"'X''' || encode({quote}, 'hex') || ''''"
    else:
        if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            inner = f"to_char({quote}, 'YYYY-MM-DD HH24:MI:SS.US')"  # the session's zone is UTC
        elif kind is Kind.TIME:
            inner = f"to_char({quote}, 'HH24:MI:SS.US')"
        else:
            inner = f"{quote}::text"
        text = f"'''' || replace(replace({inner}, E'\\\\', E'\\\\\\\\'), '''', '''''') || ''''"
    return f"COALESCE({text}, 'NULL')"


def load_field(column: Column, quote: str) -> str:
    """A column as MySQL's LOAD DATA reads it, in COPY TO's text (whose escapes and \\N are LOAD
    DATA's): booleans as 1/0, bytes as hex (unhexed by the loader), times in their ISO form."""
    kind = column.kind
    if kind is Kind.BOOLEAN:
        return f"{quote}::int"
    if kind is Kind.BYTES:
        return f"encode({quote}, 'hex')"
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        return f"to_char({quote}, 'YYYY-MM-DD HH24:MI:SS.US')"  # the session's zone is UTC
    if kind is Kind.TIME:
        return f"to_char({quote}, 'HH24:MI:SS.US')"
    return quote


_COPY_ONLY_ESCAPES = re.compile(rb"\\\\|\\f|\\v")


def as_load_data(data: bytes) -> bytes:
    """COPY TO's text as LOAD DATA reads it: the two share their escapes but \\f and \\v (form
    feed, vertical tab), which LOAD DATA does not know: those characters go as they are."""
    if b"\\f" not in data and b"\\v" not in data:
        return data

    def plain(match: re.Match[bytes]) -> bytes:
        return {b"\\f": b"\f", b"\\v": b"\v"}.get(match.group(0), match.group(0))

    return _COPY_ONLY_ESCAPES.sub(plain, data)
