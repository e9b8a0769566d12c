"""The whole application end to end on a local AWS emulator: ministack on 127.0.0.1, the stack
built with `sam build` and deployed with `sam deploy`, the real Lambda code (layer included) run by
the emulator, connector Lambdas reading their secrets and reaching the real PostgreSQL and MariaDB.

One deployment serves the module. The runs check:
- tables with drift, one of them in key-range shards, one checked over many invocations
  (checkpointed between them), and one that does not exist: the missing table fails alone, the
  others are reported exactly, the execution fails (so the alarm would fire) after the report is
  written, the differing keys are on the repair queue and an alert is published;
- identical tables: the execution succeeds and nothing is queued;
- a bad check definition: the execution fails with InputError naming the field;
- DynamoDB tables in two regions of the emulator, read and repaired by the functions directly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "setup"))
from local import LOCAL_DATABASES, LocalStack
from outage import OutageProxy
from tablesync import cli
from throttle import ThrottlingProxy

pytestmark = pytest.mark.e2e

ROWS = 30_000
DYNAMO_TABLE = "e2e_items"
DYNAMO_DATABASES = {"dyn-east": "dynamodb://us-east-1", "dyn-west": "dynamodb://us-west-2"}
# "dyn-throttled": the west region through a proxy that throttles reads and leaves keys unprocessed.
DYNAMO_TABLES = (DYNAMO_TABLE, "e2e_throttled", "e2e_race", "e2e_mixed")
DYNAMO_ARNS = {
    r: [f"arn:aws:dynamodb:{r}:000000000000:table/{t}" for t in DYNAMO_TABLES] for r in ("us-east-1", "us-west-2")
}
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
MYSQL_URL = "mysql://root@127.0.0.1:3306/test"


def _load(pg: psycopg.Connection, my: Any, table: str, drift: bool) -> None:
    pg.execute(f"DROP TABLE IF EXISTS {table}")
    pg.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, qty int NOT NULL, note text)")
    pg.execute(f"INSERT INTO {table} SELECT g, g % 10, 'n' || g FROM generate_series(1, {ROWS}) g")
    with my.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, qty int NOT NULL, note text)")
        cur.execute(f"INSERT INTO {table} SELECT seq, seq % 10, CONCAT('n', seq) FROM seq_1_to_{ROWS}")
        if drift:
            cur.execute(f"DELETE FROM {table} WHERE id IN (3, 15000, 29999)")
            cur.execute(f"UPDATE {table} SET qty = 99 WHERE id IN (10, 20001)")
            cur.execute(f"INSERT INTO {table} VALUES ({ROWS + 5}, 1, 'extra')")


@pytest.fixture(scope="module")
def tables(pg_admin: psycopg.Connection, mysql_admin: Any) -> Iterator[None]:
    for table, drift in (("e2e_orders", True), ("e2e_sharded", True), ("e2e_same", False), ("e2e_repair", True)):
        _load(pg_admin, mysql_admin, table, drift)
    yield
    for table in ("e2e_orders", "e2e_sharded", "e2e_same", "e2e_repair"):
        pg_admin.execute(f"DROP TABLE IF EXISTS {table}")
        with mysql_admin.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")


@pytest.fixture(scope="module")
def proxies() -> Iterator[dict[str, OutageProxy]]:
    """ "pg-flaky" and "mysql-flaky": the same servers, reached through proxies a test takes away."""
    out = {"pg-flaky": OutageProxy(5432), "mysql-flaky": OutageProxy(3306)}
    yield out
    for proxy in out.values():
        proxy.close()


@pytest.fixture(scope="module")
def throttle() -> Iterator[dict[str, ThrottlingProxy]]:
    """Filled by `stack` (it needs the emulator's endpoint): the throttling proxy in front of it."""
    out: dict[str, ThrottlingProxy] = {}
    yield out
    for proxy in out.values():
        proxy.close()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory,
    proxies: dict[str, OutageProxy],
    throttle: dict[str, ThrottlingProxy],
) -> Iterator[LocalStack]:
    local = LocalStack(tmp_path_factory.mktemp("stack"))
    local.start()
    throttle["west"] = ThrottlingProxy(local.endpoint)
    dynamodb = {**DYNAMO_DATABASES, "dyn-throttled": f"dynamodb://us-west-2?endpoint={throttle['west'].endpoint}"}
    try:
        local.build()
        # Checksum invocations of 60 s that stop 58 s early: about 2 s of work each, so a table
        # takes several invocations, checkpointed in DynamoDB in between.
        # The repair Lambda may write MariaDB (a writer secret); it is invoked by the test with the
        # queued messages, so the queue is left to the test (the consumer off).
        databases = dict(LOCAL_DATABASES)
        for name, proxy in proxies.items():
            databases[name] = {**LOCAL_DATABASES[name.removesuffix("-flaky")], "port": proxy.port}
        # An outage is met with Waits of 1 s (30 s on AWS by default).
        local.deploy(
            databases,
            OutageWaitSeconds="1",
            writers={"mysql": LOCAL_DATABASES["mysql"]},
            Database2WritableTables=(
                "e2e_repair:insert+update+delete,e2e_mixed:insert+update+delete,e2e_copied:insert+create,e2e_events:insert"
            ),
            ChecksumTimeout="60",
            ChecksumSafetyMargin="58",
            MaxConcurrency="4",
            RepairQueueConsumer="DISABLED",
            # Two DynamoDB "regions" of the emulator, read (and the west written) by the functions.
            DynamoDbDatabases=",".join(f"{name}={url}" for name, url in dynamodb.items()),
            DynamoDbTableArns=",".join(arn for arns in DYNAMO_ARNS.values() for arn in arns),
            DynamoDbWritableTableArns=",".join(DYNAMO_ARNS["us-west-2"]),
        )
        yield local
    finally:
        local.stop()


