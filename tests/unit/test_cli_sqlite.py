"""`tablesync diff` end to end on SQLite files, through `tablesync.cli.main`."""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from tablesync.cli import main
from tablesync.connectors import open_connector
from tablesync.engine import Differ
from tablesync.models import DiffOptions, DiffState
from tablesync.urls import parse_url

TIME_LIMIT = 15.0  # seconds for one command; a hung diff fails its test instead of the whole run


class _Hung(BaseException):
    """Raised in the main thread when a command runs past its time limit (not an Exception, so
    the CLI's catch-all cannot turn it into an exit status)."""


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def on_alarm(signum: int, frame: object) -> None:
        raise _Hung

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Hung:
        pytest.fail(f"tablesync did not finish within {seconds:.0f} s", pytrace=False)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@dataclass
class Run:
    status: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.out)


def cli(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> Run:
    """Runs main() and returns its exit status and output. argparse reports bad options by
    raising SystemExit from parse_args; its code is the exit status the user sees."""
    with time_limit(TIME_LIMIT):
        try:
            status = main([str(a) for a in argv])
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return Run(status, out, err)


def url(path: Path) -> str:
    return f"sqlite:///{path}"


def diff(capsys: pytest.CaptureFixture[str], source: Path, target: Path | list[Path], *options: str) -> Run:
    targets = target if isinstance(target, list) else [target]
    return cli(capsys, "diff", url(source), *(url(t) for t in targets), *options)


def create(path: Path, ddl: str, rows: list[tuple[Any, ...]]) -> None:
    """Creates the table of `ddl` ("CREATE TABLE name (...)") and inserts the rows."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(ddl)
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            table = ddl[len("CREATE TABLE ") : ddl.index(" (")]
            conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)
        conn.commit()


def ids(keys: list[list[Any]]) -> list[Any]:
    return [k[0] for k in keys]


def assert_clean_error(run: Run) -> None:
    """Exit 2, nothing on stdout, one line on stderr, no traceback."""
    assert run.status == 2, (run.status, run.out, run.err)
    assert run.out == ""
    assert run.err.endswith("\n") and run.err.count("\n") == 1, repr(run.err)
    assert run.err.startswith("tablesync: error: ")
    assert "Traceback" not in run.err


# --- a table of a few thousand rows with scattered drift -----------------------------------------

N = 3000
COMPARED = ["name", "status", "amount", "score", "note", "data", "created", "doc"]
ITEMS_DDL = """CREATE TABLE {table} (
    id INTEGER{pk},
    name VARCHAR(40) NOT NULL,
    status TEXT,
    amount NUMERIC(12, 2),
    score DOUBLE,
    note TEXT,
    data BLOB,
    created TIMESTAMP,
    doc JSON
)"""


def item(i: int) -> dict[str, Any]:
    return {
        "id": i,
        "name": f"Customer {i}",
        "status": "open" if i % 3 else "closed",
        "amount": f"{abs(i) % 1000}.{abs(i) % 100:02d}",
        "score": i / 7,
        "note": None if i % 11 == 0 else f"note {i}",
        "data": (i % 2**32).to_bytes(4, "big"),
        "created": f"2026-01-{1 + abs(i) % 28:02d} {abs(i) % 24:02d}:{abs(i) % 60:02d}:00.{abs(i):06d}",
        "doc": json.dumps({"n": i, "tags": ["a", "b"]}),
    }


def _bump_created(text: str) -> str:
    return text[:-1] + str((int(text[-1]) + 1) % 10)


MUTATIONS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "name": lambda r: r["name"] + " ",
    "amount": lambda r: str(Decimal(r["amount"]) + Decimal("0.01")),
    "score": lambda r: math.nextafter(r["score"], math.inf),
    "note": lambda r: "" if r["note"] is None else None,
    "data": lambda r: r["data"] + b"\x00",
    "created": lambda r: _bump_created(r["created"]),
    "doc": lambda r: json.dumps({"n": r["id"] + 1, "tags": ["a", "b"]}),
}


@dataclass
class Drift:
    source: Path
    target: Path
    source_rows: dict[int, dict[str, Any]]
    target_rows: dict[int, dict[str, Any]]
    changed: dict[int, set[str]]

    def expected(
        self, columns: list[str] | None = None, where: Callable[[dict[str, Any]], bool] = lambda r: True
    ) -> dict[str, list[int]]:
        compared = set(columns or COMPARED)
        src = {k for k, r in self.source_rows.items() if where(r)}
        tgt = {k for k, r in self.target_rows.items() if where(r)}
        return {
            "missing": sorted(src - tgt),
            "extra": sorted(tgt - src),
            "differing": sorted(k for k in src & tgt if self.changed.get(k, set()) & compared),
        }

    def source_count(self, where: Callable[[dict[str, Any]], bool] = lambda r: True) -> int:
        return sum(1 for r in self.source_rows.values() if where(r))


def _insert(path: Path, table: str, rows: dict[int, dict[str, Any]]) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.executemany(
            f"INSERT INTO {table} VALUES (:id, :name, :status, :amount, :score, :note, :data, :created, :doc)",
            [rows[k] for k in sorted(rows)],
        )
        conn.commit()


@pytest.fixture(scope="module")
def drift(tmp_path_factory: pytest.TempPathFactory) -> Drift:
    folder = tmp_path_factory.mktemp("drift")
    source, target = folder / "source.db", folder / "target.db"
    rng = random.Random(20260105)
    source_rows = {i: item(i) for i in range(1, N + 1) if i % 250 != 125}  # 12 gaps
    target_rows = {i: dict(r) for i, r in source_rows.items()}
    changed: dict[int, set[str]] = {}
    moved_from, moved_to = 2000, 2125  # the same values under another key: missing plus extra
    free = [i for i in source_rows if i not in (1, N, moved_from)]
    rng.shuffle(free)
    missing = [1, N, moved_from, *free[:10]]
    del free[:10]
    for i in missing:
        del target_rows[i]
    target_rows[moved_to] = {**source_rows[moved_from], "id": moved_to}
    for i in (-7, 0, 375, 1625, 2875, N + 1, N + 500):
        target_rows[i] = item(i)
    for column, mutate in MUTATIONS.items():
        for i in free[:3]:
            target_rows[i][column] = mutate(target_rows[i])
            changed[i] = {column}
        del free[:3]
    for i in free[:2]:  # two columns at once
        for column in ("name", "score"):
            target_rows[i][column] = MUTATIONS[column](target_rows[i])
        changed[i] = {"name", "score"}
    del free[:2]
    for i in free[:4]:  # other spellings of the same values: no difference
        row = target_rows[i]
        row["created"] = row["created"].replace(" ", "T")
        row["doc"] = json.dumps({"tags": ["a", "b"], "n": float(i)}, indent=2)
        row["amount"] = str(Decimal(row["amount"]).quantize(Decimal("0.0001")))
    for path, rows in ((source, source_rows), (target, target_rows)):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute(ITEMS_DDL.format(table="items", pk=" PRIMARY KEY"))
            conn.execute(ITEMS_DDL.format(table="items_nopk", pk=""))
        _insert(path, "items", rows)
        _insert(path, "items_nopk", rows)
    return Drift(source, target, source_rows, target_rows, changed)


def check_result(run: Run, drift: Drift, expected: dict[str, list[int]], source_rows: int) -> dict[str, Any]:
    assert run.err == ""
    result = run.json()
    (target,) = result["targets"]
    assert {kind: ids(target[kind]) for kind in ("missing", "extra", "differing")} == expected
    assert result["source"] == {"url": url(drift.source), "rows": source_rows}
    assert target["url"] == url(drift.target)
    assert target["rows_compared"] == source_rows
    assert run.status == (1 if any(expected.values()) else 0)
    return result


def test_drift_is_found_exactly(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "json")
    result = check_result(run, drift, drift.expected(), len(drift.source_rows))
    assert set(result) >= {"table", "source", "targets", "duration_s"}
    assert result["table"] == "items"
    assert set(result["source"]) == {"url", "rows"}
    (target,) = result["targets"]
    assert set(target) == {"url", "rows_compared", "missing", "extra", "differing", "samples", "target_only_columns"}
    assert target["samples"] == []
    assert isinstance(result["duration_s"], int | float) and result["duration_s"] >= 0
    assert result.get("complete", True) is True
    assert result.get("stopped_on_streak", False) is False


def test_moved_row_is_missing_and_extra(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    """A row that moved to another key with the same values is not a no-op."""
    result = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "json").json()
    (target,) = result["targets"]
    assert [2000] in target["missing"]
    assert [2125] in target["extra"]


def test_row_moved_to_another_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Same row count and the same values, but one row now has another key: both the missing and
    the extra key are reported (the key is part of what is compared)."""
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = "CREATE TABLE m (id INTEGER PRIMARY KEY, v TEXT)"
    rows = [(i, f"v{i}") for i in range(1, 101)]
    create(source, ddl, rows)
    create(target, ddl, [(150, "v50") if i == 50 else (i, v) for i, v in rows])
    run = diff(capsys, source, target, "--table", "m", "--format", "json")
    assert run.status == 1, run.out
    (got,) = run.json()["targets"]
    assert (ids(got["missing"]), ids(got["extra"]), got["differing"]) == ([50], [150], [])


def test_rows_swapped_between_keys(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = "CREATE TABLE m (id INTEGER PRIMARY KEY, v TEXT)"
    rows = [(i, f"v{i}") for i in range(1, 101)]
    create(source, ddl, rows)
    create(target, ddl, [(i, {10: "v20", 20: "v10"}.get(i, v)) for i, v in rows])
    run = diff(capsys, source, target, "--table", "m", "--format", "json")
    assert run.status == 1, run.out
    assert ids(run.json()["targets"][0]["differing"]) == [10, 20]


OPTION_SETS = {
    "reverse": ["--reverse"],
    "small-chunks": ["--chunk-size", "7", "--max-chunk-size", "20"],
    "bisection-factor-3": ["--bisection-factor", "3"],
    "bisection-threshold-5": ["--bisection-threshold", "5"],
    "threads-4": ["--threads", "4"],
    "chunk-7-threshold-5": ["--chunk-size", "7", "--max-chunk-size", "7", "--bisection-threshold", "5"],
    "factor-2-threshold-1": ["--bisection-factor", "2", "--bisection-threshold", "1"],
    "fixed-chunks-of-100": ["--chunk-size", "100", "--max-chunk-size", "100"],
    "everything": [
        *["--reverse", "--threads", "4", "--chunk-size", "7", "--max-chunk-size", "20"],
        *["--bisection-factor", "3", "--bisection-threshold", "5"],
    ],
}


@pytest.mark.parametrize("options", list(OPTION_SETS.values()), ids=list(OPTION_SETS))
def test_walk_options_give_the_same_result(
    capsys: pytest.CaptureFixture[str], drift: Drift, options: list[str]
) -> None:
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "json", *options)
    check_result(run, drift, drift.expected(), len(drift.source_rows))


def test_key_on_a_table_without_primary_key(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    run = diff(capsys, drift.source, drift.target, "--table", "items_nopk", "--key", "id", "--format", "json")
    check_result(run, drift, drift.expected(), len(drift.source_rows))


def test_key_with_reverse_and_threads(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    options = ["--key", "id", "--reverse", "--threads", "4", "--chunk-size", "50", "--max-chunk-size", "50"]
    run = diff(capsys, drift.source, drift.target, "--table", "items_nopk", "--format", "json", *options)
    check_result(run, drift, drift.expected(), len(drift.source_rows))


def test_key_that_is_the_primary_key(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--key", "id", "--format", "json")
    check_result(run, drift, drift.expected(), len(drift.source_rows))


@pytest.mark.parametrize(
    "columns",
    [
        ["name"],
        ["score", "note"],
        ["amount", "created", "doc"],
        ["data"],
        ["status"],
        ["NAME", "Score"],
        ["id", "note"],
    ],
    ids=lambda c: ",".join(c),
)
def test_columns(capsys: pytest.CaptureFixture[str], drift: Drift, columns: list[str]) -> None:
    run = diff(
        capsys, drift.source, drift.target, "--table", "items", "--format", "json", "--columns", ",".join(columns)
    )
    compared = [c.lower() for c in columns if c != "id"]
    check_result(run, drift, drift.expected(compared), len(drift.source_rows))


@pytest.mark.parametrize(
    "ignored",
    [["name"], ["name", "score"], ["note", "data", "doc"], [c for c in COMPARED if c != "created"], COMPARED],
    ids=lambda c: ",".join(c),
)
def test_ignore(capsys: pytest.CaptureFixture[str], drift: Drift, ignored: list[str]) -> None:
    run = diff(
        capsys, drift.source, drift.target, "--table", "items", "--format", "json", "--ignore", ",".join(ignored)
    )
    compared = [c for c in COMPARED if c not in ignored]
    expected = drift.expected(compared) if compared else {**drift.expected(), "differing": []}
    check_result(run, drift, expected, len(drift.source_rows))


def test_columns_and_ignore_together(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    options = ["--columns", "name,score,note", "--ignore", "score", "--threads", "2", "--reverse"]
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "json", *options)
    check_result(run, drift, drift.expected(["name", "note"]), len(drift.source_rows))


WHERES: dict[str, tuple[str, Callable[[dict[str, Any]], bool]]] = {
    "between": (
        "status = 'open' AND id BETWEEN 500 AND 2500",
        lambda r: r["status"] == "open" and 500 <= r["id"] <= 2500,
    ),
    "or-not-in": (
        "NOT (status = 'closed') OR id IN (1, 2, 3000, 3001) OR id < 40",
        lambda r: r["status"] != "closed" or r["id"] in (1, 2, 3000, 3001) or r["id"] < 40,
    ),
    "not-in-null": (
        'id NOT IN (5, 6, 7) AND "status" IS NOT NULL AND `id` >= -100 AND id <> 1500',
        lambda r: r["id"] not in (5, 6, 7) and r["id"] >= -100 and r["id"] != 1500,
    ),
    "upper-case-column": (
        "ID > 2900 OR Status = 'closed' AND ID <= 100",
        lambda r: r["id"] > 2900 or (r["status"] == "closed" and r["id"] <= 100),
    ),
    "no-rows": ("id > 100000", lambda r: False),
}


@pytest.mark.parametrize("case", list(WHERES.values()), ids=list(WHERES))
@pytest.mark.parametrize(
    "options", [[], ["--reverse", "--chunk-size", "50", "--max-chunk-size", "50"]], ids=["", "rev"]
)
def test_where(
    capsys: pytest.CaptureFixture[str],
    drift: Drift,
    case: tuple[str, Callable[[dict[str, Any]], bool]],
    options: list[str],
) -> None:
    text, predicate = case
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "json", "--where", text, *options)
    check_result(run, drift, drift.expected(where=predicate), drift.source_count(predicate))


def test_where_on_a_column_that_is_not_compared(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    options = ["--where", "status = 'closed'", "--columns", "name", "--ignore", "status"]
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "json", *options)
    predicate: Callable[[dict[str, Any]], bool] = lambda r: r["status"] == "closed"  # noqa: E731
    check_result(run, drift, drift.expected(["name"], where=predicate), drift.source_count(predicate))


def test_where_with_a_decimal_literal(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "json", "--where", "score >= 100.5")
    predicate: Callable[[dict[str, Any]], bool] = lambda r: r["score"] >= 100.5  # noqa: E731
    check_result(run, drift, drift.expected(where=predicate), drift.source_count(predicate))


def test_where_with_a_boolean_literal(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = "CREATE TABLE flags (id INTEGER PRIMARY KEY, active BOOLEAN, v TEXT)"
    create(source, ddl, [(i, i % 2, f"v{i}") for i in range(1, 21)])
    create(target, ddl, [(i, i % 2, f"v{i}" if i not in (3, 4) else "x") for i in range(1, 21)])
    run = diff(capsys, source, target, "--table", "flags", "--format", "json", "--where", "active = TRUE")
    assert run.status == 1, run.err
    assert ids(run.json()["targets"][0]["differing"]) == [3]
    assert run.json()["source"]["rows"] == 10


def test_where_string_is_a_value_not_sql(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    text = "name = 'x''; DROP TABLE items; --' OR name = 'Customer 10'"
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "json", "--where", text)
    predicate: Callable[[dict[str, Any]], bool] = lambda r: r["name"] == "Customer 10"  # noqa: E731
    check_result(run, drift, drift.expected(where=predicate), 1)
    with contextlib.closing(sqlite3.connect(drift.source)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == len(drift.source_rows)


def test_quoted_column_names(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = 'CREATE TABLE "odd table" ("the id" INTEGER PRIMARY KEY, "unit price" INTEGER, "a""b" TEXT)'
    create(source, ddl, [(i, i * 10, f"v{i}") for i in range(1, 101)])
    create(target, ddl, [(i, i * 10 + (i == 70), f"v{i}" if i != 20 else "w") for i in range(1, 101)])
    run = diff(capsys, source, target, "--table", "odd table", "--format", "json")
    assert run.status == 1, run.err
    assert ids(run.json()["targets"][0]["differing"]) == [20, 70]
    run = diff(capsys, source, target, "--table", "odd table", "--format", "json", "--where", '"unit price" > 300')
    assert ids(run.json()["targets"][0]["differing"]) == [70]
    run = diff(capsys, source, target, "--table", "odd table", "--format", "json", "--columns", 'a"b')
    assert ids(run.json()["targets"][0]["differing"]) == [20]


# --- --stop-on-streak ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def early(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """3000 rows whose drift is all among the first 600 keys."""
    folder = tmp_path_factory.mktemp("early")
    source, target = folder / "source.db", folder / "target.db"
    ddl = "CREATE TABLE early (id INTEGER PRIMARY KEY, v TEXT)"
    rows = [(i, f"value {i}") for i in range(1, 3001)]
    create(source, ddl, rows)
    create(
        target, ddl, [(i, v if i not in (120, 599) else v + "!") for i, v in rows if i not in (50, 333)] + [(0, "x")]
    )
    return source, target


EARLY_EXPECTED = {"missing": [50, 333], "extra": [0], "differing": [120, 599]}
FIXED_100 = ["--chunk-size", "100", "--max-chunk-size", "100"]


def test_stop_on_streak_stops_after_the_drift(capsys: pytest.CaptureFixture[str], early: tuple[Path, Path]) -> None:
    run = diff(capsys, *early, "--table", "early", "--format", "json", "--stop-on-streak", "500", *FIXED_100)
    assert run.status == 1, run.err
    result = run.json()
    (target,) = result["targets"]
    assert {kind: ids(target[kind]) for kind in EARLY_EXPECTED} == EARLY_EXPECTED
    assert result["stopped_on_streak"] is True
    assert 600 + 500 <= result["source"]["rows"] <= 600 + 500 + 100
    assert target["rows_compared"] == result["source"]["rows"]


def test_stop_on_streak_in_reverse_stops_before_the_drift(
    capsys: pytest.CaptureFixture[str], early: tuple[Path, Path]
) -> None:
    run = diff(
        capsys, *early, "--table", "early", "--format", "json", "--stop-on-streak", "500", "--reverse", *FIXED_100
    )
    assert run.status == 0, run.err
    result = run.json()
    (target,) = result["targets"]
    assert target["missing"] == target["extra"] == target["differing"] == []
    assert result["stopped_on_streak"] is True
    assert 500 <= result["source"]["rows"] < 3000


def test_stop_on_streak_longer_than_the_table(capsys: pytest.CaptureFixture[str], early: tuple[Path, Path]) -> None:
    run = diff(capsys, *early, "--table", "early", "--format", "json", "--stop-on-streak", "100000", *FIXED_100)
    assert run.status == 1, run.err
    result = run.json()
    (target,) = result["targets"]
    assert {kind: ids(target[kind]) for kind in EARLY_EXPECTED} == EARLY_EXPECTED
    assert result["stopped_on_streak"] is False
    assert result["complete"] is True
    assert result["source"]["rows"] == 3000


def test_stop_on_streak_text_output(capsys: pytest.CaptureFixture[str], early: tuple[Path, Path]) -> None:
    run = diff(capsys, *early, "--table", "early", "--stop-on-streak", "500", *FIXED_100)
    assert run.status == 1
    assert "stopped early" in run.out.splitlines()[0]


# --- output formats ------------------------------------------------------------------------------


def test_identical_copies(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    for fmt in ("text", "json", "jsonl"):
        run = diff(capsys, drift.source, drift.source, "--table", "items", "--format", fmt)
        assert run.status == 0, run.err
        assert run.err == ""
        if fmt == "json":
            (target,) = run.json()["targets"]
            assert target["missing"] == target["extra"] == target["differing"] == []
            assert target["rows_compared"] == len(drift.source_rows)
        elif fmt == "jsonl":
            assert run.out == ""
        else:
            assert run.out.startswith("table items: 0 differences;")
            assert "0 missing, 0 extra, 0 differing" in run.out


def test_jsonl_lines(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "jsonl")
    assert run.status == 1
    lines = [json.loads(line) for line in run.out.splitlines()]
    assert all(set(line) == {"target", "kind", "key"} for line in lines)
    assert {line["target"] for line in lines} == {url(drift.target)}
    expected = drift.expected()
    got = {kind: sorted(line["key"][0] for line in lines if line["kind"] == kind) for kind in expected}
    assert got == expected
    assert len(lines) == sum(len(v) for v in expected.values()), "each difference once"


def test_text_output(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    run = diff(capsys, drift.source, drift.target, "--table", "items")
    assert run.status == 1
    expected = drift.expected()
    total = sum(len(v) for v in expected.values())
    lines = run.out.splitlines()
    assert lines[0].startswith(
        f"table items: {total} differences; source {url(drift.source)}: {len(drift.source_rows):,} rows, "
    )
    assert lines[1] == (
        f"target {url(drift.target)}: {len(drift.source_rows):,} rows compared, {len(expected['missing'])} missing, "
        f"{len(expected['extra'])} extra, {len(expected['differing'])} differing"
    )
    for kind in ("missing", "extra", "differing"):
        keys = expected[kind]
        (line,) = [x for x in lines if x.startswith(f"  {kind} ")]
        shown = " ".join(f"[{k}]" for k in keys[:20])
        assert line.startswith(f"  {kind:<10} {shown}")
        if len(keys) > 20:
            assert line.endswith(f" ... and {len(keys) - 20} more (--format json lists all)")


def test_two_targets(capsys: pytest.CaptureFixture[str], drift: Drift) -> None:
    run = diff(capsys, drift.source, [drift.source, drift.target], "--table", "items", "--format", "json")
    assert run.status == 1
    first, second = run.json()["targets"]
    assert first["url"] == url(drift.source)
    assert first["missing"] == first["extra"] == first["differing"] == []
    assert {k: ids(second[k]) for k in ("missing", "extra", "differing")} == drift.expected()
    text = diff(capsys, drift.source, [drift.target, drift.source], "--table", "items")
    assert text.status == 1
    assert sum(line.startswith("target ") for line in text.out.splitlines()) == 2


# --- samples -------------------------------------------------------------------------------------


@pytest.fixture
def people(tmp_path: Path) -> tuple[Path, Path]:
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT, score REAL, note TEXT)"
    rows = [(i, chr(ord("a") + i), i / 2, None) for i in range(1, 11)]
    create(source, ddl, rows)
    changed = {3: (3, "d ", 1.5, None), 5: (5, "F", 2.25, None)}
    create(target, ddl, [changed.get(r[0], r) for r in rows if r[0] != 7] + [(11, "l", 5.5, "new")])
    return source, target


def test_sample_shows_the_differing_columns(capsys: pytest.CaptureFixture[str], people: tuple[Path, Path]) -> None:
    run = diff(capsys, *people, "--table", "people", "--format", "json", "--sample", "2")
    assert run.status == 1, run.err
    (target,) = run.json()["targets"]
    assert ids(target["missing"]) == [7] and ids(target["extra"]) == [11] and ids(target["differing"]) == [3, 5]
    samples = target["samples"]
    assert len(samples) == 2
    assert [(s["kind"], s["key"]) for s in samples] == [("differing", [3]), ("differing", [5])]
    assert samples[0]["columns"] == {"name": {"source": "d", "target": "d "}}
    assert set(samples[1]["columns"]) == {"name", "score"}
    assert samples[1]["columns"]["name"] == {"source": "f", "target": "F"}
    score = samples[1]["columns"]["score"]
    assert score["source"] != score["target"]


def test_sample_of_missing_and_extra_rows(capsys: pytest.CaptureFixture[str], people: tuple[Path, Path]) -> None:
    run = diff(capsys, *people, "--table", "people", "--format", "json", "--sample", "10")
    (target,) = run.json()["targets"]
    by_kind = {s["kind"]: s for s in target["samples"]}
    assert len(target["samples"]) == 4
    assert by_kind["missing"]["key"] == [7]
    assert by_kind["missing"]["columns"] == {
        "name": {"source": "h", "target": None},
        "score": {"source": by_kind["missing"]["columns"]["score"]["source"], "target": None},
        "note": {"source": None, "target": None},
    }
    assert by_kind["extra"]["key"] == [11]
    assert by_kind["extra"]["columns"]["name"] == {"source": None, "target": "l"}
    assert by_kind["extra"]["columns"]["note"] == {"source": None, "target": "new"}


def test_sample_in_text_output(capsys: pytest.CaptureFixture[str], people: tuple[Path, Path]) -> None:
    run = diff(capsys, *people, "--table", "people", "--sample", "2")
    assert run.status == 1
    assert "  sample differing [3]" in run.out
    assert "      name: source 'd'  target 'd '" in run.out
    assert "  sample differing [5]" in run.out
    assert "sample missing" not in run.out


def test_no_samples_by_default(capsys: pytest.CaptureFixture[str], people: tuple[Path, Path]) -> None:
    run = diff(capsys, *people, "--table", "people")
    assert run.status == 1
    assert "  sample " not in run.out


# --- keys ----------------------------------------------------------------------------------------


def test_composite_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = "CREATE TABLE orders (region TEXT, id INTEGER, qty INTEGER, PRIMARY KEY (region, id))"
    regions = ["eu", "us", "apac", "EU", ""]
    rows = {(r, i): (r, i, i * 3) for r in regions for i in range(200)}
    target_rows = dict(rows)
    for key in [("us", 17), ("apac", 0), ("us", 18), ("", 199)]:
        del target_rows[key]
    target_rows[("us", 1000)] = ("us", 1000, 18 * 3)  # the row of ('us', 18), moved
    for key in [("eu", 200), ("zz", 1), ("EU", -1), ("a", 5)]:
        target_rows[key] = (*key, 1)
    for key in [("eu", 5), ("", 150), ("EU", 199)]:
        target_rows[key] = (*key, -1)
    create(source, ddl, list(rows.values()))
    create(target, ddl, list(target_rows.values()))
    expected = {
        "missing": [["", 199], ["apac", 0], ["us", 17], ["us", 18]],
        "extra": [["EU", -1], ["a", 5], ["eu", 200], ["us", 1000], ["zz", 1]],
        "differing": [["", 150], ["EU", 199], ["eu", 5]],
    }
    for options in (
        [],
        ["--reverse"],
        ["--chunk-size", "7", "--max-chunk-size", "20", "--bisection-factor", "3", "--bisection-threshold", "5"],
        ["--threads", "4", "--reverse", "--chunk-size", "30", "--max-chunk-size", "30"],
    ):
        run = diff(capsys, source, target, "--table", "orders", "--format", "json", *options)
        assert run.status == 1, (options, run.err)
        result = run.json()
        (got,) = result["targets"]
        assert {k: got[k] for k in expected} == expected, options
        assert result["source"]["rows"] == len(rows)
    run = diff(capsys, source, target, "--table", "orders", "--format", "json", "--sample", "20")
    samples = {(s["kind"], tuple(s["key"])): s["columns"] for s in run.json()["targets"][0]["samples"]}
    assert len(samples) == 12
    assert samples[("differing", ("eu", 5))] == {"qty": {"source": "15", "target": "-1"}}
    assert samples[("missing", ("us", 17))] == {"qty": {"source": "51", "target": None}}
    assert samples[("extra", ("zz", 1))] == {"qty": {"source": None, "target": "1"}}


TEXT_KEYS = ["", " ", "a", "A", "a ", "b", "B", "a|b", "é", "e\u0301", "z", "ä", "中", "a b", "Z", "😀", "0", "10", "9"]


@pytest.mark.parametrize(
    "options",
    [
        [],
        ["--reverse"],
        ["--chunk-size", "2", "--max-chunk-size", "3", "--bisection-factor", "2", "--bisection-threshold", "1"],
    ],
    ids=["", "reverse", "tiny"],
)
def test_text_key(capsys: pytest.CaptureFixture[str], tmp_path: Path, options: list[str]) -> None:
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = "CREATE TABLE words (k TEXT PRIMARY KEY, v INTEGER)"
    create(source, ddl, [(k, i) for i, k in enumerate(TEXT_KEYS)])
    target_rows = [(k, 99 if k in ("ä", "A", "") else i) for i, k in enumerate(TEXT_KEYS) if k not in ("中", "a ", "9")]
    create(target, ddl, [*target_rows, ("new", 1), ("C", 2), ("a  ", 3)])
    run = diff(capsys, source, target, "--table", "words", "--format", "json", *options)
    assert run.status == 1, run.err
    (got,) = run.json()["targets"]
    assert got["missing"] == [["9"], ["a "], ["中"]]
    assert got["extra"] == [["C"], ["a  "], ["new"]]
    assert got["differing"] == [[""], ["A"], ["ä"]]
    assert got["rows_compared"] == len(TEXT_KEYS)


def test_uuid_key(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = "CREATE TABLE things (id UUID PRIMARY KEY, v INTEGER)"
    keys = [f"{i:08x}-0000-4000-8000-{i * 7919:012x}" for i in range(300)]
    create(source, ddl, [(k, i) for i, k in enumerate(keys)])
    create(target, ddl, [(k, i + (i == 250)) for i, k in enumerate(keys) if i != 10])
    run = diff(capsys, source, target, "--table", "things", "--format", "json", "--chunk-size", "50")
    assert run.status == 1, run.err
    (got,) = run.json()["targets"]
    assert got["missing"] == [[keys[10]]]
    assert got["differing"] == [[keys[250]]]


# --- empty tables --------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [[], ["--reverse"]], ids=["", "reverse"])
def test_empty_tables(capsys: pytest.CaptureFixture[str], tmp_path: Path, options: list[str]) -> None:
    empty, full = tmp_path / "empty.db", tmp_path / "full.db"
    ddl = "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"
    create(empty, ddl, [])
    create(full, ddl, [(i, f"v{i}") for i in range(1, 6)])

    run = diff(capsys, empty, empty, "--table", "t", "--format", "json", *options)
    assert run.status == 0, run.err
    result = run.json()
    assert result["source"]["rows"] == 0
    assert result["targets"][0]["rows_compared"] == 0

    run = diff(capsys, empty, full, "--table", "t", "--format", "json", *options)
    assert run.status == 1
    (target,) = run.json()["targets"]
    assert ids(target["extra"]) == [1, 2, 3, 4, 5]
    assert target["missing"] == target["differing"] == []

    run = diff(capsys, full, empty, "--table", "t", "--format", "json", *options)
    assert run.status == 1
    result = run.json()
    assert ids(result["targets"][0]["missing"]) == [1, 2, 3, 4, 5]
    assert result["source"]["rows"] == 5

    run = diff(capsys, empty, empty, "--table", "t")
    assert run.status == 0
    assert run.out.startswith("table t: 0 differences;")


def test_table_with_only_key_columns(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = "CREATE TABLE k (id INTEGER PRIMARY KEY)"
    create(source, ddl, [(i,) for i in range(100)])
    create(target, ddl, [(i,) for i in range(100) if i != 40] + [(100,)])
    run = diff(capsys, source, target, "--table", "k", "--format", "json")
    assert run.status == 1, run.err
    (target_result,) = run.json()["targets"]
    assert ids(target_result["missing"]) == [40]
    assert ids(target_result["extra"]) == [100]


def test_unsupported_type_can_be_ignored(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    source, target = tmp_path / "s.db", tmp_path / "t.db"
    ddl = "CREATE TABLE g (id INTEGER PRIMARY KEY, shape GEOMETRY, v TEXT)"
    create(source, ddl, [(1, "POINT(0 0)", "a"), (2, "POINT(1 1)", "b")])
    create(target, ddl, [(1, "POINT(9 9)", "a"), (2, "POINT(1 1)", "c")])
    assert_clean_error(diff(capsys, source, target, "--table", "g"))
    run = diff(capsys, source, target, "--table", "g", "--format", "json", "--ignore", "shape")
    assert run.status == 1, run.err
    assert ids(run.json()["targets"][0]["differing"]) == [2]
    run = diff(capsys, source, target, "--table", "g", "--format", "json", "--columns", "v")
    assert ids(run.json()["targets"][0]["differing"]) == [2]


# --- bad input -----------------------------------------------------------------------------------


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Path, Path]:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    for path, blob in ((source, False), (target, True)):
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT, n INTEGER)")
            conn.executemany("INSERT INTO t VALUES (?, ?, ?)", [(i, f"v{i}", i) for i in range(1, 6)])
            conn.execute(f"CREATE TABLE mix (id INTEGER PRIMARY KEY, v {'BLOB' if blob else 'INTEGER'})")
            conn.execute("INSERT INTO mix VALUES (1, 1)")
            conn.execute("CREATE TABLE nopk (id INTEGER, v TEXT)")
            conn.executemany("INSERT INTO nopk VALUES (?, ?)", [(1, "a"), (1, "b"), (2, "c")])
            conn.execute("CREATE TABLE nullkey (id INTEGER, v TEXT)")
            conn.executemany("INSERT INTO nullkey VALUES (?, ?)", [(1, "a"), (None, "b")])
            conn.execute("CREATE TABLE floatkey (id REAL, v TEXT)")
            conn.execute("INSERT INTO floatkey VALUES (1.5, 'a')")
            conn.execute(f"CREATE TABLE fewer (id INTEGER PRIMARY KEY, v TEXT{'' if blob else ', w TEXT'})")
            conn.commit()
    return source, target


BAD_INPUT: dict[str, list[str]] = {
    "unknown-table": ["--table", "nosuch"],
    "unknown-column": ["--table", "t", "--columns", "v,nosuch"],
    "unknown-ignored-column": ["--table", "t", "--ignore", "nosuch"],
    "unknown-key-column": ["--table", "t", "--key", "nosuch"],
    "unknown-where-column": ["--table", "t", "--where", "nosuch = 1"],
    "column-missing-on-target": ["--table", "fewer"],
    "int-vs-blob": ["--table", "mix"],
    "no-primary-key": ["--table", "nopk"],
    "duplicate-key": ["--table", "nopk", "--key", "id"],
    "null-key": ["--table", "nullkey", "--key", "id"],
    "float-key": ["--table", "floatkey", "--key", "id"],
    "where-injection": ["--table", "t", "--where", "id = 1; DROP TABLE t"],
    "where-or-1-1": ["--table", "t", "--where", "id = '1' OR 1=1 --"],
    "where-unbalanced-quote": ["--table", "t", "--where", "v = 'abc"],
    "where-unbalanced-paren": ["--table", "t", "--where", "(id = 1"],
    "where-empty": ["--table", "t", "--where", ""],
    "where-blank": ["--table", "t", "--where", "   "],
    "where-newline": ["--table", "t", "--where", "v = 'a\nb"],
    "chunk-size-0": ["--table", "t", "--chunk-size", "0"],
    "chunk-size-word": ["--table", "t", "--chunk-size", "many"],
    "max-below-chunk": ["--table", "t", "--chunk-size", "10", "--max-chunk-size", "5"],
    "threads-0": ["--table", "t", "--threads", "0"],
    "bisection-factor-1": ["--table", "t", "--bisection-factor", "1"],
    "bisection-threshold-0": ["--table", "t", "--bisection-threshold", "0"],
    "stop-on-streak-0": ["--table", "t", "--stop-on-streak", "0"],
    "negative-sample": ["--table", "t", "--sample", "-1"],
    "unknown-option": ["--table", "t", "--bogus"],
    "unknown-format": ["--table", "t", "--format", "xml"],
    "no-table": [],
}


@pytest.mark.parametrize("options", list(BAD_INPUT.values()), ids=list(BAD_INPUT))
def test_bad_input(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path], options: list[str]) -> None:
    run = diff(capsys, *pair, *options)
    assert_clean_error(run)
    with contextlib.closing(sqlite3.connect(pair[0])) as conn:
        assert conn.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 5


def test_bad_input_messages_name_the_problem(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path]) -> None:
    checks = {
        "nosuch": ["--table", "nosuch"],
        "'nosuch'": ["--table", "t", "--columns", "nosuch"],
        "BLOB": ["--table", "mix"],
        "--key": ["--table", "nopk"],
        "unique": ["--table", "nopk", "--key", "id"],
        "--where": ["--table", "t", "--where", "id = 1; DROP TABLE t"],
        "--chunk-size": ["--table", "t", "--chunk-size", "0"],
        "--bogus": ["--table", "t", "--bogus"],
    }
    # Upper bounds too: one query's load on a database stays bounded.
    too_big = {
        "chunk-size": ["--chunk-size", "10000001"],
        "max-chunk-size": ["--max-chunk-size", "10000001"],
        "bisection-factor": ["--bisection-factor", "2049"],
        "bisection-threshold": ["--bisection-threshold", "100001"],
        "threads": ["--threads", "65"],
        "write-batch": ["--write-missing", "--write-batch", "10001"],
        "--max-outage": ["--max-outage", "86401"],
        "--recheck-after": ["--recheck-after", "86401"],
        "--connect-timeout": ["--connect-timeout", "601"],
    }
    for needle, options in too_big.items():
        checks[needle] = ["--table", "t", *options]
    for needle, options in checks.items():
        run = diff(capsys, *pair, *options)
        assert_clean_error(run)
        assert needle in run.err, (needle, run.err)


def test_missing_sqlite_file(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path], tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    for source, target in ((missing, pair[1]), (pair[0], missing)):
        run = diff(capsys, source, target, "--table", "t")
        assert_clean_error(run)
        assert "missing.db" in run.err
        assert not missing.exists(), "a missing database is not created"


def test_not_a_sqlite_file(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path], tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)
    assert_clean_error(diff(capsys, pair[0], junk, "--table", "t"))


@pytest.mark.parametrize(
    "target",
    ["oracle://u:pw@h/db", "postgresql://u@127.0.0.1:5432/db?password_env=TS_SURELY_UNSET_VARIABLE", "sqlite://"],
)
def test_bad_target_url(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path], target: str) -> None:
    run = cli(capsys, "diff", url(pair[0]), target, "--table", "t")
    assert_clean_error(run)


def test_no_target(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path]) -> None:
    assert_clean_error(cli(capsys, "diff", url(pair[0]), "--table", "t"))


def test_unknown_option_hint_names_a_real_command(capsys: pytest.CaptureFixture[str], pair: tuple[Path, Path]) -> None:
    run = diff(capsys, *pair, "--table", "t", "--bogus")
    assert_clean_error(run)
    assert "tablesync tablesync" not in run.err, run.err


# --- --state-file --------------------------------------------------------------------------------

STATE_OPTIONS = ["--chunk-size", "100", "--max-chunk-size", "100"]


def interrupted_state(drift: Drift, table: str, *, reverse: bool = False, chunks: int = 10) -> DiffState:
    """Runs the engine as the CLI would, in short steps, and stops it part way."""
    source, target = parse_url(url(drift.source)), parse_url(url(drift.target))
    options = DiffOptions(chunk_size=100, max_chunk_size=100, reverse=reverse)
    with Differ(
        table,
        lambda: open_connector(source),
        [lambda: open_connector(target)],
        options,
        source_label=source.redacted(),
        target_labels=[target.redacted()],
    ) as differ:
        state = differ.initial_state()
        while state.chunks < chunks:
            state = differ.step(state, time.monotonic() + 0.001)
            assert not state.done
    return state


def _found(state: DiffState) -> set[tuple[str, int]]:
    (tally,) = state.targets
    return {(kind, key[0]) for kind in ("missing", "extra", "differing") for key in getattr(tally, kind)}


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_state_file_resumes(capsys: pytest.CaptureFixture[str], drift: Drift, tmp_path: Path, reverse: bool) -> None:
    options = [*STATE_OPTIONS, *(["--reverse"] if reverse else [])]
    whole = diff(capsys, drift.source, drift.target, "--table", "items", "--format", "json", *options)
    assert whole.status == 1

    state = interrupted_state(drift, "items", reverse=reverse)
    found_before = _found(state)
    expected = drift.expected()
    every = {(kind, k) for kind, keys in expected.items() for k in keys}
    assert found_before and found_before < every, "the interruption falls in the middle of the drift"
    assert 0 < state.source_rows < len(drift.source_rows)

    path = tmp_path / "items.state"
    path.write_text(state.model_dump_json())
    resumed = diff(
        capsys, drift.source, drift.target, "--table", "items", "--format", "json", "--state-file", str(path), *options
    )
    assert resumed.status == 1, resumed.err
    assert not path.exists(), "the state file is removed once the diff is complete"
    assert not path.with_name(path.name + ".tmp").exists()
    check_result(resumed, drift, expected, len(drift.source_rows))
    ignore = {"duration_s"}
    assert {k: v for k, v in resumed.json().items() if k not in ignore} == {
        k: v for k, v in whole.json().items() if k not in ignore
    }

    # The resumed run reports only what the interrupted run had not found yet.
    path.write_text(state.model_dump_json())
    lines = diff(
        capsys, drift.source, drift.target, "--table", "items", "--format", "jsonl", "--state-file", str(path), *options
    )
    assert lines.status == 1
    reported = [json.loads(line) for line in lines.out.splitlines()]
    assert sorted((r["kind"], r["key"][0]) for r in reported) == sorted(every - found_before)
    assert not path.exists()


def test_state_file_of_a_fresh_run_is_removed(capsys: pytest.CaptureFixture[str], drift: Drift, tmp_path: Path) -> None:
    path = tmp_path / "fresh.state"
    run = diff(
        capsys,
        drift.source,
        drift.target,
        "--table",
        "items",
        "--format",
        "json",
        "--state-file",
        str(path),
        *STATE_OPTIONS,
    )
    check_result(run, drift, drift.expected(), len(drift.source_rows))
    assert not path.exists()


def test_state_file_of_a_finished_diff(capsys: pytest.CaptureFixture[str], drift: Drift, tmp_path: Path) -> None:
    source, target = parse_url(url(drift.source)), parse_url(url(drift.target))
    options = DiffOptions(chunk_size=100, max_chunk_size=100)
    with Differ(
        "items",
        lambda: open_connector(source),
        [lambda: open_connector(target)],
        options,
        source_label=source.redacted(),
        target_labels=[target.redacted()],
    ) as differ:
        state = differ.run()
    assert state.done
    path = tmp_path / "done.state"
    path.write_text(state.model_dump_json())
    run = diff(
        capsys,
        drift.source,
        drift.target,
        "--table",
        "items",
        "--format",
        "json",
        "--state-file",
        str(path),
        *STATE_OPTIONS,
    )
    check_result(run, drift, drift.expected(), len(drift.source_rows))
    assert not path.exists()


@pytest.mark.parametrize(
    "options",
    [
        ["--table", "items_nopk", "--key", "id"],
        ["--table", "items", "--where", "id > 5"],
        ["--table", "items", "--reverse"],
        ["--table", "items", "--ignore", "note"],
    ],
    ids=["other-table", "other-where", "other-direction", "other-columns"],
)
def test_state_file_of_another_diff(
    capsys: pytest.CaptureFixture[str], drift: Drift, tmp_path: Path, options: list[str]
) -> None:
    state = interrupted_state(drift, "items", chunks=3)
    path = tmp_path / "items.state"
    path.write_text(state.model_dump_json())
    run = diff(capsys, drift.source, drift.target, *options, "--state-file", str(path), *STATE_OPTIONS)
    assert_clean_error(run)
    assert "state" in run.err
    assert path.read_text() == state.model_dump_json(), "a state that does not belong is left alone"


def test_state_file_of_other_databases(capsys: pytest.CaptureFixture[str], drift: Drift, tmp_path: Path) -> None:
    path = tmp_path / "items.state"
    path.write_text(interrupted_state(drift, "items", chunks=3).model_dump_json())
    assert_clean_error(diff(capsys, drift.target, drift.source, "--table", "items", "--state-file", str(path)))
    assert_clean_error(
        diff(capsys, drift.source, [drift.target, drift.target], "--table", "items", "--state-file", str(path))
    )
    assert path.exists()


@pytest.mark.parametrize("content", ["not json at all", "{}", '{"fingerprint": 5}', ""])
def test_unreadable_state_file(capsys: pytest.CaptureFixture[str], drift: Drift, tmp_path: Path, content: str) -> None:
    path = tmp_path / "bad.state"
    path.write_text(content)
    run = diff(capsys, drift.source, drift.target, "--table", "items", "--state-file", str(path))
    assert_clean_error(run)
    assert path.exists()


def test_jsonl_with_recheck_prints_only_what_the_recheck_confirms(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from tablesync import cli, cli_repair
    from tablesync.demo import make_demo_databases

    source, replica = make_demo_databases(tmp_path)

    def replication_catches_up(seconds: float) -> None:  # the missing row 17 arrives meanwhile
        src = sqlite3.connect(source)
        row = src.execute("SELECT * FROM customers WHERE id = 17").fetchone()
        src.close()
        dst = sqlite3.connect(replica)
        with dst:
            dst.execute(f"INSERT INTO customers VALUES ({', '.join('?' * len(row))})", row)
        dst.close()

    monkeypatch.setattr(cli_repair.time, "sleep", replication_catches_up)
    args = ["diff", "--table", "customers", f"sqlite:///{source}", f"sqlite:///{replica}", "--format", "jsonl"]
    assert cli.main([*args, "--recheck-after", "5"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 5 and [17] not in [line["key"] for line in lines]


def test_max_chunk_size_bounds_every_chunk_where_indexes_serve_the_ranges(tmp_path: Path) -> None:
    """A slow first round (a loaded machine) must not grow chunks past --max-chunk-size on a side
    whose index serves the ranges: only a side that scans for every range grows past it."""
    from tablesync.connectors import open_connector
    from tablesync.engine import Differ
    from tablesync.models import DiffOptions

    path = tmp_path / "t.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t VALUES (?, ?)", [(i, str(i)) for i in range(1, 501)])
    url = f"sqlite:///{path}"
    options = DiffOptions(chunk_size=100, max_chunk_size=100)
    with Differ("t", lambda: open_connector(url), [lambda: open_connector(url)], options) as differ:
        assert not differ.any_scan_bound
        state = differ.initial_state()
        # The first round took 2 s: a scan-bound side would grow its chunks 64-fold; this one may not.
        assert differ.tuning.next_chunk_size(state, 2.0, 100) == 100
        assert differ.tuning.next_chunk_size(state, 0.001, 100) == 100
