"""What `tablesync copy` and `tablesync replicate` need of a database: its rows read in key order
as canonical texts, and rows loaded into a table in one transaction by the fastest path its
driver has (PostgreSQL COPY, a MySQL multi-row INSERT, SQLite one transaction), tables created
from portable types (portable.py), columns added, tables emptied. Mixed into SqlConnector."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from typing import Any

from ..errors import SchemaError
from ..models import Column, Key, Kind, Span, TablePlan, TableSchema
from .base import SqlDialect
from .portable import PortableType

Texts = list[str | None]  # a row's canonical texts, in the plan's order: its key columns, then the others


CHUNK_ROWS = 2_000  # rows a chunk of a bulk format holds (a MySQL statement of them stays well under 16 MB)


class SqlLoader(abc.ABC):
    sql_dialect: SqlDialect
    # The fast paths: the bulk formats this database renders its rows in, inside the database
    # (no value passes through Python), and the one it loads. Between two databases that share a
    # format, a batch travels as text chunks; otherwise as canonical texts, value by value.
    bulk_read_formats: tuple[str, ...] = ()
    bulk_write_formats: tuple[str, ...] = ()  # the ones it loads, the fastest first

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def describe(self, table: str) -> TableSchema: ...

    # --- types -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def portable_type(self, column: Column) -> PortableType:
        """What the column holds, in terms every dialect can create (dialects/*_copy.py)."""

    @abc.abstractmethod
    def column_ddl(self, column: Column, portable: PortableType, key: bool) -> str:
        """This database's type for a portable type, holding exactly its values."""

    # --- reading ----------------------------------------------------------------------------------
    def read_rows(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> list[Texts]:
        """The rows of [lo, hi) that the plan's filter admits, every column (key first) as its
        canonical text; in no particular order."""
        d = self.sql_dialect
        columns = [*plan.key, *plan.columns]
        select = ", ".join(d.canonical_expr(c) for c in columns)
        out: list[Texts] = []
        for query in d.span_queries(plan, [Span(lo=lo, hi=hi)]):
            sql = f"SELECT {select} FROM {d.table_ref(plan.table)}{query.where_sql}"
            for row in self.execute(sql, list(query.where_params)):
                out.append([d.fetched_text(c, v) for c, v in zip(columns, row, strict=True)])
        return out

    def read_bulk(self, plan: TablePlan, lo: Key | None, hi: Key | None, fmt: str) -> tuple[list[Any], int]:
        """The rows of [lo, hi) in a bulk format (bulk_read_formats), as chunks of text, and
        how many rows they hold."""
        raise NotImplementedError(f"{self.sql_dialect.__class__.__name__} renders no bulk format")

    def load_bulk(self, plan: TablePlan, fmt: str, chunks: Sequence[Any]) -> None:
        """Loads chunks of a bulk format (bulk_write_formats), in one transaction."""
        raise NotImplementedError(f"{self.sql_dialect.__class__.__name__} loads no bulk format")

    def group_end(self, plan: TablePlan, lo: Key | None, hi: Key, column: str) -> Key | None:
        """An exclusive upper bound at or above `hi` such that no value of `column` has rows on
        both sides of it among the rows from `lo` (replicate --group-column: a source transaction
        is never split between two batches); None: the table's end."""
        d = self.sql_dialect
        width = len(plan.key)
        group = d.quote(column)
        end: Key | None = hi
        while end is not None:
            where, params = d.where(plan, lo, end)
            table = d.table_ref(plan.table)
            sharing = f"FROM {table} WHERE {group} IN (SELECT {group} FROM {table}{where})"
            if len(plan.key) == 1 and plan.key[0].kind is Kind.INTEGER:
                # MAX: a hash join with the batch's groups (ORDER BY ... LIMIT 1 walks the key's
                # index backwards, testing each row). An index on the group column serves either.
                rows = [
                    r
                    for r in self.execute(f"SELECT MAX({d.quote(plan.key[0].name)}) {sharing}", params)
                    if r[0] is not None
                ]
            else:
                rows = self.execute(
                    f"SELECT {d.key_select(plan)} {sharing} ORDER BY {d.order_by(plan, True)} LIMIT 1", params
                )
            last = d.key_out(plan, rows[0][:width]) if rows else None
            if last is None or list(last) < list(end):
                return end
            end = self.key_after(plan, last)
        return None

    def key_after(self, plan: TablePlan, key: Key) -> Key | None:
        """The first key above `key` (in the engine's key order) that the filter admits."""
        d = self.sql_dialect
        width = len(plan.key)
        for offset in (0, 1):
            rows = self.execute(*d.chunk_end_sql(plan, key, offset, False))
            if not rows:
                return None
            found = d.key_out(plan, rows[0][:width])
            if found != key:
                return found
        return None

    # --- writing ----------------------------------------------------------------------------------
    def count_rows(self, plan: TablePlan, lo: Key | None) -> int:
        """The rows from `lo` (None: all of them) that the filter admits."""
        d = self.sql_dialect
        where, params = d.where(plan, lo, None)
        return int(self.execute(f"SELECT COUNT(*) FROM {d.table_ref(plan.table)}{where}", params)[0][0])

    def table_exists(self, table: str) -> bool:
        try:
            self.describe(table)
        except SchemaError:
            return False
        return True

    def create_table(self, table: str, columns: Sequence[tuple[Column, PortableType]], key: Sequence[str]) -> str:
        """Creates the table (its primary key `key`); returns the statement run."""
        d = self.sql_dialect
        keys = set(key)
        parts = []
        for column, portable in columns:
            null = " NOT NULL" if column.name in keys or not column.nullable else ""
            parts.append(f"{d.quote(column.name)} {self.column_ddl(column, portable, column.name in keys)}{null}")
        if key:
            parts.append(f"PRIMARY KEY ({', '.join(d.quote(name) for name in key)})")
        sql = f"CREATE TABLE {d.table_ref(table)} ({', '.join(parts)})"
        self.execute(sql, [])
        return sql

    def add_column(self, table: str, column: Column, portable: PortableType) -> str:
        """Adds a nullable column (the rows already there get NULL); returns the statement run."""
        d = self.sql_dialect
        ddl = self.column_ddl(column, portable, False)
        sql = f"ALTER TABLE {d.table_ref(table)} ADD COLUMN {d.quote(column.name)} {ddl}"
        self.execute(sql, [])
        return sql

    def truncate(self, table: str) -> None:
        self.execute(f"DELETE FROM {self.sql_dialect.table_ref(table)}", [])

    def has_rows(self, table: str) -> bool:
        return bool(self.execute(f"SELECT 1 FROM {self.sql_dialect.table_ref(table)} LIMIT 1", []))

    def load_rows(self, plan: TablePlan, rows: Sequence[Texts]) -> None:
        """Inserts the rows in one transaction: all of them, or (on any error) none."""
        if not rows:
            return
        d = self.sql_dialect
        columns = [*plan.key, *plan.columns]
        values = [[d.write_value(c, t) for c, t in zip(columns, row, strict=True)] for row in rows]
        self.execute(d.begin_sql, [])
        try:
            self.execute_many(d.write_sql(plan, "insert"), values)
            self.execute("COMMIT", [])
        except BaseException:
            with contextlib.suppress(Exception):  # the connection may be gone: the server rolls back
                self.execute("ROLLBACK", [])
            raise
