"""Database outages mid-run, on the real servers behind a proxy the test takes away (tests/outage.py):
the diff waits the outage out on new connections and finishes exact, reporting each difference
once; an outage longer than --max-outage ends the run with one line and the progress kept; and
every class of connection error is classed as an outage to wait out or a refusal to report."""

from __future__ import annotations

import json
import os
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from outage import OutageProxy
from tablesync.cli import main
from tablesync.connectors import open_connector
from tablesync.engine import Differ
from tablesync.errors import ConnectError, DatabaseUnavailableError, TransientDatabaseError
from tablesync.models import DiffOptions
from test_diff import Diff, found

pytestmark = pytest.mark.integration

ROWS = 30_000
PORTS = {"pg": 5432, "mysql": 3306}


def _load(dbs: Any, table: str) -> Diff:
    ddl = {"pg": "id int PRIMARY KEY, v int, note text", "mysql": "id int PRIMARY KEY, v int, note text"}
    rows = [(i, i % 97, f"n{i}") for i in range(1, ROWS + 1)]
    target = [r for r in rows if r[0] % 1000 != 7]
    target = [(i, -v if i % 1000 == 11 else v, n) for i, v, n in target] + [(ROWS + 1, 0, "extra")]
    for name, data in (("pg", rows), ("mysql", target)):
        dbs[name].create(table, ddl[name])
        dbs[name].insert(table, ["id", "v", "note"], data)
    keys = range(1, ROWS + 1)
    return Diff({(i,) for i in keys if i % 1000 == 7}, {(ROWS + 1,)}, {(i,) for i in keys if i % 1000 == 11})


def _via(proxy: OutageProxy, url: str) -> str:
    host_port = url.split("@", 1)[1].split("/", 1)[0]
    return url.replace(host_port, f"127.0.0.1:{proxy.port}")


@pytest.mark.parametrize("away", ["pg", "mysql"])
def test_an_outage_mid_run_is_waited_out_and_the_answer_is_exact(dbs: Any, table_name: str, away: str) -> None:
    expected = _load(dbs, table_name)
    proxy = OutageProxy(PORTS[away])
    urls = {"pg": dbs.pg.url, "mysql": dbs.mysql.url}
    urls[away] = _via(proxy, urls[away])
    outages: list[float] = []
    reported: list[tuple[str, tuple[Any, ...]]] = []
    states = 0

    def on_state(state: Any) -> None:
        nonlocal states
        states += 1
        if states == 3:  # a few chunks in: the database goes away for two seconds
            proxy.down()
            threading.Timer(2.0, proxy.up).start()

    options = DiffOptions(chunk_size=500, max_chunk_size=2000)
    try:
        with Differ(
            table_name, lambda: open_connector(urls["pg"]), [lambda: open_connector(urls["mysql"])], options
        ) as differ:
            state = differ.run(
                step_seconds=0,  # one round a step: the outage meets the run mid-way
                on_state=on_state,
                on_difference=lambda t, kind, key: reported.append((kind, tuple(key))),
                max_outage=30,
                on_outage=lambda seconds, exc: outages.append(seconds),
            )
    finally:
        proxy.close()
    assert outages, "the outage was met"
    tally = state.targets[0]
    got = found({"missing": tally.missing, "extra": tally.extra, "differing": tally.differing})
    assert got == expected
    assert len(reported) == len(set(reported)) == expected.total  # each difference once
    assert state.source_rows == ROWS


