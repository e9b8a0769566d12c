"""pydantic models for everything that crosses a boundary: connector requests and answers,
engine options, the engine's resumable state and the diff result. All of it is plain JSON."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field


class Model(BaseModel):
    """Base of every model: validators are built on first use, not at import (start-up time)."""

    model_config = ConfigDict(defer_build=True)


# A key is a JSON array of the key columns' canonical values in key order: [42], ["acme", 7]
# (null only in a target's row that has a NULL in a key column).
KeyValue = int | str | None
Key = list[KeyValue]


class DiffKind(StrEnum):
    """The three kinds of difference; their values are the names in every report."""

    MISSING = "missing"  # the source has the key, the target does not
    EXTRA = "extra"  # the target has the key (or holds it twice, or a NULL in it), the source does not
    DIFFERING = "differing"  # both have the key, its rows differ


class Kind(StrEnum):
    """Engine-independent value kinds; docs/normalization.md gives each one's canonical text."""

    INTEGER = "integer"
    BOOLEAN = "boolean"
    DECIMAL = "decimal"
    FLOAT = "float"
    TEXT = "text"
    UUID = "uuid"
    JSON = "json"
    BYTES = "bytes"
    TIMESTAMP = "timestamp"
    TIMESTAMPTZ = "timestamptz"
    DATE = "date"
    TIME = "time"


# Kinds whose canonical texts can be compared with each other: a column may be `integer` on one
# side and `boolean` (or tinyint(1)) on the other, `text` on one side and `uuid` on the other.
COMPATIBLE_GROUPS: list[frozenset[Kind]] = [
    frozenset({Kind.INTEGER, Kind.BOOLEAN, Kind.DECIMAL}),
    frozenset({Kind.FLOAT}),
    frozenset({Kind.TEXT, Kind.UUID, Kind.JSON}),
    frozenset({Kind.BYTES}),
    frozenset({Kind.TIMESTAMP, Kind.TIMESTAMPTZ}),
    frozenset({Kind.DATE}),
    frozenset({Kind.TIME}),
]

KEY_KINDS = frozenset({Kind.INTEGER, Kind.TEXT, Kind.UUID})

# Size limits of options and of connector requests: no request can make a database sort or send
# more than this at once.
MAX_CHUNK_ROWS = 10_000_000  # rows in one chunk (the engine grows chunks up to 4x that while scanning)
MAX_BUCKETS = 2048  # buckets one range is cut into
# Buckets of a chunk that takes a whole table where a side scans (engine/tuning.py): one pass cuts
# it into buckets small enough to list (the scan's cost per row grows with log2 of the count).
MAX_SCAN_BUCKETS = 16_384
MAX_LISTED_ROWS = 100_000  # rows listed (key, hash) in one range
MAX_WRITE_BATCH = 10_000  # rows written in one transaction (a repair batch, through a writer Lambda too)

# The options' constraints, declared once: the engine's DiffOptions, the CLI (which validates
# into it) and the app's check definitions (TableOptions) all use these types, so their limits
# cannot disagree.
ChunkRows = Annotated[int, Field(ge=1, le=MAX_CHUNK_ROWS)]
BucketCount = Annotated[int, Field(ge=2, le=MAX_BUCKETS)]
ListedRows = Annotated[int, Field(ge=1, le=MAX_LISTED_ROWS)]
Streak = Annotated[int, Field(ge=1)]
WhereText = Annotated[str, Field(max_length=10_000)]
WriteBatch = Annotated[int, Field(ge=1, le=MAX_WRITE_BATCH)]
MAX_KEYS_PER_REQUEST = 100_000  # keys fetched or written by one request
MAX_SPANS_PER_REQUEST = 10_000  # ranges in one request
MAX_SEGMENTS = 1_000  # segments of a parallel scan (DynamoDB allows 1,000,000; threads bound the use)


def kinds_compatible(a: Kind, b: Kind) -> bool:
    return any(a in group and b in group for group in COMPATIBLE_GROUPS)


class Column(Model):
    """A column as one database describes it."""

    name: str
    native_type: str
    kind: Kind | None = None  # None: a type tablesync cannot normalise
    nullable: bool = True
    # True when the column's own index order is plain byte (code point) order, so key ranges can
    # use the index as is; otherwise the dialect compares keys through a binary expression.
    binary_order: bool = True
    charset: str | None = None
    collation: str | None = None
    # The dialect's name of the underlying type where it changes the canonical text or the order
    # (PostgreSQL bpchar and citext, MySQL enum and set).
    base_type: str | None = None


