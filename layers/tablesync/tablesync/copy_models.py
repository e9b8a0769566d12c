"""The models of `tablesync copy` and `tablesync replicate` (and the app's InitTable and
Replicate steps): their options, their small JSON-serialisable progress, and their results."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from .models import DiffResult, Key, WhereText

MAX_COPY_BATCH = 100_000  # rows a batch: read, held and written at once


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)


class CopyOptions(Model):
    key: list[str] | None = None
    columns: list[str] | None = None
    ignore: list[str] = Field(default_factory=list)
    where: WhereText | None = None
    batch: int = Field(default=20_000, ge=1, le=MAX_COPY_BATCH)
    create: bool = False  # create a target table that does not exist, from the source's schema
    existing: Literal["refuse", "append", "replace"] = "refuse"  # a target table that has rows
    evolve_schema: bool = False  # add the source's columns a target lacks
    verify: bool = True  # a diff of the copied rows when the copy ends
    # replicate: rows sharing this column's value are never split between two batches
    group_column: str | None = None
    # replicate: a target that fails is left for the next step, the others go on
    independent: bool = False


class TargetCopy(Model):
    """One target's progress: where its next batch starts (`lo`, inclusive; None at the table's
    start), and what has been done to it."""

    lo: Key | None = None
    done: bool = False
    rows: int = 0
    created: str | None = None  # the CREATE TABLE run
    added_columns: list[str] = Field(default_factory=list)  # --evolve-schema's ALTER TABLEs
    replaced: bool = False  # its rows were deleted first (--replace)
    start: Key | None = None  # where the copy began (--append: after the rows already there)
    error: str | None = None  # replicate: why the last step left it (a destination away)


class CopyState(Model):
    fingerprint: str
    names: list[str] = Field(default_factory=list)  # the app: the targets it copies to (those lacking the table)
    prepared: bool = False  # targets created, emptied or evolved (never again on a resume)
    targets: list[TargetCopy]
    batches: int = 0
    elapsed_s: float = 0.0

    @property
    def done(self) -> bool:
        return all(t.done or t.error is not None for t in self.targets)


class CopyTargetResult(Model):
    url: str
    rows_copied: int
    created: str | None = None
    added_columns: list[str] = Field(default_factory=list)
    replaced: bool = False
    verified: bool | None = None  # None: not verified (--no-verify, or the copy did not end)
    error: str | None = None  # replicate: why it was left behind


class CopyResult(Model):
    table: str
    source: str
    targets: list[CopyTargetResult]
    complete: bool
    duration_s: float
    rows_per_second: float
    verify: DiffResult | None = None  # the diff of the copied rows, when asked and complete
