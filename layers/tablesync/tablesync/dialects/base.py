"""The keyset SQL every dialect shares. A dialect supplies identifier quoting, the placeholder,
its key-order expression and its row-hash expression; this module assembles the queries for the
connector operations (chunk boundaries, checksums, row hashes, rows by key) from them.

Keys are compared in byte (code point) order on every engine. Where a key column's own collation
orders differently, its index cannot serve a byte-order range; such ranges are still exact, but
the side scans for them. Operations over several spans therefore run at most two queries: one
for the spans the index serves (their ranges OR-ed, so each is an index range) and one scan for the
others, which finds each row's span by a binary search over the spans' bounds."""

from __future__ import annotations

import abc
import contextlib
import fnmatch
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..errors import DatabaseError, InputError, KeyColumnError, SchemaError
from ..filters import filter_columns, render_filter
from ..models import (
    Checksum,
    Column,
    Key,
    KeyRange,
    Kind,
    RowWrite,
    Span,
    SplitRequest,
    TablePlan,
    TableSchema,
    WriteFailure,
    WriteOutcome,
    fixed_prefix,
    index_serves,
)
from ..normalize import FIELD_SEPARATOR, INVALID_MARK, LENGTH_PREFIXED, NULL_FIELD

# Kinds whose canonical SQL maps every non-NULL value to text (date functions may give NULL for
# invalid MySQL dates, so those keep the marker).
NEVER_NULL_TEXT = frozenset({Kind.INTEGER, Kind.BOOLEAN, Kind.DECIMAL, Kind.TEXT, Kind.UUID, Kind.BYTES})

FETCH_BATCH = 500
# TCP keepalives on every database connection: a peer gone mid-query (a host lost in a failover,
# a path black-holed) is noticed after about idle + interval x count = 60 s, as a lost connection
# (an outage to wait out), not after the kernel's two hours.
KEEPALIVE_IDLE_SECONDS = 30
KEEPALIVE_INTERVAL_SECONDS = 10
KEEPALIVE_COUNT = 3


