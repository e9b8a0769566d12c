"""The one result model every surface renders: the CLI's text, the app's report in S3 and its
alert, and (next) the HTML pages. A TableReport summarises one table's diff (counts, the first
keys of each kind, value samples, repairs); a RunReport is a run of the app over many tables.

The CLI's `--format json` prints the full DiffResult (every key), which a TableReport summarises;
the renderers (output.py) take these models, never a DiffResult or a DiffState."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, Field

from .copy_models import CopyTargetResult
from .models import DiffKind, DiffResult, Key, RepairResult, Sample, TargetTally

SAMPLE_KEYS = 10  # differing keys of each kind carried in the app's table summaries
TableStatus = Literal["identical", "different", "failed", "incomplete"]


class TargetSummary(BaseModel):
    database: str
    rows_compared: int = 0
    missing: int = 0
    extra: int = 0
    differing: int = 0
    sample: dict[str, list[Key]] = Field(default_factory=dict)  # kind -> first keys found
    target_only_columns: list[str] = Field(default_factory=list)  # not compared: the source lacks them
    samples: list[Sample] = Field(default_factory=list)  # rows with their differing values (--sample)

    @property
    def differences(self) -> int:
        return self.missing + self.extra + self.differing


class TableReport(BaseModel):
    table: str
    status: TableStatus
    source: str = ""
    source_rows: int = 0
    duration_s: float = 0.0
    invocations: int = 0  # checksum Lambda invocations, all shards together
    targets: list[TargetSummary] = Field(default_factory=list)
    error: str | None = None
    shards: int = 1
    stopped_on_streak: bool = False
    repairs: list[RepairResult] = Field(default_factory=list)
    mode: str = "check"  # the app's table mode: check, sync, copy, replicate
    copied: list[CopyTargetResult] = Field(default_factory=list)  # copy, replicate: what each target got


class RunReport(BaseModel):
    run_id: str
    status: Literal["identical", "different", "failed"]
    tables: list[TableReport]
    report_uri: str | None = None
    keys_queued: int = 0


def target_summary(
    database: str,
    rows_compared: int,
    keys: dict[DiffKind, Sequence[Key]],
    *,
    sample_keys: int = SAMPLE_KEYS,
    target_only_columns: Sequence[str] = (),
    samples: Sequence[Sample] = (),
) -> TargetSummary:
    """A target's counts and its first keys of each kind."""
    return TargetSummary(
        database=database,
        rows_compared=rows_compared,
        missing=len(keys.get(DiffKind.MISSING, ())),
        extra=len(keys.get(DiffKind.EXTRA, ())),
        differing=len(keys.get(DiffKind.DIFFERING, ())),
        sample={kind: list(found[:sample_keys]) for kind in tuple(DiffKind) if (found := keys.get(kind))},
        target_only_columns=list(target_only_columns),
        samples=list(samples),
    )


def tally_summary(database: str, tally: TargetTally, sample_keys: int = SAMPLE_KEYS) -> TargetSummary:
    """A target's summary from the engine's running tally (the app, between invocations)."""
    keys = {kind: getattr(tally, kind) for kind in tuple(DiffKind)}
    return target_summary(
        database,
        tally.rows_compared,
        keys,
        sample_keys=sample_keys,
        target_only_columns=tally.target_only_columns,
    )


def table_report(result: DiffResult, sample_keys: int = SAMPLE_KEYS) -> TableReport:
    """A finished diff as a TableReport (the CLI)."""
    targets = [
        target_summary(
            t.url,
            t.rows_compared,
            {kind: getattr(t, kind) for kind in tuple(DiffKind)},
            sample_keys=sample_keys,
            target_only_columns=t.target_only_columns,
            samples=t.samples,
        )
        for t in result.targets
    ]
    status: TableStatus = "incomplete" if not result.complete and not result.stopped_on_streak else "identical"
    if status == "identical" and result.has_differences:
        status = "different"
    return TableReport(
        table=result.table,
        status=status,
        source=result.source.url,
        source_rows=result.source.rows,
        duration_s=result.duration_s,
        targets=targets,
        stopped_on_streak=result.stopped_on_streak,
        repairs=result.repairs,
    )
