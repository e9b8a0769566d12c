"""Repair in the application, with AWS in moto and real SQLite databases reached through the real
connector transport: a stored check that enables repair queues its keys with a reference to
itself, and the repair Lambda fixes them through the target's writer (audited to S3); a table
without repair, or a run whose definition was not stored, is never written; a message that does
not match its stored definition, or a write the writer's allow-list does not hold, is refused,
parked and alerted; rows the target refuses go to the dead-letter queue with their keys and
reasons and alert, and a re-drive after the fix repairs them and reports it; transient errors are
partial batch failures that SQS retries; a recheck after a wait keeps only what still differs; an
execution input can re-sync a list of keys."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from app_support import ROOT, Context, InProcessLambda, drifted, fake_aws_env, handler, make_sqlite, source_rows
from moto import mock_aws
from pydantic import ValidationError
from tablesync.app import checking, environment, listing, repairing, reporting, runtime
from tablesync.app.checkpoints import MemoryCheckpointStore
from tablesync.app.events import ChecksumResult, ReportInput, RunInput, TableResult
from tablesync.connectors import open_connector
from tablesync.engine import Differ
from tablesync.errors import InputError, TransientDatabaseError
from tablesync.models import RowWrite

REGION = "us-east-1"
REPAIR_ALL = {"write_missing": True, "write_differing": True, "delete_extra": True}
CHECK_SSM = "/tablesync/check"
ALLOW_ALL = "orders:insert+update+delete"


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    fake_aws_env(monkeypatch, POWERTOOLS_TRACE_DISABLED="true")
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        clients = environment.Clients(session)
        clients.s3.create_bucket(Bucket="results")
        clients.s3.create_bucket(Bucket="audit")
        topic = clients.sns.create_topic(Name="alerts")["TopicArn"]
        dead = clients.sqs.create_queue(QueueName="keys-dlq")["QueueUrl"]
        queue = clients.sqs.create_queue(QueueName="keys")["QueueUrl"]
        inbox = clients.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        inbox_arn = clients.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
        settings = environment.Settings(
            results_bucket="results",
            audit_bucket="audit",
            topic_arn=topic,
            queue_url=queue,
            dead_letter_url=dead,
            safety_margin_seconds=0,
        )
        yield {"clients": clients, "settings": settings, "inbox": inbox, "store": MemoryCheckpointStore()}


@pytest.fixture
def lam(tmp_path: Path) -> Iterator[InProcessLambda]:
    rows = source_rows()
    make_sqlite(tmp_path / "src.db", rows)
    make_sqlite(tmp_path / "dst.db", drifted(rows))
    databases = {"src": f"sqlite:///{tmp_path / 'src.db'}", "dst": f"sqlite:///{tmp_path / 'dst.db'}"}
    lam = InProcessLambda(databases, writable={"dst": ALLOW_ALL})
    yield lam
    lam.close()


def _differences(lam: InProcessLambda, table: str = "orders") -> tuple[list[Any], list[Any], list[Any]]:
    urls = lam.databases
    with Differ(table, lambda: open_connector(urls["src"]), [lambda: open_connector(urls["dst"])]) as differ:
        result = differ.result(differ.run()).targets[0]
    return result.missing, result.extra, result.differing


def _store(aws: dict[str, Any], check: dict[str, Any], name: str = CHECK_SSM) -> None:
    """A check definition stored as the operator stores it (an SSM parameter)."""
    aws["clients"].ssm.put_parameter(Name=name, Value=json.dumps(check), Type="String", Overwrite=True)


def _run(
    aws: dict[str, Any], lam: InProcessLambda, check: dict[str, Any], *, stored: bool = True, **run: Any
) -> list[ChecksumResult]:
    """ListTables and ChecksumTable (each item to the end), as the state machine runs them; the
    definition stored in SSM (or, with stored=False, inline in the execution input)."""
    clients, settings, store = aws["clients"], aws["settings"], aws["store"]
    if stored:
        _store(aws, check)
        run_input = RunInput(run_id="run-1", owner="exec-1", check_ssm=CHECK_SSM, **run)
    else:
        run_input = RunInput(run_id="run-1", owner="exec-1", check=check, **run)
    items = listing.list_tables(run_input, clients, lam.opener()).items
    results = []
    for item in items:
        result = checking.checksum_table(item, 600, settings, store, lam.opener())
        while result.status == "continue":
            result = checking.checksum_table(result, 600, settings, store, lam.opener())
        results.append(result)
    return results


def _report_and_receive(aws: dict[str, Any], results: list[ChecksumResult]) -> list[str]:
    clients, settings = aws["clients"], aws["settings"]
    # What the Map hands Report: TableDone's fields (the item's options left out).
    done = [TableResult.model_validate(r.model_dump(include=set(TableResult.model_fields))) for r in results]
    reporting.report(ReportInput(run_id="run-1", results=done), settings, clients, aws["store"])
    return _drain(clients, settings.queue_url)


def _drain(clients: Any, queue: str) -> list[str]:
    bodies = []
    while True:
        messages = clients.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", [])
        if not messages:
            return bodies
        for message in messages:
            bodies.append(message["Body"])
            clients.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])


def _repair(aws: dict[str, Any], lam: InProcessLambda, body: str) -> Any:
    return repairing.repair_message(body, aws["settings"], aws["clients"], lam.opener(), lam.writer_opener())


def _alerts(aws: dict[str, Any]) -> list[str]:
    return [json.loads(body)["Message"] for body in _drain(aws["clients"], aws["inbox"])]


def test_a_check_with_repair_queues_its_keys_and_the_repair_lambda_fixes_them(
    aws: dict[str, Any], lam: InProcessLambda
) -> None:
    check = {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]}
    bodies = _report_and_receive(aws, _run(aws, lam, check))
    assert {json.loads(b)["kind"] for b in bodies} == {"missing", "extra", "differing"}
    # A message refers to the stored definition; it carries no settings of its own.
    assert all(json.loads(b)["check_ssm"] == CHECK_SSM and "repair" not in json.loads(b) for b in bodies)
    results = [_repair(aws, lam, b) for b in bodies]
    assert sum(r.inserted for r in results) == 2 and sum(r.updated for r in results) == 2
    assert sum(r.deleted for r in results) == 1 and not any(r.failed for r in results)
    assert _differences(lam) == ([], [], [])
    listed = aws["clients"].s3.list_objects_v2(Bucket="audit", Prefix="audit/run-1/orders/dst/")["Contents"]
    records = [
        json.loads(line)
        for obj in listed
        for line in aws["clients"].s3.get_object(Bucket="audit", Key=obj["Key"])["Body"].read().splitlines()
    ]
    assert sorted((r["action"], r["key"][0]) for r in records) == [
        ("delete", 5000),
        ("insert", 5),
        ("insert", 1500),
        ("update", 77),
        ("update", 2999),
    ]
    assert all(r["status"] == "applied" for r in records)
    # The run's own alert only: a repair without failures is no news.
    assert [a.split(":")[0] for a in _alerts(aws)] == ["tablesync run run-1"]


def test_a_table_without_repair_is_left_alone(aws: dict[str, Any], lam: InProcessLambda) -> None:
    bodies = _report_and_receive(aws, _run(aws, lam, {"source": "src", "targets": ["dst"], "tables": ["orders"]}))
    assert bodies and all(json.loads(b)["check_ssm"] == CHECK_SSM for b in bodies)
    results = [_repair(aws, lam, b) for b in bodies]
    assert sum(sum(r.not_enabled.values()) for r in results) == 5
    assert not any(op == "write_rows" for _, op in lam.calls)
    assert len(_differences(lam)[0]) == 2


def test_a_run_whose_definition_was_not_stored_is_never_repaired(aws: dict[str, Any], lam: InProcessLambda) -> None:
    """Anyone who can start an execution can give an inline definition: it may check, not write."""
    check = {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]}
    bodies = _report_and_receive(aws, _run(aws, lam, check, stored=False))
    assert bodies and all(json.loads(b)["check_ssm"] is None for b in bodies)
    results = [_repair(aws, lam, b) for b in bodies]
    assert sum(sum(r.not_enabled.values()) for r in results) == 5
    assert not any(function.endswith(".writer") for function, _ in lam.calls)
    assert len(_differences(lam)[0]) == 2


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"target": "src", "source": "dst"}, "the check definition /tablesync/check has source src"),
        ({"table": "customers"}, "table customers is not in the check definition"),
        ({"repair": {"write_missing": True}, "check_ssm": "/tablesync/other"}, "cannot read the check definition"),
    ],
)
def test_a_message_that_does_not_match_its_stored_definition_is_refused(
    aws: dict[str, Any], lam: InProcessLambda, change: dict[str, Any], reason: str
) -> None:
    """Swapped source and target, another table, settings of its own, another definition: the
    message is parked with the reason and alerted, and nothing is written."""
    _store(aws, {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]})
    body = {"run_id": "r", "check_ssm": CHECK_SSM, "table": "orders", "source": "src", "target": "dst"}
    result = _repair(aws, lam, json.dumps({**body, "keys": [[5]], **change}))
    assert result.failed and reason in result.failed[0].reason
    assert not any(function.endswith(".writer") for function, _ in lam.calls)
    assert len(_drain(aws["clients"], aws["settings"].dead_letter_url)) == 1
    assert any(reason in a for a in _alerts(aws))
    assert len(_differences(lam)[0]) == 2


def test_the_writer_writes_only_its_allow_listed_tables_and_actions(aws: dict[str, Any], lam: InProcessLambda) -> None:
    """The stored definition enables deletes, the deployment's allow-list does not: the writer
    refuses the batch, which is parked and alerted; nothing is written."""
    lam.writable["dst"] = "orders:insert+update"
    check = {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]}
    bodies = _report_and_receive(aws, _run(aws, lam, check))
    extra = next(b for b in bodies if json.loads(b)["kind"] == "extra")
    result = _repair(aws, lam, extra)
    assert result.failed and "may not delete table orders" in result.failed[0].reason
    assert "DatabaseNWritableTables" in result.failed[0].reason
    assert _differences(lam)[1] == [[5000]]
    assert any("may not delete table orders" in a for a in _alerts(aws))


def test_a_read_connector_never_writes(lam: InProcessLambda) -> None:
    connector = lam.opener()("dst")
    with Differ("orders", lambda: lam.opener()("src"), [lambda: connector]) as differ:
        plan = differ.target_plans[0]
    with pytest.raises(InputError, match="only reads"):
        connector.write_rows(plan, [RowWrite(action="delete", key=[5000], expected=None)])
    assert len(_differences(lam)[1]) == 1


def test_refused_rows_go_to_the_dead_letter_queue_and_a_redrive_repairs_them(
    aws: dict[str, Any], lam: InProcessLambda, tmp_path: Path
) -> None:
    # The target refuses qty >= 12 (the source holds qty = id % 13): every source row with qty 12
    # that the target lacks or holds otherwise is refused, the rest is written.
    _rebuild_orders(tmp_path / "dst.db", "qty INTEGER NOT NULL CHECK (qty < 12)", "id, min(qty, 11), note")
    missing, _, differing = _differences(lam)
    refused = [k for k in differing + missing if k[0] % 13 >= 12]
    check = {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]}
    bodies = _report_and_receive(aws, _run(aws, lam, check))
    results = [_repair(aws, lam, b) for b in bodies]
    failed = [f.key for r in results for f in r.failed]
    assert sorted(failed) == sorted(refused) and refused
    parked = _drain(aws["clients"], aws["settings"].dead_letter_url)
    assert len(parked) == 1
    message = json.loads(parked[0])
    assert sorted(message["keys"]) == sorted(refused)
    assert all("CHECK constraint failed" in f["reason"] for f in message["failures"])
    alerts = _alerts(aws)
    assert any(f"{len(refused)} failed" in a and "dead-letter queue" in a for a in alerts)
    assert _differences(lam)[0] == [] and _differences(lam)[1] == []  # the rest was written

    # The cause is fixed (the constraint relaxed); the message is re-driven to the queue.
    _rebuild_orders(tmp_path / "dst.db", "qty INTEGER NOT NULL", "id, qty, note")
    redriven = _repair(aws, lam, parked[0])
    assert redriven.updated == len(refused) and not redriven.failed
    assert _differences(lam) == ([], [], [])
    assert any(a.startswith("tablesync re-drive of orders on dst") and "0 failed" in a for a in _alerts(aws))


def _rebuild_orders(path: Path, qty_ddl: str, select: str) -> None:
    """SQLite cannot change a column's constraint in place: the table is made anew around it."""
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("ALTER TABLE orders RENAME TO orders_old")
        conn.execute(f"CREATE TABLE orders (id INTEGER PRIMARY KEY, {qty_ddl}, note TEXT)")
        conn.execute(f"INSERT INTO orders SELECT {select} FROM orders_old")
        conn.execute("DROP TABLE orders_old")
    conn.close()


