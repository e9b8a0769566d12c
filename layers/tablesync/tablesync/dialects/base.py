"""The keyset SQL every dialect shares. A dialect supplies identifier quoting, the placeholder,
its key-order expression and its row-hash expression; this module assembles the queries for the
connector operations (chunk boundaries, checksums, row hashes, rows by key) from them."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from ..errors import KeyColumnError, SchemaError
from ..filters import render_filter
from ..models import Checksum, ChunkSpan, Column, Key, KeyRange, Kind, TablePlan, TableSchema
from ..normalize import FIELD_SEPARATOR, LENGTH_PREFIXED, NULL_FIELD

# Kinds whose canonical SQL maps every non-NULL value to text (date functions may give NULL for
# invalid MySQL dates, so those keep the marker).
NEVER_NULL_TEXT = frozenset({Kind.INTEGER, Kind.BOOLEAN, Kind.DECIMAL, Kind.TEXT, Kind.UUID, Kind.BYTES})

FETCH_BATCH = 500


class SqlConnector(abc.ABC):
    """Base of the three database connectors. Methods mirror the Connector protocol."""

    dialect: str = ""
    placeholder = "%s"
    row_values = True  # the dialect compares (a, b) >= (x, y) using the index

    # --- what a dialect provides -------------------------------------------------------------
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

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    def describe(self, table: str) -> TableSchema: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def sum_expr(self, expr: str) -> str:
        """An exact sum; PostgreSQL and MySQL sum integers as numeric/decimal, never overflowing."""
        return f"SUM({expr})"

    def key_value_out(self, value: Any) -> Any:
        """A key value from the driver as plain JSON data."""
        if isinstance(value, int | str):
            return value
        return str(value)

    def key_value_in(self, column: Column, value: Any) -> Any:
        del column
        return value

    def filter_value_in(self, value: Any) -> Any:
        """A --where literal as the driver binds it."""
        return value

    def fetched_text(self, column: Column, value: Any) -> str | None:
        """Turns a value returned by canonical_expr into its canonical text."""
        del column
        return None if value is None else str(value)

    # --- SQL assembly -----------------------------------------------------------------------
    def row_hash_expr(self, plan: TablePlan) -> str:
        """The key columns are hashed too: otherwise a missing row and an extra row holding the same
        values under another key would cancel out in a checksum."""
        fields = []
        for column in [*plan.key, *plan.columns]:
            text = self.canonical_expr(column)
            if column.kind in LENGTH_PREFIXED:
                text = self.concat([self.octet_length(text), "':'", text])
            # A NOT NULL column of a kind whose canonical text is never NULL needs no NULL marker
            # (saves a function call per row).
            never_null = not column.nullable and column.kind in NEVER_NULL_TEXT
            fields.append(text if never_null else f"COALESCE({text}, '{NULL_FIELD}')")
        parts: list[str] = []
        for field in fields:
            if parts:
                parts.append(f"'{FIELD_SEPARATOR}'")
            parts.append(field)
        return self.hash60(self.concat(parts) if len(parts) > 1 else parts[0])

    def _key_exprs(self, plan: TablePlan) -> list[str]:
        return [self.key_order_expr(c) for c in plan.key]

    def _key_select(self, plan: TablePlan) -> str:
        return ", ".join(self.quote(c.name) for c in plan.key)

    def _compare(self, plan: TablePlan, op: str, key: Key) -> tuple[str, list[Any]]:
        """Lexicographic comparison of the key with a key value; op is one of < <= > >=."""
        exprs = self._key_exprs(plan)
        values = [self.key_value_in(c, v) for c, v in zip(plan.key, key, strict=True)]
        ph = self.placeholder
        if len(exprs) == 1:
            return f"{exprs[0]} {op} {ph}", values
        if self.row_values:
            marks = ", ".join([ph] * len(values))
            return f"({', '.join(exprs)}) {op} ({marks})", values
        strict = op[0]  # '<' or '>'
        ors: list[str] = []
        params: list[Any] = []
        for i in range(len(exprs)):
            terms = [f"{exprs[j]} = {ph}" for j in range(i)]
            last_op = op if i == len(exprs) - 1 else strict
            terms.append(f"{exprs[i]} {last_op} {ph}")
            ors.append("(" + " AND ".join(terms) + ")")
            params.extend(values[: i + 1])
        # The leading bound on the first column lets the optimizer use a range on the index.
        lead = f"{exprs[0]} {strict}= {ph}"
        return f"{lead} AND ({' OR '.join(ors)})", [values[0], *params]

    def _where(
        self, plan: TablePlan, lo: Key | None, hi: Key | None, *, hi_inclusive: bool = False
    ) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if lo is not None:
            sql, p = self._compare(plan, ">=", lo)
            clauses.append(sql)
            params += p
        if hi is not None:
            sql, p = self._compare(plan, "<=" if hi_inclusive else "<", hi)
            clauses.append(sql)
            params += p
        if plan.where is not None:
            sql, p = render_filter(plan.where, self.quote, self.placeholder, self.filter_value_in)
            clauses.append(f"({sql})")
            params += p
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _order(self, plan: TablePlan, descending: bool = False) -> str:
        direction = " DESC" if descending else ""
        return ", ".join(f"{expr}{direction}" for expr in self._key_exprs(plan))

    def _key_out(self, row: Sequence[Any]) -> Key:
        return [self.key_value_out(v) for v in row]

    # --- connector operations ---------------------------------------------------------------
    def key_range(self, plan: TablePlan) -> KeyRange:
        where, params = self._where(plan, None, None)
        base = f"SELECT {self._key_select(plan)} FROM {self.table_ref(plan.table)}{where}"
        first = self.execute(f"{base} ORDER BY {self._order(plan)} LIMIT 1", params)
        last = self.execute(f"{base} ORDER BY {self._order(plan, True)} LIMIT 1", params)
        return KeyRange(
            min_key=self._key_out(first[0]) if first else None,
            max_key=self._key_out(last[0]) if last else None,
            estimated_rows=self.estimated_rows(plan.table),
        )

    def estimated_rows(self, table: str) -> int | None:
        del table
        return None

    def validate_key(self, plan: TablePlan) -> None:
        """A --key that is not the primary key must be non-NULL and unique."""
        table = self.table_ref(plan.table)
        nulls = " OR ".join(f"{self.quote(c.name)} IS NULL" for c in plan.key)
        if self.execute(f"SELECT 1 FROM {table} WHERE {nulls} LIMIT 1", []):
            raise KeyColumnError(f"key {', '.join(c.name for c in plan.key)} has NULL values in {plan.table}")
        cols = self._key_select(plan)
        dup = self.execute(f"SELECT {cols} FROM {table} GROUP BY {cols} HAVING COUNT(*) > 1 LIMIT 1", [])
        if dup:
            raise KeyColumnError(
                f"key {', '.join(c.name for c in plan.key)} is not unique in {plan.table}: "
                f"{self._key_out(dup[0])} appears more than once"
            )

    def chunk_bounds(self, plan: TablePlan, bound: Key | None, size: int, parts: int, reverse: bool) -> ChunkSpan:
        """The next chunk of `size` rows from `bound`, and the keys that cut it into `parts` buckets of
        equal row counts, from one index-ordered scan of the chunk's keys.

        Forward: `bound` is the inclusive lower bound; the key `size` rows further is the exclusive
        upper bound (None at the end of the table). Reverse: `bound` is the exclusive upper bound
        and the chunk is the `size` rows below it."""
        step = max(1, -(-size // max(1, parts)))
        keys = self._key_select(plan)
        table = self.table_ref(plan.table)
        if reverse:
            where, params = self._where(plan, None, bound)
            inner = f"SELECT {keys} FROM {table}{where} ORDER BY {self._order(plan, True)} LIMIT {int(size)}"
        else:
            where, params = self._where(plan, bound, None)
            inner = f"SELECT {keys} FROM {table}{where} ORDER BY {self._order(plan)} LIMIT {int(size) + 1}"
        # The window runs over the LIMITed rows only (MariaDB materialises a window's whole input).
        numbered = (
            f"SELECT {keys}, ROW_NUMBER() OVER (ORDER BY {self._order(plan, reverse)}) AS ts_rn FROM ({inner}) ts_c"
        )
        if reverse:
            picked = f"{self.mod('ts_rn', str(step))} = 0 OR ts_rn = {int(size)}"
        else:
            picked = f"{self.mod('ts_rn - 1', str(step))} = 0 AND ts_rn > 1 OR ts_rn = {int(size) + 1}"
        rows = self.execute(f"SELECT {keys}, ts_rn FROM ({numbered}) ts_n WHERE {picked} ORDER BY ts_rn", params)
        width = len(plan.key)
        marks = [(self._key_out(r[:width]), int(r[width])) for r in rows]
        if reverse:
            lo = marks[-1][0] if marks and marks[-1][1] == size else None
            points = [k for k, rn in marks if rn != size]
            return ChunkSpan(lo=lo, hi=bound, points=points[::-1])
        hi = marks[-1][0] if marks and marks[-1][1] == size + 1 else None
        points = [k for k, rn in marks if rn != size + 1]
        return ChunkSpan(lo=bound, hi=hi, points=points)

    def split_points(self, plan: TablePlan, lo: Key | None, hi: Key | None, count: int, parts: int) -> list[Key]:
        """Keys that cut [lo, hi) into `parts` ranges of about equal row counts, in one pass."""
        step = max(1, -(-count // max(2, parts)))
        where, params = self._where(plan, lo, hi)
        keys = self._key_select(plan)
        inner = (
            f"SELECT {keys}, ROW_NUMBER() OVER (ORDER BY {self._order(plan)}) AS ts_rn "
            f"FROM {self.table_ref(plan.table)}{where}"
        )
        picked = f"{self.mod('ts_rn - 1', str(step))} = 0 AND ts_rn > 1"
        sql = f"SELECT {keys} FROM ({inner}) ts_s WHERE {picked} ORDER BY ts_rn"
        return [self._key_out(row) for row in self.execute(sql, params)]

    def checksum(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> Checksum:
        return self.bucket_checksums(plan, lo, hi, [])[0]

    def _bucket_expr(self, plan: TablePlan, points: Sequence[Key], offset: int) -> tuple[str, list[Any]]:
        """A CASE tree giving the bucket of a row's key: the number of points <= key (log2 tests)."""
        if not points:
            return str(offset), []
        mid = len(points) // 2
        test, params = self._compare(plan, "<", points[mid])
        left, left_params = self._bucket_expr(plan, points[:mid], offset)
        right, right_params = self._bucket_expr(plan, points[mid + 1 :], offset + mid + 1)
        return f"CASE WHEN {test} THEN {left} ELSE {right} END", [*params, *left_params, *right_params]

    def bucket_checksums(
        self, plan: TablePlan, lo: Key | None, hi: Key | None, points: Sequence[Key]
    ) -> list[Checksum]:
        """Row count and hash sum of each bucket [lo, p1), [p1, p2), ... [pn, hi), in one pass."""
        bucket, bucket_params = self._bucket_expr(plan, points, 0)
        where, params = self._where(plan, lo, hi)
        sql = (
            f"SELECT {bucket}, COUNT(*), {self.sum_expr(self.row_hash_expr(plan))} "
            f"FROM {self.table_ref(plan.table)}{where} GROUP BY 1"
        )
        sums = [Checksum(count=0, total="0") for _ in range(len(points) + 1)]
        for index, count, total in self.execute(sql, [*bucket_params, *params]):
            sums[int(index)] = Checksum(count=int(count), total=str(int(total or 0)))
        return sums

    def row_hashes(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> list[tuple[Key, int]]:
        where, params = self._where(plan, lo, hi)
        sql = f"SELECT {self._key_select(plan)}, {self.row_hash_expr(plan)} FROM {self.table_ref(plan.table)}{where}"
        width = len(plan.key)
        return [(self._key_out(row[:width]), int(row[width])) for row in self.execute(sql, params)]

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        """Rows by key, every column as its canonical text (key columns included)."""
        columns = [*plan.key, *plan.columns]
        select = ", ".join(self.canonical_expr(c) for c in columns)
        wanted = {tuple(k) for k in keys}
        out: list[dict[str, str | None]] = []
        key_list = list(keys)
        for start in range(0, len(key_list), FETCH_BATCH):
            batch = key_list[start : start + FETCH_BATCH]
            params: list[Any] = []
            if len(plan.key) == 1:
                marks = ", ".join([self.placeholder] * len(batch))
                cond = f"{self.quote(plan.key[0].name)} IN ({marks})"
                params = [self.key_value_in(plan.key[0], k[0]) for k in batch]
            else:
                ors = []
                for key in batch:
                    ors.append("(" + " AND ".join(f"{self.quote(c.name)} = {self.placeholder}" for c in plan.key) + ")")
                    params += [self.key_value_in(c, v) for c, v in zip(plan.key, key, strict=True)]
                cond = " OR ".join(ors)
            sql = f"SELECT {self._key_select(plan)}, {select} FROM {self.table_ref(plan.table)} WHERE {cond}"
            width = len(plan.key)
            for row in self.execute(sql, params):
                key = self._key_out(row[:width])
                # Case-insensitive collations match 'a' for 'A': keep exact matches only.
                if tuple(key) not in wanted:
                    continue
                texts = [self.fetched_text(c, v) for c, v in zip(columns, row[width:], strict=True)]
                out.append({c.name: t for c, t in zip(columns, texts, strict=True)})
        return out


def check_columns_exist(schema: TableSchema, names: Sequence[str]) -> None:
    for name in names:
        if schema.column(name) is None:
            raise SchemaError(f"unknown column {name!r} in table {schema.table}")
