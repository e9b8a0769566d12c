"""SQLite's types for `tablesync copy`: its declared types read as portable types, and portable
types written as declared types that tablesync reads back as the same kind (sqlite_sql's
kind_of_declared_type) and SQLite stores without loss (docs/copy.md, "Types"). Pure."""

from __future__ import annotations

from ..models import Column, Kind
from .portable import PortableType, arguments, unmappable

MAX_EXACT_DIGITS = 15  # a NUMERIC column keeps a number's first 15 significant digits


def portable_type(column: Column) -> PortableType:
    kind = column.kind
    if kind is None:
        raise unmappable(column, "the other engines")
    first, second = arguments(column.native_type)
    if kind is Kind.DECIMAL:
        return PortableType(kind, precision=first, scale=second if first is not None else None)
    if kind is Kind.TEXT and first is not None and "CHAR" in column.native_type.upper():
        return PortableType(kind, length=first)
    return PortableType(kind)


def column_ddl(column: Column, portable: PortableType, key: bool) -> str:
    kind = portable.kind
    if kind is Kind.INTEGER:
        if portable.integer_bytes == 8 and portable.unsigned:
            raise unmappable(column, "SQLite", "its integers hold 63 bits")
        return "INTEGER"
    if kind is Kind.DECIMAL:
        if portable.precision is None or portable.precision > MAX_EXACT_DIGITS:
            raise unmappable(column, "SQLite", f"its numbers keep {MAX_EXACT_DIGITS} significant digits")
        return f"DECIMAL({portable.precision},{portable.scale or 0})"
    if kind is Kind.TEXT:
        return f"VARCHAR({portable.length})" if portable.length else "TEXT"
    return {
        Kind.BOOLEAN: "BOOLEAN",
        Kind.FLOAT: "REAL",
        Kind.UUID: "UUID",
        Kind.JSON: "JSON",
        Kind.BYTES: "BLOB",
        Kind.TIMESTAMP: "TIMESTAMP",
        Kind.TIMESTAMPTZ: "TIMESTAMPTZ",
        Kind.DATE: "DATE",
        Kind.TIME: "TIME",
    }[kind]