@pytest.fixture(scope="module")
def alerts(stack: LocalStack) -> str:
    """An SQS queue subscribed to the alert topic, to read what was published."""
    sqs = stack.client("sqs")
    url = sqs.create_queue(QueueName="e2e-alerts")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    stack.client("sns").subscribe(TopicArn=stack.outputs["AlertTopicArn"], Protocol="sqs", Endpoint=arn)
    return url


def _keys(messages: list[dict[str, Any]]) -> set[tuple[str, str, int]]:
    out = set()
    for message in messages:
        body = json.loads(message["Body"])
        out |= {(body["table"], body["kind"], key[0]) for key in body["keys"]}
    return out


def _drain(stack: LocalStack, url: str) -> list[dict[str, Any]]:
    sqs = stack.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        if not batch:
            return messages
        messages += batch
        for message in batch:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _sqs_event(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """The queue's messages as the SQS event the repair function's event source mapping delivers."""
    records = [
        {
            "messageId": m["MessageId"],
            "receiptHandle": m["ReceiptHandle"],
            "body": m["Body"],
            "attributes": {"ApproximateReceiveCount": "1"},
            "messageAttributes": {},
            "md5OfBody": m["MD5OfBody"],
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:keys",
            "awsRegion": "us-east-1",
        }
        for m in messages
    ]
    return {"Records": records}


def test_drift_shards_checkpoints_and_a_failing_table(stack: LocalStack, tables: None, alerts: str) -> None:
    check = {
        "source": "pg",
        "targets": ["mysql"],
        "tables": [
            # Small chunks: this table needs many rounds, hence several invocations.
            {"table": "e2e_orders", "chunk_size": 500, "max_chunk_size": 1500},
            {"table": "e2e_sharded", "shards": 3},
            "e2e_does_not_exist",
        ],
    }
    execution = stack.execute({"check": check, "run_id": "e2e-drift"})
    assert execution["status"] == "FAILED", execution
    assert execution.get("error") == "TablesFailed"
    report = stack.report("e2e-drift")
    tables = {t["table"]: t for t in report["tables"]}
    assert report["status"] == "failed"
    assert tables["e2e_does_not_exist"]["status"] == "failed"
    assert "unknown table 'e2e_does_not_exist'" in tables["e2e_does_not_exist"]["error"]
    for name in ("e2e_orders", "e2e_sharded"):
        table = tables[name]
        target = table["targets"][0]
        assert table["status"] == "different"
        assert (target["missing"], target["extra"], target["differing"]) == (3, 1, 2), table
        assert target["rows_compared"] == table["source_rows"] == ROWS
    assert tables["e2e_sharded"]["shards"] == 3
    assert tables["e2e_orders"]["invocations"] > 1  # checkpointed and continued
    assert report["keys_queued"] == 12
    queued = _keys(_drain(stack, stack.outputs["KeysQueueUrl"]))
    expected = {("missing", 3), ("missing", 15000), ("missing", 29999), ("differing", 10), ("differing", 20001)}
    expected |= {("extra", ROWS + 5)}
    assert queued == {(t, kind, key) for t in ("e2e_orders", "e2e_sharded") for kind, key in expected}
    alert = "\n".join(json.loads(m["Body"])["Message"] for m in _drain(stack, alerts))
    assert "tablesync run e2e-drift: failed" in alert
    assert "e2e_orders -> mysql: 3 missing, 1 extra, 2 differing" in alert


def test_identical_tables_succeed(stack: LocalStack, tables: None) -> None:
    check = {"source": "pg", "targets": ["mysql"], "tables": [{"pattern": "e2e_sam?"}]}
    execution = stack.execute({"check": check, "run_id": "e2e-same"})
    assert execution["status"] == "SUCCEEDED", execution
    output = json.loads(execution["output"])
    assert output["status"] == "identical"
    assert [t["table"] for t in output["tables"]] == ["e2e_same"]
    assert output["keys_queued"] == 0


def test_a_bad_check_definition_fails_the_execution_naming_the_field(stack: LocalStack) -> None:
    check = {"source": "pg", "targets": ["mysql"], "tables": [{"table": "e2e_orders", "shards": 0}]}
    execution = stack.execute({"check": check})
    assert execution["status"] == "FAILED"
    # AWS names the error by the exception's class; ministack calls every Python exception
    # Runtime.HandlerError (README: where the emulator falls short). The message is the same.
    assert execution.get("error") in ("InputError", "Runtime.HandlerError")
    assert "invalid check definition: tables.0.shards" in execution.get("cause", "")


def test_recheck_then_the_repair_lambda_fixes_the_queued_keys(stack: LocalStack, tables: None) -> None:
    """A table whose stored check rechecks after a Wait and enables repair: the report queues its
    keys with a reference to that definition, and the deployed repair Lambda (given the queue's
    messages as an SQS event) writes them through MariaDB's writer function (its writer user, its
    allow-list). A new diff finds nothing."""
    repair = {"write_missing": True, "write_differing": True, "delete_extra": True}
    check = {
        "source": "pg",
        "targets": ["mysql"],
        "tables": [{"table": "e2e_repair", "recheck_after": 1, "repair": repair}],
    }
    # Repair acts only on a stored definition (the operator's SSM parameter), never on one given inline.
    stack.client("ssm").put_parameter(
        Name="/tablesync/e2e-repair", Value=json.dumps(check), Type="String", Overwrite=True
    )
    execution = stack.execute({"check_ssm": "/tablesync/e2e-repair", "run_id": "e2e-repair"})
    assert execution["status"] == "SUCCEEDED", execution
    (table,) = json.loads(execution["output"])["tables"]
    assert (table["targets"][0]["missing"], table["targets"][0]["differing"]) == (3, 2), table
    messages = _drain(stack, stack.outputs["KeysQueueUrl"])
    assert messages and all(json.loads(m["Body"])["check_ssm"] == "/tablesync/e2e-repair" for m in messages)
    answer = stack.invoke("RepairFunction", _sqs_event(messages))
    assert answer == {"batchItemFailures": []}, answer
    assert cli.main(["diff", PG_URL, MYSQL_URL, "--table", "e2e_repair", "--no-progress"]) == 0
    audit = stack.client("s3").list_objects_v2(Bucket=stack.outputs["AuditBucketName"], Prefix="audit/e2e-repair/")
    assert audit.get("KeyCount", 0) >= 1


# --- outages, damaged checkpoints, a run started twice --------------------------------------------
def _checkpoint(stack: LocalStack, run_id: str, item_id: str) -> dict[str, Any]:
    answer = stack.client("dynamodb").get_item(
        TableName=stack.outputs["CheckpointTableName"],
        Key={"run_id": {"S": run_id}, "item_id": {"S": item_id}},
        ConsistentRead=True,
    )
    return dict(answer.get("Item", {}))


def _invocations(stack: LocalStack, run_id: str, item_id: str) -> int:
    return int(_checkpoint(stack, run_id, item_id).get("invocations", {}).get("N", "0"))


@pytest.mark.parametrize(("source", "target"), [("pg-flaky", "mysql"), ("pg", "mysql-flaky")])
def test_an_outage_mid_check_is_waited_out_and_the_table_finishes_exact(
    stack: LocalStack, tables: None, proxies: dict[str, OutageProxy], source: str, target: str
) -> None:
    """A database goes away for 8 s while its table is checked (a few invocations in): the
    checksum step saves, the state machine waits and calls again, and the table finishes with the
    exact counts, as on AWS during a failover."""
    run_id = f"e2e-outage-{source}"
    check = {
        "source": source,
        "targets": [target],
        "tables": [{"table": "e2e_orders", "chunk_size": 500, "max_chunk_size": 1500}],
    }
    execution = stack.start_execution({"check": check, "run_id": run_id})
    deadline = time.monotonic() + 120
    while _invocations(stack, run_id, "e2e_orders") < 1:
        assert time.monotonic() < deadline, "the check did not start"
        time.sleep(0.2)
    proxy = proxies[source if source.endswith("flaky") else target]
    proxy.down()
    calls_when_it_went = _invocations(stack, run_id, "e2e_orders")
    assert not _checkpoint(stack, run_id, "e2e_orders").get("done", {}).get("BOOL"), "finished before the outage"
    time.sleep(8)
    calls_during_outage = _invocations(stack, run_id, "e2e_orders") - calls_when_it_went
    proxy.up()
    described = stack.wait(execution)
    assert described["status"] == "SUCCEEDED", described
    # The outage was met and waited out: the checksum step was called (and saved) while the
    # database was away, answered "waiting" rather than failing, and was called again after it.
    assert calls_during_outage >= 1, calls_during_outage
    (table,) = json.loads(described["output"])["tables"]
    target_summary = table["targets"][0]
    assert (target_summary["missing"], target_summary["extra"], target_summary["differing"]) == (3, 1, 2), table
    assert table["source_rows"] == ROWS


@pytest.mark.parametrize(
    ("expression", "values", "why"),
    [
        ("SET done = :v", {":v": {"BOOL": False}}, "its done flag (False) disagrees with its state (True)"),
        ("SET #s = :v", {":v": {"B": b"not a gzipped state"}}, "its state cannot be read"),
    ],
    ids=["done-flag", "state"],
)
def test_a_damaged_checkpoint_fails_its_table_with_one_line_never_a_loop(
    stack: LocalStack, tables: None, expression: str, values: dict[str, Any], why: str
) -> None:
    run_id = f"e2e-damaged-{why[:8].replace(' ', '-')}"
    check = {"source": "pg", "targets": ["mysql"], "tables": ["e2e_same"]}
    assert stack.execute({"check": check, "run_id": run_id})["status"] == "SUCCEEDED"
    names = {"#s": "state"} if "#s" in expression else None
    stack.client("dynamodb").update_item(
        TableName=stack.outputs["CheckpointTableName"],
        Key={"run_id": {"S": run_id}, "item_id": {"S": "e2e_same"}},
        UpdateExpression=expression,
        ExpressionAttributeValues=values,
        **({"ExpressionAttributeNames": names} if names else {}),
    )
    started = time.monotonic()
    described = stack.execute({"check": check, "run_id": run_id})  # a resume of that run
    assert described["status"] == "FAILED" and described.get("error") == "TablesFailed", described
    assert time.monotonic() - started < 60  # no loop
    (table,) = stack.report(run_id)["tables"]
    assert table["status"] == "failed"
    assert f"checkpoint for e2e_same (run {run_id}) is damaged: {why}; start a new run id" in table["error"]


def test_the_same_run_started_twice_queues_and_alerts_once(stack: LocalStack, tables: None, alerts: str) -> None:
    _drain(stack, alerts)
    _drain(stack, stack.outputs["KeysQueueUrl"])
    check = {"source": "pg", "targets": ["mysql"], "tables": ["e2e_orders"]}
    first = stack.start_execution({"check": check, "run_id": "e2e-twice"})
    second = stack.start_execution({"check": check, "run_id": "e2e-twice"})
    outcomes = [stack.wait(first), stack.wait(second)]
    # The later execution waits for the one holding the table and answers from its checkpoint.
    assert [o["status"] for o in outcomes] == ["SUCCEEDED", "SUCCEEDED"], outcomes
    reports = [json.loads(o["output"]) for o in outcomes]
    for report in reports:
        (table,) = report["tables"]
        assert (table["targets"][0]["missing"], table["targets"][0]["differing"]) == (3, 2)
    queued = _drain(stack, stack.outputs["KeysQueueUrl"])
    assert sum(len(json.loads(m["Body"])["keys"]) for m in queued) == 6  # 3 missing, 1 extra, 2 differing: once
    runs = [json.loads(m["Body"])["Message"] for m in _drain(stack, alerts)]
    assert sum("tablesync run e2e-twice" in text for text in runs) == 1


# --- DynamoDB tables ------------------------------------------------------------------------------
def _dynamo(stack: LocalStack, region: str) -> Any:
    import boto3

    return boto3.client(
        "dynamodb",
        endpoint_url=stack.endpoint,
        region_name=region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def test_dynamodb_tables_in_two_regions_are_checked_and_repaired(
    stack: LocalStack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed functions read two regional DynamoDB tables directly: the drift is found
    exactly over many checkpointed invocations (equal numbers spelled apart are equal; 2^53 + 1 is
    not 2^53), the repair Lambda writes the west conditionally, and a new diff (the CLI, against the
    emulator) finds nothing."""
    east, west = _dynamo(stack, "us-east-1"), _dynamo(stack, "us-west-2")
    for client in (east, west):
        client.create_table(
            TableName=DYNAMO_TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )
    for i in range(600):
        item = {
            "pk": {"S": f"c{i % 13}"},
            "sk": {"N": str(i)},
            "qty": {"N": "9007199254740993" if i == 5 else f"{i}.0"},
            "tags": {"SS": ["b", "a", f"t{i}"]},
            "doc": {"M": {"n": {"N": str(i)}, "l": {"L": [{"S": "x"}, {"NULL": True}]}}},
        }
        east.put_item(TableName=DYNAMO_TABLE, Item=item)
        if i in (3, 300):
            continue  # missing in the west
        copy = {**item, "qty": {"N": "9007199254740992" if i == 5 else str(i)}, "tags": {"SS": ["a", f"t{i}", "b"]}}
        if i == 40:
            copy["doc"] = {"M": {"n": {"N": "40"}, "l": {"L": [{"NULL": True}, {"S": "x"}]}}}
        west.put_item(TableName=DYNAMO_TABLE, Item=copy)
    west.put_item(TableName=DYNAMO_TABLE, Item={"pk": {"S": "zz"}, "sk": {"N": "1"}})
    repair = {"write_missing": True, "write_differing": True, "delete_extra": True}
    check = {
        "source": "dyn-east",
        "targets": ["dyn-west"],
        # One item a page: a scan of many pages, over several invocations of 2 s each.
        "tables": [{"table": DYNAMO_TABLE, "chunk_size": 1, "repair": repair}],
    }
    stack.client("ssm").put_parameter(
        Name="/tablesync/e2e-dynamo", Value=json.dumps(check), Type="String", Overwrite=True
    )
    execution = stack.execute({"check_ssm": "/tablesync/e2e-dynamo", "run_id": "e2e-dynamo"})
    assert execution["status"] == "SUCCEEDED", json.dumps({k: str(v) for k, v in execution.items()})[:3000]
    (table,) = json.loads(execution["output"])["tables"]
    (target,) = table["targets"]
    assert (target["missing"], target["extra"], target["differing"], target["rows_compared"]) == (2, 1, 2, 600), table
    assert table["invocations"] > 1, table  # checkpointed between invocations
    messages = _drain(stack, stack.outputs["KeysQueueUrl"])
    assert _keys(messages) == {
        (DYNAMO_TABLE, "missing", "c3"),
        (DYNAMO_TABLE, "missing", "c1"),
        (DYNAMO_TABLE, "differing", "c5"),
        (DYNAMO_TABLE, "differing", "c1"),
        (DYNAMO_TABLE, "extra", "zz"),
    }
    answer = stack.invoke("RepairFunction", _sqs_event(messages))
    assert answer == {"batchItemFailures": []}, answer
    repaired = west.get_item(TableName=DYNAMO_TABLE, Key={"pk": {"S": "c5"}, "sk": {"N": "5"}}, ConsistentRead=True)
    assert repaired["Item"]["qty"] == {"N": "9007199254740993"}  # every digit written back
    urls = [f"{DYNAMO_DATABASES[n]}?endpoint={stack.endpoint}" for n in ("dyn-east", "dyn-west")]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")  # the emulator's; the CLI uses the default chain
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    assert cli.main(["diff", *urls, "--table", DYNAMO_TABLE, "--no-progress", "--segments", "4"]) == 0


def test_a_killed_dynamodb_diff_resumes_from_its_state_file(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tablesync diff --state-file` against the emulator's DynamoDB, killed (SIGKILL) mid-scan,
    then run again: it resumes from each segment's last key, and the answer is exact with every
    item counted once."""
    table = "e2e_resume"
    east, west = _dynamo(stack, "us-east-1"), _dynamo(stack, "us-west-2")
    for client in (east, west):
        client.create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST",
        )
    for i in range(1500):
        east.put_item(TableName=table, Item={"id": {"N": str(i)}, "v": {"S": f"v{i}"}})
        if i % 500 != 7:
            west.put_item(TableName=table, Item={"id": {"N": str(i)}, "v": {"S": "changed" if i == 900 else f"v{i}"}})
    urls = [f"{DYNAMO_DATABASES[n]}?endpoint={stack.endpoint}" for n in ("dyn-east", "dyn-west")]
    state_file = tmp_path / "dynamo.state"
    args = ["diff", *urls, "--table", table, "--format", "json", "--state-file", str(state_file)]
    args += ["--chunk-size", "5", "--segments", "3"]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}
    process = subprocess.Popen([sys.executable, "-m", "tablesync.cli", *args], env=env, stdout=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if state_file.exists() and json.loads(state_file.read_text())["source_rows"] > 100:
            break
        time.sleep(0.05)
    assert process.poll() is None, "the diff ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    saved = json.loads(state_file.read_text())
    assert 0 < saved["source_rows"] < 1500 and not saved["done"]
    rerun = subprocess.run([sys.executable, "-m", "tablesync.cli", *args], env=env, capture_output=True, text=True)
    assert rerun.returncode == 1, rerun.stderr
    result = json.loads(rerun.stdout)
    (target,) = result["targets"]
    assert sorted(target["missing"]) == [[7], [507], [1007]] and target["differing"] == [[900]]
    assert target["extra"] == [] and result["source"]["rows"] == 1500  # every item once
    assert not state_file.exists()  # a finished diff starts afresh next time


def _dynamo_table(stack: LocalStack, table: str, regions: tuple[str, ...] = ("us-east-1", "us-west-2")) -> None:
    for region in regions:
        _dynamo(stack, region).create_table(
            TableName=table,
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
            BillingMode="PAY_PER_REQUEST",
        )


def _check(stack: LocalStack, name: str, check: dict[str, Any]) -> dict[str, Any]:
    """Runs a stored check definition to its end; the table's result."""
    stack.client("ssm").put_parameter(Name=f"/tablesync/{name}", Value=json.dumps(check), Type="String", Overwrite=True)
    execution = stack.execute({"check_ssm": f"/tablesync/{name}", "run_id": name})
    assert execution["status"] == "SUCCEEDED", json.dumps({k: str(v) for k, v in execution.items()})[:3000]
    (table,) = json.loads(execution["output"])["tables"]
    result: dict[str, Any] = table
    return result


def test_a_throttled_dynamodb_check_still_gives_the_exact_answer(
    stack: LocalStack, throttle: dict[str, ThrottlingProxy], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The deployed checksum function and the CLI read the west region through a proxy that
    throttles every third read and serves half of every BatchGetItem (the rest UnprocessedKeys):
    both retry with backoff, drop nothing, and find the drift exactly."""
    table = "e2e_throttled"
    _dynamo_table(stack, table)
    east, west = _dynamo(stack, "us-east-1"), _dynamo(stack, "us-west-2")
    for i in range(400):
        east.put_item(TableName=table, Item={"id": {"N": str(i)}, "v": {"N": f"{i}.50"}})
        if i not in (11, 222):
            west.put_item(TableName=table, Item={"id": {"N": str(i)}, "v": {"N": "0" if i == 33 else f"{i}.5"}})
    west.put_item(TableName=table, Item={"id": {"N": "1000"}})
    proxy = throttle["west"]
    # skip_extra: every source key is looked up in the target (BatchGetItem), none paired by the scans.
    entry = {"table": table, "chunk_size": 50, "segments": 2, "skip_extra": True}
    result = _check(stack, "e2e-throttled", {"source": "dyn-east", "targets": ["dyn-throttled"], "tables": [entry]})
    (target,) = result["targets"]
    assert (target["missing"], target["extra"], target["differing"], target["rows_compared"]) == (2, 0, 1, 400)
    assert proxy.throttled > 0 and proxy.unprocessed > 0, (proxy.throttled, proxy.unprocessed)
    # The CLI, every table scanned (extra items found), through the same proxy.
    throttled_before = proxy.throttled
    urls = [f"dynamodb://us-east-1?endpoint={stack.endpoint}", f"dynamodb://us-west-2?endpoint={proxy.endpoint}"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    args = ["diff", *urls, "--table", table, "--no-progress", "--format", "json", "--chunk-size", "40"]
    out = subprocess.run([sys.executable, "-m", "tablesync.cli", *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 1, out.stderr
    (found,) = json.loads(out.stdout)["targets"]
    assert (found["missing"], found["extra"], found["differing"]) == ([[11], [222]], [[1000]], [[33]])
    assert proxy.throttled > throttled_before


def test_an_item_another_writer_changes_under_the_repair_is_not_overwritten(
    stack: LocalStack, throttle: dict[str, ThrottlingProxy]
) -> None:
    """The repair Lambda writes only where the target item is still as it read it: another writer
    that gets to two items between the repair's reads and its writes (the proxy lets it in just
    before each of those writes) keeps its versions, reported changed and queued to be checked
    again; the rest is repaired."""
    table = "e2e_race"
    _dynamo_table(stack, table)
    east, west = _dynamo(stack, "us-east-1"), _dynamo(stack, "us-west-2")
    for i in range(60):
        east.put_item(TableName=table, Item={"id": {"N": str(i)}, "v": {"S": f"v{i}"}})
        if i not in (1, 2):
            west.put_item(TableName=table, Item={"id": {"N": str(i)}, "v": {"S": "old" if i in (3, 4) else f"v{i}"}})
    repair = {"write_missing": True, "write_differing": True, "delete_extra": True}
    entry = {"table": table, "chunk_size": 7, "repair": repair}
    result = _check(stack, "e2e-race", {"source": "dyn-east", "targets": ["dyn-throttled"], "tables": [entry]})
    (target,) = result["targets"]
    assert (target["missing"], target["differing"]) == (2, 2)
    messages = _drain(stack, stack.outputs["KeysQueueUrl"])
    raced: list[str] = []

    def another_writer(operation: str, request: dict[str, Any]) -> None:
        key = (request.get("Item") or request.get("Key") or {}).get("id", {}).get("N")
        if request.get("TableName") == table and key in ("1", "3") and key not in raced:
            raced.append(key)
            west.put_item(TableName=table, Item={"id": {"N": key}, "v": {"S": f"newer {key}"}})

    throttle["west"].before_write = another_writer
    try:
        answer = stack.invoke("RepairFunction", _sqs_event(messages))
    finally:
        throttle["west"].before_write = None
    assert answer == {"batchItemFailures": []}, answer
    assert sorted(raced) == ["1", "3"]

    def held(i: int) -> str:
        item = west.get_item(TableName=table, Key={"id": {"N": str(i)}}, ConsistentRead=True)["Item"]
        return str(item["v"]["S"])

    assert held(1) == "newer 1" and held(3) == "newer 3"  # never overwritten
    assert held(2) == "v2" and held(4) == "v4"  # the others repaired


def test_sql_and_dynamodb_tables_are_checked_and_repaired_both_ways(
    stack: LocalStack, pg_admin: psycopg.Connection, mysql_admin: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL to a DynamoDB table (written by the repair function itself) and DynamoDB to a
    MariaDB table (written through its writer Lambda), each found exactly by the deployed check
    and repaired by the deployed repair function; then the CLI finds nothing left."""
    table = "e2e_mixed"
    _dynamo_table(stack, table)
    east, west = _dynamo(stack, "us-east-1"), _dynamo(stack, "us-west-2")
    pg_admin.execute(f"DROP TABLE IF EXISTS {table}")
    pg_admin.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, amount numeric(20,2), note text)")
    pg_admin.execute(f"INSERT INTO {table} SELECT g, g * 1.25, 'n' || g FROM generate_series(1, 200) g")
    with mysql_admin.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, amount decimal(20,2), note text)")
        cur.execute(f"INSERT INTO {table} SELECT seq, seq * 1.25, CONCAT('n', seq) FROM seq_1_to_200")
        cur.execute(f"UPDATE {table} SET note = 'stale' WHERE id = 50")
        cur.execute(f"DELETE FROM {table} WHERE id = 60")
    for i in range(1, 201):
        item = {"id": {"N": str(i)}, "amount": {"N": str(i * 1.25)}, "note": {"S": f"n{i}"}}
        east.put_item(TableName=table, Item=item)
        if i == 7:
            continue  # missing in the west
        west.put_item(TableName=table, Item={**item, "amount": {"N": "1"}} if i == 8 else item)
    west.put_item(TableName=table, Item={"id": {"N": "999999999999999999"}, "note": {"S": "extra"}})
    repair = {"write_missing": True, "write_differing": True, "delete_extra": True}
    entry = {"table": table, "chunk_size": 25, "repair": repair}
    try:
        for name, source, target, expected in (
            ("e2e-mixed-pg", "pg", "dyn-west", (1, 1, 1)),
            ("e2e-mixed-my", "dyn-east", "mysql", (1, 0, 1)),
        ):
            result = _check(stack, name, {"source": source, "targets": [target], "tables": [entry]})
            (found,) = result["targets"]
            assert (found["missing"], found["extra"], found["differing"]) == expected, (name, found)
            messages = _drain(stack, stack.outputs["KeysQueueUrl"])
            answer = stack.invoke("RepairFunction", _sqs_event(messages))
            assert answer == {"batchItemFailures": []}, answer
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        east_url, west_url = (f"dynamodb://{r}?endpoint={stack.endpoint}" for r in ("us-east-1", "us-west-2"))
        assert cli.main(["diff", PG_URL, west_url, "--table", table, "--no-progress"]) == 0
        assert cli.main(["diff", east_url, MYSQL_URL, "--table", table, "--no-progress"]) == 0
        big = west.get_item(TableName=table, Key={"id": {"N": "8"}}, ConsistentRead=True)["Item"]
        assert big["amount"] == {"N": "10"}  # numeric 10.00 as the number it is
    finally:
        pg_admin.execute(f"DROP TABLE IF EXISTS {table}")
        with mysql_admin.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")


