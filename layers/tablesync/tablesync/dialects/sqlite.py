"""SQLite (standard library), the embedded default. SQLite has no SHA-256, so the canonical texts and
the row hash are computed by Python functions registered in the connection: the rows still never
leave the database engine's query, and the texts are the same as the other dialects'. The SQL that
calls them is SqliteDialect's (sqlite_sql.py)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConnectError, DatabaseError, SchemaError, TransientDatabaseError
from ..models import Column, Kind, TableSchema
from ..normalize import FIELD_SEPARATOR, hash_row_string, row_string, stored_text, temporal_order
from ..urls import DatabaseUrl
from . import sqlite_copy
from .connector import SqlConnector
from .portable import PortableType
from .sqlite_sql import SqliteDialect


class _HashSum:
    """Exact sum of row hashes (SQLite's SUM overflows at 2**63)."""

    def __init__(self) -> None:
        self.total = 0

    def step(self, value: int | None) -> None:
        if value is not None:
            self.total += value

    def finalize(self) -> str:
        return str(self.total)


def _row_hash_function(spec: str, *values: Any) -> int:
    return hash_row_string(_row_part_function(spec, *values))


def _row_part_function(spec: str, *values: Any) -> str:
    kinds = [Kind(k) for k in spec.split(",")] if spec else []
    return row_string(kinds, values, lenient=True)


def _row_parts_hash_function(*parts: str) -> int:
    return hash_row_string(FIELD_SEPARATOR.join(parts))


def _canonical_function(kind: str, value: Any) -> str | None:
    return stored_text(Kind(kind), value)


def _temporal_order_function(kind: str, value: Any) -> int | None:
    return temporal_order(Kind(kind), stored_text(Kind(kind), value))


class SqliteConnector(SqlConnector):
    dialect = "sqlite"
    sql_dialect: SqliteDialect

    def __init__(self, url: DatabaseUrl, *, connect_timeout: float = 10, read_only: bool = True) -> None:
        self.url = url
        self.sql_dialect = SqliteDialect()
        path = url.path or ""
        if not Path(path).is_file():
            raise ConnectError(f"cannot open {url.redacted()}: no such file")
        try:
            uri = f"file:{Path(path).resolve()}?mode={'ro' if read_only else 'rw'}"
            self.conn = sqlite3.connect(uri, uri=True, timeout=connect_timeout, check_same_thread=False)
            self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error as exc:
            raise ConnectError(f"cannot open {url.redacted()}: {exc}") from None
        if not read_only:
            # Transactions are begun and ended by the repair's own statements (BEGIN IMMEDIATE).
            self.conn.isolation_level = None
        self.conn.create_function("ts_row_hash", -1, _row_hash_function, deterministic=True)
        self.conn.create_function("ts_canonical", 2, _canonical_function, deterministic=True)
        self.conn.create_function("ts_row_part", -1, _row_part_function, deterministic=True)
        self.conn.create_function("ts_row_parts_hash", -1, _row_parts_hash_function, deterministic=True)
        self.conn.create_function("ts_temporal_order", 2, _temporal_order_function, deterministic=True)
        self.conn.create_aggregate("ts_hash_sum", 1, _HashSum)  # type: ignore[arg-type]

    def close(self) -> None:
        self.conn.close()

    def execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            return self.conn.execute(sql, list(params)).fetchall()
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise TransientDatabaseError(f"{self.url.redacted()}: {exc}") from None
            raise DatabaseError(f"{self.url.redacted()}: {exc}") from None
        except (sqlite3.Error, ValueError) as exc:
            raise DatabaseError(f"{self.url.redacted()}: {exc}") from None

    def portable_type(self, column: Column) -> PortableType:
        return sqlite_copy.portable_type(column)

    def column_ddl(self, column: Column, portable: PortableType, key: bool) -> str:
        return sqlite_copy.column_ddl(column, portable, key)

    def describe(self, table: str) -> TableSchema:
        d = self.sql_dialect
        rows = self._run(d.columns_sql(table))
        if not rows:
            raise SchemaError(f"unknown table {table!r} in {self.url.redacted()}")
        return d.schema_of(table, rows)
