"""The pure SQL dialects, without a server: identifiers quoted so that no name can end its quotes
(or start a driver placeholder), every value bound at a placeholder and never written into the SQL,
composite keys compared as rows (or, on MySQL, in the expanded form its range optimizer uses), and
every statement carrying exactly as many placeholders as it binds values."""

from __future__ import annotations

import re
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tablesync.dialects.base import FETCH_BATCH, SqlDialect
from tablesync.dialects.mysql_sql import MysqlDialect
from tablesync.dialects.postgres_sql import PostgresDialect
from tablesync.dialects.sqlite_sql import PART_COLUMNS, SqliteDialect
from tablesync.filters import parse_filter, typed_filter
from tablesync.models import Column, Key, Kind, RowWrite, Span, SplitRequest, TablePlan

DIALECTS: dict[str, SqlDialect] = {
    "postgresql": PostgresDialect(),
    "mysql": MysqlDialect(mariadb=False),
    "mariadb": MysqlDialect(mariadb=True),
    "sqlite": SqliteDialect(),
}
HOSTILE_NAMES = ['a"b', "a`b", "a%sb", "a%b", "x' OR '1'='1", 'x"; DROP TABLE t; --', "", "sch.t", "ünï"]
HOSTILE_VALUE = "'; DROP TABLE t; --"


def column(name: str, kind: Kind, *, binary: bool = True, nullable: bool = False, native: str = "") -> Column:
    return Column(
        name=name,
        native_type=native or kind.value,
        kind=kind,
        nullable=nullable,
        binary_order=binary,
        charset="utf8mb4" if kind is Kind.TEXT else None,
    )


ID = column("id", Kind.INTEGER, native="int")
A = column("a", Kind.INTEGER, native="int")
B = column("b", Kind.TEXT, native="varchar(20)")
CODE = column("code", Kind.TEXT, binary=False, native="varchar(20)")  # a case-insensitive collation
V = column("v", Kind.TEXT, nullable=True, native="text")


def plan(*key: Column, columns: tuple[Column, ...] = (V,), table: str = "t", where: str | None = None) -> TablePlan:
    filtered = None
    if where is not None:
        kinds = {c.name: [c.kind] for c in [*key, *columns]}
        filtered = typed_filter(parse_filter(where), kinds)
    return TablePlan(table=table, key=list(key), columns=list(columns), where=filtered)


def placeholders(dialect: SqlDialect, sql: str) -> int:
    """The placeholders in the SQL. `%%` is a literal percent sign for the drivers with `%s`."""
    if dialect.placeholder == "%s":
        return sql.replace("%%", "").count("%s")
    return sql.count("?")


def assert_bound(dialect: SqlDialect, statement: tuple[str, list[Any]]) -> None:
    sql, params = statement
    assert placeholders(dialect, sql) == len(params), (sql, params)


def unquote(dialect: SqlDialect, quoted: str) -> str:
    """The name a quoted identifier stands for, checking that its quotes open and close once."""
    mark = "`" if isinstance(dialect, MysqlDialect) else '"'
    assert quoted[0] == quoted[-1] == mark
    inner = quoted[1:-1]
    # Inside, the quote character only ever comes doubled: no name can end the identifier early.
    assert re.fullmatch(f"(?:[^{mark}]|{mark}{mark})*", inner), quoted
    name = inner.replace(mark * 2, mark)
    if dialect.placeholder == "%s":
        # The drivers read % as the start of a placeholder: a name's % is always doubled.
        assert re.fullmatch("(?:[^%]|%%)*", name), quoted
        name = name.replace("%%", "%")
    return name


