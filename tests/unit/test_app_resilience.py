"""The app through outages, damaged checkpoints and repeated executions (moto, real SQLite through the
real connector transport):

- a database away mid-check: the state is saved, the answer is "waiting" (the state machine waits
  and calls again), and the table finishes exact once the database is back; away longer than the
  outage budget, the table fails with the reason and its state is kept for a resume;
- a checkpoint whose done flag disagrees with its state, whose state is damaged, or that disappears
  mid-run ends the table with one clear line: never a loop, never a silent restart; a table that
  never finishes is stopped by the invocation guard;
- a failed execution's leases do not block a resume; a running one's do, saying what to do;
- a run reported twice queues its keys and alerts once; keys that cannot be queued are said."""

# The fixtures come from test_app_service (imported by name, which pytest resolves).
# ruff: noqa: F811

from __future__ import annotations

import gzip
import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from app_support import InProcessLambda
from tablesync.app import checking, environment, reporting
from tablesync.app.events import ChecksumResult, FailedItem, ReportInput, TableItem, TableResult
from tablesync.cli import main
from tablesync.errors import (
    CheckpointDamagedError,
    DatabaseUnavailableError,
    KeyColumnError,
    LeaseHeldError,
    OutageError,
)
from tablesync.models import DiffOptions
from test_app_service import _item, aws, databases  # noqa: F401 - the fixtures

ONE_ROUND = {"chunk_size": 100, "max_chunk_size": 200, "bisection_threshold": 8, "bisection_factor": 4}


def _step(aws: dict[str, Any], lam: InProcessLambda, item: TableItem, **kwargs: Any) -> ChecksumResult:
    """One ChecksumTable invocation with no time beyond its safety margin: one round, saved."""
    settings = aws["settings"]
    return checking.checksum_table(item, settings.safety_margin_seconds, settings, aws["store"], lam.opener(), **kwargs)


def test_a_database_away_mid_check_is_waited_for(aws: dict[str, Any], databases: InProcessLambda) -> None:
    item = _item(**ONE_ROUND)
    result = _step(aws, databases, item)
    assert result.status == "continue"
    done_before = aws["store"].load("run-1", "orders").state.source_rows
    databases.fail = lambda function, op: DatabaseUnavailableError("cannot reach src: Connection refused")
    waiting = _step(aws, databases, result)
    assert waiting.status == "waiting" and waiting.wait_seconds == 30
    assert waiting.outage and "Connection refused" in waiting.outage and waiting.outage_since is not None
    assert aws["store"].load("run-1", "orders").state.source_rows == done_before  # nothing lost
    again = _step(aws, databases, waiting)  # still away: the outage keeps its start
    assert again.status == "waiting" and again.outage_since == waiting.outage_since
    databases.fail = lambda function, op: None  # back
    while again.status != "done":
        again = _step(aws, databases, again)
        assert again.outage_since is None
    summary = again.targets_summary[0]
    assert (summary.rows_compared, summary.missing, summary.extra, summary.differing) == (3000, 2, 1, 2)


def test_an_outage_longer_than_the_budget_fails_the_table_and_keeps_its_state(
    aws: dict[str, Any], databases: InProcessLambda
) -> None:
    aws["settings"].outage_budget_seconds = 0.0
    result = _step(aws, databases, _step(aws, databases, _item(**ONE_ROUND)))
    databases.fail = lambda function, op: DatabaseUnavailableError("cannot reach dst: Connection refused")
    with pytest.raises(OutageError, match=r"stayed away .* Connection refused; the table's progress is kept"):
        _step(aws, databases, result)
    rows = aws["store"].load("run-1", "orders").state.source_rows
    assert rows > 0
    databases.fail = lambda function, op: None
    resumed = _step(aws, databases, result.model_copy(update={"owner": "exec-2"}), owner_running=lambda o: False)
    assert resumed.status in ("continue", "done") and aws["store"].load("run-1", "orders").state.source_rows > rows


def _corrupt(aws: dict[str, Any], **attributes: Any) -> None:
    aws["clients"].dynamodb.update_item(
        TableName="checkpoints",
        Key={"run_id": {"S": "run-1"}, "item_id": {"S": "orders"}},
        UpdateExpression="SET " + ", ".join(f"#{k} = :{k}" for k in attributes),
        ExpressionAttributeNames={f"#{k}": k for k in attributes},
        ExpressionAttributeValues={f":{k}": v for k, v in attributes.items()},
    )


