"""The connector and writer Lambdas: one operation against their database; a read connector never
writes, a writer writes only its deployment's allow-list."""

from __future__ import annotations

from typing import Any

from ..connectors import Connector
from ..errors import InputError
from .events import ConnectorRequest
from .transport import serve

WRITE_OPERATIONS = frozenset({"write_rows", "create_table", "load_rows"})
# The action of the allow-list each write operation needs (write_rows: each write's own).
OPERATION_ACTIONS = {"create_table": "create", "load_rows": "insert"}
WRITE_ACTIONS = frozenset({"insert", "update", "delete", "create"})


def serve_connector(request: ConnectorRequest, connector: Connector) -> dict[str, Any]:
    """A read connector's answer: it holds only the read-only user's secret and writes nothing."""
    refusal = connector_refusal(request)
    if refusal is not None:
        return {"error": {"type": InputError.__name__, "message": refusal}}
    return serve(request, connector)


def connector_refusal(request: ConnectorRequest) -> str | None:
    if request.op in WRITE_OPERATIONS:
        return "this connector only reads: writes go through the database's writer function, for the repair only"
    return None


def parse_allow_list(text: str) -> dict[str, frozenset[str]]:
    """The tables a writer may write, fixed at deploy time (DatabaseNWritableTables):
    `orders:insert+update+delete, sales.order_lines:insert+update`; an empty text allows nothing."""
    allowed: dict[str, frozenset[str]] = {}
    for entry in filter(None, (e.strip() for e in text.split(","))):
        table, _, actions = entry.rpartition(":")
        names = frozenset(a.strip() for a in actions.split("+"))
        if not table or not names or not names <= WRITE_ACTIONS:
            raise InputError(
                f"writable tables: {entry!r} is not TABLE:ACTION[+ACTION] (insert, update, delete, create)"
            )
        allowed[table] = names
    return allowed


def serve_writer(
    request: ConnectorRequest, connector: Connector, database: str, allowed: dict[str, frozenset[str]]
) -> dict[str, Any]:
    """A writer's answer: writes only (write_rows; a copy's create_table and load_rows), and only
    the ones the allow-list lets it make."""
    refusal = writer_refusal(request, database, allowed)
    if refusal is not None:
        return {"error": {"type": InputError.__name__, "message": refusal}}
    return serve(request, connector)


def writer_refusal(request: ConnectorRequest, database: str, allowed: dict[str, frozenset[str]]) -> str | None:
    """Why a writer refuses a request (None: it may run): not a write, or a write of a table or
    action outside the deployment's allow-list. Every write of a batch is checked before any runs."""
    if request.op not in WRITE_OPERATIONS:
        return f"a writer only writes, not {request.op!r}"
    if request.op in OPERATION_ACTIONS:  # the copy's: create the table, load rows
        action = OPERATION_ACTIONS[request.op]
        plan = request.args.get("plan")
        table = (
            request.args.get("table")
            if request.op == "create_table"
            else plan.get("table")
            if isinstance(plan, dict)
            else None
        )
        if not isinstance(table, str):
            return f"{request.op} names its table"
        if action not in allowed.get(table, frozenset()):
            return (
                f"database {database} may not {action} table {table}: not in its writable tables "
                "(DatabaseNWritableTables)"
            )
        return None
    plan, writes = request.args.get("plan"), request.args.get("writes")
    table = plan.get("table") if isinstance(plan, dict) else None
    if not isinstance(table, str) or not isinstance(writes, list):
        return "a write names its table (plan.table) and its writes"
    actions = {w.get("action") if isinstance(w, dict) else None for w in writes}
    refused = sorted(str(a) for a in actions if a not in allowed.get(table, frozenset()))
    if refused:
        return (
            f"database {database} may not {'/'.join(refused)} table {table}: not in its writable tables "
            "(DatabaseNWritableTables)"
        )
    return None
