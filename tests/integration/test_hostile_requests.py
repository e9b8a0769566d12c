"""Connector requests cannot carry SQL: every part of a request that reaches SQL is a closed set
(an operator, an action, a kind), a quoted name or a bound value, and every list and size is
bounded. Hostile requests go to the connector Lambda's own handler (functions/connector/app.py,
its secret in moto's Secrets Manager) and on to the real PostgreSQL, MariaDB and SQLite; a canary
table must come through untouched and no answer may be anything but a clean error or a harmless
result.

"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from app_support import Context, fake_aws_env, handler
from moto import mock_aws
from tablesync.app import runtime
from tablesync.connectors import Connector, open_connector
from tablesync.errors import InputError

pytestmark = pytest.mark.integration

DDL = {
    "pg": "id int PRIMARY KEY, name text, amount numeric(10,2)",
    "mysql": "id int PRIMARY KEY, name text, amount decimal(10,2)",
    "sqlite": "id INTEGER PRIMARY KEY, name TEXT, amount NUMERIC",
}
ROWS = [(1, "a", "1.50"), (2, "b", "2.00"), (3, "c'; DROP TABLE x; --", None)]
INJECTION = "x'); DROP TABLE {canary}; --"


SECRETS = {
    "pg": {"engine": "postgres", "host": "127.0.0.1", "port": 5432, "username": "postgres", "dbname": "test"},
    "mysql": {
        "engine": "mariadb",
        "host": "127.0.0.1",
        "port": 3306,
        "username": "root",
        "password": "",
        "dbname": "test",
    },
}


class Handler:
    """A deployed database function (the connector, or the writer): its handler, its secret, its
    database session."""

    def __init__(self, function: str = "connector") -> None:
        self.function = handler(function)

    def __call__(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        answer: dict[str, Any] = self.function.lambda_handler({"op": op, "args": args}, Context())
        return answer


def _tables_and_secret(dbs: Any, engine: str, table_name: str) -> tuple[Any, str, dict[str, Any]]:
    """The table and its canary on one engine, each holding ROWS, and the engine's secret."""
    db = dbs[engine]
    canary = table_name + "_canary"
    for name in (table_name, canary):
        db.create(name, DDL[engine])
        db.insert(name, ["id", "name", "amount"], ROWS)
    secret = SECRETS.get(engine) or {"engine": "sqlite", "path": db.url.removeprefix("sqlite:///")}
    return db, canary, secret


@pytest.fixture(params=["pg", "mysql", "sqlite"])
def side(
    request: pytest.FixtureRequest, dbs: Any, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, str, str, Connector, Handler]]:
    db, canary, secret = _tables_and_secret(dbs, request.param, table_name)
    fake_aws_env(monkeypatch, POWERTOOLS_TRACE_DISABLED="true", DATABASE_TLS="disable", DATABASE_NAME="db")
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="tablesync/db", SecretString=json.dumps(secret))["ARN"]
        monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
        runtime.database.reset()
        connector = open_connector(db.url)  # to build plans as the checker would
        try:
            yield db, table_name, canary, connector, Handler()
        finally:
            connector.close()
            runtime.database.reset()


def _plan(connector: Connector, table: str) -> dict[str, Any]:
    schema = connector.describe(table)
    key = [c.model_dump(mode="json") for c in schema.columns if c.name == "id"]
    columns = [c.model_dump(mode="json") for c in schema.columns if c.name != "id"]
    return {"table": table, "key": key, "columns": columns}


def _where(op: str, column: str = "name", values: list[Any] | None = None) -> dict[str, Any]:
    return {"op": "cond", "cond": {"column": column, "op": op, "values": values if values is not None else ["a"]}}


Mutation = Callable[[dict[str, Any], str], tuple[str, dict[str, Any]]]


