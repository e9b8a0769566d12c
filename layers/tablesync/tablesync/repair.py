"""Repair: makes a target hold the source's current version of the rows a diff found different.

Nothing here trusts the diff's snapshot. A source row is written to a target only if it was read
after that target row was locked: with a direct connection each batch locks the target's rows,
then reads the source's, then writes only the keys whose rows still differ, with the source's row
as it is now, in one transaction. Through a connector Lambda (no transaction held between calls)
the target is read, then the source, each row is written only where the target row is still as
read, and the source is read again after the commit; a key that changed under the repair on
either side is reported `changed`, never counted as repaired. The source is only ever read,
through its own read-only connection. docs/algorithm.md ("Repair") tells why this is safe while
both sides change."""

from __future__ import annotations

import datetime as dt
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .connectors import Connector, KeyedLookup, LockingWriter, RepairTarget
from .engine import differing_columns, row_key
from .errors import TransientDatabaseError
from .models import (
    AuditRecord,
    DiffKind,
    DiffState,
    Key,
    RepairFailure,
    RepairOptions,
    RepairResult,
    RowWrite,
    TablePlan,
    WriteOutcome,
)
from .normalize import FIELD_SEPARATOR, hash_row_string, row_field
from .outages import backoff

Row = dict[str, str | None]
AuditSink = Callable[[AuditRecord], None]

ACTIONS = {DiffKind.MISSING: "insert", DiffKind.DIFFERING: "update", DiffKind.EXTRA: "delete"}
UNWRITABLE = "\x00unwritable"  # a source row's entry (never a column) saying why it cannot be written
TARGET_CHANGED = "the target row changed since it was read; left alone"
SOURCE_CHANGED = "written, but the source row changed while it was written: the key is to be checked again"
WRITE_ATTEMPTS = 4
RECHECK_BATCH = 5_000


def row_hash_of_texts(columns: Sequence[Any], row: Row | None) -> str | None:
    """The tablesync row hash (docs/normalization.md) of a fetched row, as 15 hex digits."""
    if row is None:
        return None
    fields = [row_field(column.kind, row.get(column.name)) for column in columns]
    return f"{hash_row_string(FIELD_SEPARATOR.join(fields)):015x}"


class RowPair:
    """A key's rows as just read on the source and the target (None: no such row)."""

    def __init__(self, source_plan: TablePlan, target_plan: TablePlan, src: Row | None, tgt: Row | None) -> None:
        self.source_plan, self.target_plan = source_plan, target_plan
        self.src, self.tgt = src, tgt
        # Why the target's row(s) cannot be written by key (a NULL in it, or the key held twice).
        self.unaddressable: str | None = None

    @property
    def kind(self) -> DiffKind | None:
        """missing, extra or differing; None when the rows agree (or neither exists)."""
        if self.unaddressable is not None:
            return DiffKind.EXTRA
        if self.src is None:
            return None if self.tgt is None else DiffKind.EXTRA
        if self.tgt is None:
            return DiffKind.MISSING
        if self.src.get(UNWRITABLE):
            return DiffKind.DIFFERING  # the source holds what the target's columns cannot (an item)
        src = [self.src.get(c.name) for c in self.source_plan.columns]
        tgt = [self.tgt.get(c.name) for c in self.target_plan.columns]
        return DiffKind.DIFFERING if differing_columns(self.source_plan, self.target_plan, src, tgt) else None

    def values(self) -> Row:
        """The source row's texts under the target's column names."""
        assert self.src is not None
        return {
            t.name: self.src.get(s.name)
            for s, t in zip(self.source_plan.columns, self.target_plan.columns, strict=True)
        }


def read_pairs(
    source: Connector, target: Connector, source_plan: TablePlan, target_plan: TablePlan, keys: Sequence[Key]
) -> list[RowPair]:
    src, tgt = source.fetch_rows(source_plan, keys), target.fetch_rows(target_plan, keys)
    return _pairs(source_plan, target_plan, keys, src, tgt)


def _pairs(
    source_plan: TablePlan, target_plan: TablePlan, keys: Sequence[Key], src_rows: list[Row], tgt_rows: list[Row]
) -> list[RowPair]:
    """Each key's rows, paired (None where a side has no such row). A key with a NULL, or held by
    more than one target row, cannot be written by key: such a pair says why."""
    src = {row_key(source_plan, row): row for row in src_rows}
    tgt: dict[tuple[Any, ...], Row] = {}
    held: Counter[tuple[Any, ...]] = Counter()
    for row in tgt_rows:
        key = row_key(target_plan, row)
        tgt[key] = row
        held[key] += 1
    pairs = []
    for k in keys:
        pair = RowPair(source_plan, target_plan, src.get(tuple(k)), tgt.get(tuple(k)))
        if any(v is None for v in k):
            pair.unaddressable = "the key has a NULL: the row cannot be told apart by key (fix or remove it by hand)"
        elif held[tuple(k)] > 1:
            pair.unaddressable = (
                f"the key appears {held[tuple(k)]} times on the target: tablesync does not choose between "
                "them (remove the surplus rows by hand)"
            )
        pairs.append(pair)
    return pairs