def test_an_outage_longer_than_max_outage_ends_the_run_and_keeps_the_progress(
    dbs: Any, table_name: str, tmp_path: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tablesync import cli

    expected = _load(dbs, table_name)
    proxy = OutageProxy(PORTS["mysql"])
    target = _via(proxy, dbs.mysql.url)
    state_file = tmp_path / "run.state"
    saves = 0
    save = cli.save_state

    def cut_after_the_first_save(path: Any, state: Any) -> None:
        nonlocal saves
        save(path, state)
        saves += 1
        if saves == 1:
            proxy.down()  # and it stays down

    monkeypatch.setattr(cli, "save_state", cut_after_the_first_save)
    monkeypatch.setattr(cli, "STEP_SECONDS", 0)  # one round a step, each saved
    args = ["diff", dbs.pg.url, target, "--table", table_name, "--chunk-size", "500", "--max-chunk-size", "2000"]
    args += ["--state-file", str(state_file), "--max-outage", "2", "--no-progress", "--format", "json"]
    started = time.monotonic()
    try:
        code = main(args)
    finally:
        proxy.up()
    err = capsys.readouterr().err
    assert code == 2 and time.monotonic() - started < 60
    lines = err.strip().splitlines()
    assert lines[0].startswith("tablesync: warning:") and "waiting up to --max-outage 2 s" in lines[0]
    assert lines[-1].startswith("tablesync: error: a database stayed away longer than --max-outage 2 s")
    assert str(state_file) in lines[-1] and "Traceback" not in err
    assert state_file.exists()  # the progress is kept ...
    monkeypatch.setattr(cli, "save_state", save)
    code = main(args)  # ... and the resume finishes exact
    result = json.loads(capsys.readouterr().out)
    assert code == 1 and found(result["targets"][0]) == expected
    proxy.close()


# --- every class of connection error -------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "unavailable"),
    [
        ("postgresql://postgres@127.0.0.1:1/test", True),  # refused
        ("postgresql://postgres@no-such-host.invalid:5432/test", True),  # no name (a failover's DNS)
        ("postgresql://nosuchrole@127.0.0.1:5432/test", False),  # refused these credentials
        ("postgresql://postgres@127.0.0.1:5432/nosuchdb", False),
        ("postgresql://postgres@127.0.0.1:5432/test?sslmode=require", False),  # no TLS: configuration
        ("mysql://root@127.0.0.1:1/test", True),
        ("mysql://root@no-such-host.invalid:3306/test", True),
        ("mysql://nosuchuser:x@127.0.0.1:3306/test", False),
        ("mysql://root@127.0.0.1:3306/nosuchdb", False),
        ("mysql://root@127.0.0.1:3306/test?sslmode=require", False),
    ],
)
def test_connection_errors_are_classed(url: str, unavailable: bool) -> None:
    expected = DatabaseUnavailableError if unavailable else ConnectError
    with pytest.raises((ConnectError, TransientDatabaseError)) as raised:
        open_connector(url, connect_timeout=2).close()
    assert type(raised.value) is expected, raised.value
    assert isinstance(raised.value, TransientDatabaseError) is unavailable


@pytest.mark.parametrize("engine", ["pg", "mysql"])
def test_a_server_going_away_mid_query_and_refusing_reconnects_is_an_outage(engine: str, dbs: Any) -> None:
    proxy = OutageProxy(PORTS[engine])
    try:
        connector = open_connector(_via(proxy, dbs[engine].url))
        proxy.down()
        with pytest.raises(TransientDatabaseError):
            connector.execute("SELECT 1", [])  # type: ignore[attr-defined]
        with pytest.raises(DatabaseUnavailableError, match="cannot reach"):
            open_connector(_via(proxy, dbs[engine].url), connect_timeout=2)
        proxy.up()
        open_connector(_via(proxy, dbs[engine].url)).close()
    finally:
        proxy.close()


# --- a server in a state the test cannot put the shared servers in --------------------------------
# During a failover or a restart a server answers a connection attempt with "starting up",
# "shutting down" or "too many clients" before any authentication; a black-holed network answers
# nothing. These listeners send exactly those wire-protocol answers (PostgreSQL's ErrorResponse to
# the startup packet, MariaDB's error packet in place of its handshake) to the real drivers.
def _pg_refusal(code: str, message: str) -> bytes:
    fields = b"".join(
        tag + text.encode() + b"\0" for tag, text in ((b"S", "FATAL"), (b"V", "FATAL"), (b"C", code), (b"M", message))
    )
    body = fields + b"\0"
    return b"E" + struct.pack("!i", len(body) + 4) + body


def _mysql_refusal(errno: int, message: str) -> bytes:
    body = b"\xff" + struct.pack("<H", errno) + message.encode()
    return struct.pack("<I", len(body))[:3] + b"\0" + body


