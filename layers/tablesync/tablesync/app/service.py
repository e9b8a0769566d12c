"""What each Lambda of the application does, one function each, with its AWS clients and settings
passed in (boto3 in Lambda, moto in the unit tests):

- `list_tables`: the run's check definition -> the Map's items (tables, or key-range shards);
- `checksum_table`: one table item, stepped until the invocation's time is nearly up, its state
  checkpointed; returns "continue" or "done";
- `serve_connector`: one connector operation in a database's VPC;
- `report`: the run's result to S3, SNS, CloudWatch metrics and the queue of differing keys."""

from __future__ import annotations

import copy
import datetime as dt
import functools
import hashlib
import itertools
import json
import math
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from ..connectors import Connector
from ..engine import Differ
from ..errors import (
    CheckpointDamagedError,
    InputError,
    LeaseHeldError,
    OutageError,
    SchemaError,
    TablesyncError,
    TransientDatabaseError,
)
from ..models import (
    AuditRecord,
    DiffOptions,
    DiffState,
    Key,
    Kind,
    RepairFailure,
    RepairOptions,
    RepairResult,
    RowWrite,
    SplitRequest,
    TablePlan,
    WriteOutcome,
)
from ..repair import recheck_state, repair_target
from .checkpoints import Checkpoint, CheckpointStore, DynamoDbCheckpointStore, OwnerRunning
from .checks import TableSpec, describe_validation_error, parse_definition
from .events import (
    SAMPLE_KEYS,
    ChecksumResult,
    ConnectorRequest,
    FailedItem,
    ListTablesResult,
    RepairMessage,
    ReportInput,
    ReportResult,
    RunInput,
    TableItem,
    TableReport,
    TableResult,
    TargetSummary,
)
from .transport import LambdaConnector, boto3_invoke, serve

ConnectorOpener = Callable[[str], Connector]  # database name -> a connector to it
EventT = TypeVar("EventT", bound=BaseModel)
StepT = TypeVar("StepT", bound=Callable[..., Any])
KEYS_PER_MESSAGE = 500
REVERIFY_ROUNDS = 3  # keys that changed under a repair are checked again this many times
REVERIFY_DELAY_SECONDS = 60  # after this long, doubling each round
# The longest Wait for another execution's lease: about one of its invocations, so that a long wait
# adds a handful of events an hour to the execution's history (at most 25,000 of them).
MAX_LEASE_WAIT_SECONDS = 900
REPORT_TABLES = 100  # tables listed in the state machine's output (all of them are in S3)


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
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
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


# --- ListTables --------------------------------------------------------------------------------
def load_definition(run: RunInput, clients: Clients) -> dict[str, Any]:
    sources = [s for s in (run.check is not None, run.check_s3, run.check_ssm) if s]
    if len(sources) != 1:
        raise InputError("the execution input needs exactly one of check, check_s3 and check_ssm")
    if run.check is not None:
        return run.check
    try:
        if run.check_s3:
            parts = urlsplit(run.check_s3)
            if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
                raise InputError(f"check_s3 must be s3://bucket/key, got {run.check_s3!r}")
            body = clients.s3.get_object(Bucket=parts.netloc, Key=parts.path.lstrip("/"))["Body"].read()
        else:
            body = clients.ssm.get_parameter(Name=run.check_ssm, WithDecryption=True)["Parameter"]["Value"]
    except TablesyncError:
        raise
    except Exception as exc:  # noqa: BLE001 - botocore's errors: one clear line
        where = run.check_s3 or run.check_ssm
        raise InputError(f"cannot read the check definition from {where}: {_aws_error(exc)}") from None
    try:
        data: dict[str, Any] = json.loads(body)
    except ValueError:
        raise InputError(f"the check definition in {run.check_s3 or run.check_ssm} is not JSON") from None
    return data


