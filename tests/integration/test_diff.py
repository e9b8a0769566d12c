"""`tablesync diff` against real PostgreSQL, MariaDB and SQLite databases: injected drift must be
reported exactly (no more, no less), in every direction, with every option, across resumes, and
bad input must give one clean line on stderr and exit status 2.

Most tests go through `tablesync.cli.main([...])` with `--format json`; the expected differences
are computed in Python from the rows the test loaded."""

from __future__ import annotations

import datetime as dt
import json
import math
import random
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tablesync.cli import main
from tablesync.connectors import open_connector
from tablesync.engine import Differ
from tablesync.errors import StateError
from tablesync.models import DiffOptions, DiffResult, DiffState

pytestmark = pytest.mark.integration

Key = tuple[Any, ...]
Row = tuple[Any, ...]
Rows = dict[Key, Row]

# ---------------------------------------------------------------------------------------------
# Expected differences and result checking
# ---------------------------------------------------------------------------------------------


@dataclass
class Diff:
    missing: set[Key]
    extra: set[Key]
    differing: set[Key]

    @property
    def total(self) -> int:
        return len(self.missing) + len(self.extra) + len(self.differing)


def expected_diff(
    source: Rows,
    target: Rows,
    project: Callable[[Row], Any] | None = None,
    where: Callable[[Row], bool] | None = None,
) -> Diff:
    """The differences a correct diff reports: `where` filters both sides, `project` picks the
    compared columns."""
    src = {k: r for k, r in source.items() if where is None or where(r)}
    tgt = {k: r for k, r in target.items() if where is None or where(r)}
    proj = project or (lambda row: row)
    return Diff(
        missing=set(src) - set(tgt),
        extra=set(tgt) - set(src),
        differing={k for k in src.keys() & tgt.keys() if proj(src[k]) != proj(tgt[k])},
    )


def found(target: dict[str, Any]) -> Diff:
    """The differences one target of a JSON result reports; no key may be listed twice."""
    sets = {}
    for kind in ("missing", "extra", "differing"):
        keys = [tuple(k) for k in target[kind]]
        assert len(keys) == len(set(keys)), f"{kind} lists a key more than once: {keys}"
        sets[kind] = set(keys)
    return Diff(**sets)


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.out)


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    capsys.readouterr()
    try:
        code = main(["diff", *args])
    except SystemExit as exc:  # argparse rejects bad options by exiting with status 2
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return Run(code, out, err)


def diff_json(
    capsys: pytest.CaptureFixture[str], source: str, targets: str | Sequence[str], table: str, *options: str
) -> tuple[int, dict[str, Any]]:
    targets = [targets] if isinstance(targets, str) else list(targets)
    run = run_cli(capsys, source, *targets, "--table", table, "--format", "json", *options)
    assert run.code in (0, 1), f"exit {run.code}: {run.err}"
    assert "Traceback" not in run.err
    return run.code, run.json()


def assert_clean_error(run: Run, *needles: str, forbidden: Sequence[str] = ()) -> str:
    """Exit 2, exactly one line on stderr naming the problem, nothing on stdout, no traceback."""
    assert run.code == 2, f"exit {run.code}, stdout {run.out!r}, stderr {run.err!r}"
    assert run.out == "", run.out
    lines = run.err.splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {run.err!r}"
    line = lines[0]
    assert "Traceback" not in run.err
    assert line.startswith("tablesync: error:"), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    for secret in forbidden:
        assert secret not in run.err and secret not in run.out, f"{secret!r} shown in {line!r}"
    return line


# ---------------------------------------------------------------------------------------------
# The standard table: integer key, text, decimal, short text and timestamp columns
# ---------------------------------------------------------------------------------------------

BASE_TIME = dt.datetime(2024, 1, 1, 8, 0, 0)
STATUSES = ("open", "closed", "pending")
COLUMNS = ["id", "name", "amount", "status", "updated_at"]
STANDARD_DDL = {
    "pg": "id integer PRIMARY KEY, name varchar(40) NOT NULL, amount numeric(12,2), "
    "status varchar(10) NOT NULL, updated_at timestamp",
    "mysql": "id int PRIMARY KEY, name varchar(40) NOT NULL, amount decimal(12,2), "
    "status varchar(10) NOT NULL, updated_at datetime(6)",
    "sqlite": "id INTEGER PRIMARY KEY, name VARCHAR(40) NOT NULL, amount NUMERIC(12,2), "
    "status VARCHAR(10) NOT NULL, updated_at DATETIME",
}
SMALL = ("--chunk-size", "100", "--bisection-threshold", "10")


def standard_rows(count: int, start: int = 1, step: int = 3) -> Rows:
    rows: Rows = {}
    for i in range(start, start + count):
        key = i * step
        amount = None if i % 50 == 0 else Decimal(i * 37 % 100_000).scaleb(-2)
        stamp = None if i % 70 == 0 else BASE_TIME + dt.timedelta(seconds=61 * i, microseconds=i % 1000)
        rows[(key,)] = (key, f"name-{i}", amount, STATUSES[i % 3], stamp)
    return rows


def _replace(row: Row, index: int, value: Any) -> Row:
    return (*row[:index], value, *row[index + 1 :])


# Each changes one column so that a correct diff must see it (case and trailing spaces included).
MUTATIONS: list[Callable[[Row], Row]] = [
    lambda r: _replace(r, 1, r[1] + "x"),
    lambda r: _replace(r, 2, (r[2] or Decimal(0)) + Decimal("0.01")),
    lambda r: _replace(r, 1, r[1] + " "),
    lambda r: _replace(r, 3, STATUSES[(STATUSES.index(r[3]) + 1) % 3]),
    lambda r: _replace(r, 1, r[1].upper()),
    lambda r: _replace(r, 4, (r[4] or BASE_TIME) + dt.timedelta(microseconds=1)),
    lambda r: _replace(r, 2, None if r[2] is not None else Decimal("5.00")),
    lambda r: _replace(r, 4, None if r[4] is not None else BASE_TIME),
]


def drift(source: Rows, seed: int, missing: int = 15, extra: int = 12, differing: int = 24) -> tuple[Rows, Diff]:
    """A copy of `source` with rows removed (the first and last among them), rows added (below the
    lowest and above the highest key among them) and rows changed, all scattered."""
    rng = random.Random(seed)
    keys = sorted(source)
    gone = {keys[0], keys[-1], *rng.sample(keys[1:-1], missing - 2)}
    changed = set(rng.sample([k for k in keys if k not in gone], differing))
    low, high = keys[0][0], keys[-1][0]
    added = {(low - 2,), (high + 1,), (high + 500,)}
    while len(added) < extra:
        candidate = (rng.randrange(low, high),)
        if candidate not in source:
            added.add(candidate)
    target = {k: r for k, r in source.items() if k not in gone}
    for n, key in enumerate(sorted(changed)):
        target[key] = MUTATIONS[n % len(MUTATIONS)](target[key])
    for key in added:
        target[key] = (key[0], f"added-{key[0]}", Decimal("1.50"), "open", BASE_TIME)
    expected = Diff(missing=gone, extra=added, differing=changed)
    assert expected_diff(source, target) == expected  # the injected drift is all there is
    return target, expected


