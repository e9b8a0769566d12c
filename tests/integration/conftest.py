"""Fixtures for the integration tests: the same table created in PostgreSQL, MariaDB and SQLite.

`Db` wraps one admin connection (autocommit) with the few operations the tests need: create a
table (dropping any old one), insert rows with executemany, run SQL, and drop every table it
created when the fixture ends. SQL is written with %s placeholders; SQLite's are converted."""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest

# The same servers as tests/conftest.py (its module cannot be imported from here: both are `conftest`).
PG_URL = os.environ.get("TABLESYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TABLESYNC_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")


@dataclass
class Db:
    """One database (dialect 'pg', 'mysql' or 'sqlite') and the tables created in it."""

    dialect: str
    url: str
    conn: Any
    created: list[str] = field(default_factory=list)

    def quote(self, name: str, *, with_params: bool = False) -> str:
        """A quoted identifier; with_params: for SQL run with parameters, where the PostgreSQL and
        MariaDB drivers read '%' as the start of a placeholder."""
        mark = "`" if self.dialect == "mysql" else '"'
        quoted = mark + name.replace(mark, mark * 2) + mark
        return quoted.replace("%", "%%") if with_params and self.dialect != "sqlite" else quoted

    def _sql(self, sql: str) -> str:
        if self.dialect == "sqlite":
            return sql.replace("%s", "?")
        return sql

    def _value(self, value: Any) -> Any:
        if self.dialect == "pg":
            return value
        if isinstance(value, uuid.UUID):
            return str(value)
        if self.dialect == "mysql":
            return value
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, dt.datetime):
            return value.isoformat(sep=" ")
        return value

    def execute(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        params = [self._value(v) for v in params]
        if self.dialect == "sqlite":
            cur = self.conn.execute(self._sql(sql), params)
            return cur.fetchall()
        if self.dialect == "pg":
            cur = self.conn.execute(sql, params or None)
            return cur.fetchall() if cur.description else []
        with self.conn.cursor() as cur:
            # pymysql %-formats the SQL only when it gets parameters: keep '%' literal otherwise.
            cur.execute(sql, params or None)
            return list(cur.fetchall())

    def insert(self, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        rows = [[self._value(v) for v in row] for row in rows]
        if not rows:
            return
        names = ", ".join(self.quote(c, with_params=True) for c in columns)
        marks = ", ".join(["%s"] * len(columns))
        sql = self._sql(f"INSERT INTO {self.quote(table, with_params=True)} ({names}) VALUES ({marks})")
        if self.dialect == "sqlite":
            with self.conn:  # one transaction: autocommit would sync the file once per row
                self.conn.execute("BEGIN")
                self.conn.executemany(sql, rows)
        elif self.dialect == "pg":
            with self.conn.cursor() as cur:
                cur.executemany(sql, rows)
        else:
            with self.conn.cursor() as cur:
                cur.executemany(sql, rows)

    def create(self, table: str, columns_ddl: str) -> None:
        self.drop(table)
        suffix = " ENGINE=InnoDB" if self.dialect == "mysql" else ""
        self.execute(f"CREATE TABLE {self.quote(table)} ({columns_ddl}){suffix}")
        self.created.append(table)

    def drop(self, table: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {self.quote(table)}")

    def count(self, table: str) -> int:
        return int(self.execute(f"SELECT COUNT(*) FROM {self.quote(table)}")[0][0])

    def drop_created(self) -> None:
        for table in reversed(self.created):
            try:
                self.drop(table)
            except (psycopg.Error, pymysql.Error, sqlite3.Error) as exc:  # pragma: no cover - cleanup only
                print(f"could not drop {table!r} in {self.dialect}: {exc}")
        self.created.clear()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path.resolve()}"  # an absolute path gives sqlite:////abs/file.db


def _sqlite_db(path: Path) -> Db:
    conn = sqlite3.connect(path, isolation_level=None)
    return Db("sqlite", sqlite_url(path), conn)


@dataclass
class Databases:
    pg: Db
    mysql: Db
    sqlite: Db  # one SQLite file (a target, or a source)
    sqlite2: Db  # a second SQLite file

    def __getitem__(self, name: str) -> Db:
        return {"pg": self.pg, "mysql": self.mysql, "sqlite": self.sqlite, "sqlite2": self.sqlite2}[name]

    def cleanup(self) -> None:
        for db in (self.pg, self.mysql, self.sqlite, self.sqlite2):
            db.drop_created()
        for db in (self.sqlite, self.sqlite2):
            db.conn.close()


def _databases(pg_admin: psycopg.Connection, mysql_admin: Any, directory: Path) -> Databases:
    return Databases(
        pg=Db("pg", PG_URL, pg_admin),
        mysql=Db("mysql", MYSQL_URL, mysql_admin),
        sqlite=_sqlite_db(directory / "one.db"),
        sqlite2=_sqlite_db(directory / "two.db"),
    )


@pytest.fixture
def dbs(pg_admin: psycopg.Connection, mysql_admin: Any, tmp_path: Path) -> Iterator[Databases]:
    """PostgreSQL, MariaDB and two SQLite files; tables created through them are dropped afterwards."""
    databases = _databases(pg_admin, mysql_admin, tmp_path)
    yield databases
    databases.cleanup()


@pytest.fixture(scope="module")
def module_dbs(
    pg_admin: psycopg.Connection, mysql_admin: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Databases]:
    """Like `dbs`, for tables shared by the tests of a module (read only once created)."""
    databases = _databases(pg_admin, mysql_admin, tmp_path_factory.mktemp("shared"))
    yield databases
    databases.cleanup()