@hides_values
def list_tables(
    run: RunInput, clients: Clients, connectors: ConnectorOpener, max_concurrency: int = 10
) -> ListTablesResult:
    definition = parse_definition(load_definition(run, clients))
    source = connectors(definition.source)
    try:
        for name in definition.targets:
            connectors(name).close()  # every database must have a connector deployed
        entries: list[tuple[str, TableSpec]] = []
        for spec in definition.specs():
            if spec.pattern is not None:
                names = source.list_tables(spec.pattern)
                entries += [(name, spec) for name in names]
            else:
                assert spec.table is not None
                entries.append((spec.table, spec))
        seen: dict[str, TableSpec] = {}
        for name, spec in entries:
            seen.setdefault(name, spec)  # the first entry naming a table wins
        if run.tables is not None:
            unknown = sorted(set(run.tables) - set(seen))
            if unknown:
                raise InputError(f"table(s) not in the check definition: {', '.join(unknown)}")
            seen = {name: seen[name] for name in run.tables}
        if run.resync is not None:
            return ListTablesResult(
                run_id=run.run_id,
                owner=run.owner,
                max_concurrency=1,
                items=[_resync_item(run, definition.source, definition.targets, seen)],
            )
        items: list[TableItem] = []
        for table, spec in seen.items():
            options = _diff_options(spec)
            bounds = _shard_bounds(source, table, spec) if spec.shards > 1 else [None, None]
            shards = len(bounds) - 1
            for index, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                items.append(
                    TableItem(
                        run_id=run.run_id,
                        owner=run.owner,
                        item_id=table if shards == 1 else f"{table}#{index + 1}/{shards}",
                        table=table,
                        source=definition.source,
                        targets=list(definition.targets),
                        options=options.model_copy(update={"lo": lo, "hi": hi}),
                        shard=index,
                        shards=shards,
                        recheck_after=spec.recheck_after,
                        repair=_repair_options(spec),
                        check_ssm=run.check_ssm,
                    )
                )
    finally:
        source.close()
    return ListTablesResult(run_id=run.run_id, owner=run.owner, max_concurrency=max_concurrency, items=items)


def _diff_options(spec: TableSpec) -> DiffOptions:
    values = spec.model_dump(exclude={"table", "pattern", "shards", "recheck_after", "repair"}, exclude_none=True)
    return DiffOptions.model_validate(values)


def _repair_options(spec: TableSpec) -> RepairOptions | None:
    if spec.repair is None:
        return None
    options = RepairOptions.model_validate(spec.repair.model_dump())
    return options if options.enabled else None


def _resync_item(run: RunInput, source: str, targets: list[str], specs: dict[str, TableSpec]) -> TableItem:
    """A re-sync: one item that reads the given keys again on every target (no walk); the report
    then queues those still different for the repair Lambda, as after a check."""
    assert run.resync is not None
    table = run.resync.table
    spec = specs.get(table)
    if spec is None:
        raise InputError(f"resync.table: {table} is not in the check definition")
    if not run.check_ssm:
        raise InputError("resync: give the stored check definition (check_ssm): only it can enable a repair")
    repair = _repair_options(spec)
    if repair is None:
        raise InputError(f"resync: the stored check definition does not enable repair for table {table}")
    width = len(run.resync.keys[0])
    if any(len(k) != width for k in run.resync.keys):
        raise InputError("resync.keys: every key must have the same number of values")
    return TableItem(
        run_id=run.run_id,
        owner=run.owner,
        item_id=f"{table}#resync",
        table=table,
        source=source,
        targets=list(targets),
        options=_diff_options(spec),
        repair=repair,
        keys=run.resync.keys,
        check_ssm=run.check_ssm,
    )


def _shard_bounds(source: Connector, table: str, spec: TableSpec) -> list[Key | None]:
    """Keys cutting the table into about `spec.shards` ranges of equal row counts (the first and
    last unbounded, so every key, also one only a target holds, falls in exactly one shard)."""
    schema = source.describe(table)
    names = spec.key or schema.primary_key
    if not names:
        raise SchemaError(f"table {table} has no primary key: give its key in the check definition")
    key = []
    for name in names:
        column = schema.column(name)
        if column is None:
            raise SchemaError(f"unknown key column {name!r} in table {table}")
        key.append(column)
    plan = TablePlan(table=table, key=key, columns=[])
    key_range = source.key_range(plan)
    if key_range.min_key is None or key_range.max_key is None:
        return [None, None]
    cuts: list[Key] = []
    if len(key) == 1 and key[0].kind is Kind.INTEGER:
        low, high = int(key_range.min_key[0] or 0), int(key_range.max_key[0] or 0)
        width = (high - low + 1) / spec.shards
        cuts = [[low + round(width * i)] for i in range(1, spec.shards)]
    else:
        rows = key_range.estimated_rows or source.checksum(plan, None, None).count
        step = max(1, math.ceil(rows / spec.shards))
        points = source.split_points(plan, [SplitRequest(step=step)])[0]
        cuts = points[: spec.shards - 1]
    distinct = [c for i, c in enumerate(cuts) if i == 0 or c != cuts[i - 1]]
    return [None, *distinct, None]