class TableSchema(Model):
    table: str
    columns: list[Column]
    primary_key: list[str]
    estimated_rows: int | None = None
    # False: a store that cannot answer key-ordered range queries (DynamoDB, hash-partitioned):
    # the engine compares it by scan and lookup (engine/scan_lookup.py).
    key_ordered: bool = True

    def column(self, name: str) -> Column | None:
        for col in self.columns:
            if col.name == name:
                return col
        for col in self.columns:
            if col.name.lower() == name.lower():
                return col
        return None


# Every part of a connector request that shapes SQL is a closed set (an operator, an action, a
# kind) or is quoted (names) or bound (values): a request cannot carry SQL.
ConditionOp = Literal["=", "!=", "<", "<=", ">", ">=", "in", "not_in", "is_null", "is_not_null"]
# A --where literal: a scalar (a decimal travels as its text; dialects bind it per column kind).
FilterValue = bool | int | float | Decimal | str
WriteAction = Literal["insert", "update", "delete"]


class Condition(Model):
    """A leaf of a --where filter: column, operator and bound value(s)."""

    column: str
    op: ConditionOp
    values: list[FilterValue] = Field(default_factory=list, max_length=10_000)


class Filter(Model):
    """A --where filter as a tree; dialects render it with quoted identifiers and bound values."""

    op: Literal["and", "or", "not", "cond"]
    items: list[Filter] = Field(default_factory=list)
    cond: Condition | None = None


class TablePlan(Model):
    """What one side needs to build its queries: its own column names and native types."""

    table: str
    key: list[Column]
    columns: list[Column]  # compared columns, key columns excluded
    where: Filter | None = None
    filter_columns: list[Column] = Field(default_factory=list)  # --where columns neither key nor compared
    # Stores of items (DynamoDB), whose attributes are compared all but these; how they are read.
    ignore: list[str] = Field(default_factory=list)
    consistent_read: bool = False
    read_units_per_second: float | None = None

    @property
    def has_json(self) -> bool:
        return any(c.kind is Kind.JSON for c in self.columns)


class Checksum(Model):
    count: int
    total: str  # the exact sum of 60-bit row hashes, as a decimal string (no overflow anywhere)


class Span(Model):
    """A key range [lo, hi) (None: unbounded on that side) and the keys that cut it into buckets
    [lo, p1), [p1, p2), ... [pn, hi), ascending. Operations over several spans take them sorted and
    disjoint."""

    lo: Key | None = None
    hi: Key | None = None
    points: list[Key] = Field(default_factory=list, max_length=MAX_SCAN_BUCKETS + 2)  # + the table's ends
    # A side that scans for the range may narrow its reads with its own index (range_superset):
    # only where the engine can check the rows read against a count it knows (engine/narrowing.py).
    narrow: bool = False


def fixed_prefix(lo: Key | None, hi: Key | None) -> int:
    """How many leading key columns hold one value throughout [lo, hi)."""
    if lo is None or hi is None:
        return 0
    fixed = 0
    while fixed < len(lo) - 1 and lo[fixed] == hi[fixed]:
        fixed += 1
    return fixed


def index_serves(key: Sequence[Column], lo: Key | None, hi: Key | None) -> bool:
    """True when the key's index can serve the range [lo, hi): the first key column that varies in
    it is ordered by bytes. Columns fixed in the range are matched by equality, which an index
    serves under any collation."""
    return key[fixed_prefix(lo, hi)].binary_order


class SplitRequest(Model):
    """Cut [lo, hi) at every `step`-th row (the first row excluded), in key order."""

    lo: Key | None = None
    hi: Key | None = None
    step: int = Field(ge=1, le=4 * MAX_CHUNK_ROWS)


class KeyRange(Model):
    min_key: Key | None
    max_key: Key | None
    estimated_rows: int | None = None


