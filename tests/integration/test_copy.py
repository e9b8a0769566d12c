"""`tablesync copy` on the real servers: every direction among PostgreSQL, MariaDB and SQLite
(tables created from the source's schema, rows of every kind the diff compares, proven equal by
row hashes read from both sides and by the copy's own verify), a copy killed at any moment and
resumed (no row twice, none skipped), a target that already holds rows, --evolve-schema, and the
errors (one line, nothing written)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tablesync.cli import main
from tablesync.connectors import open_connector
from tablesync.copy_models import CopyOptions
from tablesync.engine.bulk_copy import Copier
from test_diff import assert_clean_error, run_cli
from test_row_hash_types import ENGINES, MY, PG, ROW_TYPES, ROWS, SQ, Databases, engine_value, hashes_by_id, plan_of

pytestmark = pytest.mark.integration
DIRECTIONS = [(a, b) for a in ENGINES for b in ENGINES if a != b]


@pytest.fixture
def dbs(pg_admin: Any, mysql_admin: Any, tmp_path: Path, table_name: str) -> Iterator[Databases]:
    """The three engines of test_row_hash_types (every table dropped at the end)."""
    databases = Databases(pg_admin, mysql_admin, tmp_path, table_name)
    try:
        yield databases
    finally:
        databases.drop_all()


def _copy(*args: str) -> tuple[int, dict[str, Any]]:
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["copy", *args, "--format", "json", "--no-progress"])
    return code, json.loads(out.getvalue())


def _source(dbs: Databases, engine: str, rows: list[tuple[Any, ...]]) -> str:
    table = dbs.new_name()
    dbs.create(engine, table, [(t.name, t.native(engine)) for t in ROW_TYPES])
    names = [t.name for t in ROW_TYPES]
    converted = [
        (i, *(engine_value(engine, t.kind, v) for t, v in zip(ROW_TYPES, row, strict=True))) for i, row in rows
    ]
    dbs.insert(engine, table, names, converted)
    return table


def _hashes(dbs: Databases, engine: str, table: str) -> dict[int, int]:
    conn = dbs.open(engine)
    try:
        return hashes_by_id(conn, plan_of(conn, table))
    finally:
        conn.close()


@pytest.mark.parametrize(("source", "target"), DIRECTIONS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(ROWS, min_size=1, max_size=25))
def test_a_created_copy_holds_every_value_exactly(
    dbs: Databases, source: str, target: str, values: list[tuple[Any, ...]]
) -> None:
    rows = list(enumerate(values, start=1))
    table = _source(dbs, source, rows)
    dbs.created.append((target, table))
    # SQLite keeps 15 significant digits: numeric(20,6) has no exact equivalent there (refused:
    # test_a_type_no_target_holds_is_named_before_anything_is_written).
    narrow = ["--ignore", "c_numeric"] if target == SQ and source != SQ else []
    code, result = _copy(dbs.urls[source], dbs.urls[target], "--table", table, "--create", "--batch", "7", *narrow)
    assert code == 0, result
    (copied,) = result["targets"]
    assert copied["rows_copied"] == len(rows) and copied["created"].startswith("CREATE TABLE")
    assert copied["verified"] is True
    # Independently of the verify: the row hashes read from each side agree row by row.
    if not narrow:
        assert _hashes(dbs, target, table) == _hashes(dbs, source, table)


@pytest.fixture
def big(dbs: Databases) -> str:
    """A PostgreSQL table of 20,000 rows (no target yet)."""
    table = dbs.new_name()
    dbs.pg_admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, name text, amount numeric(12,2))")
    dbs.pg_admin.execute(f"INSERT INTO {table} SELECT g, 'n' || g, g * 1.25 FROM generate_series(1, 20000) g")
    dbs.created += [(PG, table), (MY, table)]
    return table


def _table_there(dbs: Databases, table: str) -> bool:
    with dbs.mysql_admin.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = %s", (table,))
        return bool(cur.fetchone()[0])


def _count(dbs: Databases, table: str) -> int:
    with dbs.mysql_admin.cursor() as cur:
        cur.execute(f"SELECT COUNT(*), COUNT(DISTINCT id) FROM {table}")
        count, distinct = cur.fetchone()
    assert count == distinct
    return int(count)


def test_a_copy_killed_at_any_moment_resumes_with_no_row_twice(dbs: Databases, big: str, tmp_path: Path) -> None:
    state_file = tmp_path / "copy.state"
    args = [dbs.urls[PG], dbs.urls[MY], "--table", big, "--create", "--batch", "50", "--state-file", str(state_file)]
    command = [sys.executable, "-m", "tablesync.cli", "copy", *args, "--no-progress", "--format", "json"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if state_file.exists() and _table_there(dbs, big) and _count(dbs, big) >= 1000:
            break  # mid-copy: the state is saved a second apart, the batches are committed each
        time.sleep(0.005)
    assert process.poll() is None, "the copy ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < _count(dbs, big) < 20000
    rerun = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0, rerun.stderr
    (target,) = json.loads(rerun.stdout)["targets"]
    assert target["verified"] is True and _count(dbs, big) == 20000
    assert not state_file.exists()


def test_a_batch_committed_but_never_saved_is_not_written_again(dbs: Databases, big: str) -> None:
    """The state saved before a batch, used again after the batch committed (a crash between the
    commit and the save): the target's own highest key moves the copy past what it holds."""

    def copier() -> Copier:
        return Copier(
            big,
            lambda: open_connector(dbs.urls[PG]),
            [lambda: open_connector(dbs.urls[MY], read_only=False)],
            CopyOptions(batch=1000, create=True),
        )

    with copier() as first:
        before = first.prepare(first.initial_state())
        first.step(before, 0.0)  # one batch, committed; its state "lost"
    assert _count(dbs, big) == 1000
    with copier() as second:
        state = second.run(before)
    assert state.done and _count(dbs, big) == 20000


