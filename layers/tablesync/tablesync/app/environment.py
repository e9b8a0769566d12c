"""What every step of the application shares: the openers of the databases' connector and writer
Lambdas, the parsing of events, the hiding of a table's values in errors, and (from `settings` and
`stores`, where they are defined) the settings models and the boto3 clients."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from ..connectors import Connector, open_connector
from ..errors import InputError, TablesyncError
from ..models import MAX_KEYS_PER_REQUEST, DiffOptions, RepairOptions
from .checks import TableSpec, describe_validation_error
from .settings import ConnectorFunctions, WriterFunctions
from .settings import Settings as Settings  # found here too by the code that calls the steps directly
from .stores import Clients as Clients
from .stores import execution_running as execution_running
from .transport import LambdaConnector, boto3_invoke

ConnectorOpener = Callable[[str], Connector]  # database name -> a connector to it


EventT = TypeVar("EventT", bound=BaseModel)


StepT = TypeVar("StepT", bound=Callable[..., Any])


def lambda_connectors(settings: ConnectorFunctions, clients: Clients) -> ConnectorOpener:
    """Connectors that reach each database through its (read-only) connector Lambda."""
    invoke = boto3_invoke(clients.lambda_)

    def open_named(name: str) -> Connector:
        if name in settings.dynamodb:
            return open_connector(settings.dynamodb[name])  # DynamoDB: read directly, by the role's rights
        function = settings.connectors.get(name)
        if function is None:
            known = ", ".join(sorted([*settings.connectors, *settings.dynamodb])) or "none"
            raise InputError(f"no connector is deployed for database {name!r} (deployed: {known})")
        return LambdaConnector(function, invoke)

    return open_named


def lambda_writers(settings: WriterFunctions, clients: Clients) -> ConnectorOpener:
    """Connectors whose writes go to each database's writer Lambda (only the repair function may
    invoke it); None of a database without one."""
    invoke = boto3_invoke(clients.lambda_)

    def open_named(name: str) -> Connector:
        function = settings.writers.get(name)
        if function is None:
            raise InputError(f"database {name} has no writer (DatabaseNWriterSecretArn): not repaired")
        return LambdaConnector(function, invoke)

    return open_named


def hides_values(step: StepT) -> StepT:
    """A step whose errors leave the Lambda (its log, its trace, the report's cause) without the
    table's values: a key named as an example in the CLI's message is left out (TablesyncError.redacted)."""

    @functools.wraps(step)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return step(*args, **kwargs)
        except TablesyncError as exc:
            if exc.redacted == str(exc):
                raise
            hidden = copy.copy(exc)
            hidden.args = (exc.redacted,)
            raise hidden from None

    return cast(StepT, run)


def parse_event(model: type[EventT], event: Any) -> EventT:
    """An event as its model; a bad one is an InputError naming the field (one line)."""
    try:
        return model.model_validate(event)
    except ValidationError as exc:
        raise InputError(f"invalid {model.__name__} event: {describe_validation_error(exc)}") from None


def diff_options(spec: TableSpec) -> DiffOptions:
    values = spec.model_dump(
        exclude={"table", "pattern", "shards", "recheck_after", "repair", "mode", "group_column"}, exclude_none=True
    )
    if spec.chunk_size is not None:
        values["page_items"] = min(spec.chunk_size, MAX_KEYS_PER_REQUEST)  # DynamoDB: items a page (else 1 MB)
    return DiffOptions.model_validate(values)


def repair_options(spec: TableSpec) -> RepairOptions | None:
    if spec.repair is None and spec.mode == "sync":
        return RepairOptions(write_missing=True, write_differing=True)  # sync: the copy made to match
    if spec.repair is None:
        return None
    options = RepairOptions.model_validate(spec.repair.model_dump())
    return options if options.enabled else None