def _serve_once(answer: Callable[[socket.socket], None]) -> tuple[int, threading.Thread]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        with listener:
            listener.settimeout(10)
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                answer(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    return listener.getsockname()[1], thread


def _pg_answer(refusal: bytes | None) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        conn.settimeout(10)
        while True:  # SSLRequest / GSSENCRequest are declined ('N'), the startup packet is answered
            head = conn.recv(8)
            if len(head) < 8:
                return
            length, code = struct.unpack("!ii", head)
            if code in (80877103, 80877104):
                conn.sendall(b"N")
                continue
            conn.recv(length - 8)
            break
        if refusal is None:
            time.sleep(5)  # says nothing: the client's connect timeout must end the attempt
        else:
            conn.sendall(refusal)

    return answer


def _mysql_answer(refusal: bytes | None) -> Callable[[socket.socket], None]:
    def answer(conn: socket.socket) -> None:
        if refusal is None:
            time.sleep(5)
        else:
            conn.sendall(refusal)

    return answer


@pytest.mark.parametrize(
    ("engine", "refusal"),
    [
        ("pg", _pg_refusal("57P03", "the database system is starting up")),
        ("pg", _pg_refusal("57P03", "the database system is shutting down")),
        ("pg", _pg_refusal("57P03", "the database system is not yet accepting connections")),
        ("pg", _pg_refusal("53300", "sorry, too many clients already")),
        ("pg", None),  # silence: a timeout
        ("mysql", _mysql_refusal(1040, "Too many connections")),
        ("mysql", _mysql_refusal(1053, "Server shutdown in progress")),
        ("mysql", None),
    ],
    ids=[
        "pg-starting",
        "pg-shutting-down",
        "pg-not-yet",
        "pg-too-many",
        "pg-silent",
        "mysql-too-many",
        "mysql-shutdown",
        "mysql-silent",
    ],
)
def test_a_server_starting_stopping_full_or_silent_is_an_outage(engine: str, refusal: bytes | None) -> None:
    port, thread = _serve_once(_pg_answer(refusal) if engine == "pg" else _mysql_answer(refusal))
    url = f"postgresql://postgres@127.0.0.1:{port}/test" if engine == "pg" else f"mysql://root@127.0.0.1:{port}/test"
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match="cannot reach"):
        open_connector(url, connect_timeout=1).close()
    assert time.monotonic() - started < 4  # the connect timeout ended a silent server's attempt
    thread.join(timeout=10)


@pytest.mark.parametrize("engine", ["pg", "mysql"])
def test_connections_notice_a_vanished_peer_within_a_minute(engine: str, dbs: Any) -> None:
    """TCP keepalives (idle 30 s, then 3 probes 10 s apart) on both drivers' sockets: a host lost
    mid-query in a failover becomes a lost connection, an outage to wait out, not a two-hour hang."""
    connector = open_connector(dbs[engine].url)
    try:
        conn: Any = connector.conn  # type: ignore[attr-defined]
        fd = conn.fileno() if engine == "pg" else conn._sock.fileno()
        sock = socket.socket(fileno=os.dup(fd))
        try:
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 10
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 3
        finally:
            sock.close()
    finally:
        connector.close()


@pytest.mark.parametrize(("engine", "sleep"), [("pg", "SELECT pg_sleep(5)"), ("mysql", "SELECT SLEEP(5)")])
def test_a_statement_longer_than_statement_timeout_is_stopped_by_the_server(engine: str, sleep: str, dbs: Any) -> None:
    """The URL's statement_timeout (the app's DatabaseStatementTimeout) is set in every session,
    and the server enforces it: a statement running longer is cancelled in about that time, a
    DatabaseError naming the setting, not retried (it would run as long again)."""
    url = f"{dbs[engine].url}?statement_timeout=1"
    connector = open_connector(url)
    try:
        started = time.monotonic()
        with pytest.raises(Exception) as raised:
            connector.execute(sleep, [])  # type: ignore[attr-defined]
        elapsed = time.monotonic() - started
    finally:
        connector.close()
    assert type(raised.value).__name__ == "DatabaseError", raised.value
    assert "(statement_timeout 1.0 s)" in str(raised.value)
    assert elapsed < 4, elapsed


def test_the_cli_waits_out_a_database_away_during_its_repair(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not only the walk: the MariaDB target goes away in the middle of the repair (6 s, after its
    second batch: longer than the repair's own few quick retries); the run waits it out, the repair ends
    with the target equal to the source, and a diff then finds nothing."""
    from tablesync import repair as repair_module

    expected = _load(dbs, table_name)
    proxy = OutageProxy(PORTS["mysql"])
    target = _via(proxy, dbs.mysql.url)
    batches = 0
    locked = repair_module._locked_batch

    def cut_after_the_second_batch(*args: Any, **kwargs: Any) -> Any:
        nonlocal batches
        done = locked(*args, **kwargs)
        batches += 1
        if batches == 2:
            proxy.down()
            threading.Timer(6.0, proxy.up).start()
        return done

    monkeypatch.setattr(repair_module, "_locked_batch", cut_after_the_second_batch)
    args = ["diff", dbs.pg.url, target, "--table", table_name, "--no-progress", "--format", "json"]
    repair = ["--write-missing", "--write-differing", "--delete-extra", "--write-batch", "10", "--max-outage", "60"]
    try:
        code = main([*args, *repair])
        out, err = capsys.readouterr()
        assert code == 0, err
        (done,) = json.loads(out)["repairs"]
        assert (done["inserted"], done["deleted"], done["updated"]) == (
            len(expected.missing),
            len(expected.extra),
            len(expected.differing),
        )
        assert "Traceback" not in err
        assert batches > 2
        assert main(args) == 0
    finally:
        proxy.close()