def test_a_target_with_rows_is_refused_appended_or_replaced(
    dbs: Databases, big: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with dbs.mysql_admin.cursor() as cur:
        cur.execute(f"CREATE TABLE {big} (id int PRIMARY KEY, name text, amount decimal(12,2))")
        cur.execute(f"INSERT INTO {big} VALUES (1, 'n1', 1.25), (2, 'stale', 0)")
    run = _cli(capsys, "copy", dbs.urls[PG], dbs.urls[MY], "--table", big)
    assert_clean_error(run, "already holds rows", "--append", "--replace")
    assert _count(dbs, big) == 2  # nothing written
    code, result = _copy(dbs.urls[PG], dbs.urls[MY], "--table", big, "--append")
    (target,) = result["targets"]
    # The rows after its highest key are copied; the verify covers them (row 2 is not re-checked).
    assert code == 0 and target["rows_copied"] == 19998 and _count(dbs, big) == 20000
    code, result = _copy(dbs.urls[PG], dbs.urls[MY], "--table", big, "--replace")
    (target,) = result["targets"]
    assert code == 0 and target["replaced"] and target["rows_copied"] == 20000 and target["verified"]


def test_evolve_schema_adds_the_columns_a_target_lacks(
    dbs: Databases, big: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with dbs.mysql_admin.cursor() as cur:
        cur.execute(f"CREATE TABLE {big} (id int PRIMARY KEY, name text)")
    run = _cli(capsys, "copy", dbs.urls[PG], dbs.urls[MY], "--table", big)
    assert_clean_error(run, "amount")
    code, result = _copy(dbs.urls[PG], dbs.urls[MY], "--table", big, "--evolve-schema")
    (target,) = result["targets"]
    assert code == 0 and target["added_columns"] == ["amount"] and target["verified"]


def test_evolve_schema_lets_a_repair_fill_a_new_column(
    dbs: Databases, big: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = _copy(dbs.urls[PG], dbs.urls[MY], "--table", big, "--create", "--columns", "name")
    assert code == 0
    run = _cli(capsys, "diff", dbs.urls[PG], dbs.urls[MY], "--table", big, "--write-differing")
    assert_clean_error(run, "amount")
    run = _cli(capsys, "diff", dbs.urls[PG], dbs.urls[MY], "--table", big, "--write-differing", "--evolve-schema")
    assert run.code == 0, run.err  # every row differed (the new column NULL), and was repaired
    assert _cli(capsys, "diff", dbs.urls[PG], dbs.urls[MY], "--table", big).code == 0


def test_a_type_no_target_holds_is_named_before_anything_is_written(
    dbs: Databases, capsys: pytest.CaptureFixture[str]
) -> None:
    table = dbs.new_name()
    dbs.pg_admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, span interval, big numeric(70,2))")
    dbs.created += [(PG, table), (MY, table)]
    run = _cli(capsys, "copy", dbs.urls[PG], dbs.urls[MY], "--table", table, "--create")
    assert_clean_error(run, "'span'", "interval")
    run = _cli(capsys, "copy", dbs.urls[PG], dbs.urls[MY], "--table", table, "--create", "--ignore", "span")
    assert_clean_error(run, "'big'", "numeric(70,2)", "65 digits")
    with dbs.mysql_admin.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_NAME = %s", (table,))
        assert cur.fetchone()[0] == 0  # not created
    run = _cli(capsys, "copy", dbs.urls[PG], dbs.urls[SQ], "--table", table, "--create", "--ignore", "span")
    assert_clean_error(run, "'big'", "numeric(70,2)", "SQLite", "15 significant digits")


def test_where_and_columns_copy_a_part(dbs: Databases, big: str) -> None:
    args = [dbs.urls[PG], dbs.urls[SQ], "--table", big, "--create", "--where", "id > 19000", "--columns", "name"]
    code, result = _copy(*args)
    (target,) = result["targets"]
    assert code == 0 and target["rows_copied"] == 1000 and target["verified"]
    dbs.created.append((SQ, big))


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--table", "t", "sqlite:///nowhere/a.db", "sqlite:///nowhere/b.db"], ["cannot open"]),
        (["--table", "t", "--batch", "0", "sqlite:///a.db", "sqlite:///b.db"], ["--batch"]),
        (["--table", "t", "--append", "--replace", "sqlite:///a.db", "sqlite:///b.db"], ["--replace"]),
    ],
)
def test_bad_input_is_one_line(capsys: pytest.CaptureFixture[str], args: list[str], needles: list[str]) -> None:
    assert_clean_error(_cli(capsys, "copy", *args), *needles)


