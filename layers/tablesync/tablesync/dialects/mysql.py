"""MySQL 8 and MariaDB 10.11 (PyMySQL): the connection, its session settings and error classes.
The SQL is MysqlDialect's (mysql_sql.py)."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import pymysql

from ..errors import ConnectError, DatabaseError, DatabaseUnavailableError, SchemaError, TransientDatabaseError
from ..models import Column, TableSchema
from ..urls import DatabaseUrl
from . import mysql_ddl
from .connector import KEEPALIVE_COUNT, KEEPALIVE_IDLE_SECONDS, KEEPALIVE_INTERVAL_SECONDS, SqlConnector
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
                **tls_options(url),
            )
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

    def portable_type(self, column: Column) -> PortableType:
        return mysql_ddl.portable_type(column)

    def column_ddl(self, column: Column, portable: PortableType, key: bool) -> str:
        return mysql_ddl.column_ddl(column, portable, key, mariadb=self.mariadb)

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
