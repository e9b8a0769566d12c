"""Repair while the rows change: a source row is written to a target only if it was read after that
target row was locked (or, through a connector Lambda, only where the target row is still as read
before the source was read, with a check of the source after the commit). Real PostgreSQL source,
real MariaDB target, a writer that changes the source and replicates each change to the target.

The bad interleaving this guards against: the source is read, the writer changes the source and
replicates to the target, the target is read (it holds the newer version), and the repair writes
the older source version over it because the target is "still as just read"."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import psycopg
import pymysql
import pytest
from servers import MYSQL_ARGS, PG_DSN
from tablesync.cli import main
from tablesync.connectors import Connector, open_connector
from tablesync.engine import Differ
from tablesync.models import Key, RepairOptions, RepairResult, RowWrite, TablePlan, WriteOutcome
from tablesync.repair import repair_target

pytestmark = pytest.mark.integration

DDL = "id int PRIMARY KEY, v bigint NOT NULL, note varchar(40) NOT NULL"


def _mysql() -> pymysql.connections.Connection:
    return pymysql.connect(**MYSQL_ARGS, autocommit=True)


class Remote:
    """A target as reached through a connector Lambda: no transaction held between calls."""

    def __init__(self, inner: Connector) -> None:
        self.inner = inner

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        return self.inner.fetch_rows(plan, keys)

    def write_rows(self, plan: TablePlan, writes: Sequence[RowWrite], dry_run: bool = False) -> WriteOutcome:
        return self.inner.write_rows(plan, writes, dry_run)

    def close(self) -> None:
        self.inner.close()


@dataclass
class Tables:
    table: str
    pg: Any
    mysql: Any

    def source(self) -> dict[int, tuple[int, str]]:
        return {r[0]: (r[1], r[2]) for r in self.pg.execute(f"SELECT id, v, note FROM {self.table}")}

    def target(self) -> dict[int, tuple[int, str]]:
        return {r[0]: (r[1], r[2]) for r in self.mysql.execute(f"SELECT id, v, note FROM {self.table}")}


@pytest.fixture
def tables(dbs: Any, table_name: str) -> Tables:
    return Tables(table_name, dbs.pg, dbs.mysql)


def load(tables: Tables, rows: int, drifted: Sequence[int]) -> None:
    source = [(i, i, f"n{i}") for i in range(1, rows + 1)]
    drift = set(drifted)
    tables.pg.create(tables.table, DDL)
    tables.pg.insert(tables.table, ["id", "v", "note"], source)
    tables.mysql.create(tables.table, DDL)
    tables.mysql.insert(tables.table, ["id", "v", "note"], [(i, -v if i in drift else v, n) for i, v, n in source])


def repair(tables: Tables, keys: list[Key], remote: bool, options: RepairOptions) -> RepairResult:
    """tablesync.repair on the keys, through a direct target connection or as through a Lambda."""
    with Differ(
        tables.table, lambda: open_connector(tables.pg.url), [lambda: open_connector(tables.mysql.url)]
    ) as differ:
        source_plan, target_plan = differ.source_plan, differ.target_plans[0]
    source = open_connector(tables.pg.url)
    direct = open_connector(tables.mysql.url, read_only=False)
    target: Any = Remote(direct) if remote else direct
    try:
        return repair_target(
            source, target, source_plan, target_plan, keys, options, table=tables.table, target_label="t"
        )
    finally:
        source.close()
        direct.close()


# --- a live writer with replication, many iterations ---------------------------------------------


class Writer(threading.Thread):
    """Changes random drifted rows on the source and applies each change to the target after
    `lag` seconds, as replication would; `applied()` waits until the last change reached it."""

    def __init__(self, table: str, keys: Sequence[int], lag: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.table, self.keys, self.lag = table, list(keys), lag
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.changes = 0
        self.errors: list[BaseException] = []

    def run(self) -> None:
        pg = psycopg.connect(PG_DSN, autocommit=True)
        my = _mysql()
        try:
            while not self.stop.is_set():
                key = self.rng.choice(self.keys)
                self.changes += 1
                version, note = 10_000_000 + self.changes, f"w{self.changes}"
                pg.execute(f"UPDATE {self.table} SET v = %s, note = %s WHERE id = %s", [version, note, key])
                if self.lag:
                    time.sleep(self.lag)
                with my.cursor() as cur:
                    cur.execute(f"UPDATE {self.table} SET v = %s, note = %s WHERE id = %s", [version, note, key])
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.errors.append(exc)
        finally:
            pg.close()
            my.close()


def drift(tables: Tables, keys: Sequence[int]) -> None:
    """Sets the target's rows of the keys to another version (their source's negated)."""
    marks = ", ".join(["%s"] * len(keys))
    tables.mysql.execute(f"UPDATE {tables.table} SET v = -v - 1 WHERE id IN ({marks})", list(keys))


@pytest.mark.parametrize("lag", [0.0, 0.003], ids=["no-lag", "lag"])
@pytest.mark.parametrize("remote", [False, True], ids=["direct", "connector-lambda"])
def test_a_live_writer_never_loses_a_change_to_the_repair(tables: Tables, lag: float, remote: bool) -> None:
    """The issue's scenario, several times: drifted rows of a MariaDB copy are repaired in
    batches of 50 while a writer keeps changing them on the PostgreSQL source and replicating each
    change at once (or a few milliseconds later). When the writer has stopped and its last change
    has arrived, the copy equals the source: no row holds a version older than the source's."""
    rng = random.Random(11)
    drifted = sorted(rng.sample(range(1, 4001), 800))
    load(tables, 4000, drifted)
    options = RepairOptions(write_differing=True, write_batch=50)
    for iteration in range(4):
        drift(tables, drifted)
        writer = Writer(tables.table, drifted, lag, seed=iteration)
        writer.start()
        try:
            repair(tables, [[k] for k in drifted], remote, options)
        finally:
            writer.stop.set()
            writer.join()
        assert not writer.errors, writer.errors
        assert writer.changes > 20, "the writer must have raced the repair"
        source, target = tables.source(), tables.target()
        stale = {k: (source[k], target[k]) for k in drifted if source[k] != target[k] and target[k][0] >= 0}
        assert not stale, f"iteration {iteration}: {len(stale)} rows hold an older version: {list(stale.items())[:3]}"
        left = [k for k in drifted if source[k] != target[k]]
        # A row the repair left alone (it changed under the repair) is still drifted: repair again.
        if left:
            again = repair(tables, [[k] for k in left], remote, options)
            assert again.remaining == 0, again
        assert tables.source() == tables.target()
    # And tablesync's own diff agrees.
    assert main(["diff", tables.pg.url, tables.mysql.url, "--table", tables.table, "--no-progress"]) == 0