def _cli(capsys: pytest.CaptureFixture[str], command: str, *args: str) -> Any:
    """run_cli (test_diff) for any command."""
    if command == "diff":
        return run_cli(capsys, *args)
    from test_diff import Run

    capsys.readouterr()
    try:
        code = main([command, *args])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return Run(code, out, err)


AWKWARD_TEXTS = ["", "tab\there", "line\nbreak\r\n", "back\\slash \\N \\t", "form\ffeed\vtab\bspace", "'quote' \"dq\"",
                 "ünïcödé ✓ 𝄞", "%s %(x)s %%", "NULL", "\\x41"]  # fmt: skip
AWKWARD_BYTES = [b"", b"\x00", b"\\", b"\t\n", bytes(range(256))]


@pytest.fixture
def second_databases(pg_admin: Any, mysql_admin: Any) -> dict[str, str]:
    """A second database on each server, for copies between two databases of one engine."""
    from servers import MYSQL_DATABASE, PG_DATABASE

    pg_name, my_name = f"{PG_DATABASE}_copy", f"{MYSQL_DATABASE}_copy"
    if not pg_admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [pg_name]).fetchone():
        pg_admin.execute(f'CREATE DATABASE "{pg_name}"')
    with mysql_admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE IF NOT EXISTS `{my_name}`")
    pg_url, my_url = PG_URL_OF(pg_name), MY_URL_OF(my_name)
    return {PG: pg_url, MY: my_url}


def PG_URL_OF(database: str) -> str:
    from conftest import PG_URL

    return PG_URL.rsplit("/", 1)[0] + "/" + database


def MY_URL_OF(database: str) -> str:
    from conftest import MYSQL_URL

    return MYSQL_URL.rsplit("/", 1)[0] + "/" + database


@pytest.mark.parametrize(("source", "target"), [(PG, MY), (MY, PG), (PG, PG), (MY, MY)])
def test_the_bulk_paths_carry_every_awkward_text_and_byte(
    dbs: Databases, second_databases: dict[str, str], source: str, target: str
) -> None:
    """Between PostgreSQL and MariaDB a batch travels as text rendered by the source database
    (COPY text, LOAD DATA text, VALUES tuples): escapes, NULL markers, quotes, placeholders'
    percent signs and every byte survive it."""
    table = dbs.new_name()
    dbs.create(source, table, [("t", "text"), ("b", "bytea" if source == PG else "blob")])
    rows = [(i, t, b) for i, (t, b) in enumerate(zip(AWKWARD_TEXTS, AWKWARD_BYTES * 2, strict=False), start=1)]
    rows.append((len(rows) + 1, None, None))
    dbs.insert(source, table, ["t", "b"], rows)
    target_url = second_databases[target] if target == source else dbs.urls[target]
    try:
        code, result = _copy(dbs.urls[source], target_url, "--table", table, "--create")
        assert code == 0 and result["targets"][0]["verified"] is True, result
        assert result["targets"][0]["rows_copied"] == len(rows)
    finally:
        conn = open_connector(target_url, read_only=False)
        try:
            conn.execute(f"DROP TABLE IF EXISTS {table}", [])
        finally:
            conn.close()


def test_the_server_gets_no_local_file_it_was_not_offered() -> None:
    """LOAD DATA LOCAL: PyMySQL would send any file the server names; tablesync's loader sends only
    the temporary file of its own statement."""
    import types

    import pymysql
    from tablesync.dialects import mysql

    connection = types.SimpleNamespace(max_allowed_packet=1 << 24, write_packet=lambda data: None)
    with pytest.raises(pymysql.err.OperationalError, match="refused-by-tablesync"):
        mysql._send_offered_file(b"/etc/passwd", connection)
