"""Verified TLS to the databases: the URL's sslmode and sslrootcert reach the drivers and mean what
libpq means by them. A throwaway PostgreSQL and a throwaway MariaDB (their own data directories,
on free ports of 127.0.0.1) serve TLS with a certificate made for the host name `localhost` by a
test CA: verify-full connects to `localhost` with that CA, and refuses another CA, or the address
127.0.0.1 (not the certificate's name); require connects unverified; the app's connectors verify by
default and name a missing CA bundle."""

from __future__ import annotations

import dataclasses
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tablesync.app.runtime import session_settings
from tablesync.connectors import open_connector
from tablesync.errors import ConnectError
from tablesync.urls import parse_url

pytestmark = pytest.mark.integration

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*args: str, user: str | None = None) -> None:
    command = ["runuser", "-u", user, "--", *args] if user and os.geteuid() == 0 else list(args)
    subprocess.run(command, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A directory the servers' own users (postgres, mysql) can reach (pytest's are root's only)."""
    path = Path(tempfile.mkdtemp(prefix="tablesync-tls-"))
    os.chmod(path, 0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _subdir(workdir: Path, name: str) -> Path:
    path = workdir / name
    path.mkdir()
    os.chmod(path, 0o755)
    return path


@pytest.fixture(scope="module")
def certs(workdir: Path) -> Path:
    """A CA, a server certificate for DNS:localhost signed by it, and a second, unrelated CA."""
    d = _subdir(workdir, "certs")
    for name in ("ca", "other-ca"):
        _run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=tablesync {name}",
             "-keyout", str(d / f"{name}.key"), "-out", str(d / f"{name}.pem"))  # fmt: skip
    _run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))  # fmt: skip
    (d / "san.ext").write_text("subjectAltName=DNS:localhost\n")
    _run("openssl", "x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"), "-CAkey", str(d / "ca.key"),
         "-CAcreateserial", "-days", "2", "-extfile", str(d / "san.ext"), "-out", str(d / "server.pem"))  # fmt: skip
    for path in d.iterdir():
        os.chmod(path, 0o644)
    return d


def _owned(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user, user)