# --- quoting ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dialect", "name", "quoted"),
    [
        ("postgresql", 'a"b', '"a""b"'),
        ("postgresql", "a%sb", '"a%%sb"'),
        ("postgresql", "a`b", '"a`b"'),
        ("mysql", "a`b", "`a``b`"),
        ("mysql", "a%sb", "`a%%sb`"),
        ("mysql", 'a"b', '`a"b`'),
        ("sqlite", 'a"b', '"a""b"'),
        ("sqlite", "a%sb", '"a%sb"'),  # `?` is SQLite's placeholder: a % is only a character
        ("sqlite", "a`b", '"a`b"'),
    ],
)
def test_hostile_identifiers_are_quoted(dialect: str, name: str, quoted: str) -> None:
    assert DIALECTS[dialect].quote(name) == quoted


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
@given(name=st.text(min_size=0, max_size=30))
def test_every_name_quotes_to_itself(dialect: SqlDialect, name: str) -> None:
    assert unquote(dialect, dialect.quote(name)) == name


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_a_schema_qualified_table_quotes_each_part(dialect: SqlDialect) -> None:
    schema, table = dialect.table_ref('s"`%.t"`%').split(".", 1)
    assert unquote(dialect, schema) == 's"`%'
    assert unquote(dialect, table) == 't"`%'
    assert dialect.table_ref("plain") == dialect.quote("plain")


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_column_names_stay_inside_their_quotes(dialect: SqlDialect, name: str) -> None:
    hostile = column(name, Kind.INTEGER, native="int")
    p = plan(hostile, columns=(column(name + "2", Kind.TEXT, nullable=True),), table=name or "t")
    assert unquote(dialect, dialect.key_select(p)) == name
    sql, params = dialect.key_range_sql(p, last=False)
    assert_bound(dialect, (sql, params))
    # The only text of the name in the SQL is its quoted form.
    assert sql.count(dialect.quote(name)) >= 2  # the select list and the ORDER BY
    for action in ("insert", "update", "delete"):
        write = dialect.write_sql(p, action)
        assert dialect.quote(name) in write
        assert placeholders(dialect, write) == len(
            dialect.write_params(p, RowWrite(action=action, key=[1], values={name + "2": "x"}))
        )


# --- values are bound, never inlined ----------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_range_predicates_bind_their_bounds(dialect: SqlDialect) -> None:
    p = plan(B)
    sql, params = dialect.range_condition(p, [HOSTILE_VALUE], ["zzz"])
    assert HOSTILE_VALUE not in sql and "zzz" not in sql
    assert params == [HOSTILE_VALUE, "zzz"]
    assert_bound(dialect, (sql, params))
    order = dialect.key_order_expr(B)
    ph = dialect.placeholder
    assert sql == f"{order} >= {ph} AND {order} < {ph}"


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_an_unbounded_range_has_no_condition(dialect: SqlDialect) -> None:
    assert dialect.range_condition(plan(ID), None, None) == ("1 = 1", [])
    assert dialect.where(plan(ID), None, None) == ("", [])
    # A nullable key column keeps the NULLs out (null_keys lists them).
    nullable = column("id", Kind.INTEGER, nullable=True)
    assert dialect.where(plan(nullable), None, None) == (f" WHERE {dialect.quote('id')} IS NOT NULL", [])


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_filter_literals_are_bound(dialect: SqlDialect) -> None:
    p = plan(ID, where="v = 'x'' OR 1=1 --' AND id > 3")
    sql, params = dialect.where(p, [1], [9])
    assert "OR 1=1" not in sql and "3" not in sql
    assert "x' OR 1=1 --" in params and 3 in params
    assert_bound(dialect, (sql, params))


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_rows_by_key_bind_the_keys_in_batches(dialect: SqlDialect) -> None:
    keys: list[Key] = [[f"{HOSTILE_VALUE}{i}", i] for i in range(FETCH_BATCH + 3)]
    statements = dialect.rows_by_key_sql(plan(B, A), keys, lock=False)
    assert [len(params) for _, params in statements] == [2 * FETCH_BATCH, 6]
    for sql, params in statements:
        assert HOSTILE_VALUE not in sql
        assert_bound(dialect, (sql, params))
    assert dialect.rows_by_key_sql(plan(B, A), [], lock=False) == []


