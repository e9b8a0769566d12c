"""The step-wise diff engine. It knows nothing of AWS or of how a connector reaches its database.

Progress lives in a small JSON-serialisable DiffState. `step(state, deadline)` does whole units of
work until the deadline and returns the new state; a unit's effects are applied to the state only
once all its queries have answered, so stopping anywhere and resuming from the last state gives the
same result, with no row counted twice or skipped.

A unit is either a new chunk of the source's key space or a pending range (part of a chunk whose
checksums differed). Every range is checksummed on the source and on its targets at the same time;
a range that differs is split into `bisection_factor` parts until it holds at most
`bisection_threshold` rows, and then its (key, row hash) pairs give the exact keys."""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .connectors import Connector
from .errors import InputError, KeyColumnError, SchemaError, StateError, UnsupportedTypeError
from .filters import filter_columns, parse_filter, rename_columns
from .models import (
    KEY_KINDS,
    ChunkSpan,
    Column,
    DiffOptions,
    DiffResult,
    DiffState,
    Key,
    Kind,
    PendingRange,
    Sample,
    SourceResult,
    TablePlan,
    TableSchema,
    TargetResult,
    TargetTally,
    kinds_compatible,
)
from .normalize import canonical_json

ConnectorFactory = Callable[[], Connector]
MAX_BUCKETS = 1024  # the bucket CASE tree stays 10 comparisons deep
DifferenceCallback = Callable[[int, str, Key], None]


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

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for conn in self._opened:
            with contextlib.suppress(Exception):  # closing is best effort
                conn.close()