def test_a_message_that_can_never_succeed_is_parked_at_once(aws: dict[str, Any], lam: InProcessLambda) -> None:
    _store(aws, {"source": "src", "targets": ["dst"], "tables": [{"pattern": "n*", "repair": REPAIR_ALL}]})
    _repair(aws, lam, "{not json")
    body = {"run_id": "r", "check_ssm": CHECK_SSM, "table": "nope", "source": "src", "target": "dst", "keys": [[1]]}
    result = _repair(aws, lam, json.dumps(body))
    assert result.failed and "unknown table" in result.failed[0].reason
    parked = _drain(aws["clients"], aws["settings"].dead_letter_url)
    assert parked[0] == "{not json" and json.loads(parked[1])["failures"][0]["key"] == [1]


def test_a_target_without_a_writer_secret_is_never_written(aws: dict[str, Any], lam: InProcessLambda) -> None:
    _store(aws, {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]})
    lam.writable.clear()
    body = {"run_id": "r", "check_ssm": CHECK_SSM, "table": "orders", "source": "src", "target": "dst", "keys": [[5]]}
    result = _repair(aws, lam, json.dumps(body))
    assert "has no writer" in result.failed[0].reason
    assert len(_differences(lam)[0]) == 2


def test_the_handler_reports_transient_failures_as_partial_batch_failures(
    aws: dict[str, Any], lam: InProcessLambda, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """tests/events/repair.json holds two messages; the second one's target keeps losing its
    connection, so only that message is handed back to SQS (which retries it, then parks it)."""
    event = json.loads((ROOT / "tests" / "events" / "repair.json").read_text())
    monkeypatch.setattr(runtime, "settings", lambda model: aws["settings"])
    monkeypatch.setattr(runtime, "clients", lambda: aws["clients"])
    monkeypatch.setattr(runtime, "connectors", lambda: lam.opener())
    monkeypatch.setattr(runtime, "writers", lambda: lam.writer_opener())
    _store(aws, {"source": "src", "targets": ["dst", "flaky"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]})
    lam.databases["flaky"] = lam.databases["dst"]
    lam.writable["flaky"] = ALLOW_ALL
    lam.fail = lambda function, op: TransientDatabaseError("lost connection") if function == "flaky" else None
    answer = handler("repair").lambda_handler(event, Context(function_name="tablesync-repair"))
    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert _differences(lam)[0] == [[1500]]  # the first message's key 5 was written
    assert _drain(aws["clients"], aws["settings"].dead_letter_url) == []  # SQS retries, not us
    # The log says how many, never which keys or what the rows hold.
    records = list(caplog.records)
    repaired = [r for r in records if r.getMessage() == "keys repaired"]
    assert repaired and repaired[0].__dict__["inserted"] == 1
    text = json.dumps([r.__dict__ for r in records], default=str)
    assert "[5]" not in text and "note 5" not in text and "1500" not in text


def test_recheck_after_a_wait_keeps_only_what_still_differs(
    aws: dict[str, Any], lam: InProcessLambda, tmp_path: Path
) -> None:
    check = {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "recheck_after": 60}]}
    (result,) = _run(aws, lam, check)
    assert result.recheck_pending and result.recheck_after == 60
    # Meanwhile replication delivers the missing row 5.
    src = sqlite3.connect(tmp_path / "src.db")
    row = src.execute("SELECT * FROM orders WHERE id = 5").fetchone()
    src.close()
    dst = sqlite3.connect(tmp_path / "dst.db")
    with dst:
        dst.execute("INSERT INTO orders VALUES (?, ?, ?)", row)
    dst.close()
    after = checking.recheck_table(result, 600, aws["settings"], aws["store"], lam.opener())
    assert after.rechecked and not after.recheck_pending
    (summary,) = after.targets_summary
    assert (summary.missing, summary.extra, summary.differing) == (1, 1, 2)
    assert aws["store"].load("run-1", "orders").state.targets[0].missing == [[1500]]


