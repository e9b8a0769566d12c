"""Each Lambda function's settings: one pydantic model per function (FUNCTIONS, by its directory in
functions/), declaring exactly the environment variables template.yaml gives that function, under
those names. A function validates its model once per container, on its first invocation (the cold
start); a variable that is missing or bad is one InputError line naming it, never its value.

The models share parts (the checkpoint store's variables, the connector functions, the waits of a
table run), so that the code that needs a part takes that part: `runtime.store()` is built from
`CheckpointSettings` whichever function asks. `Settings` is every step's model at once with every
variable defaulted, for code that calls the steps directly (the benchmarks, tests); no function
reads it from its environment."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from ..errors import InputError
from ..urls import SSL_MODES, parse_url
from .serving import parse_allow_list

# A resource's name, ARN or URL.
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _function_map(value: Any) -> Any:
    """CONNECTOR_FUNCTIONS and WRITER_FUNCTIONS: a JSON object of database name -> function."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("not a JSON object of database name -> function") from None
        if not isinstance(value, dict):
            raise ValueError("not a JSON object of database name -> function")
    return value


FunctionMap = Annotated[dict[str, str], BeforeValidator(_function_map)]


def _dynamodb_map(value: Any) -> Any:
    """DYNAMODB_DATABASES: database name -> dynamodb:// URL (region, role, endpoint), as
    `name=URL,name=URL` (what a template parameter carries through `sam deploy`) or a JSON object."""
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        pairs = [entry.partition("=") for entry in value.split(",") if entry.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ValueError("not a list of name=dynamodb://REGION entries")
        value = {name.strip(): url.strip() for name, _, url in pairs}
    elif isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ValueError("not a JSON object of database name -> dynamodb://REGION URL") from None
    if not isinstance(value, dict):
        raise ValueError("not a list of name=dynamodb://REGION entries")
    for url in value.values():
        if not isinstance(url, str) or not url.startswith("dynamodb://"):
            raise ValueError("not a list of name=dynamodb://REGION entries")
        try:
            parse_url(url)
        except InputError as exc:
            raise ValueError(str(exc)) from None
    return value


DynamoMap = Annotated[dict[str, str], BeforeValidator(_dynamodb_map)]


class FunctionSettings(BaseModel):
    """A function's environment as a model: each field's alias is its variable."""

    # By field name too: code that calls the steps directly builds settings by name.
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    FUNCTION: ClassVar[str] = ""  # the function's directory in functions/, named in error messages

    @classmethod
    def variables(cls) -> list[str]:
        """The environment variables the model reads (a field without an alias is not one)."""
        return [field.alias for field in cls.model_fields.values() if field.alias]

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The model from the process's environment (or `env`); InputError naming every variable
        that is missing or bad, in one line."""
        source = os.environ if env is None else env
        # An empty variable is an unset one (a template parameter left empty): its default, if any.
        given = {name: source[name] for name in cls.variables() if source.get(name, "").strip()}
        try:
            return cls.model_validate(given)
        except ValidationError as exc:
            who = f"the {cls.FUNCTION} function" if cls.FUNCTION else "the function"
            raise InputError(f"{who}'s environment: {describe_environment_error(exc)}") from None


def describe_environment_error(exc: ValidationError) -> str:
    """`CHECKPOINT_TABLE is not set; MAX_CONCURRENCY is not valid (...)`: the variables and what is
    wrong with them, without their values (pydantic's messages name the expected, not the input)."""
    problems: list[str] = []
    for error in exc.errors():
        name = str(error["loc"][0]) if error.get("loc") else "a variable"
        if error["type"] == "missing":
            problem = f"{name} is not set"
        else:
            problem = f"{name} is not valid ({str(error['msg']).removeprefix('Value error, ')})"
        if problem not in problems:
            problems.append(problem)
    return "; ".join(problems)


# --- the parts ---------------------------------------------------------------------------------
class CheckpointSettings(FunctionSettings):
    """The checkpoint store: its DynamoDB table, and the bucket that holds states too big for it."""

    checkpoint_table: Name = Field(alias="CHECKPOINT_TABLE")
    results_bucket: Name = Field(alias="RESULTS_BUCKET")
    retention_days: int = Field(30, ge=1, alias="RETENTION_DAYS")


class ConnectorFunctions(FunctionSettings):
    """The read connector Lambda of each database the stack deploys, and the DynamoDB databases
    (read directly: no connector Lambda, the function's role holds the table rights)."""

    connectors: FunctionMap = Field(alias="CONNECTOR_FUNCTIONS")
    dynamodb: DynamoMap = Field(default_factory=dict, alias="DYNAMODB_DATABASES")


class WriterFunctions(FunctionSettings):
    """The writer Lambda of each database that has a writer secret (the repair only)."""

    writers: FunctionMap = Field(alias="WRITER_FUNCTIONS")


class WaitSettings(FunctionSettings):
    """How a table run waits out a database that is away, or another execution holding it."""

    # Not in the template: a lease outlives its invocation by this much (a knob for local runs).
    lease_grace_seconds: float = Field(60.0, ge=0, alias="LEASE_GRACE_SECONDS")
    outage_budget_seconds: float = Field(900.0, ge=0, alias="OUTAGE_BUDGET_SECONDS")
    outage_wait_seconds: int = Field(30, ge=0, alias="OUTAGE_WAIT_SECONDS")
    lease_wait_budget_seconds: float = Field(14_400.0, ge=0, alias="LEASE_WAIT_BUDGET_SECONDS")


class DatabaseSession(FunctionSettings):
    """A database function's sessions: TLS, the CA bundle that verifies it, the statement timeout."""

    database_tls: str = Field("verify-full", alias="DATABASE_TLS")
    database_ca_bundle: str | None = Field(None, alias="DATABASE_CA_BUNDLE")
    statement_timeout_seconds: float | None = Field(None, ge=0, alias="STATEMENT_TIMEOUT_SECONDS")
    # Not in the template: how long a connection attempt may take (a knob for local runs and tests).
    connect_timeout_seconds: float = Field(10.0, gt=0, alias="CONNECT_TIMEOUT_SECONDS")

    @field_validator("database_tls")
    @classmethod
    def _ssl_mode(cls, mode: str) -> str:
        if mode not in SSL_MODES:
            raise ValueError(f"must be one of {', '.join(SSL_MODES)}")
        return mode


def _allow_list(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        return parse_allow_list(value)
    except InputError as exc:
        raise ValueError(str(exc).removeprefix("writable tables: ")) from None


AllowList = Annotated[dict[str, frozenset[str]], BeforeValidator(_allow_list)]


# --- one model per function -------------------------------------------------------------------
class ListTablesSettings(ConnectorFunctions):
    FUNCTION: ClassVar[str] = "list_tables"

    max_concurrency: int = Field(10, ge=1, alias="MAX_CONCURRENCY")


class ChecksumTableSettings(CheckpointSettings, ConnectorFunctions, WaitSettings):
    FUNCTION: ClassVar[str] = "checksum_table"

    safety_margin_seconds: float = Field(30.0, ge=0, alias="SAFETY_MARGIN_SECONDS")
    max_invocations: int = Field(5_000, ge=1, alias="MAX_INVOCATIONS_PER_TABLE")
    save_every_seconds: float = 60.0  # not from the environment: a state is saved at least this often


class RecheckTableSettings(CheckpointSettings, ConnectorFunctions, WaitSettings):
    FUNCTION: ClassVar[str] = "recheck_table"


class CopyTableSettings(CheckpointSettings, ConnectorFunctions, WriterFunctions, WaitSettings):
    FUNCTION: ClassVar[str] = "copy_table"

    safety_margin_seconds: float = Field(30.0, ge=0, alias="SAFETY_MARGIN_SECONDS")
    # Rows a batch: its canonical texts travel in one Lambda invocation each way (6 MB at most).
    copy_batch: int = Field(2_000, ge=1, le=20_000, alias="COPY_BATCH_ROWS")
    save_every_seconds: float = 60.0  # not from the environment: a state is saved at least this often


class ReportSettings(CheckpointSettings):
    FUNCTION: ClassVar[str] = "report"

    topic_arn: Name = Field(alias="ALERT_TOPIC_ARN")
    queue_url: Name = Field(alias="KEYS_QUEUE_URL")


class RepairSettings(ConnectorFunctions, WriterFunctions):
    FUNCTION: ClassVar[str] = "repair"

    audit_bucket: Name = Field(alias="AUDIT_BUCKET")
    topic_arn: Name = Field(alias="ALERT_TOPIC_ARN")
    queue_url: Name = Field(alias="KEYS_QUEUE_URL")
    dead_letter_url: Name = Field(alias="KEYS_DEAD_LETTER_URL")


class ConnectorSettings(DatabaseSession):
    FUNCTION: ClassVar[str] = "connector"

    database_name: Name = Field(alias="DATABASE_NAME")
    secret_arn: Name = Field(alias="DATABASE_SECRET_ARN")  # the read-only user's


class WriterSettings(DatabaseSession):
    FUNCTION: ClassVar[str] = "writer"

    database_name: Name = Field(alias="DATABASE_NAME")
    secret_arn: Name = Field(alias="WRITER_SECRET_ARN")  # the writer user's
    # The allow-list, fixed at deploy time (DatabaseNWritableTables): empty allows nothing.
    writable_tables: AllowList = Field(default_factory=dict, alias="WRITABLE_TABLES")


DatabaseSettings = ConnectorSettings | WriterSettings

# Each function's model, by its directory in functions/ (template.yaml's CodeUri).
FUNCTIONS: dict[str, type[FunctionSettings]] = {
    model.FUNCTION: model
    for model in (
        ListTablesSettings,
        ChecksumTableSettings,
        RecheckTableSettings,
        CopyTableSettings,
        ReportSettings,
        RepairSettings,
        ConnectorSettings,
        WriterSettings,
    )
}


class Settings(
    ListTablesSettings, ChecksumTableSettings, RecheckTableSettings, CopyTableSettings, ReportSettings, RepairSettings
):
    """Every step's settings at once, every variable defaulted (an empty name: not configured),
    for code that calls the steps directly: the benchmarks, tests. No function reads it."""

    checkpoint_table: str = Field("", alias="CHECKPOINT_TABLE")
    results_bucket: str = Field("", alias="RESULTS_BUCKET")
    audit_bucket: str = Field("", alias="AUDIT_BUCKET")
    topic_arn: str = Field("", alias="ALERT_TOPIC_ARN")
    queue_url: str = Field("", alias="KEYS_QUEUE_URL")
    dead_letter_url: str = Field("", alias="KEYS_DEAD_LETTER_URL")
    connectors: FunctionMap = Field(default_factory=dict, alias="CONNECTOR_FUNCTIONS")
    writers: FunctionMap = Field(default_factory=dict, alias="WRITER_FUNCTIONS")
