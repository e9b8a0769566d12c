"""Repair (`tablesync diff --write-missing --write-differing --delete-extra`) against the real
PostgreSQL, MariaDB and SQLite: every injected difference fixed in both directions on tables of
mixed types and on text and composite keys, the source never changed, dry runs writing nothing,
only the asked-for kinds written, rows changed on the source written as they are now, a concurrent
writer never overwritten with an older version, the failing rows of a stricter target reported
one by one with their reason, and a second repair changing nothing."""

from __future__ import annotations

import datetime as dt
import json
import random
import struct
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from servers import MYSQL_ARGS, PG_DSN
from tablesync import cli_repair
from tablesync.connectors import Connector, open_connector
from tablesync.engine import Differ
from tablesync.errors import TransientDatabaseError
from tablesync.models import RepairOptions, RowWrite, TablePlan, WriteOutcome
from tablesync.repair import recheck, repair_target
from test_diff import (
    COMPOSITE_COLUMNS,
    COMPOSITE_DDL,
    TENANTS,
    Diff,
    assert_clean_error,
    composite_drift,
    found,
    load,
    run_cli,
)
from test_row_hash_types import ROW_TYPES, engine_value

pytestmark = pytest.mark.integration

ALL = ("--write-missing", "--write-differing", "--delete-extra")
SMALL = ("--chunk-size", "50", "--bisection-threshold", "5", "--no-progress")
ENGINE = {"pg": "postgresql", "mysql": "mysql", "sqlite": "sqlite"}
JSON_DDL = {"pg": "jsonb", "mysql": "json", "sqlite": "JSON"}
MIXED_COLUMNS = ["id", *(t.name for t in ROW_TYPES), "c_json"]
UTC_PLUS_2 = dt.timezone(dt.timedelta(hours=2))


def mixed_ddl(dialect: str) -> str:
    engine = ENGINE[dialect]
    columns = [f"{t.name} {t.native(engine)}" for t in ROW_TYPES] + [f"c_json {JSON_DDL[dialect]}"]
    key = "id bigint PRIMARY KEY" if dialect != "sqlite" else "id INTEGER PRIMARY KEY"
    return ", ".join([key, *columns])


def mixed_row(i: int, variant: int = 0) -> tuple[Any, ...]:
    """A row of every supported kind with edge values (2^62+i, 1.50, last-bit doubles, trailing
    spaces, NULLs, microseconds, time zones); `variant` changes one column in a small way."""
    values: list[Any] = [
        2**62 + i,
        None if i % 7 == 0 else i % 2 == 0,
        Decimal(f"{i}.50"),
        i / 3,
        None if i % 11 == 0 else (f"text {i} é " if i % 5 == 0 else f"text {i} é"),
        uuid.UUID(int=i * 7919),
        bytes([i % 256, 0, 255]),
        dt.datetime(2024, 1, 1, 8) + dt.timedelta(seconds=61 * i, microseconds=i),
        dt.datetime(2025, 6, 1, 12, tzinfo=UTC_PLUS_2) + dt.timedelta(minutes=i, microseconds=3 * i),
        dt.date(2020, 1, 1) + dt.timedelta(days=i),
        dt.time(i % 24, i % 60, (i * 7) % 60, i),
        json.dumps({"n": i, "list": [1.5, "x", None], "nested": {"ok": i % 2 == 0}}),
    ]
    if variant:
        column = variant % len(values)
        if column == 3:  # the next double: only the last bit differs
            bits = struct.unpack(">Q", struct.pack(">d", values[3]))[0] + 1
            values[3] = struct.unpack(">d", bits.to_bytes(8, "big"))[0]
        elif values[column] is None:
            values[column] = mixed_row(i + 1)[column + 1]
        elif column == 0:
            values[0] += 1
        elif column == 4:
            values[4] += " "
        elif column == 11:
            values[11] = json.dumps({"n": i + 1})
        else:
            values[column] = None
    return (i, *values)


def load_mixed(db: Any, table: str, rows: dict[int, tuple[Any, ...]]) -> None:
    engine = ENGINE[db.dialect]
    kinds = [t.kind for t in ROW_TYPES]
    converted = []
    for key in sorted(rows):
        row = rows[key]
        values = [engine_value(engine, k, v) for k, v in zip(kinds, row[1:-1], strict=True)]
        converted.append([row[0], *values, row[-1]])
    db.create(table, mixed_ddl(db.dialect))
    db.insert(table, MIXED_COLUMNS, converted)


