"""The connector operations over lambda:Invoke: every operation gives through the transport what
the connector gives directly; transient failures are retried, permanent ones raised at once by
their own class; answers too large for one invocation are fetched in parts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from app_support import InProcessLambda, make_sqlite, source_rows
from tablesync.app import transport
from tablesync.app.events import ConnectorRequest
from tablesync.app.transport import LambdaConnector, serve
from tablesync.connectors import open_connector
from tablesync.errors import SchemaError, TransientDatabaseError
from tablesync.models import Span, SplitRequest, TablePlan


@pytest.fixture
def lam(tmp_path: Path) -> Iterator[InProcessLambda]:
    make_sqlite(tmp_path / "db.sqlite", source_rows(1000))
    lam = InProcessLambda({"fn-db": f"sqlite:///{tmp_path / 'db.sqlite'}"})
    yield lam
    lam.close()


def _plan(conn: object) -> TablePlan:
    schema = conn.describe("orders")  # type: ignore[attr-defined]
    return TablePlan(table="orders", key=[schema.column("id")], columns=schema.columns[1:])


def test_every_operation_answers_as_the_connector_does(lam: InProcessLambda) -> None:
    remote = LambdaConnector("fn-db", lam)
    local = open_connector(lam.databases["fn-db"])
    try:
        plan = _plan(local)
        assert remote.describe("orders") == local.describe("orders")
        assert remote.list_tables("ord*") == ["orders"]
        assert remote.key_range(plan) == local.key_range(plan)
        remote.validate_key(plan)
        assert remote.chunk_bounds(plan, [100], 50, 5, False) == local.chunk_bounds(plan, [100], 50, 5, False)
        requests = [SplitRequest(lo=[1], hi=[200], step=50)]
        assert remote.split_points(plan, requests) == local.split_points(plan, requests)
        spans = [Span(lo=None, hi=[10], points=[[5]]), Span(lo=[500], hi=[600])]
        assert remote.checksum(plan, [1], [900]) == local.checksum(plan, [1], [900])
        assert remote.bucket_checksums(plan, spans) == local.bucket_checksums(plan, spans)
        assert remote.row_hashes(plan, spans) == [tuple(p) for p in local.row_hashes(plan, spans)]
        assert remote.fetch_rows(plan, [[3], [4]]) == local.fetch_rows(plan, [[3], [4]])
        assert remote.index_serves(plan, None, None) is True
    finally:
        local.close()


def test_transient_errors_are_retried_permanent_ones_raised_by_class(lam: InProcessLambda) -> None:
    failures = [TransientDatabaseError("lost connection"), TransientDatabaseError("lost connection")]
    lam.fail = lambda function, op: failures.pop() if failures and op == "describe" else None
    waits: list[float] = []
    remote = LambdaConnector("fn-db", lam, sleep=waits.append)
    assert remote.describe("orders").table == "orders"
    assert len(waits) == 2 and all(0 < w <= 8 for w in waits)
    assert [op for _, op in lam.calls] == ["describe"] * 3

    lam.calls.clear()
    with pytest.raises(SchemaError, match="unknown table 'nope'"):
        remote.describe("nope")
    assert len(lam.calls) == 1  # a permanent error is not retried

    lam.fail = lambda function, op: TransientDatabaseError("server gone")
    with pytest.raises(TransientDatabaseError, match="server gone"):
        remote.describe("orders")  # retried, then given up: the state machine's Retry takes over
    assert len(waits) == 2 + transport.INVOKE_ATTEMPTS - 1


def test_a_crashed_connector_is_a_transient_error() -> None:
    # A crash or a timeout is a failed invocation (Lambda's errorType), never an answer.
    def crashed(function: str, payload: bytes) -> tuple[bytes, str | None]:
        return b'{"errorType": "Runtime.ExitError", "errorMessage": "RequestId: x Error: Runtime exited"}', "Unhandled"

    with pytest.raises(TransientDatabaseError, match=r"connector fn failed: Runtime\.ExitError"):
        LambdaConnector("fn", crashed, sleep=lambda _: None).describe("orders")


def test_large_answers_are_fetched_in_parts(lam: InProcessLambda, monkeypatch: pytest.MonkeyPatch) -> None:
    remote = LambdaConnector("fn-db", lam)
    plan = _plan(remote)
    spans = [Span(lo=[i], hi=[i + 100]) for i in range(1, 1000, 100)]
    whole = remote.row_hashes(plan, spans)
    monkeypatch.setattr(transport, "MAX_ANSWER_BYTES", 3_000)  # about 100 rows per answer
    lam.calls.clear()
    assert remote.row_hashes(plan, spans) == whole
    assert len(lam.calls) > 10  # split down to single spans
    monkeypatch.setattr(transport, "MAX_ANSWER_BYTES", 100)
    with pytest.raises(transport.AnswerTooLargeError):
        remote.row_hashes(plan, spans[:1])  # one span too large: refused, never truncated


def test_bad_requests_are_answered_as_input_errors(lam: InProcessLambda) -> None:
    conn = open_connector(lam.databases["fn-db"])
    try:
        answer = serve(ConnectorRequest(op="drop_table", args={}), conn)
        assert answer == {"error": {"type": "InputError", "message": "unknown connector operation 'drop_table'"}}
        answer = serve(ConnectorRequest(op="describe", args={"table": "orders", "sql": "x"}), conn)
        assert answer["error"]["type"] == "InputError" and "unknown argument" in answer["error"]["message"]
        answer = serve(ConnectorRequest(op="chunk_bounds", args={"plan": {}, "size": "many"}), conn)
        assert answer["error"]["message"].startswith("bad arguments for chunk_bounds")
        answer = serve(ConnectorRequest(op="describe", args={"table": 'x" ; DROP TABLE orders; --'}), conn)
        assert answer["error"]["type"] == "SchemaError" and "unknown table" in answer["error"]["message"]
    finally:
        assert conn.describe("orders").table == "orders"  # identifiers are quoted: nothing ran
        conn.close()