@pytest.mark.parametrize("lag", [0.0, 0.003], ids=["no-lag", "lag"])
def test_the_cli_repair_under_a_live_writer_then_a_diff_finds_nothing(
    tables: Tables, lag: float, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = random.Random(5)
    drifted = sorted(rng.sample(range(1, 8001), 800))
    load(tables, 8000, drifted)
    writer = Writer(tables.table, drifted, lag, seed=3)
    writer.start()
    try:
        for _ in range(3):
            args = [tables.pg.url, tables.mysql.url, "--table", tables.table, "--write-differing"]
            code = main(["diff", *args, "--write-batch", "50", "--no-progress"])
            assert code in (0, 1)
    finally:
        writer.stop.set()
        writer.join()
    capsys.readouterr()
    assert main(["diff", tables.pg.url, tables.mysql.url, "--table", tables.table, "--no-progress"]) == 0


# --- the bad interleaving, forced --------------------------------------------------------------


class AfterSourceRead:
    """The source connector, running `hook` once, right after it read the rows of `key`."""

    def __init__(self, inner: Connector, key: Key, hook: Callable[[], None]) -> None:
        self.inner, self.key, self.hook = inner, key, hook
        self.fired = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        rows = self.inner.fetch_rows(plan, keys)
        if not self.fired.is_set() and self.key in keys:
            self.hook()
            self.fired.set()
        return rows


class ReadsAfterTheHook:
    """The target connector, whose plain reads of `key` wait (a moment at most) for the source's
    hook: a repair that read the source first would then see the replicated row."""

    def __init__(self, inner: Any, key: Key, fired: threading.Event) -> None:
        self.inner, self.key, self.fired = inner, key, fired

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        if self.key in keys:
            self.fired.wait(timeout=0.5)
        return self.inner.fetch_rows(plan, keys)  # type: ignore[no-any-return]


def replicate(table: str, statement: str, params: list[Any]) -> threading.Thread:
    """The writer's change applied to the target in a thread of its own, as replication would: on
    a target whose row the repair has locked it waits for the repair's commit."""

    def apply() -> None:
        my = _mysql()
        try:
            with my.cursor() as cur:
                cur.execute(statement.format(table=table), params)
        finally:
            my.close()

    thread = threading.Thread(target=apply)
    thread.start()
    return thread


@pytest.mark.parametrize("remote", [False, True], ids=["direct", "connector-lambda"])
@pytest.mark.parametrize("action", ["update", "delete"])
def test_a_change_replicated_between_the_reads_is_never_overwritten(tables: Tables, remote: bool, action: str) -> None:
    """Right after the repair read a key's source row, the writer changes that row on the source
    and replicates it to the target at once (the hook waits until the replica landed, or until it
    is seen waiting for the repair's lock). The repair must not write what it read (now older) over
    the replicated row: with a direct connection it locked the row before reading the source, so it
    writes and the replica lands after its commit; through a connector Lambda the target row is no
    longer as read, so it is left alone (`changed`). Either way the copy ends equal. The key is in
    the second of two batches, so a source read ahead of the first batch's write would be caught."""
    load(tables, 10, drifted=[3, 4] if action == "update" else [3])
    if action == "update":
        key = 4  # differs on the target; the writer sets a newer version on both sides
        change = ("UPDATE {table} SET v = %s, note = %s WHERE id = %s", [99, "newest", key])
        pg_change = f"UPDATE {tables.table} SET v = 99, note = 'newest' WHERE id = %s"
        options = RepairOptions(write_differing=True, write_batch=1)
    else:
        key = 42  # only the target has it; the source gains the same key, replicated as an upsert
        tables.mysql.insert(tables.table, ["id", "v", "note"], [(key, 1, "stray")])
        change = ("REPLACE INTO {table} (id, v, note) VALUES (%s, %s, %s)", [key, 99, "newest"])
        pg_change = f"INSERT INTO {tables.table} VALUES (%s, 99, 'newest')"
        options = RepairOptions(write_differing=True, delete_extra=True, write_batch=1)
    replicas: list[threading.Thread] = []

    def writer() -> None:
        with psycopg.connect(PG_DSN, autocommit=True) as pg:
            pg.execute(pg_change, [key])
        replicas.append(replicate(tables.table, *change))
        replicas[-1].join(timeout=1.0)  # a replica waiting for the repair's lock lands later

    with Differ(
        tables.table, lambda: open_connector(tables.pg.url), [lambda: open_connector(tables.mysql.url)]
    ) as differ:
        source_plan, target_plan = differ.source_plan, differ.target_plans[0]
    source = AfterSourceRead(open_connector(tables.pg.url), [key], writer)
    direct = open_connector(tables.mysql.url, read_only=False)
    target = ReadsAfterTheHook(Remote(direct) if remote else direct, [key], source.fired)
    try:
        result = repair_target(
            source,  # type: ignore[arg-type]
            target,  # type: ignore[arg-type]
            source_plan,
            target_plan,
            [[3], [key]],
            options,
            table=tables.table,
            target_label="t",
        )
    finally:
        for thread in replicas:
            thread.join()
        source.inner.close()
        direct.close()
    assert source.fired.is_set()
    assert tables.target().get(key) == tables.source().get(key) == (99, "newest")
    assert tables.target() == tables.source()
    if remote:
        # The target row changed between its read and the write: left alone and said so.
        assert (result.changed, result.changed_keys, result.remaining) == (1, [[key]], 1)
    else:
        # Written (with the version read after the lock), the replica applied after the commit.
        assert result.updated + result.deleted == 2 and result.changed == 0 and result.remaining == 0


def test_a_source_change_during_a_remote_write_is_reported_not_counted_repaired(tables: Tables) -> None:
    """Through a connector Lambda the source is read once more after the commit: a key whose
    source row moved on while it was written is reported (`source_changed`, in changed_keys), so
    the run does not look clean, and a second repair brings the newest version."""
    load(tables, 10, drifted=[4])

    def writer() -> None:  # the source changes; its replica has not arrived yet
        with psycopg.connect(PG_DSN, autocommit=True) as pg:
            pg.execute(f"UPDATE {tables.table} SET v = 99, note = 'newest' WHERE id = 4")

    with Differ(
        tables.table, lambda: open_connector(tables.pg.url), [lambda: open_connector(tables.mysql.url)]
    ) as differ:
        source_plan, target_plan = differ.source_plan, differ.target_plans[0]
    source = AfterSourceRead(open_connector(tables.pg.url), [4], writer)
    direct = open_connector(tables.mysql.url, read_only=False)
    options = RepairOptions(write_differing=True)
    try:
        result = repair_target(
            source,  # type: ignore[arg-type]
            Remote(direct),  # type: ignore[arg-type]
            source_plan,
            target_plan,
            [[4]],
            options,
            table=tables.table,
            target_label="t",
        )
    finally:
        source.inner.close()
        direct.close()
    assert (result.updated, result.source_changed, result.changed_keys, result.remaining) == (1, 1, [[4]], 1)
    again = repair(tables, [[4]], True, options)
    assert (again.updated, again.remaining) == (1, 0)
    assert tables.target() == tables.source()


@pytest.mark.parametrize("remote", [False, True], ids=["direct", "connector-lambda"])
def test_a_row_inserted_under_the_repair_is_left_to_its_writer(dbs: Any, table_name: str, remote: bool) -> None:
    """A missing row has nothing to lock: on a PostgreSQL target (no gap locks) another writer can
    insert the key between the repair's lock and its write. The repair's insert is then refused
    by the key, and that is a row that appeared under the repair (`changed`, left to its writer
    and to be checked again), not a failure; the newer row stays. MariaDB source."""
    table = Tables(table_name, dbs.mysql, dbs.pg)  # source MariaDB, target PostgreSQL
    source_rows = [(i, i, f"n{i}") for i in range(1, 11)]
    table.pg.create(table_name, DDL)
    table.pg.insert(table_name, ["id", "v", "note"], source_rows)
    table.mysql.create(table_name, DDL)
    table.mysql.insert(table_name, ["id", "v", "note"], [r for r in source_rows if r[0] != 4])

    def writer() -> None:  # the source row changes and its replica arrives at once, an insert
        my = _mysql()
        try:
            with my.cursor() as cur:
                cur.execute(f"UPDATE {table_name} SET v = 99, note = 'newest' WHERE id = 4")
        finally:
            my.close()
        with psycopg.connect(PG_DSN, autocommit=True) as pg:
            pg.execute(f"INSERT INTO {table_name} VALUES (4, 99, 'newest')")

    with Differ(table_name, lambda: open_connector(dbs.mysql.url), [lambda: open_connector(dbs.pg.url)]) as differ:
        source_plan, target_plan = differ.source_plan, differ.target_plans[0]
    source = AfterSourceRead(open_connector(dbs.mysql.url), [4], writer)
    direct = open_connector(dbs.pg.url, read_only=False)
    target = ReadsAfterTheHook(Remote(direct) if remote else direct, [4], source.fired)
    try:
        result = repair_target(
            source,  # type: ignore[arg-type]
            target,  # type: ignore[arg-type]
            source_plan,
            target_plan,
            [[4]],
            RepairOptions(write_missing=True),
            table=table_name,
            target_label="t",
        )
    finally:
        source.inner.close()
        direct.close()
    assert source.fired.is_set()
    assert dbs.pg.execute(f"SELECT v, note FROM {table_name} WHERE id = 4") == [(99, "newest")]
    assert (result.inserted, result.changed, result.changed_keys, result.failed) == (0, 1, [[4]], [])
    assert result.remaining == 1 and result.verdict == "1 difference left"