# --- ChecksumTable ------------------------------------------------------------------------------
@hides_values
def checksum_table(
    item: TableItem,
    remaining_seconds: float,
    settings: Settings,
    store: CheckpointStore,
    connectors: ConnectorOpener,
    owner_running: OwnerRunning | None = None,
) -> ChecksumResult:
    """Works on one table item until the invocation's time is nearly up, saving the state as it
    goes (at least every `save_every_seconds`). The lease lasts until the invocation would have
    been stopped, and a little longer: no other execution takes the table while this one may still
    be working on it (a lease whose execution has ended is taken over: `owner_running`).

    A database that goes away (an outage, a failover) does not fail the table: the state is saved
    and the answer is status "waiting", which the state machine meets with a Wait and a new call;
    only when it has been away longer than `outage_budget_seconds` does the table fail, with the
    database's reason, its state kept for a resume with the same run id."""
    started = time.monotonic()
    lease = remaining_seconds + settings.lease_grace_seconds
    finished = store.load(item.run_id, item.item_id)
    if finished is not None and finished.state is not None and finished.state.done:
        # Answered without a lease: a second execution of the run never blocks the first's recheck.
        return _checksum_result(item, finished.state, finished.invocations, 1.0)
    try:
        checkpoint = store.acquire(item.run_id, item.item_id, item.owner, lease, owner_running)
    except LeaseHeldError as held:
        return _lease_held(item, held, settings)
    if checkpoint.version == 0 and item.invocations > 0:
        raise CheckpointDamagedError(
            f"checkpoint for {item.item_id} (run {item.run_id}) disappeared while the table was being checked "
            f"({item.invocations} invocations in); start a new run id to check it again"
        )
    if checkpoint.invocations >= settings.max_invocations:
        raise CheckpointDamagedError(
            f"table {item.item_id} (run {item.run_id}) is not done after {checkpoint.invocations} invocations "
            f"(the MaxInvocationsPerTable guard): start a new run id, with shards or a narrower check"
        )
    if checkpoint.state is not None and checkpoint.state.done:
        return _checksum_result(item, checkpoint.state, checkpoint.invocations, 1.0)
    deadline = started + remaining_seconds - settings.safety_margin_seconds
    state = checkpoint.state
    saved = False  # the first save of an invocation counts it (the MaxInvocationsPerTable guard)
    try:
        with Differ(
            item.table,
            lambda: connectors(item.source),
            [lambda name=name: connectors(name) for name in item.targets],  # type: ignore[misc]
            item.options,
            source_label=item.source,
            target_labels=item.targets,
            validate_key=checkpoint.state is None,  # checked once, when the table run starts
        ) as differ:
            state = state or differ.initial_state()
            if item.keys is not None:
                state = _recheck(differ, state, item, connectors, [item.keys] * len(item.targets))
                state.source_rows = len(item.keys)
                for tally in state.targets:
                    tally.rows_compared = len(item.keys)
                state.walk_done = state.done = True
                checkpoint = store.save(checkpoint, state, lease)
            else:
                # Saved as it goes: an outage or a crash loses at most save_every_seconds of work.
                while True:
                    until = min(deadline, time.monotonic() + settings.save_every_seconds)
                    state = differ.step(state, until)
                    checkpoint = store.save(checkpoint, state, lease, count=not saved)
                    saved = True
                    if state.done or time.monotonic() >= deadline:
                        break
            progress = differ.progress(state)
    except TransientDatabaseError as exc:
        return _outage(item, checkpoint, store, state, lease, exc, settings, count=not saved)
    result = _checksum_result(item, state, checkpoint.invocations, progress)
    result.wait_seconds = settings.outage_wait_seconds
    return result


def _waiting(item: TableItem) -> ChecksumResult:
    """The item handed back unchanged with status "waiting" (a recheck keeps its findings)."""
    if isinstance(item, ChecksumResult):
        return item.model_copy(update={"status": "waiting"})
    return ChecksumResult(
        **item.model_dump(include=set(TableItem.model_fields) - {"invocations"}),
        status="waiting",
        invocations=item.invocations,
    )


def _lease_held(item: TableItem, held: LeaseHeldError, settings: Settings) -> ChecksumResult:
    """Another execution of the same run is still working on the table (the same run started
    twice, or a resume while the first still runs): wait for it, as for an outage, and answer from
    its checkpoint once it is done (or take the table over once that execution has ended). This
    keeps one answer per run: the report of either execution says the same, so it is alerted
    once. Each Wait lasts until the holder's lease would run out (at most MAX_LEASE_WAIT_SECONDS);
    after `lease_wait_budget_seconds` of waiting the table fails, naming the holder."""
    now = time.time()
    since = item.held_since if item.held_since is not None else now
    if now - since >= settings.lease_wait_budget_seconds:
        raise LeaseHeldError(
            f"{held} (waited for it {now - since:.0f} s, LeaseWaitBudgetSeconds "
            f"{settings.lease_wait_budget_seconds:.0f})",
            held.holder,
            held.seconds,
        ) from None
    result = _waiting(item)
    result.held_since = since
    result.wait_seconds = int(min(max(held.seconds, settings.outage_wait_seconds), MAX_LEASE_WAIT_SECONDS))
    result.outage = str(held)[:500]
    return result


