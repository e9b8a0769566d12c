"""The step modules on in-memory fakes of the data-access Protocols (tablesync.app.stores), no AWS
and no moto: a whole run (ListTables from a stored definition, ChecksumTable, Report, the repair)
over real SQLite databases through the real connector transport; a failure injected into a fake
store; a database function's secret from a fake. Then the boto3 implementations, in moto."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import boto3
import pytest
from app_support import InProcessLambda, drifted, fake_aws_env, make_sqlite, source_rows
from moto import mock_aws
from tablesync.app import checking, listing, repairing, reporting, runtime
from tablesync.app.checkpoints import MemoryCheckpointStore
from tablesync.app.events import ChecksumResult, ReportInput, RunInput, TableResult
from tablesync.app.settings import ConnectorSettings, Settings
from tablesync.app.stores import AwsDefinitions, Clients, RepairStores, ReportStores, S3Bucket, SnsTopic, SqsQueue
from tablesync.errors import TablesyncError

CHECK_SSM = "/tablesync/check"
REPAIR_ALL = {"write_missing": True, "write_differing": True, "delete_extra": True}


class MemoryBucket:
    """ObjectStore"""

    def __init__(self, name: str) -> None:
        self.name, self.objects = name, {}

    def uri(self, key: str) -> str:
        return f"memory://{self.name}/{key}"

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self.objects[key] = (body, content_type)


class MemoryTopic:
    """AlertTopic"""

    def __init__(self) -> None:
        self.published: list[tuple[str, str]] = []

    def publish(self, subject: str, message: str) -> None:
        self.published.append((subject, message))


class MemoryQueue:
    """KeysQueue and DeadLetterQueue; `refuse` messages of the next batches are refused."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int]] = []
        self.parked: list[tuple[str, str]] = []
        self.refuse = 0

    def send(self, body: str, delay_seconds: int) -> None:
        self.sent.append((body, delay_seconds))

    def send_batch(self, bodies: Sequence[str]) -> int:
        if self.refuse:
            self.refuse -= 1
            return 1
        self.sent += [(body, 0) for body in bodies]
        return 0

    def park(self, body: str, reason: str) -> None:
        self.parked.append((body, reason))


class MemoryDefinitions:
    """DefinitionSource"""

    def __init__(self, parameters: dict[str, Any]) -> None:
        self.parameters = parameters

    def s3_object(self, bucket: str, key: str) -> bytes:
        raise KeyError(f"s3://{bucket}/{key}")

    def ssm_parameter(self, name: str) -> str:
        return json.dumps(self.parameters[name])


@pytest.fixture
def lam(tmp_path: Path) -> Iterator[InProcessLambda]:
    rows = source_rows()
    make_sqlite(tmp_path / "src.db", rows)
    make_sqlite(tmp_path / "dst.db", drifted(rows))
    databases = {"src": f"sqlite:///{tmp_path / 'src.db'}", "dst": f"sqlite:///{tmp_path / 'dst.db'}"}
    lam = InProcessLambda(databases, writable={"dst": "orders:insert+update+delete"})
    yield lam
    lam.close()


def _checked(lam: InProcessLambda, definitions: MemoryDefinitions, store: MemoryCheckpointStore) -> list[TableResult]:
    run = RunInput(run_id="run-1", owner="exec-1", check_ssm=CHECK_SSM)
    settings = Settings(safety_margin_seconds=0)
    results = []
    for item in listing.list_tables(run, None, lam.opener(), definitions=definitions).items:
        result: ChecksumResult = checking.checksum_table(item, 600, settings, store, lam.opener())
        while result.status != "done":
            result = checking.checksum_table(result, 600, settings, store, lam.opener())
        results.append(TableResult.model_validate(result.model_dump(include=set(TableResult.model_fields))))
    return results


def test_a_run_and_its_repair_on_in_memory_stores(lam: InProcessLambda) -> None:
    definitions = MemoryDefinitions(
        {CHECK_SSM: {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]}}
    )
    store = MemoryCheckpointStore()
    results = _checked(lam, definitions, store)
    results_bucket, topic, keys = MemoryBucket("results"), MemoryTopic(), MemoryQueue()
    reported = reporting.report(
        ReportInput(run_id="run-1", owner="exec-1", results=results),
        Settings(),
        None,
        store,
        stores=ReportStores(results=results_bucket, alerts=topic, keys=keys),
    )
    assert reported.status == "different" and reported.keys_queued == 5
    ((key, (body, content_type)),) = results_bucket.objects.items()
    assert reported.report_uri == f"memory://results/{key}" and content_type == "application/json"
    assert json.loads(body)["report_uri"] == reported.report_uri
    ((subject, text),) = topic.published
    assert subject == "tablesync run run-1: different" and "2 missing, 1 extra, 2 differing" in text
    assert {json.loads(body)["kind"] for body, _ in keys.sent} == {"missing", "extra", "differing"}

    audit, dead = MemoryBucket("audit"), MemoryQueue()
    stores = RepairStores(definitions=definitions, audit=audit, alerts=topic, keys=keys, dead_letters=dead)
    for body, _ in list(keys.sent):
        result = repairing.repair_message(body, Settings(), None, lam.opener(), lam.writer_opener(), stores=stores)
        assert not result.failed
    lines = [json.loads(line) for body, _ in audit.objects.values() for line in body.splitlines()]
    assert sorted((r["action"], r["key"][0]) for r in lines) == [
        ("delete", 5000),
        ("insert", 5),
        ("insert", 1500),
        ("update", 77),
        ("update", 2999),
    ]
    assert all(t == "application/x-ndjson" for _, t in audit.objects.values())
    assert dead.parked == [] and len(topic.published) == 1  # nothing failed: no repair alert