def recheck(
    source: Connector, target: Connector, source_plan: TablePlan, target_plan: TablePlan, keys: Sequence[Key]
) -> dict[DiffKind, list[Key]]:
    """The keys that still differ, by their kind now (rows still travelling through replication
    when the diff saw them have arrived since and drop out)."""
    out: dict[DiffKind, list[Key]] = {DiffKind.MISSING: [], DiffKind.EXTRA: [], DiffKind.DIFFERING: []}
    for start in range(0, len(keys), RECHECK_BATCH):
        batch = keys[start : start + RECHECK_BATCH]
        for key, pair in zip(batch, read_pairs(source, target, source_plan, target_plan, batch), strict=True):
            kind = pair.kind
            if kind is not None:
                out[kind].append(key)
    return out


def recheck_state(
    state: DiffState,
    source: Connector,
    targets: Sequence[Callable[[], Connector]],
    source_plan: TablePlan,
    target_plans: Sequence[TablePlan],
    keys: Sequence[Sequence[Key]] | None = None,
    *,
    items: bool = False,
) -> DiffState:
    """A copy of the state in which each target's differences are what its keys (by default the
    differences found) show now. Each target is opened in turn and closed again. `items`: the
    table is compared as stores of items (DynamoDB on some side): rechecked by item hash."""
    compare = recheck
    if items:
        from .dynamodb.recheck import recheck_items as compare  # no DynamoDB code for SQL-only runs
    state = state.model_copy(update={"targets": [t.model_copy() for t in state.targets]})
    for t, tally in enumerate(state.targets):
        wanted = keys[t] if keys is not None else [*tally.missing, *tally.extra, *tally.differing]
        if not wanted:
            continue
        target = targets[t]()
        try:
            found = compare(source, target, source_plan, target_plans[t], wanted)
        finally:
            target.close()
        tally.missing, tally.extra, tally.differing = (
            found[DiffKind.MISSING],
            found[DiffKind.EXTRA],
            found[DiffKind.DIFFERING],
        )
    return state


@dataclass
class _Batch:
    """What one batch of keys came to: the writes planned from the rows read, and their outcome."""

    in_sync: int = 0
    not_enabled: Counter[str] = field(default_factory=Counter)
    refused: list[RepairFailure] = field(default_factory=list)
    writes: list[RowWrite] = field(default_factory=list)
    pairs: list[RowPair] = field(default_factory=list)
    outcome: WriteOutcome = field(default_factory=WriteOutcome)
    source_changed: list[int] = field(default_factory=list)  # applied, but the source moved on meanwhile


def repair_target(
    source: KeyedLookup,
    target: RepairTarget,
    source_plan: TablePlan,
    target_plan: TablePlan,
    keys: Sequence[Key],
    options: RepairOptions,
    *,
    table: str,
    target_label: str,
    audit: AuditSink | None = None,
    sleep: Callable[[float], None] = time.sleep,
    max_outage: float = 0.0,
) -> RepairResult:
    """Repairs the given keys (of any kind) on one target, `options.write_batch` keys per
    transaction. Returns what was done and what is left.

    The rule every write keeps: a source row is written only if it was read after the target row
    it replaces was locked, so it is never older than that row. A direct connection (LockingWriter)
    locks, then reads the source, then writes, in one transaction. A connector Lambda cannot hold
    a transaction between invocations: there the target is read, then the source, and the write
    is made only where the target row is still as read; the source is read once more after the
    commit, and a key whose source row moved on meanwhile is reported `changed` (docs/algorithm.md,
    "Repair").

    A transient error rolls the batch back, and it is done again from its first read, after a
    backoff: at least WRITE_ATTEMPTS times, and for as long as `max_outage` seconds (a failover),
    on new connections where the connectors can reopen (outages.Reopening)."""
    result = RepairResult(url=target_label, dry_run=options.dry_run)
    allowed = {kind: options.allows(kind) for kind in DiffKind}
    locking = target if isinstance(target, LockingWriter) and not options.dry_run else None
    for start in range(0, len(keys), options.write_batch):
        batch = keys[start : start + options.write_batch]
        attempt, since = 0, 0.0
        while True:
            attempt += 1
            try:
                if locking is not None:
                    done = _locked_batch(source, locking, source_plan, target_plan, batch, allowed)
                else:
                    done = _verified_batch(source, target, source_plan, target_plan, batch, allowed, options.dry_run)
                break
            except TransientDatabaseError:
                # The transaction was rolled back: the whole batch is read and decided again.
                now = time.monotonic()
                since = since or now
                if attempt >= WRITE_ATTEMPTS and now - since >= max_outage:
                    raise
                sleep(backoff(attempt - 1))
                for side in (source, target):
                    reopen = getattr(side, "reopen", None)
                    if reopen is not None:
                        reopen()
        _tally(result, done)
        if audit is not None and not options.dry_run:
            for record in _audit_records(table, target_label, source_plan, target_plan, done):
                audit(record)
    return result