def _outage(
    item: TableItem,
    checkpoint: Checkpoint,
    store: CheckpointStore,
    state: DiffState | None,
    lease: float,
    exc: TransientDatabaseError,
    settings: Settings,
    count: bool = True,
) -> ChecksumResult:
    """A database is away: keep what was done, and have the state machine wait and call again,
    until the outage has lasted longer than the budget."""
    now = time.time()
    since = item.outage_since if item.outage_since is not None else now
    if now - since >= settings.outage_budget_seconds:
        raise OutageError(
            f"a database of table {item.item_id} stayed away for {now - since:.0f} s (OutageBudgetSeconds "
            f"{settings.outage_budget_seconds:.0f}): {exc}; the table's progress is kept: start the execution "
            "again with the same run id to resume"
        ) from None
    if state is not None:
        checkpoint = store.save(checkpoint, state, lease, count=count)
        result = _checksum_result(item, state, checkpoint.invocations, None)
    else:
        result = _waiting(item)
        result.invocations = checkpoint.invocations
    result.status = "waiting"
    result.outage_since = since
    result.wait_seconds = settings.outage_wait_seconds
    result.outage = str(exc)[:500]
    return result


@hides_values
def recheck_table(
    item: ChecksumResult,
    remaining_seconds: float,
    settings: Settings,
    store: CheckpointStore,
    connectors: ConnectorOpener,
    owner_running: OwnerRunning | None = None,
) -> ChecksumResult:
    """After the state machine's Wait: reads the differences found again on both sides and keeps
    only those still there (rows that were travelling through replication drop out). A database
    away, or the table held by another execution of the run, is waited out as in checksum_table
    (status "waiting"; the recheck is done again whole, nothing of it is saved before)."""
    lease = remaining_seconds + settings.lease_grace_seconds
    try:
        checkpoint = store.acquire(item.run_id, item.item_id, item.owner, lease, owner_running)
    except LeaseHeldError as held:
        return _lease_held(item, held, settings)
    if checkpoint.state is None or not checkpoint.done:
        raise InputError(f"table item {item.item_id} has no finished check to recheck")
    state = checkpoint.state
    try:
        with Differ(
            item.table,
            lambda: connectors(item.source),
            [lambda name=name: connectors(name) for name in item.targets],  # type: ignore[misc]
            item.options,
            source_label=item.source,
            target_labels=item.targets,
            validate_key=False,
        ) as differ:
            state = _recheck(differ, state, item, connectors)
            saved = store.save(checkpoint, state, lease)
    except TransientDatabaseError as exc:
        return _outage(item, checkpoint, store, None, lease, exc, settings)
    result = _checksum_result(item, state, saved.invocations, 1.0)
    result.recheck_pending, result.rechecked = False, True
    return result


def _recheck(
    differ: Differ, state: DiffState, item: TableItem, connectors: ConnectorOpener, keys: list[list[Key]] | None = None
) -> DiffState:
    source = connectors(item.source)
    try:
        targets = [lambda name=name: connectors(name) for name in item.targets]
        return recheck_state(state, source, targets, differ.source_plan, differ.target_plans, keys)
    finally:
        source.close()


def _checksum_result(item: TableItem, state: DiffState, invocations: int, progress: float | None) -> ChecksumResult:
    summaries = []
    for name, tally in zip(item.targets, state.targets, strict=True):
        sample = {
            kind: keys[:SAMPLE_KEYS]
            for kind, keys in (("missing", tally.missing), ("extra", tally.extra), ("differing", tally.differing))
            if keys
        }
        summaries.append(
            TargetSummary(
                database=name,
                rows_compared=tally.rows_compared,
                missing=len(tally.missing),
                extra=len(tally.extra),
                differing=len(tally.differing),
                sample=sample,
                target_only_columns=tally.target_only_columns,
            )
        )
    differences = any(t.missing or t.extra or t.differing for t in state.targets)
    return ChecksumResult(
        **item.model_dump(include=set(TableItem.model_fields) - {"invocations", "outage_since", "held_since"}),
        recheck_pending=state.done and differences and item.recheck_after > 0 and item.keys is None,
        status="done" if state.done else "continue",
        invocations=invocations,
        source_rows=state.source_rows,
        progress=progress,
        targets_summary=summaries,
        duration_s=round(state.elapsed_s, 3),
    )


