"""Repair: the keys of one queue message repaired on their target through its writer Lambda, as the
stored check definition allows, every write audited; what changed under the repair is checked
again, what the target refuses is parked in the dead-letter queue and alerted."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from ..connectors import Connector
from ..dynamodb.connector import DynamoConnector
from ..dynamodb.mixed import repair_mixed
from ..errors import InputError, TablesyncError, TransientDatabaseError
from ..models import (
    AuditRecord,
    DiffOptions,
    Key,
    RepairFailure,
    RepairOptions,
    RepairResult,
    RowWrite,
    TablePlan,
    WriteOutcome,
)
from ..plans import describe_plans
from ..repair import repair_target
from .checks import TableSpec, describe_validation_error, parse_definition
from .environment import ConnectorOpener, diff_options, repair_options
from .events import RepairMessage, RunInput
from .listing import load_definition
from .settings import RepairSettings
from .stores import Clients, DefinitionSource, ObjectStore, RepairStores, repair_stores

REVERIFY_ROUNDS = 3  # keys that changed under a repair are checked again this many times


REVERIFY_DELAY_SECONDS = 60  # after this long, doubling each round


def repair_message(
    body: str,
    settings: RepairSettings,
    clients: Clients | None,
    connectors: ConnectorOpener,
    writers: ConnectorOpener,
    *,
    stores: RepairStores | None = None,
) -> RepairResult:
    """Repairs the keys of one queue message on its target (tablesync.repair: each key read again
    on both sides, written only if it still differs, every write audited to S3).

    The message only refers: what may be written comes from the stored check definition it names
    (the table's `repair` settings, its key and columns, the source and targets it names), and the
    writer Lambda checks each write against the deployment's allow-list once more. A message whose
    run did not use a stored definition is acknowledged and nothing is written.

    A transient error (a lost connection, throttling: TransientDatabaseError) is raised: the
    message goes back to the queue and is retried, and after the queue's maxReceiveCount it
    moves to the dead-letter queue. Rows the target refuses for good (a constraint, a value out of
    range), and messages that can never succeed (bad JSON, a dropped table, a message that does
    not match its definition), go to the dead-letter queue at once with the keys and the reason,
    and the alert topic hears of them.

    What it reads and writes besides the databases is `stores` (by default the settings' audit
    bucket, topic and queues, and the stored definitions, through the clients)."""
    stores = stores or repair_stores(settings, clients)
    try:
        message = RepairMessage.model_validate_json(body)
    except ValidationError as exc:
        _dead_letter(stores, body, f"not a repair message: {describe_validation_error(exc)}")
        return RepairResult(url="")
    records: list[AuditRecord] = []
    try:
        spec = _authorised_spec(message, stores.definitions)
        repair = repair_options(spec) if spec is not None else None
        if repair is None:
            # Not a table the stored definition repairs: its keys are for other consumers.
            return RepairResult(url=message.target, not_enabled={message.kind: len(message.keys)})
        audit = stores.audit
        if audit is None:
            raise InputError("AUDIT_BUCKET is not set: nothing is written without its audit trail")
        options = diff_options(spec)  # type: ignore[arg-type]
        source = connectors(message.source)
        reader = connectors(message.target)
        if isinstance(reader, DynamoConnector) or isinstance(source, DynamoConnector):
            result = _repair_items(message, source, reader, writers, options, repair, records)
        else:
            result = _repair_rows(message, source, reader, writers, options, repair, records)
    except TransientDatabaseError:
        raise
    except TablesyncError as exc:
        failures = [{"key": k, "action": "repair", "reason": str(exc)} for k in message.keys]
        parked = message.model_copy(update={"failures": failures})
        _dead_letter(stores, parked.model_dump_json(), str(exc))
        _alert(stores, message, f"{len(message.keys)} key(s) could not be repaired: {exc}")
        return RepairResult(
            url=message.target, failed=[RepairFailure(key=k, action="repair", reason=str(exc)) for k in message.keys]
        )
    _save_audit(audit, message, records)
    return _settled(stores, message, result)


def _settled(stores: RepairStores, message: RepairMessage, result: RepairResult) -> RepairResult:
    """After the writes: keys that changed under them go back to the queue, refused ones to the
    dead-letter queue, with an alert."""
    if result.changed_keys:
        _check_again(stores, message, result)
    if result.failed:
        failed_keys = [f.key for f in result.failed]
        failures = [f.model_dump(mode="json") for f in result.failed]
        retry = message.model_copy(update={"keys": failed_keys, "failures": failures})
        _dead_letter(stores, retry.model_dump_json(), result.failed[0].reason)
    if result.failed or message.failures:
        _alert(stores, message, _repair_summary(message, result))
    return result


def _repair_rows(
    message: RepairMessage,
    source: Connector,
    reader: Connector,
    writers: ConnectorOpener,
    options: DiffOptions,
    repair: RepairOptions,
    records: list[AuditRecord],
) -> RepairResult:
    """A SQL target: read through its connector, written through its writer Lambda (repair.py)."""
    target = ReadWriteTarget(reader, writers(message.target))
    try:
        plans = describe_plans(
            message.table,
            source,
            [reader],
            DiffOptions(key=options.key, columns=options.columns, ignore=options.ignore),
            [message.target],
        )
        return repair_target(
            source,
            target,
            plans.source,
            plans.targets[0],
            message.keys,
            repair,
            table=message.table,
            target_label=message.target,
            audit=records.append,
        )
    finally:
        source.close()
        target.close()


def _repair_items(
    message: RepairMessage,
    source: Connector,
    reader: Connector,
    writers: ConnectorOpener,
    options: DiffOptions,
    repair: RepairOptions,
    records: list[AuditRecord],
) -> RepairResult:
    """DynamoDB on one side or both (dynamodb/mixed.py): a DynamoDB target is written
    conditionally by this function's own role; a SQL target through its writer Lambda."""
    target: Any = None
    try:
        plans = describe_plans(message.table, source, [reader], DiffOptions(ignore=options.ignore), [message.target])
        if isinstance(reader, DynamoConnector):
            target = reader.for_writing()
        else:
            target = ReadWriteTarget(reader, writers(message.target))
        return repair_mixed(
            source,
            target,
            plans.source,
            plans.targets[0],
            message.keys,
            repair,
            table=message.table,
            target_label=message.target,
            audit=records.append,
        )
    finally:
        source.close()
        (target or reader).close()


def _check_again(stores: RepairStores, message: RepairMessage, result: RepairResult) -> None:
    """Keys whose rows changed under the repair (the target since it was read: left alone; or the
    source while it was written: written, but maybe older than the source now) are sent back to
    the queue, later each time, to be read and decided again: a repair through a connector Lambda
    cannot lock the target while it reads the source, so it proves its writes after the fact and
    never leaves an unproven one. Keys that keep changing are parked, with an alert."""
    keys = result.changed_keys
    if message.recheck < REVERIFY_ROUNDS and stores.keys is not None:
        again = message.model_copy(update={"keys": keys, "failures": [], "recheck": message.recheck + 1})
        delay = min(900, REVERIFY_DELAY_SECONDS * 2**message.recheck)  # SQS delays a message 15 minutes at most
        stores.keys.send(again.model_dump_json(exclude={"failures"}), delay)
        return
    reason = f"the rows kept changing under the repair ({message.recheck + 1} rounds): checked no further"
    failures = [{"key": k, "action": "repair", "reason": reason} for k in keys]
    parked = message.model_copy(update={"keys": keys, "failures": failures})
    _dead_letter(stores, parked.model_dump_json(), reason)
    _alert(stores, message, f"{len(keys)} key(s) of {message.table} on {message.target}: {reason}")


def _authorised_spec(message: RepairMessage, definitions: DefinitionSource) -> TableSpec | None:
    """The stored definition's entry for the message's table, once the message is checked against
    it; None when the run's definition was not stored (nothing is then written)."""
    if not message.check_ssm:
        return None
    run = RunInput(run_id=message.run_id, owner="repair", check_ssm=message.check_ssm)
    definition = parse_definition(load_definition(run, definitions))
    spec = definition.spec_for(message.table)
    if spec is None:
        raise InputError(f"table {message.table} is not in the check definition {message.check_ssm}")
    if message.source != definition.source or message.target not in definition.targets:
        raise InputError(
            f"the message names source {message.source} and target {message.target}, but the check definition "
            f"{message.check_ssm} has source {definition.source} and targets {', '.join(definition.targets)}"
        )
    return spec


class ReadWriteTarget:
    """A repair target reached through two Lambdas: its connector reads (with the read-only user),
    its writer writes (with the writer user); only the repair function may invoke the writer."""

    def __init__(self, reader: Connector, writer: Connector) -> None:
        self.reader, self.writer = reader, writer

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        return self.reader.fetch_rows(plan, keys)

    def write_rows(self, plan: TablePlan, writes: Sequence[RowWrite], dry_run: bool = False) -> WriteOutcome:
        return self.writer.write_rows(plan, writes, dry_run)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


def _repair_summary(message: RepairMessage, result: RepairResult) -> str:
    head = "re-drive" if message.failures else "repair"
    lines = [
        f"tablesync {head} of {message.table} on {message.target} (run {message.run_id}): "
        f"{result.inserted} inserted, {result.updated} updated, {result.deleted} deleted, "
        f"{result.in_sync} already in sync, {result.changed + result.source_changed} changed under the repair "
        f"(left for the next check), {len(result.failed)} failed"
    ]
    for failure in result.failed[:20]:
        lines.append(f"  {failure.action} {json.dumps(failure.key)}: {failure.reason}")
    if result.failed:
        lines.append("The failing keys are in the dead-letter queue; fix the cause, then re-drive it (README).")
    return "\n".join(lines)


def _dead_letter(stores: RepairStores, body: str, reason: str) -> None:
    """Parks a message in the dead-letter queue, with its reason (the body lists each key's own)."""
    if stores.dead_letters is None:
        raise TablesyncError(f"cannot park a failed repair (no dead-letter queue): {reason}")
    stores.dead_letters.park(body, reason)


def _alert(stores: RepairStores, message: RepairMessage, text: str) -> None:
    if stores.alerts is not None:
        stores.alerts.publish(f"tablesync repair of {message.table}", text)


def _save_audit(audit: ObjectStore, message: RepairMessage, records: list[AuditRecord]) -> None:
    """The audit trail of one message's writes: JSON lines in the audit bucket (versioned, locked
    against deletion; no role of the stack may erase them)."""
    if not records:
        return
    stamp = records[0].time.replace(":", "").replace("-", "")
    key = f"audit/{message.run_id}/{message.table}/{message.target}/{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
    body = "".join(r.model_dump_json() + "\n" for r in records)
    audit.put(key, body.encode(), "application/x-ndjson")
