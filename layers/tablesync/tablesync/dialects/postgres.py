"""PostgreSQL (psycopg 3): type mapping, canonical-text SQL and session settings."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql as pgsql

from ..errors import ConnectError, DatabaseError, DatabaseUnavailableError, SchemaError, TransientDatabaseError
from ..models import Column, Key, Kind, TablePlan, TableSchema
from ..normalize import CANONICAL_NAN
from ..urls import DatabaseUrl
from .base import KEEPALIVE_COUNT, KEEPALIVE_IDLE_SECONDS, KEEPALIVE_INTERVAL_SECONDS, SqlConnector

TYPE_KINDS: dict[str, Kind] = {
    "int2": Kind.INTEGER,
    "int4": Kind.INTEGER,
    "int8": Kind.INTEGER,
    "bool": Kind.BOOLEAN,
    "numeric": Kind.DECIMAL,
    "float4": Kind.FLOAT,
    "float8": Kind.FLOAT,
    "text": Kind.TEXT,
    "varchar": Kind.TEXT,
    "bpchar": Kind.TEXT,
    "name": Kind.TEXT,
    "citext": Kind.TEXT,
    "uuid": Kind.UUID,
    "json": Kind.JSON,
    "jsonb": Kind.JSON,
    "bytea": Kind.BYTES,
    "timestamp": Kind.TIMESTAMP,
    "timestamptz": Kind.TIMESTAMPTZ,
    "date": Kind.DATE,
    "time": Kind.TIME,
}
# libc collations whose order is code point order (glibc's C.UTF-8 compares code points).
BINARY_COLLATIONS = {"C", "POSIX", "C.UTF-8", "C.utf8", "ucs_basic"}

SESSION_SETTINGS = (
    "SET TIME ZONE 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'iso_8601'",
    "SET extra_float_digits = 1",
    "SET client_encoding = 'UTF8'",
    "SET bytea_output = 'hex'",
    # JIT compiles each chunk query's bucket CASE anew: seconds of compiling for no gain here.
    "SET jit = off",
    # The planner takes GROUP BY <bucket> for one group per row (the key is unique): it would sort to
    # disk. There are at most 2,048 buckets, cheap to hash.
    "SET enable_sort = off",
    # One core per connection: a check should not take a production server's spare cores behind
    # its back (--threads N asks for N). It also keeps the other database's core free where both
    # share a machine.
    "SET max_parallel_workers_per_gather = 0",
)
KEY_ARRAY_TYPES = {Kind.INTEGER: "bigint[]", Kind.TEXT: "text[]", Kind.UUID: "uuid[]"}

TRANSIENT_SQLSTATES = ("08", "40", "53", "57P")  # connection, rollback/deadlock, resources, shutdown
STATEMENT_TIMEOUT = "57014"
# Data exceptions and integrity violations may quote a row's value at the end of their message
# (`invalid input syntax for type integer: "abc"`).
DATA_SQLSTATES = ("22", "23")
QUOTED_VALUE = re.compile(r': ".*"$')


class PostgresConnector(SqlConnector):
    dialect = "postgresql"

    def __init__(self, url: DatabaseUrl, *, connect_timeout: float = 10, read_only: bool = True) -> None:
        self.url = url
        try:
            self._connect(url, connect_timeout, read_only)
        except psycopg.Error as exc:
            raise connect_error(url, _first_line(exc)) from None

    def _connect(self, url: DatabaseUrl, connect_timeout: float, read_only: bool) -> None:
        self.conn = psycopg.connect(
            host=url.host or "127.0.0.1",
            port=url.port or 5432,
            user=url.user,
            password=url.password,
            dbname=url.database,
            connect_timeout=max(1, int(connect_timeout)),
            autocommit=True,
            application_name="tablesync",
            keepalives=1,
            keepalives_idle=KEEPALIVE_IDLE_SECONDS,
            keepalives_interval=KEEPALIVE_INTERVAL_SECONDS,
            keepalives_count=KEEPALIVE_COUNT,
            **tls_options(url),
        )
        # psycopg prepares a statement run five times, and PostgreSQL then moves to a generic plan
        # that cannot see the key range's bounds: a whole-table scan for every chunk.
        self.conn.prepare_threshold = None
        with self.conn.cursor() as cur:
            for statement in SESSION_SETTINGS:
                cur.execute(statement)
            if read_only:
                cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
            if url.statement_timeout is not None:
                cur.execute(f"SET statement_timeout = {int(url.statement_timeout * 1000)}")
            cur.execute("SELECT datcollate FROM pg_database WHERE datname = current_database()")
            row = cur.fetchone()
            self.default_collation = row[0] if row else "C"

    def close(self) -> None:
        self.conn.close()

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""').replace("%", "%%") + '"'

    def execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, list(params))
                return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def _error(self, exc: psycopg.Error) -> DatabaseError | TransientDatabaseError:
        state = getattr(exc, "sqlstate", None) or ""
        text = _first_line(exc)
        if state.startswith(DATA_SQLSTATES):
            text = QUOTED_VALUE.sub(': "…"', text)  # the value itself stays out of reports and logs
        message = f"{self.url.redacted()}: {self.url.scrub(text)}"
        if state == STATEMENT_TIMEOUT:
            # The same statement would run as long again: not worth a retry.
            return DatabaseError(f"{message} (statement_timeout {self.url.statement_timeout} s)")
        # InterfaceError: the connection is closed (lost before this statement): reconnect.
        if isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or state.startswith(TRANSIENT_SQLSTATES):
            return TransientDatabaseError(message)
        return DatabaseError(message)

    def write_value(self, column: Column, text: str | None) -> Any:
        if text is not None and column.kind is Kind.TIMESTAMPTZ and text[:1].isdigit():
            # Canonical timestamptz texts are in UTC; the era comes after the offset.
            return text[:-3] + "+00 BC" if text.endswith(" BC") else text + "+00"
        return super().write_value(column, text)

    def key_value_out(self, column: Column, value: Any) -> Any:
        if isinstance(value, str) and column.base_type == "bpchar":
            return value.rstrip(" ")  # char(n) without its padding, as its ::text is
        return super().key_value_out(column, value)

    def filter_value_in(self, column: Column, value: Any) -> Any:
        if isinstance(value, bool):
            return value  # booleans bind as booleans
        return super().filter_value_in(column, value)

    def literal(self, value: Any) -> str:
        return pgsql.Literal(value).as_string(self.conn)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.executemany(sql, [list(r) for r in rows])  # pipelined: one round trip
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def describe(self, table: str) -> TableSchema:
        schema, _, name = table.rpartition(".")
        rows = self.execute(
            """
            SELECT c.oid, a.attname, format_type(a.atttypid, a.atttypmod), t.typname,
                   NOT a.attnotnull, co.collname, bt.typname
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
            LEFT JOIN pg_collation co ON co.oid = a.attcollation
            WHERE c.relname = %s AND n.nspname = COALESCE(%s, current_schema())
              AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
            ORDER BY a.attnum
            """,
            [name, schema or None],
        )
        if not rows:
            raise SchemaError(f"unknown table {table!r} in {self.url.redacted()}")
        oid = rows[0][0]
        columns = []
        for _, col_name, native, typname, nullable, collation, base_type in rows:
            type_name = base_type or typname  # domains compare as their base type
            collation = self.default_collation if collation in (None, "default") else collation
            kind = TYPE_KINDS.get(type_name)
            # citext compares case-insensitively whatever its collation: never byte order.
            binary_order = kind is not Kind.TEXT or (collation in BINARY_COLLATIONS and type_name != "citext")
            columns.append(
                Column(
                    name=col_name,
                    native_type=native,
                    kind=kind,
                    nullable=bool(nullable),
                    binary_order=binary_order,
                    base_type=type_name,
                )
            )
        pk = self.execute(
            """
            SELECT a.attname FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = %s AND i.indisprimary
            ORDER BY array_position(i.indkey::int2[], a.attnum)
            """,
            [oid],
        )
        return TableSchema(table=table, columns=columns, primary_key=[r[0] for r in pk])

    def table_names(self, schema: str | None) -> list[str]:
        rows = self.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = COALESCE(%s, current_schema()) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            [schema],
        )
        return [str(r[0]) for r in rows]

    def estimated_rows(self, table: str) -> int | None:
        schema, _, name = table.rpartition(".")
        rows = self.execute(
            "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = COALESCE(%s, current_schema())",
            [name, schema or None],
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None and rows[0][0] >= 0 else None

    def canonical_expr(self, column: Column) -> str:
        q = self.quote(column.name)
        kind = column.kind
        if kind is Kind.INTEGER:
            return f"{q}::text"
        if kind is Kind.BOOLEAN:
            return f"{q}::int::text"
        if kind is Kind.DECIMAL:
            return f"trim_scale({q})::text"
        if kind is Kind.FLOAT:
            # -0.0 is 0.0, and every NaN (any sign or payload; PostgreSQL's NaN = NaN) one NaN.
            return (
                f"CASE WHEN {q} = 0 THEN '0000000000000000' WHEN {q} = 'NaN' THEN '{CANONICAL_NAN}' "
                f"ELSE encode(float8send({q}::float8), 'hex') END"
            )
        if kind in (Kind.TEXT, Kind.UUID, Kind.JSON):
            return f"{q}::text"
        if kind is Kind.BYTES:
            return f"encode({q}, 'hex')"
        if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            # Years 1 to 9999... as to_char writes them; BC years get ' BC' and the infinities
            # their names (to_char gives NULL for them), so that neither equals an AD value or NULL.
            # A timestamptz is written in the session's time zone, pinned to UTC.
            fmt = "'YYYY-MM-DD HH24:MI:SS.US'"
            return (
                f"CASE WHEN {q} >= '0001-01-01' AND {q} < 'infinity' THEN to_char({q}, {fmt}) "
                f"ELSE COALESCE(to_char({q}, {fmt[:-1]} BC'), {q}::text) END"
            )
        if kind is Kind.DATE:
            return f"{q}::text"  # ISO, with ' BC' and 'infinity' (DateStyle is pinned)
        if kind is Kind.TIME:
            return f"to_char({q}, 'HH24:MI:SS.US')"
        raise SchemaError(f"column {column.name!r} has unsupported type {column.native_type}")

    def octet_length(self, expr: str) -> str:
        return f"octet_length({expr})::text"

    def concat(self, parts: Sequence[str]) -> str:
        return "(" + " || ".join(parts) + ")"

    def hash60(self, expr: str) -> str:
        # convert_to: the UTF-8 bytes whatever the database encoding (sha256 takes bytea). The first
        # 8 bytes as 64 bits, shifted right by 4: the first 15 hex digits, never negative.
        digest = f"sha256(convert_to({expr}, 'UTF8'))"
        return f"(('x' || encode(substring({digest} from 1 for 8), 'hex'))::bit(64) >> 4)::bigint"

    def key_order_expr(self, column: Column) -> str:
        q = self.quote(column.name)
        if column.binary_order:
            return q
        # citext's operators ignore case whatever the collation: compare its text.
        return f'{q}::text COLLATE "C"' if column.base_type == "citext" else f'{q} COLLATE "C"'

    def text_order_expr(self, column: Column) -> str:
        q = self.quote(column.name)
        if column.kind is Kind.UUID or column.base_type in ("bpchar", "citext"):
            return f'{q}::text COLLATE "C"'  # the canonical text: lowercase, without char(n) padding
        return f'{q} COLLATE "C"'

    def _bucket_expr(self, plan: TablePlan, points: Sequence[Key], offset: int) -> tuple[str, list[Any]]:
        # width_bucket binary-searches a sorted array in C: far cheaper per row than a CASE tree.
        if len(plan.key) == 1 and points and plan.key[0].kind in KEY_ARRAY_TYPES:
            key = plan.key[0]
            expr = self.key_order_expr(key)
            array = f"%s::{KEY_ARRAY_TYPES[key.kind]}"  # type: ignore[index]
            if not key.binary_order:
                array += ' COLLATE "C"'
            return f"(width_bucket({expr}, {array}) + {int(offset)})", [[p[0] for p in points]]
        return super()._bucket_expr(plan, points, offset)

    def mod(self, left: str, right: str) -> str:
        return f"mod({left}, {right})"


# What a connection attempt says when the server is away for now (an outage, a failover, a
# restart) rather than refusing these credentials or this database for good.
UNAVAILABLE_MARKERS = (
    "connection refused",
    "timeout expired",
    "timed out",
    "could not translate host name",
    "failed to resolve host",
    "name or service not known",
    "temporary failure in name resolution",
    "network is unreachable",
    "no route to host",
    "connection reset",
    "server closed the connection unexpectedly",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "too many connections",
    "sorry, too many clients",
    "remaining connection slots are reserved",
    "terminating connection",
    # A TLS session cut in the middle (a failover during the handshake): TLS is the app's default.
    "ssl syscall error",
    "eof detected",
    "unexpected eof",
    "ssl connection has been closed unexpectedly",
    "could not receive data from server",
    "could not send data to server",
    "broken pipe",
)


def connect_error(url: DatabaseUrl, text: str) -> ConnectError | DatabaseUnavailableError:
    """A failed connection attempt: an outage to wait out, or a refusal to report at once. The
    host's name is left out of the test (a host called `timeout-db` is no outage)."""
    lowered = text.replace(url.host or "\0", "").lower()
    if any(marker in lowered for marker in UNAVAILABLE_MARKERS):
        return DatabaseUnavailableError(f"cannot reach {url.redacted()}: {url.scrub(text)}")
    return ConnectError(f"cannot connect to {url.redacted()}: {url.scrub(text)}")


def tls_options(url: DatabaseUrl) -> dict[str, Any]:
    """libpq's own sslmode; verify-* without a CA file trust the system's store (libpq 16+)."""
    options: dict[str, Any] = {"sslmode": url.sslmode}
    if url.sslmode.startswith("verify-"):
        options["sslrootcert"] = url.sslrootcert or "system"
    return options


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