# --- Repair -------------------------------------------------------------------------------------
def repair_message(
    body: str, settings: Settings, clients: Clients, connectors: ConnectorOpener, writers: ConnectorOpener
) -> RepairResult:
    """Repairs the keys of one queue message on its target (tablesync.repair: each key read again
    on both sides, written only if it still differs, every write audited to S3).

    The message only refers: what may be written comes from the stored check definition it names
    (the table's `repair` settings, its key and columns, the source and targets it names), and the
    writer Lambda checks each write against the deployment's allow-list once more. A message whose
    run did not use a stored definition is acknowledged and nothing is written.

    A transient error (a lost connection, throttling: TransientDatabaseError) is raised: the
    message goes back to the queue and is retried, and after the queue's maxReceiveCount it
    moves to the dead-letter queue. Rows the target refuses for good (a constraint, a value out of
    range), and messages that can never succeed (bad JSON, a dropped table, a message that does
    not match its definition), go to the dead-letter queue at once with the keys and the reason,
    and the alert topic hears of them."""
    try:
        message = RepairMessage.model_validate_json(body)
    except ValidationError as exc:
        _dead_letter(settings, clients, body, f"not a repair message: {describe_validation_error(exc)}")
        return RepairResult(url="")
    records: list[AuditRecord] = []
    try:
        spec = _authorised_spec(message, clients)
        repair = _repair_options(spec) if spec is not None else None
        if repair is None:
            # Not a table the stored definition repairs: its keys are for other consumers.
            return RepairResult(url=message.target, not_enabled={message.kind: len(message.keys)})
        if not settings.audit_bucket:
            raise InputError("AUDIT_BUCKET is not set: nothing is written without its audit trail")
        options = _diff_options(spec)  # type: ignore[arg-type]
        with Differ(
            message.table,
            lambda: connectors(message.source),
            [lambda: connectors(message.target)],
            DiffOptions(key=options.key, columns=options.columns, ignore=options.ignore),
            source_label=message.source,
            target_labels=[message.target],
            validate_key=False,
        ) as differ:
            source = connectors(message.source)
            target = ReadWriteTarget(connectors(message.target), writers(message.target))
            try:
                result = repair_target(
                    source,
                    target,
                    differ.source_plan,
                    differ.target_plans[0],
                    message.keys,
                    repair,
                    table=message.table,
                    target_label=message.target,
                    audit=records.append,
                )
            finally:
                source.close()
                target.close()
    except TransientDatabaseError:
        raise
    except TablesyncError as exc:
        failures = [{"key": k, "action": "repair", "reason": str(exc)} for k in message.keys]
        parked = message.model_copy(update={"failures": failures})
        _dead_letter(settings, clients, parked.model_dump_json(), str(exc))
        _alert(settings, clients, message, f"{len(message.keys)} key(s) could not be repaired: {exc}")
        return RepairResult(
            url=message.target, failed=[RepairFailure(key=k, action="repair", reason=str(exc)) for k in message.keys]
        )
    _save_audit(settings, clients, message, records)
    if result.changed_keys:
        _check_again(settings, clients, message, result)
    if result.failed:
        failed_keys = [f.key for f in result.failed]
        failures = [f.model_dump(mode="json") for f in result.failed]
        retry = message.model_copy(update={"keys": failed_keys, "failures": failures})
        _dead_letter(settings, clients, retry.model_dump_json(), result.failed[0].reason)
    if result.failed or message.failures:
        _alert(settings, clients, message, _repair_summary(message, result))
    return result


def _check_again(settings: Settings, clients: Clients, message: RepairMessage, result: RepairResult) -> None:
    """Keys whose rows changed under the repair (the target since it was read: left alone; or the
    source while it was written: written, but maybe older than the source now) are sent back to
    the queue, later each time, to be read and decided again: a repair through a connector Lambda
    cannot lock the target while it reads the source, so it proves its writes after the fact and
    never leaves an unproven one. Keys that keep changing are parked, with an alert."""
    keys = result.changed_keys
    if message.recheck < REVERIFY_ROUNDS and settings.queue_url:
        again = message.model_copy(update={"keys": keys, "failures": [], "recheck": message.recheck + 1})
        clients.sqs.send_message(
            QueueUrl=settings.queue_url,
            MessageBody=again.model_dump_json(exclude={"failures"}),
            DelaySeconds=min(900, REVERIFY_DELAY_SECONDS * 2**message.recheck),
        )
        return
    reason = f"the rows kept changing under the repair ({message.recheck + 1} rounds): checked no further"
    failures = [{"key": k, "action": "repair", "reason": reason} for k in keys]
    parked = message.model_copy(update={"keys": keys, "failures": failures})
    _dead_letter(settings, clients, parked.model_dump_json(), reason)
    _alert(settings, clients, message, f"{len(keys)} key(s) of {message.table} on {message.target}: {reason}")


