"""setup/create_checker.py on the real servers: the user it creates can read (a connector opened
from the secret it stores checks a table) and cannot write; a second run rotates the password;
--dry-run changes nothing and shows no password."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import psycopg
import pytest
from app_support import ROOT, fake_aws_env
from moto import mock_aws
from tablesync.app.secrets import url_from_secret
from tablesync.connectors import open_connector
from tablesync.errors import ConnectError, DatabaseError
from tablesync.models import TablePlan

pytestmark = pytest.mark.integration
USER = "ts_checker_test"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("create_checker", ROOT / "setup" / "create_checker.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake_aws_env(monkeypatch)
    with mock_aws():
        yield boto3.client("secretsmanager")


@pytest.fixture
def cleanup(pg_admin: psycopg.Connection, mysql_admin: Any) -> Iterator[None]:
    yield
    if pg_admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [USER]).fetchone():
        pg_admin.execute(f"DROP OWNED BY {USER}")  # its grants and default privileges
        pg_admin.execute(f"DROP ROLE {USER}")
    with mysql_admin.cursor() as cur:
        cur.execute(f"DROP USER IF EXISTS {USER}@'%'")


def _check(secret: dict[str, Any], table: str) -> None:
    conn = open_connector(url_from_secret(secret, "test"), read_only=False)
    try:
        schema = conn.describe(table)
        plan = TablePlan(table=table, key=[schema.column("id")], columns=schema.columns[1:])
        assert conn.checksum(plan, None, None).count == 3
        with pytest.raises(DatabaseError):
            conn.execute(f"INSERT INTO {conn.table_ref(table)} VALUES (4, 'x')", [])
    finally:
        conn.close()


@pytest.mark.usefixtures("cleanup")
@pytest.mark.parametrize("engine", ["pg", "mysql"])
def test_read_only_checker_and_its_secret(
    dbs: Any, table_name: str, secrets: Any, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = dbs[engine]
    db.create(table_name, "id int PRIMARY KEY, v text")
    db.insert(table_name, ["id", "v"], [(1, "a"), (2, "b"), (3, "c")])
    script = _script()
    admin = "postgresql://postgres@127.0.0.1:5432/test" if engine == "pg" else "mysql://root@127.0.0.1:3306/test"
    name = f"tablesync/test/{engine}"
    assert script.main(["--admin-url", admin, "--user", USER, "--secret-name", name]) == 0
    first = json.loads(secrets.get_secret_value(SecretId=name)["SecretString"])
    assert first["username"] == USER and len(first["password"]) == 48
    assert first["engine"] == ("postgres" if engine == "pg" else "mysql")
    out = capsys.readouterr().out
    assert first["password"] not in out
    _check(first, table_name)

    assert script.main(["--admin-url", admin, "--user", USER, "--secret-name", name]) == 0  # rotates
    second = json.loads(secrets.get_secret_value(SecretId=name)["SecretString"])
    assert second["password"] != first["password"]
    _check(second, table_name)
    if engine == "mysql":  # (the test PostgreSQL trusts local connections: no password is checked)
        with pytest.raises(ConnectError, match="Access denied"):  # the old password is gone
            open_connector(url_from_secret(first, "test")).close()


def test_dry_run_changes_nothing_and_masks_the_password(
    pg_admin: psycopg.Connection, secrets: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    script = _script()
    code = script.main(
        ["--admin-url", "postgresql://postgres@127.0.0.1:5432/test", "--user", USER, "--secret-name", "x", "--dry-run"]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert f"CREATE ROLE \"{USER}\" WITH LOGIN PASSWORD '********'" in out
    assert 'GRANT SELECT ON ALL TABLES IN SCHEMA "public"' in out
    assert pg_admin.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [USER]).fetchone() is None
    assert secrets.list_secrets()["SecretList"] == []


def test_bad_admin_url_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert _script().main(["--admin-url", "sqlite:///x.db", "--secret-name", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SQLite has no users" in err


@pytest.mark.usefixtures("cleanup")
@pytest.mark.parametrize("engine", ["pg", "mysql"])
def test_writer_user_for_repairs(dbs: Any, table_name: str, secrets: Any, engine: str) -> None:
    db = dbs[engine]
    db.create(table_name, "id int PRIMARY KEY, v text")
    admin = "postgresql://postgres@127.0.0.1:5432/test" if engine == "pg" else "mysql://root@127.0.0.1:3306/test"
    args = ["--admin-url", admin, "--user", USER, "--secret-name", f"tablesync/test/{engine}-writer", "--writer"]
    assert _script().main(args) == 0
    secret = json.loads(secrets.get_secret_value(SecretId=args[5])["SecretString"])
    conn = open_connector(url_from_secret(secret, "test"), read_only=False)
    try:
        conn.execute(f"INSERT INTO {conn.table_ref(table_name)} VALUES (4, 'x')", [])
        conn.execute(f"UPDATE {conn.table_ref(table_name)} SET v = 'y'", [])
        conn.execute(f"DELETE FROM {conn.table_ref(table_name)}", [])
        with pytest.raises(DatabaseError):  # writes rows, never the schema
            conn.execute(f"DROP TABLE {conn.table_ref(table_name)}", [])
    finally:
        conn.close()


def test_connection_limit_and_client_host(mysql_admin: Any, pg_admin: Any, capsys: pytest.CaptureFixture[str]) -> None:
    script = _script()
    args = ["--user", USER, "--secret-name", "x", "--dry-run", "--connection-limit", "5"]
    assert script.main(["--admin-url", "mysql://root@127.0.0.1:3306/test", *args, "--client-host", "10.0.%"]) == 0
    out = capsys.readouterr().out
    assert f"CREATE USER IF NOT EXISTS '{USER}'@'10.0.%' IDENTIFIED BY '********'" in out
    assert "WITH MAX_USER_CONNECTIONS 5" in out and f"TO '{USER}'@'10.0.%'" in out
    assert script.main(["--admin-url", "postgresql://postgres@127.0.0.1:5432/test", *args]) == 0
    assert f"CREATE ROLE \"{USER}\" WITH LOGIN PASSWORD '********' CONNECTION LIMIT 5" in capsys.readouterr().out
    assert script.main(["--admin-url", "postgresql://postgres@127.0.0.1:5432/test", *args[:-1], "0"]) == 2
    assert "--connection-limit must be from 1 to 1000" in capsys.readouterr().err
