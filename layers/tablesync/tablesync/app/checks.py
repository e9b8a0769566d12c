"""Check definitions: which tables of which source to compare with which targets, and how.

A run's definition comes inline in the execution input, or from an S3 object or an SSM parameter
named there. It names databases by the names the stack deployed connectors for; tables are listed
explicitly or as name patterns expanded through the source's catalogue."""

from __future__ import annotations

import fnmatch
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import InputError
from ..models import MAX_SEGMENTS, BucketCount, ChunkRows, ListedRows, Streak, WhereText, WriteBatch


class RepairSpec(BaseModel):
    """What the repair Lambda may write to the targets of a table (the CLI's options)."""

    model_config = ConfigDict(extra="forbid")

    write_missing: bool = False
    write_differing: bool = False
    delete_extra: bool = False
    write_batch: WriteBatch = 1_000


class TableOptions(BaseModel):
    """Per-table diff options (the CLI's options of the same names, DiffOptions' fields with the
    same constraints), and the app's own: shards, recheck_after, repair."""

    model_config = ConfigDict(extra="forbid")

    key: list[str] | None = None
    columns: list[str] | None = None
    ignore: list[str] = Field(default_factory=list)
    where: WhereText | None = None
    reverse: bool = False
    stop_on_streak: Streak | None = None
    # None: the engine's default (DiffOptions); the constraints are DiffOptions' own types.
    chunk_size: ChunkRows | None = None
    max_chunk_size: ChunkRows | None = None
    bisection_factor: BucketCount | None = None
    bisection_threshold: ListedRows | None = None
    shards: int = Field(default=1, ge=1, le=256)  # key-range shards checked in parallel
    # Seconds to wait before the differences found are read again (replication lag); 0: no recheck.
    recheck_after: int = Field(default=0, ge=0, le=86_400)
    strict_schema: bool = False  # a column only a target has fails the table (default: reported)
    repair: RepairSpec | None = None  # the repair Lambda writes only for tables that enable it
    # check: compare; sync: compare, then repair (write_missing and write_differing unless `repair`
    # says otherwise); copy: a target that lacks the table gets it (created, copied) before the
    # check; replicate: each target gets the source's rows above its highest key (no check).
    mode: Literal["check", "sync", "copy", "replicate"] = "check"
    group_column: str | None = None  # replicate: rows sharing its value are never split
    # DynamoDB tables (the CLI's --segments, --skip-extra, --consistent-read, --rate-limit).
    segments: int | None = Field(default=None, ge=1, le=MAX_SEGMENTS)
    skip_extra: bool = False
    consistent_read: bool = False
    rate_limit: float | None = Field(default=None, gt=0, le=1_000_000)


class TableSpec(TableOptions):
    """One table by name, or every table whose name matches a pattern (`*` and `?`)."""

    table: str | None = None
    pattern: str | None = None

    @model_validator(mode="after")
    def _one_of(self) -> TableSpec:
        if (self.table is None) == (self.pattern is None):
            raise ValueError("give exactly one of 'table' and 'pattern'")
        return self


class CheckDefinition(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1)
    targets: list[str] = Field(min_length=1)
    tables: list[TableSpec | str] = Field(min_length=1)
    defaults: TableOptions = Field(default_factory=TableOptions)

    @model_validator(mode="after")
    def _distinct(self) -> CheckDefinition:
        if self.source in self.targets:
            raise ValueError("the source cannot also be a target")
        if len(set(self.targets)) != len(self.targets):
            raise ValueError("a target is listed twice")
        return self

    def spec_for(self, table: str) -> TableSpec | None:
        """The entry that governs a table, as list_tables chose it: the first naming it, by name or
        by pattern (`schema.pattern` matches `schema.table`)."""
        for spec in self.specs():
            if spec.table == table or (spec.pattern is not None and fnmatch.fnmatchcase(table, spec.pattern)):
                return spec
        return None

    def specs(self) -> list[TableSpec]:
        """Every table entry with the defaults applied under its own options."""
        out = []
        base = self.defaults.model_dump(exclude_unset=True)
        for entry in self.tables:
            spec = TableSpec(table=entry) if isinstance(entry, str) else entry
            merged = {**base, **spec.model_dump(exclude_unset=True)}
            out.append(TableSpec.model_validate(merged))
        return out


def parse_definition(data: Any) -> CheckDefinition:
    """A check definition from JSON data; a bad one is an InputError naming the field."""
    try:
        return CheckDefinition.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"invalid check definition: {describe_validation_error(exc)}") from None


def describe_validation_error(exc: ValidationError) -> str:
    """pydantic's first error as one line: `tables.0.shards: Input should be ...`."""
    errors = exc.errors()
    if not errors:
        return str(exc).splitlines()[0]
    first = errors[0]
    # Union members show up in the location ("function-after[...]", "str"): keep the field path.
    parts = [str(p) for p in first.get("loc", ()) if isinstance(p, int) or ("[" not in p and p != "str")]
    location = ".".join(parts)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{location or 'definition'}: {first.get('msg', 'invalid')}{more}"