@pytest.mark.parametrize(
    ("attributes", "why"),
    [
        ({"done": {"BOOL": True}}, "its done flag (True) disagrees with its state (False)"),
        ({"state": {"B": b"not gzip"}}, "its state cannot be read"),
        ({"state": {"B": gzip.compress(b'{"no": "state"}')}}, "its state does not match its checksum"),
    ],
)
def test_a_damaged_checkpoint_ends_the_table_with_one_line(
    aws: dict[str, Any], databases: InProcessLambda, attributes: dict[str, Any], why: str
) -> None:
    result = _step(aws, databases, _item(**ONE_ROUND))
    assert result.status == "continue"
    _corrupt(aws, **attributes)
    with pytest.raises(CheckpointDamagedError) as raised:
        _step(aws, databases, result)
    message = str(raised.value)
    assert message == f"checkpoint for orders (run run-1) is damaged: {why}; start a new run id to check it again"


def test_a_checkpoint_gone_mid_run_is_said_not_restarted(aws: dict[str, Any], databases: InProcessLambda) -> None:
    result = _step(aws, databases, _item(**ONE_ROUND))
    aws["clients"].dynamodb.delete_item(
        TableName="checkpoints", Key={"run_id": {"S": "run-1"}, "item_id": {"S": "orders"}}
    )
    with pytest.raises(CheckpointDamagedError, match="disappeared while the table was being checked"):
        _step(aws, databases, result)


def test_a_table_that_never_finishes_is_stopped_by_the_invocation_guard(
    aws: dict[str, Any], databases: InProcessLambda
) -> None:
    aws["settings"].max_invocations = 3
    result = _step(aws, databases, _item(**ONE_ROUND))
    result = _step(aws, databases, result)
    result = _step(aws, databases, result)
    with pytest.raises(CheckpointDamagedError, match="not done after 3 invocations"):
        _step(aws, databases, result)


def test_a_failed_executions_lease_is_taken_over(aws: dict[str, Any], databases: InProcessLambda) -> None:
    failed = "arn:aws:states:us-east-1:123456789012:execution:tablesync-runs:first"
    result = _step(aws, databases, _item(owner=failed, **ONE_ROUND))
    second = result.model_copy(update={"owner": "arn:aws:states:us-east-1:123456789012:execution:tablesync-runs:2nd"})
    waiting = _step(aws, databases, second, owner_running=lambda owner: True)
    assert waiting.status == "waiting" and waiting.outage is not None
    assert re.search(r"which is still running .* stop it and start again with the same run id", waiting.outage)
    resumed = _step(aws, databases, second, owner_running=lambda owner: owner != failed)
    assert resumed.status == "continue" and resumed.invocations == 2  # resumed, not restarted


def test_execution_running_asks_step_functions(aws: dict[str, Any]) -> None:
    sfn = aws["clients"].stepfunctions
    role = "arn:aws:iam::123456789012:role/sfn"
    machine = sfn.create_state_machine(
        name="tablesync-runs", definition=json.dumps({"StartAt": "W", "States": {"W": {"Type": "Pass", "End": True}}}),
        roleArn=role,
    )["stateMachineArn"]  # fmt: skip
    execution = sfn.start_execution(stateMachineArn=machine, name="one")["executionArn"]
    running = environment.execution_running(aws["clients"])
    sfn.stop_execution(executionArn=execution)
    assert running(execution) is False
    assert running(execution.replace(":one", ":never-started")) is False
    assert running("exec-1") is True  # not an execution: the lease stands


def _done(aws: dict[str, Any], lam: InProcessLambda) -> TableResult:
    result = _step(aws, lam, _item())
    while result.status != "done":
        result = _step(aws, lam, result)
    return TableResult.model_validate(result.model_dump(include=set(TableResult.model_fields)))


def _drain(clients: Any, queue: str) -> list[str]:
    bodies = []
    while messages := clients.sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10).get("Messages", []):
        for message in messages:
            bodies.append(message["Body"])
            clients.sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
    return bodies


def test_a_run_reported_twice_queues_and_alerts_once(aws: dict[str, Any], databases: InProcessLambda) -> None:
    done = _done(aws, databases)
    settings, clients = aws["settings"], aws["clients"]
    first = reporting.report(
        ReportInput(run_id="run-1", owner="exec-1", results=[done]), settings, clients, aws["store"]
    )
    second = reporting.report(
        ReportInput(run_id="run-1", owner="exec-2", results=[done]), settings, clients, aws["store"]
    )
    assert first.keys_queued == 5 and second.keys_queued == 0
    assert len(_drain(clients, settings.queue_url)) == 3  # missing, extra, differing: once
    assert len(_drain(clients, aws["inbox"])) == 1  # one alert
    assert first.report_uri != second.report_uri  # each execution's report kept