def _plan_writes(batch: Sequence[Key], pairs: list[RowPair], allowed: dict[DiffKind, bool]) -> _Batch:
    """The writes that make the target hold the source's rows as just read."""
    done = _Batch()
    for key, pair in zip(batch, pairs, strict=True):
        kind = pair.kind
        if kind is None:
            done.in_sync += 1
        elif not allowed[kind]:
            done.not_enabled[kind] += 1
        elif pair.unaddressable is not None:
            done.refused.append(RepairFailure(key=key, action=ACTIONS[kind], reason=pair.unaddressable))
        elif kind is not DiffKind.EXTRA and pair.src is not None and pair.src.get(UNWRITABLE):
            # A source whose values the target's columns cannot hold exactly (a DynamoDB item).
            done.refused.append(RepairFailure(key=key, action=ACTIONS[kind], reason=str(pair.src[UNWRITABLE])))
        else:
            action = ACTIONS[kind]
            values = pair.values() if action != "delete" else None
            done.writes.append(RowWrite(action=action, key=key, values=values, expected=pair.tgt))
            done.pairs.append(pair)
    return done


def _locked_batch(
    source: KeyedLookup,
    target: LockingWriter,
    source_plan: TablePlan,
    target_plan: TablePlan,
    batch: Sequence[Key],
    allowed: dict[DiffKind, bool],
) -> _Batch:
    """Lock the target's rows, then read the source, then write: one transaction."""
    target_rows = target.lock_rows(target_plan, batch)
    try:
        source_rows = source.fetch_rows(source_plan, batch)  # read after the lock: never older
        done = _plan_writes(batch, _pairs(source_plan, target_plan, batch, source_rows, target_rows), allowed)
        done.outcome = target.write_locked(target_plan, done.writes)
    except BaseException:
        target.rollback()
        raise
    return done


def _verified_batch(
    source: KeyedLookup,
    target: RepairTarget,
    source_plan: TablePlan,
    target_plan: TablePlan,
    batch: Sequence[Key],
    allowed: dict[DiffKind, bool],
    dry_run: bool,
) -> _Batch:
    """Read the target, then the source; write where the target row is still as read; then read
    the source again: a written key whose source row changed since is reported."""
    target_rows = target.fetch_rows(target_plan, batch)
    source_rows = source.fetch_rows(source_plan, batch)  # read after the target: never older than it
    done = _plan_writes(batch, _pairs(source_plan, target_plan, batch, source_rows, target_rows), allowed)
    if not done.writes:
        return done
    done.outcome = target.write_rows(target_plan, done.writes, dry_run)
    if dry_run or not done.outcome.applied:
        return done
    written = [done.writes[i].key for i in done.outcome.applied]
    now = {row_key(source_plan, row): row for row in source.fetch_rows(source_plan, written)}
    done.source_changed = [i for i in done.outcome.applied if now.get(tuple(done.writes[i].key)) != done.pairs[i].src]
    return done


def _tally(result: RepairResult, done: _Batch) -> None:
    result.in_sync += done.in_sync
    for kind, count in done.not_enabled.items():
        result.not_enabled[kind] = result.not_enabled.get(kind, 0) + count
    result.failed += done.refused
    writes, outcome = done.writes, done.outcome
    result.statements += outcome.statements
    for index in outcome.applied:
        action = writes[index].action
        if action == "insert":
            result.inserted += 1
        elif action == "update":
            result.updated += 1
        else:
            result.deleted += 1
    result.changed += len(outcome.changed)
    result.source_changed += len(done.source_changed)
    result.changed_keys += [writes[i].key for i in [*outcome.changed, *done.source_changed]]
    for failure in outcome.failed:
        write = writes[failure.index]
        result.failed.append(RepairFailure(key=write.key, action=write.action, reason=failure.reason))


def _audit_records(
    table: str, target_label: str, source_plan: TablePlan, target_plan: TablePlan, done: _Batch
) -> list[AuditRecord]:
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
    outcome = done.outcome
    status: dict[int, tuple[str, str | None]] = {i: ("applied", None) for i in outcome.applied}
    status.update({i: ("applied", SOURCE_CHANGED) for i in done.source_changed})
    status.update({i: ("changed", TARGET_CHANGED) for i in outcome.changed})
    status.update({f.index: ("failed", f.reason) for f in outcome.failed})
    source_columns = [*source_plan.key, *source_plan.columns]
    target_columns = [*target_plan.key, *target_plan.columns]
    records = []
    for index, (write, pair) in enumerate(zip(done.writes, done.pairs, strict=True)):
        state, reason = status.get(index, ("failed", "no answer for this row"))
        records.append(
            AuditRecord(
                time=now,
                table=table,
                target=target_label,
                key=write.key,
                action=write.action,
                status=state,
                source_hash=row_hash_of_texts(source_columns, pair.src),
                target_hash=row_hash_of_texts(target_columns, pair.tgt),
                reason=reason,
            )
        )
    return records