def test_only_a_locking_read_locks() -> None:
    pg = DIALECTS["postgresql"]
    [(read, _)] = pg.rows_by_key_sql(plan(ID), [[1]], lock=False)
    [(locked, _)] = pg.rows_by_key_sql(plan(ID), [[1]], lock=True)
    assert locked == read + " FOR UPDATE"
    # SQLite locks the whole database with BEGIN IMMEDIATE instead.
    sqlite = DIALECTS["sqlite"]
    assert sqlite.rows_by_key_sql(plan(ID), [[1]], lock=True) == sqlite.rows_by_key_sql(plan(ID), [[1]], lock=False)
    assert sqlite.begin_sql == "BEGIN IMMEDIATE"


# --- composite keys ---------------------------------------------------------------------------------


def test_postgres_compares_a_composite_key_as_a_row() -> None:
    pg = DIALECTS["postgresql"]
    assert pg.compare([A, B], ">=", [1, "x"]) == ('("a", "b") >= (%s, %s)', [1, "x"])
    assert pg.compare([A, B], "<", [2, "y"]) == ('("a", "b") < (%s, %s)', [2, "y"])


def test_sqlite_compares_a_composite_key_as_a_row_in_byte_order() -> None:
    sqlite = DIALECTS["sqlite"]
    assert sqlite.compare([A, B], ">=", [1, "x"]) == ('("a", "b" COLLATE BINARY) >= (?, ?)', [1, "x"])


def test_mysql_expands_a_composite_key_comparison_for_its_range_optimizer() -> None:
    my = DIALECTS["mysql"]
    assert my.compare([A, B], ">=", [1, "x"]) == (
        "`a` >= %s AND ((`a` > %s) OR (`a` = %s AND `b` >= %s))",
        [1, 1, 1, "x"],
    )
    assert my.compare([A, B], "<", [2, "y"]) == (
        "`a` <= %s AND ((`a` < %s) OR (`a` = %s AND `b` < %s))",
        [2, 2, 2, "y"],
    )
    # Not bounding an index range (a bucket test): the row form.
    assert my.compare([A, B], "<", [2, "y"], indexed=False) == ("(`a`, `b`) < (%s, %s)", [2, "y"])


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_leading_columns_fixed_in_a_range_are_matched_by_equality(dialect: SqlDialect) -> None:
    q, ph = dialect.quote, dialect.placeholder
    b = dialect.key_order_expr(B)
    assert dialect.range_condition(plan(A, B), [1, "a"], [1, "m"]) == (
        f"{q('a')} = {ph} AND {b} >= {ph} AND {b} < {ph}",
        [1, "a", "m"],
    )


def test_a_key_under_a_case_insensitive_collation_is_matched_byte_for_byte_too() -> None:
    pg, my = DIALECTS["postgresql"], DIALECTS["mysql"]
    # Its own equality, so that the index serves the lookup, and the exact comparison.
    assert pg.key_match(CODE) == ['"code" = %s', '"code" COLLATE "C" = %s']
    assert my.key_match(CODE) == ["`code` = %s", "CAST(`code` COLLATE utf8mb4_bin AS BINARY) = %s"]
    assert pg.key_match(B) == ['"b" = %s']
    # Fixed in a range, it is matched both ways too, its value bound for each.
    assert pg.range_condition(plan(CODE, A), ["x", 1], ["x", 5]) == (
        '"code" = %s AND "code" COLLATE "C" = %s AND "a" >= %s AND "a" < %s',
        ["x", "x", 1, 5],
    )
    p = plan(CODE, A)
    write = RowWrite(action="update", key=["x", 1], values={"v": "y"})
    exact = '"code" = %s AND "code" COLLATE "C" = %s AND "a" = %s'
    assert pg.write_sql(p, "update") == f'UPDATE "t" SET "v" = %s WHERE {exact}'
    assert pg.write_params(p, write) == ["y", "x", "x", 1]
    assert pg.write_params(p, RowWrite(action="delete", key=["x", 1])) == ["x", "x", 1]
    assert pg.write_params(p, RowWrite(action="insert", key=["x", 1], values={"v": "y"})) == ["x", 1, "y"]


