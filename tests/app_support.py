"""Shared pieces of the application's tests: template.yaml read as data (so moto resources get the
template's own schema and can't drift from it), SQLite databases with drift, and connectors that
reach them through the real Lambda transport (JSON both ways, errors by name) run in-process."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from tablesync.app import serving
from tablesync.app.events import ConnectorRequest
from tablesync.app.transport import LambdaConnector
from tablesync.connectors import Connector, open_connector
from tablesync.errors import InputError, TablesyncError

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short tags (!Ref, !Sub, ...) read as {"Fn::X": ...} data."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def fake_aws_env(monkeypatch: Any, **extra: str) -> None:
    """Credentials and a region for moto, and no emulator endpoint inherited from the shell."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        **extra,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@dataclass
class Context:
    """What a handler reads of the Lambda context."""

    function_name: str = "tablesync-test"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:tablesync-test"
    aws_request_id: str = "0f4e5c2a-req"
    remaining_ms: int = 120_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def handler(name: str) -> ModuleType:
    """functions/<name>/app.py as its own module (every function's module is called `app`)."""
    spec = importlib.util.spec_from_file_location(f"fn_{name}", ROOT / "functions" / name / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def template() -> dict[str, Any]:
    data: dict[str, Any] = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)
    return data


def create_checkpoint_table(dynamodb: Any, name: str) -> None:
    """The checkpoint table exactly as template.yaml declares it."""
    properties = template()["Resources"]["CheckpointTable"]["Properties"]
    dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=properties["AttributeDefinitions"],
        KeySchema=properties["KeySchema"],
        BillingMode=properties["BillingMode"],
    )
    ttl = properties["TimeToLiveSpecification"]
    dynamodb.update_time_to_live(
        TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": ttl["Enabled"]}
    )


def make_sqlite(path: Path, rows: dict[int, tuple[Any, ...]], table: str = "orders") -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(f'CREATE TABLE "{table}" (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, note TEXT)')
        conn.executemany(f'INSERT INTO "{table}" VALUES (?, ?, ?)', rows.values())
    conn.close()


def drifted(rows: dict[int, tuple[Any, ...]]) -> dict[int, tuple[Any, ...]]:
    """A copy with known drift: ids 5 and 1500 missing, 77 and 2999 changed, 5000 extra."""
    target = {k: v for k, v in rows.items() if k not in (5, 1500)}
    for key in (77, 2999):
        target[key] = (key, rows[key][1] + 1, rows[key][2])
    target[5000] = (5000, 0, "extra")
    return target


def source_rows(count: int = 3000) -> dict[int, tuple[Any, ...]]:
    return {i: (i, i % 13, None if i % 9 == 0 else f"note {i}") for i in range(1, count + 1)}


class InProcessLambda:
    """Stands for lambda:Invoke of connector and writer functions: the request and answer go
    through JSON and the real `serve_connector` / `serve_writer` answer on a real connector. A
    database's connector is the function named like it, its writer `<name>.writer`, which writes
    only what `writable[name]` (the deployment's allow-list) lets it. `fail` injects errors: a
    tablesync error is answered in-band as the handlers do, anything else is a crashed invocation."""

    def __init__(self, databases: dict[str, str], writable: dict[str, str] | None = None) -> None:
        self.databases = databases  # database (connector function) name -> database URL
        self.writable = writable or {}  # database name -> its writable tables (TABLE:ACTION+...)
        # Concurrent invocations run in separate containers: one connection per calling thread.
        self.connectors: dict[tuple[str, int], Connector] = {}
        self._lock = threading.Lock()
        self.calls: list[tuple[str, str]] = []
        self.fail: Callable[[str, str], Exception | None] = lambda function, op: None

    def __call__(self, function: str, payload: bytes) -> tuple[bytes, str | None]:
        request = ConnectorRequest.model_validate(json.loads(payload))
        with self._lock:
            self.calls.append((function, request.op))
        try:
            injected = self.fail(function, request.op)
            if injected is not None:
                raise injected
            database, _, role = function.partition(".")
            writer = role == "writer"
            slot = (function, threading.get_ident())
            with self._lock:
                if slot not in self.connectors:
                    self.connectors[slot] = open_connector(self.databases[database], read_only=not writer)
            if writer:
                allowed = serving.parse_allow_list(self.writable.get(database, ""))
                answer = serving.serve_writer(request, self.connectors[slot], database, allowed)
            else:
                answer = serving.serve_connector(request, self.connectors[slot])
        except TablesyncError as exc:  # what the handlers answer for a known error
            answer = {"error": {"type": type(exc).__name__, "message": str(exc)}}
        except Exception as exc:  # noqa: BLE001 - a crash: a failed invocation, as Lambda reports it
            error = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
            return json.dumps(error).encode(), "Unhandled"
        return json.dumps(answer).encode(), None

    def opener(self) -> Callable[[str], Connector]:
        return lambda name: LambdaConnector(name, self, sleep=lambda _: None)

    def writer_opener(self) -> Callable[[str], Connector]:
        """Writers of the databases that have one (a writer secret), as the repair function sees them."""

        def open_writer(name: str) -> Connector:
            if name not in self.writable:
                raise InputError(f"database {name} has no writer (DatabaseNWriterSecretArn): not repaired")
            return LambdaConnector(f"{name}.writer", self, sleep=lambda _: None)

        return open_writer

    def close(self) -> None:
        for conn in self.connectors.values():
            conn.close()
