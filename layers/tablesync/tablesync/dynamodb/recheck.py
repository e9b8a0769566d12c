"""The recheck of differences found by scan and lookup: each key's item hash read again on both
sides (a SQL side answering as a store of items), and only the keys that still differ kept, by
their kind now (items still travelling through replication when the diff saw them drop out)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..connectors import Connector
from ..models import DiffKind, Key, TablePlan
from .sql_items import SqlItems

RECHECK_KEYS = 100  # keys read again per lookup (one BatchGetItem)


def recheck_items(
    source: Connector, target: Connector, source_plan: TablePlan, target_plan: TablePlan, keys: Sequence[Key]
) -> dict[DiffKind, list[Key]]:
    src, tgt = _items(source), _items(target)
    out: dict[DiffKind, list[Key]] = {DiffKind.MISSING: [], DiffKind.EXTRA: [], DiffKind.DIFFERING: []}
    for start in range(0, len(keys), RECHECK_KEYS):
        batch = list(keys[start : start + RECHECK_KEYS])
        held_source = {tuple(k): h for k, h in src.lookup_hashes(source_plan, batch)}
        held_target = {tuple(k): h for k, h in tgt.lookup_hashes(target_plan, batch)}
        for key in batch:
            a, b = held_source.get(tuple(key)), held_target.get(tuple(key))
            if a == b:
                continue  # equal now, or gone from both
            kind = DiffKind.MISSING if b is None else DiffKind.EXTRA if a is None else DiffKind.DIFFERING
            out[kind].append(key)
    return out


def _items(side: Connector) -> Any:
    """The side as a store of items: a DynamoDB connector is one; a SQL one answers through SqlItems."""
    return side if hasattr(side, "lookup_hashes") else SqlItems(side)