def _authorised_spec(message: RepairMessage, clients: Clients) -> TableSpec | None:
    """The stored definition's entry for the message's table, once the message is checked against
    it; None when the run's definition was not stored (nothing is then written)."""
    if not message.check_ssm:
        return None
    run = RunInput(run_id=message.run_id, owner="repair", check_ssm=message.check_ssm)
    definition = parse_definition(load_definition(run, clients))
    spec = definition.spec_for(message.table)
    if spec is None:
        raise InputError(f"table {message.table} is not in the check definition {message.check_ssm}")
    if message.source != definition.source or message.target not in definition.targets:
        raise InputError(
            f"the message names source {message.source} and target {message.target}, but the check definition "
            f"{message.check_ssm} has source {definition.source} and targets {', '.join(definition.targets)}"
        )
    return spec


class ReadWriteTarget:
    """A repair target reached through two Lambdas: its connector reads (with the read-only user),
    its writer writes (with the writer user); only the repair function may invoke the writer."""

    def __init__(self, reader: Connector, writer: Connector) -> None:
        self.reader, self.writer = reader, writer

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        return self.reader.fetch_rows(plan, keys)

    def write_rows(self, plan: TablePlan, writes: Sequence[RowWrite], dry_run: bool = False) -> WriteOutcome:
        return self.writer.write_rows(plan, writes, dry_run)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


def _repair_summary(message: RepairMessage, result: RepairResult) -> str:
    head = "re-drive" if message.failures else "repair"
    lines = [
        f"tablesync {head} of {message.table} on {message.target} (run {message.run_id}): "
        f"{result.inserted} inserted, {result.updated} updated, {result.deleted} deleted, "
        f"{result.in_sync} already in sync, {result.changed + result.source_changed} changed under the repair "
        f"(left for the next check), {len(result.failed)} failed"
    ]
    for failure in result.failed[:20]:
        lines.append(f"  {failure.action} {json.dumps(failure.key)}: {failure.reason}")
    if result.failed:
        lines.append("The failing keys are in the dead-letter queue; fix the cause, then re-drive it (README).")
    return "\n".join(lines)


def _dead_letter(settings: Settings, clients: Clients, body: str, reason: str) -> None:
    """Parks a message in the dead-letter queue, its reason as a message attribute (the body
    lists each key's own reason)."""
    if not settings.dead_letter_url:
        raise TablesyncError(f"cannot park a failed repair (no dead-letter queue): {reason}")
    clients.sqs.send_message(
        QueueUrl=settings.dead_letter_url,
        MessageBody=body,
        MessageAttributes={"reason": {"DataType": "String", "StringValue": reason[:1000] or "unknown"}},
    )


def _alert(settings: Settings, clients: Clients, message: RepairMessage, text: str) -> None:
    if settings.topic_arn:
        clients.sns.publish(
            TopicArn=settings.topic_arn, Subject=f"tablesync repair of {message.table}"[:100], Message=text
        )


def _save_audit(settings: Settings, clients: Clients, message: RepairMessage, records: list[AuditRecord]) -> None:
    """The audit trail of one message's writes: JSON lines in the audit bucket (versioned, locked
    against deletion; no role of the stack may erase them)."""
    if not records:
        return
    stamp = records[0].time.replace(":", "").replace("-", "")
    key = f"audit/{message.run_id}/{message.table}/{message.target}/{stamp}-{uuid.uuid4().hex[:8]}.jsonl"
    body = "".join(r.model_dump_json() + "\n" for r in records)
    clients.s3.put_object(Bucket=settings.audit_bucket, Key=key, Body=body.encode(), ContentType="application/x-ndjson")


# --- Connector ----------------------------------------------------------------------------------
WRITE_OPERATIONS = frozenset({"write_rows"})
WRITE_ACTIONS = frozenset({"insert", "update", "delete"})


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
            raise InputError(f"writable tables: {entry!r} is not TABLE:ACTION[+ACTION] (insert, update, delete)")
        allowed[table] = names
    return allowed


def serve_writer(
    request: ConnectorRequest, connector: Connector, database: str, allowed: dict[str, frozenset[str]]
) -> dict[str, Any]:
    """A writer's answer: write_rows only, and only writes the allow-list lets it make."""
    refusal = writer_refusal(request, database, allowed)
    if refusal is not None:
        return {"error": {"type": InputError.__name__, "message": refusal}}
    return serve(request, connector)


