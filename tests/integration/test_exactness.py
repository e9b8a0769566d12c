"""Regression tests for the exactness rules of docs/normalization.md, each class on the real
servers: values one engine cannot hold (BC dates, infinity), canonical keys (char(n), upper-case
UUIDs, citext), filters that mean the same everywhere, MariaDB ZEROFILL and JSON, targets without
a primary key, columns only a target has, deep JSON, wide SQLite tables and SQLite values their
declared type cannot parse. Each test names the wrong answer it guards against."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import PG_URL
from test_diff import SMALL, Diff, assert_clean_error, diff_json, found, run_cli
from watchdog import watchdog

pytestmark = pytest.mark.integration

ONE_ROW_CHUNKS = ("--chunk-size", "3", "--bisection-threshold", "2", "--bisection-factor", "2")


def make(db: Any, table: str, ddl: str, columns: list[str], rows: list[tuple[Any, ...]]) -> None:
    db.create(table, ddl)
    db.insert(table, columns, rows)


def only_target(result: dict[str, Any]) -> Diff:
    (target,) = result["targets"]
    return found(target)


# --- 1. dates and timestamps PostgreSQL holds and others cannot -------------------------------


PG_TEMPORAL = "id int PRIMARY KEY, d date, ts timestamp, tz timestamptz"


SQLITE_TEMPORAL = "id INTEGER PRIMARY KEY, d DATE, ts TIMESTAMP, tz TIMESTAMPTZ"


def test_bc_dates_differ_from_their_ad_twins(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A BC date/timestamp equalled its AD twin (to_char printed both as 0044-03-15)."""
    cols = ["id", "d", "ts", "tz"]
    bc = ("0044-03-15 BC", "0044-03-15 12:00:00 BC", "0044-03-15 12:00:00+00 BC")
    ad = ("0044-03-15", "0044-03-15 12:00:00", "0044-03-15 12:00:00+00")
    make(dbs.pg, table_name, PG_TEMPORAL, cols, [(1, *bc), (2, *ad), (3, *bc)])
    make(dbs.sqlite, table_name, SQLITE_TEMPORAL, cols, [(1, *ad), (2, *bc), (3, *bc)])
    code, result = diff_json(capsys, dbs.pg.url, dbs.sqlite.url, table_name, *ONE_ROW_CHUNKS)
    assert code == 1
    assert only_target(result) == Diff(set(), set(), {(1,), (2,)})


@pytest.mark.parametrize("value", ["infinity", "-infinity"])
def test_infinity_differs_from_null_and_from_mariadb(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    """infinity hashed like NULL (to_char gives NULL for it): a PostgreSQL infinity equalled a
    MariaDB NULL. MariaDB cannot hold infinity: it must still differ from NULL."""
    cols = ["id", "d", "ts", "tz"]
    make(dbs.pg, table_name, PG_TEMPORAL, cols, [(1, value, value, value), (2, None, None, None)])
    make(
        dbs.mysql,
        table_name,
        "id int PRIMARY KEY, d date, ts datetime(6), tz timestamp(6) NULL DEFAULT NULL",
        cols,
        [(1, None, None, None), (2, None, None, None)],
    )
    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, "--sample", "1")
    assert code == 1
    assert only_target(result) == Diff(set(), set(), {(1,)})
    sample = result["targets"][0]["samples"][0]["columns"]
    assert sample["d"] == {"source": value, "target": None}