@dataclass
class _Unit:
    """A range being worked on in the current batch of work."""

    lo: Key | None
    hi: Key | None
    targets: list[int]
    top: bool  # a new chunk of the walk (counts rows) rather than part of a differing one
    points: list[Key] = field(default_factory=list)  # cuts for bucket checksums
    counts: list[int] = field(default_factory=list)  # known row counts: source, then each target
    source_count: int = 0
    mismatched: bool = False
    new_pending: list[PendingRange] = field(default_factory=list)
    found: list[tuple[int, str, Key]] = field(default_factory=list)
    rows_read: int = 0


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
    ) -> None:
        self.table = table
        self.options = options or DiffOptions()
        _check_options(self.options)
        if not targets:
            raise InputError("give at least one target")
        self.source_label = source_label
        self.target_labels = list(target_labels or [f"target{i + 1}" for i in range(len(targets))])
        threads = self.options.threads
        # One connection more on the source: it seeks the next chunk while this one is checked.
        self.source = Side(source, threads + 1, "source")
        self._ahead: tuple[Any, Future[Any]] | None = None
        self.targets: list[Side] = []
        try:
            for i, factory in enumerate(targets):
                self.targets.append(Side(factory, threads, f"target{i + 1}"))
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
        source_schema = schemas[0]
        opts = self.options
        key_names = opts.key or source_schema.primary_key
        if not key_names:
            raise KeyColumnError(f"table {self.table} has no primary key on the source: give --key COL[,COL]")
        key_cols = [_require(source_schema, n, "source") for n in key_names]
        for col in key_cols:
            if col.kind not in KEY_KINDS:
                raise KeyColumnError(
                    f"key column {col.name!r} has type {col.native_type}; keys must be integer, text or uuid columns"
                )
        key_set = {c.name for c in key_cols}
        if opts.columns:
            wanted = [_require(source_schema, n, "source") for n in opts.columns]
        else:
            wanted = list(source_schema.columns)
        ignored = {_require(source_schema, n, "source").name for n in opts.ignore}
        compared = [c for c in wanted if c.name not in key_set and c.name not in ignored]
        for col in compared:
            if col.kind is None:
                raise UnsupportedTypeError(
                    f"column {col.name!r} has unsupported type {col.native_type}: exclude it with --ignore {col.name}"
                )
        where = parse_filter(opts.where) if opts.where is not None else None
        if where is not None:
            for name in filter_columns(where):
                _require(source_schema, name, "source")

        def plan_for(schema: TableSchema, label: str) -> TablePlan:
            def match(col: Column) -> Column:
                other = schema.column(col.name)
                if other is None:
                    raise SchemaError(f"column {col.name!r} is missing in {label}")
                if other.kind is None:
                    raise UnsupportedTypeError(
                        f"column {col.name!r} has unsupported type {other.native_type} in {label}: "
                        f"exclude it with --ignore {col.name}"
                    )
                assert col.kind is not None
                if not kinds_compatible(col.kind, other.kind):
                    raise SchemaError(
                        f"column {col.name!r} cannot be compared: source type {col.native_type}, "
                        f"{label} type {other.native_type}"
                    )
                return other

            side_where = None
            if where is not None:
                side_where = rename_columns(where, lambda n: _require(schema, n, label).name)
            return TablePlan(
                table=self.table,
                key=[match(c) for c in key_cols],
                columns=[match(c) for c in compared],
                where=side_where,
            )

        self.source_plan = plan_for(source_schema, "the source")
        self.target_plans = [plan_for(s, self.target_labels[i]) for i, s in enumerate(schemas[1:])]
        self.verify_json = [self.source_plan.has_json or p.has_json for p in self.target_plans]
        self.key_names = [c.name for c in key_cols]
        self.column_names = [c.name for c in compared]
        if opts.key and list(opts.key) != list(source_schema.primary_key):
            checks = [self.source.submit("validate_key", self.source_plan)]
            checks += [t.submit("validate_key", p) for t, p in zip(self.targets, self.target_plans, strict=True)]
            for check in checks:
                check.result()

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
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def initial_state(self) -> DiffState:
        key_range = self.source.call("key_range", self.source_plan)
        return DiffState(
            fingerprint=self.fingerprint(),
            chunk_size=self.options.chunk_size,
            targets=[TargetTally() for _ in self.targets],
            key_range=key_range,
        )

    def check_state(self, state: DiffState) -> None:
        if state.fingerprint != self.fingerprint() or len(state.targets) != len(self.targets):
            raise StateError("the saved state belongs to a different diff (table, URLs or options changed)")

    # --- stepping -----------------------------------------------------------------------------
    def step(self, state: DiffState, deadline: float, on_difference: DifferenceCallback | None = None) -> DiffState:
        """Advances until time.monotonic() passes `deadline` or the diff is done; always does at
        least one unit of work, so any deadline makes progress."""
        self.check_state(state)
        state = state.model_copy(deep=True)
        first = True
        while not state.done and (first or time.monotonic() < deadline):
            first = False
            started = time.monotonic()
            units = self._next_units(state)
            if not units:
                state.done = True
                break
            self._work(units)
            self._apply(state, units, time.monotonic() - started, on_difference)
            state.elapsed_s += time.monotonic() - started
        if not state.pending and state.walk_done:
            state.done = True
        return state

    def _next_units(self, state: DiffState) -> list[_Unit]:
        if state.pending:
            # Many small ranges at once: their queries queue on each side without round-trip stalls.
            take = min(len(state.pending), self.options.threads * 32)
            return [
                _Unit(p.lo, p.hi, list(p.targets), False, counts=list(p.counts))
                for p in (state.pending.pop() for _ in range(take))
            ]
        if state.walk_done:
            return []
        units: list[_Unit] = []
        cursor = state.cursor
        started = state.started
        opts = self.options
        for _ in range(opts.threads):
            if started and cursor is None:
                break  # the walk has reached the end of the key space
            span = self._chunk_span(state, cursor)
            units.append(_Unit(span.lo, span.hi, list(range(len(self.targets))), True, points=span.points))
            cursor, started = (span.lo if opts.reverse else span.hi), True
        if cursor is not None:
            # Seek the chunk after these while they are checked: the source's seek then costs no
            # time on the critical path (the chunk size it uses lags one chunk behind; harmless).
            self._ahead = (_cursor_id(cursor), self._submit_span(state, cursor))
        return units

    def _submit_span(self, state: DiffState, cursor: Key | None) -> Future[Any]:
        # After a matching chunk expect another: one plain checksum is the cheapest check. After
        # a differing one, cut the chunk into buckets at once and save a second pass over it.
        parts = 1 if state.streak > 0 else self._parts(state.chunk_size)
        opts = self.options
        return self.source.submit("chunk_bounds", self.source_plan, cursor, state.chunk_size, parts, opts.reverse)

    def _chunk_span(self, state: DiffState, cursor: Key | None) -> ChunkSpan:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == _cursor_id(cursor):
            span: ChunkSpan = ahead[1].result()
            return span
        return self._submit_span(state, cursor).result()

    def _parts(self, rows: int) -> int:
        """Buckets to cut a range into: small enough that a differing bucket can be listed at once
        (re-reading only it), at least the bisection factor, at most MAX_BUCKETS."""
        opts = self.options
        return min(MAX_BUCKETS, max(opts.bisection_factor, -(-rows // opts.bisection_threshold)))

    def _plan(self, side: int) -> TablePlan:
        return self.source_plan if side < 0 else self.target_plans[side]

    def _side(self, side: int) -> Side:
        return self.source if side < 0 else self.targets[side]

    def _work(self, units: list[_Unit]) -> None:
        opts = self.options
        threshold = opts.bisection_threshold
        # Phase 1: ranges that are too big to list are cut into buckets. New chunks come with their
        # cuts; a differing range gets cuts where the side holding the most rows has equal shares.
        leaves: list[_Unit] = []
        split_jobs: dict[int, Future[Any]] = {}
        for n, unit in enumerate(units):
            if unit.top:
                continue
            biggest = max(unit.counts)
            if biggest <= threshold:
                leaves.append(unit)
                continue
            side = -1 if unit.counts[0] == biggest else unit.targets[unit.counts.index(biggest, 1) - 1]
            split_jobs[n] = self._side(side).submit(
                "split_points", self._plan(side), unit.lo, unit.hi, biggest, self._parts(biggest)
            )
        bucketed = [u for u in units if u.top]
        for n, future in split_jobs.items():
            units[n].points = future.result()
            # A range that cannot be cut (the side that was asked holds no inner key) is listed.
            (bucketed if units[n].points else leaves).append(units[n])
        # Phase 2: bucket checksums on the source and the range's targets at the same time.
        sums: dict[tuple[int, int], Future[Any]] = {}
        for n, unit in enumerate(bucketed):
            for side in (-1, *unit.targets):
                sums[(n, side)] = self._side(side).submit(
                    "bucket_checksums", self._plan(side), unit.lo, unit.hi, unit.points
                )
        for n, unit in enumerate(bucketed):
            source_sums = sums[(n, -1)].result()
            target_sums = {t: sums[(n, t)].result() for t in unit.targets}
            if unit.top:
                unit.source_count = sum(c.count for c in source_sums)
            bounds = [unit.lo, *unit.points, unit.hi]
            parts: list[PendingRange] = []
            for b, source_sum in enumerate(source_sums):
                off = [t for t in unit.targets if target_sums[t][b] != source_sum]
                if off:
                    parts.append(
                        PendingRange(
                            lo=bounds[b],
                            hi=bounds[b + 1],
                            targets=off,
                            counts=[source_sum.count, *(target_sums[t][b].count for t in off)],
                        )
                    )
            unit.mismatched = bool(parts)
            # Pending ranges form a stack: push so that popping keeps the walk's order.
            unit.new_pending = parts if opts.reverse else parts[::-1]
        # Phase 3: small differing ranges: compare (key, row hash) lists to get the exact keys.
        hashes: dict[tuple[int, int], Future[Any]] = {}
        for n, unit in enumerate(leaves):
            unit.mismatched = True
            for side in (-1, *unit.targets):
                hashes[(n, side)] = self._side(side).submit("row_hashes", self._plan(side), unit.lo, unit.hi)
        verify: list[tuple[_Unit, int, list[Key]]] = []
        for n, unit in enumerate(leaves):
            source_hashes = self._listed(unit, -1, hashes[(n, -1)].result())
            unit.rows_read += len(source_hashes)
            for t in unit.targets:
                target_hashes = self._listed(unit, t, hashes[(n, t)].result())
                unit.rows_read += len(target_hashes)
                missing = sorted(k for k in source_hashes if k not in target_hashes)
                extra = sorted(k for k in target_hashes if k not in source_hashes)
                differing = sorted(k for k, h in source_hashes.items() if k in target_hashes and target_hashes[k] != h)
                unit.found += [(t, "missing", list(k)) for k in missing]
                unit.found += [(t, "extra", list(k)) for k in extra]
                if differing and self.verify_json[t]:
                    verify.append((unit, t, [list(k) for k in differing]))
                else:
                    unit.found += [(t, "differing", list(k)) for k in differing]
        # Phase 4: JSON is hashed as each database spells it; confirm such differences by meaning.
        for unit, t, keys in verify:
            pairs = self._fetch_pairs(t, keys)
            for key in keys:
                src_row, tgt_row = pairs.get(tuple(key), (None, None))
                if src_row is None or tgt_row is None or self._row_differences(t, src_row, tgt_row):
                    unit.found.append((t, "differing", key))

    def _listed(self, unit: _Unit, side: int, pairs: list[tuple[Key, int]]) -> dict[tuple[Any, ...], int]:
        """(key, hash) pairs by key, after checking that each key lies in the range asked for. Key
        ranges must select the same rows everywhere; a key outside its range means a database
        orders keys differently than tablesync expects, and the answer would be wrong."""
        lo = _order_key(unit.lo) if unit.lo is not None else None
        hi = _order_key(unit.hi) if unit.hi is not None else None
        out = {}
        for key, row_hash in pairs:
            at = _order_key(key)
            if (lo is not None and at < lo) or (hi is not None and at >= hi):
                label = self.source_label if side < 0 else self.target_labels[side]
                raise SchemaError(
                    f"{label} returned key {key} outside the range {unit.lo}..{unit.hi}: it orders the key "
                    f"column(s) {', '.join(self.key_names)} differently from byte order"
                )
            out[tuple(key)] = row_hash
        return out

    def _apply(
        self, state: DiffState, units: list[_Unit], seconds: float, on_difference: DifferenceCallback | None
    ) -> None:
        any_top = False
        for unit in units:
            if unit.top:
                any_top = True
                state.started = True
                state.chunks += 1
                state.source_rows += unit.source_count
                for tally in state.targets:
                    tally.rows_compared += unit.source_count
                state.cursor = unit.lo if self.options.reverse else unit.hi
                if state.cursor is None:
                    state.walk_done = True
                if unit.mismatched:
                    state.streak = 0
                else:
                    state.streak += unit.source_count
                    stop = self.options.stop_on_streak
                    if stop is not None and state.streak >= stop and not state.walk_done:
                        state.walk_done = True
                        state.stopped_on_streak = True
            state.pending.extend(unit.new_pending)
            state.rows_read += unit.rows_read
            for t, kind, key in unit.found:
                getattr(state.targets[t], kind).append(key)
                if on_difference is not None:
                    on_difference(t, kind, key)
        if any_top:
            state.chunk_size = self._next_chunk_size(state.chunk_size, seconds / max(1, len(units)))

    def _next_chunk_size(self, size: int, seconds: float) -> int:
        """Aim each chunk at the target time. Differences do not shrink chunks: bucket checksums
        narrow a differing chunk down at the cost of its differing buckets only."""
        opts = self.options
        factor = 4.0 if seconds <= 0 else min(4.0, max(0.25, opts.target_chunk_seconds / seconds))
        return int(min(opts.max_chunk_size, max(opts.chunk_size, size * factor)))

    # --- results ------------------------------------------------------------------------------
    def _fetch_pairs(
        self, t: int, keys: list[Key]
    ) -> dict[tuple[Any, ...], tuple[list[str | None] | None, list[str | None] | None]]:
        src_future = self.source.submit("fetch_rows", self.source_plan, keys)
        tgt_future = self.targets[t].submit("fetch_rows", self.target_plans[t], keys)
        src_rows = _rows_by_key(self.source_plan, src_future.result())
        tgt_rows = _rows_by_key(self.target_plans[t], tgt_future.result())
        return {tuple(k): (src_rows.get(tuple(k)), tgt_rows.get(tuple(k))) for k in keys}

    def _row_differences(self, t: int, src: list[str | None], tgt: list[str | None]) -> list[int]:
        """Indexes of compared columns whose values differ (JSON compared by meaning)."""
        out = []
        for i, (scol, tcol) in enumerate(zip(self.source_plan.columns, self.target_plans[t].columns, strict=True)):
            a, b = src[i], tgt[i]
            if a is not None and b is not None and Kind.JSON in (scol.kind, tcol.kind):
                with contextlib.suppress(ValueError):
                    a, b = canonical_json(a), canonical_json(b)
            if a != b:
                out.append(i)
        return out

    def samples(self, state: DiffState, limit: int) -> list[list[Sample]]:
        out: list[list[Sample]] = []
        for t, tally in enumerate(state.targets):
            chosen = [("differing", k) for k in tally.differing] + [("missing", k) for k in tally.missing]
            chosen += [("extra", k) for k in tally.extra]
            chosen = chosen[:limit]
            pairs = self._fetch_pairs(t, [k for _, k in chosen]) if chosen else {}
            samples = []
            for kind, key in chosen:
                src, tgt = pairs.get(tuple(key), (None, None))
                if kind == "differing" and src is not None and tgt is not None:
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
        if (
            kr
            and kr.min_key
            and kr.max_key
            and len(kr.min_key) == 1
            and isinstance(kr.min_key[0], int)
            and state.cursor
            and isinstance(state.cursor[0], int)
        ):
            low, high = kr.min_key[0], kr.max_key[0]
            span = max(1, high - low + 1)
            done = (high + 1 - state.cursor[0]) if self.options.reverse else (state.cursor[0] - low)
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
    ) -> DiffState:
        """Steps to the end, handing each intermediate state to on_state (to save it)."""
        state = state or self.initial_state()
        while not state.done:
            state = self.step(state, time.monotonic() + step_seconds, on_difference)
            if on_state is not None:
                on_state(state)
        return state

    def close(self) -> None:
        self.source.close()
        for target in getattr(self, "targets", []):
            target.close()

    def __enter__(self) -> Differ:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _rows_by_key(plan: TablePlan, rows: list[dict[str, str | None]]) -> dict[tuple[Any, ...], list[str | None]]:
    out = {}
    for row in rows:
        key = tuple(_key_value(c, row[c.name]) for c in plan.key)
        out[key] = [row[c.name] for c in plan.columns]
    return out


def _key_value(column: Column, text: str | None) -> Any:
    return int(text) if column.kind is Kind.INTEGER and text is not None else text


def _cursor_id(cursor: Key | None) -> Any:
    return None if cursor is None else json.dumps(cursor)


def _order_key(key: Key) -> tuple[Any, ...]:
    """A key as Python compares it in the databases' (byte) key order: text by UTF-8 bytes."""
    return tuple(v.encode("utf-8") if isinstance(v, str) else v for v in key)


def _sort_key(key: Key) -> tuple[Any, ...]:
    return tuple((0, v) if isinstance(v, int) else (1, str(v)) for v in key)


def _require(schema: TableSchema, name: str, label: str) -> Column:
    col = schema.column(name)
    if col is None:
        raise SchemaError(f"unknown column {name!r} in table {schema.table} on {label}")
    return col


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
    ]
    for ok, message in checks:
        if not ok:
            raise InputError(message)