def test_a_dry_run_listing_shows_the_names_themselves() -> None:
    pg = DIALECTS["postgresql"]
    p = plan(column("i%d", Kind.INTEGER), columns=(), table="we%rd")
    assert pg.write_sql(p, "delete") == 'DELETE FROM "we%%rd" WHERE "i%%d" = %s'
    assert pg.write_sql(p, "delete", ["7"]) == 'DELETE FROM "we%rd" WHERE "i%d" = 7'
    p = plan(column("i%d", Kind.INTEGER), columns=(column("v%s", Kind.TEXT),), table="we%rd")
    assert pg.write_sql(p, "update") == 'UPDATE "we%%rd" SET "v%%s" = %s WHERE "i%%d" = %s'
    assert pg.write_sql(p, "update", ["'y'", "7"]) == 'UPDATE "we%rd" SET "v%s" = \'y\' WHERE "i%d" = 7'
    assert pg.write_sql(p, "insert", ["7", "'y'"]) == 'INSERT INTO "we%rd" ("i%d", "v%s") VALUES (7, \'y\')'
    # SQLite's placeholder is `?`: its names never had a % doubled.
    assert DIALECTS["sqlite"].write_sql(p, "delete", ["7"]) == 'DELETE FROM "we%rd" WHERE "i%d" = 7'
    with pytest.raises(ValueError, match="unknown write action"):
        pg.write_sql(p, "merge")


# --- spans and buckets --------------------------------------------------------------------------------


SPANS = [Span(lo=None, hi=[10], points=[[5]]), Span(lo=[10], hi=[20], points=[[15]])]


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
@pytest.mark.parametrize("key", [(ID,), (A, B), (CODE,), (CODE, A)], ids=["int", "composite", "collated", "mixed"])
def test_every_span_statement_binds_as_many_values_as_it_has_placeholders(
    dialect: SqlDialect, key: tuple[Column, ...]
) -> None:
    def k(i: int) -> Key:
        return [(c.kind is Kind.TEXT and f"k{i:03d}") or i for c in key]

    spans = [Span(lo=None, hi=k(10), points=[k(5)]), Span(lo=k(12), hi=k(20), points=[k(15), k(17)])]
    p = plan(*key, where="v <> 'zz'")
    requests = [SplitRequest(lo=s.lo, hi=s.hi, step=3) for s in spans]
    queries = dialect.span_queries(p, spans)
    assert sorted(i for q in queries for i in q.indexes) == [0, 1]
    for query in queries:
        assert_bound(dialect, (query.bucket_sql, query.bucket_params))
        assert_bound(dialect, (query.where_sql, query.where_params))
        assert_bound(dialect, dialect.bucket_checksums_sql(p, query))
        assert_bound(dialect, dialect.row_hashes_sql(p, query))
        assert_bound(dialect, dialect.split_points_sql(p, query, requests))
    for reverse in (False, True):
        assert_bound(dialect, dialect.chunk_end_sql(p, k(3), 100, reverse))
        assert_bound(dialect, dialect.chunk_marks_sql(p, k(3), 100, 4, reverse))
    for last in (False, True):
        assert_bound(dialect, dialect.key_range_sql(p, last))
    assert_bound(dialect, dialect.null_keys_sql(p))


@pytest.mark.parametrize("dialect", ["mysql", "sqlite"])
def test_a_bucket_is_found_by_a_binary_search_over_the_cuts(dialect: str) -> None:
    d = DIALECTS[dialect]
    [query] = d.span_queries(plan(ID), SPANS)
    assert query.cuts == [[5], [10], [15], [20]]
    assert query.bucket_of == {0: [0, 1], 1: [2, 3]}
    # The middle cut first, then each half: four cuts, five buckets, one parameter per test.
    assert query.bucket_params == [15, 10, 5, 20]
    q, ph = d.key_order_expr(ID), d.placeholder
    assert query.bucket_sql == (
        f"CASE WHEN {q} < {ph} THEN CASE WHEN {q} < {ph} THEN CASE WHEN {q} < {ph} THEN 0 ELSE 1 END ELSE 2 END "
        f"ELSE CASE WHEN {q} < {ph} THEN 3 ELSE 4 END END"
    )
    # Adjacent spans merge into one range: below the last cut.
    assert query.where_sql == f" WHERE (({q} < {ph}))" and query.where_params == [20]
    sql, params = d.bucket_checksums_sql(plan(ID), query)
    assert sql.startswith(f"SELECT {query.bucket_sql}, COUNT(*), {d.sum_expr(d.row_hash_expr(plan(ID)))} FROM ")
    assert sql.endswith(" GROUP BY 1") and params == [15, 10, 5, 20, 20]


