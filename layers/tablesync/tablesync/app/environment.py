"""What every step of the application shares: its settings from the environment the template gives
each function, its AWS clients (boto3 in Lambda, moto in the unit tests), the openers of the
databases' connector and writer Lambdas, and the parsing of events."""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, TypeVar, cast

from pydantic import BaseModel, ValidationError

from ..connectors import Connector
from ..errors import InputError, TablesyncError
from ..models import DiffOptions, RepairOptions
from .checkpoints import DynamoDbCheckpointStore, OwnerRunning
from .checks import TableSpec, describe_validation_error
from .transport import LambdaConnector, boto3_invoke

ConnectorOpener = Callable[[str], Connector]  # database name -> a connector to it


EventT = TypeVar("EventT", bound=BaseModel)


StepT = TypeVar("StepT", bound=Callable[..., Any])


@dataclass
class Settings:
    """The application's settings, from the environment the template gives each function."""

    checkpoint_table: str = ""
    results_bucket: str = ""
    audit_bucket: str = ""
    topic_arn: str = ""
    queue_url: str = ""
    dead_letter_url: str = ""
    max_concurrency: int = 10
    connectors: dict[str, str] = field(default_factory=dict)  # database name -> connector function
    writers: dict[str, str] = field(default_factory=dict)  # database name -> writer function (repair)
    lease_grace_seconds: float = 60.0  # a lease outlives its invocation by this much
    safety_margin_seconds: float = 30.0
    retention_days: int = 30
    save_every_seconds: float = 60.0  # a checksum invocation saves its state at least this often
    outage_budget_seconds: float = 900.0  # how long a table waits out a database that is away
    outage_wait_seconds: int = 30  # the state machine's Wait between calls during an outage
    lease_wait_budget_seconds: float = 14_400.0  # how long a table waits for another execution holding it
    max_invocations: int = 5_000  # a guard: a table not done after this many invocations fails

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ if env is None else env)
        connectors = _functions(env, "CONNECTOR_FUNCTIONS")
        writers = _functions(env, "WRITER_FUNCTIONS")
        return cls(
            checkpoint_table=env.get("CHECKPOINT_TABLE", ""),
            results_bucket=env.get("RESULTS_BUCKET", ""),
            audit_bucket=env.get("AUDIT_BUCKET", ""),
            topic_arn=env.get("ALERT_TOPIC_ARN", ""),
            queue_url=env.get("KEYS_QUEUE_URL", ""),
            dead_letter_url=env.get("KEYS_DEAD_LETTER_URL", ""),
            max_concurrency=int(env.get("MAX_CONCURRENCY", "10")),
            connectors=connectors,
            writers=writers,
            lease_grace_seconds=float(env.get("LEASE_GRACE_SECONDS", "60")),
            safety_margin_seconds=float(env.get("SAFETY_MARGIN_SECONDS", "30")),
            retention_days=int(env.get("RETENTION_DAYS", "30")),
            outage_budget_seconds=float(env.get("OUTAGE_BUDGET_SECONDS", "900")),
            outage_wait_seconds=int(env.get("OUTAGE_WAIT_SECONDS", "30")),
            lease_wait_budget_seconds=float(env.get("LEASE_WAIT_BUDGET_SECONDS", "14400")),
            max_invocations=int(env.get("MAX_INVOCATIONS_PER_TABLE", "5000")),
        )


def _functions(env: dict[str, str], name: str) -> dict[str, str]:
    try:
        functions = json.loads(env.get(name) or "{}")
    except ValueError:
        raise InputError(f"{name} is not a JSON object of database name -> function") from None
    return {str(k): str(v) for k, v in functions.items()}


def aws_error(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Message") or error.get("Code") or type(exc).__name__)


class Clients:
    """boto3 clients, created on first use (a function only pays for the ones it calls)."""

    def __init__(self, session: Any = None, **overrides: Any) -> None:
        self._session = session
        self.__dict__.update(overrides)

    def _client(self, name: str) -> Any:
        if self._session is None:
            import boto3

            self._session = boto3.session.Session()
        return self._session.client(name)

    @cached_property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    @cached_property
    def s3(self) -> Any:
        return self._client("s3")

    @cached_property
    def sns(self) -> Any:
        return self._client("sns")

    @cached_property
    def sqs(self) -> Any:
        return self._client("sqs")

    @cached_property
    def ssm(self) -> Any:
        return self._client("ssm")

    @cached_property
    def lambda_(self) -> Any:
        return self._client("lambda")

    @cached_property
    def stepfunctions(self) -> Any:
        return self._client("stepfunctions")


def checkpoint_store(settings: Settings, clients: Clients) -> DynamoDbCheckpointStore:
    return DynamoDbCheckpointStore(
        settings.checkpoint_table,
        clients.dynamodb,
        clients.s3,
        settings.results_bucket or None,
        retention_days=settings.retention_days,
    )


def lambda_connectors(settings: Settings, clients: Clients) -> ConnectorOpener:
    """Connectors that reach each database through its (read-only) connector Lambda."""
    invoke = boto3_invoke(clients.lambda_)

    def open_named(name: str) -> Connector:
        function = settings.connectors.get(name)
        if function is None:
            known = ", ".join(sorted(settings.connectors)) or "none"
            raise InputError(f"no connector is deployed for database {name!r} (deployed: {known})")
        return LambdaConnector(function, invoke)

    return open_named


def lambda_writers(settings: Settings, clients: Clients) -> ConnectorOpener:
    """Connectors whose writes go to each database's writer Lambda (only the repair function may
    invoke it); None of a database without one."""
    invoke = boto3_invoke(clients.lambda_)

    def open_named(name: str) -> Connector:
        function = settings.writers.get(name)
        if function is None:
            raise InputError(f"database {name} has no writer (DatabaseNWriterSecretArn): not repaired")
        return LambdaConnector(function, invoke)

    return open_named


def execution_running(clients: Clients) -> OwnerRunning:
    """Whether the execution that holds a lease still runs (Step Functions' own answer): a failed
    or aborted execution's leases are taken over by the next execution of the run."""

    def running(owner: str) -> bool:
        if ":execution:" not in owner:
            return True  # not an execution we can ask about: its lease stands
        try:
            status = clients.stepfunctions.describe_execution(executionArn=owner)["status"]
        except Exception as exc:  # noqa: BLE001 - botocore's errors
            code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
            return code != "ExecutionDoesNotExist"  # in doubt, the lease stands
        return bool(status == "RUNNING")

    return running


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
    values = spec.model_dump(exclude={"table", "pattern", "shards", "recheck_after", "repair"}, exclude_none=True)
    return DiffOptions.model_validate(values)


def repair_options(spec: TableSpec) -> RepairOptions | None:
    if spec.repair is None:
        return None
    options = RepairOptions.model_validate(spec.repair.model_dump())
    return options if options.enabled else None