def writer_refusal(request: ConnectorRequest, database: str, allowed: dict[str, frozenset[str]]) -> str | None:
    """Why a writer refuses a request (None: it may run): not a write, or a write of a table or
    action outside the deployment's allow-list. Every write of a batch is checked before any runs."""
    if request.op not in WRITE_OPERATIONS:
        return f"a writer only writes, not {request.op!r}"
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


# --- Report -------------------------------------------------------------------------------------
def report(
    run: ReportInput,
    settings: Settings,
    clients: Clients,
    store: CheckpointStore,
    emit_metric: Callable[[str, str, float], None] | None = None,
) -> ReportResult:
    """The run's result: JSON in the results bucket, an SNS message when something differs or
    failed, metrics per table, and every differing key, batched, on the repair queue."""
    tables = _table_reports(run.results)
    unqueued: dict[str, str] = {}
    keys_queued = _queue_keys(run, settings, clients, store, unqueued) if settings.queue_url else 0
    for table in tables:
        if table.table in unqueued:
            table.status, table.error = "failed", unqueued[table.table]
    status: Literal["identical", "different", "failed"]
    if any(t.status == "failed" for t in tables):
        status = "failed"
    elif any(t.status in ("different", "incomplete") for t in tables):
        status = "different"
    else:
        status = "identical"
    result = ReportResult(run_id=run.run_id, status=status, tables=tables)
    if emit_metric is not None:
        for table in tables:
            emit_metric(table.table, "RowsCompared", float(sum(t.rows_compared for t in table.targets)))
            for kind in ("missing", "extra", "differing"):
                emit_metric(table.table, kind.capitalize(), float(sum(getattr(t, kind) for t in table.targets)))
            emit_metric(table.table, "Failed", 1.0 if table.status == "failed" else 0.0)
    result.keys_queued = keys_queued
    if settings.results_bucket:
        # One object per execution of the run: a later execution (a resume) never overwrites
        # what an earlier one reported, its database errors included.
        # Milliseconds: the keys of a run's reports sort in the order they were written.
        now = dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
        execution = run.owner.rsplit(":", 1)[-1] or "run"
        key = f"reports/{run.run_id}/{stamp}-{execution}.json"
        result.report_uri = f"s3://{settings.results_bucket}/{key}"
        clients.s3.put_object(
            Bucket=settings.results_bucket,
            Key=key,
            Body=result.model_dump_json(indent=2).encode(),
            ContentType="application/json",
        )
    # An outcome is alerted once per run, however many executions report it; a publish that
    # fails clears its mark, so the next execution alerts (at least once, never lost).
    flag = f"alert_{_outcome(result)}"
    if settings.topic_arn and status != "identical" and store.mark_once(run.run_id, "#report", flag):
        try:
            clients.sns.publish(
                TopicArn=settings.topic_arn,
                Subject=f"tablesync run {run.run_id}: {status}"[:100],
                Message=_alert_text(result),
            )
        except Exception:
            store.unmark(run.run_id, "#report", flag)
            raise
    if len(result.tables) > REPORT_TABLES:
        # The state machine's output is capped at 256 KB; the full report is in S3.
        result.tables = result.tables[:REPORT_TABLES]
    return result


def _table_reports(results: list[TableResult | FailedItem]) -> list[TableReport]:
    by_table: dict[str, TableReport] = {}
    for entry in results:
        report = by_table.setdefault(
            entry.table, TableReport(table=entry.table, status="identical", shards=entry.shards)
        )
        if isinstance(entry, FailedItem):
            report.status = "failed"
            shard = f" (shard {entry.shard + 1} of {entry.shards})" if entry.shards > 1 else ""
            report.error = f"{entry.error}{shard}: {_cause(entry.cause)}"
            continue
        report.source = entry.source
        report.source_rows += entry.source_rows
        report.invocations += entry.invocations
        report.duration_s = max(report.duration_s, entry.duration_s)
        for summary in entry.targets_summary:
            merged = next((t for t in report.targets if t.database == summary.database), None)
            if merged is None:
                report.targets.append(summary.model_copy(deep=True))
                continue
            merged.rows_compared += summary.rows_compared
            for kind in ("missing", "extra", "differing"):
                setattr(merged, kind, getattr(merged, kind) + getattr(summary, kind))
                keys = merged.sample.get(kind, []) + summary.sample.get(kind, [])
                if keys:
                    merged.sample[kind] = keys[:SAMPLE_KEYS]
        if report.status == "failed":
            continue
        if entry.status != "done":
            report.status = "incomplete"
        elif any(t.missing or t.extra or t.differing for t in report.targets) and report.status != "incomplete":
            report.status = "different"
    return sorted(by_table.values(), key=lambda t: t.table)


