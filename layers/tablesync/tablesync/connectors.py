"""The connector interface the engine drives, and the factory that opens one for a URL.

The interface is a set of capabilities, so that a store offering only some of them can still be a
side: describing tables, checksums over key-ordered ranges, rows by key, writes. The SQL
connectors (dialects/) offer them all, and `Connector` is that combination.

Every argument and answer is plain JSON-serialisable data (or a pydantic model of it), so a later
transport can serve the same operations from a connector Lambda over lambda:Invoke."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from .errors import InputError
from .models import (
    Checksum,
    Key,
    KeyRange,
    RowWrite,
    ScanPage,
    ScanRequest,
    Span,
    SplitRequest,
    TablePlan,
    TableSchema,
    WriteOutcome,
)
from .urls import DatabaseUrl, parse_url


class Describes(Protocol):
    """A store's tables and their schemas."""

    dialect: str

    def describe(self, table: str) -> TableSchema: ...

    def list_tables(self, pattern: str) -> list[str]: ...

    def close(self) -> None: ...


class RangeChecksums(Protocol):
    """Checksums over key ranges: a store that reads rows in key order and can seek to a key. The
    engine walks the table chunk by chunk and narrows a differing chunk down to its rows.
    Operations over several spans take them sorted and disjoint, and answer in one or two queries
    whatever their number (a connector Lambda answers them in one invocation)."""

    def key_range(self, plan: TablePlan) -> KeyRange: ...

    def validate_key(self, plan: TablePlan) -> None: ...

    def null_keys(self, plan: TablePlan) -> list[Key]:
        """The keys (with their NULLs) of the rows that have a NULL in a key column: no key range
        holds them. Only asked of a side whose key columns may be NULL."""
        ...

    def index_serves(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> bool: ...

    def chunk_bounds(self, plan: TablePlan, bound: Key | None, size: int, parts: int, reverse: bool) -> Span: ...

    def split_points(self, plan: TablePlan, requests: Sequence[SplitRequest]) -> list[list[Key]]: ...

    def sample_keys(self, plan: TablePlan, fraction: float, limit: int) -> list[Key]:
        """The keys of a random sample of about `fraction` of the rows (at most `limit`), in no
        order: the cuts of a chunk that takes a whole table where a side scans."""
        ...

    def checksum(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> Checksum: ...

    def bucket_checksums(self, plan: TablePlan, spans: Sequence[Span]) -> list[list[Checksum]]: ...

    def row_hashes(self, plan: TablePlan, spans: Sequence[Span]) -> list[tuple[Key, int]]: ...


class KeyedLookup(Protocol):
    """Rows by key, every column as its canonical text (key columns included)."""

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]: ...


class ScanHashes(Protocol):
    """For a store that cannot read in key order or seek to a key (DynamoDB, whose scans come in
    hash order): pages of one segment of a parallel scan as (key, row hash) pairs, in no
    particular order, and where the segment goes on. The scan-and-lookup strategy pairs them with
    HashLookup on the other sides (engine/scan_lookup.py)."""

    def scan_hashes(self, plan: TablePlan, request: ScanRequest) -> ScanPage: ...


class HashLookup(Protocol):
    """Row hashes by key: the (key, hash) of each of `keys` the store holds."""

    def lookup_hashes(self, plan: TablePlan, keys: Sequence[Key]) -> list[tuple[Key, int]]: ...


class RowWriter(Protocol):
    """Repair's conditional writes. Only ever called on a target opened for writing."""

    def write_rows(self, plan: TablePlan, writes: Sequence[RowWrite], dry_run: bool = False) -> WriteOutcome:
        """Applies the writes in one transaction, each only where the row is still as
        `expected` (see dialects.writer.SqlWriter.write_rows)."""
        ...


class Connector(Describes, RangeChecksums, KeyedLookup, RowWriter, Protocol):
    """The operations the engine needs from one database: what the SQL connectors (and the
    connector Lambda serving one) offer."""


class RepairTarget(KeyedLookup, RowWriter, Protocol):
    """What repair needs of a target: rows by key, and conditional writes (write_rows)."""


class BulkCopy(Protocol):
    """What `tablesync copy` and `replicate` need of a SQL database (dialects/loader.py): rows in key
    order as canonical texts or in a bulk format, loaded in one transaction; tables created,
    extended, emptied; positions and counts."""

    bulk_read_formats: tuple[str, ...]

    def read_rows(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> list[list[str | None]]: ...

    def load_rows(self, plan: TablePlan, rows: Sequence[list[str | None]]) -> None: ...

    def key_after(self, plan: TablePlan, key: Key) -> Key | None: ...

    def count_rows(self, plan: TablePlan, lo: Key | None) -> int: ...

    def has_rows(self, table: str) -> bool: ...


@runtime_checkable
class LockingWriter(Protocol):
    """A target connection that can hold a write transaction open between calls (a direct
    database connection, not a connector Lambda): repair locks the target's rows, then reads the
    source, then writes, so that what it writes is never older than what it replaces."""

    def lock_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]: ...

    def write_locked(self, plan: TablePlan, writes: Sequence[RowWrite]) -> WriteOutcome: ...

    def rollback(self) -> None: ...


# The dialects, by URL scheme: module and connector class, imported on first use (a CLI run against
# SQLite never imports a PostgreSQL driver). A new dialect is one module in dialects/ and a line here.
DIALECTS: dict[str, tuple[str, str]] = {
    "postgresql": ("tablesync.dialects.postgres", "PostgresConnector"),
    "mysql": ("tablesync.dialects.mysql", "MysqlConnector"),
    "sqlite": ("tablesync.dialects.sqlite", "SqliteConnector"),
    # Not a SQL dialect: a store of items, compared by scan and lookup (ScanHashes, HashLookup).
    "dynamodb": ("tablesync.dynamodb.connector", "DynamoConnector"),
}


def open_connector(url: str | DatabaseUrl, *, connect_timeout: float = 10, read_only: bool = True) -> Connector:
    parsed = parse_url(url) if isinstance(url, str) else url
    entry = DIALECTS.get(parsed.dialect)
    if entry is None:
        raise InputError(f"unsupported database {parsed.dialect}")
    module, name = entry
    connector_class = getattr(importlib.import_module(module), name)
    connector: Connector = connector_class(parsed, connect_timeout=connect_timeout, read_only=read_only)
    return connector