@pytest.fixture(scope="module")
def tls_postgres(certs: Path, workdir: Path) -> Iterator[int]:
    if PG_BIN is None:
        pytest.fail("PostgreSQL's server binaries are missing")
    base = _subdir(workdir, "pg")
    _owned(base, "postgres")
    data = base / "data"
    data.mkdir()
    _owned(data, "postgres")
    _run(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", user="postgres")
    # Trust, except for the SCRAM test's user: the password check of setup/create_checker's verifier.
    (data / "pg_hba.conf").write_text(
        "local all all trust\n"
        "hostssl all tablesync_scram 127.0.0.1/32 scram-sha-256\n"
        "hostssl all tablesync_scram ::1/128 scram-sha-256\n"
        "host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"
    )
    key = data / "server.key"
    shutil.copy(certs / "server.key", key)
    shutil.copy(certs / "server.pem", data / "server.pem")
    os.chmod(key, 0o600)
    _owned(key, "postgres")
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -p {port} -c ssl=on -c ssl_cert_file=server.pem "
        f"-c ssl_key_file=server.key -k {base}"
    )
    _run(
        str(PG_BIN / "pg_ctl"), "-D", str(data), "-o", options, "-w", "-l", str(base / "log"), "start", user="postgres"
    )
    try:
        yield port
    finally:
        _run(str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop", user="postgres")


@pytest.fixture(scope="module")
def tls_mariadb(certs: Path, workdir: Path) -> Iterator[int]:
    base = _subdir(workdir, "mariadb")
    _owned(base, "mysql")
    data = base / "data"
    data.mkdir()
    _owned(data, "mysql")
    _run(
        "mariadb-install-db",
        "--no-defaults",
        f"--datadir={data}",
        "--user=mysql",
        "--auth-root-authentication-method=normal",
    )
    port = _free_port()
    server = subprocess.Popen(
        ["mariadbd", "--no-defaults", f"--datadir={data}", "--user=mysql", "--bind-address=127.0.0.1",
         f"--port={port}", f"--socket={base / 'sock'}", "--skip-grant-tables=0", f"--ssl-ca={certs / 'ca.pem'}",
         f"--ssl-cert={certs / 'server.pem'}", f"--ssl-key={certs / 'server.key'}", f"--log-error={base / 'err'}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    pytest.fail(f"the TLS MariaDB did not start: {(base / 'err').read_text()[-2000:]}")
                time.sleep(0.2)
        yield port
    finally:
        server.terminate()
        server.wait(timeout=60)


CASES = [
    # (host, sslmode, CA file, connects)
    ("localhost", "verify-full", "ca.pem", True),
    ("localhost", "verify-full", "other-ca.pem", False),  # another CA signed no such certificate
    ("127.0.0.1", "verify-full", "ca.pem", False),  # the certificate names localhost, not this address
    ("127.0.0.1", "verify-ca", "ca.pem", True),  # the chain only
    ("localhost", "require", "other-ca.pem", True),  # encrypted, not verified
]


@pytest.mark.parametrize(("host", "mode", "ca", "connects"), CASES)
def test_postgres_tls_modes(tls_postgres: int, certs: Path, host: str, mode: str, ca: str, connects: bool) -> None:
    url = f"postgresql://postgres@{host}:{tls_postgres}/postgres?sslmode={mode}&sslrootcert={certs / ca}"
    _check(url, connects, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", (True,))


@pytest.mark.parametrize(("host", "mode", "ca", "connects"), CASES)
def test_mariadb_tls_modes(tls_mariadb: int, certs: Path, host: str, mode: str, ca: str, connects: bool) -> None:
    url = f"mysql://root@{host}:{tls_mariadb}/mysql?sslmode={mode}&sslrootcert={certs / ca}"
    _check(url, connects, "SHOW STATUS LIKE 'Ssl_version'", None)


def _check(url: str, connects: bool, probe: str, expected: tuple[object, ...] | None) -> None:
    if not connects:
        with pytest.raises(ConnectError, match="cannot connect"):
            open_connector(url, connect_timeout=5)
        return
    connector = open_connector(url, connect_timeout=5)
    try:
        (row,) = connector.execute(probe, [])  # type: ignore[attr-defined]
        if expected is not None:
            assert tuple(row) == expected
        else:
            assert str(row[1]).startswith("TLS"), row  # the session is encrypted
    finally:
        connector.close()


def test_the_apps_connectors_verify_by_default(certs: Path, tmp_path: Path) -> None:
    url = parse_url("postgresql://checker@db.internal:5432/shop")
    default = session_settings(url, {"DATABASE_CA_BUNDLE": str(certs / "ca.pem"), "STATEMENT_TIMEOUT_SECONDS": "100"})
    assert (default.sslmode, default.sslrootcert, default.statement_timeout) == (
        "verify-full",
        str(certs / "ca.pem"),
        100,
    )
    local = session_settings(url, {"DATABASE_TLS": "disable"})
    assert local.sslmode == "disable"
    with pytest.raises(ConnectError, match="make rds-ca"):
        session_settings(url, {"DATABASE_CA_BUNDLE": str(tmp_path / "missing.pem")})


def test_create_checker_sends_postgres_only_a_scram_verifier(tls_postgres: int, certs: Path) -> None:
    """setup/create_checker.py sets a PostgreSQL password as its SCRAM-SHA-256 verifier (the server
    never sees the password): the server keeps the verifier as given, and it checks the password."""
    import importlib.util

    import psycopg

    spec = importlib.util.spec_from_file_location(
        "create_checker", Path(__file__).parents[2] / "setup" / "create_checker.py"
    )
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    password = script.new_password()
    verifier = script.scram_verifier(password)
    assert verifier.startswith("SCRAM-SHA-256$4096:") and password not in verifier
    with psycopg.connect(f"host=127.0.0.1 port={tls_postgres} user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS tablesync_scram")
        admin.execute(f"CREATE ROLE tablesync_scram LOGIN PASSWORD '{verifier}'")
        stored = admin.execute("SELECT rolpassword FROM pg_authid WHERE rolname = 'tablesync_scram'").fetchone()
        assert stored == (verifier,)

    def login(secret: str) -> None:
        tls = f"sslmode=verify-full&sslrootcert={certs / 'ca.pem'}"
        url = f"postgresql://tablesync_scram@localhost:{tls_postgres}/postgres?{tls}"
        open_connector(dataclasses.replace(parse_url(url), password=secret), connect_timeout=5).close()

    login(password)
    with pytest.raises(ConnectError, match="password authentication failed"):
        login(password[::-1])