def mixed_drift(count: int, seed: int) -> tuple[dict[int, tuple[Any, ...]], dict[int, tuple[Any, ...]], Diff]:
    rng = random.Random(seed)
    source = {i: mixed_row(i) for i in range(1, count + 1)}
    keys = sorted(source)
    gone = set(rng.sample(keys, 20)) | {keys[0], keys[-1]}
    changed = set(rng.sample([k for k in keys if k not in gone], 40))
    added = {count + 5, count + 77, *(i for i in rng.sample(range(10_000, 20_000), 10))}
    target = {k: r for k, r in source.items() if k not in gone}
    for n, key in enumerate(sorted(changed)):
        target[key] = mixed_row(key, variant=n + 1)
    for key in added:
        target[key] = mixed_row(key)
    return source, target, Diff({(k,) for k in gone}, {(k,) for k in added}, {(k,) for k in changed})


def snapshot(db: Any, table: str) -> list[tuple[Any, ...]]:
    """Every row as the database returns it, in key order: the source must not change at all."""
    return db.execute(f"SELECT * FROM {db.quote(table)} ORDER BY 1, 2")


def repair_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    run = run_cli(capsys, *args, "--format", "json")
    assert run.code in (0, 1), f"exit {run.code}: {run.err}"
    return run.code, run.json()


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# ---------------------------------------------------------------------------------------------
# Every difference fixed, in both directions
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("src", "dst"), [("pg", "mysql"), ("mysql", "pg"), ("pg", "sqlite"), ("sqlite", "pg")])
def test_repair_fixes_every_difference_of_every_type(
    dbs: Any, table_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], src: str, dst: str
) -> None:
    source, target, diff = mixed_drift(300, seed=7)
    load_mixed(dbs[src], table_name, source)
    load_mixed(dbs[dst], table_name, target)
    before = snapshot(dbs[src], table_name)
    audit = tmp_path / "audit.jsonl"
    src_url, dst_url = dbs[src].url, dbs[dst].url

    code, result = repair_json(
        capsys, src_url, dst_url, "--table", table_name, *SMALL, *ALL, "--write-batch", "25", "--audit-file", str(audit)
    )
    assert code == 0, result["repairs"]
    assert found(result["targets"][0]) == diff  # the diff itself was exact
    (repair,) = result["repairs"]
    assert (repair["inserted"], repair["updated"], repair["deleted"]) == (22, 40, 12)
    assert repair["failed"] == [] and repair["changed"] == 0

    again = run_cli(capsys, src_url, dst_url, "--table", table_name, *SMALL)
    assert again.code == 0, again.out  # a new diff finds nothing
    assert snapshot(dbs[src], table_name) == before  # the source is unchanged, byte for byte

    records = audit_lines(audit)
    assert len(records) == 74 and {r["status"] for r in records} == {"applied"}
    by_action = {a: [r for r in records if r["action"] == a] for a in ("insert", "update", "delete")}
    assert {tuple(r["key"]) for r in by_action["insert"]} == diff.missing
    assert all(r["source_hash"] and r["target_hash"] is None for r in by_action["insert"])
    assert all(
        r["source_hash"] and r["target_hash"] and r["source_hash"] != r["target_hash"] for r in by_action["update"]
    )
    assert all(r["source_hash"] is None and r["target_hash"] for r in by_action["delete"])
    assert all(r["table"] == table_name and r["time"] for r in records)


