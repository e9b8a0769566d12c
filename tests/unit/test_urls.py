"""Database URLs: dialects, parts, passwords from the environment or a file, redaction."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tablesync.errors import InputError
from tablesync.urls import DatabaseUrl, parse_url

SECRET = "S3cr#t/pa:ss@w0rd"
SECRET_QUOTED = "S3cr%23t%2Fpa%3Ass%40w0rd"


# --- server URLs -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("scheme", "dialect"),
    [
        ("postgresql", "postgresql"),
        ("postgres", "postgresql"),
        ("POSTGRESQL", "postgresql"),
        ("mysql", "mysql"),
        ("mariadb", "mysql"),
        ("MariaDB", "mysql"),
    ],
)
def test_server_url_parts(scheme: str, dialect: str) -> None:
    url = parse_url(f"{scheme}://alice:hunter2@db.example.com:6543/shop")
    assert url == DatabaseUrl(
        dialect=dialect,
        host="db.example.com",
        port=6543,
        user="alice",
        password="hunter2",
        database="shop",
    )
    assert url.path is None


def test_optional_parts_are_none() -> None:
    url = parse_url("postgresql://db.example.com/shop")
    assert (url.host, url.port, url.user, url.password, url.database) == ("db.example.com", None, None, None, "shop")
    url = parse_url("mysql://bob@10.0.0.5/app")
    assert (url.host, url.port, url.user, url.password, url.database) == ("10.0.0.5", None, "bob", None, "app")


def test_percent_encoded_parts_are_decoded() -> None:
    url = parse_url(f"postgresql://us%40er:{SECRET_QUOTED}@h:5432/my%20db")
    assert url.user == "us@er"
    assert url.password == SECRET
    assert url.database == "my db"


def test_ipv6_host() -> None:
    url = parse_url("postgresql://u:pw@[::1]:5432/db")
    assert url.host == "::1"
    assert url.port == 5432


def test_host_is_lowercased_database_is_not() -> None:
    url = parse_url("mysql://u@DB.Example.COM/MyDatabase")
    assert url.host == "db.example.com"
    assert url.database == "MyDatabase"


def test_unknown_query_parameters_are_refused() -> None:
    with pytest.raises(InputError, match="unknown URL option 'application_name'"):
        parse_url("postgresql://u:pw@h/db?sslmode=require&application_name=x")


def test_tls_and_timeout_options(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    url = parse_url(f"mysql://u@h/db?sslmode=verify-full&sslrootcert={ca}&statement_timeout=30")
    assert (url.sslmode, url.sslrootcert, url.statement_timeout) == ("verify-full", str(ca), 30.0)
    default = parse_url("postgresql://u@h/db")
    assert (default.sslmode, default.sslrootcert, default.statement_timeout) == ("prefer", None, None)
    with pytest.raises(InputError, match="sslmode must be one of"):
        parse_url("postgresql://u@h/db?sslmode=allow-anything")
    with pytest.raises(InputError, match="sslrootcert"):
        parse_url(f"postgresql://u@h/db?sslmode=verify-ca&sslrootcert={tmp_path / 'missing.pem'}")
    with pytest.raises(InputError, match="statement_timeout"):
        parse_url("postgresql://u@h/db?statement_timeout=soon")


# --- sqlite ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("sqlite:///relative.db", "relative.db"),
        ("sqlite:///dir/sub/file.sqlite3", "dir/sub/file.sqlite3"),
        ("sqlite:////absolute/path.db", "/absolute/path.db"),
        ("sqlite:////tmp/with%20space.db", "/tmp/with space.db"),
        ("SQLITE:///x.db", "x.db"),
    ],
)
def test_sqlite_urls(text: str, path: str) -> None:
    url = parse_url(text)
    assert url == DatabaseUrl(dialect="sqlite", path=path)
    assert url.host is None and url.password is None and url.database is None


def test_sqlite_redacted_round_trips() -> None:
    for text in ("sqlite:///relative.db", "sqlite:////absolute/path.db"):
        url = parse_url(text)
        assert url.redacted() == text
        assert parse_url(url.redacted()) == url


@pytest.mark.parametrize("text", ["sqlite://", "sqlite:///", "sqlite:"])
def test_sqlite_needs_a_file(text: str) -> None:
    with pytest.raises(InputError, match="sqlite"):
        parse_url(text)


# --- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        f"postgresql://alice:{SECRET_QUOTED}@db.example.com:5432/shop",
        f"postgres://alice:{SECRET_QUOTED}@db.example.com/shop",
        f"mysql://root:{SECRET_QUOTED}@127.0.0.1:3306/test",
        f"mariadb://:{SECRET_QUOTED}@127.0.0.1:3306/test",
        "postgresql://alice:hunter2@db.example.com:5432/shop",
    ],
)
def test_redacted_never_contains_the_password(text: str) -> None:
    url = parse_url(text)
    assert url.password
    shown = url.redacted()
    assert url.password not in shown
    assert SECRET_QUOTED not in shown
    assert "***" in shown
    assert url.password not in repr(url)
    assert url.password not in str(url)


def test_redacted_forms() -> None:
    assert parse_url("postgres://alice:pw@h:5432/db").redacted() == "postgresql://alice:***@h:5432/db"
    assert parse_url("mariadb://bob:pw@h/db").redacted() == "mysql://bob:***@h/db"
    assert parse_url("mysql://bob@h:3306/db").redacted() == "mysql://bob@h:3306/db"
    assert parse_url("postgresql://h/db").redacted() == "postgresql://h/db"


def test_redacted_hides_passwords_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TS_TEST_PW", SECRET)
    from_env = parse_url("postgresql://alice@h:5432/db?password_env=TS_TEST_PW")
    assert from_env.redacted() == "postgresql://alice:***@h:5432/db"
    secret_file = tmp_path / "pw.txt"
    secret_file.write_text(SECRET + "\n")
    from_file = parse_url(f"mysql://alice@h/db?password_file={secret_file}")
    assert from_file.redacted() == "mysql://alice:***@h/db"
    for url in (from_env, from_file):
        assert SECRET not in url.redacted()
        assert SECRET not in repr(url)


# --- passwords from the environment or a file -----------------------------------------------


def test_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_TEST_PW", SECRET)
    url = parse_url("postgresql://alice@h:5432/db?password_env=TS_TEST_PW")
    assert url.password == SECRET
    assert url.database == "db"
    assert url.user == "alice"


def test_password_env_wins_over_url_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_TEST_PW", "from-env")
    assert parse_url("mysql://alice:inline@h/db?password_env=TS_TEST_PW").password == "from-env"


def test_password_env_may_be_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TS_TEST_PW", "")
    assert parse_url("mysql://alice@h/db?password_env=TS_TEST_PW").password == ""


def test_missing_password_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TS_TEST_MISSING_PW", raising=False)
    with pytest.raises(InputError, match="TS_TEST_MISSING_PW") as info:
        parse_url("postgresql://alice@h/db?password_env=TS_TEST_MISSING_PW")
    assert "\n" not in str(info.value)


def test_password_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw.txt"
    secret_file.write_text(f"  {SECRET}\n\n")
    url = parse_url(f"postgresql://alice@h/db?password_file={secret_file}")
    assert url.password == SECRET


def test_password_file_with_percent_encoded_path(tmp_path: Path) -> None:
    secret_file = tmp_path / "my pw&.txt"
    secret_file.write_text(SECRET)
    encoded = str(secret_file).replace("%", "%25").replace(" ", "%20").replace("&", "%26")
    assert parse_url(f"mysql://alice@h/db?password_file={encoded}").password == SECRET


def test_missing_password_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"
    with pytest.raises(InputError, match="password_file") as info:
        parse_url(f"postgresql://alice@h/db?password_file={missing}")
    assert "\n" not in str(info.value)


def test_password_file_that_is_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="password_file"):
        parse_url(f"postgresql://alice@h/db?password_file={tmp_path}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_password_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "pw.txt"
    secret_file.write_text(SECRET)
    secret_file.chmod(0)
    try:
        with pytest.raises(InputError, match="password_file") as info:
            parse_url(f"postgresql://alice@h/db?password_file={secret_file}")
    finally:
        secret_file.chmod(0o600)
    assert SECRET not in str(info.value)


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "oracle://u:secretpw@h/db",
        "http://h/db",
        "mssql://u@h/db",
        "sqlite3:///x.db",
        "postgresq://u:secretpw@h/db",
        "just-a-name",
        "",
        "/tmp/file.db",
    ],
)
def test_bad_scheme(text: str) -> None:
    with pytest.raises(InputError, match="scheme") as info:
        parse_url(text)
    message = str(info.value)
    assert "\n" not in message
    assert "secretpw" not in message


@pytest.mark.parametrize(
    "text",
    ["postgresql://u:secretpw@h:5432", "postgresql://u:secretpw@h:5432/", "mysql://u@h", "mariadb://h/", "postgres://"],
)
def test_missing_database(text: str) -> None:
    with pytest.raises(InputError, match="database") as info:
        parse_url(text)
    assert "secretpw" not in str(info.value)


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u:secretpw@h:abc/db",
        "postgresql://u:secretpw@h:99999/db",
        "mysql://u:secretpw@h:-1/db",
        "mysql://u:secretpw@h:3306x/db",
    ],
)
def test_bad_port(text: str) -> None:
    with pytest.raises(InputError, match="port") as info:
        parse_url(text)
    assert "secretpw" not in str(info.value)


def test_unreadable_url() -> None:
    with pytest.raises(InputError) as info:
        parse_url("postgresql://u:secretpw@[::1/db")
    assert "secretpw" not in str(info.value)


# --- scrub ---------------------------------------------------------------------------------------


def test_scrub_removes_the_password() -> None:
    url = parse_url(f"postgresql://alice:{SECRET_QUOTED}@h/db")
    message = f'FATAL: password authentication failed for "alice" ({SECRET}), again {SECRET}'
    scrubbed = url.scrub(message)
    assert SECRET not in scrubbed
    assert scrubbed == 'FATAL: password authentication failed for "alice" (***), again ***'


def test_scrub_without_password_changes_nothing() -> None:
    text = "connection refused: h:5432"
    assert parse_url("postgresql://alice@h/db").scrub(text) == text
    assert parse_url("sqlite:///x.db").scrub(text) == text
    assert parse_url("postgresql://alice:@h/db").scrub(text) == text
