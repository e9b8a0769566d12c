"""The application's logic (the step modules of tablesync.app) with AWS in moto and real SQLite databases
reached through the real connector transport.

- a table whose checksum is cut off by the deadline many times ends with the totals of an
  uninterrupted run, and a duplicated invocation never counts twice;
- of two executions on one table run, one holds the lease and the other gets a clear error;
- a bad check definition fails naming the field;
- definitions come inline, from S3 or from SSM; patterns and shards expand into Map items;
- the report lands in S3, alerts on SNS, emits metrics and queues every differing key."""

from __future__ import annotations

import json
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from app_support import InProcessLambda, create_checkpoint_table, drifted, fake_aws_env, make_sqlite, source_rows
from moto import mock_aws
from pydantic.fields import FieldInfo
from tablesync.app import checking, environment, listing, reporting
from tablesync.app.checkpoints import DynamoDbCheckpointStore
from tablesync.app.events import ChecksumResult, FailedItem, ReportInput, RunInput, TableItem, TableResult
from tablesync.connectors import open_connector
from tablesync.engine import Differ
from tablesync.errors import CheckpointConflictError, InputError
from tablesync.models import DiffOptions

REGION = "us-east-1"


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    fake_aws_env(monkeypatch)
    with mock_aws():
        session = boto3.session.Session(region_name=REGION)
        clients = environment.Clients(session)
        create_checkpoint_table(clients.dynamodb, "checkpoints")
        clients.s3.create_bucket(Bucket="results")
        topic = clients.sns.create_topic(Name="alerts")["TopicArn"]
        queue = clients.sqs.create_queue(QueueName="keys")["QueueUrl"]
        inbox = clients.sqs.create_queue(QueueName="inbox")["QueueUrl"]
        inbox_arn = clients.sqs.get_queue_attributes(QueueUrl=inbox, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        clients.sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=inbox_arn)
        settings = environment.Settings(
            checkpoint_table="checkpoints",
            results_bucket="results",
            topic_arn=topic,
            queue_url=queue,
            safety_margin_seconds=30.0,
        )
        clock = Clock()
        store = DynamoDbCheckpointStore("checkpoints", clients.dynamodb, clients.s3, "results", clock=clock)
        yield {"clients": clients, "settings": settings, "store": store, "clock": clock, "inbox": inbox}


@pytest.fixture
def databases(tmp_path: Path) -> Iterator[InProcessLambda]:
    rows = source_rows()
    make_sqlite(tmp_path / "src.db", rows)
    make_sqlite(tmp_path / "dst.db", drifted(rows))
    lam = InProcessLambda({"src": f"sqlite:///{tmp_path / 'src.db'}", "dst": f"sqlite:///{tmp_path / 'dst.db'}"})
    yield lam
    lam.close()


def _item(owner: str = "exec-1", **options: Any) -> TableItem:
    return TableItem(
        run_id="run-1",
        owner=owner,
        item_id="orders",
        table="orders",
        source="src",
        targets=["dst"],
        options=DiffOptions(**options),
    )


def _uninterrupted(lam: InProcessLambda, options: DiffOptions) -> Any:
    urls = lam.databases
    with Differ("orders", lambda: open_connector(urls["src"]), [lambda: open_connector(urls["dst"])], options) as d:
        return d.run().targets[0]


def test_cut_off_many_times_gives_the_uninterrupted_totals(aws: dict[str, Any], databases: InProcessLambda) -> None:
    options = {"chunk_size": 100, "max_chunk_size": 200, "bisection_threshold": 8, "bisection_factor": 4}
    item = _item(**options)
    result: ChecksumResult | None = None
    invocations = 0
    while result is None or result.status == "continue":
        # No time left beyond the safety margin: every invocation does one round and saves.
        result = checking.checksum_table(
            result or item, aws["settings"].safety_margin_seconds, aws["settings"], aws["store"], databases.opener()
        )
        invocations += 1
        assert invocations < 500
    assert invocations > 10
    expected = _uninterrupted(databases, DiffOptions(**options))
    summary = result.targets_summary[0]
    assert (summary.missing, summary.extra, summary.differing) == (2, 1, 2)
    assert summary.rows_compared == expected.rows_compared == 3000
    final = aws["store"].load("run-1", "orders").state.targets[0]
    assert sorted(map(tuple, final.missing)) == sorted(map(tuple, expected.missing)) == [(5,), (1500,)]
    assert sorted(map(tuple, final.extra)) == [(5000,)]
    assert sorted(map(tuple, final.differing)) == sorted(map(tuple, expected.differing)) == [(77,), (2999,)]
    assert result.invocations == invocations
    # Done is done: a late, repeated invocation answers from the checkpoint, counts nothing again.
    again = checking.checksum_table(item, 600, aws["settings"], aws["store"], databases.opener())
    assert again.status == "done" and again.targets_summary == result.targets_summary