def load(db: Any, table: str, rows: Rows, ddl: dict[str, str] = STANDARD_DDL, columns: list[str] = COLUMNS) -> None:
    db.create(table, ddl[db.dialect])
    db.insert(table, columns, [rows[k] for k in sorted(rows)])


@dataclass
class Shared:
    """One table read by many tests: PostgreSQL source, drifted copies in MariaDB and SQLite."""

    table: str
    pg_url: str
    mysql_url: str
    sqlite_url: str
    source: Rows
    mysql: Rows
    sqlite: Rows
    mysql_diff: Diff
    sqlite_diff: Diff


@pytest.fixture(scope="module")
def shared(module_dbs: Any) -> Shared:
    table = f"t_shared_{uuid.uuid4().hex[:8]}"
    source = standard_rows(3000)
    mysql_rows, mysql_diff = drift(source, seed=1)
    sqlite_rows, sqlite_diff = drift(source, seed=2, missing=9, extra=5, differing=11)
    load(module_dbs.pg, table, source)
    load(module_dbs.mysql, table, mysql_rows)
    load(module_dbs.sqlite, table, sqlite_rows)
    return Shared(
        table=table,
        pg_url=module_dbs.pg.url,
        mysql_url=module_dbs.mysql.url,
        sqlite_url=module_dbs.sqlite.url,
        source=source,
        mysql=mysql_rows,
        sqlite=sqlite_rows,
        mysql_diff=mysql_diff,
        sqlite_diff=sqlite_diff,
    )


# ---------------------------------------------------------------------------------------------
# 1. Drift between engines
# ---------------------------------------------------------------------------------------------

DIRECTIONS = [("pg", "mysql"), ("mysql", "pg"), ("pg", "sqlite"), ("sqlite", "mysql")]


@pytest.mark.parametrize(("src", "dst"), DIRECTIONS, ids=[f"{s}-to-{d}" for s, d in DIRECTIONS])
def test_injected_drift_is_reported_exactly(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], src: str, dst: str
) -> None:
    source = standard_rows(3000)
    target, injected = drift(source, seed=7)
    load(dbs[src], table_name, source)
    load(dbs[dst], table_name, target)
    code, result = diff_json(capsys, dbs[src].url, dbs[dst].url, table_name, *SMALL)
    assert code == 1
    assert result["table"] == table_name
    assert result["source"] == {"url": dbs[src].url, "rows": 3000}
    (target_result,) = result["targets"]
    assert target_result["url"] == dbs[dst].url
    assert found(target_result) == injected
    assert target_result["rows_compared"] == 3000
    assert target_result["samples"] == []
    assert isinstance(result["duration_s"], int | float)


@pytest.mark.parametrize(("src", "dst"), DIRECTIONS[:3], ids=[f"{s}-to-{d}" for s, d in DIRECTIONS[:3]])
@pytest.mark.parametrize("options", [SMALL, ()], ids=["small-chunks", "defaults"])
def test_identical_tables_exit_0(
    dbs: Any,
    table_name: str,
    capsys: pytest.CaptureFixture[str],
    src: str,
    dst: str,
    options: tuple[str, ...],
) -> None:
    rows = standard_rows(2500)
    load(dbs[src], table_name, rows)
    load(dbs[dst], table_name, rows)
    code, result = diff_json(capsys, dbs[src].url, dbs[dst].url, table_name, *options)
    assert code == 0
    assert result["source"]["rows"] == 2500
    (target_result,) = result["targets"]
    assert found(target_result) == Diff(set(), set(), set())
    assert target_result["rows_compared"] == 2500