def _cause(cause: str) -> str:
    """A Lambda error's Cause is JSON ({"errorMessage": ..., "errorType": ...}); keep the message."""
    try:
        data = json.loads(cause)
    except ValueError:
        return cause[:500]
    if isinstance(data, dict):
        return str(data.get("errorMessage") or data.get("Cause") or cause)[:500]
    return cause[:500]


def _queue_keys(
    run: ReportInput, settings: Settings, clients: Clients, store: CheckpointStore, unqueued: dict[str, str]
) -> int:
    """Sends every differing key of the run to the repair queue, KEYS_PER_MESSAGE per message, once
    per table item however many executions report the run; a table whose keys cannot be queued is
    named in `unqueued`, with the reason."""
    queued = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if batch:
            entries = [{"Id": str(i), "MessageBody": json.dumps(m)} for i, m in enumerate(batch)]
            response = clients.sqs.send_message_batch(QueueUrl=settings.queue_url, Entries=entries)
            if response.get("Failed"):
                raise TablesyncError(f"the repair queue refused {len(response['Failed'])} message(s)")
            batch.clear()

    for entry in run.results:
        if not isinstance(entry, TableResult) or entry.status != "done":
            continue
        if not any(t.missing or t.extra or t.differing for t in entry.targets_summary):
            continue
        try:
            checkpoint = store.load(entry.run_id, entry.item_id)
        except CheckpointDamagedError as exc:
            unqueued[entry.table] = f"{exc} (its differing keys were not queued for repair)"
            continue
        if checkpoint is None or checkpoint.state is None:
            # Its keys cannot be queued: said, never silently dropped.
            unqueued[entry.table] = (
                f"checkpoint for {entry.item_id} (run {entry.run_id}) is gone: its differing keys were not queued "
                "for repair; start a new run id to find them again"
            )
            continue
        if not store.mark_once(entry.run_id, entry.item_id, "queued"):
            continue  # another execution of this run queued them already
        try:
            queued += _queue_item_keys(run, entry, checkpoint.state, batch, flush)
            flush()
        except Exception:
            # Not all sent: cleared, so that the next execution sends them (again: a repair of a
            # key already repaired finds it equal and writes nothing). Never lost.
            batch.clear()
            store.unmark(entry.run_id, entry.item_id, "queued")
            raise
    return queued


def _queue_item_keys(
    run: ReportInput, entry: TableResult, state: DiffState, batch: list[dict[str, Any]], flush: Callable[[], None]
) -> int:
    queued = 0
    for target, tally in zip(entry.targets, state.targets, strict=True):
        for kind in ("missing", "extra", "differing"):
            keys: list[Key] = getattr(tally, kind)
            for start in range(0, len(keys), KEYS_PER_MESSAGE):
                part = keys[start : start + KEYS_PER_MESSAGE]
                # A reference to the stored definition, not its settings: a message grants nothing.
                message = RepairMessage(
                    run_id=run.run_id,
                    check_ssm=entry.check_ssm,
                    table=entry.table,
                    source=entry.source,
                    target=target,
                    kind=kind,
                    keys=part,
                )
                batch.append(message.model_dump(mode="json", exclude={"failures"}))
                queued += len(part)
                if len(batch) == 10:
                    flush()
    return queued


def _outcome(result: ReportResult) -> str:
    """What makes two reports of a run the same outcome: each table's status and counts, and a
    failed table's error class (its text names times and executions, which differ each time)."""
    parts: list[Any] = [result.status]
    for table in result.tables:
        error = (table.error or "").split(":", 1)[0] if table.status == "failed" else ""
        counts = [(t.database, t.missing, t.extra, t.differing) for t in table.targets]
        parts.append((table.table, table.status, error, counts))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


def _alert_text(result: ReportResult) -> str:
    lines = [f"tablesync run {result.run_id}: {result.status}"]
    for table in result.tables:
        if table.status == "identical":
            continue
        if table.status == "failed":
            lines.append(f"- {table.table}: FAILED: {table.error}")
            continue
        for target in table.targets:
            lines.append(
                f"- {table.table} -> {target.database}: {target.missing} missing, {target.extra} extra, "
                f"{target.differing} differing of {target.rows_compared:,} rows"
            )
    if result.report_uri:
        lines.append(f"report: {result.report_uri}")
    return "\n".join(lines)


def _aws_error(exc: Exception) -> str:
    error = getattr(exc, "response", {}).get("Error", {})
    return str(error.get("Message") or error.get("Code") or type(exc).__name__)
