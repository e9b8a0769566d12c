"""MySQL 8 and MariaDB 10.11 (PyMySQL): the connection, its session settings and error classes.
The SQL is MysqlDialect's (mysql_sql.py)."""

from __future__ import annotations

import contextlib
import os
import re
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pymysql

from ..errors import ConnectError, DatabaseError, DatabaseUnavailableError, SchemaError, TransientDatabaseError
from ..models import Column, Key, Kind, TablePlan, TableSchema
from ..urls import DatabaseUrl
from . import mysql_copy
from .connector import KEEPALIVE_COUNT, KEEPALIVE_IDLE_SECONDS, KEEPALIVE_INTERVAL_SECONDS, SqlConnector
from .loader import CHUNK_ROWS
from .mysql_sql import MysqlDialect
from .portable import PortableType

SESSION_SETTINGS = (
    "SET NAMES utf8mb4 COLLATE utf8mb4_bin",
    "SET time_zone = '+00:00'",
    # No PAD_CHAR_TO_FULL_LENGTH, no ANSI_QUOTES, no NO_BACKSLASH_ESCAPES: fixed text forms.
    "SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION group_concat_max_len = 1073741824",
)
# Lost connection, server gone, deadlock, lock wait timeout, too many connections, query killed.
TRANSIENT_ERRNOS = {1205, 1213, 1040, 1203, 1053, 1158, 1159, 1160, 1161, 2003, 2006, 2013, 1927}
# A connection attempt that finds the server away for now (refused, timed out, a host name not
# resolving during a failover, lost in the handshake, shutting down, too many connections, too
# many of this user's connections).
UNAVAILABLE_ERRNOS = {2003, 2005, 2006, 2013, 1040, 1203, 1053, 1927}
# TLS refusals that waiting will not fix (PyMySQL reports them as errno 2003 too).
TLS_REFUSALS = ("certificate", "hostname", "wrong version number", "handshake failure", "unknown ca", "alert")
# A TLS session cut in the middle: the server went away during the handshake.
TLS_CUT = ("eof occurred in violation of protocol", "unexpected eof", "connection reset")
KEEPALIVE_SOCKET_OPTIONS = (
    ("TCP_KEEPIDLE", KEEPALIVE_IDLE_SECONDS),
    ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_SECONDS),
    ("TCP_KEEPCNT", KEEPALIVE_COUNT),
)
QUERY_TIMEOUT_MARGIN = 30.0  # seconds beyond the statement timeout before the client gives up
STATEMENT_TIMEOUT_ERRNOS = {1969, 3024}  # MariaDB max_statement_time, MySQL max_execution_time
QUOTED_VALUE = re.compile(r"((?:entry|value:?|values?) )'(?:[^'\\]|\\.|'')*'")


def _keepalive(conn: pymysql.connections.Connection) -> None:
    """A peer that vanishes mid-query (a host lost in a failover) is found in about a minute,
    not the kernel's default two hours: PostgreSQL's connections get the same libpq settings."""
    sock = conn._sock
    if sock is None:
        return
    for option, value in KEEPALIVE_SOCKET_OPTIONS:
        with contextlib.suppress(OSError, AttributeError):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


_offered_files: set[bytes] = set()
_offered_lock = threading.Lock()
_send_local_file = pymysql.connections._send_local_file


@contextlib.contextmanager
def offered(path: str) -> Iterator[None]:
    """While the block runs, the server may ask for this one local file."""
    name = os.fsencode(path)
    with _offered_lock:
        _offered_files.add(name)
    try:
        yield
    finally:
        with _offered_lock:
            _offered_files.discard(name)


def _send_offered_file(filename: Any, conn: Any) -> None:
    """PyMySQL sends whatever file the server names in a LOAD DATA LOCAL request: only one that
    tablesync offered is sent (another is refused as a file that does not exist)."""
    with _offered_lock:
        allowed = os.fsencode(filename) in _offered_files
    _send_local_file(filename if allowed else "/nonexistent/refused-by-tablesync", conn)


pymysql.connections._send_local_file = _send_offered_file