def test_an_execution_can_resync_a_list_of_keys(aws: dict[str, Any], lam: InProcessLambda) -> None:
    check = {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]}
    resync = {"table": "orders", "keys": [[5], [77], [78], [5000]]}
    (result,) = _run(aws, lam, check, resync=resync)
    assert result.item_id == "orders#resync" and result.status == "done"
    (summary,) = result.targets_summary
    assert (summary.rows_compared, summary.missing, summary.extra, summary.differing) == (4, 1, 1, 1)
    bodies = _report_and_receive(aws, [result])
    for body in bodies:
        _repair(aws, lam, body)
    missing, extra, differing = _differences(lam)
    assert (missing, extra, differing) == ([[1500]], [], [[2999]])  # only the keys asked for


def test_a_resync_needs_repair_enabled_by_the_stored_definition(aws: dict[str, Any], lam: InProcessLambda) -> None:
    check = {"source": "src", "targets": ["dst"], "tables": ["orders"]}
    with pytest.raises(InputError, match="does not enable repair for table orders"):
        _run(aws, lam, check, resync={"table": "orders", "keys": [[5]]})
    with pytest.raises(InputError, match="stored check definition"):
        _run(aws, lam, {**check, "tables": [{"table": "orders", "repair": REPAIR_ALL}]}, stored=False,
             resync={"table": "orders", "keys": [[5]]})  # fmt: skip
    with pytest.raises(ValidationError, match="repair"):
        RunInput(run_id="r", owner="o", check_ssm=CHECK_SSM, resync={"table": "orders", "keys": [[5]], "repair": {}})