# --- copies and replication (the app's copy and replicate modes) ------------------------------------
def test_a_copy_mode_table_missing_on_the_target_is_created_loaded_and_checked(
    stack: LocalStack, pg_admin: psycopg.Connection, mysql_admin: Any
) -> None:
    """Mode copy: MariaDB lacks the table; CopyTable creates it through the writer function (its
    allow-list has create and insert), loads it over several checkpointed invocations, and the
    check that follows finds it identical."""
    table = "e2e_copied"
    pg_admin.execute(f"DROP TABLE IF EXISTS {table}")
    pg_admin.execute(
        f"CREATE TABLE {table} (id bigint PRIMARY KEY, name varchar(40), amount numeric(12,3), at timestamptz)"
    )
    pg_admin.execute(
        f"INSERT INTO {table} SELECT g, 'n' || g, g * 1.5, "
        "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 minute' FROM generate_series(1, 5000) g"
    )
    with mysql_admin.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
    try:
        entry = {"table": table, "mode": "copy"}
        result = _check(stack, "e2e-copy", {"source": "pg", "targets": ["mysql"], "tables": [entry]})
        assert len(result["copied"]) == 1, result
        (copied,) = result["copied"]
        assert copied["url"] == "mysql" and copied["rows_copied"] == 5000, result
        assert copied["created"].startswith("CREATE TABLE"), result
        (target,) = result["targets"]
        assert (target["missing"], target["extra"], target["differing"], target["rows_compared"]) == (0, 0, 0, 5000)
        with mysql_admin.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM {table}")
            assert cur.fetchone()[0] == 5000
    finally:
        pg_admin.execute(f"DROP TABLE IF EXISTS {table}")
        with mysql_admin.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")


