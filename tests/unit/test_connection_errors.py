# ruff: noqa: E501 - the drivers' messages, verbatim
"""Every class of connection error of both drivers, classed without a server: an outage (waited
out: DatabaseUnavailableError / TransientDatabaseError) or a refusal (reported at once:
ConnectError / DatabaseError). The same paths are driven against real servers, proxies and wire
fakes in tests/integration/test_outages.py; these pin the classing of the texts and numbers the
drivers give for the cases that cannot be staged here (a DNS failure during a failover, a TLS
session cut, a server in recovery)."""

from __future__ import annotations

import ssl
from types import SimpleNamespace

import psycopg
import pymysql
import pytest
from tablesync.dialects import mysql, postgres
from tablesync.errors import ConnectError, DatabaseError, DatabaseUnavailableError, TransientDatabaseError
from tablesync.urls import parse_url

PG_URL = parse_url("postgresql://checker:s3cret@db-ssl-timeout.example:5432/app")
MY_URL = parse_url("mysql://checker:s3cret@db-ssl-certificate.example:3306/app")


@pytest.mark.parametrize(
    "text",
    [
        'connection to server at "db" (10.0.0.5), port 5432 failed: Connection refused',
        'connection to server at "db" (10.0.0.5), port 5432 failed: timeout expired',
        'could not translate host name "db" to address: Name or service not known',
        'could not translate host name "db" to address: Temporary failure in name resolution',
        "connection to server failed: Network is unreachable",
        "connection to server failed: No route to host",
        "connection to server failed: FATAL:  the database system is starting up",
        "connection to server failed: FATAL:  the database system is shutting down",
        "connection to server failed: FATAL:  the database system is in recovery mode",
        "connection to server failed: FATAL:  the database system is not yet accepting connections",
        "connection to server failed: FATAL:  sorry, too many clients already",
        "connection to server failed: FATAL:  remaining connection slots are reserved for roles with the SUPERUSER attribute",
        "connection to server failed: server closed the connection unexpectedly",
        "connection to server failed: SSL SYSCALL error: EOF detected",
        "connection to server failed: SSL error: unexpected eof while reading",
        "connection to server failed: SSL connection has been closed unexpectedly",
        "connection to server failed: could not receive data from server: Connection reset by peer",
    ],
)
def test_postgres_outages_at_connect(text: str) -> None:
    error = postgres.connect_error(PG_URL, text)
    assert isinstance(error, DatabaseUnavailableError)
    assert "s3cret" not in str(error)


@pytest.mark.parametrize(
    "text",
    [
        'connection to server failed: FATAL:  password authentication failed for user "checker"',
        'connection to server failed: FATAL:  database "app" does not exist',
        "connection to server failed: FATAL:  no pg_hba.conf entry for host",
        "connection to server failed: SSL error: certificate verify failed",
        'connection to server failed: server certificate for "x" does not match host name "db-ssl-timeout.example"',
        "connection to server failed: server does not support SSL, but SSL was required",
    ],
)
def test_postgres_refusals_at_connect(text: str) -> None:
    # The host's name holds "ssl" and "timeout": it decides nothing.
    assert type(postgres.connect_error(PG_URL, text)) is ConnectError


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (psycopg.OperationalError("server closed the connection unexpectedly"), TransientDatabaseError),
        (psycopg.OperationalError("consuming input failed: SSL SYSCALL error: EOF detected"), TransientDatabaseError),
        (psycopg.InterfaceError("the connection is closed"), TransientDatabaseError),
        (psycopg.errors.lookup("57P01")("terminating connection due to administrator command"), TransientDatabaseError),
        (
            psycopg.errors.lookup("57P03")("the database system is not yet accepting connections"),
            TransientDatabaseError,
        ),
        (psycopg.errors.lookup("40001")("could not serialize access"), TransientDatabaseError),
        (psycopg.errors.lookup("40P01")("deadlock detected"), TransientDatabaseError),
        (psycopg.errors.lookup("53300")("too many connections"), TransientDatabaseError),
        (psycopg.errors.lookup("08006")("connection failure"), TransientDatabaseError),
        (psycopg.errors.lookup("57014")("canceling statement due to statement timeout"), DatabaseError),
        (psycopg.errors.lookup("42P01")('relation "t" does not exist'), DatabaseError),
        (psycopg.errors.lookup("23505")('duplicate key value violates unique constraint "t_pkey"'), DatabaseError),
    ],
)
def test_postgres_errors_mid_session(exc: psycopg.Error, kind: type[Exception]) -> None:
    error = postgres.PostgresConnector._error(SimpleNamespace(url=PG_URL), exc)  # type: ignore[arg-type]
    assert type(error) is kind