def test_a_duplicated_invocation_never_counts_twice(aws: dict[str, Any], databases: InProcessLambda) -> None:
    store, settings = aws["store"], aws["settings"]
    item = _item(chunk_size=100, max_chunk_size=100)
    first = checking.checksum_table(item, settings.safety_margin_seconds, settings, store, databases.opener())
    stale = store.acquire("run-1", "orders", "exec-1", 60)  # what a duplicate read: the same version
    checking.checksum_table(first, settings.safety_margin_seconds, settings, store, databases.opener())
    with pytest.raises(CheckpointConflictError, match="another invocation saved first"):
        store.save(stale, stale.state, 60)  # the duplicate's save is refused
    result = first
    while result.status == "continue":
        result = checking.checksum_table(result, settings.safety_margin_seconds, settings, store, databases.opener())
    assert result.targets_summary[0].rows_compared == 3000
    assert (result.targets_summary[0].missing, result.targets_summary[0].differing) == (2, 2)


def test_two_executions_on_one_table_run(aws: dict[str, Any], databases: InProcessLambda) -> None:
    store, settings, clock = aws["store"], aws["settings"], aws["clock"]
    margin = settings.safety_margin_seconds  # no time beyond the margin: one round per invocation
    first = checking.checksum_table(
        _item("exec-A", chunk_size=100, max_chunk_size=100), margin, settings, store, databases.opener()
    )
    assert first.status == "continue"
    # The other execution waits (a Wait state, then again), as for an outage, naming the holder.
    waiting = checking.checksum_table(_item("exec-B"), margin, settings, store, databases.opener())
    assert waiting.status == "waiting" and waiting.invocations == 0 and not waiting.targets_summary
    assert waiting.outage is not None and "table orders of run run-1 is being checked by exec-A" in waiting.outage
    # The holder goes on; once its lease has run out (it died), the other may take the table over.
    checking.checksum_table(first, margin, settings, store, databases.opener())
    clock.now += margin + settings.lease_grace_seconds + 1
    taken = checking.checksum_table(_item("exec-B", chunk_size=100), 600, settings, store, databases.opener())
    while taken.status == "continue":
        taken = checking.checksum_table(taken, 600, settings, store, databases.opener())
    assert taken.targets_summary[0].rows_compared == 3000