class MysqlConnector(SqlConnector):
    dialect = "mysql"
    sql_dialect: MysqlDialect

    def __init__(self, url: DatabaseUrl, *, connect_timeout: float = 10, read_only: bool = True) -> None:
        self.url = url
        try:
            self.conn = pymysql.connect(
                host=url.host or "127.0.0.1",
                port=url.port or 3306,
                user=url.user or "root",
                password=url.password or "",
                database=url.database,
                connect_timeout=max(1, int(connect_timeout)),
                # PyMySQL's connect_timeout covers the TCP connect only: a server that accepts and
                # then says nothing (a failover half done, a black-holed path) would hold the
                # handshake forever. The handshake and session set-up get the same bound.
                read_timeout=max(1, int(connect_timeout)),
                write_timeout=max(1, int(connect_timeout)),
                autocommit=True,
                charset="utf8mb4",
                # A writer may load data from a local file (LOAD DATA LOCAL INFILE); the driver
                # answers the server's request for one only during tablesync's own load, and only
                # with the file it offered (offered(), below).
                local_infile=not read_only,
                **tls_options(url),
            )
            self.conn._local_infile = False
            _keepalive(self.conn)
        except (pymysql.Error, ssl.SSLError, OSError) as exc:
            raise connect_error(url, exc) from None
        for statement in SESSION_SETTINGS:
            self.execute(statement, [])
        version = str(self.execute("SELECT VERSION()", [])[0][0])
        self.sql_dialect = MysqlDialect(mariadb="mariadb" in version.lower())
        if url.statement_timeout is not None:
            self.execute(self.sql_dialect.statement_timeout_sql(url.statement_timeout), [])
        if read_only:
            self.execute("SET SESSION TRANSACTION READ ONLY", [])
        self._local_files = not read_only and self._server_loads_local_files()
        # Queries may run long (a big chunk on a slow server): they are bounded by the statement
        # timeout when there is one (plus a margin for the server to say so), and a dead peer is
        # found by TCP keepalives. PyMySQL reapplies _read_timeout before every read.
        query_timeout = None if url.statement_timeout is None else url.statement_timeout + QUERY_TIMEOUT_MARGIN
        self.conn._read_timeout = query_timeout
        self.conn._write_timeout = query_timeout

    @property
    def mariadb(self) -> bool:
        return self.sql_dialect.mariadb

    def close(self) -> None:
        with contextlib.suppress(pymysql.Error):
            self.conn.close()

    def execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql, tuple(params))
                return list(cur.fetchall())
        except pymysql.Error as exc:
            raise self._error(exc) from None

    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        try:
            with self.conn.cursor() as cur:
                cur.executemany(sql, [tuple(r) for r in rows])  # INSERTs become multi-row statements
        except pymysql.Error as exc:
            raise self._error(exc) from None

    bulk_read_formats = ("copy", "load", "values")

    @property
    def bulk_write_formats(self) -> tuple[str, ...]:  # type: ignore[override]
        # LOAD DATA LOCAL where the server takes it (local_infile), else multi-row INSERTs.
        return ("load", "values") if self._local_files else ("values",)

    def read_bulk(self, plan: TablePlan, lo: Key | None, hi: Key | None, fmt: str) -> tuple[list[Any], int]:
        """The rows rendered by the server, a line each (PostgreSQL's COPY text, LOAD DATA's, or
        MySQL's VALUES tuples), joined CHUNK_ROWS lines a chunk."""
        d = self.sql_dialect
        columns = [*plan.key, *plan.columns]
        where, params = d.where(plan, lo, hi)
        if fmt == "values":
            fields = ", ".join(mysql_copy.values_field(c, d.quote(c.name)) for c in columns)
            row, separator = f"CONCAT('(', CONCAT_WS(',', {fields}), ')')", ","
        else:
            fields = ", ".join(mysql_copy.copy_field(c, d.quote(c.name), for_postgres=fmt == "copy") for c in columns)
            row, separator = f"CONCAT_WS('\\t', {fields})", "\n"
        lines = [str(r[0]) for r in self.execute(f"SELECT {row} FROM {d.table_ref(plan.table)}{where}", params)]
        end = "" if fmt == "values" else "\n"
        chunks = [separator.join(lines[i : i + CHUNK_ROWS]) + end for i in range(0, len(lines), CHUNK_ROWS)]
        return chunks, len(lines)

    def load_bulk(self, plan: TablePlan, fmt: str, chunks: Sequence[Any]) -> None:
        """In one transaction: LOAD DATA LOCAL INFILE of LOAD DATA's text (the chunks written to a
        temporary file that only this statement may send), or multi-row INSERTs of VALUES tuples."""
        d = self.sql_dialect
        columns = [*plan.key, *plan.columns]
        names = ", ".join(d.quote(c.name) for c in columns)
        self.execute(d.begin_sql, [])
        try:
            if fmt == "load":
                self._load_data(plan, columns, chunks)
            else:
                head = f"INSERT INTO {d.table_ref(plan.table)} ({names}) VALUES "
                for chunk in chunks:
                    self._execute_text(head + chunk)
            self.execute("COMMIT", [])
        except BaseException:
            with contextlib.suppress(Exception):  # the connection may be gone: the server rolls back
                self.execute("ROLLBACK", [])
            raise

    def _load_data(self, plan: TablePlan, columns: Sequence[Column], chunks: Sequence[Any]) -> None:
        d = self.sql_dialect
        targets, unhexed = [], []
        for i, column in enumerate(columns):
            if column.kind is Kind.BYTES:  # bytes travel as hex
                targets.append(f"@ts_b{i}")
                unhexed.append(f"{d.quote(column.name)} = UNHEX(@ts_b{i})")
            else:
                targets.append(d.quote(column.name))
        with tempfile.NamedTemporaryFile(prefix="tablesync-load-", suffix=".tsv") as data:
            for chunk in chunks:
                data.write(chunk if isinstance(chunk, bytes) else chunk.encode())
            data.flush()
            statement = (
                f"LOAD DATA LOCAL INFILE {self.literal(data.name)} INTO TABLE {d.table_ref(plan.table)} "
                "CHARACTER SET utf8mb4 FIELDS TERMINATED BY '\\t' ESCAPED BY '\\\\' LINES TERMINATED BY '\\n' "
                f"({', '.join(targets)})" + (f" SET {', '.join(unhexed)}" if unhexed else "")
            )
            with offered(data.name):
                self.conn._local_infile = True  # for this statement only (see offered)
                try:
                    self._execute_text(statement)
                finally:
                    self.conn._local_infile = False

    def _execute_text(self, sql: str) -> None:
        """A statement with no parameters (its values written in it): the driver leaves it as is."""
        try:
            with self.conn.cursor() as cur:
                cur.execute(sql)
        except pymysql.Error as exc:
            raise self._error(exc) from None

    def _server_loads_local_files(self) -> bool:
        rows = self.execute("SHOW VARIABLES LIKE 'local_infile'", [])
        return bool(rows) and str(rows[0][1]).upper() in ("ON", "1")

    def portable_type(self, column: Column) -> PortableType:
        return mysql_copy.portable_type(column)

    def column_ddl(self, column: Column, portable: PortableType, key: bool) -> str:
        return mysql_copy.column_ddl(column, portable, key, mariadb=self.mariadb)

    def _error(self, exc: pymysql.Error) -> DatabaseError | TransientDatabaseError:
        errno = exc.args[0] if exc.args and isinstance(exc.args[0], int) else 0
        # Messages that quote a row's value (`Duplicate entry 'x' for key`, `Incorrect integer
        # value: 'x'`) keep the value out of reports and logs.
        text = QUOTED_VALUE.sub(r"\1'…'", _message(exc))
        message = f"{self.url.redacted()}: {self.url.scrub(text)}"
        if errno in STATEMENT_TIMEOUT_ERRNOS:
            # The same statement would run as long again: not worth a retry.
            return DatabaseError(f"{message} (statement_timeout {self.url.statement_timeout} s)")
        if errno in TRANSIENT_ERRNOS or isinstance(exc, pymysql.err.InterfaceError):
            return TransientDatabaseError(message)
        return DatabaseError(message)

    def literal(self, value: Any) -> str:
        # The driver's own escaping (backslashes included), as it would send the value.
        return str(self.conn.escape(value))

    def describe(self, table: str) -> TableSchema:
        d = self.sql_dialect
        rows = self._run(d.columns_sql(table))
        if not rows:
            raise SchemaError(f"unknown table {table!r} in {self.url.redacted()}")
        json_query = d.json_columns_sql(table)
        json_columns = d.json_column_names(self._run(json_query)) if json_query is not None else set()
        columns = [d.column_of(row, json_columns) for row in rows]
        pk = self._run(d.primary_key_sql(table))
        return TableSchema(table=table, columns=columns, primary_key=[r[0] for r in pk])


