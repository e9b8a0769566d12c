"""Key predicates every dialect shares: exact key matches, lexicographic key comparisons, key
ranges, the --where filter, bucket expressions, and the plan of queries over several spans. Each
returns SQL text with placeholders and the values to bind there (never inlined). Pure.

Keys are compared in byte (code point) order on every engine. Where a key column's own collation
orders differently, its index cannot serve a byte-order range; such ranges are still exact, but
the side scans for them. Operations over several spans therefore run at most two queries: one
for the spans the index serves (their ranges OR-ed, so each is an index range) and one scan for the
others, which finds each row's span by a binary search over the spans' bounds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InputError
from ..filters import filter_columns, render_filter
from ..models import Column, Key, Span, TablePlan, fixed_prefix, index_serves
from .expressions import SqlExpressions

Condition = tuple[str, list[Any]]  # SQL with placeholders, and the values bound at them


class KeyPredicates(SqlExpressions):
    """The conditions on keys a dialect builds its queries from."""

    def key_select(self, plan: TablePlan) -> str:
        return ", ".join(self.quote(c.name) for c in plan.key)

    def key_out(self, plan: TablePlan, row: Sequence[Any]) -> Key:
        return [self.key_value_out(c, v) for c, v in zip(plan.key, row, strict=True)]

    def key_match(self, column: Column, mark: str | None = None) -> list[str]:
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

    def compare(self, columns: Sequence[Column], op: str, key: Key, *, indexed: bool = True) -> Condition:
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

    def range_condition(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> Condition:
        """The exact condition lo <= key < hi. Leading columns fixed in the range are matched with
        the column's own equality (its index serves it under any collation, and it admits every
        byte-equal value) and, where the collation is not binary, also byte for byte."""
        fixed = fixed_prefix(lo, hi)
        clauses: list[str] = []
        params: list[Any] = []
        for i in range(fixed):
            assert lo is not None
            column = plan.key[i]
            matches = self.key_match(column)
            clauses += matches
            params += [self.key_value_in(column, lo[i])] * len(matches)
        rest = plan.key[fixed:]
        for bound, op in ((lo, ">="), (hi, "<")):
            if bound is not None:
                sql, p = self.compare(rest, op, bound[fixed:])
                clauses.append(sql)
                params += p
        return " AND ".join(clauses) if clauses else "1 = 1", params

    def range_superset(self, plan: TablePlan, ranges: Sequence[tuple[Key | None, Key | None]]) -> Condition | None:
        """A condition that every row of the byte-order ranges meets and that the key's own index
        serves, where the dialect knows one (see MysqlDialect); None: the side scans. Used only
        for spans marked `narrow`, whose rows the engine counts against a count it knows: a
        database whose index misses rows a LIKE matches (MariaDB's utf8mb4_unicode_ci misses
        characters beyond the BMP) is caught and read again in full."""
        del plan, ranges
        return None

    def filter_clause(self, plan: TablePlan, conditions: Sequence[Condition]) -> Condition:
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

    def where(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> Condition:
        """The WHERE clause of the rows lo <= key < hi that the filter admits."""
        bounded = lo is not None or hi is not None
        return self.filter_clause(plan, [self.range_condition(plan, lo, hi)] if bounded else [])

    def order_by(self, plan: TablePlan, descending: bool = False) -> str:
        direction = " DESC" if descending else ""
        return ", ".join(f"{self.key_order_expr(c)}{direction}" for c in plan.key)

    def key_condition(self, plan: TablePlan, batch: Sequence[Key]) -> Condition:
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

    def bucket_expr(self, plan: TablePlan, points: Sequence[Key], offset: int) -> Condition:
        """A CASE tree giving the bucket of a row's key: the number of points <= key (log2 tests)."""
        if not points:
            return str(offset), []
        mid = len(points) // 2
        test, params = self.compare(plan.key, "<", points[mid], indexed=False)
        left, left_params = self.bucket_expr(plan, points[:mid], offset)
        right, right_params = self.bucket_expr(plan, points[mid + 1 :], offset + mid + 1)
        return f"CASE WHEN {test} THEN {left} ELSE {right} END", [*params, *left_params, *right_params]

    # --- spans: one query for those the index serves, one scan for the others ---------------------
    def span_queries(self, plan: TablePlan, spans: Sequence[Span]) -> list[SpanQuery]:
        """The spans (sorted, disjoint) as at most three queries, each with its bucket expression
        (global bucket = number of cuts at or below the key), WHERE clause and bucket map: the
        spans the index serves, those a scanning side may narrow (range_superset), the others."""
        served: list[int] = []
        narrowed: list[int] = []
        scanned: list[int] = []
        for i, span in enumerate(spans):
            if self.index_serves(plan, span.lo, span.hi):
                served.append(i)
            elif span.narrow and self.range_superset(plan, [(span.lo, span.hi)]) is not None:
                narrowed.append(i)
            else:
                scanned.append(i)
        queries = []
        for indexes, scan in ((served, False), (narrowed, True), (scanned, True)):
            if not indexes:
                continue
            query = SpanQuery(indexes)
            for i in indexes:
                query.add(i, spans[i])
            query.bucket_sql, query.bucket_params = self.bucket_expr(plan, query.cuts, 0)
            if scan:
                # One pass over the table; rows between the spans fall into gap buckets, skipped.
                first, last = spans[indexes[0]], spans[indexes[-1]]
                conditions = [self.range_condition(plan, first.lo, last.hi)]
                if indexes is narrowed:
                    superset = self.range_superset(plan, [(spans[i].lo, spans[i].hi) for i in indexes])
                    assert superset is not None  # each span has one
                    conditions.append(superset)
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
                parts = [self.range_condition(plan, lo, hi) for lo, hi in ranges]
                conditions = [(" OR ".join(f"({sql})" for sql, _ in parts), [p for _, ps in parts for p in ps])]
            query.where_sql, query.where_params = self.filter_clause(plan, conditions)
            queries.append(query)
        return queries


@dataclass
class SpanQuery:
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
