"""Repair of DynamoDB targets: the keys a diff found, each read again on both sides (strongly
consistent; the target first, then the source, so that what is written is never older than what
it replaces) and written only if it still differs, conditionally (writer.py): a target item that
changed since it was read is reported `changed` and left alone, never overwritten with an older
source read. Numbers travel as DynamoDB's texts, all 38 digits.

Conditional writes cannot go in BatchWriteItem, and transactions cost twice the write units and
fail whole on one changed item: the writes of a batch are single conditional writes, made by a few
threads at once."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from ..errors import TablesyncError
from ..models import AuditRecord, DiffKind, Key, RepairFailure, RepairOptions, RepairResult, TablePlan
from .connector import DynamoConnector, key_schema
from .values import (
    REPLICATION_PREFIX,
    Item,
    KeySchema,
    canonical_text,
    compared_attributes,
    invalid_attributes,
    item_hash,
)
from .writer import ConditionFailed, ItemWriter

AuditSink = Callable[[AuditRecord], None]
Job = tuple[Key, str, Item | None, Item | None]  # key, action, the source's and the target's item as read
WRITE_THREADS = 8
TARGET_CHANGED = "the target item changed since it was read; left alone"


class ItemSource(Protocol):
    """Where a repair reads the source's items: a DynamoDB table, strongly consistent, or a SQL
    table's rows as the items that hold their values (sql_items.SqlItems)."""

    def get_items(self, plan: TablePlan, keys: Sequence[Key]) -> dict[tuple[Any, ...], Item]: ...


def repair_items(
    source: ItemSource,
    target: DynamoConnector,
    source_plan: TablePlan,
    plan: TablePlan,
    keys: Sequence[Key],
    options: RepairOptions,
    *,
    table: str,
    target_label: str,
    audit: AuditSink | None = None,
) -> RepairResult:
    """Repairs the given keys on one DynamoDB target (`plan`), from a DynamoDB or SQL source."""
    result = RepairResult(url=target_label, dry_run=options.dry_run)
    writer = None if options.dry_run else target.writer()
    schema = key_schema(plan)
    for start in range(0, len(keys), options.write_batch):
        batch = list(keys[start : start + options.write_batch])
        held = target.get_items(plan, batch)  # the target first: the source read is never older
        wanted = source.get_items(source_plan, batch)
        jobs: list[Job] = []
        for key in batch:
            now_source, now_target = wanted.get(tuple(key)), held.get(tuple(key))
            kind = _kind(plan, now_source, now_target)
            if kind is None:
                result.in_sync += 1
                continue
            if not options.allows(kind):
                result.not_enabled[kind] = result.not_enabled.get(kind, 0) + 1
                continue
            action = {DiffKind.MISSING: "insert", DiffKind.DIFFERING: "update", DiffKind.EXTRA: "delete"}[kind]
            unholdable = invalid_attributes(now_source) if now_source is not None and action != "delete" else []
            if unholdable:
                reason = (
                    f"DynamoDB cannot hold the source's value of {', '.join(unholdable)} "
                    "(NaN, infinity, or a value its column type cannot parse)"
                )
                result.failed.append(RepairFailure(key=key, action=action, reason=reason))
                if audit is not None and writer is not None:
                    audit(_record(table, target_label, plan, key, action, "failed", reason, now_source, now_target))
                continue
            if writer is None:
                result.statements.append(_statement(action, plan.table, key, now_source))
            jobs.append((key, action, now_source, now_target))
        outcomes = _write_all(writer, plan, schema, jobs) if writer is not None else {}
        for key, action, now_source, now_target in jobs:
            status, outcome_reason = outcomes.get(tuple(key), ("dry_run", None))
            if status == "applied":
                setattr(result, _counter(action), getattr(result, _counter(action)) + 1)
            elif status == "changed":
                result.changed += 1
                result.changed_keys.append(key)
            elif status == "failed":
                result.failed.append(RepairFailure(key=key, action=action, reason=outcome_reason or ""))
            if audit is not None:
                audit(_record(table, target_label, plan, key, action, status, outcome_reason, now_source, now_target))
    return result


def _write_all(
    writer: ItemWriter, plan: TablePlan, schema: KeySchema, jobs: list[Job]
) -> dict[tuple[Any, ...], tuple[str, str | None]]:
    def write(job: Job) -> tuple[str, str | None]:
        key, action, now_source, now_target = job
        try:
            if action == "delete":
                assert now_target is not None
                writer.delete_if(plan, schema, key, now_target)
            else:
                assert now_source is not None
                writer.put_if(plan, _new_item(plan, now_source, now_target), now_target)
        except ConditionFailed:
            return "changed", TARGET_CHANGED
        except TablesyncError as exc:
            return "failed", str(exc)
        return "applied", None

    with ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="ts-dynamo-write") as pool:
        answers = list(pool.map(write, jobs))
    return {tuple(job[0]): answer for job, answer in zip(jobs, answers, strict=True)}


def _kind(plan: TablePlan, source: Item | None, target: Item | None) -> DiffKind | None:
    if source is None and target is None:
        return None
    if target is None:
        return DiffKind.MISSING
    if source is None:
        return DiffKind.EXTRA
    same = compared_attributes(source, plan.ignore) == compared_attributes(target, plan.ignore)
    return None if same else DiffKind.DIFFERING


def _new_item(plan: TablePlan, source: Item, target: Item | None) -> dict[str, Any]:
    """The source item as the target is to hold it: the global tables' bookkeeping (aws:rep:*) is
    never written (each replica keeps its own; DynamoDB writes it), and an ignored attribute keeps
    the target's value (absent where the target has none)."""
    ignored = set(plan.ignore)
    item = {
        name: value for name, value in source.items() if not name.startswith(REPLICATION_PREFIX) and name not in ignored
    }
    if target is not None:
        item.update({name: value for name, value in target.items() if name in ignored})
    return item


def _counter(action: str) -> str:
    return {"insert": "inserted", "update": "updated", "delete": "deleted"}[action]


def _statement(action: str, table: str, key: Key, source: Item | None) -> str:
    """A dry run's description of a write (the values as canonical DynamoDB JSON)."""
    if action == "delete":
        return f"DeleteItem {table} key {json.dumps(key)} if the item is still as read"
    body = canonical_text(compared_attributes(source or {}, ()))
    verb = "if absent" if action == "insert" else "if the item is still as read"
    return f"PutItem {table} key {json.dumps(key)} {verb}: {body}"


def _record(
    table: str,
    target: str,
    plan: TablePlan,
    key: Key,
    action: str,
    status: str,
    reason: str | None,
    source: Item | None,
    held: Item | None,
) -> AuditRecord:
    def digest(item: Item | None) -> str | None:
        return None if item is None else f"{item_hash(item, plan.ignore):015x}"

    return AuditRecord(
        time=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        table=table,
        target=target,
        key=key,
        action=action,
        status=status,
        source_hash=digest(source),
        target_hash=digest(held),
        reason=reason,
    )
