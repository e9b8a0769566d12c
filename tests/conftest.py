"""Shared fixtures: real PostgreSQL and MariaDB servers on 127.0.0.1, and SQLite files.

When a server is missing the integration tests fail in CI (CI=true) and are skipped elsewhere."""

from __future__ import annotations

import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pymysql
import pytest
from servers import MYSQL_ARGS, PG_DSN

IN_CI = os.environ.get("CI") == "true"


def _unavailable(name: str, exc: Exception) -> None:
    message = f"{name} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[psycopg.Connection]:
    try:
        conn = psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5)
    except psycopg.Error as exc:
        _unavailable("PostgreSQL", exc)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def mysql_admin() -> Iterator[pymysql.connections.Connection]:
    try:
        conn = pymysql.connect(**MYSQL_ARGS, autocommit=True, connect_timeout=5)
    except pymysql.Error as exc:
        _unavailable("MariaDB", exc)
    with conn.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")
    yield conn
    conn.close()


@pytest.fixture
def table_name() -> str:
    """A table name unique to the test, so tests never see each other's tables."""
    return f"t_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def sqlite_pair(tmp_path: Path) -> tuple[Path, Path]:
    source, target = tmp_path / "source.db", tmp_path / "target.db"
    for path in (source, target):
        sqlite3.connect(path).close()
    return source, target
