"""The statements every dialect shares, assembled from the dialect's expressions and the key
predicates: chunk boundaries, split points, checksums, row hashes, rows by key, and repair's writes.
A `SqlDialect` is pure: each statement is SQL text with placeholders and the values bound at them
(never inlined), built without a connection; a connector (connector.py) executes them."""

from __future__ import annotations

import abc
from collections.abc import Sequence
from typing import Any

from ..models import Key, RowWrite, SplitRequest, TablePlan
from .predicates import KeyPredicates, SpanQuery

FETCH_BATCH = 500  # keys per query of rows by key

Statement = tuple[str, list[Any]]  # SQL with placeholders, and the values bound at them


class SqlDialect(KeyPredicates):
    """One database's SQL: what the connector operations run, as (sql, params)."""

    begin_sql = "BEGIN"
    lock_clause = " FOR UPDATE"  # locks the rows read, until the transaction ends

    @abc.abstractmethod
    def table_names_sql(self, schema: str | None) -> Statement:
        """Names of the tables and views in a schema (None: the connection's default)."""

    def estimated_rows_sql(self, table: str) -> Statement | None:
        """A cheap estimate of the table's row count (one row, one column); None: no estimate."""
        del table
        return None

    # --- reads -------------------------------------------------------------------------------
    def key_range_sql(self, plan: TablePlan, last: bool) -> Statement:
        """The first (or last) key the filter admits."""
        where, params = self.where(plan, None, None)
        base = f"SELECT {self.key_select(plan)} FROM {self.table_ref(plan.table)}{where}"
        return f"{base} ORDER BY {self.order_by(plan, last)} LIMIT 1", params

    def null_keys_sql(self, plan: TablePlan) -> Statement:
        """The keys of the rows with a NULL in a key column, that the filter admits."""
        nulls = " OR ".join(f"{self.quote(c.name)} IS NULL" for c in plan.key)
        # The --where filter applies; the NOT NULL condition filter_clause adds does not.
        bare = plan.model_copy(update={"key": [c.model_copy(update={"nullable": False}) for c in plan.key]})
        where, params = self.filter_clause(bare, [(nulls, [])])
        return f"SELECT {self.key_select(plan)} FROM {self.table_ref(plan.table)}{where}", params

    def key_nulls_sql(self, plan: TablePlan) -> Statement:
        """One row if any key column holds a NULL."""
        nulls = " OR ".join(f"{self.quote(c.name)} IS NULL" for c in plan.key)
        return f"SELECT 1 FROM {self.table_ref(plan.table)} WHERE {nulls} LIMIT 1", []

    def key_duplicates_sql(self, plan: TablePlan) -> Statement:
        """A key that more than one row holds, if any."""
        # Grouped by the exact key values: a case-insensitive collation would group 'a' with 'A'.
        exact = ", ".join(self.key_order_expr(c) for c in plan.key)
        values = ", ".join(self.group_key_expr(c) for c in plan.key)
        table = self.table_ref(plan.table)
        return f"SELECT {values} FROM {table} GROUP BY {exact} HAVING COUNT(*) > 1 LIMIT 1", []

    def chunk_end_sql(self, plan: TablePlan, bound: Key | None, size: int, reverse: bool) -> Statement:
        """The chunk's far end only: an index-only seek of `size` rows from the cursor `bound`
        (inclusive forward, exclusive in reverse)."""
        if reverse:
            where, params = self.where(plan, None, bound)
            offset, order = int(size) - 1, self.order_by(plan, True)
        else:
            where, params = self.where(plan, bound, None)
            offset, order = int(size), self.order_by(plan)
        table = self.table_ref(plan.table)
        return f"SELECT {self.key_select(plan)} FROM {table}{where} ORDER BY {order} LIMIT 1 OFFSET {offset}", params

    def sample_keys_sql(self, plan: TablePlan, fraction: float, limit: int) -> Statement:
        """The keys of a random sample of about `fraction` of the filter's rows (at most `limit`),
        in no order: one pass over the table, no sort."""
        where, params = self.filter_clause(plan, [(self.random_below(fraction), [])])
        sql = f"SELECT {self.key_select(plan)} FROM {self.sampled_table(plan, fraction)}{where} LIMIT {int(limit)}"
        return sql, params

    def sampled_table(self, plan: TablePlan, fraction: float) -> str:
        del fraction
        return self.table_ref(plan.table)

    def random_below(self, fraction: float) -> str:
        """A condition true for about `fraction` of the rows, at random."""
        return f"RAND() < {float(fraction)!r}"

    def chunk_marks_sql(self, plan: TablePlan, bound: Key | None, size: int, parts: int, reverse: bool) -> Statement:
        """(key, row number) of the keys that cut the chunk of `size` rows from `bound` into
        `parts` buckets, and of its far end (row size + 1 forward, row size in reverse), in
        row-number order: one index-ordered scan of the chunk's keys."""
        step = max(1, -(-size // max(1, parts)))
        keys = self.key_select(plan)
        table = self.table_ref(plan.table)
        if reverse:
            where, params = self.where(plan, None, bound)
            inner = f"SELECT {keys} FROM {table}{where} ORDER BY {self.order_by(plan, True)} LIMIT {int(size)}"
        else:
            where, params = self.where(plan, bound, None)
            inner = f"SELECT {keys} FROM {table}{where} ORDER BY {self.order_by(plan)} LIMIT {int(size) + 1}"
        # The window runs over the LIMITed rows only (MariaDB materialises a window's whole input).
        numbered = (
            f"SELECT {keys}, ROW_NUMBER() OVER (ORDER BY {self.order_by(plan, reverse)}) AS ts_rn FROM ({inner}) ts_c"
        )
        if reverse:
            picked = f"{self.mod('ts_rn', str(step))} = 0 OR ts_rn = {int(size)}"
        else:
            picked = f"{self.mod('ts_rn - 1', str(step))} = 0 AND ts_rn > 1 OR ts_rn = {int(size) + 1}"
        return f"SELECT {keys}, ts_rn FROM ({numbered}) ts_n WHERE {picked} ORDER BY ts_rn", params

    def split_points_sql(self, plan: TablePlan, query: SpanQuery, requests: Sequence[SplitRequest]) -> Statement:
        """(key, global bucket) of every `step`-th row of each request's span in the query (the
        first row excluded), ordered by bucket and key."""
        keys = self.key_select(plan)
        steps = " ".join(f"WHEN {query.bucket_of[i][0]} THEN {max(1, int(requests[i].step))}" for i in query.indexes)
        inner = f"SELECT {keys}, {query.bucket_sql} AS ts_b FROM {self.table_ref(plan.table)}{query.where_sql}"
        numbered = (
            f"SELECT {keys}, ts_b, ROW_NUMBER() OVER (PARTITION BY ts_b ORDER BY {self.order_by(plan)}) AS ts_rn "
            f"FROM ({inner}) ts_i"
        )
        sql = (
            f"SELECT {keys}, ts_b FROM ({numbered}) ts_s "
            f"WHERE ts_rn > 1 AND {self.mod('ts_rn - 1', f'CASE ts_b {steps} END')} = 0 ORDER BY ts_b, ts_rn"
        )
        return sql, [*query.bucket_params, *query.where_params]

    def bucket_checksums_sql(self, plan: TablePlan, query: SpanQuery) -> Statement:
        """(global bucket, row count, exact sum of row hashes) of the query's buckets."""
        sql = (
            f"SELECT {query.bucket_sql}, COUNT(*), {self.sum_expr(self.row_hash_expr(plan))} "
            f"FROM {self.table_ref(plan.table)}{query.where_sql} GROUP BY 1"
        )
        return sql, [*query.bucket_params, *query.where_params]

    def row_hashes_sql(self, plan: TablePlan, query: SpanQuery) -> Statement:
        """(key..., row hash) of every row of the query's spans."""
        sql = (
            f"SELECT {self.key_select(plan)}, {self.row_hash_expr(plan)} "
            f"FROM {self.table_ref(plan.table)}{query.where_sql}"
        )
        return sql, list(query.where_params)

    def rows_by_key_sql(self, plan: TablePlan, keys: Sequence[Key], *, lock: bool) -> list[Statement]:
        """(key..., canonical text of every column) of the rows holding the keys, FETCH_BATCH keys
        a query, and maybe of rows whose key equals one under its collation (not byte for byte):
        the caller keeps the exact matches. `lock`: the rows are locked until the transaction ends."""
        select = ", ".join(self.canonical_expr(c) for c in [*plan.key, *plan.columns])
        statements = []
        key_list = list(keys)
        for start in range(0, len(key_list), FETCH_BATCH):
            cond, params = self.key_condition(plan, key_list[start : start + FETCH_BATCH])
            sql = f"SELECT {self.key_select(plan)}, {select} FROM {self.table_ref(plan.table)} WHERE {cond}"
            statements.append((sql + self.lock_clause if lock else sql, params))
        return statements

    # --- writes (repair) -----------------------------------------------------------------------
    def write_sql(self, plan: TablePlan, action: str, marks: Sequence[str] | None = None) -> str:
        """The SQL of a write. Its values stand at the placeholders, in write_params' order; with
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
        matches = [clause for c in plan.key for clause in self.key_match(c, "\0")]
        if listing and self.placeholder == "%s":
            matches = [clause.replace("%%", "%") for clause in matches]
        cond = " AND ".join(clause.replace("\0", mark()) for clause in matches)
        if action == "update":
            return f"UPDATE {table} SET {sets} WHERE {cond}"
        if action == "delete":
            return f"DELETE FROM {table} WHERE {cond}"
        raise ValueError(f"unknown write action {action!r}")

    def write_params(self, plan: TablePlan, write: RowWrite) -> list[Any]:
        """The parameters of one write, in the order of write_sql's placeholders."""
        key = [self.key_value_in(c, v) for c, v in zip(plan.key, write.key, strict=True)]
        values = write.values or {}
        texts = [self.write_value(c, values.get(c.name)) for c in plan.columns]
        if write.action == "insert":
            return key + texts
        matched = [v for c, v in zip(plan.key, key, strict=True) for _ in self.key_match(c)]
        return matched if write.action == "delete" else texts + matched
