"""pydantic models of every event the state machine passes between its tasks, and of the
connector Lambda's requests and answers. All of it stays small: a Map item's state is capped at
256 KB, so full lists of differing keys live in the checkpoint store, not in events."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ..copy_models import CopyTargetResult
from ..models import DiffKind, DiffOptions, Key, RepairOptions
from ..report import SAMPLE_KEYS as SAMPLE_KEYS
from ..report import RunReport as RunReport
from ..report import TableReport as TableReport
from ..report import TargetSummary as TargetSummary


class ResyncRequest(BaseModel):
    """Keys of one table of a stored definition to read again on every target and, where they
    still differ, repair as that definition's `repair` settings allow (the input grants nothing)."""

    model_config = ConfigDict(extra="forbid")

    table: str = Field(min_length=1)
    keys: list[Key] = Field(min_length=1, max_length=5_000)


class RunInput(BaseModel):
    """The execution input, with the run's identity added by the state machine. The definition is
    inline (`check`), or in an S3 object (`check_s3`: s3://bucket/key) or an SSM parameter
    (`check_ssm`: its name)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(min_length=1, max_length=200)
    owner: str = Field(min_length=1)  # the execution that holds the run's checkpoints
    check: dict[str, Any] | None = None
    check_s3: str | None = None
    check_ssm: str | None = None
    tables: list[str] | None = None  # only these tables of the definition
    resync: ResyncRequest | None = None  # re-sync these keys of one table (recheck, report, repair)


class TableItem(BaseModel):
    """One Map item: a table, or one key-range shard of it, with everything needed to check it."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    owner: str
    item_id: str  # unique in the run: table, and shard number when sharded
    table: str
    source: str
    targets: list[str]
    options: DiffOptions
    shard: int = 0
    shards: int = 1
    recheck_after: int = 0
    repair: RepairOptions | None = None
    keys: list[Key] | None = None  # a re-sync: only these keys, no walk
    mode: Literal["check", "sync", "copy", "replicate"] = "check"  # the definition's (checks.TableOptions)
    group_column: str | None = None  # replicate
    # What CopyTable did (copy, replicate), carried through the check to the report.
    copied: list[CopyTargetResult] = Field(default_factory=list)
    copy_invocations: int = 0
    # The stored definition (SSM parameter) the run checks; only such a run's keys are repaired.
    check_ssm: str | None = None
    # Passed back by the state machine from the previous ChecksumTable: how many invocations have
    # worked on the item (its checkpoint must then exist), and since when a database has been
    # away (an outage is waited out: status "waiting", a Wait of `wait_seconds`, then again).
    invocations: int = 0
    outage_since: float | None = None
    held_since: float | None = None  # since when another execution of the run has held the table
    wait_seconds: int = 30


class ListTablesEvent(BaseModel):
    """What the state machine hands ListTables: the execution input as given, and the execution's
    name (the default run id) and id (the owner of the run's checkpoints)."""

    execution_name: str
    execution_id: str
    input: dict[str, Any] = Field(default_factory=dict)

    def run_input(self) -> dict[str, Any]:
        """The RunInput's data: the run id defaults to the execution's name."""
        given = dict(self.input)
        given.setdefault("run_id", self.execution_name)
        given["owner"] = self.execution_id
        return given


class ListTablesResult(BaseModel):
    run_id: str
    owner: str
    max_concurrency: int = 10
    items: list[TableItem]


class TableResult(BaseModel):
    """A table item's outcome as the Map passes it on to Report (the item's options left out, so
    that many tables fit in the state machine's 256 KB)."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    item_id: str
    table: str
    source: str
    targets: list[str]
    shard: int = 0
    shards: int = 1
    status: Literal["continue", "waiting", "done"]
    invocations: int = 0
    source_rows: int = 0
    progress: float | None = None
    targets_summary: list[TargetSummary] = Field(default_factory=list)
    duration_s: float = 0.0
    recheck_pending: bool = False  # done, with differences to read again after `recheck_after`
    outage: str | None = None  # status "waiting": why (a database is away, another execution holds the table)
    rechecked: bool = False
    check_ssm: str | None = None  # the stored definition of the run (see TableItem)
    mode: Literal["check", "sync", "copy", "replicate"] = "check"
    copied: list[CopyTargetResult] = Field(default_factory=list)  # copy, replicate: what each target got


class ChecksumResult(TableResult, TableItem):
    """What ChecksumTable returns; while `status` is "continue" the state machine passes it back."""


class FailedItem(BaseModel):
    """A Map item whose Catch fired: the table failed, the others went on."""

    model_config = ConfigDict(extra="ignore")

    item_id: str
    table: str
    shard: int = 0
    shards: int = 1
    status: Literal["failed"] = "failed"
    error: str = "Error"
    cause: str = ""


class ReportInput(BaseModel):
    run_id: str
    owner: str = ""
    results: list[TableResult | FailedItem]


# The report's models are the one result model every surface renders (report.py).
ReportResult = RunReport


# --- the repair Lambda -----------------------------------------------------------------------
class RepairMessage(BaseModel):
    """One message of the repair queue: keys of one table and target, and a reference to the
    stored check definition of the run that found them. The message grants nothing: the repair
    Lambda writes only what that definition enables for the table, between the source and target
    it names, and each writer only what the deployment's allow-list lets it write. A message the
    repair Lambda could not apply goes to the dead-letter queue with `failures` (key, action,
    reason) and can be re-driven once the cause is fixed."""

    model_config = ConfigDict(extra="ignore")

    run_id: str
    check_ssm: str | None = None  # None: the run's definition was not stored; nothing is written
    table: str
    source: str
    target: str
    kind: DiffKind = DiffKind.DIFFERING  # as found by the run; the repair reads every key again anyway
    keys: list[Key] = Field(min_length=1, max_length=10_000)
    failures: list[dict[str, Any]] = Field(default_factory=list)
    # Keys that changed under an earlier repair, sent back to be checked again: how many times.
    recheck: int = Field(default=0, ge=0, le=100)


# --- the connector Lambda --------------------------------------------------------------------
class ConnectorRequest(BaseModel):
    """One connector operation (names and arguments of tablesync.connectors.Connector)."""

    model_config = ConfigDict(extra="forbid")

    op: str
    args: dict[str, Any] = Field(default_factory=dict)


class ConnectorResponse(BaseModel):
    result: Any = None
