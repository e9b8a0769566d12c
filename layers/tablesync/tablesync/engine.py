"""The step-wise diff engine. It knows nothing of AWS or of how a connector reaches its database.

Progress lives in a small JSON-serialisable DiffState. `step(state, deadline)` does whole rounds of
work until the deadline and returns the new state; a round's effects are applied to the state only
once all its queries have answered, so stopping anywhere and resuming from the last state gives the
same result, with no row counted twice or skipped.

A round is either a batch of new chunks of the key space or a batch of pending ranges (parts of
chunks whose checksums differed). Each side answers a round's ranges of one kind (cut points,
bucket checksums, row hashes) in one connector call, and the sides work at the same time. A range
that differs is cut into buckets until it holds at most `bisection_threshold` rows; then its
(key, row hash) pairs give the exact keys. docs/algorithm.md tells the whole story."""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .connectors import Connector
from .errors import (
    InputError,
    KeyColumnError,
    SchemaError,
    StateError,
    TransientDatabaseError,
)
from .models import (
    MAX_BUCKETS,  # a 1M-row chunk's buckets hold under 500 rows; the CASE tree stays 11 tests deep
    MAX_CHUNK_ROWS,
    Checksum,
    DiffKind,
    DiffOptions,
    DiffResult,
    DiffState,
    Key,
    Kind,
    PendingRange,
    Sample,
    SourceResult,
    Span,
    SplitRequest,
    TablePlan,
    TableSchema,
    TargetResult,
    TargetTally,
)
from .normalize import canonical_json
from .outages import wait_out
from .plans import build_plans

ConnectorFactory = Callable[[], Connector]
DifferenceCallback = Callable[[int, str, Key], None]

DENSE_CHUNK_ROWS = 50_000  # chunk size while differences are dense enough to list every row
LIST_ROWS_PER_ROUND = 100_000  # rows listed per side in one round (bounds memory)
RANGES_PER_ROUND = 2048  # pending ranges taken in one round (bounds the SQL's size)
MIN_BUCKET_ROWS = 3  # below this, differences are so dense that listing every row is cheaper


class Side:
    """One database: a small thread pool whose threads each hold their own connection."""

    def __init__(self, factory: ConnectorFactory, threads: int, label: str) -> None:
        self.factory = factory
        self.label = label
        self._local = threading.local()
        self._opened: list[Connector] = []
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=f"ts-{label}")

    def _connector(self) -> Connector:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.factory()
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def submit(self, method: str, *args: Any) -> Future[Any]:
        return self.pool.submit(lambda: getattr(self._connector(), method)(*args))

    def call(self, method: str, *args: Any) -> Any:
        return self.submit(method, *args).result()

    def reconnect(self) -> None:
        """Drops every connection (after an outage they may be dead); each thread opens a new
        one on its next call."""
        with self._lock:
            opened, self._opened = self._opened, []
            self._local = threading.local()
        for conn in opened:
            with contextlib.suppress(Exception):  # closing is best effort
                conn.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for conn in self._opened:
            with contextlib.suppress(Exception):  # closing is best effort
                conn.close()


@dataclass
class _Unit:
    """A range worked on in the current round, and what the round found in it."""

    lo: Key | None
    hi: Key | None
    targets: list[int]  # the targets compared in this range
    top: bool  # a new chunk of the walk (counts source rows) rather than part of a differing one
    listed: bool = False  # compare row hashes at once (no checksums)
    points: list[Key] = field(default_factory=list)  # cuts for bucket checksums
    counts: list[int] = field(default_factory=list)  # known row counts: source, then each of `targets`
    source_count: int = 0
    buckets: int = 0
    differing_buckets: int = 0
    new_pending: list[PendingRange] = field(default_factory=list)
    found: list[tuple[int, str, Key]] = field(default_factory=list)
    rows_read: int = 0

    @property
    def biggest(self) -> int:
        return max(self.counts) if self.counts else 0


