"""A connection to one database and the dialect whose statements it runs: the operations of the
Connector protocol (connectors.py), executed, their answers turned into the engine's models. The
SQL is the dialect's (base.SqlDialect, pure); repair's write transaction is the writer's."""

from __future__ import annotations

import abc
import fnmatch
from collections.abc import Sequence
from typing import Any

from ..errors import KeyColumnError
from ..models import Checksum, Key, KeyRange, Span, SplitRequest, TablePlan, TableSchema
from ..urls import DatabaseUrl
from .base import SqlDialect, Statement
from .loader import SqlLoader
from .writer import SqlWriter

# TCP keepalives on every database connection: a peer gone mid-query (a host lost in a failover,
# a path black-holed) is noticed after about idle + interval x count = 60 s, as a lost connection
# (an outage to wait out), not after the kernel's two hours.
KEEPALIVE_IDLE_SECONDS = 30
KEEPALIVE_INTERVAL_SECONDS = 10
KEEPALIVE_COUNT = 3


class SqlConnector(SqlWriter, SqlLoader):
    """Base of the three database connectors. Methods mirror the Connector protocol."""

    dialect: str = ""
    url: DatabaseUrl
    sql_dialect: SqlDialect

    # --- what a connector provides -----------------------------------------------------------
    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many parameter rows; dialects batch them in fewer round trips."""
        for params in rows:
            self.execute(sql, params)

    @abc.abstractmethod
    def describe(self, table: str) -> TableSchema: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def literal(self, value: Any) -> str:
        """A bound value written out as SQL, for --dry-run's listing only (never executed)."""
        return self.sql_dialect.literal(value)

    def quote(self, name: str) -> str:
        return self.sql_dialect.quote(name)

    def table_ref(self, table: str) -> str:
        return self.sql_dialect.table_ref(table)

    def _run(self, statement: Statement) -> list[tuple[Any, ...]]:
        sql, params = statement
        return self.execute(sql, params)

    # --- connector operations ---------------------------------------------------------------
    def key_range(self, plan: TablePlan) -> KeyRange:
        d = self.sql_dialect
        first = self._run(d.key_range_sql(plan, last=False))
        last = self._run(d.key_range_sql(plan, last=True))
        return KeyRange(
            min_key=d.key_out(plan, first[0]) if first else None,
            max_key=d.key_out(plan, last[0]) if last else None,
            estimated_rows=self.estimated_rows(plan.table),
        )

    def estimated_rows(self, table: str) -> int | None:
        statement = self.sql_dialect.estimated_rows_sql(table)
        if statement is None:
            return None
        rows = self._run(statement)
        value = rows[0][0] if rows else None
        return int(value) if value is not None and value >= 0 else None  # PostgreSQL: -1 before ANALYZE

    def table_names(self, schema: str | None) -> list[str]:
        """Names of the tables and views in a schema (None: the connection's default)."""
        return [str(r[0]) for r in self._run(self.sql_dialect.table_names_sql(schema))]

    def list_tables(self, pattern: str) -> list[str]:
        """Tables whose name matches a glob pattern (`*`, `?`, `[...]`), `schema.pattern` allowed;
        matched in Python against the catalogue's names, never pasted into SQL."""
        schema, dot, name_pattern = pattern.rpartition(".")
        names = self.table_names(schema or None)
        prefix = f"{schema}{dot}" if schema else ""
        return sorted(prefix + n for n in names if fnmatch.fnmatchcase(n, name_pattern))

    def null_keys(self, plan: TablePlan) -> list[Key]:
        rows = self._run(self.sql_dialect.null_keys_sql(plan))
        return [self.sql_dialect.key_out(plan, row) for row in rows]

    def validate_key(self, plan: TablePlan) -> None:
        """A --key that is not the primary key must be non-NULL and unique."""
        names = ", ".join(c.name for c in plan.key)
        if self._run(self.sql_dialect.key_nulls_sql(plan)):
            raise KeyColumnError(f"key {names} has NULL values in {plan.table}")
        dup = self._run(self.sql_dialect.key_duplicates_sql(plan))
        if dup:
            raise KeyColumnError(
                f"key {names} is not unique in {plan.table}: {self.sql_dialect.key_out(plan, dup[0])} "
                "appears more than once",
                redacted=f"key {names} is not unique in {plan.table}: a key appears more than once",
            )

    def index_serves(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> bool:
        return self.sql_dialect.index_serves(plan, lo, hi)

    def chunk_bounds(self, plan: TablePlan, bound: Key | None, size: int, parts: int, reverse: bool) -> Span:
        """The next chunk of `size` rows from `bound`, and the keys that cut it into `parts` buckets of
        equal row counts, from one index-ordered scan of the chunk's keys.

        Forward: `bound` is the inclusive lower bound; the key `size` rows further is the exclusive
        upper bound (None at the end of the table). Reverse: `bound` is the exclusive upper bound
        and the chunk is the `size` rows below it."""
        d = self.sql_dialect
        width = len(plan.key)
        if parts <= 1:
            end = self._run(d.chunk_end_sql(plan, bound, size, reverse))
            far = d.key_out(plan, end[0][:width]) if end else None
            return Span(lo=far, hi=bound) if reverse else Span(lo=bound, hi=far)
        rows = self._run(d.chunk_marks_sql(plan, bound, size, parts, reverse))
        marks = [(d.key_out(plan, r[:width]), int(r[width])) for r in rows]
        if reverse:
            lo = marks[-1][0] if marks and marks[-1][1] == size else None
            points = [k for k, rn in marks if rn != size]
            return Span(lo=lo, hi=bound, points=points[::-1])
        hi = marks[-1][0] if marks and marks[-1][1] == size + 1 else None
        points = [k for k, rn in marks if rn != size + 1]
        return Span(lo=bound, hi=hi, points=points)

    def sample_keys(self, plan: TablePlan, fraction: float, limit: int) -> list[Key]:
        """The keys of a random sample of about `fraction` of the rows (at most `limit`)."""
        d = self.sql_dialect
        return [d.key_out(plan, row) for row in self._run(d.sample_keys_sql(plan, fraction, limit))]

    def split_points(self, plan: TablePlan, requests: Sequence[SplitRequest]) -> list[list[Key]]:
        """For each request, the keys at every `step`-th row of [lo, hi) (the first row excluded):
        they cut it into ranges of `step` rows. One pass per query for all requests."""
        d = self.sql_dialect
        out: list[list[Key]] = [[] for _ in requests]
        width = len(plan.key)
        # The cuts only shape the buckets, whatever rows a narrowed read misses.
        for query in d.span_queries(plan, [Span(lo=r.lo, hi=r.hi, narrow=True) for r in requests]):
            owner = {query.bucket_of[i][0]: i for i in query.indexes}
            for row in self._run(d.split_points_sql(plan, query, requests)):
                out[owner[int(row[width])]].append(d.key_out(plan, row[:width]))
        return out

    def checksum(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> Checksum:
        return self.bucket_checksums(plan, [Span(lo=lo, hi=hi)])[0][0]

    def bucket_checksums(self, plan: TablePlan, spans: Sequence[Span]) -> list[list[Checksum]]:
        """Row count and hash sum of each bucket of each span, in one pass per query."""
        out = [[Checksum(count=0, total="0") for _ in range(len(s.points) + 1)] for s in spans]
        for query in self.sql_dialect.span_queries(plan, spans):
            statement = self.sql_dialect.bucket_checksums_sql(plan, query)
            where = {g: (i, j) for i in query.indexes for j, g in enumerate(query.bucket_of[i])}
            for bucket, count, total in self._run(statement):
                place = where.get(int(bucket))
                if place is not None:  # a gap bucket cannot hold rows (the WHERE excludes them)
                    out[place[0]][place[1]] = Checksum(count=int(count), total=str(int(total or 0)))
        return out

    def row_hashes(self, plan: TablePlan, spans: Sequence[Span]) -> list[tuple[Key, int]]:
        """(key, row hash) of every row in the spans."""
        d = self.sql_dialect
        out: list[tuple[Key, int]] = []
        width = len(plan.key)
        for query in d.span_queries(plan, spans):
            rows = self._run(d.row_hashes_sql(plan, query))
            out += [(d.key_out(plan, row[:width]), int(row[width])) for row in rows]
        return out

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        """Rows by key, every column as its canonical text (key columns included)."""
        return self._rows_by_key(plan, keys, lock=False)

    def _rows_by_key(self, plan: TablePlan, keys: Sequence[Key], *, lock: bool) -> list[dict[str, str | None]]:
        d = self.sql_dialect
        columns = [*plan.key, *plan.columns]
        wanted = {tuple(k) for k in keys}
        width = len(plan.key)
        out: list[dict[str, str | None]] = []
        for statement in d.rows_by_key_sql(plan, keys, lock=lock):
            for row in self._run(statement):
                key = d.key_out(plan, row[:width])
                # Case-insensitive collations match 'a' for 'A': keep exact matches only.
                if tuple(key) not in wanted:
                    continue
                texts = [d.fetched_text(c, v) for c, v in zip(columns, row[width:], strict=True)]
                out.append({c.name: t for c, t in zip(columns, texts, strict=True)})
        return out
