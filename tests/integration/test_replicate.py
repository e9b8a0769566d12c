"""`tablesync replicate` on the real servers: a PostgreSQL events table to MariaDB, a second
PostgreSQL database and SQLite, each from its own highest key; rows that share a transaction never
split between batches; every start-up validation failing with one line naming the destination; a
destination away while the others go on, and catching up once back; a replication killed with
SIGKILL and started again; --follow woken by polling and by LISTEN/NOTIFY, stopped by SIGTERM."""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from outage import OutageProxy
from tablesync.cli import main
from tablesync.connectors import open_connector
from tablesync.engine.replicate import Replicator, replicate_options
from test_copy import PG_URL_OF
from test_diff import assert_clean_error
from test_outages import PORTS, _via

pytestmark = pytest.mark.integration
DDL = {
    "pg": "id bigint PRIMARY KEY, tx bigint, payload text",
    "mysql": "id bigint PRIMARY KEY, tx bigint, payload text",
    "sqlite": "id INTEGER PRIMARY KEY, tx BIGINT, payload TEXT",
}


def _events(first: int, last: int) -> list[tuple[Any, ...]]:
    """Events whose transaction ids interleave (transactions 7 apart in id share a tx)."""
    return [(i, (i // 10) * 10 + i % 3, f"event {i}\twith\\escapes\n") for i in range(first, last + 1)]


@pytest.fixture
def second_pg(pg_admin: Any, table_name: str) -> Iterator[str]:
    from servers import PG_DATABASE

    name = f"{PG_DATABASE}_copy"
    if not pg_admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
        pg_admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_URL_OF(name)
    conn = open_connector(url, read_only=False)
    conn.execute(f"CREATE TABLE {table_name} ({DDL['pg']})", [])
    try:
        yield url
    finally:
        conn.execute(f"DROP TABLE IF EXISTS {table_name}", [])
        conn.close()


def _replicate(*args: str) -> tuple[int, dict[str, Any]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["replicate", *args, "--format", "json", "--no-progress"])
    return code, json.loads(out.getvalue()) if out.getvalue().strip() else {}


def _ids(db: Any, table: str) -> list[int]:
    return [int(r[0]) for r in db.execute(f"SELECT id FROM {table} ORDER BY id")]


def _identical(source: str, target: str, table: str) -> bool:
    return main(["diff", source, target, "--table", table, "--no-progress"]) == 0


def test_each_destination_goes_on_from_its_own_highest_key(
    dbs: Any, table_name: str, second_pg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dbs.pg.create(table_name, DDL["pg"])
    dbs.pg.insert(table_name, ["id", "tx", "payload"], _events(1, 5000))
    dbs.mysql.create(table_name, DDL["mysql"])
    dbs.mysql.insert(table_name, ["id", "tx", "payload"], _events(1, 1234))  # part-way already
    dbs.sqlite.create(table_name, DDL["sqlite"])
    destinations = [dbs.mysql.url, second_pg, dbs.sqlite.url]
    code, result = _replicate(dbs.pg.url, *destinations, "--table", table_name, "--batch", "700")
    assert code == 0, result
    copied = {d["url"]: (d["rows_copied"], d["lag_rows"]) for d in result["destinations"]}
    assert list(copied.values()) == [(5000 - 1234, 0), (5000, 0), (5000, 0)]
    dbs.pg.insert(table_name, ["id", "tx", "payload"], _events(5001, 5600))  # the source grows
    code, result = _replicate(dbs.pg.url, *destinations, "--table", table_name, "--batch", "700")
    assert code == 0 and [d["rows_copied"] for d in result["destinations"]] == [600, 600, 600]
    capsys.readouterr()
    for url in destinations:
        assert _identical(dbs.pg.url, url, table_name)


def test_rows_of_one_transaction_are_never_split_between_batches(dbs: Any, table_name: str) -> None:
    dbs.pg.create(table_name, DDL["pg"])
    dbs.pg.insert(table_name, ["id", "tx", "payload"], _events(1, 3000))
    dbs.sqlite.create(table_name, DDL["sqlite"])
    batches: list[set[int]] = []

    class Recording:
        """The SQLite destination, recording each batch's transactions as it loads it."""

        def __init__(self) -> None:
            self.inner = open_connector(dbs.sqlite.url, read_only=False)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

        def load_rows(self, plan: Any, rows: list[list[str | None]]) -> None:
            batches.append({int(row[1] or 0) for row in rows})
            self.inner.load_rows(plan, rows)

    options = replicate_options(None, None, [], 45, "tx")
    with Replicator(
        table_name,
        lambda: open_connector(dbs.pg.url),
        [Recording],
        options,
        source_label="pg",
        destination_labels=["sqlite"],
    ) as replicator:
        state = replicator.catch_up(replicator.start())
    assert state.done and len(batches) > 30
    for i, batch in enumerate(batches):
        for other in batches[i + 1 :]:
            assert not batch & other, f"a transaction split between batches: {sorted(batch & other)}"
    assert _ids(dbs.sqlite, table_name) == list(range(1, 3001))


@pytest.mark.parametrize("case", ["source", "first row", "more rows", "higher key", "column"])
def test_every_start_up_validation_names_the_destination(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    dbs.pg.create(table_name, DDL["pg"])
    dbs.pg.insert(table_name, ["id", "tx", "payload"], _events(1, 100))
    if case == "source":
        destination, needles = dbs.pg.url, ["it is the source itself"]
    else:
        destination = dbs.mysql.url
        ddl = DDL["mysql"] if case != "column" else "id bigint PRIMARY KEY, tx bigint"
        dbs.mysql.create(table_name, ddl)
        rows = {
            "first row": [(1, 0, "not event 1")],
            "more rows": [*_events(1, 100), (101, 0, "x")],
            "higher key": [*_events(1, 3), (500, 0, "x")],
            "column": [],
        }[case]
        names = ["id", "tx"] if case == "column" else ["id", "tx", "payload"]
        dbs.mysql.insert(table_name, names, rows)
        needles = {
            "first row": ["first row", "is not the source's first row"],
            "more rows": ["rows and highest key", "101 rows"],
            "higher key": ["rows and highest key", "500"],
            "column": ["table", "payload"],
        }[case]
    run_args = ["replicate", dbs.pg.url, destination, "--table", table_name]
    capsys.readouterr()
    code = main(run_args)
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.splitlines()) == 1, (code, out, err)
    assert destination.split("@")[-1] in err and all(n in err for n in needles), err
    code = main([*run_args, "--dry-run"])
    out, _ = capsys.readouterr()
    assert code == 2 and "FAIL" in out and "dry run: nothing written" in out
    if case != "source":
        assert dbs.mysql.count(table_name) == len(rows)  # nothing written


def test_a_destination_away_is_left_behind_and_catches_up_when_back(
    dbs: Any, table_name: str, second_pg: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dbs.pg.create(table_name, DDL["pg"])
    dbs.pg.insert(table_name, ["id", "tx", "payload"], _events(1, 4000))
    dbs.mysql.create(table_name, DDL["mysql"])
    proxy = OutageProxy(PORTS["mysql"])
    away = _via(proxy, dbs.mysql.url)
    try:
        options = replicate_options(None, None, [], 200, None)
        with Replicator(
            table_name,
            lambda: open_connector(dbs.pg.url),
            [
                lambda: open_connector(away, read_only=False, connect_timeout=2),
                lambda: open_connector(second_pg, read_only=False),
            ],
            options,
            source_label="pg",
            destination_labels=["mysql", "pg2"],
        ) as replicator:
            state = replicator.start()
            state = replicator.copier.step(state, time.monotonic() + 0.05)  # a few batches each
            proxy.down()
            state = replicator.catch_up(state)
            result = replicator.result(state)
            mysql_status, pg2_status = result.destinations
            assert mysql_status.error is not None and pg2_status.error is None and pg2_status.lag_rows == 0
            held = dbs.mysql.count(table_name)
            assert held < 4000
            proxy.up()
            state = replicator.catch_up(state)  # back: it catches up
            assert all(t.error is None for t in state.targets) and state.done
    finally:
        proxy.close()
    assert dbs.mysql.count(table_name) == 4000
    capsys.readouterr()
    assert _identical(dbs.pg.url, dbs.mysql.url, table_name)


def test_a_replication_killed_with_sigkill_starts_again_with_nothing_twice(dbs: Any, table_name: str) -> None:
    dbs.pg.create(table_name, DDL["pg"])
    dbs.pg.insert(table_name, ["id", "tx", "payload"], _events(1, 30000))
    dbs.mysql.create(table_name, DDL["mysql"])
    command = [sys.executable, "-m", "tablesync.cli", "replicate", dbs.pg.url, dbs.mysql.url, "--table", table_name]
    command += ["--batch", "100", "--no-progress"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None and dbs.mysql.count(table_name) < 2000:
        time.sleep(0.005)
    assert process.poll() is None, "the replication ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 0 < dbs.mysql.count(table_name) < 30000
    again = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert _ids(dbs.mysql, table_name) == list(range(1, 30001))


@pytest.mark.parametrize("wake", ["polling", "notify"])
def test_follow_keeps_replicating_until_sigterm(dbs: Any, table_name: str, wake: str, tmp_path: Path) -> None:
    dbs.pg.create(table_name, DDL["pg"])
    dbs.pg.insert(table_name, ["id", "tx", "payload"], _events(1, 100))
    dbs.mysql.create(table_name, DDL["mysql"])
    command = [sys.executable, "-m", "tablesync.cli", "replicate", dbs.pg.url, dbs.mysql.url, "--table", table_name]
    command += ["--follow", "--no-progress", "--format", "json"]
    if wake == "notify":
        channel = f"ts_{table_name}"
        dbs.pg.execute(
            "CREATE OR REPLACE FUNCTION tablesync_notify() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN PERFORM pg_notify(TG_ARGV[0], TG_TABLE_NAME); RETURN NULL; END $$"
        )
        dbs.pg.execute(
            f"CREATE TRIGGER {table_name}_notify AFTER INSERT ON {table_name} "
            f"FOR EACH STATEMENT EXECUTE FUNCTION tablesync_notify('{channel}')"
        )
        command += ["--notify-channel", channel, "--interval", "60"]  # only a notification wakes it in time
    else:
        command += ["--interval", "0.2"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: dbs.mysql.count(table_name) == 100)
        time.sleep(0.5)  # asleep now
        dbs.pg.insert(table_name, ["id", "tx", "payload"], _events(101, 350))
        _wait_for(lambda: dbs.mysql.count(table_name) == 350, seconds=15)
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    (destination,) = json.loads(out)["destinations"]
    assert destination["rows_copied"] == 350 and destination["lag_rows"] == 0
    assert json.loads(out)["rounds"] >= 2


def _wait_for(condition: Any, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("not within the time allowed")


def test_bad_replicate_input_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from test_copy import _cli

    run = _cli(capsys, "replicate", "sqlite:///a.db", "sqlite:///b.db", "--table", "t", "--notify-channel", "x")
    assert_clean_error(run, "--notify-channel", "PostgreSQL")
    run = _cli(capsys, "replicate", "sqlite:///a.db", "sqlite:///b.db", "--table", "t", "--interval", "0")
    assert_clean_error(run, "--interval")
