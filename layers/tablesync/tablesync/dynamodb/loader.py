"""A DynamoDB table as the target of `tablesync copy` from a SQL table: created with the key schema
of the SQL primary key (its first column the partition key, a second one the sort key; on-demand
capacity), each row loaded as the item that holds its values (sql_items.item_value: the mapping
the diff compares by), 25 items a BatchWriteItem, unprocessed items sent again with backoff.

A put of an item is idempotent, so a batch written twice (a copy resumed after a crash between a
batch and the save of its state) leaves the table as written once: a DynamoDB target needs no
highest key to resume from."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ..errors import DatabaseError, InputError, SchemaError, TransientDatabaseError
from ..models import Column, Kind, TablePlan, TableSchema
from .client import backoff_delay, call
from .connector import DynamoConnector
from .sql_items import item_value
from .values import INVALID, stored_value

WRITE_ITEMS = 25  # BatchWriteItem's limit
WRITE_THREADS = 8
MAX_UNPROCESSED_ROUNDS = 30
KEY_TYPES = {Kind.INTEGER: "N", Kind.DECIMAL: "N", Kind.TEXT: "S", Kind.UUID: "S", Kind.BYTES: "B"}
ACTIVE_WAIT_SECONDS = 300


class ItemLoader:
    """The copy's operations on a DynamoDB table (engine/bulk_copy.py's target side)."""

    dialect = "dynamodb"
    bulk_write_formats: tuple[str, ...] = ()  # rows arrive as canonical texts, made items here

    def __init__(self, connector: DynamoConnector) -> None:
        self.connector = connector
        self.client = connector.client
        self.label = connector.label

    def describe(self, table: str) -> TableSchema:
        return self.connector.describe(table)

    def close(self) -> None:
        self.connector.close()

    def table_exists(self, table: str) -> bool:
        try:
            self.connector.describe(table)
        except SchemaError:
            return False
        return True

    def has_rows(self, table: str) -> bool:
        answer = call(self.label, self.client.scan, self.connector.sleep, TableName=table, Limit=1, Select="COUNT")
        return bool(answer.get("Count")) or "LastEvaluatedKey" in answer

    def create_table(self, table: str, columns: Sequence[tuple[Column, Any]], key: Sequence[str]) -> str:
        """The table with the SQL primary key as its key schema (two columns at most); on demand."""
        if not 1 <= len(key) <= 2:
            raise SchemaError(f"a DynamoDB key has one or two attributes; {table}'s primary key has {len(key)} columns")
        kinds = {c.name: c.kind for c, _ in columns}
        definitions, schema = [], []
        for role, name in zip(("HASH", "RANGE"), key, strict=False):
            kind = kinds.get(name)
            if kind not in KEY_TYPES:
                raise SchemaError(f"column {name!r}: a DynamoDB key is a number, a string or a binary, not {kind}")
            definitions.append({"AttributeName": name, "AttributeType": KEY_TYPES[kind]})
            schema.append({"AttributeName": name, "KeyType": role})
        request = {
            "TableName": table,
            "KeySchema": schema,
            "AttributeDefinitions": definitions,
            "BillingMode": "PAY_PER_REQUEST",
        }
        call(self.label, self.client.create_table, self.connector.sleep, **request)
        self._wait_active(table)
        keys = ", ".join(
            f"{d['AttributeName']} {d['AttributeType']} {s['KeyType']}"
            for d, s in zip(definitions, schema, strict=True)
        )
        return f"CreateTable {table} ({keys}, on demand)"

    def _wait_active(self, table: str) -> None:
        deadline = time.monotonic() + ACTIVE_WAIT_SECONDS
        while time.monotonic() < deadline:
            status = call(self.label, self.client.describe_table, self.connector.sleep, TableName=table)["Table"]
            if status.get("TableStatus", "ACTIVE") == "ACTIVE":
                return
            self.connector.sleep(1.0)
        raise TransientDatabaseError(f"{self.label}: table {table} not active after {ACTIVE_WAIT_SECONDS} s")

    def load_rows(self, plan: TablePlan, rows: Sequence[list[str | None]]) -> None:
        """Each row as the item that holds its values (a NULL: no attribute), written in batches
        of 25 by a few threads at once."""
        columns = [*plan.key, *plan.columns]
        items = [_item(columns, row) for row in rows]
        batches = [items[i : i + WRITE_ITEMS] for i in range(0, len(items), WRITE_ITEMS)]
        with ThreadPoolExecutor(max_workers=WRITE_THREADS, thread_name_prefix="ts-dynamo-load") as pool:
            for done in pool.map(lambda batch: self._write(plan.table, batch), batches):
                del done

    def _write(self, table: str, items: list[dict[str, Any]]) -> None:
        requests = [{"PutRequest": {"Item": item}} for item in items]
        rounds = 0
        while requests:
            answer = call(
                self.label, self.client.batch_write_item, self.connector.sleep, RequestItems={table: requests}
            )
            requests = answer.get("UnprocessedItems", {}).get(table, [])
            if requests:  # throttling by another name: sent again after a backoff, never dropped
                rounds += 1
                if rounds >= MAX_UNPROCESSED_ROUNDS:
                    raise TransientDatabaseError(
                        f"{self.label}: {len(requests)} items still unprocessed after {rounds} attempts"
                    )
                self.connector.sleep(backoff_delay(rounds))


def _item(columns: Sequence[Column], row: Sequence[str | None]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for column, text in zip(columns, row, strict=True):
        if text is None:
            continue  # a NULL is an absent attribute
        value = item_value(column, text)
        if value[0] == INVALID:
            raise DatabaseError(
                f"column {column.name!r} holds a value DynamoDB cannot hold (NaN, infinity, or unparsable)"
            )
        item[column.name] = stored_value(value)
    return item


def for_copy(connector: Any) -> Any:
    """A copy's target: a DynamoDB table through its loader, any other as it is."""
    if isinstance(connector, DynamoConnector):
        if connector.read_only:
            raise InputError(f"{connector.label} was opened read-only")
        return ItemLoader(connector)
    return connector