def test_keys_that_cannot_be_queued_are_said(aws: dict[str, Any], databases: InProcessLambda) -> None:
    done = _done(aws, databases)
    aws["clients"].dynamodb.delete_item(
        TableName="checkpoints", Key={"run_id": {"S": "run-1"}, "item_id": {"S": "orders"}}
    )
    result = reporting.report(
        ReportInput(run_id="run-1", results=[done]), aws["settings"], aws["clients"], aws["store"]
    )
    (table,) = result.tables
    assert result.status == "failed" and table.status == "failed"
    assert table.error and "its differing keys were not queued for repair" in table.error


def test_a_table_held_by_a_running_execution_is_waited_for_then_answered(
    aws: dict[str, Any], databases: InProcessLambda
) -> None:
    first = _step(aws, databases, _item(owner="exec-A", **ONE_ROUND))
    assert first.status == "continue"
    waiting = _step(aws, databases, _item(owner="exec-B", **ONE_ROUND), owner_running=lambda owner: True)
    # One Wait until the holder's lease would run out (its invocation, and the grace), not a poll.
    assert waiting.status == "waiting" and waiting.held_since is not None
    assert waiting.wait_seconds == int(aws["settings"].safety_margin_seconds + aws["settings"].lease_grace_seconds)
    assert waiting.outage and "is being checked by exec-A" in waiting.outage
    result = first
    while result.status != "done":
        result = _step(aws, databases, result)
    answered = _step(aws, databases, waiting, owner_running=lambda owner: True)
    assert answered.status == "done" and answered.targets_summary == result.targets_summary
    assert answered.held_since is None
    # Answered without taking the lease: the holder can still recheck at once.
    assert aws["store"].load("run-1", "orders").owner == "exec-A"


def test_waiting_for_another_execution_is_bounded(aws: dict[str, Any], databases: InProcessLambda) -> None:
    _step(aws, databases, _item(owner="exec-A", **ONE_ROUND))
    aws["settings"].lease_wait_budget_seconds = 0.0
    with pytest.raises(LeaseHeldError, match=r"being checked by exec-A.*LeaseWaitBudgetSeconds 0"):
        _step(aws, databases, _item(owner="exec-B", **ONE_ROUND), owner_running=lambda owner: True)


def _recheck(aws: dict[str, Any], lam: InProcessLambda, item: ChecksumResult, **kwargs: Any) -> ChecksumResult:
    settings = aws["settings"]
    return checking.recheck_table(item, settings.safety_margin_seconds, settings, aws["store"], lam.opener(), **kwargs)


def test_a_recheck_waits_out_an_outage_and_another_execution(aws: dict[str, Any], databases: InProcessLambda) -> None:
    result = _step(aws, databases, _item().model_copy(update={"recheck_after": 5}))
    while result.status != "done":
        result = _step(aws, databases, result)
    assert result.recheck_pending
    databases.fail = lambda function, op: DatabaseUnavailableError("cannot reach dst: Connection refused")
    away = _recheck(aws, databases, result)
    assert away.status == "waiting" and away.recheck_pending and away.outage_since is not None
    assert away.targets_summary == result.targets_summary  # its findings kept for the next call
    databases.fail = lambda function, op: None
    other = _recheck(aws, databases, away.model_copy(update={"owner": "exec-2"}), owner_running=lambda o: True)
    assert other.status == "waiting" and other.outage and "being checked by exec-1" in other.outage
    rechecked = _recheck(aws, databases, away)
    assert rechecked.status == "done" and rechecked.rechecked and not rechecked.recheck_pending
    assert rechecked.outage_since is None
    summary = rechecked.targets_summary[0]
    assert (summary.missing, summary.extra, summary.differing) == (2, 1, 2)
    aws["settings"].outage_budget_seconds = 0.0
    databases.fail = lambda function, op: DatabaseUnavailableError("cannot reach dst: Connection refused")
    with pytest.raises(OutageError, match="stayed away"):
        _recheck(aws, databases, result)


def test_invocations_count_invocations_not_saves(aws: dict[str, Any], databases: InProcessLambda) -> None:
    settings = aws["settings"]
    settings.save_every_seconds = 0.0  # a save after every step
    result = checking.checksum_table(
        _item(chunk_size=100, max_chunk_size=100), settings.safety_margin_seconds + 0.5, settings, aws["store"],
        databases.opener(),
    )  # fmt: skip
    assert aws["store"].load("run-1", "orders").version > 1  # saved more than once...
    assert result.invocations == 1  # ...in one invocation


def test_a_checkpoint_whose_state_vanished_is_damaged_not_restarted(
    aws: dict[str, Any], databases: InProcessLambda
) -> None:
    result = _step(aws, databases, _item(**ONE_ROUND))
    aws["clients"].dynamodb.update_item(
        TableName="checkpoints",
        Key={"run_id": {"S": "run-1"}, "item_id": {"S": "orders"}},
        UpdateExpression="REMOVE #s",
        ExpressionAttributeNames={"#s": "state"},
    )
    with pytest.raises(CheckpointDamagedError, match="is damaged: its state is gone"):
        _step(aws, databases, result)


