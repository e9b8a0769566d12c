"""What each dialect supplies: identifier quoting, the placeholder, a column's canonical text, its
byte-order expression, the row hash, and the conversions of values between the engine's canonical
form and the driver's. Pure: SQL text only, no connection."""

from __future__ import annotations

import abc
import struct
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ..errors import InputError
from ..models import Column, Kind, TablePlan
from ..normalize import FIELD_SEPARATOR, INVALID_MARK, LENGTH_PREFIXED, NULL_FIELD

# Kinds whose canonical SQL maps every non-NULL value to text (date functions may give NULL for
# invalid MySQL dates, so those keep the marker).
NEVER_NULL_TEXT = frozenset({Kind.INTEGER, Kind.BOOLEAN, Kind.DECIMAL, Kind.TEXT, Kind.UUID, Kind.BYTES})


def float_of_bits(text: str) -> float:
    """The double whose IEEE 754 bits are these 16 hex digits (a FLOAT's canonical text)."""
    value: float = struct.unpack(">d", bytes.fromhex(text))[0]
    return value


class SqlExpressions(abc.ABC):
    """A dialect's expressions for one column, and its value conversions."""

    placeholder = "%s"
    row_values = True  # the dialect compares (a, b) >= (x, y) using the index

    @abc.abstractmethod
    def quote(self, name: str) -> str: ...

    def table_ref(self, table: str) -> str:
        """The quoted, possibly schema-qualified (`schema.table`) table name."""
        schema, _, name = table.rpartition(".")
        return f"{self.quote(schema)}.{self.quote(name)}" if schema else self.quote(name)

    @abc.abstractmethod
    def canonical_expr(self, column: Column) -> str:
        """SQL for the column's canonical text (docs/normalization.md); NULL stays NULL."""

    @abc.abstractmethod
    def octet_length(self, expr: str) -> str: ...

    @abc.abstractmethod
    def concat(self, parts: Sequence[str]) -> str: ...

    @abc.abstractmethod
    def hash60(self, expr: str) -> str:
        """SQL for the first 60 bits of sha256(expr) as a non-negative integer."""

    @abc.abstractmethod
    def key_order_expr(self, column: Column) -> str:
        """SQL that orders and compares the key column in byte (code point) order."""

    @abc.abstractmethod
    def mod(self, left: str, right: str) -> str: ...

    def group_key_expr(self, column: Column) -> str:
        """A key column's value in a group of rows with the same key (any row's: they are equal)."""
        return f"MIN({self.quote(column.name)})"

    def sum_expr(self, expr: str) -> str:
        """An exact sum; PostgreSQL and MySQL sum integers as numeric/decimal, never overflowing."""
        return f"SUM({expr})"

    def key_equality_expr(self, column: Column) -> str | None:
        """SQL whose equality with a key value admits every row holding that canonical key (and
        maybe more, e.g. under a case-insensitive collation), so that an index serves the
        lookup; None when the column's own equality may miss such rows."""
        return self.quote(column.name)

    def filter_operand(self, column: Column) -> str:
        """SQL for a --where comparison on this column: text in byte (code point) order and exact
        equality on every engine, other kinds compared by value (docs/normalization.md)."""
        if column.kind in (Kind.TEXT, Kind.UUID):
            return self.text_order_expr(column)
        return self.quote(column.name)

    def text_order_expr(self, column: Column) -> str:
        """SQL for the column's canonical text, compared and ordered byte by byte."""
        return self.key_order_expr(column)

    def row_hash_expr(self, plan: TablePlan) -> str:
        """The key columns are hashed too: otherwise a missing row and an extra row holding the same
        values under another key would cancel out in a checksum."""
        fields = []
        for column in [*plan.key, *plan.columns]:
            text = self.field_expr(column)
            # A NOT NULL column of a kind whose canonical text is never NULL needs no NULL marker
            # (saves a function call per row).
            never_null = not column.nullable and column.kind in NEVER_NULL_TEXT
            fields.append(text if never_null else f"COALESCE({text}, '{NULL_FIELD}')")
        parts: list[str] = []
        for text_field in fields:
            if parts:
                parts.append(f"'{FIELD_SEPARATOR}'")
            parts.append(text_field)
        return self.hash60(self.concat(parts) if len(parts) > 1 else parts[0])

    def field_expr(self, column: Column) -> str:
        """SQL for the column's field of the row string (normalize.row_field); NULL stays NULL."""
        text = self.canonical_expr(column)
        if column.kind in LENGTH_PREFIXED:
            text = self.concat([self.octet_length(text), "':'", text])
        return text

    # --- values between the engine's canonical form and the driver's -------------------------------
    def key_value_in(self, column: Column, value: Any) -> Any:
        del column
        return value

    def key_value_out(self, column: Column, value: Any) -> Any:
        """A key value from the driver as the engine holds keys: its canonical value (integers as
        ints, text as its canonical text), so that every engine lists a key alike."""
        del column
        if value is None or isinstance(value, int | str):
            return value
        return str(value)

    def filter_value_in(self, column: Column, value: Any) -> Any:
        """A --where literal (already in the canonical form of the source column's kind, see
        filters.typed_filter) as the driver binds it for a comparison with filter_operand."""
        if column.kind is Kind.BOOLEAN and isinstance(value, bool):
            return int(value)
        if column.kind in (Kind.INTEGER, Kind.DECIMAL) and isinstance(value, str):
            return _number_text(value)  # a decimal that travelled as JSON text
        return value

    def fetched_text(self, column: Column, value: Any) -> str | None:
        """Turns a value returned by canonical_expr into its canonical text."""
        del column
        return None if value is None else str(value)

    def write_value(self, column: Column, text: str | None) -> Any:
        """A canonical text (docs/normalization.md) as the driver binds it for this column."""
        if text is None:
            return None
        if text.startswith(INVALID_MARK) and column.kind not in LENGTH_PREFIXED:
            # A value its source column's type could not hold (normalize.stored_text): written as
            # stored, for the target to take or refuse.
            stored = text[len(INVALID_MARK) :]
            return bytes.fromhex(stored[2:]) if stored.startswith("\\x") else stored
        if column.kind is Kind.FLOAT:
            return float_of_bits(text)
        if column.kind is Kind.BYTES:
            return bytes.fromhex(text)
        if column.kind is Kind.INTEGER:
            return int(text) if text.lstrip("-").isdigit() else text
        return text

    def literal(self, value: Any) -> str:
        """A bound value written out as SQL, for --dry-run's listing only (never executed). A
        connector may write it with its driver's own escaping instead."""
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, bytes):
            return f"X'{value.hex()}'"
        return "'" + str(value).replace("'", "''") + "'"


def _number_text(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:
        raise InputError(f"--where: {text!r} is not a number") from None
