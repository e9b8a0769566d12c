"""The app's copy and replicate modes on SQLite databases (the connector and writer Lambdas'
operations called directly, as the state machine's tasks would call them): a target that lacks
the table gets it (created and loaded over several checkpointed invocations) and is then checked;
a replicated table gets each run's new rows; the writers' allow-list decides what a copy may do."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from tablesync.app import checking, copying, listing
from tablesync.app.checkpoints import MemoryCheckpointStore
from tablesync.app.events import ChecksumResult, ConnectorRequest, RunInput, TableItem
from tablesync.app.serving import parse_allow_list, writer_refusal
from tablesync.app.settings import Settings
from tablesync.connectors import open_connector
from tablesync.errors import InputError
from tablesync.urls import parse_url
from test_app_stores import MemoryDefinitions

CHECK_SSM = "/tablesync/copies"


@pytest.fixture
def databases(tmp_path: Path) -> dict[str, Path]:
    paths = {name: tmp_path / f"{name}.db" for name in ("src", "dst", "old")}
    with sqlite3.connect(paths["src"]) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INTEGER, note TEXT, amount DECIMAL(10,2))")
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?)", [(i, i % 7, f"n{i}", f"{i}.25") for i in range(1, 3001)]
        )
    for name in ("dst", "old"):
        sqlite3.connect(paths[name]).close()
    with sqlite3.connect(paths["old"]) as db:  # a target that has the table already
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INTEGER, note TEXT, amount DECIMAL(10,2))")
    return paths


def _openers(paths: dict[str, Path]) -> tuple[Any, Any]:
    def connectors(name: str) -> Any:
        return open_connector(parse_url(f"sqlite:///{paths[name]}"))

    def writers(name: str) -> Any:
        return open_connector(parse_url(f"sqlite:///{paths[name]}"), read_only=False)

    return connectors, writers


def _run(
    definition: dict[str, Any], paths: dict[str, Path], store: MemoryCheckpointStore, run_id: str
) -> list[ChecksumResult]:
    """ListTables, then each item through the state machine's table loop: CopyTable while it
    continues, then (mode copy) ChecksumTable while it continues."""
    connectors, writers = _openers(paths)
    settings = Settings(safety_margin_seconds=0, save_every_seconds=0, copy_batch=250)
    run = RunInput(run_id=run_id, owner="exec-1", check_ssm=CHECK_SSM)
    items = listing.list_tables(run, None, connectors, definitions=MemoryDefinitions({CHECK_SSM: definition})).items
    out = []
    for item in items:
        current: TableItem = item
        if item.mode in ("copy", "replicate"):
            result = copying.copy_table(current, 0.01, settings, store, connectors, writers)
            invocations = 1
            while result.status != "done":
                result = copying.copy_table(result, 0.01, settings, store, connectors, writers)
                invocations += 1
            result.copy_invocations = invocations
            current = result
            if item.mode == "replicate":
                out.append(result)
                continue
        result = checking.checksum_table(current, 600, settings, store, connectors)
        assert result.status == "done"
        out.append(result)
    return out


def _rows(path: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as db:
        return db.execute("SELECT * FROM orders ORDER BY id").fetchall()


def test_a_copy_creates_and_loads_the_targets_that_lack_the_table_then_checks(databases: dict[str, Path]) -> None:
    definition = {"source": "src", "targets": ["dst", "old"], "tables": [{"table": "orders", "mode": "copy"}]}
    (result,) = _run(definition, databases, MemoryCheckpointStore(), "run-c")
    (copied,) = result.copied  # only the target that lacked it
    assert copied.url == "dst" and copied.rows_copied == 3000 and copied.created.startswith("CREATE TABLE")
    assert result.copy_invocations > 1  # checkpointed across invocations
    dst, old = result.targets_summary
    assert (dst.missing, dst.extra, dst.differing) == (0, 0, 0)  # the check after the copy proves it
    assert old.missing == 3000  # the existing (empty) table is checked, not copied into
    assert _rows(databases["dst"]) == _rows(databases["src"])


def test_a_replicated_table_gets_each_runs_new_rows(databases: dict[str, Path]) -> None:
    with sqlite3.connect(databases["dst"]) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INTEGER, note TEXT, amount DECIMAL(10,2))")
    definition = {"source": "src", "targets": ["dst", "old"], "tables": [{"table": "orders", "mode": "replicate"}]}
    store = MemoryCheckpointStore()
    (first,) = _run(definition, databases, store, "run-r1")
    assert [c.rows_copied for c in first.copied] == [3000, 3000]
    with sqlite3.connect(databases["src"]) as db:
        db.executemany("INSERT INTO orders VALUES (?, ?, ?, ?)", [(i, 0, "new", "1") for i in range(3001, 3101)])
    (second,) = _run(definition, databases, store, "run-r2")
    assert [c.rows_copied for c in second.copied] == [100, 100]
    assert _rows(databases["dst"]) == _rows(databases["src"]) == _rows(databases["old"])


def test_a_replication_whose_destination_fails_its_validation_fails_the_table(databases: dict[str, Path]) -> None:
    with sqlite3.connect(databases["dst"]) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, qty INTEGER, note TEXT, amount DECIMAL(10,2))")
        db.execute("INSERT INTO orders VALUES (1, 0, 'not the first row', '0')")
    definition = {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "mode": "replicate"}]}
    with pytest.raises(InputError, match="dst: first row"):
        _run(definition, databases, MemoryCheckpointStore(), "run-v")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"table": "orders", "mode": "copy", "shards": 4}, "use one shard"),
        ({"table": "orders", "group_column": "qty"}, "group_column is for mode replicate"),
    ],
)
def test_what_a_copy_cannot_ask_for_is_refused(databases: dict[str, Path], entry: dict[str, Any], message: str) -> None:
    definition = {"source": "src", "targets": ["dst"], "tables": [entry]}
    with pytest.raises(InputError, match=message):
        _run(definition, databases, MemoryCheckpointStore(), "run-x")


def test_the_writer_creates_and_loads_only_what_its_allow_list_names() -> None:
    allowed = parse_allow_list("orders:insert+create, events:insert")
    plan = {"table": "orders"}
    assert writer_refusal(ConnectorRequest(op="load_rows", args={"plan": plan, "rows": []}), "db", allowed) is None
    assert writer_refusal(ConnectorRequest(op="create_table", args={"table": "orders"}), "db", allowed) is None
    refused = writer_refusal(ConnectorRequest(op="create_table", args={"table": "events"}), "db", allowed)
    assert refused is not None and "may not create table events" in refused
    refused = writer_refusal(
        ConnectorRequest(op="load_rows", args={"plan": {"table": "audit"}, "rows": []}), "db", allowed
    )
    assert refused is not None and "may not insert table audit" in refused
    refused = writer_refusal(ConnectorRequest(op="read_rows", args={}), "db", allowed)
    assert refused is not None and "only writes" in refused


def test_the_map_hands_report_what_it_reports() -> None:
    """TableDone (the state machine) passes Report the fields of TableResult it reads: a field
    added to the results (the copy's) and not to TableDone would reach Report empty."""
    import json

    from tablesync.app.events import TableResult

    root = Path(__file__).resolve().parents[2]
    machine = json.loads((root / "statemachine" / "tablesync.asl.json").read_text())
    done = machine["States"]["CheckTables"]["ItemProcessor"]["States"]["TableDone"]["Parameters"]
    passed = {name.removesuffix(".$") for name in done}
    # Not passed: a running table's own (progress, the recheck's flag, an outage's reason).
    assert passed == set(TableResult.model_fields) - {"progress", "recheck_pending", "outage"}