def test_a_replicate_mode_table_gets_each_runs_new_rows(
    stack: LocalStack, pg_admin: psycopg.Connection, mysql_admin: Any
) -> None:
    """Mode replicate: each run copies the source's rows above the target's highest key (no
    check), through the writer function; a second run copies only what came since."""
    table = "e2e_events"
    pg_admin.execute(f"DROP TABLE IF EXISTS {table}")
    pg_admin.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, tx bigint, payload text)")
    pg_admin.execute(f"INSERT INTO {table} SELECT g, g / 3, 'e' || g FROM generate_series(1, 3000) g")
    with mysql_admin.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} (id bigint PRIMARY KEY, tx bigint, payload text)")
    try:
        entry = {"table": table, "mode": "replicate", "group_column": "tx"}
        check = {"source": "pg", "targets": ["mysql"], "tables": [entry]}
        first = _check(stack, "e2e-replicate-1", check)
        assert [c["rows_copied"] for c in first["copied"]] == [3000], first
        pg_admin.execute(f"INSERT INTO {table} SELECT g, g / 3, 'e' || g FROM generate_series(3001, 3700) g")
        second = _check(stack, "e2e-replicate-2", check)
        assert [c["rows_copied"] for c in second["copied"]] == [700], second
        with mysql_admin.cursor() as cur:
            cur.execute(f"SELECT COUNT(*), MAX(id) FROM {table}")
            assert cur.fetchone() == (3700, 3700)
    finally:
        pg_admin.execute(f"DROP TABLE IF EXISTS {table}")
        with mysql_admin.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
