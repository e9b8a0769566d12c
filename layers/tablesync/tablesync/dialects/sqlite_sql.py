"""SQLite's SQL: type mapping, canonical texts and row hashes. SQLite has no SHA-256, so these
call the Python functions the connection (sqlite.py) registers: ts_canonical, ts_row_hash,
ts_row_part, ts_row_parts_hash, ts_temporal_order and the aggregate ts_hash_sum. Pure."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ..errors import SchemaError
from ..models import Column, Kind, TablePlan, TableSchema
from ..normalize import stored_text, temporal_order
from .base import SqlDialect, Statement

# SQLite passes at most 127 arguments to a function (SQLITE_MAX_FUNCTION_ARG): a wide row is
# hashed as parts of at most this many columns, each part's fields joined as in one row string.
PART_COLUMNS = 100
TEMPORAL = frozenset({Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.DATE, Kind.TIME})


def kind_of_declared_type(declared: str) -> Kind | None:
    """SQLite columns carry the type name they were declared with; map it like the affinity rules
    do, but distinguishing the kinds tablesync compares."""
    t = declared.upper()
    rules: list[tuple[tuple[str, ...], Kind]] = [
        (("BOOL",), Kind.BOOLEAN),
        (("INT",), Kind.INTEGER),
        (("UUID",), Kind.UUID),
        (("JSON",), Kind.JSON),
        (("CHAR", "CLOB", "TEXT", "ENUM"), Kind.TEXT),
        (("BLOB", "BINARY", "BYTEA"), Kind.BYTES),
        (("REAL", "FLOA", "DOUB"), Kind.FLOAT),
        (("DEC", "NUMERIC"), Kind.DECIMAL),
        (("TIMESTAMPTZ", "WITH TIME ZONE"), Kind.TIMESTAMPTZ),
        (("DATETIME", "TIMESTAMP"), Kind.TIMESTAMP),
        (("DATE",), Kind.DATE),
        (("TIME",), Kind.TIME),
    ]
    for needles, kind in rules:
        if any(n in t for n in needles):
            return kind
    return None


class SqliteDialect(SqlDialect):
    placeholder = "?"
    # BEGIN IMMEDIATE takes the database's write lock at once: no other writer until COMMIT.
    begin_sql = "BEGIN IMMEDIATE"
    lock_clause = ""

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    # --- the catalogue ----------------------------------------------------------------------------
    def columns_sql(self, table: str) -> Statement:
        """The table's columns: (name, declared type, NOT NULL, position in the primary key)."""
        schema, _, name = table.rpartition(".")
        pragma = f"{self.quote(schema)}.pragma_table_info" if schema else "pragma_table_info"
        return f'SELECT name, type, "notnull", pk FROM {pragma}(?) ORDER BY cid', [name]

    def schema_of(self, table: str, rows: Sequence[Sequence[Any]]) -> TableSchema:
        """The rows of columns_sql as the table's schema."""
        # An INTEGER PRIMARY KEY is the rowid: never NULL (another primary key may hold NULLs in SQLite).
        primary = [(n, (t or "").upper()) for n, t, _, p in rows if p]
        rowid = primary[0][0] if len(primary) == 1 and primary[0][1] == "INTEGER" else None
        columns = []
        for n, t, notnull, _ in rows:
            kind = kind_of_declared_type(t or "")
            notnull = notnull or n == rowid
            # A UUID column may hold its text in any case: keys compare by their canonical text,
            # which the column's own (binary) order does not follow.
            columns.append(
                Column(name=n, native_type=t or "", kind=kind, nullable=not notnull, binary_order=kind is not Kind.UUID)
            )
        pk = [n for n, _, _, p in sorted(rows, key=lambda r: r[3]) if p]
        return TableSchema(table=table, columns=columns, primary_key=pk)

    def table_names_sql(self, schema: str | None) -> Statement:
        master = f"{self.quote(schema)}.sqlite_master" if schema else "sqlite_master"
        return f"SELECT name FROM {master} WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%'", []

    def estimated_rows_sql(self, table: str) -> Statement | None:
        return f"SELECT COUNT(*) FROM {self.table_ref(table)}", []

    def write_value(self, column: Column, text: str | None) -> Any:
        if text is not None and column.kind is Kind.BOOLEAN:
            return int(text) if text.lstrip("-").isdigit() else text
        return super().write_value(column, text)

    # --- expressions ------------------------------------------------------------------------------
    def canonical_expr(self, column: Column) -> str:
        if column.kind is None:
            raise SchemaError(f"column {column.name!r} has unsupported type {column.native_type or '(none)'}")
        return f"ts_canonical('{column.kind.value}', {self.quote(column.name)})"

    def row_hash_expr(self, plan: TablePlan) -> str:
        columns = [*plan.key, *plan.columns]  # keys included, as in every dialect
        for column in columns:
            self.canonical_expr(column)  # rejects unsupported types
        parts = []
        for start in range(0, len(columns), PART_COLUMNS):
            part = columns[start : start + PART_COLUMNS]
            spec = ",".join(c.kind.value for c in part if c.kind is not None)
            args = "".join(f", {self.quote(c.name)}" for c in part)
            parts.append(f"'{spec}'{args}")
        if len(parts) == 1:
            return f"ts_row_hash({parts[0]})"
        return "ts_row_parts_hash(" + ", ".join(f"ts_row_part({p})" for p in parts) + ")"

    def filter_operand(self, column: Column) -> str:
        if column.kind in TEMPORAL:
            # Stored texts compared as the instants, dates and times they stand for.
            return f"ts_temporal_order('{column.kind.value}', {self.quote(column.name)})"
        return super().filter_operand(column)

    def filter_value_in(self, column: Column, value: Any) -> Any:
        if column.kind in TEMPORAL and isinstance(value, str):
            return temporal_order(column.kind, value)
        value = super().filter_value_in(column, value)
        # sqlite3 binds neither Decimal nor integers beyond 64 bits; SQLite compares numbers as
        # 64-bit integers or doubles anyway.
        if isinstance(value, Decimal) or (isinstance(value, int) and not -(2**63) <= value < 2**63):
            return float(value)
        return value

    def key_value_out(self, column: Column, value: Any) -> Any:
        if column.kind is Kind.UUID and value is not None:
            return stored_text(Kind.UUID, value)  # lowercase, whatever case the file holds
        return super().key_value_out(column, value)

    def key_equality_expr(self, column: Column) -> str | None:
        # A UUID's stored text may be upper case: only its canonical text finds every row.
        return None if column.kind is Kind.UUID else super().key_equality_expr(column)

    def sum_expr(self, expr: str) -> str:
        return f"ts_hash_sum({expr})"

    def octet_length(self, expr: str) -> str:
        return f"length(CAST({expr} AS BLOB))"

    def concat(self, parts: Sequence[str]) -> str:
        return "(" + " || ".join(parts) + ")"

    def hash60(self, expr: str) -> str:
        raise NotImplementedError("SQLite hashes rows with ts_row_hash")

    def key_order_expr(self, column: Column) -> str:
        q = self.quote(column.name)
        if column.kind is Kind.UUID:
            return f"ts_canonical('uuid', {q})"
        return f"{q} COLLATE BINARY" if column.kind is Kind.TEXT else q

    def mod(self, left: str, right: str) -> str:
        return f"(({left}) % ({right}))"

    def random_below(self, fraction: float) -> str:
        return f"abs(random() % 1000000) < {int(float(fraction) * 1_000_000)}"