class DiffOptions(Model):
    model_config = ConfigDict(extra="forbid", defer_build=True)

    key: list[str] | None = None
    columns: list[str] | None = None
    ignore: list[str] = Field(default_factory=list)
    where: WhereText | None = None
    reverse: bool = False
    stop_on_streak: Streak | None = None
    # Upper bounds keep one query's load on a database bounded (MAX_CHUNK_ROWS, MAX_BUCKETS,
    # MAX_LISTED_ROWS: the same limits bound connector requests).
    chunk_size: ChunkRows = 2_000
    max_chunk_size: ChunkRows = 1_000_000
    target_chunk_seconds: float = Field(default=0.5, gt=0, le=60)
    bisection_factor: BucketCount = 32
    bisection_threshold: ListedRows = 500
    threads: int = Field(default=1, ge=1, le=64)
    sample: int = Field(default=0, ge=0, le=10_000)
    strict_schema: bool = False  # a column only a target has is an error, not a warning
    # Only keys in [lo, hi) (None: unbounded): one shard of a table split by key range.
    lo: Key | None = None
    hi: Key | None = None
    # Stores compared by scan and lookup (DynamoDB): the parallel scan's segments, whether the
    # targets are scanned for extra items, strongly consistent reads, read units per second.
    segments: int = Field(default=1, ge=1, le=MAX_SEGMENTS)
    page_items: int | None = Field(default=None, ge=1, le=MAX_KEYS_PER_REQUEST)  # None: DynamoDB's (1 MB)
    skip_extra: bool = False
    consistent_read: bool = False
    rate_limit: float | None = Field(default=None, gt=0, le=1_000_000)


class PendingRange(Model):
    """A key range whose checksums differed on some targets, with its known row counts."""

    lo: Key | None
    hi: Key | None
    targets: list[int]
    counts: list[int]  # rows in the range on the source, then on each of `targets`


class TargetTally(Model):
    rows_compared: int = 0
    missing: list[Key] = Field(default_factory=list)
    extra: list[Key] = Field(default_factory=list)
    differing: list[Key] = Field(default_factory=list)
    target_only_columns: list[str] = Field(default_factory=list)  # not compared: the source lacks them


class DiffState(Model):
    """The engine's whole progress. Saved between steps; resuming from it never counts a row twice."""

    fingerprint: str
    cursor: Key | None = None  # forward: next chunk's lower bound; reverse: its upper bound
    started: bool = False
    walk_done: bool = False
    done: bool = False
    stopped_on_streak: bool = False
    chunk_size: int
    streak: int = 0
    chunks: int = 0
    source_rows: int = 0
    rows_read: int = 0  # rows whose key or hash left a database (bisection leaves)
    pending: list[PendingRange] = Field(default_factory=list)
    targets: list[TargetTally]
    key_range: KeyRange | None = None
    elapsed_s: float = 0.0
    dense: bool = False  # differences are dense: list the next chunks' rows without checksums
    bucket_rows: int | None = None  # rows per bucket, from the density of differences seen
    fixed_seconds: float | None = None  # the quickest round of chunks seen (see engine.tuning)
    null_keys_listed: bool = False  # rows with a NULL in the key were listed (see engine.walk)
    scan: ScanProgress | None = None  # the scan-and-lookup strategy's progress (engine/scan_lookup.py)
    # The app's CopyTable step keeps its copy's (or replication's) progress, a CopyState
    # (copy_models.py) as JSON, in the same checkpoints.
    copying: dict[str, Any] | None = None


class SegmentProgress(Model):
    """Where one segment of a parallel scan goes on: after `start` (None: from its beginning)."""

    start: Key | None = None
    done: bool = False


class UnpairedKeys(Model):
    """One target's scanned keys waiting for the same key from the other side's scan, oldest
    first: (key, item hash, segment it came from)."""

    source: list[tuple[Key, int, int]] = Field(default_factory=list)
    target: list[tuple[Key, int, int]] = Field(default_factory=list)


class ScanProgress(Model):
    """A scan-and-lookup diff's progress. Every side is scanned at once: `sides[0]` holds the
    source's segments, `sides[t + 1]` target t's (scanned for extra items; none with --skip-extra)."""

    sides: list[list[SegmentProgress]]
    items_scanned: list[int]  # per side
    # Per target: the keys scanned on one side and not yet met on the other (engine/pairing.py);
    # empty with --skip-extra (every source key is looked up at once).
    unpaired: list[UnpairedKeys] = Field(default_factory=list)


class ScanRequest(Model):
    """One page of one segment of a parallel scan."""

    segment: int = Field(ge=0)
    total_segments: int = Field(ge=1, le=MAX_SEGMENTS)
    start: Key | None = None
    limit: int | None = Field(default=None, ge=1, le=MAX_KEYS_PER_REQUEST)