def _with_plan(change: Callable[[dict[str, Any], str], None], op: str = "row_hashes") -> Mutation:
    def mutate(plan: dict[str, Any], canary: str) -> tuple[str, dict[str, Any]]:
        plan = copy.deepcopy(plan)
        change(plan, canary)
        args: dict[str, Any] = {"plan": plan}
        if op == "row_hashes":
            args["spans"] = [{"lo": None, "hi": None, "points": []}]
        return op, args

    return mutate


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any], str], None]:
    def change(plan: dict[str, Any], canary: str) -> None:
        target = plan
        for part in path[:-1]:
            target = target[part]
        target[path[-1]] = value.format(canary=canary) if isinstance(value, str) else value

    return change


HOSTILE: dict[str, Mutation] = {
    "condition operator": _with_plan(_set(("where",), _where("= 'a' OR 1=1; DROP TABLE {canary}; --"))),
    "filter operator": _with_plan(_set(("where",), {"op": "or 1=1 --", "items": []})),
    "filter value": _with_plan(_set(("where",), _where("=", values=[INJECTION]))),
    "filter value object": _with_plan(_set(("where",), _where("=", values=[{"$ne": 1}]))),
    "filter value list": _with_plan(_set(("where",), _where("in", values=[["a", "b"]]))),
    "filter column": _with_plan(_set(("where",), _where("=", column=INJECTION))),
    "table name": _with_plan(_set(("table",), INJECTION)),
    "column name": _with_plan(_set(("columns", 0, "name"), 'name"; DROP TABLE {canary}; --')),
    "key column name": _with_plan(_set(("key", 0, "name"), "id`; DROP TABLE {canary}; --")),
    "column kind": _with_plan(_set(("columns", 0, "kind"), "text'); DROP TABLE {canary}; --")),
    "native type": _with_plan(_set(("columns", 1, "native_type"), "decimal(10,2)); DROP TABLE {canary}; --")),
    "collation": _with_plan(_set(("columns", 0, "collation"), "utf8mb4_bin; DROP TABLE {canary}")),
    "charset": _with_plan(_set(("columns", 0, "charset"), "utf8mb4) ; DROP TABLE {canary}; --")),
    "base type": _with_plan(_set(("columns", 0, "base_type"), "citext; DROP TABLE {canary}")),
    "describe": lambda plan, canary: ("describe", {"table": INJECTION.format(canary=canary)}),
    "list tables": lambda plan, canary: ("list_tables", {"pattern": f"*'; DROP TABLE {canary}; --"}),
    "key values": lambda plan, canary: (
        "fetch_rows",
        {"plan": plan, "keys": [[INJECTION.format(canary=canary)], [{"a": 1}], [[1, 2]]]},
    ),
    "span bounds": lambda plan, canary: (
        "bucket_checksums",
        {"plan": plan, "spans": [{"lo": ["0 OR 1=1"], "hi": [INJECTION.format(canary=canary)], "points": []}]},
    ),
    "chunk size": lambda plan, canary: (
        "chunk_bounds",
        {"plan": plan, "bound": None, "size": "10; DROP TABLE x", "parts": 2, "reverse": False},
    ),
    "huge chunk": lambda plan, canary: (
        "chunk_bounds",
        {"plan": plan, "bound": None, "size": 10**12, "parts": 2, "reverse": False},
    ),
    "many parts": lambda plan, canary: (
        "chunk_bounds",
        {"plan": plan, "bound": None, "size": 100, "parts": 10**6, "reverse": False},
    ),
    "split step": lambda plan, canary: ("split_points", {"plan": plan, "requests": [{"step": "1; DROP TABLE x"}]}),
    "many spans": lambda plan, canary: ("row_hashes", {"plan": plan, "spans": [{"lo": [i]} for i in range(20_000)]}),
    "write action": lambda plan, canary: (
        "write_rows",
        {"plan": plan, "writes": [{"action": f"DELETE FROM {canary}; --", "key": [1]}], "dry_run": False},
    ),
    "write on a read connector": lambda plan, canary: (
        "write_rows",
        {"plan": plan, "writes": [{"action": "delete", "key": [1], "expected": None}], "dry_run": False},
    ),
    "unknown operation": lambda plan, canary: ("execute", {"sql": f"DROP TABLE {canary}", "params": []}),
    "unknown argument": lambda plan, canary: ("describe", {"table": "x", "sql": f"DROP TABLE {canary}"}),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_request(side: tuple[Any, str, str, Connector, Handler], name: str) -> None:
    db, table, canary, connector, connector_function = side
    plan = _plan(connector, table)
    op, args = HOSTILE[name](plan, canary)
    try:
        answer = connector_function(op, args)
    except InputError as exc:  # a request the handler cannot even parse: a failed invocation, no SQL
        answer = {"error": {"type": "InputError", "message": str(exc)}}
    json.dumps(answer)  # an answer is plain JSON, never an exception
    if "error" in answer:
        assert answer["error"]["type"] in {"InputError", "DatabaseError", "SchemaError", "UnsupportedTypeError"}
        assert "Traceback" not in answer["error"]["message"]
    # Nothing was written or dropped, anywhere.
    assert db.execute(f"SELECT id, name FROM {db.quote(canary)} ORDER BY id") == [(i, n) for i, n, _ in ROWS]
    assert db.execute(f"SELECT id, name FROM {db.quote(table)} ORDER BY id") == [(i, n) for i, n, _ in ROWS]
    if name in ("condition operator", "filter operator", "column kind", "write action", "unknown operation"):
        assert answer["error"]["type"] == "InputError", answer  # refused before any SQL
    if name in ("huge chunk", "many parts", "many spans", "chunk size", "split step"):
        assert answer["error"]["type"] == "InputError", answer  # bounded


def test_a_filter_value_is_bound_not_pasted(side: tuple[Any, str, str, Connector, Handler]) -> None:
    """The row whose name holds SQL is matched as a value, and only it."""
    _, table, _, connector, connector_function = side
    plan = _plan(connector, table)
    plan["where"] = _where("=", values=[ROWS[2][1]])
    answer = connector_function("row_hashes", {"plan": plan, "spans": [{}]})
    assert [pair[0] for pair in answer["result"]] == [[3]]


# --- the writer function ------------------------------------------------------------------------


@pytest.fixture(params=["pg", "mysql", "sqlite"])
def writer_side(
    request: pytest.FixtureRequest, dbs: Any, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Any, str, str, Connector, Handler]]:
    """A writer allowed to update and delete the table (never to insert), and not the canary."""
    db, canary, secret = _tables_and_secret(dbs, request.param, table_name)
    fake_aws_env(
        monkeypatch,
        POWERTOOLS_TRACE_DISABLED="true",
        DATABASE_TLS="disable",
        DATABASE_NAME="db",
        WRITABLE_TABLES=f"{table_name}:update+delete",
    )
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(Name="tablesync/w", SecretString=json.dumps(secret))["ARN"]
        monkeypatch.setenv("WRITER_SECRET_ARN", arn)
        runtime.writer.reset()
        runtime.writable_tables.cache_clear()  # this test's allow-list, not an earlier one's
        connector = open_connector(db.url)
        try:
            yield db, table_name, canary, connector, Handler("writer")
        finally:
            connector.close()
            runtime.writer.reset()
            runtime.writable_tables.cache_clear()


