"""The DynamoDB connector: a hash-partitioned store that cannot compute checksums or answer
key-ordered ranges, so it offers what the scan-and-lookup strategy needs: segments of a parallel
scan as (key, item hash) pairs, item hashes by key (BatchGetItem), and items by key for samples.

Hashes are computed here, from the canonical form (values.py), so only keys and 60-bit hashes
leave the connector, as with the SQL dialects."""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InputError, SchemaError, TransientDatabaseError
from ..models import Column, Key, Kind, ScanPage, ScanRequest, TablePlan, TableSchema
from ..urls import DatabaseUrl
from .client import ReadBudget, backoff_delay, call, make_client
from .values import Item, KeySchema, item_hash, item_texts
from .writer import ItemWriter

BATCH_GET_KEYS = 100  # BatchGetItem's limit per request
KIND_OF_TYPE = {"S": Kind.TEXT, "N": Kind.DECIMAL, "B": Kind.BYTES}
MAX_UNPROCESSED_ROUNDS = 30  # a batch whose keys keep coming back unprocessed is an outage after this


class DynamoConnector:
    dialect = "dynamodb"

    def __init__(
        self,
        url: DatabaseUrl,
        *,
        connect_timeout: float = 10,
        read_only: bool = True,
        client: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.read_only = read_only
        self.client = client if client is not None else make_client(url, connect_timeout)
        # Reads that only hash or show items take them as sent (dynamodb/client.py, raw_items).
        self.reader = client if client is not None else make_client(url, connect_timeout, raw_items=True)
        self.sleep = sleep
        self.label = url.redacted()

    def close(self) -> None:
        return None

    # --- schema -------------------------------------------------------------------------------
    def describe(self, table: str) -> TableSchema:
        answer = call(self.label, self.client.describe_table, self.sleep, TableName=table)["Table"]
        types = {a["AttributeName"]: a["AttributeType"] for a in answer.get("AttributeDefinitions", [])}
        roles = sorted(answer["KeySchema"], key=lambda k: 0 if k["KeyType"] == "HASH" else 1)
        names = [k["AttributeName"] for k in roles]
        columns = [Column(name=n, native_type=types[n], kind=KIND_OF_TYPE[types[n]], nullable=False) for n in names]
        return TableSchema(
            table=table,
            columns=columns,
            primary_key=names,
            estimated_rows=answer.get("ItemCount"),
            key_ordered=False,
        )

    def list_tables(self, pattern: str) -> list[str]:
        names: list[str] = []
        request: dict[str, Any] = {}
        while True:
            answer = call(self.label, self.client.list_tables, self.sleep, **request)
            names += answer.get("TableNames", [])
            if "LastEvaluatedTableName" not in answer:
                break
            request = {"ExclusiveStartTableName": answer["LastEvaluatedTableName"]}
        return sorted(n for n in names if fnmatch.fnmatchcase(n, pattern))

    # --- reads --------------------------------------------------------------------------------
    def scan_hashes(self, plan: TablePlan, request: ScanRequest) -> ScanPage:
        """One page of one segment of a parallel scan: its items' keys and hashes, and where the
        segment goes on (None: the segment is done)."""
        schema = key_schema(plan)
        scan: dict[str, Any] = {
            "TableName": plan.table,
            "ConsistentRead": plan.consistent_read,
            "ReturnConsumedCapacity": "TOTAL",
        }
        if request.total_segments > 1:
            scan["Segment"], scan["TotalSegments"] = request.segment, request.total_segments
        if request.start is not None:
            scan["ExclusiveStartKey"] = schema.attributes(request.start)
        if request.limit:
            scan["Limit"] = request.limit
        answer = self._read(plan, self.reader.scan, scan)
        pairs = [(schema.key_of(item), item_hash(item, plan.ignore)) for item in answer.get("Items", [])]
        last = answer.get("LastEvaluatedKey")
        return ScanPage(
            pairs=pairs,
            next=schema.key_of(last) if last else None,
            read_units=_units(answer),
        )

    def lookup_hashes(self, plan: TablePlan, keys: Sequence[Key]) -> list[tuple[Key, int]]:
        """The (key, hash) of each of `keys` the table holds (absent keys are left out)."""
        schema = key_schema(plan)
        items = self._batch_get(plan, schema, keys, self.reader)
        return [(schema.key_of(item), item_hash(item, plan.ignore)) for item in items]

    def fetch_items(self, plan: TablePlan, keys: Sequence[Key]) -> list[tuple[Key, dict[str, str | None]]]:
        """Each held item of `keys` with its compared attributes' canonical texts (samples)."""
        schema = key_schema(plan)
        items = self._batch_get(plan, schema, keys, self.reader)
        return [(schema.key_of(item), item_texts(item, plan.ignore, schema.names)) for item in items]

    def get_items(self, plan: TablePlan, keys: Sequence[Key]) -> dict[tuple[Any, ...], Item]:
        """The items of `keys` as stored (DynamoDB JSON), strongly consistent: for repair."""
        consistent = plan.model_copy(update={"consistent_read": True})
        schema = key_schema(plan)
        return {tuple(schema.key_of(item)): item for item in self._batch_get(consistent, schema, keys, self.client)}

    def for_writing(self) -> DynamoConnector:
        """The same table's connector, allowed to write (the repair Lambda: its role holds the
        write rights; the checker's roles do not)."""
        return DynamoConnector(self.url, read_only=False, client=self.client, sleep=self.sleep)

    def writer(self) -> ItemWriter:
        if self.read_only:
            raise InputError(f"{self.label} was opened read-only")
        return ItemWriter(self.client, self.label, self.sleep)

    def _batch_get(self, plan: TablePlan, schema: KeySchema, keys: Sequence[Key], client: Any) -> list[Item]:
        # A key DynamoDB cannot hold (a SQL table's empty or too long string, a NULL) is not held.
        keys = [key for key in keys if schema.holdable(key)]
        items: list[Item] = []
        for start in range(0, len(keys), BATCH_GET_KEYS):
            wanted = [schema.attributes(k) for k in keys[start : start + BATCH_GET_KEYS]]
            rounds = 0
            while wanted:
                request = {plan.table: {"Keys": wanted, "ConsistentRead": plan.consistent_read}}
                answer = self._read(
                    plan,
                    client.batch_get_item,
                    {"RequestItems": request, "ReturnConsumedCapacity": "TOTAL"},
                )
                items += answer.get("Responses", {}).get(plan.table, [])
                wanted = answer.get("UnprocessedKeys", {}).get(plan.table, {}).get("Keys", [])
                if wanted:
                    # Unprocessed keys are throttling by another name: asked again after a
                    # backoff, never dropped.
                    rounds += 1
                    if rounds >= MAX_UNPROCESSED_ROUNDS:
                        raise TransientDatabaseError(
                            f"{self.label}: {len(wanted)} keys still unprocessed after {rounds} attempts"
                        )
                    self.sleep(backoff_delay(rounds))
        return items

    def _read(
        self, plan: TablePlan, operation: Callable[..., dict[str, Any]], request: dict[str, Any]
    ) -> dict[str, Any]:
        budget = self._budget(plan)
        reserved = budget.wait(self.sleep) if budget is not None else 0.0
        answer = call(self.label, operation, self.sleep, **request)
        if budget is not None:
            budget.spend(_units(answer), reserved)
        return answer

    def _budget(self, plan: TablePlan) -> ReadBudget | None:
        if not plan.read_units_per_second:
            return None
        ident = (self.url.region or "", self.url.endpoint or "", plan.table)
        return ReadBudget.shared(ident, plan.read_units_per_second)


def key_schema(plan: TablePlan) -> KeySchema:
    types = {kind: name for name, kind in KIND_OF_TYPE.items()}
    kinds = [types.get(c.kind) if c.kind is not None else None for c in plan.key]
    if None in kinds:
        raise SchemaError("a DynamoDB key attribute is a string, a number or a binary")
    return KeySchema([c.name for c in plan.key], [k for k in kinds if k is not None])


def _units(answer: dict[str, Any]) -> float:
    consumed = answer.get("ConsumedCapacity")
    if isinstance(consumed, list):
        return float(sum(c.get("CapacityUnits", 0.0) for c in consumed))
    if isinstance(consumed, dict):
        return float(consumed.get("CapacityUnits", 0.0))
    return 0.0
