"""Repair where DynamoDB is on one side or both, for the CLI and the repair Lambda alike:

- a DynamoDB target is written by conditional writes (repair.py), from a DynamoDB source's items
  or a SQL source's rows as the items that hold their values (sql_items.SqlItems);
- a SQL target from a DynamoDB source goes through the SQL repair (tablesync.repair: the target's
  rows locked or read first, then the source read, then written), the source's items read as rows
  of the target's columns (sql_rows.ItemRows).

Either way the source is read after the target, strongly consistent, and only ever read."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..models import AuditRecord, Key, RepairFailure, RepairOptions, RepairResult, TablePlan
from ..repair import repair_target
from .connector import DynamoConnector
from .repair import repair_items
from .sql_items import SqlItems
from .sql_rows import ItemRows


def repair_mixed(
    source: Any,
    target: Any,
    source_plan: TablePlan,
    target_plan: TablePlan,
    keys: Sequence[Key],
    options: RepairOptions,
    *,
    table: str,
    target_label: str,
    audit: Callable[[AuditRecord], None] | None = None,
    max_outage: float = 0.0,
) -> RepairResult:
    """`target`: a DynamoConnector allowed to write, or a SQL repair target; `source`: a
    DynamoConnector or a SQL connector."""
    if isinstance(target, DynamoConnector):
        items = source if isinstance(source, DynamoConnector) else SqlItems(source)
        return repair_items(
            items,
            target,
            source_plan,
            target_plan,
            keys,
            options,
            table=table,
            target_label=target_label,
            audit=audit,
        )
    assert isinstance(source, DynamoConnector), "a SQL source and a SQL target are repaired by tablesync.repair"
    # A key the table's key columns cannot hold (1.5 for an integer, a uuid spelt in capitals) has
    # no row to write: refused, as the diff found it missing there.
    held = [key for key in keys if SqlItems.holds_key(target_plan, key)]
    result = repair_target(
        ItemRows(source, source_plan),
        target,
        target_plan,  # the source's items are read as rows of the target's columns
        target_plan,
        held,
        options,
        table=table,
        target_label=target_label,
        audit=audit,
        max_outage=max_outage,
    )
    for key in keys:
        if not SqlItems.holds_key(target_plan, key):
            reason = "the table's key columns cannot hold this key"
            result.failed.append(RepairFailure(key=key, action="insert", reason=reason))
    return result