@pytest.mark.parametrize(("src", "dst"), [("pg", "mysql"), ("mysql", "pg")])
def test_repair_composite_text_keys(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], src: str, dst: str
) -> None:
    """Text keys in MariaDB's case-insensitive collation and PostgreSQL's byte order, composite."""
    source = {(t, n): (t, n, n * 3, f"note {t} {n}") for t in TENANTS for n in range(1, 61)}
    target, diff = composite_drift(source, seed=3)
    load(dbs[src], table_name, source, COMPOSITE_DDL, COMPOSITE_COLUMNS)
    load(dbs[dst], table_name, target, COMPOSITE_DDL, COMPOSITE_COLUMNS)
    code, result = repair_json(capsys, dbs[src].url, dbs[dst].url, "--table", table_name, *SMALL, *ALL)
    assert code == 0, result["repairs"]
    assert found(result["targets"][0]) == diff
    (repair,) = result["repairs"]
    assert (repair["inserted"], repair["updated"], repair["deleted"]) == (
        len(diff.missing),
        len(diff.differing),
        len(diff.extra),
    )
    assert run_cli(capsys, dbs[src].url, dbs[dst].url, "--table", table_name, *SMALL).code == 0
    rows = {(r[0], r[1]): r for r in dbs[dst].execute(f"SELECT * FROM {dbs[dst].quote(table_name)}")}
    assert rows.keys() == source.keys()