def test_bc_and_infinite_values_equal_their_sqlite_texts_and_repair(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SQLite copy holding PostgreSQL's own texts of BC, 5-digit-year and infinite values is
    equal; repair writes them there, and back into PostgreSQL, and a new diff finds nothing."""
    cols = ["id", "d", "ts", "tz"]
    rows = [
        (1, "0044-03-15 BC", "0044-03-15 12:00:00.5 BC", "0001-01-01 00:30:00+01"),
        (2, "infinity", "-infinity", "infinity"),
        (3, "10000-01-01", "12345-06-07 08:09:10", "2024-02-29 23:59:59.999999+00"),
        (4, "0001-01-01", "0001-01-01 00:00:00", "0001-01-01 00:00:00+00"),
    ]
    make(dbs.pg, table_name, PG_TEMPORAL, cols, rows)
    texts = [
        (1, "0044-03-15 BC", "0044-03-15 12:00:00.500000 BC", "0001-12-31 23:30:00 BC"),
        (2, "infinity", "-infinity", "infinity"),
        (3, "10000-01-01", "12345-06-07 08:09:10", "2024-02-29T23:59:59.999999Z"),
        (4, "0001-01-01", "0001-01-01 00:00:00.000000", "0001-01-01 00:00:00+00:00"),
    ]
    make(dbs.sqlite, table_name, SQLITE_TEMPORAL, cols, texts)
    code, result = diff_json(capsys, dbs.pg.url, dbs.sqlite.url, table_name, *ONE_ROW_CHUNKS)
    assert (code, only_target(result)) == (0, Diff(set(), set(), set()))

    dbs.sqlite.execute(f"DELETE FROM {table_name}")
    run = run_cli(capsys, dbs.pg.url, dbs.sqlite.url, "--table", table_name, "--write-missing")
    assert run.code == 0, run.err + run.out
    code, result = diff_json(capsys, dbs.pg.url, dbs.sqlite.url, table_name)
    assert code == 0
    # ... and from that SQLite copy into an empty PostgreSQL table.
    dbs.pg.execute(f"DELETE FROM {table_name}")
    run = run_cli(capsys, dbs.sqlite.url, dbs.pg.url, "--table", table_name, "--write-missing")
    assert run.code == 0, run.err + run.out
    assert dbs.pg.count(table_name) == 4
    code, result = diff_json(capsys, dbs.sqlite.url, dbs.pg.url, table_name)
    assert code == 0


# --- 2. keys in one canonical form everywhere --------------------------------------------------


CHAR_KEY_DDL = {
    "pg": "code char(8) PRIMARY KEY, v int",
    "mysql": "code char(8) PRIMARY KEY, v int",
    "sqlite": "code CHAR(8) PRIMARY KEY, v INTEGER",
}


@pytest.mark.parametrize(("source", "target"), [("pg", "mysql"), ("mysql", "pg"), ("pg", "sqlite"), ("sqlite", "pg")])
def test_char_keys_report_the_changed_row_only(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], source: str, target: str
) -> None:
    """PostgreSQL listed char(n) keys with their padding and MariaDB/SQLite without: once one row
    differed, every key of the table was reported missing and extra."""
    rows = [(f"k{i:03d}", i) for i in range(60)] + [("a", 1), ("a b", 2), ("", 4)]
    changed = [(code, -v if code == "k017" else v) for code, v in rows if code != "k030"]
    make(dbs[source], table_name, CHAR_KEY_DDL[source], ["code", "v"], rows)
    make(dbs[target], table_name, CHAR_KEY_DDL[target], ["code", "v"], [*changed, ("zz", 9)])
    code, result = diff_json(capsys, dbs[source].url, dbs[target].url, table_name, *SMALL, "--sample", "5")
    assert code == 1
    assert only_target(result) == Diff({("k030",)}, {("zz",)}, {("k017",)})
    # The keys are shown without padding, and repair finds the rows by them.
    run = run_cli(
        capsys, dbs[source].url, dbs[target].url, "--table", table_name, "--write-missing", "--write-differing"
    )
    assert run.code == 1, run.err  # the extra row is left (no --delete-extra)
    code, result = diff_json(capsys, dbs[source].url, dbs[target].url, table_name)
    assert only_target(result) == Diff(set(), {("zz",)}, set())


@pytest.mark.parametrize("direction", ["to_sqlite", "from_sqlite"])
def test_upper_case_uuid_keys_in_sqlite(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], direction: str
) -> None:
    """A SQLite UUID column holding upper-case text listed its keys upper-case (and ranged over
    them in another order): every key was reported missing and extra once a row differed."""
    ids = [uuid.UUID(int=(i * 0x9E3779B97F4A7C15 << 40) % 2**128) for i in range(1, 80)]
    make(dbs.pg, table_name, "id uuid PRIMARY KEY, v int", ["id", "v"], [(u, i) for i, u in enumerate(ids)])
    stored = [(str(u).upper() if i % 3 else str(u), i) for i, u in enumerate(ids)]
    stored[10] = (stored[10][0], -1)
    make(dbs.sqlite, table_name, "id UUID PRIMARY KEY, v INTEGER", ["id", "v"], stored)
    urls = (dbs.pg.url, dbs.sqlite.url) if direction == "to_sqlite" else (dbs.sqlite.url, dbs.pg.url)
    code, result = diff_json(capsys, *urls, table_name, *SMALL)
    assert code == 1
    assert only_target(result) == Diff(set(), set(), {(str(ids[10]),)})
    if direction == "to_sqlite":
        # The repair finds the upper-case row by its canonical key.
        run = run_cli(capsys, *urls, "--table", table_name, "--write-differing")
        assert run.code == 0, run.err + run.out
        assert dbs.sqlite.execute(f"SELECT v FROM {table_name} WHERE lower(id) = ?", [str(ids[10])]) == [(10,)]


@pytest.mark.parametrize("target", ["mysql", "sqlite"])
def test_citext_keys_compare_like_text(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """citext keys failed every multi-chunk run ("spans must be sorted and disjoint"): citext's
    operators ignore case whatever the collation. It is compared exactly, like text."""
    dbs.pg.execute("CREATE EXTENSION IF NOT EXISTS citext")
    names = [f"{c}{i}" for i in range(40) for c in ("a", "B", "c", "D")] + ["Zed", "É", "e\u0301"]
    make(dbs.pg, table_name, "name citext PRIMARY KEY, v int", ["name", "v"], [(n, i) for i, n in enumerate(names)])
    target_ddl = {"mysql": "name varchar(20) PRIMARY KEY, v int", "sqlite": "name TEXT PRIMARY KEY, v INTEGER"}
    target_rows = [(n, -i if n == "B7" else i) for i, n in enumerate(names) if n != "c9"]
    target_rows.append(("b7", 0) if target == "sqlite" else ("b77", 0))  # MariaDB's collation holds one of B7/b7
    make(dbs[target], table_name, target_ddl[target], ["name", "v"], target_rows)
    code, result = diff_json(capsys, dbs.pg.url, dbs[target].url, table_name, *SMALL, "--threads", "2")
    assert code == 1
    extra = ("b7",) if target == "sqlite" else ("b77",)
    assert only_target(result) == Diff({("c9",)}, {extra}, {("B7",)})


# --- 3. a filter selects the same rows on every engine ------------------------------------------


STATUS_ROWS = [(1, "open"), (2, "OPEN"), (3, "open "), (4, "Open"), (5, "closed"), (6, "öpen"), (7, None), (8, "b")]


@pytest.mark.parametrize(
    ("where", "ids"),
    [
        ("status = 'open'", {1}),
        ("status != 'open'", {2, 3, 4, 5, 6, 8}),
        ("status IN ('OPEN', 'b')", {2, 8}),
        ("status < 'b'", {2, 4}),  # code point order: upper case first
        ("status >= 'open'", {1, 3, 6}),
        ("NOT (status = 'closed') AND status > 'O'", {1, 2, 3, 4, 6, 8}),
        ("status IS NULL", {7}),
    ],
)
@pytest.mark.parametrize("target", ["mysql", "sqlite"])
def test_where_on_text_is_exact_under_any_collation(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], target: str, where: str, ids: set[int]
) -> None:
    """MariaDB's case-insensitive, PAD SPACE collation matched 'OPEN' and 'open ' for
    status = 'open' and ordered < > its own way: identical tables were reported different."""
    make(dbs.pg, table_name, "id int PRIMARY KEY, status varchar(10)", ["id", "status"], STATUS_ROWS)
    ddl = {"mysql": "id int PRIMARY KEY, status varchar(10)", "sqlite": "id INTEGER PRIMARY KEY, status TEXT"}
    # The target lacks every row: what it reports missing is exactly what the filter selects.
    make(dbs[target], table_name, ddl[target], ["id", "status"], [])
    code, result = diff_json(capsys, dbs.pg.url, dbs[target].url, table_name, "--where", where)
    assert only_target(result) == Diff({(i,) for i in ids}, set(), set())
    # And identical tables under the filter are identical.
    dbs[target].insert(table_name, ["id", "status"], STATUS_ROWS)
    code, result = diff_json(capsys, dbs.pg.url, dbs[target].url, table_name, "--where", where)
    assert code == 0, result
    code, result = diff_json(capsys, dbs[target].url, dbs.pg.url, table_name, "--where", where)
    assert code == 0, result


def test_where_on_sqlite_timestamptz_compares_instants(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """On SQLite a timestamptz filter compared the stored texts ('2024-01-01 01:00:00+02:00' is
    before '2024-01-01 00:00:00' as an instant, after it as text)."""
    rows = [
        (1, "2023-12-31 23:30:00+00:00"),
        (2, "2024-01-01 01:00:00+02:00"),  # 2023-12-31 23:00 UTC
        (3, "2024-01-01T00:00:00Z"),
        (4, "2023-12-31 19:30:00-05:00"),  # 2024-01-01 00:30 UTC
        (5, None),
    ]
    make(dbs.sqlite, table_name, "id INTEGER PRIMARY KEY, at TIMESTAMPTZ", ["id", "at"], rows)
    make(dbs.pg, table_name, "id int PRIMARY KEY, at timestamptz", ["id", "at"], [])
    for where, ids in [
        ("at < '2024-01-01 00:00:00'", {1, 2}),
        ("at >= '2024-01-01T02:00:00+02:00'", {3, 4}),
        ("at = '2024-01-01 00:30:00'", {4}),
        ("at BETWEEN '2023-12-31 23:00:00' AND '2023-12-31 23:30:00'", {1, 2}),
    ]:
        code, result = diff_json(capsys, dbs.sqlite.url, dbs.pg.url, table_name, "--where", where)
        assert only_target(result) == Diff({(i,) for i in ids}, set(), set()), where
    # The same filter on PostgreSQL selects the same rows.
    dbs.pg.insert(
        table_name, ["id", "at"], [(i, v.replace("T", " ").replace("Z", "+00:00") if v else v) for i, v in rows]
    )
    code, result = diff_json(capsys, dbs.pg.url, dbs.sqlite.url, table_name, "--where", "at < '2024-01-01 00:00:00'")
    assert code == 0, result


@pytest.mark.parametrize(
    ("where", "needle"),
    [("doc = '{}'", "json"), ("blob > 'a'", "bytes"), ("id = 'x'", "number"), ("at < 5", "timestamp")],
)
def test_where_refuses_comparisons_it_cannot_make_exact(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], where: str, needle: str
) -> None:
    ddl = "id int PRIMARY KEY, doc jsonb, blob bytea, at timestamp"
    make(dbs.pg, table_name, ddl, ["id"], [(1,)])
    make(dbs.sqlite, table_name, "id INTEGER PRIMARY KEY, doc JSON, blob BLOB, at TIMESTAMP", ["id"], [(1,)])
    run = run_cli(capsys, dbs.pg.url, dbs.sqlite.url, "--table", table_name, "--where", where)
    assert_clean_error(run, "--where", needle)


# --- 4. MariaDB ZEROFILL ------------------------------------------------------------------------


def test_zerofill_numbers_equal_their_values(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """ZEROFILL columns were hashed with their padding: 5 != 000005 on every row."""
    cols = ["id", "n", "d"]
    rows = [(1, 5, "1.50"), (2, 0, "0.00"), (3, 123456, "99.99"), (4, None, None)]
    make(
        dbs.mysql, table_name, "id int(6) ZEROFILL PRIMARY KEY, n int(6) ZEROFILL, d decimal(8,2) ZEROFILL", cols, rows
    )
    make(dbs.pg, table_name, "id int PRIMARY KEY, n int, d numeric(8,3)", cols, rows)
    code, result = diff_json(capsys, dbs.mysql.url, dbs.pg.url, table_name)
    assert code == 0, result
    dbs.pg.execute(f"UPDATE {table_name} SET n = 6 WHERE id = 1")
    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name)
    assert only_target(result) == Diff(set(), set(), {(1,)})


# --- 5. a target without a primary key ----------------------------------------------------------


@pytest.mark.parametrize("target", ["pg", "mysql"])
def test_a_twice_held_key_with_one_row_equal_by_json_meaning_is_only_extra(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """A keyless target holding a key twice, one of its rows equal to the source's by JSON meaning
    but spelt another way (0 vs 0.0): the key is extra, never differing. The JSON re-check compared
    the source's row with one of the target's rows only (found by the differential fuzz test)."""
    make(dbs.sqlite, table_name, "id INTEGER PRIMARY KEY, doc JSON", ["id", "doc"], [(1, "0"), (2, '{"a": 1}')])
    keyless = {"pg": "id int, doc json", "mysql": "id int, doc json"}[target]
    make(dbs[target], table_name, keyless, ["id", "doc"], [(1, "0.0"), (1, None), (2, '{"a": 1.0}')])
    code, result = diff_json(capsys, dbs.sqlite.url, dbs[target].url, table_name, "--key", "id", *SMALL)
    (tally,) = result["targets"]
    assert code == 1 and tally["extra"] == [[1]] and tally["differing"] == [] and tally["missing"] == []


@pytest.mark.parametrize("target", ["pg", "mysql", "sqlite"])
def test_keyless_target_reports_duplicates_and_null_keys(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """A target without a primary key: its duplicated keys were not reported, a NULL key came out
    as "None", and a target with two rows more than its source could be reported identical."""
    source = "sqlite" if target != "sqlite" else "pg"
    rows = [(i, f"name {i}") for i in range(1, 301)]
    pk_ddl = {"pg": "id int PRIMARY KEY, name text", "sqlite": "id INTEGER PRIMARY KEY, name TEXT"}
    make(dbs[source], table_name, pk_ddl[source], ["id", "name"], rows)
    keyless = {"pg": "id int, name text", "mysql": "id int, name text", "sqlite": "id INTEGER, name TEXT"}
    # Row 150 twice (the same values), row 200 twice (one copy differs), two NULL keys.
    extra_rows = [(150, "name 150"), (200, "other"), (None, "no key"), (None, "no key either")]
    make(dbs[target], table_name, keyless[target], ["id", "name"], rows + extra_rows)
    code, result = diff_json(capsys, dbs[source].url, dbs[target].url, table_name, *SMALL)
    assert code == 1
    (tally,) = result["targets"]
    assert sorted(map(tuple, tally["extra"]), key=repr) == sorted([(150,), (200,), (None,), (None,)], key=repr)
    assert (tally["missing"], tally["differing"]) == ([], [])
    text = run_cli(capsys, dbs[source].url, dbs[target].url, "--table", table_name)
    assert "[null]" in text.out and "None" not in text.out
    # Repair refuses what it cannot address by key, and says so.
    run = run_cli(capsys, dbs[source].url, dbs[target].url, "--table", table_name, "--delete-extra", "--format", "json")
    assert run.code == 1, run.err
    (repair,) = run.json()["repairs"]
    assert repair["deleted"] == 0
    reasons = {json.dumps(f["key"]): f["reason"] for f in repair["failed"]}
    assert set(reasons) == {"[150]", "[200]", "[null]"}
    assert "2 times" in reasons["[150]"] and "NULL" in reasons["[null]"]
    assert dbs[target].count(table_name) == 304


@pytest.mark.parametrize("target", ["pg", "mysql", "sqlite"])
def test_a_key_repeated_more_often_than_the_listing_threshold_is_listed(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """A keyless target holding one key more times than --bisection-threshold: the range starting
    at that key had no inner key to cut at, was checksummed again as one bucket, and the diff never
    finished (found by the differential fuzz test). Such a range is listed."""
    source = "sqlite" if target != "sqlite" else "pg"
    rows = [(i, f"name {i}") for i in range(1, 41)]
    pk_ddl = {"pg": "id int PRIMARY KEY, name text", "sqlite": "id INTEGER PRIMARY KEY, name TEXT"}
    make(dbs[source], table_name, pk_ddl[source], ["id", "name"], rows)
    keyless = {"pg": "id int, name text", "mysql": "id int, name text", "sqlite": "id INTEGER, name TEXT"}
    make(dbs[target], table_name, keyless[target], ["id", "name"], rows + [(17, "again")] * 4 + [(30, "x")] * 3)
    args = ("--chunk-size", "4", "--bisection-factor", "3", "--bisection-threshold", "2")
    with watchdog(60):  # the bug looped forever: fail, never hang the run
        code, result = diff_json(capsys, dbs[source].url, dbs[target].url, table_name, *args)
    assert code == 1
    (tally,) = result["targets"]
    assert sorted(map(tuple, tally["extra"])) == [(17,), (30,)]
    assert (tally["missing"], tally["differing"]) == ([], [])


# --- 6. MariaDB JSON on both sides ---------------------------------------------------------------


def test_mariadb_json_is_compared_by_meaning(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """MariaDB's JSON (a LONGTEXT with a json_valid check) was compared by spelling on both sides."""
    cols = ["id", "doc"]
    make(dbs.mysql, table_name, "id int PRIMARY KEY, doc json", cols, [(1, '{"a":1,"b":2}'), (2, "[1, 2]"), (3, "{}")])
    make(dbs.sqlite, table_name, "id INTEGER PRIMARY KEY, doc JSON", cols, [(1, '{"b": 2, "a": 1.0}'), (2, "[1,2]")])
    dbs.sqlite.insert(table_name, cols, [(3, '{"a": null}')])
    _, result = diff_json(capsys, dbs.mysql.url, dbs.sqlite.url, table_name)
    assert only_target(result) == Diff(set(), set(), {(3,)})
    _, result = diff_json(capsys, dbs.sqlite.url, dbs.mysql.url, table_name)
    assert only_target(result) == Diff(set(), set(), {(3,)})


# --- 7. columns only the target has --------------------------------------------------------------


def test_a_column_only_the_target_has_is_named(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A column only the target had was silently ignored."""
    make(dbs.pg, table_name, "id int PRIMARY KEY, name text", ["id", "name"], [(1, "a")])
    make(dbs.mysql, table_name, "id int PRIMARY KEY, name text, added_by text", ["id", "name"], [(1, "a")])
    run = run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name, "--format", "json")
    assert run.code == 0
    assert run.err.count("\n") == 1 and "warning" in run.err and "'added_by'" in run.err
    assert run.json()["targets"][0]["target_only_columns"] == ["added_by"]
    run = run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name, "--strict-schema")
    assert_clean_error(run, "added_by", "--strict-schema")


# --- 9. deeply nested JSON -----------------------------------------------------------------------


def test_deeply_nested_json(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """A few hundred levels of nesting ended in "unexpected RecursionError"."""
    deep = '{"a": ' * 800 + "1.0" + "}" * 800
    respelled = '{"a":' * 800 + "1" + "}" * 800
    changed = '{"a": ' * 800 + "2" + "}" * 800
    cols = ["id", "doc"]
    make(dbs.pg, table_name, "id int PRIMARY KEY, doc json", cols, [(1, deep), (2, deep)])
    make(dbs.sqlite, table_name, "id INTEGER PRIMARY KEY, doc JSON", cols, [(1, respelled), (2, changed)])
    _code, result = diff_json(capsys, dbs.pg.url, dbs.sqlite.url, table_name, "--sample", "2")
    assert only_target(result) == Diff(set(), set(), {(2,)})


# --- 10. wide SQLite tables ----------------------------------------------------------------------


def test_sqlite_tables_wider_than_a_function_call(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """More than 125 columns: "too many arguments on function ts_row_hash"."""
    names = [f"c{i}" for i in range(260)]
    cols = ["id", *names]
    rows = [(r, *(r * 1000 + i for i in range(260))) for r in range(1, 6)]
    make(dbs.pg, table_name, "id int PRIMARY KEY, " + ", ".join(f"{n} int" for n in names), cols, rows)
    target_rows = [row if row[0] != 3 else (*row[:-1], -1) for row in rows]
    ddl = "id INTEGER PRIMARY KEY, " + ", ".join(f"{n} INTEGER" for n in names)
    make(dbs.sqlite, table_name, ddl, cols, target_rows)
    _code, result = diff_json(capsys, dbs.pg.url, dbs.sqlite.url, table_name)
    assert only_target(result) == Diff(set(), set(), {(3,)})


# --- 11. SQLite values the declared type cannot parse --------------------------------------------


def test_sqlite_values_its_type_cannot_parse_are_compared_as_stored(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """'user-defined function raised exception', naming nothing: SQLite stores what it is given."""
    cols = ["id", "t", "d", "u", "f"]
    ddl = "id INTEGER PRIMARY KEY, t TIME, d DATE, u UUID, f DOUBLE"
    odd = [(1, "-01:00:00", "2020-13-45", "not-a-uuid", "abc"), (2, "838:59:59", "2020-01-01", None, 1.5)]
    make(dbs.sqlite, table_name, ddl, cols, odd)
    make(dbs.sqlite2, table_name, ddl, cols, odd)
    code, result = diff_json(capsys, dbs.sqlite.url, dbs.sqlite2.url, table_name)
    assert code == 0, result  # the same stored values are equal
    dbs.sqlite2.execute(f"UPDATE {table_name} SET d = '2020-13-46' WHERE id = 1")
    code, result = diff_json(capsys, dbs.sqlite.url, dbs.sqlite2.url, table_name, "--sample", "1")
    assert only_target(result) == Diff(set(), set(), {(1,)})
    assert result["targets"][0]["samples"][0]["columns"] == {"d": {"source": "!2020-13-45", "target": "!2020-13-46"}}
    # Against MariaDB, whose TIME keeps sign and hours, the valid ones are equal; the rest differ.
    make(
        dbs.mysql,
        table_name,
        "id int PRIMARY KEY, t time, d date, u char(36), f double",
        cols,
        [(1, "-01:00:00", None, "not-a-uuid", None), (2, "838:59:59", "2020-01-01", None, 1.5)],
    )
    code, result = diff_json(capsys, dbs.sqlite.url, dbs.mysql.url, table_name, "--sample", "1")
    assert only_target(result) == Diff(set(), set(), {(1,)})
    assert set(result["targets"][0]["samples"][0]["columns"]) == {"d", "f"}


def test_mariadb_zero_dates_equal_their_sqlite_copy_and_nothing_else(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Year 0 is no year: MySQL's zero dates are compared as stored, like SQLite's copy of them."""
    cols = ["id", "d", "ts"]
    rows = [(1, "0000-00-00", "0000-00-00 00:00:00"), (2, "2024-01-01", "2024-01-01 00:00:00")]
    make(dbs.mysql, table_name, "id int PRIMARY KEY, d date, ts datetime(6)", cols, rows)
    # The SQLite copy as tablesync's repair writes it: MySQL's own text of the value.
    make(dbs.sqlite, table_name, "id INTEGER PRIMARY KEY, d DATE, ts DATETIME", cols, [])
    run = run_cli(capsys, dbs.mysql.url, dbs.sqlite.url, "--table", table_name, "--write-missing")
    assert run.code == 0, run.err + run.out
    assert dbs.sqlite.execute(f"SELECT d, ts FROM {table_name} WHERE id = 1") == [
        ("0000-00-00", "0000-00-00 00:00:00.000000")
    ]
    code, result = diff_json(capsys, dbs.mysql.url, dbs.sqlite.url, table_name)
    assert code == 0, result
    make(dbs.pg, table_name, "id int PRIMARY KEY, d date, ts timestamp", cols, [(1, None, None), rows[1]])
    code, result = diff_json(capsys, dbs.mysql.url, dbs.pg.url, table_name)
    assert only_target(result) == Diff(set(), set(), {(1,)})


@pytest.mark.parametrize("literal", ["5e-324", "1e+81", "1.7976931348623157e+308", "2.2250738585072014e-308"])
def test_where_on_a_double_takes_the_nearest_double_on_mariadb(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], literal: str
) -> None:
    """Found by the differential fuzz test: bound as a decimal, MariaDB read 5e-324 as 0 and 1e+81
    as 65 nines, so `c = 5e-324` matched 0.0 and `c = 1e+81` matched nothing."""
    value = float(literal)
    rows = [(1, value), (2, 0.0), (3, None), (4, -value)]
    make(dbs.mysql, table_name, "id int PRIMARY KEY, c double", ["id", "c"], rows)
    make(dbs.sqlite, table_name, "id INTEGER PRIMARY KEY, c DOUBLE", ["id", "c"], [])
    for where, ids in [(f"c = {literal}", {1}), (f"c < {literal}", {2, 4}), (f"c >= {literal}", {1})]:
        _, result = diff_json(capsys, dbs.mysql.url, dbs.sqlite.url, table_name, "--where", where)
        assert only_target(result) == Diff({(i,) for i in ids}, set(), set()), where


@pytest.fixture
def pg2(pg_admin: Any, table_name: str) -> Iterator[str]:
    """A second PostgreSQL database (same server): the URL of a copy of a PostgreSQL table."""
    name = f"{table_name}_copy"
    pg_admin.execute(f"CREATE DATABASE {name}")
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        pg_admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_every_nan_is_one_value(dbs: Any, table_name: str, pg2: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Found by the differential fuzz test: PostgreSQL keeps a NaN's sign bit (-('NaN'::float8) is
    fff8000000000000), and NaN = NaN there, but the hash took the bits: a false difference."""
    import psycopg

    dbs.pg.create(table_name, "id int PRIMARY KEY, d double precision, r real")
    dbs.pg.execute(f"INSERT INTO {table_name} VALUES (1, 'NaN', 'NaN'), (2, 1.5, 2.5), (3, 'NaN', 'NaN')")
    with psycopg.connect(pg2, autocommit=True) as copy:
        copy.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, d double precision, r real)")
        copy.execute(
            f"INSERT INTO {table_name} VALUES (1, -('NaN'::float8), -('NaN'::float4)), (2, 1.5, 2.5), (3, 1, 'NaN')"
        )
        assert copy.execute(f"SELECT encode(float8send(d), 'hex') FROM {table_name} WHERE id = 1").fetchone() == (
            "fff8000000000000",
        )
    _, result = diff_json(capsys, dbs.pg.url, pg2, table_name, *ONE_ROW_CHUNKS)
    assert only_target(result) == Diff(set(), set(), {(3,)})  # only the row whose NaN became 1