class Refusing:
    """An AWS client (moto's) whose `method` fails its first call, as a throttled or unreachable
    service does; every other call goes through."""

    def __init__(self, client: Any, method: str) -> None:
        self.client, self.method, self.failures = client, method, 1

    def __getattr__(self, name: str) -> Any:
        call = getattr(self.client, name)
        if name != self.method:
            return call

        def refused_once(**kwargs: Any) -> Any:
            if self.failures:
                self.failures -= 1
                raise ConnectionError(f"{self.method} could not reach its service")
            return call(**kwargs)

        return refused_once


def test_keys_a_failed_report_could_not_queue_are_queued_by_the_next(
    aws: dict[str, Any], databases: InProcessLambda
) -> None:
    done = _done(aws, databases)
    settings, clients = aws["settings"], aws["clients"]
    real = clients.sqs
    clients.sqs = Refusing(real, "send_message_batch")
    with pytest.raises(ConnectionError):
        reporting.report(ReportInput(run_id="run-1", owner="exec-1", results=[done]), settings, clients, aws["store"])
    again = reporting.report(
        ReportInput(run_id="run-1", owner="exec-2", results=[done]), settings, clients, aws["store"]
    )
    assert again.keys_queued == 5  # not lost
    clients.sqs = real
    assert len(_drain(clients, settings.queue_url)) == 3


def test_an_alert_that_could_not_be_sent_is_sent_by_the_next_report(
    aws: dict[str, Any], databases: InProcessLambda
) -> None:
    done = _done(aws, databases)
    settings, clients = aws["settings"], aws["clients"]
    real = clients.sns
    clients.sns = Refusing(real, "publish")
    with pytest.raises(ConnectionError):
        reporting.report(ReportInput(run_id="run-1", owner="exec-1", results=[done]), settings, clients, aws["store"])
    reporting.report(ReportInput(run_id="run-1", owner="exec-2", results=[done]), settings, clients, aws["store"])
    reporting.report(ReportInput(run_id="run-1", owner="exec-3", results=[done]), settings, clients, aws["store"])
    clients.sns = real
    assert len(_drain(clients, aws["inbox"])) == 1


def test_the_same_failure_reported_twice_is_alerted_once(aws: dict[str, Any]) -> None:
    def failed(seconds: int, execution: str) -> FailedItem:
        cause = json.dumps({"errorMessage": f"table orders held by {execution} (its lease runs out in {seconds} s)"})
        return FailedItem(item_id="orders", table="orders", error="LeaseHeldError", cause=cause)

    settings, clients = aws["settings"], aws["clients"]
    for run in (failed(900, "exec-1"), failed(12, "exec-2")):
        reporting.report(ReportInput(run_id="run-1", owner="x", results=[run]), settings, clients, aws["store"])
    assert len(_drain(clients, aws["inbox"])) == 1


@pytest.mark.parametrize("rows", [[("tenant-secret", 1), ("tenant-secret", 2)], [(None, 1), ("b", 2)]])
def test_a_key_error_leaves_the_lambda_without_the_tables_values(
    aws: dict[str, Any], tmp_path: Path, rows: list[tuple[str | None, int]], capsys: pytest.CaptureFixture[str]
) -> None:
    """A duplicate or NULL key on the source: the CLI names an example key to its user; the app's
    error (its log, its trace, the report's cause) says the same without it."""
    paths = {}
    for name in ("src", "dst"):
        paths[name] = tmp_path / f"{name}-keys.db"
        with sqlite3.connect(paths[name]) as conn:
            conn.execute("CREATE TABLE accounts (code TEXT, n INTEGER)")
            conn.executemany("INSERT INTO accounts VALUES (?, ?)", rows)
    lam = InProcessLambda({name: f"sqlite:///{path}" for name, path in paths.items()})
    item = _item().model_copy(update={"table": "accounts", "item_id": "accounts", "options": DiffOptions(key=["code"])})
    try:
        with pytest.raises(KeyColumnError) as raised:
            _step(aws, lam, item)
    finally:
        lam.close()
    assert "tenant-secret" not in str(raised.value) and "None" not in str(raised.value)
    assert "key code" in str(raised.value)
    urls = [f"sqlite:///{paths['src']}", f"sqlite:///{paths['dst']}"]
    assert main(["diff", *urls, "--table", "accounts", "--key", "code"]) == 2
    shown = capsys.readouterr().err
    # The CLI names the duplicate key to its user.
    assert "key code" in shown and ("tenant-secret" in shown) == (rows[0][0] == "tenant-secret")