def _writes(plan: dict[str, Any], *writes: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "write_rows", {"plan": plan, "writes": list(writes), "dry_run": False}


DELETE_ONE = {"action": "delete", "key": [1]}
# Each: the request, and whether the writer must refuse it before any SQL (InputError).
HOSTILE_WRITES: dict[str, tuple[Callable[[dict[str, Any], str], tuple[str, dict[str, Any]]], bool]] = {
    "a read": (lambda plan, canary: ("fetch_rows", {"plan": plan, "keys": [[1]]}), True),
    "action as SQL": (lambda plan, canary: _writes(plan, {"action": f"DELETE FROM {canary}; --", "key": [1]}), True),
    "an action not allowed": (
        lambda plan, canary: _writes(plan, {"action": "insert", "key": [9], "values": {"name": "x", "amount": None}}),
        True,
    ),
    "another table": (lambda plan, canary: _writes({**plan, "table": canary}, {"action": "delete", "key": [1]}), True),
    "table name as SQL": (
        lambda plan, canary: _writes(
            {**plan, "table": INJECTION.format(canary=canary)}, {"action": "delete", "key": [1]}
        ),
        True,
    ),
    "one bad write in a batch": (
        lambda plan, canary: _writes(
            plan, {"action": "delete", "key": [9]}, {"action": "insert", "key": [8], "values": {"name": "x"}}
        ),
        True,
    ),
    "key value as SQL": (
        lambda plan, canary: _writes(plan, {"action": "delete", "key": [INJECTION.format(canary=canary)]}),
        False,
    ),
    "value as SQL": (
        lambda plan, canary: _writes(
            plan,
            {
                "action": "update",
                "key": [9],
                "values": {"name": INJECTION.format(canary=canary), "amount": "1; DROP TABLE x"},
                "expected": None,
            },
        ),
        False,
    ),
    "value under a column name as SQL": (
        lambda plan, canary: _writes(
            plan, {"action": "update", "key": [9], "values": {f'name" = 1; DROP TABLE {canary}; --': "x"}}
        ),
        False,
    ),
    "expected row as SQL": (
        lambda plan, canary: _writes(
            plan, {"action": "delete", "key": [9], "expected": {"name": INJECTION.format(canary=canary)}}
        ),
        False,
    ),
    "plan column as SQL": (
        lambda plan, canary: _writes(
            {**plan, "columns": [{**plan["columns"][0], "name": f'name"; DROP TABLE {canary}; --'}]},
            {"action": "update", "key": [9], "values": {"name": "x"}},
        ),
        False,
    ),
}


@pytest.mark.parametrize("name", list(HOSTILE_WRITES))
def test_hostile_write_request(writer_side: tuple[Any, str, str, Connector, Handler], name: str) -> None:
    """A writer holds writer credentials: whatever a request says, it writes only the allow-listed
    (table, action) pairs, with names quoted and values bound; the canary, and every row of the
    table the requests do not name by key (9 is no row of it), come through untouched."""
    db, table, canary, connector, writer = writer_side
    build, refused = HOSTILE_WRITES[name]
    op, args = build(_plan(connector, table), canary)
    try:
        answer = writer(op, args)
    except InputError as exc:  # a request the handler cannot even parse: no SQL
        answer = {"error": {"type": "InputError", "message": str(exc)}}
    json.dumps(answer)
    if refused:
        assert answer.get("error", {}).get("type") == "InputError", answer
    if "error" in answer:
        assert answer["error"]["type"] in {"InputError", "DatabaseError", "SchemaError", "UnsupportedTypeError"}
        assert "Traceback" not in answer["error"]["message"]
    assert db.execute(f"SELECT id, name FROM {db.quote(canary)} ORDER BY id") == [(i, n) for i, n, _ in ROWS]
    assert db.execute(f"SELECT id, name FROM {db.quote(table)} ORDER BY id") == [(i, n) for i, n, _ in ROWS]


def test_the_writer_writes_what_its_allow_list_holds(
    writer_side: tuple[Any, str, str, Connector, Handler],
) -> None:
    """The same writer does write an allowed action on its table: the refusals above are its rules,
    not a writer that cannot write."""
    db, table, _, connector, writer = writer_side
    plan = _plan(connector, table)
    expected = connector.fetch_rows(_plan_model(connector, table), [[2]])[0]
    answer = writer(*_writes(plan, {"action": "delete", "key": [2], "expected": expected}))
    assert answer.get("result", {}).get("applied") == [0], answer
    assert [r[0] for r in db.execute(f"SELECT id FROM {db.quote(table)} ORDER BY id")] == [1, 3]


def _plan_model(connector: Connector, table: str) -> Any:
    from tablesync.models import TablePlan

    return TablePlan.model_validate(_plan(connector, table))