class ScanPage(Model):
    pairs: list[tuple[Key, int]]  # (key, item hash) of each item of the page
    next: Key | None  # where the segment goes on; None: it is done
    read_units: float = 0.0


class Sample(Model):
    key: Key
    kind: str  # missing | extra | differing
    columns: dict[str, dict[str, str | None]]  # column -> {"source": ..., "target": ...}


class SourceResult(Model):
    url: str
    rows: int


class TargetResult(Model):
    url: str
    rows_compared: int
    missing: list[Key]
    extra: list[Key]
    differing: list[Key]
    samples: list[Sample] = Field(default_factory=list)
    target_only_columns: list[str] = Field(default_factory=list)  # not compared: the source lacks them


class DiffResult(Model):
    table: str
    source: SourceResult
    targets: list[TargetResult]
    duration_s: float
    complete: bool
    stopped_on_streak: bool = False
    chunks: int = 0
    rows_read: int = 0  # (key, row hash) pairs that left the databases to pin differences down
    repairs: list[RepairResult] = Field(default_factory=list)  # one per target, when asked to repair

    @property
    def has_differences(self) -> bool:
        return any(t.missing or t.extra or t.differing for t in self.targets)


# --- repair -------------------------------------------------------------------------------------
class RepairOptions(Model):
    """What a repair may write. Each action is opt-in; with none of them nothing is written."""

    write_missing: bool = False
    write_differing: bool = False
    delete_extra: bool = False
    dry_run: bool = False
    write_batch: WriteBatch = 1_000

    @property
    def enabled(self) -> bool:
        return self.write_missing or self.write_differing or self.delete_extra

    def allows(self, kind: DiffKind) -> bool:
        """Whether differences of this kind may be written."""
        return {
            DiffKind.MISSING: self.write_missing,
            DiffKind.DIFFERING: self.write_differing,
            DiffKind.EXTRA: self.delete_extra,
        }[kind]


class RowWrite(Model):
    """One write a target connector applies, and what it expects to find: the target row as it
    was read just before (None: absent). A row that changed since is left alone."""

    action: WriteAction
    key: Key
    values: dict[str, str | None] | None = None  # canonical texts by target column (insert, update)
    expected: dict[str, str | None] | None = None


class WriteFailure(Model):
    index: int  # position in the batch
    reason: str


class WriteOutcome(Model):
    """What became of each write of a batch (positions in the batch)."""

    applied: list[int] = Field(default_factory=list)
    changed: list[int] = Field(default_factory=list)  # the target row changed since it was read
    failed: list[WriteFailure] = Field(default_factory=list)
    statements: list[str] = Field(default_factory=list)  # dry run: what would run


class AuditRecord(Model):
    """One line of the audit trail: every write, done or not."""

    time: str
    table: str
    target: str
    key: Key
    action: str  # insert | update | delete
    status: str  # applied | dry_run | changed | failed
    source_hash: str | None  # tablesync row hashes (hex) before the write; None: no row
    target_hash: str | None
    reason: str | None = None


class RepairFailure(Model):
    key: Key
    action: str
    reason: str


class RepairResult(Model):
    """A repair of one target: what was written and what is left."""

    url: str
    inserted: int = 0
    updated: int = 0
    deleted: int = 0
    in_sync: int = 0  # found different, but equal when re-read (replication caught up, or a repair)
    changed: int = 0  # the target row changed between the re-read and the write: left alone
    # Written through a connector Lambda, but the source row changed between its read and the
    # check after the commit: what was written may already be old (docs/algorithm.md, "Repair").
    source_changed: int = 0
    changed_keys: list[Key] = Field(default_factory=list)  # the keys of `changed` and `source_changed`
    not_enabled: dict[str, int] = Field(default_factory=dict)  # differences of a kind not asked for
    failed: list[RepairFailure] = Field(default_factory=list)
    dry_run: bool = False
    statements: list[str] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def remaining(self) -> int:
        """Differences the repair did not settle: kinds not asked for, failures, rows changed under it."""
        return sum(self.not_enabled.values()) + len(self.failed) + self.changed + self.source_changed

    @computed_field  # type: ignore[prop-decorator]
    @property
    def verdict(self) -> str:
        if self.dry_run:
            return "dry run: nothing written"
        left = self.remaining
        return "the target now matches" if not left else f"{left} difference{'s' if left != 1 else ''} left"