@pytest.mark.parametrize(
    ("check", "field"),
    [
        ({"source": "src", "targets": [], "tables": ["orders"]}, "targets"),
        ({"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "shards": 0}]}, "tables.0.shards"),
        ({"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "chunk": 5}]}, "tables.0.chunk"),
        # Upper bounds: a definition cannot ask a database for an unbounded query.
        (
            {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "chunk_size": 10**8}]},
            "tables.0.chunk_size: Input should be less than or equal to 10000000",
        ),
        (
            {"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "bisection_factor": 4096}]},
            "tables.0.bisection_factor: Input should be less than or equal to 2048",
        ),
        ({"source": "src", "targets": ["dst"], "tables": [{"table": "orders", "shards": 1000}]}, "tables.0.shards"),
        ({"source": "src", "targets": ["src"], "tables": ["orders"]}, "source cannot also be a target"),
        ({"targets": ["dst"], "tables": ["orders"]}, "source"),
    ],
)
def test_a_bad_check_definition_names_the_field(
    aws: dict[str, Any], databases: InProcessLambda, check: dict[str, Any], field: str
) -> None:
    run = RunInput(run_id="r", owner="o", check=check)
    with pytest.raises(InputError, match="invalid check definition") as raised:
        listing.list_tables(run, aws["clients"], databases.opener())
    assert field in str(raised.value)
    assert "\n" not in str(raised.value)


def test_unknown_database_and_table_are_named(aws: dict[str, Any], databases: InProcessLambda) -> None:
    settings = environment.Settings(connectors={"src": "fn-src"})
    opener = environment.lambda_connectors(settings, aws["clients"])
    with pytest.raises(InputError, match=r"no connector is deployed for database 'dst' \(deployed: src\)"):
        opener("dst")
    run = RunInput(
        run_id="r", owner="o", check={"source": "src", "targets": ["dst"], "tables": ["orders"]}, tables=["nope"]
    )
    with pytest.raises(InputError, match="not in the check definition: nope"):
        listing.list_tables(run, aws["clients"], databases.opener())


def test_definitions_from_s3_and_ssm(aws: dict[str, Any], databases: InProcessLambda) -> None:
    clients = aws["clients"]
    check = {"source": "src", "targets": ["dst"], "tables": ["orders"], "defaults": {"chunk_size": 500}}
    clients.s3.put_object(Bucket="results", Key="checks/orders.json", Body=json.dumps(check).encode())
    clients.ssm.put_parameter(Name="/tablesync/check", Value=json.dumps(check), Type="String")
    for run in (
        RunInput(run_id="r", owner="o", check_s3="s3://results/checks/orders.json"),
        RunInput(run_id="r", owner="o", check_ssm="/tablesync/check"),
    ):
        result = listing.list_tables(run, clients, databases.opener())
        assert [i.item_id for i in result.items] == ["orders"]
        assert result.items[0].options.chunk_size == 500
    with pytest.raises(InputError, match="cannot read the check definition from /tablesync/missing"):
        listing.list_tables(
            RunInput(run_id="r", owner="o", check_ssm="/tablesync/missing"), clients, databases.opener()
        )
    with pytest.raises(InputError, match="exactly one of check, check_s3 and check_ssm"):
        listing.list_tables(RunInput(run_id="r", owner="o"), clients, databases.opener())


def test_patterns_and_shards_become_map_items(aws: dict[str, Any], tmp_path: Path) -> None:
    rows = source_rows(1000)
    for name in ("orders", "orders_archive", "customers"):
        make_sqlite(tmp_path / f"{name}.db", rows, table=name)
    # One SQLite file holding three tables.
    import sqlite3

    db = tmp_path / "all.db"
    conn = sqlite3.connect(db)
    with conn:
        for name in ("orders", "orders_archive", "customers"):
            conn.execute(f'CREATE TABLE "{name}" (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, note TEXT)')
            conn.executemany(f'INSERT INTO "{name}" VALUES (?, ?, ?)', rows.values())
        conn.execute('CREATE TABLE "codes" (code TEXT PRIMARY KEY, v INTEGER)')
        conn.executemany('INSERT INTO "codes" VALUES (?, ?)', [(f"c{i:04d}", i) for i in range(400)])
    conn.close()
    lam = InProcessLambda({"src": f"sqlite:///{db}", "dst": f"sqlite:///{db}"})
    check = {
        "source": "src",
        "targets": ["dst"],
        "tables": [{"pattern": "orders*", "shards": 4}, "customers", {"table": "codes", "shards": 3}],
    }
    result = listing.list_tables(RunInput(run_id="r", owner="o", check=check), aws["clients"], lam.opener())
    ids = [i.item_id for i in result.items]
    assert ids[:4] == ["orders#1/4", "orders#2/4", "orders#3/4", "orders#4/4"]
    assert ids[4:8] == [f"orders_archive#{n}/4" for n in range(1, 5)] and ids[8] == "customers"
    shards = [i.options for i in result.items if i.table == "orders"]
    assert [(o.lo, o.hi) for o in shards] == [(None, [251]), ([251], [501]), ([501], [751]), ([751], None)]
    codes = [(i.options.lo, i.options.hi) for i in result.items if i.table == "codes"]
    assert codes == [(None, ["c0134"]), (["c0134"], ["c0268"]), (["c0268"], None)]
    lam.close()


def _result(item_id: str, missing: int, keys: list[list[int]]) -> TableResult:
    return TableResult.model_validate(
        {
            "run_id": "run-1",
            "item_id": item_id,
            "table": item_id.split("#")[0],
            "source": "src",
            "targets": ["dst"],
            "status": "done",
            "source_rows": 100,
            "targets_summary": [
                {
                    "database": "dst",
                    "rows_compared": 100,
                    "missing": missing,
                    "sample": {"missing": keys} if keys else {},
                }
            ],
        }
    )


def test_report_to_s3_sns_metrics_and_the_repair_queue(aws: dict[str, Any], databases: InProcessLambda) -> None:
    clients, settings, store = aws["clients"], aws["settings"], aws["store"]
    # A finished table run with 1,200 missing keys in its checkpoint (more than one message holds).
    item = _item()
    state = None
    with Differ(
        "orders",
        lambda: open_connector(databases.databases["src"]),
        [lambda: open_connector(databases.databases["dst"])],
    ) as d:
        state = d.initial_state()
    state.done = True
    state.targets[0].missing = [[k] for k in range(1200)]
    store.save(store.acquire("run-1", item.item_id, "exec-1", 60), state, 60)
    metrics: list[tuple[str, str, float]] = []
    run = ReportInput(
        run_id="run-1",
        results=[
            _result("orders", 1200, [[0], [1]]),
            _result("customers", 0, []),
            FailedItem(
                item_id="audit",
                table="audit",
                error="SchemaError",
                cause=json.dumps({"errorMessage": "unknown table 'audit'"}),
            ),
        ],
    )
    result = reporting.report(run, settings, clients, store, lambda t, n, v: metrics.append((t, n, v)))
    assert result.status == "failed"
    assert {t.table: t.status for t in result.tables} == {
        "audit": "failed",
        "customers": "identical",
        "orders": "different",
    }
    assert result.tables[0].error == "SchemaError: unknown table 'audit'"
    key = result.report_uri.removeprefix("s3://results/")
    assert key.startswith("reports/run-1/")
    stored = json.loads(clients.s3.get_object(Bucket="results", Key=key)["Body"].read())
    assert stored["status"] == "failed" and stored["report_uri"] == result.report_uri
    assert ("orders", "Missing", 1200.0) in metrics and ("audit", "Failed", 1.0) in metrics
    assert ("customers", "RowsCompared", 100.0) in metrics
    assert result.keys_queued == 1200
    messages = clients.sqs.receive_message(QueueUrl=settings.queue_url, MaxNumberOfMessages=10)["Messages"]
    bodies = [json.loads(m["Body"]) for m in messages]
    assert sorted(len(b["keys"]) for b in bodies) == [200, 500, 500]
    assert {(b["table"], b["target"], b["kind"]) for b in bodies} == {("orders", "dst", "missing")}
    alert = clients.sqs.receive_message(QueueUrl=aws["inbox"])["Messages"][0]
    text = json.loads(alert["Body"])["Message"]
    assert "audit: FAILED: SchemaError: unknown table 'audit'" in text
    assert "orders -> dst: 1200 missing, 0 extra, 0 differing of 100 rows" in text


def test_identical_run_sends_no_alert(aws: dict[str, Any]) -> None:
    run = ReportInput(run_id="run-2", results=[_result("orders", 0, [])])
    result = reporting.report(run, aws["settings"], aws["clients"], aws["store"])
    assert result.status == "identical" and result.keys_queued == 0
    assert "Messages" not in aws["clients"].sqs.receive_message(QueueUrl=aws["inbox"])


def test_check_definitions_and_the_engine_share_one_set_of_option_limits() -> None:
    """A table option of a check definition is the engine's option of the same name, with the
    same constraints (the CLI validates into the engine's model): their limits cannot disagree."""
    from tablesync.app.checks import RepairSpec, TableOptions
    from tablesync.models import RepairOptions

    def constraints(model: Any, name: str) -> list[str]:
        """A field's constraints, whether the field is optional (X | None) or not."""
        info = model.model_fields[name]
        found = list(info.metadata)
        for arg in typing.get_args(info.annotation):
            found += list(getattr(arg, "__metadata__", ()))
        flat = [c for m in found for c in (m.metadata if isinstance(m, FieldInfo) else [m])]
        return sorted(repr(c) for c in flat)

    shared = set(TableOptions.model_fields) & set(DiffOptions.model_fields)
    assert {"chunk_size", "max_chunk_size", "bisection_factor", "bisection_threshold", "where"} <= shared
    for name in shared:
        assert constraints(TableOptions, name) == constraints(DiffOptions, name), name
    assert constraints(RepairSpec, "write_batch") == constraints(RepairOptions, "write_batch")
