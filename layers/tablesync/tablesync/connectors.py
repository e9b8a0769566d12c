"""The connector interface the engine drives, and the factory that opens one for a URL.

Every argument and answer is plain JSON-serialisable data (or a pydantic model of it), so a later
transport can serve the same operations from a connector Lambda over lambda:Invoke."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .errors import InputError
from .models import Checksum, ChunkSpan, Key, KeyRange, TablePlan, TableSchema
from .urls import DatabaseUrl, parse_url


class Connector(Protocol):
    dialect: str

    def describe(self, table: str) -> TableSchema: ...

    def key_range(self, plan: TablePlan) -> KeyRange: ...

    def validate_key(self, plan: TablePlan) -> None: ...

    def chunk_bounds(self, plan: TablePlan, bound: Key | None, size: int, parts: int, reverse: bool) -> ChunkSpan: ...

    def split_points(self, plan: TablePlan, lo: Key | None, hi: Key | None, count: int, parts: int) -> list[Key]: ...

    def checksum(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> Checksum: ...

    def bucket_checksums(
        self, plan: TablePlan, lo: Key | None, hi: Key | None, points: Sequence[Key]
    ) -> list[Checksum]: ...

    def row_hashes(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> list[tuple[Key, int]]: ...

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]: ...

    def close(self) -> None: ...


def open_connector(url: str | DatabaseUrl, *, connect_timeout: float = 10, read_only: bool = True) -> Connector:
    parsed = parse_url(url) if isinstance(url, str) else url
    if parsed.dialect == "postgresql":
        from .dialects.postgres import PostgresConnector

        return PostgresConnector(parsed, connect_timeout=connect_timeout, read_only=read_only)
    if parsed.dialect == "mysql":
        from .dialects.mysql import MysqlConnector

        return MysqlConnector(parsed, connect_timeout=connect_timeout, read_only=read_only)
    if parsed.dialect == "sqlite":
        from .dialects.sqlite import SqliteConnector

        return SqliteConnector(parsed, connect_timeout=connect_timeout, read_only=read_only)
    raise InputError(f"unsupported database {parsed.dialect}")