@pytest.mark.parametrize(
    "exc",
    [
        pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db' ([Errno 111] Connection refused)"),
        pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db' (timed out)"),
        pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db' ([Errno -3] Temporary failure in name resolution)"),
        pymysql.err.OperationalError(2005, "Unknown MySQL server host 'db'"),
        pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"),
        pymysql.err.OperationalError(2006, "MySQL server has gone away"),
        pymysql.err.OperationalError(1040, "Too many connections"),
        pymysql.err.OperationalError(1203, "User checker already has more than 'max_user_connections' active connections"),
        pymysql.err.OperationalError(1053, "Server shutdown in progress"),
        pymysql.err.OperationalError(1927, "Connection was killed"),
        pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query ([SSL: UNEXPECTED_EOF_WHILE_READING] EOF occurred in violation of protocol)"),
        ssl.SSLEOFError(8, "EOF occurred in violation of protocol"),
        ConnectionResetError(104, "Connection reset by peer"),
        TimeoutError("timed out"),
    ],
)  # fmt: skip
def test_mysql_outages_at_connect(exc: BaseException) -> None:
    error = mysql.connect_error(MY_URL, exc)
    assert isinstance(error, DatabaseUnavailableError)
    assert "s3cret" not in str(error)


@pytest.mark.parametrize(
    "exc",
    [
        pymysql.err.OperationalError(1045, "Access denied for user 'checker'@'10.0.0.9' (using password: YES)"),
        pymysql.err.OperationalError(1049, "Unknown database 'app'"),
        pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db' ([SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed certificate)"),
        pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db' ([SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: Hostname mismatch)"),
        pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db' ([SSL: WRONG_VERSION_NUMBER] wrong version number)"),
        ssl.SSLCertVerificationError(1, "certificate verify failed: unable to get local issuer certificate"),
    ],
)  # fmt: skip
def test_mysql_refusals_at_connect(exc: BaseException) -> None:
    assert type(mysql.connect_error(MY_URL, exc)) is ConnectError


def test_a_host_name_decides_nothing() -> None:
    # The host's name holds "ssl" and "certificate": a refused connection to it is an outage.
    refused = pymysql.err.OperationalError(
        2003, "Can't connect to MySQL server on 'db-ssl-certificate.example' ([Errno 111] Connection refused)"
    )
    assert isinstance(mysql.connect_error(MY_URL, refused), DatabaseUnavailableError)


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (pymysql.err.OperationalError(2013, "Lost connection to MySQL server during query"), TransientDatabaseError),
        (pymysql.err.OperationalError(2006, "MySQL server has gone away"), TransientDatabaseError),
        (pymysql.err.InterfaceError(0, ""), TransientDatabaseError),
        (pymysql.err.OperationalError(1213, "Deadlock found when trying to get lock"), TransientDatabaseError),
        (pymysql.err.OperationalError(1205, "Lock wait timeout exceeded"), TransientDatabaseError),
        (pymysql.err.OperationalError(1927, "Connection was killed"), TransientDatabaseError),
        (pymysql.err.OperationalError(1969, "Query execution was interrupted (max_statement_time exceeded)"), DatabaseError),
        (pymysql.err.ProgrammingError(1146, "Table 'app.t' doesn't exist"), DatabaseError),
        (pymysql.err.IntegrityError(1062, "Duplicate entry 'secret-value' for key 'PRIMARY'"), DatabaseError),
    ],
)  # fmt: skip
def test_mysql_errors_mid_session(exc: pymysql.Error, kind: type[Exception]) -> None:
    error = mysql.MysqlConnector._error(SimpleNamespace(url=MY_URL), exc)  # type: ignore[arg-type]
    assert type(error) is kind
    assert "secret-value" not in str(error)