def test_two_targets_each_get_their_own_differences(shared: Shared, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = diff_json(capsys, shared.pg_url, [shared.mysql_url, shared.sqlite_url], shared.table, *SMALL)
    assert code == 1
    assert result["source"]["rows"] == 3000
    mysql_result, sqlite_result = result["targets"]
    assert mysql_result["url"] == shared.mysql_url
    assert sqlite_result["url"] == shared.sqlite_url
    assert found(mysql_result) == shared.mysql_diff
    assert found(sqlite_result) == shared.sqlite_diff
    assert mysql_result["rows_compared"] == sqlite_result["rows_compared"] == 3000


def test_empty_tables_on_both_sides(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("pg", "mysql", "sqlite"):
        load(dbs[name], table_name, {})
    code, result = diff_json(capsys, dbs.pg.url, [dbs.mysql.url, dbs.sqlite.url], table_name, *SMALL)
    assert code == 0
    assert result["source"]["rows"] == 0
    for target_result in result["targets"]:
        assert target_result["rows_compared"] == 0
        assert found(target_result) == Diff(set(), set(), set())


@pytest.mark.parametrize(("src", "dst"), [("pg", "mysql"), ("mysql", "sqlite")])
def test_all_rows_missing_on_target(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], src: str, dst: str
) -> None:
    rows = standard_rows(2000)
    load(dbs[src], table_name, rows)
    load(dbs[dst], table_name, {})
    code, result = diff_json(capsys, dbs[src].url, dbs[dst].url, table_name, *SMALL)
    assert code == 1
    (target_result,) = result["targets"]
    assert found(target_result) == Diff(set(rows), set(), set())
    assert target_result["rows_compared"] == result["source"]["rows"] == 2000


def test_target_rows_below_and_beyond_the_source_key_range_are_extra(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    source = standard_rows(300, start=100)  # keys 300 .. 1197
    target = dict(source)
    outside = [1, 2, 5, 299, 1198, 1200, 5000, 10**9]
    for key in outside:
        target[(key,)] = (key, f"outside-{key}", None, "open", None)
    load(dbs.pg, table_name, source)
    load(dbs.mysql, table_name, target)
    load(dbs.sqlite, table_name, target)
    code, result = diff_json(capsys, dbs.pg.url, [dbs.mysql.url, dbs.sqlite.url], table_name, *SMALL)
    assert code == 1
    for target_result in result["targets"]:
        assert found(target_result) == Diff(set(), {(k,) for k in outside}, set())
        assert target_result["rows_compared"] == 300


def test_empty_source_reports_every_target_row_as_extra(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    target = standard_rows(250)
    load(dbs.mysql, table_name, {})
    load(dbs.pg, table_name, target)
    code, result = diff_json(capsys, dbs.mysql.url, dbs.pg.url, table_name, *SMALL)
    assert code == 1
    (target_result,) = result["targets"]
    assert found(target_result) == Diff(set(), set(target), set())
    assert result["source"]["rows"] == target_result["rows_compared"] == 0


# ---------------------------------------------------------------------------------------------
# 2. Keys: text keys under different collations, UUIDs, composite keys, --key
# ---------------------------------------------------------------------------------------------

KEY_COLUMNS = ["k", "n", "label"]
TEXT_KEY_DDL = {
    "pg": "k text PRIMARY KEY, n integer NOT NULL, label text",
    "pg_icu": 'k text COLLATE "und-x-icu" PRIMARY KEY, n integer NOT NULL, label text',
    "mysql": "k varchar(40) PRIMARY KEY, n int NOT NULL, label text",  # utf8mb4_general_ci
    "mysql_bin": "k varchar(40) COLLATE utf8mb4_bin PRIMARY KEY, n int NOT NULL, label text",
    "mysql_nopad_bin": "k varchar(40) COLLATE utf8mb4_nopad_bin PRIMARY KEY, n int NOT NULL, label text",
    "sqlite": "k TEXT PRIMARY KEY, n INTEGER NOT NULL, label TEXT",
}
# Distinct in binary (code point) order, which is what PostgreSQL's C.UTF-8 and SQLite use.
FULL_KEYS = [
    *["", " a", "0", "A", "A ", "AB", "Ab", "B", "Z", "[", "_x", "`", "a", "a ", "a\t", "a!", "aB", "ab", "b"],
    *["z", "{", "~", "Ä", "É", "é", "e\u0301", "e", "E", "ß", "ss", "Ω", "ω", "中文", "😀", "😁", "A1", "a2", "A3"],
]
# Unique under a PAD SPACE binary collation (utf8mb4_bin): 'a' and 'a ' are one key there.
PAD_KEYS = [k for k in FULL_KEYS if not (k != k.rstrip(" ") and k.rstrip(" ") in FULL_KEYS)]
# Unique under utf8mb4_general_ci (case- and accent-insensitive, PAD SPACE), but ordered there
# differently from binary order: 'A1' < 'a2' < 'A3', '_x' after letters, 'a\t' before 'a' ...
CI_KEYS = [
    *["", " a", "0", "A1", "a2", "A3", "B", "b1", "Z", "[", "_x", "`", "a", "a\t", "a!", "aB9", "c "],
    *["D", "mixedCase", "MIXEDcase2", "x-1", "X-2", "y_", "Y", "{", "~", "é", "ß", "Ω", "中文", "😀"],
]
ADDED_KEYS = ["new key", "ZZ top", "~~", "à la", "Ω2"]


def text_key_rows(keys: Sequence[str]) -> Rows:
    return {(k,): (k, i, f"label {i}") for i, k in enumerate(keys)}


TEXT_KEY_CASES = [
    ("pg", "mysql", CI_KEYS),
    ("mysql", "pg", CI_KEYS),
    ("pg_icu", "mysql", CI_KEYS),
    ("mysql", "pg_icu", CI_KEYS),
    ("pg", "sqlite", FULL_KEYS),
    ("pg", "mysql_nopad_bin", FULL_KEYS),
    ("pg", "mysql_bin", PAD_KEYS),
    ("mysql_bin", "sqlite", PAD_KEYS),
]


@pytest.mark.parametrize(("src", "dst", "keys"), TEXT_KEY_CASES, ids=[f"{s}-to-{d}" for s, d, _ in TEXT_KEY_CASES])
@pytest.mark.parametrize(
    "options",
    [
        ("--chunk-size", "2", "--max-chunk-size", "2"),
        ("--chunk-size", "3", "--max-chunk-size", "3", "--reverse", "--threads", "2"),
    ],
    ids=["chunk2", "chunk3-reverse"],
)
def test_text_keys_ordered_differently_by_collations(
    dbs: Any,
    table_name: str,
    capsys: pytest.CaptureFixture[str],
    src: str,
    dst: str,
    keys: list[str],
    options: tuple[str, ...],
) -> None:
    source_db, target_db = dbs[src.split("_")[0]], dbs[dst.split("_")[0]]
    source = text_key_rows(keys)
    source_db.create(table_name, TEXT_KEY_DDL[src])
    target_db.create(table_name, TEXT_KEY_DDL[dst])
    source_db.insert(table_name, KEY_COLUMNS, source.values())
    target_db.insert(table_name, KEY_COLUMNS, source.values())
    tuning = ("--bisection-threshold", "1", "--bisection-factor", "2", *options)

    code, result = diff_json(capsys, source_db.url, target_db.url, table_name, *tuning)
    assert found(result["targets"][0]) == Diff(set(), set(), set()), "false differences"
    assert code == 0
    assert result["targets"][0]["rows_compared"] == len(keys)

    ordered = sorted(keys)
    gone = {ordered[0], ordered[-1], ordered[len(ordered) // 2]}
    changed = {ordered[1], ordered[len(ordered) // 3], ordered[-2], "a"} - gone
    q = target_db.quote
    for key in gone:
        target_db.execute(f"DELETE FROM {q(table_name)} WHERE {q('k')} = %s", [key])
    for key in changed:
        target_db.execute(f"UPDATE {q(table_name)} SET {q('label')} = 'changed' WHERE {q('k')} = %s", [key])
    target_db.insert(table_name, KEY_COLUMNS, [(k, -1, "added") for k in ADDED_KEYS])
    code, result = diff_json(capsys, source_db.url, target_db.url, table_name, *tuning)
    assert code == 1
    expected = Diff({(k,) for k in gone}, {(k,) for k in ADDED_KEYS}, {(k,) for k in changed})
    assert found(result["targets"][0]) == expected
    assert result["targets"][0]["rows_compared"] == len(keys)


@pytest.mark.parametrize(
    "collation",
    ["utf8mb4_unicode_ci", "utf8mb4_bin", "utf8mb4_nopad_bin", "latin1_swedish_ci"],
)
def test_mariadb_text_columns_in_other_collations(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], collation: str
) -> None:
    """A MariaDB table whose text columns have different collations (the table default and another)."""
    charset = collation.split("_")[0]
    values = ["plain", "Case", "trailing ", "é", "ß", "", "x" * 30]
    source = {(i,): (i, values[i % len(values)], f"{values[i % len(values)]}-{i}") for i in range(1, 301)}
    target = dict(source)
    target[(5,)] = (5, source[(5,)][1].upper(), source[(5,)][2])  # case only, in the default collation
    target[(77,)] = (77, source[(77,)][1], source[(77,)][2] + " ")  # trailing space, in the other one
    target[(200,)] = (200, source[(200,)][1], source[(200,)][2].replace("é", "e"))
    del target[(150,)]
    dbs.pg.create(table_name, "id integer PRIMARY KEY, a varchar(40), b varchar(40)")
    dbs.mysql.create(
        table_name, f"id int PRIMARY KEY, a varchar(40), b varchar(40) CHARACTER SET {charset} COLLATE {collation}"
    )
    dbs.pg.insert(table_name, ["id", "a", "b"], source.values())
    dbs.mysql.insert(table_name, ["id", "a", "b"], target.values())
    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, *SMALL)
    assert found(result["targets"][0]) == expected_diff(source, target)
    assert code == 1


UUID_DDL = {
    "pg": "id uuid PRIMARY KEY, n integer NOT NULL, label text",
    "mysql": "id char(36) PRIMARY KEY, n int NOT NULL, label text",
    "mysql_uuid": "id uuid PRIMARY KEY, n int NOT NULL, label text",  # MariaDB's own UUID type
    "sqlite": "id UUID PRIMARY KEY, n INTEGER NOT NULL, label TEXT",
}
UUID_CASES = [("pg", "mysql", 4), ("mysql", "pg", 4), ("pg", "sqlite", 4), ("pg", "mysql_uuid", 1)]


@pytest.mark.parametrize(("src", "dst", "version"), UUID_CASES, ids=[f"{s}-to-{d}-v{v}" for s, d, v in UUID_CASES])
def test_uuid_keys(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], src: str, dst: str, version: int
) -> None:
    rng = random.Random(11)
    ids = [uuid.UUID(int=rng.getrandbits(128), version=version) for _ in range(600)]
    source = {(str(u),): (u, i, f"label {i}") for i, u in enumerate(ids)}
    keys = sorted(source)
    gone = {keys[0], keys[-1], *rng.sample(keys[1:-1], 6)}
    changed = set(rng.sample([k for k in keys if k not in gone], 7))
    added = {
        str(uuid.UUID(int=0, version=version)),
        str(uuid.UUID(int=2**128 - 1, version=version)),
        *(str(uuid.UUID(int=rng.getrandbits(128), version=version)) for _ in range(4)),
    }
    target = {k: r for k, r in source.items() if k not in gone}
    for key in changed:
        target[key] = _replace(target[key], 2, "changed")
    for key in added:
        target[(key,)] = (uuid.UUID(key), -1, "added")
    source_db, target_db = dbs[src.split("_")[0]], dbs[dst.split("_")[0]]
    source_db.create(table_name, UUID_DDL[src])
    target_db.create(table_name, UUID_DDL[dst])
    source_db.insert(table_name, ["id", "n", "label"], source.values())
    target_db.insert(table_name, ["id", "n", "label"], target.values())
    code, result = diff_json(
        capsys, source_db.url, target_db.url, table_name, "--chunk-size", "25", "--bisection-threshold", "5"
    )
    assert code == 1
    (target_result,) = result["targets"]
    assert found(target_result) == Diff(gone, {(k,) for k in added}, changed)
    assert target_result["rows_compared"] == 600


COMPOSITE_DDL = {
    "pg": "tenant text, n integer, qty integer NOT NULL, note varchar(30), PRIMARY KEY (tenant, n)",
    "mysql": "tenant varchar(30), n int, qty int NOT NULL, note varchar(30), PRIMARY KEY (tenant, n)",
    "sqlite": "tenant TEXT, n INTEGER, qty INTEGER NOT NULL, note VARCHAR(30), PRIMARY KEY (tenant, n)",
}
COMPOSITE_COLUMNS = ["tenant", "n", "qty", "note"]
TENANTS = ["acme", "Acme Corp", "Beta2", "beta", "zulu", "Zeta", "_co", "émile"]


def composite_drift(source: Rows, seed: int) -> tuple[Rows, Diff]:
    rng = random.Random(seed)
    keys = sorted(source)
    gone = {keys[0], keys[-1], ("acme", 7), *rng.sample(keys, 8)}
    changed = set(rng.sample([k for k in keys if k not in gone], 9))
    added = {("acme", 500), ("Acme Corp", 0), ("aaa", 1), ("zzz", 3), ("beta", 121), ("_co", -4)}
    target = {k: r for k, r in source.items() if k not in gone}
    for key in changed:
        target[key] = _replace(target[key], 3, "changed")
    for key in added:
        target[key] = (*key, 0, "added")
    return target, Diff(gone, added, changed)


@pytest.mark.parametrize(("src", "dsts"), [("pg", ["mysql", "sqlite"]), ("mysql", ["pg"])], ids=["pg", "mysql"])
def test_composite_text_int_keys(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], src: str, dsts: list[str]
) -> None:
    source = {(t, n): (t, n, n * 3, f"note {t} {n}") for t in TENANTS for n in range(1, 121)}
    load(dbs[src], table_name, source, COMPOSITE_DDL, COMPOSITE_COLUMNS)
    expected = []
    for seed, dst in enumerate(dsts):
        target, diff = composite_drift(source, seed)
        load(dbs[dst], table_name, target, COMPOSITE_DDL, COMPOSITE_COLUMNS)
        expected.append(diff)
    urls = [dbs[d].url for d in dsts]
    tuning = ("--chunk-size", "40", "--bisection-threshold", "5", "--bisection-factor", "4")
    code, result = diff_json(capsys, dbs[src].url, urls, table_name, *tuning)
    assert code == 1
    for target_result, diff in zip(result["targets"], expected, strict=True):
        assert found(target_result) == diff
        assert target_result["rows_compared"] == len(source)
    assert ["acme", 7] in result["targets"][0]["missing"]  # keys are JSON arrays in key order


NOPK_DDL = {"pg": "id integer, name text", "mysql": "id int, name text", "sqlite": "id INTEGER, name TEXT"}


def test_table_without_primary_key_needs_key(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    source = {(i,): (i, f"name {i}") for i in range(1, 801)}
    target = {k: r for k, r in source.items() if k not in {(1,), (400,), (800,)}}
    target[(401,)] = (401, "changed")
    target[(900,)] = (900, "added")
    load(dbs.pg, table_name, source, NOPK_DDL, ["id", "name"])
    load(dbs.mysql, table_name, target, NOPK_DDL, ["id", "name"])

    run = run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name)
    assert_clean_error(run, "primary key", "--key")

    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, "--key", "id", *SMALL)
    assert code == 1
    assert found(result["targets"][0]) == Diff({(1,), (400,), (800,)}, {(900,)}, {(401,)})
    assert result["targets"][0]["rows_compared"] == 800

    run = run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name, "--key", "nosuchcol")
    assert_clean_error(run, "nosuchcol")


def test_key_with_null_or_duplicate_values_on_the_source_is_rejected(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The key must identify the source's rows; a target's NULL and repeated keys are drift
    (tests/integration/test_exactness.py)."""
    rows = {(i,): (i, f"name {i}") for i in range(1, 301)}
    load(dbs.pg, table_name, rows, NOPK_DDL, ["id", "name"])
    load(dbs.mysql, table_name, rows, NOPK_DDL, ["id", "name"])
    db = dbs.pg
    args = (dbs.pg.url, dbs.mysql.url, "--table", table_name, "--key", "id")

    db.insert(table_name, ["id", "name"], [(None, "no key")])
    line = assert_clean_error(run_cli(capsys, *args), "null", "id")
    assert table_name in line

    db.execute(f"DELETE FROM {db.quote(table_name)} WHERE id IS NULL")
    db.insert(table_name, ["id", "name"], [(150, "twice")])
    line = assert_clean_error(run_cli(capsys, *args), "unique", "150")
    assert table_name in line


def test_a_uuid_key_that_is_not_the_primary_key_is_validated(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """PostgreSQL has no MIN(uuid): the uniqueness check of a --key reads a repeated uuid key as its
    text (the check failed with a database error before)."""
    ids = [uuid.UUID(int=i) for i in range(1, 51)]
    ddl = {"pg": "ref uuid NOT NULL, n integer", "mysql": "ref char(36) NOT NULL, n integer"}
    for db in (dbs.pg, dbs.mysql):
        db.create(table_name, ddl[db.dialect])
        db.insert(table_name, ["ref", "n"], [(u if db.dialect == "pg" else str(u), i) for i, u in enumerate(ids)])
    dbs.mysql.execute(f"DELETE FROM {dbs.mysql.quote(table_name)} WHERE n = 7")
    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, "--key", "ref", *SMALL)
    assert code == 1 and result["targets"][0]["missing"] == [[str(ids[7])]]
    dbs.pg.insert(table_name, ["ref", "n"], [(ids[3], 99)])
    line = assert_clean_error(
        run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name, "--key", "ref"), "unique", str(ids[3])
    )
    assert table_name in line


# ---------------------------------------------------------------------------------------------
# 3. Options
# ---------------------------------------------------------------------------------------------


def _project(indexes: Sequence[int]) -> Callable[[Row], Any]:
    return lambda row: tuple(row[i] for i in indexes)


@pytest.mark.parametrize(
    ("columns", "indexes"),
    [("name,amount", [1, 2]), ("status", [3]), ("id,updated_at", [4]), ("UPDATED_AT , Name", [1, 4])],
)
def test_columns_option(shared: Shared, capsys: pytest.CaptureFixture[str], columns: str, indexes: list[int]) -> None:
    expected = expected_diff(shared.source, shared.mysql, _project(indexes))
    assert expected.differing < shared.mysql_diff.differing  # some changes are outside the columns
    code, result = diff_json(capsys, shared.pg_url, shared.mysql_url, shared.table, "--columns", columns, *SMALL)
    assert code == 1
    assert found(result["targets"][0]) == expected


@pytest.mark.parametrize(
    ("ignore", "indexes"), [("updated_at", [1, 2, 3]), ("name,amount,status", [4]), ("status,name", [2, 4])]
)
def test_ignored_columns_are_not_compared(
    shared: Shared, capsys: pytest.CaptureFixture[str], ignore: str, indexes: list[int]
) -> None:
    expected = expected_diff(shared.source, shared.mysql, _project(indexes))
    assert expected.differing < shared.mysql_diff.differing
    code, result = diff_json(capsys, shared.pg_url, shared.mysql_url, shared.table, "--ignore", ignore, *SMALL)
    assert code == 1
    assert found(result["targets"][0]) == expected


def test_columns_and_ignore_hide_every_change(shared: Shared, capsys: pytest.CaptureFixture[str]) -> None:
    # Only missing and extra rows remain when no changed column is compared.
    code, result = diff_json(
        capsys, shared.pg_url, shared.mysql_url, shared.table, "--columns", "id,name", "--ignore", "name", *SMALL
    )
    assert code == 1
    assert found(result["targets"][0]) == Diff(shared.mysql_diff.missing, shared.mysql_diff.extra, set())


WHERES: list[tuple[str, Callable[[Row], bool]]] = [
    ("id > 100 AND status = 'open'", lambda r: r[0] > 100 and r[3] == "open"),
    ("status IN ('closed', 'pending') OR amount IS NULL", lambda r: r[3] in ("closed", "pending") or r[2] is None),
    ("NOT (id BETWEEN 300 AND 6000) AND name != 'name-3'", lambda r: not 300 <= r[0] <= 6000 and r[1] != "name-3"),
]


@pytest.mark.parametrize(("where", "predicate"), WHERES, ids=["and", "in-or-null", "not-between"])
def test_where_filters_both_sides(
    shared: Shared, capsys: pytest.CaptureFixture[str], where: str, predicate: Callable[[Row], bool]
) -> None:
    expected = expected_diff(shared.source, shared.mysql, where=predicate)
    assert 0 < expected.total < shared.mysql_diff.total + 10
    code, result = diff_json(capsys, shared.pg_url, shared.mysql_url, shared.table, "--where", where, *SMALL)
    assert code == 1
    assert found(result["targets"][0]) == expected
    selected = sum(1 for row in shared.source.values() if predicate(row))
    assert result["source"]["rows"] == result["targets"][0]["rows_compared"] == selected


@pytest.mark.parametrize(
    "options",
    [
        ("--reverse",),
        ("--reverse", "--threads", "3"),
        ("--threads", "3"),
        ("--threads", "3", "--chunk-size", "20", "--max-chunk-size", "20"),
    ],
    ids=["reverse", "reverse-threads", "threads", "threads-fixed-chunks"],
)
def test_reverse_and_threads_give_the_same_result(
    shared: Shared, capsys: pytest.CaptureFixture[str], options: tuple[str, ...]
) -> None:
    code, result = diff_json(
        capsys, shared.pg_url, [shared.mysql_url, shared.sqlite_url], shared.table, *SMALL, *options
    )
    assert code == 1
    assert found(result["targets"][0]) == shared.mysql_diff
    assert found(result["targets"][1]) == shared.sqlite_diff
    assert result["source"]["rows"] == 3000
    assert [t["rows_compared"] for t in result["targets"]] == [3000, 3000]


@pytest.mark.parametrize(
    ("factor", "threshold"), [("2", "1"), ("3", "7"), ("64", "10"), ("16", "5000")], ids=lambda v: v
)
def test_bisection_options_give_the_same_result(
    shared: Shared, capsys: pytest.CaptureFixture[str], factor: str, threshold: str
) -> None:
    code, result = diff_json(
        capsys,
        shared.pg_url,
        shared.mysql_url,
        shared.table,
        "--chunk-size",
        "300",
        "--bisection-factor",
        factor,
        "--bisection-threshold",
        threshold,
    )
    assert code == 1
    assert found(result["targets"][0]) == shared.mysql_diff
    assert result["targets"][0]["rows_compared"] == 3000


def test_chunk_size_options(shared: Shared, capsys: pytest.CaptureFixture[str]) -> None:
    # Fixed chunks: exactly ceil(rows / size) chunks of the walk.
    code, result = diff_json(
        capsys, shared.pg_url, shared.mysql_url, shared.table, "--chunk-size", "7", "--max-chunk-size", "7"
    )
    assert code == 1
    assert result["chunks"] == math.ceil(3000 / 7)
    assert found(result["targets"][0]) == shared.mysql_diff
    # Growing chunks stay within --max-chunk-size.
    code, result = diff_json(
        capsys, shared.pg_url, shared.mysql_url, shared.table, "--chunk-size", "10", "--max-chunk-size", "40"
    )
    assert code == 1
    assert math.ceil(3000 / 40) <= result["chunks"] <= 300
    assert found(result["targets"][0]) == shared.mysql_diff
    assert result["targets"][0]["rows_compared"] == 3000
    # One chunk for the whole table.
    code, result = diff_json(capsys, shared.pg_url, shared.mysql_url, shared.table, "--chunk-size", "100000")
    assert result["chunks"] == 1
    assert found(result["targets"][0]) == shared.mysql_diff


def test_stop_on_streak_stops_early(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    source = standard_rows(2000, step=1)  # keys 1 .. 2000
    target = dict(source)
    del target[(10,)]
    target[(50,)] = _replace(target[(50,)], 1, "changed")
    load(dbs.pg, table_name, source)
    load(dbs.mysql, table_name, target)
    fixed = ("--chunk-size", "100", "--max-chunk-size", "100", "--bisection-threshold", "10")

    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, "--stop-on-streak", "300", *fixed)
    assert code == 1
    assert result["stopped_on_streak"] is True
    assert found(result["targets"][0]) == Diff({(10,)}, set(), {(50,)})
    assert result["targets"][0]["rows_compared"] == 400  # the differing chunk and three identical ones
    assert result["source"]["rows"] == 400 < 2000

    # From the top, the streak is reached before the differences.
    code, result = diff_json(
        capsys, dbs.pg.url, dbs.mysql.url, table_name, "--stop-on-streak", "250", "--reverse", *fixed
    )
    assert code == 0
    assert result["stopped_on_streak"] is True
    assert result["targets"][0]["rows_compared"] == 300

    # A streak never reached: the whole table.
    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, "--stop-on-streak", "5000", *fixed)
    assert code == 1
    assert result["stopped_on_streak"] is False
    assert result["targets"][0]["rows_compared"] == 2000

    run = run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name, "--stop-on-streak", "300", *fixed)
    assert run.code == 1
    assert "stopped early" in run.out.splitlines()[0]


def _canonical(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, Decimal):
        text = f"{value:f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(value)


def test_sample_shows_differing_columns_values(shared: Shared, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = diff_json(capsys, shared.pg_url, shared.mysql_url, shared.table, "--sample", "5", *SMALL)
    assert code == 1
    samples = result["targets"][0]["samples"]
    assert len(samples) == 5
    for sample in samples:
        key = tuple(sample["key"])
        assert sample["kind"] == "differing"
        assert key in shared.mysql_diff.differing
        src, tgt = shared.source[key], shared.mysql[key]
        expected = {
            COLUMNS[i]: {"source": _canonical(src[i]), "target": _canonical(tgt[i])}
            for i in range(1, len(COLUMNS))
            if src[i] != tgt[i]
        }
        assert sample["columns"] == expected


def test_sample_covers_missing_and_extra_rows(shared: Shared, capsys: pytest.CaptureFixture[str]) -> None:
    code, result = diff_json(capsys, shared.pg_url, shared.sqlite_url, shared.table, "--sample", "100", *SMALL)
    assert code == 1
    samples = result["targets"][0]["samples"]
    assert len(samples) == shared.sqlite_diff.total
    by_kind: dict[str, set[Key]] = {"missing": set(), "extra": set(), "differing": set()}
    for sample in samples:
        key = tuple(sample["key"])
        by_kind[sample["kind"]].add(key)
        if sample["kind"] == "missing":
            row = shared.source[key]
            assert sample["columns"] == {
                COLUMNS[i]: {"source": _canonical(row[i]), "target": None} for i in range(1, len(COLUMNS))
            }
        elif sample["kind"] == "extra":
            row = shared.sqlite[key]
            assert sample["columns"] == {
                COLUMNS[i]: {"source": None, "target": _canonical(row[i])} for i in range(1, len(COLUMNS))
            }
    assert Diff(**by_kind) == shared.sqlite_diff


def test_jsonl_prints_one_line_per_difference(shared: Shared, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(
        capsys, shared.pg_url, shared.mysql_url, shared.sqlite_url, "--table", shared.table, "--format", "jsonl", *SMALL
    )
    assert run.code == 1, run.err
    lines = run.out.splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == shared.mysql_diff.total + shared.sqlite_diff.total
    for url, expected in ((shared.mysql_url, shared.mysql_diff), (shared.sqlite_url, shared.sqlite_diff)):
        mine = [r for r in records if r["target"] == url]
        got: dict[str, list[Key]] = {"missing": [], "extra": [], "differing": []}
        for record in mine:
            assert set(record) == {"target", "kind", "key"}
            got[record["kind"]].append(tuple(record["key"]))
        assert all(len(v) == len(set(v)) for v in got.values()), "a difference printed twice"
        assert Diff(*(set(got[k]) for k in ("missing", "extra", "differing"))) == expected


def test_text_format_is_the_default(shared: Shared, capsys: pytest.CaptureFixture[str]) -> None:
    run = run_cli(capsys, shared.pg_url, shared.mysql_url, "--table", shared.table, *SMALL)
    assert run.code == 1
    lines = run.out.splitlines()
    d = shared.mysql_diff
    assert lines[0].startswith(f"table {shared.table}: {d.total} differences; source {shared.pg_url}: 3,000 rows, "), (
        lines[0]
    )
    assert lines[1] == (
        f"target {shared.mysql_url}: 3,000 rows compared, {len(d.missing)} missing, {len(d.extra)} extra, "
        f"{len(d.differing)} differing"
    )
    assert any(line.strip().startswith("missing") and "[3]" in line for line in lines)
    assert "Traceback" not in run.err


def test_text_format_for_identical_tables(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    rows = standard_rows(50)
    load(dbs.sqlite, table_name, rows)
    load(dbs.sqlite2, table_name, rows)
    run = run_cli(capsys, dbs.sqlite.url, dbs.sqlite2.url, "--table", table_name, "--sample", "3")
    assert run.code == 0
    assert run.out.splitlines()[0].startswith(f"table {table_name}: 0 differences; source {dbs.sqlite.url}: 50 rows")
    assert f"target {dbs.sqlite2.url}: 50 rows compared, 0 missing, 0 extra, 0 differing" in run.out


# ---------------------------------------------------------------------------------------------
# 4. Resuming
# ---------------------------------------------------------------------------------------------


def _differ(shared: Shared, options: DiffOptions) -> Differ:
    return Differ(
        shared.table,
        lambda: open_connector(shared.pg_url, connect_timeout=5),
        [
            lambda: open_connector(shared.mysql_url, connect_timeout=5),
            lambda: open_connector(shared.sqlite_url, connect_timeout=5),
        ],
        options,
        source_label=shared.pg_url,
        target_labels=[shared.mysql_url, shared.sqlite_url],
    )


def _comparable(result: DiffResult) -> dict[str, Any]:
    data = result.model_dump(mode="json")
    # Work statistics, not results: they depend on timing (adaptive chunk sizes).
    for statistic in ("duration_s", "rows_read", "chunks"):
        del data[statistic]
    return data


@pytest.mark.parametrize(
    "options",
    [
        DiffOptions(chunk_size=60, max_chunk_size=60, bisection_threshold=10, bisection_factor=4),
        DiffOptions(chunk_size=40, max_chunk_size=40, bisection_threshold=5, threads=3, reverse=True, sample=3),
    ],
    ids=["forward", "reverse-threads"],
)
def test_engine_resumes_from_serialised_state(shared: Shared, options: DiffOptions) -> None:
    with _differ(shared, options) as differ:
        uninterrupted = differ.result(differ.run())

    differ = _differ(shared, options)
    state = differ.initial_state()
    reported: list[tuple[int, str, Key]] = []
    steps = 0
    try:
        while not state.done:
            before = state.model_dump_json()
            # A deadline that has passed already: one unit of work per step.
            state = differ.step(
                state,
                time.monotonic(),
                lambda t, kind, key: reported.append((t, kind, tuple(key))),
            )
            assert state.model_dump_json() != before, "a step made no progress"
            steps += 1
            if steps % 3 == 0:  # as after a crash: only the saved JSON survives
                state = DiffState.model_validate_json(state.model_dump_json())
                differ.close()
                differ = _differ(shared, options)
            assert steps < 5000
        resumed = differ.result(state)
    finally:
        differ.close()

    assert steps > 20  # the diff really was cut into many steps
    assert _comparable(resumed) == _comparable(uninterrupted)
    assert resumed.complete
    assert found(resumed.model_dump()["targets"][0]) == shared.mysql_diff
    assert found(resumed.model_dump()["targets"][1]) == shared.sqlite_diff
    assert resumed.source.rows == 3000
    assert [t.rows_compared for t in resumed.targets] == [3000, 3000]
    # Every difference was reported exactly once across all the steps.
    assert len(reported) == len(set(reported)) == shared.mysql_diff.total + shared.sqlite_diff.total


def test_engine_step_with_a_passed_deadline_still_does_one_unit(shared: Shared) -> None:
    options = DiffOptions(chunk_size=60, max_chunk_size=60, bisection_threshold=10)
    with _differ(shared, options) as differ:
        state = differ.initial_state()
        for _ in range(5):
            new_state = differ.step(state, time.monotonic() - 1)
            assert new_state.model_dump_json(exclude={"elapsed_s"}) != state.model_dump_json(exclude={"elapsed_s"}), (
                "step() with a passed deadline did no work: a caller whose time is short never progresses"
            )
            state = new_state
        assert state.chunks >= 1


def test_saved_state_of_another_diff_is_rejected(shared: Shared, tmp_path: Path) -> None:
    options = DiffOptions(chunk_size=60, max_chunk_size=60)
    with _differ(shared, options) as differ:
        state = differ.step(differ.initial_state(), time.monotonic() + 0.01)
    other = DiffOptions(chunk_size=60, max_chunk_size=60, where="id > 5")
    with _differ(shared, other) as differ, pytest.raises(StateError, match="different diff"):
        differ.step(state, time.monotonic() + 1)


def test_cli_resumes_after_kill_9(
    dbs: Any, table_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = 200_000
    ddl = "id integer PRIMARY KEY, v varchar(20) NOT NULL, n numeric(12,2)"
    dbs.pg.create(table_name, ddl)
    dbs.pg.execute(f"INSERT INTO {table_name} SELECT g, 'v' || g, (g % 1000) * 0.25 FROM generate_series(1, {rows}) g")
    dbs.mysql.create(table_name, ddl.replace("integer", "int"))
    dbs.mysql.execute(
        f"INSERT INTO {table_name} SELECT seq, CONCAT('v', seq), (seq % 1000) * 0.25 FROM seq_1_to_{rows}"
    )
    missing, changed, extra = [1, 7, 99_000, 199_999], [3, 100_001, 150_000, 200_000], [0, 200_500, 300_000]
    dbs.mysql.execute(f"DELETE FROM {table_name} WHERE id IN ({', '.join(map(str, missing))})")
    dbs.mysql.execute(f"UPDATE {table_name} SET v = 'changed' WHERE id IN ({', '.join(map(str, changed))})")
    dbs.mysql.insert(table_name, ["id", "v", "n"], [(k, "extra", 1) for k in extra])
    expected = Diff({(k,) for k in missing}, {(k,) for k in extra}, {(k,) for k in changed})

    state_file = tmp_path / "diff.state"
    command = [
        sys.executable,
        "-m",
        "tablesync.cli",
        "diff",
        dbs.pg.url,
        dbs.mysql.url,
        "--table",
        table_name,
        "--format",
        "json",
        "--state-file",
        str(state_file),
        "--chunk-size",
        "50",
        "--max-chunk-size",
        "50",
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        saved: DiffState | None = None
        while time.monotonic() < deadline and process.poll() is None:
            if state_file.exists():
                saved = DiffState.model_validate_json(state_file.read_text())
                if saved.source_rows > 0:
                    break
            time.sleep(0.05)
        time.sleep(0.3)  # kill it in the middle of a step, between two saves
        process.kill()  # SIGKILL: no handler runs
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == -9, f"the diff finished before it could be killed: {process.stderr.read()}"
    saved = DiffState.model_validate_json(state_file.read_text())
    assert 0 < saved.source_rows < rows
    assert not saved.done

    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 1, rerun.stderr
    assert rerun.stderr == ""
    resumed = json.loads(rerun.stdout)
    assert not state_file.exists()  # a finished diff removes its state

    code, uninterrupted = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name)
    assert code == 1
    for result in (resumed, uninterrupted):
        assert result["source"]["rows"] == rows
        assert result["targets"][0]["rows_compared"] == rows
        assert found(result["targets"][0]) == expected
        assert result["complete"] is True


# ---------------------------------------------------------------------------------------------
# 5. Bad input: one line on stderr, exit 2
# ---------------------------------------------------------------------------------------------


def test_unknown_table(shared: Shared, capsys: pytest.CaptureFixture[str]) -> None:
    for source, target in ((shared.pg_url, shared.mysql_url), (shared.mysql_url, shared.pg_url)):
        run = run_cli(capsys, source, target, "--table", "no_such_table_xyz")
        assert_clean_error(run, "unknown table", "no_such_table_xyz")
    run = run_cli(capsys, shared.pg_url, shared.sqlite_url, "--table", "no_such_table_xyz")
    assert_clean_error(run, "unknown table")


@pytest.mark.parametrize(
    ("options", "needles"),
    [
        (("--columns", "name,nosuch"), ("nosuch",)),
        (("--ignore", "nosuch"), ("nosuch",)),
        (("--where", "nosuch = 1"), ("nosuch",)),
        (("--where", "id >"), ("--where",)),
        (("--where", "id = 1; DROP TABLE x"), ("--where",)),
        (("--key", "nosuch"), ("nosuch",)),
        (("--chunk-size", "0"), ("--chunk-size",)),
        (("--chunk-size", "abc"), ("--chunk-size",)),
        (("--chunk-size", "100", "--max-chunk-size", "10"), ("--max-chunk-size",)),
        (("--bisection-factor", "1"), ("--bisection-factor",)),
        (("--threads", "0"), ("--threads",)),
        (("--sample", "-1"), ("--sample",)),
        (("--format", "xml"), ("--format",)),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, tuple) else v,
)
def test_bad_options(
    shared: Shared, capsys: pytest.CaptureFixture[str], options: tuple[str, ...], needles: tuple[str, ...]
) -> None:
    run = run_cli(capsys, shared.pg_url, shared.mysql_url, "--table", shared.table, *options)
    assert_clean_error(run, *needles)


def test_schema_mismatch_names_the_column_and_both_types(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dbs.pg.create(table_name, "id integer PRIMARY KEY, price numeric(10,2), note text")
    dbs.mysql.create(table_name, "id int PRIMARY KEY, price varchar(20), note text")
    run = run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name)
    assert_clean_error(run, "price", "numeric", "varchar")
    # Without the column the rest compares.
    code, _ = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, "--ignore", "price")
    assert code == 0

    dbs.mysql.create(table_name, "id int PRIMARY KEY, note text")
    run = run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name)
    assert_clean_error(run, "price", "missing")


@pytest.fixture(scope="module")
def mysql_user(mysql_admin: Any) -> Any:
    """A MariaDB user with a password (root has none); unique, so parallel runs do not collide."""
    name, password = f"ts_pw_{uuid.uuid4().hex[:6]}", "Rightpw-7731"
    with mysql_admin.cursor() as cur:
        for host in ("%", "localhost", "127.0.0.1"):
            cur.execute(f"CREATE USER '{name}'@'{host}' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT SELECT ON test.* TO '{name}'@'{host}'")
    yield name, password
    with mysql_admin.cursor() as cur:
        for host in ("%", "localhost", "127.0.0.1"):
            cur.execute(f"DROP USER IF EXISTS '{name}'@'{host}'")


def test_wrong_password(shared: Shared, mysql_user: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    user, _ = mysql_user
    for url, secret in (
        (f"mysql://{user}:wrongpw-0042@127.0.0.1:3306/test", "wrongpw-0042"),
        ("mysql://root:wrongpw-0043@127.0.0.1:3306/test", "wrongpw-0043"),
    ):
        run = run_cli(capsys, shared.pg_url, url, "--table", shared.table)
        line = assert_clean_error(run, "cannot connect", forbidden=[secret])
        assert "***" in line or "access denied" in line.lower()


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://postgres@127.0.0.1:1/test",
        "mysql://root@127.0.0.1:1/test",
        "mysql://root:Secret-unreach-5@127.0.0.1:1/test",
        "sqlite:////nonexistent/dir/none.db",
    ],
)
def test_unreachable_database(shared: Shared, capsys: pytest.CaptureFixture[str], url: str) -> None:
    started = time.monotonic()
    run = run_cli(capsys, shared.pg_url, url, "--table", shared.table, "--connect-timeout", "2")
    assert_clean_error(run, forbidden=["Secret-unreach-5"])
    assert time.monotonic() - started < 30


@pytest.mark.parametrize(
    "url",
    ["oracle://scott:tiger@127.0.0.1/orcl", "nonsense", "http://127.0.0.1/test", "postgresql://127.0.0.1:99999/test"],
)
def test_invalid_url(shared: Shared, capsys: pytest.CaptureFixture[str], url: str) -> None:
    run = run_cli(capsys, url, shared.mysql_url, "--table", shared.table)
    assert_clean_error(run, forbidden=["tiger"])


def test_bad_state_file(shared: Shared, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state_file = tmp_path / "state.json"
    state_file.write_text("not json at all")
    run = run_cli(capsys, shared.pg_url, shared.mysql_url, "--table", shared.table, "--state-file", str(state_file))
    assert_clean_error(run, "state")
    # A state saved by a different diff (other options) is refused, not silently mixed in.
    with _differ(shared, DiffOptions(chunk_size=100)) as differ:
        state_file.write_text(differ.initial_state().model_dump_json())
    run = run_cli(capsys, shared.pg_url, shared.mysql_url, "--table", shared.table, "--state-file", str(state_file))
    assert_clean_error(run, "different diff")


TRICKY_NAMES = ['x"; DROP TABLE {victim}; --', "q`; DROP TABLE {victim}; -- 50% 'it''s'"]


@pytest.mark.parametrize("pattern", TRICKY_NAMES, ids=["double-quote", "backtick-percent"])
def test_table_name_with_quotes_semicolons_and_spaces(
    dbs: Any, capsys: pytest.CaptureFixture[str], pattern: str
) -> None:
    victim = f"victim_{uuid.uuid4().hex[:8]}"
    name = pattern.format(victim=victim)
    for db in (dbs.pg, dbs.mysql):
        db.create(victim, "id integer PRIMARY KEY")
    run = run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", name)
    assert_clean_error(run, "unknown table")

    source = standard_rows(400)
    target, expected = drift(source, seed=3, missing=4, extra=3, differing=5)
    load(dbs.pg, name, source)
    load(dbs.mysql, name, target)
    load(dbs.sqlite, name, target)
    code, result = diff_json(capsys, dbs.pg.url, [dbs.mysql.url, dbs.sqlite.url], name, *SMALL, "--sample", "2")
    assert code == 1
    assert result["table"] == name
    for target_result in result["targets"]:
        assert found(target_result) == expected
        assert target_result["rows_compared"] == 400
    for db in (dbs.pg, dbs.mysql):
        assert db.count(victim) == 0  # still there


def test_errors_through_the_real_command(shared: Shared) -> None:
    """The installed command line, as a process: exit status 2 and one line for bad input."""
    for args in (
        ["--table", "no_such_table_xyz"],
        ["--table", shared.table, "--chunk-size", "0"],
        ["--table", shared.table, "--where", "nosuch = 1"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "tablesync.cli", "diff", shared.pg_url, shared.mysql_url, *args],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 2, proc
        assert proc.stdout == ""
        assert len(proc.stderr.splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr


# ---------------------------------------------------------------------------------------------
# 6. Passwords never shown
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "json", "jsonl"])
def test_password_in_url_is_never_shown(
    shared: Shared, mysql_user: tuple[str, str], capsys: pytest.CaptureFixture[str], fmt: str
) -> None:
    user, password = mysql_user
    pg_secret = "PgSecret-9911"  # PostgreSQL trusts 127.0.0.1: any password is accepted
    source = f"postgresql://postgres:{pg_secret}@127.0.0.1:5432/test"
    target = f"mysql://{user}:{password}@127.0.0.1:3306/test"
    run = run_cli(capsys, source, target, "--table", shared.table, "--format", fmt, "--sample", "3", *SMALL)
    assert run.code == 1, run.err
    for secret in (pg_secret, password):
        assert secret not in run.out
        assert secret not in run.err
    if fmt == "json":
        result = run.json()
        assert result["source"]["url"] == "postgresql://postgres:***@127.0.0.1:5432/test"
        assert result["targets"][0]["url"] == f"mysql://{user}:***@127.0.0.1:3306/test"
        assert found(result["targets"][0]) == shared.mysql_diff


def test_password_from_environment(
    shared: Shared, mysql_user: tuple[str, str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, password = mysql_user
    monkeypatch.setenv("TS_TEST_MYSQL_PW", password)
    monkeypatch.setenv("TS_TEST_PG_PW", "PgEnvSecret-3")
    source = "postgresql://postgres@127.0.0.1:5432/test?password_env=TS_TEST_PG_PW"
    target = f"mysql://{user}@127.0.0.1:3306/test?password_env=TS_TEST_MYSQL_PW"
    for fmt in ("json", "text", "jsonl"):
        run = run_cli(capsys, source, target, "--table", shared.table, "--format", fmt, "--sample", "2", *SMALL)
        assert run.code == 1, run.err
        for secret in (password, "PgEnvSecret-3"):
            assert secret not in run.out + run.err
        if fmt == "json":
            assert found(run.json()["targets"][0]) == shared.mysql_diff

    monkeypatch.setenv("TS_TEST_MYSQL_PW", "Wrong-env-pw-77")
    run = run_cli(capsys, source, target, "--table", shared.table)
    assert_clean_error(run, "cannot connect", forbidden=["Wrong-env-pw-77", password])

    monkeypatch.delenv("TS_TEST_MYSQL_PW")
    run = run_cli(capsys, source, target, "--table", shared.table)
    assert_clean_error(run, "TS_TEST_MYSQL_PW")

    # A failure after connecting (unknown table) shows the URL without the password too.
    monkeypatch.setenv("TS_TEST_MYSQL_PW", password)
    run = run_cli(capsys, target, source, "--table", "no_such_table_xyz")
    assert_clean_error(run, "unknown table", forbidden=[password, "PgEnvSecret-3"])
