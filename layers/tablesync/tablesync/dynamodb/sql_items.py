"""A SQL table seen as a store of items, so that it can be compared with a DynamoDB table (in
either direction) by the scan-and-lookup strategy: its rows in key order, page by page, each
hashed as the DynamoDB item that holds the same values (docs/normalization.md, "DynamoDB against
SQL"). Built on the SQL connector's own operations (a page's bounds, its keys, its rows), so it
works the same on every dialect; memory holds one page.

The mapping: integer, decimal and float columns are numbers (N; a float by its shortest decimal
spelling), text and uuid strings (S), bytes binaries (B), boolean BOOL, json a map or list (M, L;
its numbers exact), dates and times strings in their canonical text; a NULL is an absent
attribute. A value DynamoDB cannot hold (NaN, infinity, a value its SQLite column type cannot
parse) equals nothing there."""

from __future__ import annotations

import base64
import json
import math
import struct
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from ..connectors import Connector
from ..engine.keys import row_key
from ..errors import SchemaError
from ..models import Column, Key, Kind, ScanPage, ScanRequest, Span, TablePlan, TableSchema
from ..normalize import CANONICAL_NAN, INVALID_MARK
from .values import INVALID, Item, canonical_hash, canonical_number, canonical_texts, stored_value


class SqlItems:
    """Wraps a SQL connector (opened by the side's factory) with the item operations."""

    def __init__(self, connector: Connector) -> None:
        self.inner = connector
        self.dialect = connector.dialect

    def describe(self, table: str) -> TableSchema:
        return self.inner.describe(table)

    def close(self) -> None:
        self.inner.close()

    def scan_hashes(self, plan: TablePlan, request: ScanRequest) -> ScanPage:
        """A page of rows in key order from `request.start` (inclusive: the SQL side's own
        position; None from the first key). One segment only: the others are done at once."""
        if request.segment > 0:
            return ScanPage(pairs=[], next=None)
        size = request.limit or 2_000
        span = self.inner.chunk_bounds(plan, request.start, size, 1, False)
        keys = [key for key, _ in self.inner.row_hashes(plan, [Span(lo=request.start, hi=span.hi)])]
        return ScanPage(pairs=self.lookup_hashes(plan, keys), next=span.hi)

    def lookup_hashes(self, plan: TablePlan, keys: Sequence[Key]) -> list[tuple[Key, int]]:
        return [(key, canonical_hash(attributes)) for key, attributes in self._items(plan, keys)]

    @staticmethod
    def holds_key(plan: TablePlan, key: Key) -> bool:
        """Whether the table's key columns can hold the key (a DynamoDB key may be 1.5 where the
        column is an integer, any string where it is a uuid): a key they cannot hold is not held."""
        for column, value in zip(plan.key, key, strict=True):
            if column.kind is Kind.INTEGER and not isinstance(value, int):
                return False
            if column.kind is Kind.UUID and not (isinstance(value, str) and _is_uuid(value)):
                return False
        return True

    def fetch_items(self, plan: TablePlan, keys: Sequence[Key]) -> list[tuple[Key, dict[str, str | None]]]:
        names = [c.name for c in plan.key]
        return [(key, canonical_texts(attributes, names)) for key, attributes in self._items(plan, keys)]

    def get_items(self, plan: TablePlan, keys: Sequence[Key]) -> dict[tuple[Any, ...], Item]:
        """The rows of `keys` as the DynamoDB items that hold their values (a repair's source:
        the row as it is now; a value DynamoDB cannot hold is marked, and never written)."""
        return {
            tuple(key): {name: stored_value(value) for name, value in attributes.items()}
            for key, attributes in self._items(plan, keys)
        }

    def _items(self, plan: TablePlan, keys: Sequence[Key]) -> list[tuple[Key, dict[str, Any]]]:
        keys = [key for key in keys if self.holds_key(plan, key)]
        if not keys:
            return []
        out = []
        columns = [*plan.key, *plan.columns]
        for row in self.inner.fetch_rows(plan, list(keys)):
            attributes = {c.name: item_value(c, row[c.name]) for c in columns if row[c.name] is not None}
            out.append((list(row_key(plan, row)), attributes))
        return out


def item_value(column: Column, text: str | None) -> Any:
    """A SQL value's canonical text as the canonical DynamoDB value that holds it."""
    assert text is not None
    if text.startswith(INVALID_MARK):
        return (INVALID, text)
    kind = column.kind
    if kind in (Kind.INTEGER, Kind.DECIMAL):
        try:
            return ("N", canonical_number(text))
        except SchemaError:  # NaN, infinity: no DynamoDB number
            return (INVALID, text)
    if kind is Kind.FLOAT:
        if text == CANONICAL_NAN:
            return (INVALID, text)
        number = struct.unpack(">d", bytes.fromhex(text))[0]
        return ("N", canonical_number(repr(number))) if math.isfinite(number) else (INVALID, text)
    if kind is Kind.BOOLEAN:
        # A tinyint(1) or a SQLite BOOLEAN may hold other numbers: no DynamoDB BOOL holds them.
        return ("BOOL", text == "1") if text in ("0", "1") else (INVALID, text)
    if kind is Kind.BYTES:
        return ("B", base64.b64encode(bytes.fromhex(text)).decode())
    if kind is Kind.JSON:
        try:
            return json_value(json.loads(text, parse_float=Decimal, parse_int=Decimal))
        except ValueError:
            return (INVALID, text)
    return ("S", text)  # text, uuid, and dates and times in their canonical text


def _is_uuid(text: str) -> bool:
    try:
        return str(uuid.UUID(text)) == text
    except ValueError:
        return False


def json_value(value: Any) -> Any:
    """A JSON document as the DynamoDB value a document SDK writes for it (numbers exact)."""
    if isinstance(value, dict):
        return ("M", {name: json_value(v) for name, v in value.items()})
    if isinstance(value, list):
        return ("L", [json_value(v) for v in value])
    if isinstance(value, bool):
        return ("BOOL", value)
    if value is None:
        return ("NULL",)
    if isinstance(value, Decimal):
        return ("N", canonical_number(str(value)))
    return ("S", str(value))