def test_a_message_that_is_no_repair_message_is_parked_in_the_fake(lam: InProcessLambda) -> None:
    dead, topic = MemoryQueue(), MemoryTopic()
    stores = RepairStores(definitions=MemoryDefinitions({}), audit=MemoryBucket("audit"), dead_letters=dead)
    result = repairing.repair_message("{not json", Settings(), None, lam.opener(), lam.writer_opener(), stores=stores)
    assert result.url == "" and topic.published == []
    ((body, reason),) = dead.parked
    assert body == "{not json" and reason.startswith("not a repair message")


def test_keys_a_refusing_queue_did_not_take_are_sent_by_the_next_report(lam: InProcessLambda) -> None:
    definitions = MemoryDefinitions({CHECK_SSM: {"source": "src", "targets": ["dst"], "tables": ["orders"]}})
    store = MemoryCheckpointStore()
    results = _checked(lam, definitions, store)
    keys = MemoryQueue()
    keys.refuse = 1
    run = ReportInput(run_id="run-1", owner="exec-1", results=results)
    with pytest.raises(TablesyncError, match="the repair queue refused 1 message"):
        reporting.report(run, Settings(), None, store, stores=ReportStores(keys=keys))
    again = reporting.report(run, Settings(), None, store, stores=ReportStores(keys=keys))
    assert again.keys_queued == 5 and len(keys.sent) == 3
    assert again.report_uri is None  # no results bucket given: nothing stored, nothing alerted


def test_a_database_function_reads_its_secret_from_the_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_sqlite(tmp_path / "db.db", source_rows(10))

    class Secrets:
        def secret(self, name: str) -> Any:
            assert name == "arn:secret:db"
            return {"engine": "sqlite", "path": str(tmp_path / "db.db")}

    monkeypatch.setenv("DATABASE_NAME", "db")
    monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:secret:db")
    connection = runtime.DatabaseConnection(ConnectorSettings, read_only=True, secrets=Secrets())
    assert connection.get().describe("orders").primary_key == ["id"]
    assert connection.get() is connection.get()  # one connection while the container is warm
    monkeypatch.setenv("DATABASE_NAME", "renamed")
    connection.reset()  # after a transient error: the settings are read again with the connection
    assert connection.settings().database_name == "renamed"
    connection.reset()


def test_the_boto3_implementations(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_aws_env(monkeypatch)
    with mock_aws():
        clients = Clients(boto3.session.Session(region_name="us-east-1"))
        clients.s3.create_bucket(Bucket="results")
        bucket = S3Bucket(clients, "results")
        bucket.put("reports/r.json", b"{}", "application/json")
        stored = clients.s3.get_object(Bucket="results", Key="reports/r.json")
        assert (stored["Body"].read(), stored["ContentType"]) == (b"{}", "application/json")
        assert bucket.uri("reports/r.json") == "s3://results/reports/r.json"
        assert AwsDefinitions(clients).s3_object("results", "reports/r.json") == b"{}"
        clients.ssm.put_parameter(Name=CHECK_SSM, Value='{"a": 1}', Type="SecureString")
        assert AwsDefinitions(clients).ssm_parameter(CHECK_SSM) == '{"a": 1}'
        url = clients.sqs.create_queue(QueueName="keys")["QueueUrl"]
        queue = SqsQueue(clients, url)
        assert queue.send_batch(["one", "two"]) == 0
        queue.park("three", "")
        messages = clients.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"])
        bodies = {m["Body"]: m.get("MessageAttributes", {}) for m in messages["Messages"]}
        assert set(bodies) == {"one", "two", "three"}
        assert bodies["three"]["reason"]["StringValue"] == "unknown"  # SQS takes no empty attribute
        topic = clients.sns.create_topic(Name="alerts")["TopicArn"]
        SnsTopic(clients, topic).publish("x" * 300, "text")  # SNS takes subjects of 100 characters at most