class Interfering:
    """A writer whose target row of `key` is changed by someone else just before each write, as
    a replication stream racing the repair would."""

    def __init__(self, inner: Any, path: Path, key: int) -> None:
        self.inner, self.path, self.key = inner, path, key

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write_rows(self, plan: Any, writes: Any, dry_run: bool = False) -> Any:
        with sqlite3.connect(self.path) as conn:
            conn.execute("UPDATE orders SET note = note || '+' WHERE id = ?", [self.key])
        return self.inner.write_rows(plan, writes, dry_run)


class SentMessages:
    """The SQS client, recording what is sent (moto holds delayed messages back)."""

    def __init__(self, sqs: Any) -> None:
        self.sqs, self.sent = sqs, []

    def send_message(self, **kwargs: Any) -> Any:
        self.sent.append(kwargs)
        return self.sqs.send_message(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sqs, name)


def test_keys_that_changed_under_the_repair_are_checked_again_then_parked(
    aws: dict[str, Any], lam: InProcessLambda, tmp_path: Path
) -> None:
    """Through the writer Lambda the target cannot be locked while the source is read: a row
    that changes under the repair is left alone (`changed`) and its key goes back to the queue,
    later each time, to be read and decided again; one that keeps changing is parked and alerted."""
    check = {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "repair": REPAIR_ALL}]}
    _store(aws, check)
    body = json.dumps(
        {"run_id": "run-1", "check_ssm": CHECK_SSM, "table": "orders", "source": "src", "target": "dst", "keys": [[77]]}
    )
    sent = SentMessages(aws["clients"].sqs)
    aws["clients"].sqs = sent
    settings, clients = aws["settings"], aws["clients"]

    def interfering(name: str) -> Any:
        return Interfering(lam.writer_opener()(name), tmp_path / "dst.db", 77)

    result = repairing.repair_message(body, settings, clients, lam.opener(), interfering)
    assert (result.updated, result.changed, result.changed_keys) == (0, 1, [[77]])
    (again,) = [m for m in sent.sent if m["QueueUrl"] == settings.queue_url]
    message = json.loads(again["MessageBody"])
    assert (message["keys"], message["recheck"], again["DelaySeconds"]) == ([[77]], 1, 60)
    # Checked again once the rows are still: written.
    settled = repairing.repair_message(again["MessageBody"], settings, clients, lam.opener(), lam.writer_opener())
    assert settled.updated == 1 and settled.remaining == 0
    assert _differences(lam)[2] == [[2999]]  # 77 repaired; the message held only 77
    # A key that keeps changing is checked REVERIFY_ROUNDS times, then parked with an alert.
    last = json.dumps({**json.loads(body), "recheck": repairing.REVERIFY_ROUNDS})
    with sqlite3.connect(tmp_path / "dst.db") as conn:
        conn.execute("UPDATE orders SET note = 'drifted' WHERE id = 77")
    sent.sent.clear()
    repairing.repair_message(last, settings, clients, lam.opener(), interfering)
    assert not [m for m in sent.sent if m["QueueUrl"] == settings.queue_url]
    (parked,) = _drain(clients, settings.dead_letter_url)
    assert json.loads(parked)["keys"] == [[77]] and "kept changing" in json.loads(parked)["failures"][0]["reason"]
    assert any("kept changing under the repair" in a for a in _alerts(aws))
