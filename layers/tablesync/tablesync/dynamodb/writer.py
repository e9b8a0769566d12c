"""Conditional writes to a DynamoDB target, for repair: an item is put or deleted only if the
target still holds exactly what was read (every attribute read equal, every other attribute the
write sets absent), or nothing for a missing item (attribute_not_exists on the key). A failed
condition is `changed`: another writer got there first, and its item is left alone."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from botocore.exceptions import ClientError

from ..errors import DatabaseError
from ..models import Key, TablePlan
from .client import call
from .values import Item, KeySchema

MAX_CONDITION_BYTES = 4096  # DynamoDB's limit on an expression's length


class ConditionFailed(Exception):
    """The target item is no longer what was read."""


def condition(expected: Item | None, key_names: Sequence[str], also_absent: Sequence[str]) -> dict[str, Any]:
    """The ConditionExpression (names and values bound as placeholders, never pasted) that holds
    only while the item is as read: each of its attributes equal, `also_absent` absent; for an
    item read as absent, that it still is."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    parts: list[str] = []
    if expected is None:
        names["#k"] = key_names[0]
        return {"ConditionExpression": "attribute_not_exists(#k)", "ExpressionAttributeNames": names}
    absent = sorted(set(also_absent) - set(expected))
    for i, (name, value) in enumerate(sorted(expected.items())):
        names[f"#a{i}"], values[f":v{i}"] = name, value
        parts.append(f"#a{i} = :v{i}")
    for i, name in enumerate(absent):
        names[f"#n{i}"] = name
        parts.append(f"attribute_not_exists(#n{i})")
    if len(" AND ".join(parts).encode()) > MAX_CONDITION_BYTES:
        raise DatabaseError(
            f"an item of {len(parts)} attributes cannot be written conditionally "
            f"(DynamoDB takes conditions of {MAX_CONDITION_BYTES} bytes at most)"
        )
    request: dict[str, Any] = {"ConditionExpression": " AND ".join(parts), "ExpressionAttributeNames": names}
    if values:
        request["ExpressionAttributeValues"] = values
    return request


class ItemWriter:
    """Writes of one target table through one client, each conditional."""

    def __init__(self, client: Any, label: str, sleep: Callable[[float], None] = time.sleep) -> None:
        self.client = client
        self.label = label
        self.sleep = sleep

    def put_if(self, plan: TablePlan, item: Item, expected: Item | None) -> None:
        """Puts `item` if the target's item is still `expected` (None: still absent)."""
        key_names = [c.name for c in plan.key]
        request = {"TableName": plan.table, "Item": dict(item), **condition(expected, key_names, list(item))}
        self._write(self.client.put_item, request)

    def delete_if(self, plan: TablePlan, schema: KeySchema, key: Key, expected: Item) -> None:
        """Deletes the item of `key` if it is still `expected`."""
        request = {"TableName": plan.table, "Key": schema.attributes(key), **condition(expected, schema.names, [])}
        self._write(self.client.delete_item, request)

    def _write(self, operation: Callable[..., dict[str, Any]], request: dict[str, Any]) -> None:
        def guarded(**parameters: Any) -> dict[str, Any]:
            try:
                return operation(**parameters)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                    raise ConditionFailed() from None
                raise

        call(self.label, guarded, self.sleep, **request)