def test_postgres_finds_a_bucket_with_width_bucket_over_one_bound_array() -> None:
    pg = DIALECTS["postgresql"]
    [query] = pg.span_queries(plan(ID), SPANS)
    assert query.bucket_sql == '(width_bucket("id", %s::bigint[]) + 0)'
    assert query.bucket_params == [[5, 10, 15, 20]]
    # A composite key has no array type: the CASE tree, comparing rows.
    [composite] = pg.span_queries(plan(A, B), [Span(lo=None, hi=[2, "b"], points=[[1, "a"]])])
    row = '("a", "b") < (%s, %s)'
    assert composite.bucket_sql == f"CASE WHEN {row} THEN CASE WHEN {row} THEN 0 ELSE 1 END ELSE 2 END"
    assert composite.bucket_params == [2, "b", 1, "a"]


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_spans_the_index_cannot_serve_are_one_scan_that_skips_the_gaps(dialect: SqlDialect) -> None:
    p = plan(CODE)
    spans = [Span(lo=["a"], hi=["c"]), Span(lo=["m"], hi=["p"])]
    [query] = dialect.span_queries(p, spans)  # not served: a scan, the gap [c, m) excluded
    assert query.cuts == [["a"], ["c"], ["m"], ["p"]] and query.gaps
    assert query.bucket_of == {0: [1], 1: [3]}
    sql, params = query.where_sql, query.where_params
    assert sql.endswith(f"({query.bucket_sql} IN ({dialect.placeholder}, {dialect.placeholder}))")
    assert params[-2:] == [1, 3]
    assert_bound(dialect, (sql, params))


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_spans_must_be_sorted_and_disjoint(dialect: SqlDialect) -> None:
    with pytest.raises(ValueError, match="sorted and disjoint"):
        dialect.span_queries(plan(ID), [Span(lo=[10], hi=[20]), Span(lo=[5], hi=[8])])
    with pytest.raises(ValueError, match="sorted and disjoint"):
        dialect.span_queries(plan(ID), [Span(lo=[10], hi=None), Span(lo=[20], hi=[30])])


@pytest.mark.parametrize("dialect", DIALECTS.values(), ids=DIALECTS.keys())
def test_chunk_marks_number_the_rows_of_one_limited_scan(dialect: SqlDialect) -> None:
    sql, params = dialect.chunk_marks_sql(plan(ID), [7], 100, 4, reverse=False)
    q, ph = dialect.key_order_expr(ID), dialect.placeholder
    assert params == [7]
    assert f"WHERE ({q} >= {ph}) ORDER BY {q} LIMIT 101" in sql  # the chunk and its far end
    assert dialect.mod("ts_rn - 1", "25") in sql and "ts_rn = 101" in sql
    sql, params = dialect.chunk_marks_sql(plan(ID), [7], 100, 4, reverse=True)
    assert f"WHERE ({q} < {ph}) ORDER BY {q} DESC LIMIT 100" in sql and params == [7]
    end, params = dialect.chunk_end_sql(plan(ID), None, 100, reverse=False)
    assert end.endswith(f"ORDER BY {q} LIMIT 1 OFFSET 100") and params == []


def test_split_points_give_each_span_its_own_step() -> None:
    pg = DIALECTS["postgresql"]
    requests = [SplitRequest(lo=None, hi=[10], step=3), SplitRequest(lo=[10], hi=[20], step=7)]
    [query] = pg.span_queries(plan(ID), [Span(lo=r.lo, hi=r.hi) for r in requests])
    sql, params = pg.split_points_sql(plan(ID), query, requests)
    assert "CASE ts_b WHEN 0 THEN 3 WHEN 1 THEN 7 END" in sql
    assert params == [[10, 20], 20]


# --- row hashes and canonical texts ---------------------------------------------------------------------


