"""The four Lambda handlers (functions/*/app.py) on the sample events in tests/events/, with AWS in
moto and SQLite databases: each parses its event, calls the service and returns plain JSON; bad
events fail with an InputError naming the field; the connector reads its secret through
Powertools and never shows the password."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from app_support import (
    ROOT,
    Context,
    InProcessLambda,
    create_checkpoint_table,
    drifted,
    fake_aws_env,
    handler,
    make_sqlite,
    source_rows,
)
from moto import mock_aws
from tablesync.app import runtime
from tablesync.errors import InputError

EVENTS = ROOT / "tests" / "events"


def event(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return data


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    env = {
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_SERVICE_NAME": "tablesync",
        "POWERTOOLS_METRICS_NAMESPACE": "Tablesync",
        "CHECKPOINT_TABLE": "checkpoints",
        "RESULTS_BUCKET": "results",
        "CONNECTOR_FUNCTIONS": json.dumps({"src": "fn-src", "dst": "fn-dst"}),
    }
    fake_aws_env(monkeypatch, **env)
    rows = source_rows()
    make_sqlite(tmp_path / "src.db", rows)
    make_sqlite(tmp_path / "dst.db", drifted(rows))
    for path in (tmp_path / "src.db", tmp_path / "dst.db"):
        conn = sqlite3.connect(path)
        with conn:
            conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT, updated_at TEXT)")
        conn.close()
    # Function names stand for the database names here (the opener is patched in below).
    lam = InProcessLambda({"src": f"sqlite:///{tmp_path / 'src.db'}", "dst": f"sqlite:///{tmp_path / 'dst.db'}"})
    with mock_aws():
        for cached in (runtime.settings, runtime.clients, runtime.store, runtime.connectors):
            cached.cache_clear()
        runtime.database.reset()
        clients = runtime.clients()
        create_checkpoint_table(clients.dynamodb, "checkpoints")
        clients.s3.create_bucket(Bucket="results")
        # The report function's topic and queue, as its environment names them.
        monkeypatch.setenv("ALERT_TOPIC_ARN", clients.sns.create_topic(Name="alerts")["TopicArn"])
        monkeypatch.setenv("KEYS_QUEUE_URL", clients.sqs.create_queue(QueueName="keys")["QueueUrl"])
        # Connectors reach the SQLite files through the real transport, in-process.
        monkeypatch.setattr(runtime, "connectors", lambda: lam.opener())
        yield {"lam": lam, "tmp": tmp_path, "clients": clients}
        runtime.database.reset()
        for cached in (runtime.settings, runtime.clients, runtime.store):
            cached.cache_clear()
    lam.close()


def test_list_tables_handler(app: dict[str, Any]) -> None:
    result = handler("list_tables").lambda_handler(event("list_tables"), Context())
    assert json.loads(json.dumps(result)) == result  # plain JSON
    assert result["run_id"] == "nightly-2026-11-25"
    assert result["owner"].endswith(":execution:tablesync:nightly-2026-11-25")
    assert [i["item_id"] for i in result["items"]] == ["orders", "customers"]
    assert result["items"][1]["options"]["ignore"] == ["updated_at"]
    assert result["items"][0]["options"]["chunk_size"] == 1000
    assert result["max_concurrency"] == 10


def test_list_tables_handler_refuses_a_bad_event(app: dict[str, Any]) -> None:
    bad = event("list_tables")
    bad["input"]["check"]["tables"] = [{"table": "orders", "max_chunk_size": -1}]
    with pytest.raises(InputError, match=r"invalid check definition: tables\.0\.max_chunk_size"):
        handler("list_tables").lambda_handler(bad, Context())
    with pytest.raises(InputError, match="invalid ListTablesEvent event: execution_id"):
        handler("list_tables").lambda_handler({"execution_name": "x", "input": {}}, Context())


def test_checksum_table_handler_continues_then_is_done(app: dict[str, Any]) -> None:
    fn = handler("checksum_table")
    item = event("checksum_table")
    result = fn.lambda_handler(item, Context(remaining_ms=30_000))  # nothing beyond the safety margin
    assert result["status"] == "continue" and result["invocations"] == 1
    while result["status"] == "continue":
        result = fn.lambda_handler(result, Context())
    summary = result["targets_summary"][0]
    assert (summary["missing"], summary["extra"], summary["differing"]) == (2, 1, 2)
    assert summary["sample"]["missing"] == [[5], [1500]]
    assert result["source_rows"] == 3000


def test_connector_handler_reads_its_secret(app: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(
        Name="tablesync/test/src",
        SecretString=json.dumps({"engine": "sqlite", "path": str(app["tmp"] / "src.db")}),
    )["ARN"]
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("DATABASE_NAME", "src")
    fn = handler("connector")
    schema = fn.lambda_handler(event("connector_describe"), Context())["result"]
    assert schema["table"] == "orders" and schema["primary_key"] == ["id"]
    answer = fn.lambda_handler({"op": "describe", "args": {"table": "nope"}}, Context())
    assert answer["error"]["type"] == "SchemaError" and "unknown table 'nope'" in answer["error"]["message"]
    with pytest.raises(InputError, match="invalid ConnectorRequest event: op"):
        fn.lambda_handler({"args": {}}, Context())


def test_connector_handler_never_shows_the_password(
    app: dict[str, Any], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = boto3.client("secretsmanager")
    password = "s3cr3t-Pa55"
    arn = secrets.create_secret(
        Name="tablesync/test/pg",
        SecretString=json.dumps(
            {
                "engine": "postgres",
                "host": "127.0.0.1",
                "port": 1,
                "username": "checker",
                "password": password,
                "dbname": "x",
            }
        ),
    )["ARN"]
    monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
    monkeypatch.setenv("DATABASE_NAME", "pg")
    monkeypatch.setenv("CONNECT_TIMEOUT_SECONDS", "1")
    answer = handler("connector").lambda_handler(event("connector_describe"), Context())
    assert answer["error"]["type"] == "DatabaseUnavailableError"  # refused: an outage to wait out
    assert "cannot reach postgresql://checker:***@127.0.0.1:1/x" in answer["error"]["message"]
    assert password not in json.dumps(answer) and password not in capsys.readouterr().out


def test_report_handler_emits_metrics(app: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    result = handler("report").lambda_handler(event("report"), Context())
    assert result["status"] == "failed"
    assert result["report_uri"].startswith("s3://results/reports/nightly-2026-11-25/")
    statuses = {t["table"]: t["status"] for t in result["tables"]}
    assert statuses == {"audit": "failed", "orders": "identical"}
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    names = {(m["Table"], d["Name"]) for m in emitted for d in m["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert ("orders", "RowsCompared") in names and ("audit", "Failed") in names
    assert all(m["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "Tablesync" for m in emitted)


def test_the_connector_handler_refuses_writes_before_touching_a_secret(
    app: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:none")
    writes = {"plan": {"table": "orders", "key": [], "columns": []}, "writes": [{"action": "delete", "key": [1]}]}
    answer = handler("connector").lambda_handler({"op": "write_rows", "args": writes}, Context())
    assert answer["error"]["type"] == "InputError" and "only reads" in answer["error"]["message"]


def test_the_writer_handler_writes_only_allow_listed_tables(
    app: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    secrets = boto3.client("secretsmanager")
    arn = secrets.create_secret(
        Name="tablesync/test/dst-writer",
        SecretString=json.dumps({"engine": "sqlite", "path": str(app["tmp"] / "dst.db")}),
    )["ARN"]
    monkeypatch.setenv("WRITER_SECRET_ARN", arn)
    monkeypatch.setenv("DATABASE_NAME", "dst")
    monkeypatch.setenv("WRITABLE_TABLES", "orders:insert+update")
    runtime.writable_tables.cache_clear()
    runtime.writer.reset()
    fn = handler("writer")
    plan = {
        "table": "orders",
        "key": [{"name": "id", "native_type": "INTEGER", "kind": "integer", "nullable": False}],
        "columns": [{"name": "qty", "native_type": "INTEGER", "kind": "integer", "nullable": False}],
    }
    delete = {"plan": plan, "writes": [{"action": "delete", "key": [5000], "expected": None}], "dry_run": False}
    answer = fn.lambda_handler({"op": "write_rows", "args": delete}, Context())
    assert answer["error"]["type"] == "InputError" and "dst may not delete table orders" in answer["error"]["message"]
    other = {**delete, "plan": {**plan, "table": "customers"}}
    answer = fn.lambda_handler({"op": "write_rows", "args": other}, Context())
    assert "may not delete table customers" in answer["error"]["message"]
    read = fn.lambda_handler({"op": "describe", "args": {"table": "orders"}}, Context())
    assert "a writer only writes" in read["error"]["message"]
    update = {"plan": plan, "writes": [{"action": "update", "key": [77], "values": {"qty": "99"}, "expected": None}]}
    answer = fn.lambda_handler({"op": "write_rows", "args": {**update, "dry_run": True}}, Context())
    assert answer["result"]["statements"] == ['UPDATE "orders" SET "qty" = 99 WHERE "id" = 77;'], answer
    runtime.writer.reset()
    runtime.writable_tables.cache_clear()
