"""MySQL 8 and MariaDB 10.11 (PyMySQL): type mapping, canonical-text SQL and session settings."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import pymysql

from ..errors import ConnectError, DatabaseError, DatabaseUnavailableError, SchemaError, TransientDatabaseError
from ..models import Column, Kind, TableSchema
from ..normalize import INVALID_MARK
from ..urls import DatabaseUrl
from .base import KEEPALIVE_COUNT, KEEPALIVE_IDLE_SECONDS, KEEPALIVE_INTERVAL_SECONDS, SqlConnector

TYPE_KINDS: dict[str, Kind] = {
    "tinyint": Kind.INTEGER,
    "smallint": Kind.INTEGER,
    "mediumint": Kind.INTEGER,
    "int": Kind.INTEGER,
    "integer": Kind.INTEGER,
    "bigint": Kind.INTEGER,
    "year": Kind.INTEGER,
    "decimal": Kind.DECIMAL,
    "numeric": Kind.DECIMAL,
    "float": Kind.FLOAT,
    "double": Kind.FLOAT,
    "real": Kind.FLOAT,
    "char": Kind.TEXT,
    "varchar": Kind.TEXT,
    "tinytext": Kind.TEXT,
    "text": Kind.TEXT,
    "mediumtext": Kind.TEXT,
    "longtext": Kind.TEXT,
    "enum": Kind.TEXT,
    "set": Kind.TEXT,
    "uuid": Kind.UUID,
    "json": Kind.JSON,
    "binary": Kind.BYTES,
    "varbinary": Kind.BYTES,
    "tinyblob": Kind.BYTES,
    "blob": Kind.BYTES,
    "mediumblob": Kind.BYTES,
    "longblob": Kind.BYTES,
    "datetime": Kind.TIMESTAMP,
    "timestamp": Kind.TIMESTAMPTZ,
    "date": Kind.DATE,
    "time": Kind.TIME,
}

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

TWO_POW_52 = "4503599627370496"
TWO_POW_63 = "9223372036854775808"


def float_bits_sql(value: str) -> str:
    """The IEEE 754 bits of a DOUBLE as 16 lowercase hex digits, computed exactly with arithmetic
    (MySQL has no function for them). Scaling by powers of two is exact for doubles; LOG2's last-bit
    error is corrected by looking at the scaled mantissa."""
    a = f"ABS({value})"
    e0 = f"GREATEST(LEAST(FLOOR(LOG2({a})), 1023), -1074)"
    m0 = f"({a} / POW(2, {e0}))"
    e = f"({e0} + ({m0} >= 2) - ({m0} < 1))"
    normal = (
        f"(CAST({e} + 1023 AS DECIMAL(20,0)) * {TWO_POW_52}"
        f" + CAST(({a} / POW(2, {e}) - 1) * {TWO_POW_52} AS DECIMAL(20,0)))"
    )
    subnormal = f"CAST({a} * POW(2, 1022) * {TWO_POW_52} AS DECIMAL(20,0))"
    bits = f"(({value} < 0) * {TWO_POW_63} + CASE WHEN {e} >= -1022 THEN {normal} ELSE {subnormal} END)"
    return f"CASE WHEN {value} = 0 THEN '0000000000000000' ELSE LOWER(LPAD(CONV({bits}, 10, 16), 16, '0')) END"


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
    row_values = False  # MariaDB's range optimizer does not use indexes for (a, b) >= (x, y)

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
        self.mariadb = "mariadb" in str(self.execute("SELECT VERSION()", [])[0][0]).lower()
        if url.statement_timeout is not None:
            # MariaDB: any statement, in seconds; MySQL 8: SELECTs, in milliseconds.
            if self.mariadb:
                self.execute(f"SET SESSION max_statement_time = {float(url.statement_timeout)}", [])
            else:
                self.execute(f"SET SESSION max_execution_time = {int(url.statement_timeout * 1000)}", [])
        if read_only:
            self.execute("SET SESSION TRANSACTION READ ONLY", [])
        # Queries may run long (a big chunk on a slow server): they are bounded by the statement
        # timeout when there is one (plus a margin for the server to say so), and a dead peer is
        # found by TCP keepalives. PyMySQL reapplies _read_timeout before every read.
        query_timeout = None if url.statement_timeout is None else url.statement_timeout + QUERY_TIMEOUT_MARGIN
        self.conn._read_timeout = query_timeout
        self.conn._write_timeout = query_timeout

    def close(self) -> None:
        with contextlib.suppress(pymysql.Error):
            self.conn.close()

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``").replace("%", "%%") + "`"

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

    begin_sql = "START TRANSACTION"

    def literal(self, value: Any) -> str:
        # The driver's own escaping (backslashes included), as it would send the value.
        return str(self.conn.escape(value))

    def describe(self, table: str) -> TableSchema:
        schema, _, name = table.rpartition(".")
        rows = self.execute(
            """
            SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME
            FROM information_schema.COLUMNS
            WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s
            ORDER BY ORDINAL_POSITION
            """,
            [schema or None, name],
        )
        if not rows:
            raise SchemaError(f"unknown table {table!r} in {self.url.redacted()}")
        json_columns = self._mariadb_json_columns(schema or None, name)
        columns = []
        for col_name, column_type, data_type, nullable, charset, collation in rows:
            column_type = str(column_type).lower()
            kind = TYPE_KINDS.get(str(data_type).lower())
            if column_type.startswith("tinyint(1)"):
                kind = Kind.BOOLEAN
            if col_name in json_columns:
                kind = Kind.JSON  # MariaDB's JSON is a LONGTEXT checked by json_valid()
            # MariaDB's UUID type orders version-1 UUIDs by their time fields, not byte by byte.
            binary_order = kind is not Kind.UUID
            if kind in (Kind.TEXT, Kind.UUID) and charset:
                collation = str(collation or "")
                binary_order = charset == "binary" or "nopad_bin" in collation or collation.endswith("0900_bin")
            columns.append(
                Column(
                    name=col_name,
                    native_type=column_type,
                    kind=kind,
                    nullable=nullable == "YES",
                    binary_order=binary_order,
                    charset=charset,
                    collation=collation or None,
                    base_type=str(data_type).lower(),
                )
            )
        pk = self.execute(
            """
            SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
            WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'
            ORDER BY ORDINAL_POSITION
            """,
            [schema or None, name],
        )
        return TableSchema(table=table, columns=columns, primary_key=[r[0] for r in pk])

    def _mariadb_json_columns(self, schema: str | None, table: str) -> set[str]:
        """The columns MariaDB declared JSON: it stores them as LONGTEXT with a json_valid check."""
        if not self.mariadb:
            return set()
        rows = self.execute(
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
            [schema, table],
        )
        names = set()
        for (clause,) in rows:
            match = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", str(clause))
            if match:
                names.add(match.group(1).replace("``", "`"))
        return names

    def table_names(self, schema: str | None) -> list[str]:
        rows = self.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE())",
            [schema],
        )
        return [str(r[0]) for r in rows]

    def estimated_rows(self, table: str) -> int | None:
        schema, _, name = table.rpartition(".")
        rows = self.execute(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) "
            "AND TABLE_NAME = %s",
            [schema or None, name],
        )
        return int(rows[0][0]) if rows and rows[0][0] is not None else None

    def _utf8(self, column: Column) -> str:
        """The column's text in utf8mb4 with one collation, so that CONCAT never meets an
        'illegal mix of collations' (MariaDB refuses to mix *_nopad_bin with others)."""
        q = self.quote(column.name)
        if column.charset == "utf8mb4":
            return f"{q} COLLATE utf8mb4_bin"
        if column.charset and column.charset != "binary":
            return f"CONVERT({q} USING utf8mb4) COLLATE utf8mb4_bin"
        return q

    def canonical_expr(self, column: Column) -> str:
        q = self.quote(column.name)
        kind = column.kind
        # ZEROFILL columns print their padding zeros; + 0 gives the number itself.
        number = f"{q} + 0" if "zerofill" in column.native_type else q
        if kind in (Kind.INTEGER, Kind.BOOLEAN):
            return f"CAST({number} AS CHAR)"
        if kind is Kind.DECIMAL:
            s = f"CAST({number} AS CHAR)"
            scale = _decimal_scale(column.native_type)
            if scale == 0:
                return s
            if scale is not None:
                # A declared scale always prints its point: trimming needs no test for one.
                return f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s}))"
            return (
                f"CASE WHEN INSTR({s}, '.') > 0 THEN TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s})) ELSE {s} END"
            )
        if kind is Kind.FLOAT:
            value = f"CAST({q} AS DOUBLE)" if column.native_type.startswith("float") else q
            return float_bits_sql(value)
        if kind in (Kind.TEXT, Kind.JSON):
            return (
                self._utf8(column)
                if column.native_type.split("(")[0] not in ("enum", "set", "json")
                else f"CAST({q} AS CHAR)"
            )
        if kind is Kind.UUID:
            return f"CAST({q} AS CHAR)"
        if kind is Kind.BYTES:
            return f"LOWER(HEX({q}))"
        if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.DATE):
            return self._temporal_expr(column, with_length=False)
        if kind is Kind.TIME:
            return f"TIME_FORMAT({q}, '%%H:%%i:%%s.%%f')"
        raise SchemaError(f"column {column.name!r} has unsupported type {column.native_type}")

    def _temporal_expr(self, column: Column, *, with_length: bool) -> str:
        """A date or timestamp's text. Year 0 is no year, so MySQL's "zero dates" hold no value
        another engine holds: they are marked as stored text (normalize.INVALID_MARK), as a SQLite
        copy of them is; in the row string the mark is followed by the text's length."""
        q = self.quote(column.name)
        fmt = "'%%Y-%%m-%%d'" if column.kind is Kind.DATE else "'%%Y-%%m-%%d %%H:%%i:%%s.%%f'"
        text = f"DATE_FORMAT({q}, {fmt})"
        marked = [f"'{INVALID_MARK}'", *([f"LENGTH({text})", "':'"] if with_length else []), text]
        return f"IF({q} < '0001-01-01', CONCAT({', '.join(marked)}), {text})"

    def field_expr(self, column: Column) -> str:
        if column.kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.DATE):
            return self._temporal_expr(column, with_length=True)
        return super().field_expr(column)

    def octet_length(self, expr: str) -> str:
        return f"LENGTH({expr})"

    def concat(self, parts: Sequence[str]) -> str:
        return f"CONCAT({', '.join(parts)})"

    def hash60(self, expr: str) -> str:
        return f"CAST(CONV(SUBSTRING(SHA2({expr}, 256), 1, 15), 16, 10) AS UNSIGNED)"

    def key_order_expr(self, column: Column) -> str:
        if column.binary_order:
            return self.quote(column.name)
        if column.native_type.startswith("uuid"):
            return f"CAST(CAST({self.quote(column.name)} AS CHAR) AS BINARY)"
        return f"CAST({self._utf8(column)} AS BINARY)"

    def text_order_expr(self, column: Column) -> str:
        # Exact and in byte order: no case folding, no PAD SPACE (`'a' = 'a '` is true under it).
        if column.binary_order and column.kind is Kind.TEXT and column.base_type not in ("enum", "set"):
            return self.quote(column.name)
        return f"CAST({self.canonical_expr(column)} AS BINARY)"

    def mod(self, left: str, right: str) -> str:
        return f"MOD({left}, {right})"

    def fetched_text(self, column: Column, value: Any) -> str | None:
        if isinstance(value, bytes):
            return value.decode("utf-8")
        return None if value is None else str(value)


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


def _decimal_scale(native_type: str) -> int | None:
    """The declared scale of decimal(p,s) / decimal(p) (scale 0); None when not declared."""
    match = re.match(r"(?:decimal|numeric)\((\d+)(?:,(\d+))?\)", native_type)
    if match is None:
        return None
    return int(match.group(2) or 0)


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