def float_of_bits(text: str) -> float:
    """The double whose IEEE 754 bits are these 16 hex digits (a FLOAT's canonical text)."""
    value: float = struct.unpack(">d", bytes.fromhex(text))[0]
    return value


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

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        """One statement for many parameter rows; dialects batch them in fewer round trips."""
        for params in rows:
            self.execute(sql, params)

    @abc.abstractmethod
    def describe(self, table: str) -> TableSchema: ...

    @abc.abstractmethod
    def close(self) -> None: ...

    def sum_expr(self, expr: str) -> str:
        """An exact sum; PostgreSQL and MySQL sum integers as numeric/decimal, never overflowing."""
        return f"SUM({expr})"

    def key_value_out(self, column: Column, value: Any) -> Any:
        """A key value from the driver as the engine holds keys: its canonical value (integers as
        ints, text as its canonical text), so that every engine lists a key alike."""
        del column
        if value is None or isinstance(value, int | str):
            return value
        return str(value)

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

    def key_value_in(self, column: Column, value: Any) -> Any:
        del column
        return value

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

    # --- SQL assembly -----------------------------------------------------------------------
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

    def _key_select(self, plan: TablePlan) -> str:
        return ", ".join(self.quote(c.name) for c in plan.key)

    def _key_match(self, column: Column, mark: str | None = None) -> list[str]:
        """Clauses, each with one placeholder for the key value, that together match exactly the
        rows holding a canonical key value: the column's own equality (an index serves it) and,
        where that may admit other values too, the exact comparison."""
        mark = mark or self.placeholder
        clauses = []
        loose = self.key_equality_expr(column)
        if loose is not None:
            clauses.append(f"{loose} = {mark}")
        if not column.binary_order or loose is None:
            clauses.append(f"{self.key_order_expr(column)} = {mark}")
        return clauses

    def _compare(self, columns: Sequence[Column], op: str, key: Key, *, indexed: bool = True) -> tuple[str, list[Any]]:
        """Lexicographic comparison of the key columns with a key value; op is one of < <= > >=.
        `indexed`: the comparison bounds a range that an index should serve (a dialect without
        index support for row values then gets the expanded form)."""
        exprs = [self.key_order_expr(c) for c in columns]
        values = [self.key_value_in(c, v) for c, v in zip(columns, key, strict=True)]
        ph = self.placeholder
        if len(exprs) == 1:
            return f"{exprs[0]} {op} {ph}", values
        if self.row_values or not indexed:
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

    def index_serves(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> bool:
        return index_serves(plan.key, lo, hi)

    def _range(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> tuple[str, list[Any]]:
        """The exact condition lo <= key < hi. Leading columns fixed in the range are matched with
        the column's own equality (its index serves it under any collation, and it admits every
        byte-equal value) and, where the collation is not binary, also byte for byte."""
        fixed = fixed_prefix(lo, hi)
        clauses: list[str] = []
        params: list[Any] = []
        for i in range(fixed):
            assert lo is not None
            column = plan.key[i]
            matches = self._key_match(column)
            clauses += matches
            params += [self.key_value_in(column, lo[i])] * len(matches)
        rest = plan.key[fixed:]
        for bound, op in ((lo, ">="), (hi, "<")):
            if bound is not None:
                sql, p = self._compare(rest, op, bound[fixed:])
                clauses.append(sql)
                params += p
        return " AND ".join(clauses) if clauses else "1 = 1", params

    def _filter(self, plan: TablePlan, conditions: Sequence[tuple[str, list[Any]]]) -> tuple[str, list[Any]]:
        """WHERE clause: the given conditions, the --where filter, and no NULL in the key (rows
        with one cannot be told apart by key; they are listed by null_keys), AND-ed."""
        clauses = [f"({sql})" for sql, _ in conditions]
        params = [p for _, ps in conditions for p in ps]
        clauses += [f"{self.quote(c.name)} IS NOT NULL" for c in plan.key if c.nullable]
        if plan.where is not None:
            columns = {c.name: c for c in [*plan.filter_columns, *plan.key, *plan.columns]}
            unknown = [name for name in filter_columns(plan.where) if name not in columns]
            if unknown:
                raise InputError(f"the filter names column {unknown[0]!r}, which the plan does not describe")
            sql, p = render_filter(
                plan.where,
                lambda name: self.filter_operand(columns[name]),
                self.placeholder,
                lambda name, value: self.filter_value_in(columns[name], value),
                self.quote,
            )
            clauses.append(f"({sql})")
            params += p
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def _where(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> tuple[str, list[Any]]:
        return self._filter(plan, [self._range(plan, lo, hi)] if lo is not None or hi is not None else [])

    def _order(self, plan: TablePlan, descending: bool = False) -> str:
        direction = " DESC" if descending else ""
        return ", ".join(f"{self.key_order_expr(c)}{direction}" for c in plan.key)

    def _key_out(self, plan: TablePlan, row: Sequence[Any]) -> Key:
        return [self.key_value_out(c, v) for c, v in zip(plan.key, row, strict=True)]

    # --- spans: one query for those the index serves, one scan for the others ---------------------
    def _span_queries(self, plan: TablePlan, spans: Sequence[Span]) -> list[_SpanQuery]:
        """The spans (sorted, disjoint) as at most two queries, each with its bucket expression
        (global bucket = number of cuts at or below the key), WHERE clause and bucket map."""
        served: list[int] = []
        scanned: list[int] = []
        for i, span in enumerate(spans):
            (served if self.index_serves(plan, span.lo, span.hi) else scanned).append(i)
        queries = []
        for indexes, scan in ((served, False), (scanned, True)):
            if not indexes:
                continue
            query = _SpanQuery(indexes)
            for i in indexes:
                query.add(i, spans[i])
            query.bucket_sql, query.bucket_params = self._bucket_expr(plan, query.cuts, 0)
            if scan:
                # One pass over the table; rows between the spans fall into gap buckets, skipped.
                first, last = spans[indexes[0]], spans[indexes[-1]]
                conditions = [self._range(plan, first.lo, last.hi)]
                if query.gaps:
                    wanted = sorted(query.wanted)
                    marks = ", ".join([self.placeholder] * len(wanted))
                    conditions.append((f"{query.bucket_sql} IN ({marks})", [*query.bucket_params, *wanted]))
            else:
                # Adjacent spans merge into one range; each range is an index range.
                ranges: list[tuple[Key | None, Key | None]] = []
                for i in indexes:
                    span = spans[i]
                    if ranges and ranges[-1][1] is not None and ranges[-1][1] == span.lo:
                        ranges[-1] = (ranges[-1][0], span.hi)
                    else:
                        ranges.append((span.lo, span.hi))
                parts = [self._range(plan, lo, hi) for lo, hi in ranges]
                conditions = [(" OR ".join(f"({sql})" for sql, _ in parts), [p for _, ps in parts for p in ps])]
            query.where_sql, query.where_params = self._filter(plan, conditions)
            queries.append(query)
        return queries

    # --- connector operations ---------------------------------------------------------------
    def key_range(self, plan: TablePlan) -> KeyRange:
        where, params = self._where(plan, None, None)
        base = f"SELECT {self._key_select(plan)} FROM {self.table_ref(plan.table)}{where}"
        first = self.execute(f"{base} ORDER BY {self._order(plan)} LIMIT 1", params)
        last = self.execute(f"{base} ORDER BY {self._order(plan, True)} LIMIT 1", params)
        return KeyRange(
            min_key=self._key_out(plan, first[0]) if first else None,
            max_key=self._key_out(plan, last[0]) if last else None,
            estimated_rows=self.estimated_rows(plan.table),
        )

    def estimated_rows(self, table: str) -> int | None:
        del table
        return None

    def table_names(self, schema: str | None) -> list[str]:
        """Names of the tables and views in a schema (None: the connection's default)."""
        raise NotImplementedError

    def list_tables(self, pattern: str) -> list[str]:
        """Tables whose name matches a glob pattern (`*`, `?`, `[...]`), `schema.pattern` allowed;
        matched in Python against the catalogue's names, never pasted into SQL."""
        schema, dot, name_pattern = pattern.rpartition(".")
        names = self.table_names(schema or None)
        prefix = f"{schema}{dot}" if schema else ""
        return sorted(prefix + n for n in names if fnmatch.fnmatchcase(n, name_pattern))

    def null_keys(self, plan: TablePlan) -> list[Key]:
        nulls = " OR ".join(f"{self.quote(c.name)} IS NULL" for c in plan.key)
        # The --where filter applies; the NOT NULL condition _filter adds does not.
        bare = plan.model_copy(update={"key": [c.model_copy(update={"nullable": False}) for c in plan.key]})
        where, params = self._filter(bare, [(nulls, [])])
        rows = self.execute(f"SELECT {self._key_select(plan)} FROM {self.table_ref(plan.table)}{where}", params)
        return [self._key_out(plan, row) for row in rows]

    def validate_key(self, plan: TablePlan) -> None:
        """A --key that is not the primary key must be non-NULL and unique."""
        table = self.table_ref(plan.table)
        nulls = " OR ".join(f"{self.quote(c.name)} IS NULL" for c in plan.key)
        if self.execute(f"SELECT 1 FROM {table} WHERE {nulls} LIMIT 1", []):
            raise KeyColumnError(f"key {', '.join(c.name for c in plan.key)} has NULL values in {plan.table}")
        # Grouped by the exact key values: a case-insensitive collation would group 'a' with 'A'.
        exact = ", ".join(self.key_order_expr(c) for c in plan.key)
        values = ", ".join(f"MIN({self.quote(c.name)})" for c in plan.key)
        dup = self.execute(f"SELECT {values} FROM {table} GROUP BY {exact} HAVING COUNT(*) > 1 LIMIT 1", [])
        if dup:
            names = ", ".join(c.name for c in plan.key)
            raise KeyColumnError(
                f"key {names} is not unique in {plan.table}: {self._key_out(plan, dup[0])} appears more than once",
                redacted=f"key {names} is not unique in {plan.table}: a key appears more than once",
            )

    def chunk_bounds(self, plan: TablePlan, bound: Key | None, size: int, parts: int, reverse: bool) -> Span:
        """The next chunk of `size` rows from `bound`, and the keys that cut it into `parts` buckets of
        equal row counts, from one index-ordered scan of the chunk's keys.

        Forward: `bound` is the inclusive lower bound; the key `size` rows further is the exclusive
        upper bound (None at the end of the table). Reverse: `bound` is the exclusive upper bound
        and the chunk is the `size` rows below it."""
        step = max(1, -(-size // max(1, parts)))
        keys = self._key_select(plan)
        table = self.table_ref(plan.table)
        width = len(plan.key)
        if parts <= 1:
            # Only the chunk's far end: an index-only seek of `size` rows from the cursor.
            if reverse:
                where, params = self._where(plan, None, bound)
                offset, order = int(size) - 1, self._order(plan, True)
            else:
                where, params = self._where(plan, bound, None)
                offset, order = int(size), self._order(plan)
            end = self.execute(f"SELECT {keys} FROM {table}{where} ORDER BY {order} LIMIT 1 OFFSET {offset}", params)
            far = self._key_out(plan, end[0][:width]) if end else None
            return Span(lo=far, hi=bound) if reverse else Span(lo=bound, hi=far)
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
        marks = [(self._key_out(plan, r[:width]), int(r[width])) for r in rows]
        if reverse:
            lo = marks[-1][0] if marks and marks[-1][1] == size else None
            points = [k for k, rn in marks if rn != size]
            return Span(lo=lo, hi=bound, points=points[::-1])
        hi = marks[-1][0] if marks and marks[-1][1] == size + 1 else None
        points = [k for k, rn in marks if rn != size + 1]
        return Span(lo=bound, hi=hi, points=points)

    def split_points(self, plan: TablePlan, requests: Sequence[SplitRequest]) -> list[list[Key]]:
        """For each request, the keys at every `step`-th row of [lo, hi) (the first row excluded):
        they cut it into ranges of `step` rows. One pass per query for all requests."""
        spans = [Span(lo=r.lo, hi=r.hi) for r in requests]
        out: list[list[Key]] = [[] for _ in requests]
        keys = self._key_select(plan)
        width = len(plan.key)
        for query in self._span_queries(plan, spans):
            steps = " ".join(
                f"WHEN {query.bucket_of[i][0]} THEN {max(1, int(requests[i].step))}" for i in query.indexes
            )
            inner = f"SELECT {keys}, {query.bucket_sql} AS ts_b FROM {self.table_ref(plan.table)}{query.where_sql}"
            numbered = (
                f"SELECT {keys}, ts_b, ROW_NUMBER() OVER (PARTITION BY ts_b ORDER BY {self._order(plan)}) AS ts_rn "
                f"FROM ({inner}) ts_i"
            )
            sql = (
                f"SELECT {keys}, ts_b FROM ({numbered}) ts_s "
                f"WHERE ts_rn > 1 AND {self.mod('ts_rn - 1', f'CASE ts_b {steps} END')} = 0 ORDER BY ts_b, ts_rn"
            )
            owner = {query.bucket_of[i][0]: i for i in query.indexes}
            for row in self.execute(sql, [*query.bucket_params, *query.where_params]):
                out[owner[int(row[width])]].append(self._key_out(plan, row[:width]))
        return out

    def checksum(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> Checksum:
        return self.bucket_checksums(plan, [Span(lo=lo, hi=hi)])[0][0]

    def _bucket_expr(self, plan: TablePlan, points: Sequence[Key], offset: int) -> tuple[str, list[Any]]:
        """A CASE tree giving the bucket of a row's key: the number of points <= key (log2 tests)."""
        if not points:
            return str(offset), []
        mid = len(points) // 2
        test, params = self._compare(plan.key, "<", points[mid], indexed=False)
        left, left_params = self._bucket_expr(plan, points[:mid], offset)
        right, right_params = self._bucket_expr(plan, points[mid + 1 :], offset + mid + 1)
        return f"CASE WHEN {test} THEN {left} ELSE {right} END", [*params, *left_params, *right_params]

    def bucket_checksums(self, plan: TablePlan, spans: Sequence[Span]) -> list[list[Checksum]]:
        """Row count and hash sum of each bucket of each span, in one pass per query."""
        out = [[Checksum(count=0, total="0") for _ in range(len(s.points) + 1)] for s in spans]
        for query in self._span_queries(plan, spans):
            sql = (
                f"SELECT {query.bucket_sql}, COUNT(*), {self.sum_expr(self.row_hash_expr(plan))} "
                f"FROM {self.table_ref(plan.table)}{query.where_sql} GROUP BY 1"
            )
            where = {g: (i, j) for i in query.indexes for j, g in enumerate(query.bucket_of[i])}
            for bucket, count, total in self.execute(sql, [*query.bucket_params, *query.where_params]):
                place = where.get(int(bucket))
                if place is not None:  # a gap bucket cannot hold rows (the WHERE excludes them)
                    out[place[0]][place[1]] = Checksum(count=int(count), total=str(int(total or 0)))
        return out

    def row_hashes(self, plan: TablePlan, spans: Sequence[Span]) -> list[tuple[Key, int]]:
        """(key, row hash) of every row in the spans."""
        out: list[tuple[Key, int]] = []
        width = len(plan.key)
        for query in self._span_queries(plan, spans):
            sql = (
                f"SELECT {self._key_select(plan)}, {self.row_hash_expr(plan)} "
                f"FROM {self.table_ref(plan.table)}{query.where_sql}"
            )
            rows = self.execute(sql, query.where_params)
            out += [(self._key_out(plan, row[:width]), int(row[width])) for row in rows]
        return out

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        """Rows by key, every column as its canonical text (key columns included)."""
        return self._rows_by_key(plan, keys, lock=False)

    def _key_condition(self, plan: TablePlan, batch: Sequence[Key]) -> tuple[str, list[Any]]:
        """Rows holding any of the keys, and maybe others that equal one under the column's
        collation: callers keep the exact matches (an index serves the lookup)."""
        ph = self.placeholder
        exprs = [self.key_equality_expr(c) or self.key_order_expr(c) for c in plan.key]
        if len(plan.key) == 1:
            marks = ", ".join([ph] * len(batch))
            params = [self.key_value_in(plan.key[0], k[0]) for k in batch]
            return f"{exprs[0]} IN ({marks})", params
        ors = []
        params = []
        for key in batch:
            ors.append("(" + " AND ".join(f"{expr} = {ph}" for expr in exprs) + ")")
            params += [self.key_value_in(c, v) for c, v in zip(plan.key, key, strict=True)]
        return " OR ".join(ors), params

    def _rows_by_key(self, plan: TablePlan, keys: Sequence[Key], *, lock: bool) -> list[dict[str, str | None]]:
        columns = [*plan.key, *plan.columns]
        select = ", ".join(self.canonical_expr(c) for c in columns)
        wanted = {tuple(k) for k in keys}
        out: list[dict[str, str | None]] = []
        key_list = list(keys)
        for start in range(0, len(key_list), FETCH_BATCH):
            batch = key_list[start : start + FETCH_BATCH]
            cond, params = self._key_condition(plan, batch)
            sql = f"SELECT {self._key_select(plan)}, {select} FROM {self.table_ref(plan.table)} WHERE {cond}"
            if lock:
                sql += self.lock_clause
            width = len(plan.key)
            for row in self.execute(sql, params):
                key = self._key_out(plan, row[:width])
                # Case-insensitive collations match 'a' for 'A': keep exact matches only.
                if tuple(key) not in wanted:
                    continue
                texts = [self.fetched_text(c, v) for c, v in zip(columns, row[width:], strict=True)]
                out.append({c.name: t for c, t in zip(columns, texts, strict=True)})
        return out

    # --- writes (repair) -----------------------------------------------------------------------
    begin_sql = "BEGIN"
    lock_clause = " FOR UPDATE"  # locks the rows read, until the transaction ends

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
        """A bound value written out as SQL, for --dry-run's listing only (never executed)."""
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "TRUE" if value else "FALSE"
        if isinstance(value, int | float):
            return repr(value)
        if isinstance(value, bytes):
            return f"X'{value.hex()}'"
        return "'" + str(value).replace("'", "''") + "'"

    def _write_sql(self, plan: TablePlan, action: str, marks: Sequence[str] | None = None) -> str:
        """The SQL of a write. Its values stand at the placeholders, in _write_params' order; with
        `marks` (a --dry-run listing, never executed) they are written out instead."""
        listing = marks is not None

        def name(column: str) -> str:
            # quote() doubles % for the driver's parameter syntax; a listing shows the name itself.
            quoted = self.quote(column)
            return quoted.replace("%%", "%") if listing and self.placeholder == "%s" else quoted

        table = self.table_ref(plan.table)
        if listing and self.placeholder == "%s":
            table = table.replace("%%", "%")
        filled = iter(marks) if marks is not None else None

        def mark() -> str:
            return next(filled) if filled is not None else self.placeholder

        if action == "insert":
            columns = [*plan.key, *plan.columns]
            values = ", ".join(mark() for _ in columns)
            return f"INSERT INTO {table} ({', '.join(name(c.name) for c in columns)}) VALUES ({values})"
        sets = ", ".join(f"{name(c.name)} = {mark()}" for c in plan.columns) if action == "update" else ""
        # The exact key: a case-insensitive collation's own equality would match other rows too.
        matches = [clause for c in plan.key for clause in self._key_match(c, "\0")]
        if listing and self.placeholder == "%s":
            matches = [clause.replace("%%", "%") for clause in matches]
        cond = " AND ".join(clause.replace("\0", mark()) for clause in matches)
        if action == "update":
            return f"UPDATE {table} SET {sets} WHERE {cond}"
        if action == "delete":
            return f"DELETE FROM {table} WHERE {cond}"
        raise ValueError(f"unknown write action {action!r}")

    def _write_params(self, plan: TablePlan, write: RowWrite) -> list[Any]:
        """The parameters of one write, in the order of _write_sql's placeholders."""
        key = [self.key_value_in(c, v) for c, v in zip(plan.key, write.key, strict=True)]
        values = write.values or {}
        texts = [self.write_value(c, values.get(c.name)) for c in plan.columns]
        if write.action == "insert":
            return key + texts
        matched = [v for c, v in zip(plan.key, key, strict=True) for _ in self._key_match(c)]
        return matched if write.action == "delete" else texts + matched

    def write_rows(self, plan: TablePlan, writes: Sequence[RowWrite], dry_run: bool = False) -> WriteOutcome:
        """Applies a batch of writes in one transaction, each only where the row is still as the
        caller read it (`expected`): the rows are locked and read again first, and a row that
        changed is left alone (`changed`). For a caller that cannot hold a transaction open (a
        connector Lambda); lock_rows and write_locked let one that can read the source after the
        lock. Failing statements as in write_locked."""
        if dry_run:
            statements = [
                self._write_sql(plan, w.action, [self.literal(v) for v in self._write_params(plan, w)]) + ";"
                for w in writes
            ]
            return WriteOutcome(statements=statements)
        current = {_row_key_texts(plan, row): row for row in self.lock_rows(plan, [w.key for w in writes])}
        unchanged = [i for i, w in enumerate(writes) if current.get(_key_texts(w.key)) == w.expected]
        outcome = self.write_locked(plan, [writes[i] for i in unchanged])
        kept = set(unchanged)
        return WriteOutcome(
            applied=[unchanged[i] for i in outcome.applied],
            changed=[i for i in range(len(writes)) if i not in kept],
            failed=[f.model_copy(update={"index": unchanged[f.index]}) for f in outcome.failed],
        )

    def lock_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        """Begins a write transaction and locks the rows holding the keys (SELECT ... FOR UPDATE;
        SQLite: BEGIN IMMEDIATE locks the database); returns them as fetch_rows does. The caller
        then reads the source, so that what it writes is never older than what it replaces, and
        ends the transaction with write_locked or rollback."""
        self.execute(self.begin_sql, [])
        try:
            rows = self._rows_by_key(plan, keys, lock=True)
            self.execute("SAVEPOINT ts_batch", [])
        except BaseException:
            self._rollback()
            raise
        return rows

    def write_locked(self, plan: TablePlan, writes: Sequence[RowWrite]) -> WriteOutcome:
        """Applies the writes in the transaction lock_rows began, and commits. When a statement
        fails for a reason retrying will not fix, the batch goes back to the savepoint after the
        lock and is redone with a savepoint per row, so exactly the failing rows are left out,
        each with its reason. A transient error (lost connection, deadlock, lock timeout) rolls
        the transaction back and is raised."""
        shapes = {action: self._write_sql(plan, action) for action in ("insert", "update", "delete")}
        runnable = [(i, shapes[w.action], self._write_params(plan, w)) for i, w in enumerate(writes)]
        try:
            try:
                outcome = self._execute_writes(runnable, isolate=False)
            except DatabaseError:
                self.execute("ROLLBACK TO SAVEPOINT ts_batch", [])
                outcome = self._appeared(plan, writes, self._execute_writes(runnable, isolate=True))
            self.execute("COMMIT", [])
        except BaseException:
            self._rollback()
            raise
        return outcome

    def _appeared(self, plan: TablePlan, writes: Sequence[RowWrite], outcome: WriteOutcome) -> WriteOutcome:
        """An insert refused while its key is there now lost to another writer (a row that did
        not exist could not be locked): the row appeared under the repair, so it is `changed`
        (left alone, to be checked again), not a failure. A locking read sees the newest row."""
        inserts = [f for f in outcome.failed if writes[f.index].action == "insert"]
        if not inserts:
            return outcome
        rows = self._rows_by_key(plan, [writes[f.index].key for f in inserts], lock=True)
        present = {_row_key_texts(plan, row) for row in rows}
        appeared = {f.index for f in inserts if _key_texts(writes[f.index].key) in present}
        return outcome.model_copy(
            update={
                "changed": [*outcome.changed, *sorted(appeared)],
                "failed": [f for f in outcome.failed if f.index not in appeared],
            }
        )

    def rollback(self) -> None:
        """Ends the transaction lock_rows began without writing."""
        self._rollback()

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):  # the connection may be gone; the server rolls back then
            self.execute("ROLLBACK", [])

    def _execute_writes(self, runnable: Sequence[tuple[int, str, list[Any]]], *, isolate: bool) -> WriteOutcome:
        outcome = WriteOutcome()
        if not isolate:
            # Statements of one shape run as one batch (a multi-row INSERT on MySQL, a pipeline on
            # PostgreSQL): the keys are distinct, so their order does not matter.
            batched: dict[str, list[Sequence[Any]]] = {}
            for index, sql, params in runnable:
                batched.setdefault(sql, []).append(params)
                outcome.applied.append(index)
            for sql, rows in batched.items():
                self.execute_many(sql, rows)
            return outcome
        for index, sql, params in runnable:
            self.execute("SAVEPOINT ts_row", [])
            try:
                self.execute(sql, params)
            except DatabaseError as exc:
                self.execute("ROLLBACK TO SAVEPOINT ts_row", [])
                outcome.failed.append(WriteFailure(index=index, reason=str(exc)))
                continue
            self.execute("RELEASE SAVEPOINT ts_row", [])
            outcome.applied.append(index)
        return outcome


def _row_key_texts(plan: TablePlan, row: dict[str, str | None]) -> tuple[str | None, ...]:
    """A fetched row's key as canonical texts, in key order."""
    return tuple(row[c.name] for c in plan.key)


def _key_texts(key: Key) -> tuple[str, ...]:
    """A key's canonical texts: its JSON values as text (integers, text, lowercase UUIDs)."""
    return tuple(str(v) for v in key)


@dataclass
class _SpanQuery:
    """Spans served by one query: the sorted cuts (span bounds and points) that number the global
    buckets, and for each span the global bucket of each of its own buckets."""

    indexes: list[int]
    cuts: list[Key] = field(default_factory=list)
    bucket_of: dict[int, list[int]] = field(default_factory=dict)
    wanted: set[int] = field(default_factory=set)
    gaps: bool = False
    bucket_sql: str = ""
    bucket_params: list[Any] = field(default_factory=list)
    where_sql: str = ""
    where_params: list[Any] = field(default_factory=list)
    _last_hi: Key | None = None
    _count: int = 0

    def _cut(self, key: Key) -> int:
        """Adds a cut; returns the global bucket that starts at it."""
        # Python orders str by code point, which is UTF-8 byte order: the databases' key order.
        if self.cuts and key <= self.cuts[-1]:
            raise ValueError("spans must be sorted and disjoint")
        self.cuts.append(key)
        return len(self.cuts)

    def add(self, index: int, span: Span) -> None:
        if self._count and (self._last_hi is None or span.lo is None):
            raise ValueError("spans must be sorted and disjoint")
        buckets: list[int] = []
        if span.lo is None:
            buckets.append(0)
        elif self.cuts and self._last_hi is not None and span.lo == self._last_hi:
            buckets.append(len(self.cuts))  # adjacent: the previous span's upper cut starts it
        else:
            self.gaps = self.gaps or self._count > 0
            buckets.append(self._cut(span.lo))
        buckets += [self._cut(point) for point in span.points]
        if span.hi is not None:
            self._cut(span.hi)
        self.bucket_of[index] = buckets
        self.wanted.update(buckets)
        self._last_hi = span.hi
        self._count += 1


def _number_text(text: str) -> Decimal:
    try:
        return Decimal(text)
    except ArithmeticError:
        raise InputError(f"--where: {text!r} is not a number") from None


def check_columns_exist(schema: TableSchema, names: Sequence[str]) -> None:
    for name in names:
        if schema.column(name) is None:
            raise SchemaError(f"unknown column {name!r} in table {schema.table}")
