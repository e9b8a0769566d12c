"""PostgreSQL (psycopg 3): the connection, its session settings and error classes. The SQL is
PostgresDialect's (postgres_sql.py)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg
from psycopg import sql as pgsql

from ..errors import ConnectError, DatabaseError, DatabaseUnavailableError, SchemaError, TransientDatabaseError
from ..models import Column, Key, TablePlan, TableSchema
from ..urls import DatabaseUrl
from . import postgres_copy
from .connector import KEEPALIVE_COUNT, KEEPALIVE_IDLE_SECONDS, KEEPALIVE_INTERVAL_SECONDS, SqlConnector
from .loader import CHUNK_ROWS, Texts
from .portable import PortableType
from .postgres_sql import PostgresDialect

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

TRANSIENT_SQLSTATES = ("08", "40", "53", "57P")  # connection, rollback/deadlock, resources, shutdown
STATEMENT_TIMEOUT = "57014"
# Data exceptions and integrity violations may quote a row's value at the end of their message
# (`invalid input syntax for type integer: "abc"`).
DATA_SQLSTATES = ("22", "23")
QUOTED_VALUE = re.compile(r': ".*"$')


class PostgresConnector(SqlConnector):
    dialect = "postgresql"
    sql_dialect: PostgresDialect

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
        self.sql_dialect = PostgresDialect(default_collation=row[0] if row else "C")

    def close(self) -> None:
        self.conn.close()

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

    def literal(self, value: Any) -> str:
        # The driver's own quoting, as the connection's settings have it.
        return pgsql.Literal(value).as_string(self.conn)

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.executemany(sql, [list(r) for r in rows])  # pipelined: one round trip
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def listen(self, channel: str) -> None:
        """LISTEN on a channel (replicate --follow: the source's trigger notifies it on insert)."""
        try:
            self.conn.execute(pgsql.SQL("LISTEN {}").format(pgsql.Identifier(channel)))
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def notified(self, timeout: float) -> bool:
        """Whether a notification came within `timeout` seconds (all that came are taken)."""
        try:
            got = any(True for _ in self.conn.notifies(timeout=timeout, stop_after=1))
            while any(True for _ in self.conn.notifies(timeout=0, stop_after=1)):
                pass  # several inserts, one round
        except psycopg.Error as exc:
            raise self._error(exc) from None
        return got

    def portable_type(self, column: Column) -> PortableType:
        return postgres_copy.portable_type(column)

    def column_ddl(self, column: Column, portable: PortableType, key: bool) -> str:
        return postgres_copy.column_ddl(column, portable, key)

    bulk_read_formats = ("copy", "load", "values")
    bulk_write_formats = ("copy",)

    def read_bulk(self, plan: TablePlan, lo: Key | None, hi: Key | None, fmt: str) -> tuple[list[Any], int]:
        """COPY TO's text, of the columns as they are (PostgreSQL's COPY FROM reads it) or as
        MySQL's LOAD DATA reads them; or MySQL's VALUES tuples, CHUNK_ROWS rows a chunk."""
        d = self.sql_dialect
        columns = [*plan.key, *plan.columns]
        where, params = d.where(plan, lo, hi)
        table = d.table_ref(plan.table)
        try:
            if fmt in ("copy", "load"):
                fields = [
                    d.quote(c.name) if fmt == "copy" else postgres_copy.load_field(c, d.quote(c.name)) for c in columns
                ]
                select = f"SELECT {', '.join(fields)} FROM {table}{where}"
                with self.conn.cursor() as cur, cur.copy(f"COPY ({select}) TO STDOUT", params) as copy:
                    data = b"".join(bytes(block) for block in copy)
                return [postgres_copy.as_load_data(data) if fmt == "load" else data], data.count(b"\n")
            row = " || ',' || ".join(postgres_copy.values_field(c, d.quote(c.name)) for c in columns)
            numbered = f"(row_number() OVER ()) / {CHUNK_ROWS}"
            inner = f"SELECT '(' || {row} || ')' AS ts_row, {numbered} AS ts_g FROM {table}{where}"
            rows = self.execute(f"SELECT string_agg(ts_row, ','), count(*) FROM ({inner}) ts_v GROUP BY ts_g", params)
        except psycopg.Error as exc:
            raise self._error(exc) from None
        return [r[0] for r in rows], sum(int(r[1]) for r in rows)

    def load_bulk(self, plan: TablePlan, fmt: str, chunks: Sequence[Any]) -> None:
        """COPY ... FROM STDIN of COPY text, in one transaction."""
        d = self.sql_dialect
        names = ", ".join(d.quote(c.name) for c in [*plan.key, *plan.columns])
        statement = f"COPY {d.table_ref(plan.table)} ({names}) FROM STDIN"
        try:
            with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(statement) as copy:
                for chunk in chunks:
                    copy.write(chunk)
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def load_rows(self, plan: TablePlan, rows: Sequence[Texts]) -> None:
        """COPY ... FROM STDIN in one transaction: PostgreSQL's own bulk path."""
        if not rows:
            return
        d = self.sql_dialect
        columns = [*plan.key, *plan.columns]
        names = ", ".join(d.quote(c.name) for c in columns)
        try:
            statement = f"COPY {d.table_ref(plan.table)} ({names}) FROM STDIN"
            with self.conn.transaction(), self.conn.cursor() as cur, cur.copy(statement) as copy:
                for row in rows:
                    copy.write_row([d.write_value(c, t) for c, t in zip(columns, row, strict=True)])
        except psycopg.Error as exc:
            raise self._error(exc) from None

    def describe(self, table: str) -> TableSchema:
        d = self.sql_dialect
        rows = self._run(d.columns_sql(table))
        if not rows:
            raise SchemaError(f"unknown table {table!r} in {self.url.redacted()}")
        columns = [d.column_of(row) for row in rows]
        pk = self._run(d.primary_key_sql(rows[0][0]))
        return TableSchema(table=table, columns=columns, primary_key=[r[0] for r in pk])


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