def test_sqlite_hashes_a_wide_row_in_parts() -> None:
    sqlite = DIALECTS["sqlite"]
    narrow = plan(ID, columns=tuple(column(f"c{i}", Kind.TEXT) for i in range(3)))
    assert sqlite.row_hash_expr(narrow) == 'ts_row_hash(\'integer,text,text,text\', "id", "c0", "c1", "c2")'
    wide = plan(ID, columns=tuple(column(f"c{i}", Kind.INTEGER) for i in range(PART_COLUMNS + 5)))
    expr = sqlite.row_hash_expr(wide)
    assert expr.startswith("ts_row_parts_hash(ts_row_part('integer,") and expr.count("ts_row_part(") == 2


@pytest.mark.parametrize("dialect", ["postgresql", "mysql"])
def test_the_row_hash_marks_nulls_only_where_a_column_can_hold_one(dialect: str) -> None:
    d = DIALECTS[dialect]
    expr = d.row_hash_expr(plan(ID, columns=(V, column("w", Kind.INTEGER))))
    assert expr.count("COALESCE(") == 1  # v is nullable; id and w are NOT NULL integers
    assert d.field_expr(V) in expr and d.field_expr(ID) in expr


def test_mysql_and_mariadb_differ_only_where_the_server_does() -> None:
    mysql, mariadb = DIALECTS["mysql"], DIALECTS["mariadb"]
    assert mysql.statement_timeout_sql(2.5) == "SET SESSION max_execution_time = 2500"
    assert mariadb.statement_timeout_sql(2.5) == "SET SESSION max_statement_time = 2.5"
    assert mysql.json_columns_sql("s.t") is None
    assert mariadb.json_columns_sql("s.t") is not None and mariadb.json_columns_sql("s.t")[1] == ["s", "t"]
    clauses = [("json_valid(`doc`)",), (" json_valid(`a``b`) ",), ("`n` > 0",), ("json_valid(`x`) AND 1",)]
    assert mariadb.json_column_names(clauses) == {"doc", "a`b"}
    assert mysql.canonical_expr(B) == mariadb.canonical_expr(B)


def test_type_normalisation_from_the_catalogues() -> None:
    c_db, icu_db = PostgresDialect("C.UTF-8"), PostgresDialect("en_US.UTF-8")
    row = (1, "name", "text", "text", True, "default", None)
    assert c_db.column_of(row).binary_order and not icu_db.column_of(row).binary_order
    assert c_db.column_of((1, "n", "dom", "dom", False, None, "int8")).kind is Kind.INTEGER  # a domain
    assert not c_db.column_of((1, "ci", "citext", "citext", True, "C", None)).binary_order
    my = DIALECTS["mysql"]
    flag = my.column_of(("f", "tinyint(1)", "tinyint", "YES", None, None), set())
    assert flag.kind is Kind.BOOLEAN and flag.nullable
    text = my.column_of(("t", "varchar(9)", "varchar", "NO", "utf8mb4", "utf8mb4_general_ci"), set())
    assert text.kind is Kind.TEXT and not text.binary_order and not text.nullable
    assert my.column_of(("t", "varchar(9)", "varchar", "NO", "utf8mb4", "utf8mb4_nopad_bin"), set()).binary_order
    assert my.column_of(("doc", "longtext", "longtext", "YES", "utf8mb4", "utf8mb4_bin"), {"doc"}).kind is Kind.JSON
    schema = SqliteDialect().schema_of("t", [("id", "INTEGER", 0, 1), ("u", "UUID", 0, 0), ("x", "", 1, 0)])
    assert schema.primary_key == ["id"]
    assert [(c.kind, c.nullable, c.binary_order) for c in schema.columns] == [
        (Kind.INTEGER, False, True),  # the rowid is never NULL
        (Kind.UUID, True, False),
        (None, False, True),
    ]