def tls_options(url: DatabaseUrl) -> dict[str, Any]:
    """PyMySQL's TLS settings for a URL's sslmode (libpq's names). prefer is PyMySQL's default
    (TLS when the server offers it, unverified); the others require TLS."""
    if url.sslmode == "disable":
        return {"ssl_disabled": True}
    if url.sslmode == "prefer":
        return {}
    context = ssl.create_default_context(cafile=url.sslrootcert)
    context.check_hostname = url.sslmode == "verify-full"
    if url.sslmode == "require":
        context.verify_mode = ssl.CERT_NONE
    return {"ssl": context}


def connect_error(url: DatabaseUrl, exc: BaseException) -> ConnectError | DatabaseUnavailableError:
    """A failed connection attempt: an outage to wait out (by its error number, or a TLS session
    cut short), or a refusal to report at once (credentials, a database, a certificate). The
    host's name is left out of the test (a host called `db-ssl` is no certificate error)."""
    errno = exc.args[0] if isinstance(exc, pymysql.Error) and exc.args else None
    text = url.scrub(_message(exc))
    lowered = text.replace(url.host or "\0", "").lower()
    refused = any(marker in lowered for marker in TLS_REFUSALS)
    cut = isinstance(exc, ssl.SSLEOFError | ConnectionError | TimeoutError) or any(m in lowered for m in TLS_CUT)
    if (errno in UNAVAILABLE_ERRNOS and not refused) or (cut and not refused):
        return DatabaseUnavailableError(f"cannot reach {url.redacted()}: {text}")
    return ConnectError(f"cannot connect to {url.redacted()}: {text}")


def _message(exc: BaseException) -> str:
    if len(exc.args) >= 2:
        return str(exc.args[1])
    return str(exc) or type(exc).__name__
