"""Connector operations over several spans at once (the engine's batched rounds) answer exactly what
one operation per span would, on every engine, whether the key's index serves the spans or the side
has to scan for them (a text key in a case-insensitive MariaDB collation), with gaps between spans,
adjacent spans and unbounded ends.

And ranges whose leading key column is fixed are matched through the column's own equality (so an
index serves them under any collation) without admitting values that are only equal under the
collation ('acme' vs 'ACME' vs 'acme ')."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from tablesync.connectors import Connector, open_connector
from tablesync.models import Span, SplitRequest, TablePlan

pytestmark = pytest.mark.integration

INT_DDL = {
    "pg": "id integer PRIMARY KEY, v text",
    "mysql": "id int PRIMARY KEY, v text",
    "sqlite": "id INTEGER PRIMARY KEY, v TEXT",
}
TEXT_DDL = {
    "pg": 'k varchar(20) COLLATE "C" PRIMARY KEY, v text',
    # The table default, utf8mb4_general_ci: case-insensitive, PAD SPACE; its index cannot serve
    # byte-order ranges, so these spans are found by a scan.
    "mysql": "k varchar(20) PRIMARY KEY, v text",
    "sqlite": "k TEXT PRIMARY KEY, v TEXT",
}
COMPOSITE_DDL = {
    "pg": 'tenant varchar(20) COLLATE "C", n integer, v text, PRIMARY KEY (tenant, n)',
    "mysql": "tenant varchar(20), n int, v text, PRIMARY KEY (tenant, n)",
    "sqlite": "tenant TEXT, n INTEGER, v TEXT, PRIMARY KEY (tenant, n)",
}
# Equal to each other under MariaDB's utf8mb4_general_ci (case and trailing spaces), different bytes.
TENANTS = ["ACME", "Acme", "Beta", "acme", "acme ", "acme  ", "beta"]  # in byte order


def _plan(conn: Connector, table: str) -> TablePlan:
    schema = conn.describe(table)
    key = [schema.column(name) for name in schema.primary_key]
    assert all(c is not None for c in key)
    columns = [c for c in schema.columns if c.name not in schema.primary_key]
    return TablePlan(table=table, key=[c for c in key if c is not None], columns=columns)


@pytest.fixture
def connector(dbs: Any, request: pytest.FixtureRequest) -> Iterator[tuple[Any, Connector]]:
    db = dbs[request.param]
    conn = open_connector(db.url)
    yield db, conn
    conn.close()


def _check_spans(conn: Connector, plan: TablePlan, spans: list[Span]) -> None:
    together = conn.bucket_checksums(plan, spans)
    one_by_one = [conn.bucket_checksums(plan, [span])[0] for span in spans]
    assert together == one_by_one
    assert [len(sums) for sums in together] == [len(s.points) + 1 for s in spans]
    listed = sorted((*k, h) for k, h in conn.row_hashes(plan, spans))
    single = sorted((*k, h) for span in spans for k, h in conn.row_hashes(plan, [span]))
    assert listed == single
    assert len(listed) == sum(c.count for sums in together for c in sums)
    # Every span holds rows, so a mix-up between spans could not go unnoticed.
    assert all(sum(c.count for c in sums) > 0 for sums in together)


@pytest.mark.parametrize("connector", ["pg", "mysql", "sqlite"], indirect=True)
def test_integer_spans_with_gaps_adjacency_and_open_ends(connector: tuple[Any, Connector], table_name: str) -> None:
    db, conn = connector
    db.create(table_name, INT_DDL[db.dialect])
    db.insert(table_name, ["id", "v"], [(i, f"value {i}") for i in range(1, 1001)])
    plan = _plan(conn, table_name)
    spans = [
        Span(lo=None, hi=[100], points=[[10], [50], [51]]),
        Span(lo=[100], hi=[200]),  # adjacent to the first
        Span(lo=[500], hi=[600], points=[[550]]),  # after a gap
        Span(lo=[601], hi=[602]),
        Span(lo=[900], hi=None, points=[[950]]),
    ]
    _check_spans(conn, plan, spans)
    assert conn.bucket_checksums(plan, spans)[0][0].count == 9  # ids 1..9
    cuts = conn.split_points(
        plan, [SplitRequest(lo=None, hi=[100], step=25), SplitRequest(lo=[500], hi=None, step=200)]
    )
    assert cuts == [[[26], [51], [76]], [[700], [900]]]


@pytest.mark.parametrize("connector", ["pg", "mysql", "sqlite"], indirect=True)
def test_text_spans_where_the_index_cannot_serve_byte_order(connector: tuple[Any, Connector], table_name: str) -> None:
    db, conn = connector
    db.create(table_name, TEXT_DDL[db.dialect])
    # Upper and lower case get different numbers: the case-insensitive key holds no case twins.
    keys = [f"{p}{i:03d}" for p in ("A", "B", "_") for i in range(100)]
    keys += [f"{p}{i:03d}" for p in ("a", "b") for i in range(100, 200)]
    db.insert(table_name, ["k", "v"], [(k, f"v {k}") for k in keys])
    plan = _plan(conn, table_name)
    assert conn.index_serves(plan, ["B"], ["a"]) is (db.dialect != "mysql")
    # Byte order: 'A...' < 'B...' < '_...' < 'a...' < 'b...'; case-insensitively '_' sorts elsewhere.
    spans = [
        Span(lo=None, hi=["A050"], points=[["A010"]]),
        Span(lo=["B000"], hi=["B100"]),
        Span(lo=["_020"], hi=["a110"], points=[["_050"], ["a"]]),
        Span(lo=["b190"], hi=None),
    ]
    _check_spans(conn, plan, spans)
    counts = [sum(c.count for c in sums) for sums in conn.bucket_checksums(plan, spans)]
    assert counts == [50, 100, 90, 10]
    cuts = conn.split_points(plan, [SplitRequest(lo=["_000"], hi=["a150"], step=60)])
    assert cuts == [[["_060"], ["a120"]]]


@pytest.mark.parametrize("connector", ["pg", "mysql", "sqlite"], indirect=True)
def test_fixed_leading_column_matches_exact_bytes_only(connector: tuple[Any, Connector], table_name: str) -> None:
    db, conn = connector
    db.create(table_name, COMPOSITE_DDL[db.dialect])
    rows = [(t, n, f"{t}/{n}") for i, t in enumerate(TENANTS) for n in range(i * 100, i * 100 + 50)]
    db.insert(table_name, ["tenant", "n", "v"], rows)
    plan = _plan(conn, table_name)
    # Every span lies within one tenant: its first column is fixed, an index (equality) range.
    spans = [
        Span(lo=[t, i * 100 + 10], hi=[t, i * 100 + 40], points=[[t, i * 100 + 20]]) for i, t in enumerate(TENANTS)
    ]
    assert all(conn.index_serves(plan, s.lo, s.hi) for s in spans)
    _check_spans(conn, plan, spans)
    for (tenant, n), _ in conn.row_hashes(plan, spans):
        assert TENANTS.index(tenant) == n // 100, "a row of another tenant that the collation calls equal"
    assert [sum(c.count for c in sums) for sums in conn.bucket_checksums(plan, spans)] == [30] * len(TENANTS)


def test_spans_out_of_order_are_refused(dbs: Any, table_name: str) -> None:
    db = dbs["sqlite"]
    db.create(table_name, INT_DDL["sqlite"])
    conn = open_connector(db.url)
    try:
        plan = _plan(conn, table_name)
        with pytest.raises(ValueError, match="sorted and disjoint"):
            conn.bucket_checksums(plan, [Span(lo=[5], hi=[9]), Span(lo=[1], hi=[3])])
        with pytest.raises(ValueError, match="sorted and disjoint"):
            conn.row_hashes(plan, [Span(lo=[1], hi=[9]), Span(lo=[5], hi=[12])])
    finally:
        conn.close()


@pytest.mark.parametrize("connector", ["pg", "mysql", "sqlite"], indirect=True)
def test_list_tables_matches_glob_patterns_from_the_catalogue(
    connector: tuple[Any, Connector], table_name: str
) -> None:
    db, conn = connector
    names = [f"{table_name}_orders", f"{table_name}_order_lines", f"{table_name}_x%y", f"{table_name}_Z"]
    for name in names:
        db.create(name, INT_DDL[db.dialect])
    assert conn.list_tables(f"{table_name}_order*") == sorted(names[:2])
    assert conn.list_tables(f"{table_name}_?%?") == [names[2]]  # % is no SQL wildcard here
    assert conn.list_tables(f"{table_name}_z") == []  # case matters
    assert conn.list_tables(f"{table_name}_*") == sorted(names)
    if db.dialect == "pg":
        assert conn.list_tables(f"public.{table_name}_Z") == [f"public.{table_name}_Z"]