class Differ:
    """Compares one table of a source with the same table on one or more targets."""

    def __init__(
        self,
        table: str,
        source: ConnectorFactory,
        targets: Sequence[ConnectorFactory],
        options: DiffOptions | None = None,
        *,
        source_label: str = "source",
        target_labels: Sequence[str] | None = None,
        validate_key: bool = True,
    ) -> None:
        """validate_key: check that a --key other than the primary key is unique and never NULL
        (a scan of the table; a run resumed from a state has done it already)."""
        self.table = table
        self._validate_key = validate_key
        self.options = options or DiffOptions()
        _check_options(self.options)
        if not targets:
            raise InputError("give at least one target")
        self.source_label = source_label
        self.target_labels = list(target_labels or [f"target{i + 1}" for i in range(len(targets))])
        # One connection more per side: the side that walks seeks the next chunk while the current
        # one is checked.
        workers = self.options.threads + 1
        self.source = Side(source, workers, "source")
        self._ahead: tuple[Any, Future[Any]] | None = None
        self.targets: list[Side] = []
        try:
            for i, factory in enumerate(targets):
                self.targets.append(Side(factory, workers, f"target{i + 1}"))
            self._prepare()
        except BaseException:
            self.close()
            raise

    # --- setup --------------------------------------------------------------------------------
    def _prepare(self) -> None:
        futures = [self.source.submit("describe", self.table)] + [
            t.submit("describe", self.table) for t in self.targets
        ]
        schemas: list[TableSchema] = [f.result() for f in futures]
        plans = build_plans(self.table, schemas, self.options, self.target_labels)
        self.source_plan, self.target_plans = plans.source, plans.targets
        self.verify_json = plans.verify_json
        self.key_names, self.column_names = plans.key_names, plans.column_names
        self.target_only_columns = plans.target_only_columns
        self.unique_key = plans.unique_key
        # A side whose key order is not its index order scans for every range query; the walk's
        # chunk bounds come from a side whose index serves them, and differing ranges are listed
        # in large batches so that such a side is scanned as few times as possible.
        self.scan_bound = plans.scan_bound
        self.any_scan_bound = any(self.scan_bound)
        self.walker = -1
        if self.scan_bound[-1]:
            self.walker = next(
                (t for t in range(len(self.targets)) if not self.scan_bound[t] and self.unique_key[t]), -1
            )
        key = self.options.key
        if self._validate_key and key and list(key) != list(schemas[0].primary_key):
            # The key must identify the source's rows; a target's duplicates and NULLs are drift.
            self.source.call("validate_key", self.source_plan)

    def fingerprint(self) -> str:
        """Identifies what is being compared; a saved state only resumes the same diff."""
        opts = self.options
        ident = {
            "table": self.table,
            "source": self.source_label,
            "targets": self.target_labels,
            "key": self.key_names,
            "columns": self.column_names,
            "where": opts.where,
            "reverse": opts.reverse,
            "stop_on_streak": opts.stop_on_streak,
            "lo": opts.lo,
            "hi": opts.hi,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def initial_state(self) -> DiffState:
        key_range = self._side(self.walker).call("key_range", self._plan(self.walker))
        opts = self.options
        return DiffState(
            fingerprint=self.fingerprint(),
            cursor=opts.hi if opts.reverse else opts.lo,
            chunk_size=opts.chunk_size,
            targets=[TargetTally(target_only_columns=names) for names in self.target_only_columns],
            key_range=key_range,
        )

    def check_state(self, state: DiffState) -> None:
        if state.fingerprint != self.fingerprint() or len(state.targets) != len(self.targets):
            raise StateError("the saved state belongs to a different diff (table, URLs or options changed)")

    # --- stepping -----------------------------------------------------------------------------
    def step(self, state: DiffState, deadline: float, on_difference: DifferenceCallback | None = None) -> DiffState:
        """Advances until time.monotonic() passes `deadline` or the diff is done; always does at
        least one round of work, so any deadline makes progress.

        A round's effects apply only once all its queries have answered. When a transient
        database error breaks a round, the rounds done before it are returned (each difference
        reported once); when it breaks the first, it is raised and the caller's state stands."""
        self.check_state(state)
        state = _copy_state(state)
        first = True
        if not state.null_keys_listed and self._null_keys(state, on_difference):
            first = False  # work done (and reported): kept even if the next round breaks
        while not state.done and (first or time.monotonic() < deadline):
            started = time.monotonic()
            pending = list(state.pending)  # a round takes ranges out of it before it runs
            try:
                units = self._next_units(state)
                if not units:
                    break
                worked = self._work(units, self._bucket_rows(state))
            except TransientDatabaseError:
                state.pending = pending
                if first:
                    raise
                break
            first = False
            self._apply(state, worked, time.monotonic() - started, on_difference)
            state.elapsed_s += time.monotonic() - started
        if not state.pending and state.walk_done:
            state.done = True
        return state

    def _null_keys(self, state: DiffState, on_difference: DifferenceCallback | None) -> bool:
        """Rows with a NULL in a key column fall in no key range, so the walk never sees them: on a
        side that may hold them they are listed once, by the shard that starts the key space. A
        target's are extra rows; the source's make the key unusable."""
        state.null_keys_listed = True
        if self.options.lo is not None:
            return False
        sides = [t for t, plan in enumerate(self.target_plans) if any(c.nullable for c in plan.key)]
        if any(c.nullable for c in self.source_plan.key):
            sides.append(-1)
        jobs = [(side, self._side(side).submit("null_keys", self._plan(side))) for side in sides]
        answers: list[tuple[int, list[Key]]] = [(side, job.result()) for side, job in jobs]  # all, then apply
        for side, keys in answers:
            if side < 0 and keys:
                names = ", ".join(self.key_names)
                advice = "give --key columns that identify every row"
                raise KeyColumnError(
                    f"key {names} has NULL values on the source ({keys[0]}): {advice}",
                    redacted=f"key {names} has NULL values on the source: {advice}",
                )
            for key in keys:
                state.targets[side].extra.append(key)
                if on_difference is not None:
                    on_difference(side, DiffKind.EXTRA, key)
        return bool(sides)

    def _defer_listing(self) -> bool:
        """Differing ranges wait and are listed in batches when a side scans for them."""
        return self.any_scan_bound

    def _next_units(self, state: DiffState) -> list[_Unit]:
        if state.pending:
            waiting = sum(p.counts[0] if p.counts else 0 for p in state.pending)
            if (
                state.walk_done
                or not self._defer_listing()
                or waiting >= LIST_ROWS_PER_ROUND
                or len(state.pending) >= RANGES_PER_ROUND
            ):
                return self._pending_units(state)
        if state.walk_done:
            return []
        units: list[_Unit] = []
        cursor = state.cursor
        started = state.started
        opts = self.options
        all_targets = list(range(len(self.targets)))
        for _ in range(opts.threads):
            if started and self._walk_ends_at(cursor):
                break  # the walk has reached the end of the key space
            span = self._chunk_span(state, cursor)
            units.append(_Unit(span.lo, span.hi, all_targets, True, listed=state.dense, points=span.points))
            cursor, started = (span.lo if opts.reverse else span.hi), True
        if not self._walk_ends_at(cursor):
            # Seek the chunk after these while they are checked: the walking side's seek then
            # costs no time on the critical path (its size lags one round behind; harmless).
            self._ahead = (self._chunk_id(state, cursor), self._submit_span(state, cursor))
        return units

    def _pending_units(self, state: DiffState) -> list[_Unit]:
        """Pending ranges in walk order, as many as one round takes: at most LIST_ROWS_PER_ROUND
        rows to list and RANGES_PER_ROUND ranges."""
        threshold = self.options.bisection_threshold
        state.pending.sort(key=lambda p: _walk_key(p.lo, self.options.reverse))
        taken: list[_Unit] = []
        rows = 0
        keep: list[PendingRange] = []
        for pending in state.pending:
            size = max(pending.counts) if pending.counts else 0
            listing = size <= threshold
            if taken and (len(taken) >= RANGES_PER_ROUND or (listing and rows + size > LIST_ROWS_PER_ROUND)):
                keep.append(pending)
                continue
            rows += size if listing else 0
            taken.append(_Unit(pending.lo, pending.hi, list(pending.targets), False, counts=list(pending.counts)))
        state.pending = keep
        return taken

    def _chunk_id(self, state: DiffState, cursor: Key | None) -> Any:
        """What a prefetched chunk must match to be used: its start, and whether it is listed or
        cut into buckets (its size may lag one round behind; harmless)."""
        bucketed = not state.dense and not self._plain(state)
        return (None if cursor is None else json.dumps(cursor), state.dense, bucketed)

    def _submit_span(self, state: DiffState, cursor: Key | None) -> Future[Any]:
        opts = self.options
        if state.dense:
            size, parts = min(state.chunk_size, DENSE_CHUNK_ROWS), 1
        elif self._plain(state):
            size, parts = state.chunk_size, 1
        else:
            bucket = self._bucket_rows(state)
            # Where a side scans, every round costs a scan: chunks keep their size and their
            # buckets grow instead (a differing one is cut again in a later, batched round).
            size = state.chunk_size if self.any_scan_bound else min(state.chunk_size, bucket * MAX_BUCKETS)
            parts = self._parts(size, bucket)
        walker = self.walker
        return self._side(walker).submit("chunk_bounds", self._plan(walker), cursor, size, parts, opts.reverse)

    def _chunk_span(self, state: DiffState, cursor: Key | None) -> Span:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == self._chunk_id(state, cursor):
            span: Span = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            span = self._submit_span(state, cursor).result()
        return self._clipped(span)

    def _clipped(self, span: Span) -> Span:
        """The span cut at the shard's far bound (--lo/--hi), with the cut points inside it."""
        span = Span(lo=span.lo, hi=span.hi, points=_inner_points(span.lo, span.hi, span.points))
        opts = self.options
        if opts.reverse and opts.lo is not None and (span.lo is None or span.lo <= opts.lo):
            return Span(lo=opts.lo, hi=span.hi, points=[p for p in span.points if p > opts.lo])
        if not opts.reverse and opts.hi is not None and (span.hi is None or span.hi >= opts.hi):
            return Span(lo=span.lo, hi=opts.hi, points=[p for p in span.points if p < opts.hi])
        return span

    def _walk_ends_at(self, cursor: Key | None) -> bool:
        """Whether a walk whose next chunk starts at `cursor` has covered its key range."""
        bound = self.options.lo if self.options.reverse else self.options.hi
        return cursor is None or (bound is not None and cursor == bound)

    def _plain(self, state: DiffState) -> bool:
        """Whether the next chunk gets one plain checksum rather than bucket checksums. Buckets
        cost a little more per row (~15% on MariaDB); a plain checksum that differs costs a second
        pass over the chunk. Most checks find tables identical, so while a run has found no
        difference at all the next chunk is expected to match too; once it has, more are expected.
        Never where a side scans (a second pass is a second scan)."""
        if self.any_scan_bound or state.streak == 0:
            return False
        return not any(t.missing or t.extra or t.differing for t in state.targets) and not state.pending

    def _bucket_rows(self, state: DiffState) -> int:
        # Half the listing threshold at most: a bucket with a few extra rows on a target is still
        # listed at once rather than cut again.
        return state.bucket_rows or max(1, self.options.bisection_threshold // 2)

    def _parts(self, rows: int, bucket_rows: int) -> int:
        """Buckets to cut a range into: small enough that a differing bucket can be listed at once
        (re-reading only it), at least the bisection factor, at most MAX_BUCKETS."""
        return min(MAX_BUCKETS, max(self.options.bisection_factor, -(-rows // bucket_rows)))

    def _plan(self, side: int) -> TablePlan:
        return self.source_plan if side < 0 else self.target_plans[side]

    def _side(self, side: int) -> Side:
        return self.source if side < 0 else self.targets[side]

    def _sides(self, units: Sequence[_Unit]) -> list[int]:
        """The source (-1) and every target that some unit compares."""
        return [-1, *sorted({t for u in units for t in u.targets})]

    def _grouped(self, side: int, units: Sequence[_Unit]) -> list[list[_Unit]]:
        """The units that involve `side`, sorted by key and cut into one group per thread."""
        mine = sorted((u for u in units if side < 0 or side in u.targets), key=lambda u: _walk_key(u.lo, False))
        if not mine:
            return []
        groups = min(self.options.threads, len(mine))
        size = -(-len(mine) // groups)
        return [mine[i : i + size] for i in range(0, len(mine), size)]

    def _work(self, units: list[_Unit], bucket_rows: int) -> list[_Unit]:
        """Runs one round; returns every unit to apply (the given ones and the leaves it listed)."""
        threshold = self.options.bisection_threshold
        # Phase 1: pending ranges too big to list are cut where the side holding the most rows has
        # equal shares (so that extra rows on a target are divided too).
        to_split: dict[int, list[_Unit]] = {}
        leaves: list[_Unit] = []
        for unit in units:
            if unit.top:
                continue
            if unit.biggest <= threshold:
                leaves.append(unit)
                continue
            side = -1 if unit.counts[0] == unit.biggest else unit.targets[unit.counts.index(unit.biggest, 1) - 1]
            to_split.setdefault(side, []).append(unit)
        split_jobs = []
        for side, group in to_split.items():
            for part in self._grouped(-1, group):
                requests = [
                    SplitRequest(lo=u.lo, hi=u.hi, step=max(1, -(-u.biggest // self._parts(u.biggest, bucket_rows))))
                    for u in part
                ]
                split_jobs.append((part, self._side(side).submit("split_points", self._plan(side), requests)))
        bucketed = [u for u in units if u.top and not u.listed]
        for part, future in split_jobs:
            for unit, points in zip(part, future.result(), strict=True):
                # A side that holds a key twice may name it twice, or name a bound.
                unit.points = _inner_points(unit.lo, unit.hi, points)
                # A range that cannot be cut (the side that was asked holds no inner key) is listed.
                (bucketed if points else leaves).append(unit)
        # Phase 2: bucket checksums on every side at the same time; each new chunk is its own call
        # (one per thread), pending ranges go in one call per thread.
        new_leaves = self._checksum(bucketed)
        # Phase 3: small differing ranges: compare (key, row hash) lists to get the exact keys.
        listed = [u for u in units if u.top and u.listed] + leaves + new_leaves
        if listed:
            self._list(listed)
        return units + new_leaves

    def _checksum(self, units: list[_Unit]) -> list[_Unit]:
        """Bucket checksums of the units on their sides; differing buckets become leaves to list
        in this round or pending ranges. Returns the leaves."""
        if not units:
            return []
        jobs: dict[int, list[tuple[list[_Unit], Future[Any]]]] = {}
        for side in self._sides(units):
            mine = [u for u in units if side < 0 or side in u.targets]
            groups = [[u] for u in mine if u.top] + self._grouped(side, [u for u in mine if not u.top])
            for group in groups:
                spans = [Span(lo=u.lo, hi=u.hi, points=u.points) for u in group]
                jobs.setdefault(side, []).append(
                    (group, self._side(side).submit("bucket_checksums", self._plan(side), spans))
                )
        sums: dict[tuple[int, int], list[Checksum]] = {}
        for side, side_jobs in jobs.items():
            for group, future in side_jobs:
                for unit, unit_sums in zip(group, future.result(), strict=True):
                    sums[(id(unit), side)] = unit_sums
        leaves: list[_Unit] = []
        leaf_rows = 0
        defer = self._defer_listing()
        threshold = self.options.bisection_threshold
        for unit in units:
            source_sums = sums[(id(unit), -1)]
            target_sums = {t: sums[(id(unit), t)] for t in unit.targets}
            if unit.top:
                unit.source_count = sum(c.count for c in source_sums)
            bounds = [unit.lo, *unit.points, unit.hi]
            unit.buckets = len(source_sums)
            for b, source_sum in enumerate(source_sums):
                off = [t for t in unit.targets if target_sums[t][b] != source_sum]
                if not off:
                    continue
                unit.differing_buckets += 1
                counts = [source_sum.count, *(target_sums[t][b].count for t in off)]
                size = max(counts)
                if size <= threshold and not defer and leaf_rows + size <= LIST_ROWS_PER_ROUND:
                    leaf_rows += size
                    leaves.append(_Unit(bounds[b], bounds[b + 1], off, False, counts=counts))
                else:
                    unit.new_pending.append(PendingRange(lo=bounds[b], hi=bounds[b + 1], targets=off, counts=counts))
        return leaves

    def _list(self, units: list[_Unit]) -> None:
        """Lists (key, row hash) on every side of the units and compares them."""
        jobs: list[tuple[int, list[_Unit], Future[Any]]] = []
        for side in self._sides(units):
            for group in self._grouped(side, units):
                spans = [Span(lo=u.lo, hi=u.hi) for u in group]
                jobs.append((side, group, self._side(side).submit("row_hashes", self._plan(side), spans)))
        listed: dict[tuple[int, int], dict[tuple[Any, ...], int]] = {}
        repeated: dict[tuple[int, int], dict[tuple[Any, ...], set[int]]] = {}
        for side, group, future in jobs:
            pairs = future.result()
            for unit, (hashes, twice) in zip(group, self._assign(side, group, pairs), strict=True):
                listed[(id(unit), side)] = hashes
                repeated[(id(unit), side)] = twice
                unit.rows_read += len(hashes)
                if twice and side < 0:
                    names = ", ".join(self.key_names)
                    raise KeyColumnError(
                        f"key {names} is not unique on the source: {list(next(iter(twice)))} appears more than once",
                        redacted=f"key {names} is not unique on the source: a key appears more than once",
                    )
        verify: list[tuple[_Unit, int, list[Key]]] = []
        for unit in units:
            source_hashes = listed[(id(unit), -1)]
            if unit.top:
                unit.source_count = len(source_hashes)
            for t in unit.targets:
                target_hashes = listed[(id(unit), t)]
                twice = repeated[(id(unit), t)]
                missing = [k for k in source_hashes if k not in target_hashes]
                # A key the target holds more than once: its surplus rows are extra (and the key
                # differs unless one of its rows equals the source's).
                extra = [k for k in target_hashes if k not in source_hashes or k in twice]
                differing = [
                    k
                    for k, h in source_hashes.items()
                    if k in target_hashes and target_hashes[k] != h and h not in twice.get(k, ())
                ]
                unit.found += [(t, DiffKind.MISSING, list(k)) for k in sorted(missing)]
                unit.found += [(t, DiffKind.EXTRA, list(k)) for k in sorted(extra)]
                if differing and self.verify_json[t]:
                    verify.append((unit, t, [list(k) for k in sorted(differing)]))
                else:
                    unit.found += [(t, DiffKind.DIFFERING, list(k)) for k in sorted(differing)]
        # JSON is hashed as each database spells it; confirm such differences by meaning.
        for unit, t, keys in verify:
            fetched = self._fetch_pairs(t, keys)
            for key in keys:
                src_row, tgt_row = fetched.get(tuple(key), (None, None))
                if src_row is None or tgt_row is None or self._row_differences(t, src_row, tgt_row):
                    unit.found.append((t, DiffKind.DIFFERING, key))

    def _assign(
        self, side: int, group: list[_Unit], pairs: list[tuple[Key, int]]
    ) -> list[tuple[dict[tuple[Any, ...], int], dict[tuple[Any, ...], set[int]]]]:
        """Sorts listed (key, hash) pairs into the group's ranges (sorted, disjoint): for each range,
        its hashes by key and, for keys listed more than once, all their hashes. A key outside
        every range asked for means a database orders keys differently than tablesync expects, and
        the answer would be wrong: that is an error, never a silent difference."""
        out: list[dict[tuple[Any, ...], int]] = [{} for _ in group]
        twice: list[dict[tuple[Any, ...], set[int]]] = [{} for _ in group]
        unbounded_start = group[0].lo is None
        starts: list[Key] = [u.lo for u in group if u.lo is not None]
        for key, row_hash in pairs:
            at = bisect.bisect_right(starts, key)
            index = at if unbounded_start else at - 1
            unit = group[index] if index >= 0 else None
            if unit is None or (unit.hi is not None and key >= unit.hi):
                label = self.source_label if side < 0 else self.target_labels[side]
                raise SchemaError(
                    f"{label} returned key {key} outside the ranges asked for: it orders the key "
                    f"column(s) {', '.join(self.key_names)} differently from byte order"
                )
            held = tuple(key)
            if held in out[index]:
                twice[index].setdefault(held, {out[index][held]}).add(row_hash)
            out[index][held] = row_hash
        return list(zip(out, twice, strict=True))

    def _apply(
        self, state: DiffState, units: list[_Unit], seconds: float, on_difference: DifferenceCallback | None
    ) -> None:
        top = [u for u in units if u.top]
        new_pending: list[PendingRange] = []
        for unit in units:
            if unit.top:
                state.started = True
                state.chunks += 1
                state.source_rows += unit.source_count
                for tally in state.targets:
                    tally.rows_compared += unit.source_count
                state.cursor = unit.lo if self.options.reverse else unit.hi
                if self._walk_ends_at(state.cursor):
                    state.walk_done = True
                if unit.differing_buckets or unit.found:
                    state.streak = 0
                else:
                    state.streak += unit.source_count
                    stop = self.options.stop_on_streak
                    if stop is not None and state.streak >= stop and not state.walk_done:
                        state.walk_done = True
                        state.stopped_on_streak = True
            new_pending += unit.new_pending
            state.rows_read += unit.rows_read
            for t, kind, key in unit.found:
                getattr(state.targets[t], kind).append(key)
                if on_difference is not None:
                    on_difference(t, kind, key)
        state.pending += new_pending
        if top:
            self._adapt(state, top, seconds)

    def _adapt(self, state: DiffState, top: list[_Unit], seconds: float) -> None:
        """Chooses how the next chunks are checked, and their size.

        The density d of differences (per row) sets the bucket size: a bucket of b rows costs its
        checksum (about 1/b of a listed row per row) and, when it differs (chance about b*d), the
        listing of its b rows; b = sqrt(1/d) balances the two. At 1% that is 10-row buckets, of
        which 10% differ, instead of listing every row; below MIN_BUCKET_ROWS every row is listed."""
        opts = self.options
        rows = sum(u.source_count for u in top)
        if top[0].listed:
            density = sum(len(u.found) for u in top) / max(1, rows)
        else:
            buckets = sum(u.buckets for u in top)
            if buckets < opts.bisection_factor:
                # Too few buckets to tell (a plain checksum after a matching chunk).
                state.chunk_size = self._next_chunk_size(state, seconds, rows / len(top))
                return
            share = sum(u.differing_buckets for u in top) / buckets
            density = 1.0 if share >= 1 else 1 - (1 - share) ** (1 / self._bucket_rows(state))
            state.chunk_size = self._next_chunk_size(state, seconds, rows / len(top))
        best = math.sqrt(1 / density) if density > 0 else math.inf
        state.dense = best < MIN_BUCKET_ROWS and not self._defer_listing()
        state.bucket_rows = int(min(max(1, opts.bisection_threshold // 2), max(MIN_BUCKET_ROWS, best)))

    def _next_chunk_size(self, state: DiffState, seconds: float, size: float) -> int:
        """Aims each round of chunks at the target time. A round costs a fixed time plus a time per
        row; the fixed time (the first round's, a small chunk from the start of the key space) is
        tiny where indexes serve the ranges and a whole table scan where a side must scan, and
        chunks then grow until it is a quarter of the round."""
        opts = self.options
        size = max(1.0, size)
        if state.fixed_seconds is None:
            state.fixed_seconds = seconds
        fixed = state.fixed_seconds
        target = max(opts.target_chunk_seconds, 4 * fixed)
        per_row = max(seconds - fixed, 1e-3 * seconds, 1e-9) / size
        wanted = (target - fixed) / per_row
        # --max-chunk-size bounds the chunks; only where a side must scan for every range does a
        # chunk grow past it, until the scan is a quarter of the round (a slow first round on an
        # indexed table is no scan: the bound holds there, whatever the timings).
        scan_growth = max(1.0, 4 * fixed / opts.target_chunk_seconds) if self.any_scan_bound else 1.0
        limit = min(4 * MAX_CHUNK_ROWS, opts.max_chunk_size * scan_growth)
        # Growth is bounded (timings of small chunks are noisy), less so while the fixed cost is
        # most of the round (a scan: the time per row is then barely measured).
        growth = 64.0 if seconds < 1.5 * fixed else 16.0
        wanted = min(size * growth, max(size / 4.0, wanted))
        return int(min(limit, max(opts.chunk_size, wanted)))

    # --- results ------------------------------------------------------------------------------
    def _fetch_pairs(
        self, t: int, keys: list[Key]
    ) -> dict[tuple[Any, ...], tuple[list[str | None] | None, list[str | None] | None]]:
        src_future = self.source.submit("fetch_rows", self.source_plan, keys)
        tgt_future = self.targets[t].submit("fetch_rows", self.target_plans[t], keys)
        src_rows = rows_by_key(self.source_plan, src_future.result())
        tgt_rows = rows_by_key(self.target_plans[t], tgt_future.result())
        return {tuple(k): (src_rows.get(tuple(k)), tgt_rows.get(tuple(k))) for k in keys}

    def _row_differences(self, t: int, src: list[str | None], tgt: list[str | None]) -> list[int]:
        return differing_columns(self.source_plan, self.target_plans[t], src, tgt)

    def samples(self, state: DiffState, limit: int) -> list[list[Sample]]:
        out: list[list[Sample]] = []
        for t, tally in enumerate(state.targets):
            chosen = [(DiffKind.DIFFERING, k) for k in tally.differing] + [(DiffKind.MISSING, k) for k in tally.missing]
            chosen += [(DiffKind.EXTRA, k) for k in tally.extra]
            chosen = chosen[:limit]
            pairs = self._fetch_pairs(t, [k for _, k in chosen]) if chosen else {}
            samples = []
            for kind, key in chosen:
                src, tgt = pairs.get(tuple(key), (None, None))
                if kind == DiffKind.DIFFERING and src is not None and tgt is not None:
                    idx = self._row_differences(t, src, tgt)
                else:
                    idx = list(range(len(self.column_names)))
                samples.append(
                    Sample(
                        key=key,
                        kind=kind,
                        columns={
                            self.column_names[i]: {
                                "source": src[i] if src is not None else None,
                                "target": tgt[i] if tgt is not None else None,
                            }
                            for i in idx
                        },
                    )
                )
            out.append(samples)
        return out

    def result(self, state: DiffState) -> DiffResult:
        samples = self.samples(state, self.options.sample) if self.options.sample > 0 else [[] for _ in self.targets]
        return DiffResult(
            table=self.table,
            source=SourceResult(url=self.source_label, rows=state.source_rows),
            targets=[
                TargetResult(
                    url=self.target_labels[i],
                    rows_compared=tally.rows_compared,
                    missing=sorted(tally.missing, key=_sort_key),
                    extra=sorted(tally.extra, key=_sort_key),
                    differing=sorted(tally.differing, key=_sort_key),
                    samples=samples[i],
                    target_only_columns=tally.target_only_columns,
                )
                for i, tally in enumerate(state.targets)
            ],
            duration_s=round(state.elapsed_s, 3),
            complete=state.done,
            stopped_on_streak=state.stopped_on_streak,
            chunks=state.chunks,
            rows_read=state.rows_read,
        )

    def progress(self, state: DiffState) -> float | None:
        """Fraction of the key range done, when it can be told."""
        if state.done:
            return 1.0
        kr = state.key_range
        low = kr.min_key[0] if kr and kr.min_key and len(kr.min_key) == 1 else None
        high = kr.max_key[0] if kr and kr.max_key else None
        at = state.cursor[0] if state.cursor else None
        if isinstance(low, int) and isinstance(high, int) and isinstance(at, int):
            span = max(1, high - low + 1)
            done = (high + 1 - at) if self.options.reverse else (at - low)
            return max(0.0, min(1.0, done / span))
        if kr and kr.estimated_rows:
            return min(1.0, state.source_rows / kr.estimated_rows)
        return None

    def run(
        self,
        state: DiffState | None = None,
        *,
        step_seconds: float = 2.0,
        on_state: Callable[[DiffState], None] | None = None,
        on_difference: DifferenceCallback | None = None,
        max_outage: float = 0.0,
        on_outage: Callable[[float, TransientDatabaseError], None] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> DiffState:
        """Steps to the end, handing each intermediate state to on_state (to save it).

        A transient database error (a lost connection, a server refusing connections during a
        failover) is waited out for up to `max_outage` seconds in a row: the round it broke is
        done again from the last state, on new connections, after a backoff; on_outage hears of
        each wait. Beyond that the error is raised (the last state was handed to on_state)."""
        state = state or self.initial_state()
        while not state.done:
            # A round broken by an outage is done again from the last state, on new connections.
            state = wait_out(
                lambda last=state: self.step(last, time.monotonic() + step_seconds, on_difference),  # type: ignore[misc]
                max_outage,
                on_outage=on_outage,
                reopen=self.reconnect,
                sleep=sleep,
            )
            if on_state is not None:
                on_state(state)
        return state

    def reconnect(self) -> None:
        """New connections on every side (after an outage); a prefetched chunk is dropped."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[1].cancel()
        for side in [self.source, *self.targets]:
            side.reconnect()

    def close(self) -> None:
        self.source.close()
        for target in getattr(self, "targets", []):
            target.close()

    def __enter__(self) -> Differ:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _copy_state(state: DiffState) -> DiffState:
    """A copy that the step may change without touching the caller's state. Keys are never
    changed in place, so the lists are copied but the keys shared: a deep copy of a state holding
    100,000 differing keys would double the memory they take at every step."""
    return state.model_copy(
        update={
            "targets": [
                t.model_copy(update={kind: list(getattr(t, kind)) for kind in tuple(DiffKind)}) for t in state.targets
            ],
            "pending": list(state.pending),
        }
    )


def differing_columns(
    source_plan: TablePlan, target_plan: TablePlan, src: list[str | None], tgt: list[str | None]
) -> list[int]:
    """Indexes of compared columns whose values differ (JSON compared by meaning)."""
    out = []
    for i, (scol, tcol) in enumerate(zip(source_plan.columns, target_plan.columns, strict=True)):
        a, b = src[i], tgt[i]
        if a is not None and b is not None and Kind.JSON in (scol.kind, tcol.kind):
            with contextlib.suppress(ValueError):
                a, b = canonical_json(a), canonical_json(b)
        if a != b:
            out.append(i)
    return out


def rows_by_key(plan: TablePlan, rows: list[dict[str, str | None]]) -> dict[tuple[Any, ...], list[str | None]]:
    """Fetched rows by key (as the engine holds keys), each as its compared columns' texts."""
    return {row_key(plan, row): [row[c.name] for c in plan.columns] for row in rows}


def row_key(plan: TablePlan, row: dict[str, str | None]) -> tuple[Any, ...]:
    """A fetched row's key as the engine holds keys: integers as ints, text and uuids as text."""
    key = []
    for column in plan.key:
        text = row[column.name]
        key.append(int(text) if column.kind is Kind.INTEGER and text is not None else text)
    return tuple(key)


def _inner_points(lo: Key | None, hi: Key | None, points: Sequence[Key]) -> list[Key]:
    """The ascending points strictly inside (lo, hi), each once."""
    out: list[Key] = []
    for point in points:
        if (lo is None or point > lo) and (hi is None or point < hi) and (not out or point > out[-1]):
            out.append(point)
    return out


def _walk_key(lo: Key | None, reverse: bool) -> tuple[Any, ...]:
    """Sorts ranges by their lower bound in walk order. Python orders str by code point, which is
    UTF-8 byte order, the databases' key order."""
    if reverse:
        return (lo is None, _Descending(lo))
    return (lo is not None, lo or [])


def _sort_key(key: Key) -> tuple[Any, ...]:
    return tuple((0, v) if isinstance(v, int) else (1, str(v)) for v in key)


def _check_options(opts: DiffOptions) -> None:
    checks = [
        (opts.chunk_size >= 1, "--chunk-size must be at least 1"),
        (opts.max_chunk_size >= opts.chunk_size, "--max-chunk-size must be at least --chunk-size"),
        (opts.bisection_factor >= 2, "--bisection-factor must be at least 2"),
        (opts.bisection_threshold >= 1, "--bisection-threshold must be at least 1"),
        (opts.threads >= 1, "--threads must be at least 1"),
        (opts.sample >= 0, "--sample must be 0 or more"),
        (opts.stop_on_streak is None or opts.stop_on_streak >= 1, "--stop-on-streak must be at least 1"),
        (opts.target_chunk_seconds > 0, "the target chunk time must be positive"),
        (
            opts.lo is None or opts.hi is None or opts.lo < opts.hi,
            "the key range's lower bound must be below its upper bound",
        ),
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)


class _Descending:
    """Reverses the order of keys (for walking newest first)."""

    def __init__(self, key: Key | None) -> None:
        self.key = key or []

    def __lt__(self, other: _Descending) -> bool:
        return bool(self.key > other.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and self.key == other.key

    __hash__ = None  # type: ignore[assignment]