def test_pure_conversions_of_values() -> None:
    pg, my, sqlite = DIALECTS["postgresql"], DIALECTS["mysql"], DIALECTS["sqlite"]
    padded = Column(name="c", native_type="character(4)", kind=Kind.TEXT, base_type="bpchar")
    assert pg.key_value_out(padded, "ab  ") == "ab"
    assert my.fetched_text(B, "é".encode()) == "é"
    assert pg.write_value(column("f", Kind.FLOAT), "3ff0000000000000") == 1.0
    instant = "2024-01-02 03:04:05.000000"
    assert pg.write_value(column("z", Kind.TIMESTAMPTZ), instant) == instant + "+00"
    assert pg.write_value(column("z", Kind.TIMESTAMPTZ), "0044-03-15 00:00:00.000000 BC") == (
        "0044-03-15 00:00:00.000000+00 BC"
    )
    assert sqlite.key_value_out(column("u", Kind.UUID), "ABCDEF00-0000-0000-0000-000000000000") == (
        "abcdef00-0000-0000-0000-000000000000"
    )
    assert pg.literal("it's") == "'it''s'" and pg.literal(None) == "NULL" and pg.literal(b"\x01") == "X'01'"


def test_postgres_buckets_short_text_keys_as_fixed_width_names() -> None:
    """width_bucket over text[] walks the array from its start at each step (variable width); over
    name[] it is a binary search. A key of 64 bytes or more would be cut by `name`: it takes the
    text[] search, and so do all keys when a cut is that long."""
    pg = DIALECTS["postgresql"]
    text_key = column("code", Kind.TEXT, native="varchar(20)").model_copy(update={"base_type": "varchar"})
    [query] = pg.span_queries(plan(text_key), [Span(lo=None, hi=None, points=[["b"], ["é" * 20]])])
    assert query.bucket_sql.startswith('(CASE WHEN octet_length("code") < 64 THEN width_bucket(("code")::name')
    assert query.bucket_params == [["b", "é" * 20], ["b", "é" * 20]]
    long_cut = "x" * 64
    [query] = pg.span_queries(plan(text_key), [Span(lo=None, hi=None, points=[["b"], [long_cut]])])
    assert "::name" not in query.bucket_sql


def test_mariadb_narrows_a_scanned_range_with_like_on_its_bounds_common_prefix() -> None:
    """Only for spans marked narrow; the prefix's LIKE wildcards and the escape are escaped; the
    superset is parenthesized as a whole (AND binds tighter than OR)."""
    maria = DIALECTS["mariadb"]
    code = CODE.model_copy(update={"collation": "utf8mb4_general_ci"})
    spans = [Span(lo=["a%_!1"], hi=["a%_!3"], narrow=True), Span(lo=["zz5"], hi=["zz7x"], narrow=True)]
    [query] = maria.span_queries(plan(code), spans)
    assert ") AND (((`code` LIKE %s ESCAPE '!') OR (`code` LIKE" in query.where_sql
    assert [p for p in query.where_params if isinstance(p, str) and p.endswith("%")] == [
        "a!%!_!!1%",
        "a!%!_!!2%",
        "a!%!_!!3%",
        "zz5%",
        "zz6%",
        "zz7%",
    ]
    assert_bound(maria, (query.where_sql, query.where_params))
    # Not marked narrow, without a common prefix, open at an end, or under a collation whose LIKE
    # may not match character by character: no superset.
    for unnarrowed in (
        [Span(lo=["a1"], hi=["a3"])],
        [Span(lo=["a1"], hi=["b3"], narrow=True)],
        [Span(lo=None, hi=["a3"], narrow=True)],
    ):
        [query] = maria.span_queries(plan(code), unnarrowed)
        assert "LIKE" not in query.where_sql
    czech = CODE.model_copy(update={"collation": "utf8mb4_czech_ci"})
    [query] = maria.span_queries(plan(czech), spans)
    assert "LIKE" not in query.where_sql


@given(st.lists(st.text(alphabet="aAb%_!\u00e9\U0001f600 ", max_size=5), min_size=3, max_size=3))
def test_every_string_between_two_bounds_begins_with_a_covering_prefix(words: list[str]) -> None:
    from tablesync.dialects.mysql_sql import _covering_prefixes

    low, middle, high = sorted(words)
    prefixes = _covering_prefixes(low, high)
    assert not prefixes or any(middle.startswith(p) for p in prefixes)
