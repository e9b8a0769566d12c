"""The app over DynamoDB tables (moto): a stored definition naming two regional tables, ListTables,
ChecksumTable (resumed across invocations), Report and the repair of the queued keys, on the
in-memory stores of test_app_stores; the functions read and write DynamoDB directly."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws
from tablesync.app import checking, environment, listing, repairing, reporting
from tablesync.app.checkpoints import MemoryCheckpointStore
from tablesync.app.events import ChecksumResult, ReportInput, RunInput, TableResult
from tablesync.app.settings import ConnectorFunctions, Settings
from tablesync.app.stores import Clients, RepairStores, ReportStores
from tablesync.errors import InputError
from test_app_stores import MemoryBucket, MemoryDefinitions, MemoryQueue, MemoryTopic

CHECK_SSM = "/tablesync/dynamo"
DATABASES = {"east": "dynamodb://us-east-1", "west": "dynamodb://us-west-2"}
REPAIR_ALL = {"write_missing": True, "write_differing": True, "delete_extra": True}


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    os.environ.update(
        {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    )
    with mock_aws():
        clients = {}
        for region in ("us-east-1", "us-west-2"):
            client = clients[region] = boto3.client("dynamodb", region_name=region)
            client.create_table(
                TableName="orders",
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
                BillingMode="PAY_PER_REQUEST",
            )
        for i in range(1, 201):
            item = {"id": {"N": str(i)}, "qty": {"N": f"{i}.0"}, "tags": {"SS": ["a", f"t{i}"]}}
            clients["us-east-1"].put_item(TableName="orders", Item=item)
            if i in (7, 70):
                continue  # missing in the west
            if i in (8, 80):
                item = {**item, "qty": {"N": str(i + 1)}}
            clients["us-west-2"].put_item(
                TableName="orders", Item={**item, "qty": {"N": str(i)}} if i not in (8, 80) else item
            )
        clients["us-west-2"].put_item(TableName="orders", Item={"id": {"N": "999"}})
        yield clients


def _opener() -> environment.ConnectorOpener:
    return environment.lambda_connectors(ConnectorFunctions(connectors={}, dynamodb=DATABASES), Clients())


def _no_writers(name: str) -> Any:
    raise AssertionError("a DynamoDB target is written by the repair function itself, not a writer Lambda")


def test_a_run_and_its_repair_over_dynamodb_tables(aws: dict[str, Any]) -> None:
    definition = {
        "source": "east",
        "targets": ["west"],
        "tables": [{"table": "orders", "repair": REPAIR_ALL, "chunk_size": 16}],
        "defaults": {},
    }
    definitions = MemoryDefinitions({CHECK_SSM: definition})
    store = MemoryCheckpointStore()
    run = RunInput(run_id="run-d", owner="exec-1", check_ssm=CHECK_SSM)
    settings = Settings(safety_margin_seconds=0, save_every_seconds=0)
    (item,) = listing.list_tables(run, None, _opener(), definitions=definitions).items
    result: ChecksumResult = checking.checksum_table(item, 0.01, settings, store, _opener())
    invocations = 1
    while result.status != "done":
        result = checking.checksum_table(result, 0.01, settings, store, _opener())
        invocations += 1
    assert invocations > 1  # resumed from its checkpoint, as across 15-minute invocations
    (summary,) = result.targets_summary
    assert (summary.missing, summary.extra, summary.differing, summary.rows_compared) == (2, 1, 2, 200)

    results = [TableResult.model_validate(result.model_dump(include=set(TableResult.model_fields)))]
    keys, topic = MemoryQueue(), MemoryTopic()
    stores = ReportStores(results=MemoryBucket("results"), alerts=topic, keys=keys)
    reported = reporting.report(
        ReportInput(run_id="run-d", owner="exec-1", results=results), Settings(), None, store, stores=stores
    )
    assert reported.status == "different" and reported.keys_queued == 5

    audit, dead = MemoryBucket("audit"), MemoryQueue()
    repair_stores = RepairStores(definitions=definitions, audit=audit, alerts=topic, keys=keys, dead_letters=dead)
    for body, _ in list(keys.sent):
        repaired = repairing.repair_message(body, Settings(), None, _opener(), _no_writers, stores=repair_stores)
        assert not repaired.failed and not repaired.changed
    lines = [json.loads(line) for body, _ in audit.objects.values() for line in body.splitlines()]
    assert sorted((r["action"], r["key"][0]) for r in lines) == [
        ("delete", 999),
        ("insert", 7),
        ("insert", 70),
        ("update", 8),
        ("update", 80),
    ]
    assert not dead.parked
    west = {int(i["id"]["N"]): i for i in aws["us-west-2"].scan(TableName="orders")["Items"]}
    assert sorted(west) == list(range(1, 201)) and west[8]["qty"] == {"N": "8.0"}


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"pattern": "ord*"}, "no patterns"),
        ({"table": "orders", "shards": 4}, "shards are key ranges"),
    ],
)
def test_what_a_dynamodb_definition_cannot_ask_for_is_refused(
    aws: dict[str, Any], entry: dict[str, Any], message: str
) -> None:
    definitions = MemoryDefinitions({CHECK_SSM: {"source": "east", "targets": ["west"], "tables": [entry]}})
    run = RunInput(run_id="run-x", owner="exec-1", check_ssm=CHECK_SSM)
    with pytest.raises(InputError, match=message):
        listing.list_tables(run, None, _opener(), definitions=definitions)


def test_a_bad_dynamodb_databases_variable_is_named() -> None:
    with pytest.raises(InputError, match="DYNAMODB_DATABASES is not valid"):
        ConnectorFunctions.from_env({"CONNECTOR_FUNCTIONS": "{}", "DYNAMODB_DATABASES": '{"x": "mysql://h/db"}'})


def test_the_databases_variable_takes_pairs_or_json() -> None:
    pairs = "east=dynamodb://us-east-1,west=dynamodb://us-west-2?role_arn=arn:aws:iam::123456789012:role/checker"
    settings = ConnectorFunctions.from_env({"CONNECTOR_FUNCTIONS": "{}", "DYNAMODB_DATABASES": pairs})
    assert settings.dynamodb == {
        "east": "dynamodb://us-east-1",
        "west": "dynamodb://us-west-2?role_arn=arn:aws:iam::123456789012:role/checker",
    }
    as_json = ConnectorFunctions.from_env({"CONNECTOR_FUNCTIONS": "{}", "DYNAMODB_DATABASES": json.dumps(DATABASES)})
    assert as_json.dynamodb == DATABASES


def test_the_recheck_keeps_only_what_still_differs(aws: dict[str, Any]) -> None:
    definition = {"source": "east", "targets": ["west"], "tables": [{"table": "orders", "recheck_after": 1}]}
    definitions = MemoryDefinitions({CHECK_SSM: definition})
    store = MemoryCheckpointStore()
    run = RunInput(run_id="run-r", owner="exec-1", check_ssm=CHECK_SSM)
    settings = Settings(safety_margin_seconds=0)
    (item,) = listing.list_tables(run, None, _opener(), definitions=definitions).items
    result = checking.checksum_table(item, 600, settings, store, _opener())
    assert result.status == "done" and result.recheck_pending
    # Replication delivers the two missing items during the Wait.
    for i in (7, 70):
        item_ = {"id": {"N": str(i)}, "qty": {"N": str(i)}, "tags": {"SS": ["a", f"t{i}"]}}
        aws["us-west-2"].put_item(TableName="orders", Item=item_)
    rechecked = checking.recheck_table(result, 600, settings, store, _opener())
    (summary,) = rechecked.targets_summary
    assert rechecked.rechecked and (summary.missing, summary.extra, summary.differing) == (0, 1, 2)


def _run_and_repair(definitions: MemoryDefinitions, opener: Any, writers: Any) -> tuple[list[dict[str, Any]], Any]:
    """ListTables, ChecksumTable to the end, Report, then the repair function on every message."""
    store = MemoryCheckpointStore()
    run = RunInput(run_id="run-m", owner="exec-1", check_ssm=CHECK_SSM)
    settings = Settings(safety_margin_seconds=0, save_every_seconds=0)
    (item,) = listing.list_tables(run, None, opener, definitions=definitions).items
    result: ChecksumResult = checking.checksum_table(item, 0.01, settings, store, opener)
    while result.status != "done":
        result = checking.checksum_table(result, 0.01, settings, store, opener)
    results = [TableResult.model_validate(result.model_dump(include=set(TableResult.model_fields)))]
    keys, topic = MemoryQueue(), MemoryTopic()
    stores = ReportStores(results=MemoryBucket("results"), alerts=topic, keys=keys)
    report = ReportInput(run_id="run-m", owner="exec-1", results=results)
    reporting.report(report, Settings(), None, store, stores=stores)
    audit, dead = MemoryBucket("audit"), MemoryQueue()
    repair_stores = RepairStores(definitions=definitions, audit=audit, alerts=topic, keys=keys, dead_letters=dead)
    for body, _ in list(keys.sent):
        repairing.repair_message(body, Settings(), None, opener, writers, stores=repair_stores)
    lines = [json.loads(line) for body, _ in audit.objects.values() for line in body.splitlines()]
    return lines, dead


@pytest.mark.parametrize("direction", ["sql-to-dynamodb", "dynamodb-to-sql"])
def test_a_run_and_its_repair_between_sql_and_dynamodb(aws: dict[str, Any], tmp_path: Any, direction: str) -> None:
    """A SQLite table (in the app: behind its connector and writer Lambdas) and a DynamoDB table,
    either one the source: the drift found, repaired through the one repair path, then none left."""
    import sqlite3

    from tablesync.connectors import open_connector
    from tablesync.urls import parse_url

    path = tmp_path / "lines.db"
    lite = f"sqlite:///{path}"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE lines (id INTEGER PRIMARY KEY, qty DECIMAL(10,2), note TEXT)")
        db.executemany("INSERT INTO lines VALUES (?, ?, ?)", [(i, f"{i}.50", f"n{i}") for i in range(1, 41)])
    east = aws["us-east-1"]
    east.create_table(
        TableName="lines",
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for i in range(1, 41):
        if i == 5:
            continue  # only in SQLite
        qty = "99" if i == 6 else f"{i}.5"  # 6 differs; the others are the same numbers
        east.put_item(TableName="lines", Item={"id": {"N": str(i)}, "qty": {"N": qty}, "note": {"S": f"n{i}"}})
    east.put_item(TableName="lines", Item={"id": {"N": "77"}, "qty": {"N": "1"}})  # only in DynamoDB
    source, target = ("lite", "east") if direction == "sql-to-dynamodb" else ("east", "lite")
    repair = {"table": "lines", "repair": REPAIR_ALL, "chunk_size": 8}
    definitions = MemoryDefinitions({CHECK_SSM: {"source": source, "targets": [target], "tables": [repair]}})
    dynamo = _opener()

    def opener(name: str) -> Any:
        return open_connector(parse_url(lite)) if name == "lite" else dynamo(name)

    def writers(name: str) -> Any:
        assert name == "lite", "a DynamoDB target is written by the repair function itself"
        return open_connector(parse_url(lite), read_only=False)

    lines, dead = _run_and_repair(definitions, opener, writers)
    only_sql, only_dynamo = ("insert", "delete") if direction == "sql-to-dynamodb" else ("delete", "insert")
    assert sorted((r["action"], r["key"][0], r["status"]) for r in lines) == sorted(
        [(only_sql, 5, "applied"), ("update", 6, "applied"), (only_dynamo, 77, "applied")]
    )
    assert not dead.parked
    lines_again, _ = _run_and_repair(definitions, opener, writers)
    assert lines_again == []  # nothing left to repair