def test_repair_text_keys_with_trailing_spaces_and_case(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ddl = {"pg": "k varchar(20) PRIMARY KEY, v integer", "mysql": "k varchar(20) PRIMARY KEY, v int"}
    keys = ["a", "B", "b2", "c ", "Ω", "z"]
    dbs.pg.create(table_name, ddl["pg"])
    dbs.pg.insert(table_name, ["k", "v"], [(k, i) for i, k in enumerate(keys)])
    dbs.mysql.create(table_name, ddl["mysql"])
    dbs.mysql.insert(table_name, ["k", "v"], [("a", 0), ("b2", 99), ("x", 1)])
    code, result = repair_json(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name, *SMALL, *ALL)
    assert code == 0, result
    assert sorted(dbs.mysql.execute(f"SELECT k, v FROM {table_name}")) == sorted((k, i) for i, k in enumerate(keys))


# ---------------------------------------------------------------------------------------------
# Only what was asked for; dry runs; twice
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def drifted(dbs: Any, table_name: str) -> tuple[Any, Any, Diff]:
    source, target, diff = mixed_drift(120, seed=11)
    load_mixed(dbs.pg, table_name, source)
    load_mixed(dbs.mysql, table_name, target)
    return dbs.pg, dbs.mysql, diff


def test_dry_run_prints_the_statements_and_writes_nothing(
    drifted: tuple[Any, Any, Diff], table_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pg, mysql, diff = drifted
    before = snapshot(mysql, table_name)
    audit = tmp_path / "audit.jsonl"
    run = run_cli(
        capsys, pg.url, mysql.url, "--table", table_name, *SMALL, *ALL, "--dry-run", "--audit-file", str(audit)
    )
    assert run.code == 1  # differences found, none repaired
    statements = [line.strip() for line in run.out.splitlines() if line.startswith("  ") and line.strip().endswith(";")]
    assert len([s for s in statements if s.startswith("INSERT INTO `")]) == len(diff.missing)
    assert len([s for s in statements if s.startswith("UPDATE `")]) == len(diff.differing)
    assert len([s for s in statements if s.startswith("DELETE FROM `")]) == len(diff.extra)
    assert "(dry run, nothing written)" in run.out
    assert snapshot(mysql, table_name) == before
    assert not audit.exists()


def test_only_the_kinds_asked_for_are_written(
    drifted: tuple[Any, Any, Diff], table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    pg, mysql, diff = drifted
    code, result = repair_json(capsys, pg.url, mysql.url, "--table", table_name, *SMALL, "--write-missing")
    assert code == 1  # extra and differing rows are left
    (repair,) = result["repairs"]
    assert repair["inserted"] == len(diff.missing) and repair["updated"] == repair["deleted"] == 0
    assert repair["not_enabled"] == {"differing": len(diff.differing), "extra": len(diff.extra)}
    _, after = repair_json(capsys, pg.url, mysql.url, "--table", table_name, *SMALL)
    assert found(after["targets"][0]) == Diff(set(), diff.extra, diff.differing)


def test_repairing_twice_changes_nothing_the_second_time(
    drifted: tuple[Any, Any, Diff], table_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pg, mysql, _ = drifted
    audit = tmp_path / "audit.jsonl"
    args = (pg.url, mysql.url, "--table", table_name, *SMALL, *ALL, "--audit-file", str(audit))
    assert repair_json(capsys, *args)[0] == 0
    after_first = snapshot(mysql, table_name)
    written = len(audit_lines(audit))
    code, result = repair_json(capsys, *args)
    assert code == 0
    (repair,) = result["repairs"]
    assert repair["inserted"] == repair["updated"] == repair["deleted"] == 0
    assert snapshot(mysql, table_name) == after_first
    assert len(audit_lines(audit)) == written


# ---------------------------------------------------------------------------------------------
# Safe while both sides change
# ---------------------------------------------------------------------------------------------
def _plans(differ: Differ) -> tuple[TablePlan, TablePlan]:
    return differ.source_plan, differ.target_plans[0]


def test_a_row_changed_on_the_source_since_the_diff_is_written_as_it_is_now(
    drifted: tuple[Any, Any, Diff], table_name: str
) -> None:
    pg, mysql, diff = drifted
    with Differ(table_name, lambda: open_connector(pg.url), [lambda: open_connector(mysql.url)]) as differ:
        result = differ.result(differ.run())
        source_plan, target_plan = _plans(differ)
    keys = [*result.targets[0].missing, *result.targets[0].differing, *result.targets[0].extra]
    changed = sorted(diff.differing)[0][0]
    missing = sorted(diff.missing)[1][0]
    extra = sorted(diff.extra)[0][0]
    # After the diff: the source changes a differing row and a missing one, and gains the extra one.
    pg.execute(f"UPDATE {table_name} SET c_text = %s WHERE id IN (%s, %s)", ["newest", changed, missing])
    pg.insert(table_name, ["id", "c_text"], [(extra, "born later")])
    source, target = open_connector(pg.url), open_connector(mysql.url, read_only=False)
    try:
        options = RepairOptions(write_missing=True, write_differing=True, delete_extra=True)
        repair = repair_target(
            source, target, source_plan, target_plan, keys, options, table=table_name, target_label="t"
        )
    finally:
        source.close()
        target.close()
    assert repair.failed == [] and repair.remaining == 0
    assert repair.deleted == len(diff.extra) - 1  # the row the source gained is not deleted but updated
    rows = dict(
        mysql.execute(f"SELECT id, c_text FROM {table_name} WHERE id IN (%s, %s, %s)", [changed, missing, extra])
    )
    assert rows == {changed: "newest", missing: "newest", extra: "born later"}


def test_a_concurrent_writer_is_never_overwritten_with_an_older_version(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A writer keeps updating source rows and, like replication a moment later, the target's.
    Whatever the interleaving, the repair must leave every row at the writer's latest version."""
    ddl = {"pg": "id integer PRIMARY KEY, version integer NOT NULL, note text", "mysql": ""}
    ddl["mysql"] = "id int PRIMARY KEY, version int NOT NULL, note text"
    count = 3000
    dbs.pg.create(table_name, ddl["pg"])
    dbs.pg.insert(table_name, ["id", "version", "note"], [(i, 1, f"v1 {i}") for i in range(1, count + 1)])
    dbs.mysql.create(table_name, ddl["mysql"])
    # Every other row differs (an old version 0), every third is missing.
    dbs.mysql.insert(
        table_name,
        ["id", "version", "note"],
        [(i, 0 if i % 2 else 1, f"v{0 if i % 2 else 1} {i}") for i in range(1, count + 1) if i % 3],
    )
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        import psycopg
        import pymysql

        rng = random.Random(5)
        pg = psycopg.connect(PG_DSN, autocommit=True)
        my = pymysql.connect(**MYSQL_ARGS, autocommit=True)
        try:
            while not stop.is_set():
                key = rng.randrange(1, count + 1)
                row = pg.execute(
                    f"UPDATE {table_name} SET version = version + 1, note = 'v' || (version + 1) || ' ' || id "
                    "WHERE id = %s RETURNING version, note",
                    [key],
                ).fetchone()
                assert row is not None
                time.sleep(0.001)  # replication lag
                with my.cursor() as cur:
                    cur.execute(f"UPDATE {table_name} SET version = %s, note = %s WHERE id = %s", [row[0], row[1], key])
        except Exception as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            pg.close()
            my.close()

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(3):
            run = run_cli(
                capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name, *ALL, "--write-batch", "50", "--no-progress"
            )
            assert run.code in (0, 1), run.err
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert "updated" in run.out
    final = run_cli(capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name, "--no-progress")
    assert final.code == 0, final.out  # every row at the writer's latest version on both sides
    source = dict(dbs.pg.execute(f"SELECT id, version FROM {table_name}"))
    target = dict(dbs.mysql.execute(f"SELECT id, version FROM {table_name}"))
    assert source == target and max(source.values()) > 1


def test_recheck_after_drops_differences_that_replication_fixed_meanwhile(
    drifted: tuple[Any, Any, Diff], table_name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pg, mysql, diff = drifted
    late = sorted(diff.missing)[:5]
    waited: list[float] = []

    def replication_catches_up(seconds: float) -> None:
        waited.append(seconds)
        rows = {
            r[0]: r
            for r in pg.execute(
                f"SELECT * FROM {table_name} WHERE id IN ({', '.join(['%s'] * 5)})", [k[0] for k in late]
            )
        }
        mysql.insert(table_name, MIXED_COLUMNS, [_for_mysql(rows[k[0]]) for k in late])

    monkeypatch.setattr(cli_repair.time, "sleep", replication_catches_up)
    code, result = repair_json(capsys, pg.url, mysql.url, "--table", table_name, *SMALL, "--recheck-after", "30")
    assert code == 1 and waited == [30.0]
    assert found(result["targets"][0]) == Diff(diff.missing - set(late), diff.extra, diff.differing)


def _for_mysql(row: tuple[Any, ...]) -> list[Any]:
    values = list(row)
    values[9] = values[9].astimezone(dt.UTC).replace(tzinfo=None)  # MariaDB TIMESTAMP holds UTC
    values[6] = str(values[6])
    values[12] = json.dumps(values[12])
    return values


def test_recheck_reclassifies_by_what_is_there_now(drifted: tuple[Any, Any, Diff], table_name: str) -> None:
    pg, mysql, diff = drifted
    with Differ(table_name, lambda: open_connector(pg.url), [lambda: open_connector(mysql.url)]) as differ:
        source_plan, target_plan = _plans(differ)
    extra = sorted(diff.extra)[0][0]
    mysql.execute(f"DELETE FROM {table_name} WHERE id = %s", [extra])
    keys = [list(k) for k in sorted(diff.missing | diff.extra | diff.differing)]
    source, target = open_connector(pg.url), open_connector(mysql.url)
    try:
        now = recheck(source, target, source_plan, target_plan, keys)
    finally:
        source.close()
        target.close()
    assert {tuple(k) for k in now["extra"]} == diff.extra - {(extra,)}
    assert {tuple(k) for k in now["missing"]} == diff.missing
    assert {tuple(k) for k in now["differing"]} == diff.differing


# ---------------------------------------------------------------------------------------------
# Failures: a stricter target, transient errors, bad input
# ---------------------------------------------------------------------------------------------
def test_a_stricter_target_fails_exactly_the_rows_it_refuses(
    dbs: Any, table_name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dbs.pg.create(table_name, "id integer PRIMARY KEY, name text, qty integer")
    dbs.pg.insert(table_name, ["id", "name", "qty"], [(i, "x" * (12 if i % 10 == 0 else 3), i) for i in range(1, 101)])
    dbs.mysql.create(table_name, "id int PRIMARY KEY, name varchar(10), qty int CHECK (qty < 95)")
    dbs.mysql.insert(table_name, ["id", "name", "qty"], [(i, "old", i) for i in range(1, 101) if i % 2 and i < 95])
    refused = {i for i in range(1, 101) if i % 10 == 0 or i >= 95}
    audit = tmp_path / "audit.jsonl"
    code, result = repair_json(
        capsys, dbs.pg.url, dbs.mysql.url, "--table", table_name, *SMALL, *ALL, "--audit-file", str(audit)
    )
    assert code == 1
    (repair,) = result["repairs"]
    assert {f["key"][0] for f in repair["failed"]} == refused
    assert all(f["reason"] for f in repair["failed"])
    assert any("too long" in f["reason"].lower() for f in repair["failed"])
    assert any("constraint" in f["reason"].lower() for f in repair["failed"])
    assert repair["inserted"] + repair["updated"] == 100 - len(refused)
    written = dict(dbs.mysql.execute(f"SELECT id, qty FROM {table_name}"))
    assert set(written) == {i for i in range(1, 101) if i not in refused} | {i for i in refused if i % 2 and i < 95}
    failed_records = [r for r in audit_lines(audit) if r["status"] == "failed"]
    assert {r["key"][0] for r in failed_records} == refused


class _FlakyTarget:
    """The real target connector, whose first write loses its connection (as a failover would)
    after the transaction was rolled back."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner
        self.failures = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _fail_once(self) -> None:
        if self.failures:
            self.failures -= 1
            self.inner.rollback()  # type: ignore[attr-defined]
            raise TransientDatabaseError("lost connection to server during query")

    def write_locked(self, plan: TablePlan, writes: list[RowWrite]) -> WriteOutcome:
        self._fail_once()
        return self.inner.write_locked(plan, writes)  # type: ignore[attr-defined,no-any-return]

    def write_rows(self, plan: TablePlan, writes: list[RowWrite], dry_run: bool = False) -> WriteOutcome:
        self._fail_once()
        return self.inner.write_rows(plan, writes, dry_run)


class _RemoteTarget:
    """A target reached as through a connector Lambda: no transaction held between calls."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def fetch_rows(self, plan: TablePlan, keys: list[Any]) -> list[dict[str, str | None]]:
        return self.inner.fetch_rows(plan, keys)  # type: ignore[no-any-return]

    def write_rows(self, plan: TablePlan, writes: list[RowWrite], dry_run: bool = False) -> WriteOutcome:
        return self.inner.write_rows(plan, writes, dry_run)  # type: ignore[no-any-return]


@pytest.mark.parametrize("remote", [False, True], ids=["direct", "connector-lambda"])
def test_a_transient_write_error_is_retried(drifted: tuple[Any, Any, Diff], table_name: str, remote: bool) -> None:
    pg, mysql, diff = drifted
    with Differ(table_name, lambda: open_connector(pg.url), [lambda: open_connector(mysql.url)]) as differ:
        result = differ.result(differ.run())
        source_plan, target_plan = _plans(differ)
    keys = [*result.targets[0].missing, *result.targets[0].differing, *result.targets[0].extra]
    flaky = _FlakyTarget(open_connector(mysql.url, read_only=False))
    source, target = open_connector(pg.url), (_RemoteTarget(flaky) if remote else flaky)
    sleeps: list[float] = []
    try:
        options = RepairOptions(write_missing=True, write_differing=True, delete_extra=True)
        repair = repair_target(
            source,
            target,  # type: ignore[arg-type]
            source_plan,
            target_plan,
            keys,
            options,
            table=table_name,
            target_label="t",
            sleep=sleeps.append,  # type: ignore[arg-type]
        )
    finally:
        source.close()
        flaky.inner.close()
    assert sleeps == [0.5] and repair.remaining == 0
    assert repair.inserted + repair.updated + repair.deleted == diff.total


def test_bad_repair_input_is_one_line(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    dbs.pg.create(table_name, "id integer PRIMARY KEY")
    url = dbs.pg.url
    assert_clean_error(run_cli(capsys, url, dbs.mysql.url, "--table", table_name, "--dry-run"), "--dry-run")
    assert_clean_error(run_cli(capsys, url, url, "--table", table_name, "--write-missing"), "is the source")
    assert_clean_error(
        run_cli(capsys, url, dbs.mysql.url, "--table", table_name, "--write-missing", "--write-batch", "0"),
        "at least 1",
    )


# ---------------------------------------------------------------------------------------------
# The app's repair path against MariaDB: refused rows to the dead-letter queue
# ---------------------------------------------------------------------------------------------
def test_the_repair_lambda_parks_exactly_the_keys_mariadb_refuses(
    dbs: Any, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """repairing.repair_message (the repair Lambda's logic) with AWS in moto, PostgreSQL as the source
    and a MariaDB target whose CHECK constraint refuses some rows, both reached through the real
    connector transport: the refused keys, and only they, reach the dead-letter queue with the
    database's reason; the rest is written."""
    import boto3
    from app_support import InProcessLambda, fake_aws_env
    from moto import mock_aws
    from tablesync.app import environment, repairing

    dbs.pg.create(table_name, "id integer PRIMARY KEY, qty integer NOT NULL")
    dbs.pg.insert(table_name, ["id", "qty"], [(i, i) for i in range(1, 201)])
    dbs.mysql.create(table_name, "id int PRIMARY KEY, qty int NOT NULL CHECK (qty < 190)")
    dbs.mysql.insert(table_name, ["id", "qty"], [(i, 0) for i in range(1, 101)])
    fake_aws_env(monkeypatch)
    lam = InProcessLambda({"pg": dbs.pg.url, "mysql": dbs.mysql.url}, writable={"mysql": f"{table_name}:insert+update"})
    try:
        with mock_aws():
            clients = environment.Clients(boto3.session.Session(region_name="us-east-1"))
            dead = clients.sqs.create_queue(QueueName="dlq")["QueueUrl"]
            clients.s3.create_bucket(Bucket="audit")
            settings = environment.Settings(dead_letter_url=dead, audit_bucket="audit")
            repair = {"write_missing": True, "write_differing": True, "delete_extra": True}
            check = {"source": "pg", "targets": ["mysql"], "tables": [{"table": table_name, "repair": repair}]}
            clients.ssm.put_parameter(Name="/tablesync/check", Value=json.dumps(check), Type="String")
            body = {
                "run_id": "r",
                "check_ssm": "/tablesync/check",
                "table": table_name,
                "source": "pg",
                "target": "mysql",
                "keys": [[i] for i in range(1, 201)],
            }
            result = repairing.repair_message(json.dumps(body), settings, clients, lam.opener(), lam.writer_opener())
            parked = clients.sqs.receive_message(QueueUrl=dead, MessageAttributeNames=["All"])["Messages"]
    finally:
        lam.close()
    refused = [[i] for i in range(190, 201)]
    assert sorted(f.key for f in result.failed) == refused
    assert (result.inserted, result.updated) == (100 - 11, 100)
    (message,) = parked
    parked_body = json.loads(message["Body"])
    assert sorted(parked_body["keys"]) == refused
    assert all("constraint" in f["reason"].lower() for f in parked_body["failures"])
    assert "constraint" in message["MessageAttributes"]["reason"]["StringValue"].lower()
    written = dict(dbs.mysql.execute(f"SELECT id, qty FROM {table_name}"))
    assert written == {i: i for i in range(1, 190)}


@pytest.mark.parametrize("target", ["mysql", "pg"])
def test_a_refusal_reason_never_quotes_the_rows_value(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], target: str
) -> None:
    """Databases quote the offending value in some errors (MariaDB's `Duplicate entry 'x' for
    key`, PostgreSQL's `invalid input syntax for type date: "x"`): the reason tablesync reports,
    audits and alerts keeps the message, not the value."""
    source = "pg" if target == "mysql" else "sqlite"
    secret = "s3cr3t-customer-value"
    # MariaDB refuses the repeated email; PostgreSQL the SQLite copy's date that is no date.
    source_ddl = {
        "pg": "id integer PRIMARY KEY, email text, day text",
        "sqlite": "id INTEGER PRIMARY KEY, email TEXT, day DATE",
    }
    target_ddl = {
        "mysql": "id int PRIMARY KEY, email varchar(40) UNIQUE, day text",
        "pg": "id int PRIMARY KEY, email text, day date",
    }
    rows = [(1, secret, "x"), (2, secret, "y"), (3, "b", secret)]
    dbs[source].create(table_name, source_ddl[source])
    dbs[source].insert(
        table_name, ["id", "email", "day"], rows if target == "mysql" else [(*rows[0][:2], None), rows[2]]
    )
    dbs[target].create(table_name, target_ddl[target])
    dbs[target].insert(table_name, ["id", "email", "day"], [(1, secret, "x" if target == "mysql" else None)])
    run = run_cli(
        capsys, dbs[source].url, dbs[target].url, "--table", table_name, "--write-missing", "--format", "json"
    )
    assert run.code == 1, run.err
    (repair,) = run.json()["repairs"]
    reasons = [f["reason"] for f in repair["failed"]]
    assert reasons and all(secret not in r for r in reasons), reasons
    assert all("…" in r for r in reasons), reasons
