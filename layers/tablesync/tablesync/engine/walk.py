"""The range-checksum strategy: walks the key space in chunks (in key order, or newest first),
with the next chunk's bounds sought while the current ones are checked, and narrows the chunks
whose checksums differ (narrowing.py). For sides that answer key-ordered range queries."""

from __future__ import annotations

import json
import time
from concurrent.futures import Future
from typing import Any

from ..connectors import Connector
from ..errors import TransientDatabaseError
from ..models import DiffKind, DiffOptions, DiffState, Key, KeyRange, PendingRange, Sample, Span
from .keys import differing_columns, inner_points, walk_key
from .narrowing import LIST_ROWS_PER_ROUND, Narrowing, Unit
from .null_keys import list_null_keys
from .sides import SOURCE, SideRef, Sides
from .strategy import DifferenceCallback
from .tuning import Tuning

RANGES_PER_ROUND = 2048  # pending ranges taken in one round (bounds the SQL's size)


class RangeWalk:
    """Steps a diff by key ranges: chunks of the walk, then the parts of those that differ."""

    def __init__(self, sides: Sides, options: DiffOptions, narrowing: Narrowing, walker: SideRef) -> None:
        self.sides = sides
        self.options = options
        self.narrowing = narrowing
        self.tuning: Tuning = narrowing.tuning
        # The side whose index serves the walk's chunk bounds (the source unless it scans).
        self.walker = walker
        self._ahead: tuple[Any, Future[Any]] | None = None

    def key_range(self) -> KeyRange:
        key_range: KeyRange = self.sides.submit(self.walker, "key_range").result()
        return key_range

    def step(self, state: DiffState, deadline: float, on_difference: DifferenceCallback | None) -> None:
        """Advances `state` (a copy the caller owns) by whole rounds until the deadline; see
        Differ.step."""
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
                worked = self.narrowing.work(units, self.tuning.bucket_rows(state))
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

    def samples(self, state: DiffState, limit: int) -> list[list[Sample]]:
        column_names = [c.name for c in self.sides.plan(SOURCE).columns]
        out: list[list[Sample]] = []
        for t, tally in enumerate(state.targets):
            chosen = [(DiffKind.DIFFERING, k) for k in tally.differing] + [(DiffKind.MISSING, k) for k in tally.missing]
            chosen += [(DiffKind.EXTRA, k) for k in tally.extra]
            chosen = chosen[:limit]
            pairs = self.sides.fetch_pairs(t, [k for _, k in chosen]) if chosen else {}
            samples = []
            for kind, key in chosen:
                src, tgt = pairs.get(tuple(key), (None, None))
                if kind == DiffKind.DIFFERING and src is not None and tgt is not None:
                    idx = differing_columns(self.sides.plan(SOURCE), self.sides.plan(SideRef(t)), src, tgt)
                else:
                    idx = list(range(len(column_names)))
                samples.append(
                    Sample(
                        key=key,
                        kind=kind,
                        columns={
                            column_names[i]: {
                                "source": src[i] if src is not None else None,
                                "target": tgt[i] if tgt is not None else None,
                            }
                            for i in idx
                        },
                    )
                )
            out.append(samples)
        return out

    def drop_prefetch(self) -> None:
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead[1].cancel()

    def _null_keys(self, state: DiffState, on_difference: DifferenceCallback | None) -> bool:
        if self.options.lo is not None:  # listed by the shard that starts the key space
            state.null_keys_listed = True
            return False
        return list_null_keys(self.sides, state, self.narrowing.key_names, on_difference)

    def _next_units(self, state: DiffState) -> list[Unit]:
        if state.pending:
            waiting = sum(p.counts[0] if p.counts else 0 for p in state.pending)
            if (
                state.walk_done
                or not self.tuning.scan_bound  # else differing ranges wait to be listed in batches
                or waiting >= LIST_ROWS_PER_ROUND
                or len(state.pending) >= RANGES_PER_ROUND
            ):
                return self._pending_units(state)
        if state.walk_done:
            return []
        units: list[Unit] = []
        cursor = state.cursor
        started = state.started
        opts = self.options
        all_targets = list(range(len(self.sides.targets)))
        for _ in range(opts.threads):
            if started and self._walk_ends_at(cursor):
                break  # the walk has reached the end of the key space
            span = self._chunk_span(state, cursor)
            units.append(Unit(span.lo, span.hi, all_targets, True, listed=state.dense, points=span.points))
            cursor, started = (span.lo if opts.reverse else span.hi), True
        if not self._walk_ends_at(cursor):
            # Seek the chunk after these while they are checked: the walking side's seek then
            # costs no time on the critical path (its size lags one round behind; harmless).
            self._ahead = (self._chunk_id(state, cursor), self._submit_span(state, cursor))
        return units

    def _pending_units(self, state: DiffState) -> list[Unit]:
        """Pending ranges in walk order, as many as one round takes: at most LIST_ROWS_PER_ROUND
        rows to list and RANGES_PER_ROUND ranges."""
        threshold = self.options.bisection_threshold
        state.pending.sort(key=lambda p: walk_key(p.lo, self.options.reverse))
        taken: list[Unit] = []
        rows = 0
        keep: list[PendingRange] = []
        for pending in state.pending:
            size = max(pending.counts) if pending.counts else 0
            listing = size <= threshold
            if taken and (len(taken) >= RANGES_PER_ROUND or (listing and rows + size > LIST_ROWS_PER_ROUND)):
                keep.append(pending)
                continue
            rows += size if listing else 0
            taken.append(Unit(pending.lo, pending.hi, list(pending.targets), False, counts=list(pending.counts)))
        state.pending = keep
        return taken

    def _chunk_id(self, state: DiffState, cursor: Key | None) -> Any:
        """What a prefetched chunk must match to be used: its start, and whether it is listed or
        cut into buckets (its size may lag one round behind; harmless)."""
        bucketed = not state.dense and not self.tuning.plain(state)
        return (None if cursor is None else json.dumps(cursor), state.dense, bucketed)

    def _submit_span(self, state: DiffState, cursor: Key | None) -> Future[Any]:
        size, parts = self.tuning.next_chunk(state)
        opts = self.options
        sample = self.tuning.sample(state, size, parts)
        if sample is None or cursor is not None or opts.reverse or opts.lo is not None or opts.hi is not None:
            return self.sides.submit(self.walker, "chunk_bounds", cursor, size, parts, opts.reverse)
        plan = self.sides.plan(self.walker)
        fraction, limit = sample

        def whole_table(conn: Connector) -> Span:
            # Where a side scans, the first chunk takes the whole table; its cuts come from a
            # random sample of the keys (one pass, no sort), not from numbering every row in order.
            keys = conn.sample_keys(plan, fraction, limit)
            points = _quantiles(keys, parts)
            if len(points) < parts // 4:  # too few sampled (a wrong estimate): count the rows
                return conn.chunk_bounds(plan, cursor, size, parts, opts.reverse)
            return Span(lo=None, hi=None, points=points)

        return self.sides.side(self.walker).submit_call(whole_table)

    def _chunk_span(self, state: DiffState, cursor: Key | None) -> Span:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == self._chunk_id(state, cursor):
            span: Span = ahead[1].result()
        else:
            if ahead is not None:
                ahead[1].cancel()
            span = self._submit_span(state, cursor).result()
        return self._edged(state, self._clipped(span))

    def _edged(self, state: DiffState, span: Span) -> Span:
        """Where a side scans, a chunk open at an end of the key space is also cut at the walker's
        first and last keys: the ranges beyond them hold a target's extra rows only, and every
        other bucket has two bounds, with which a scanning side may narrow its reads (see
        range_superset); an open one it must scan for."""
        kr = state.key_range
        if not self.tuning.scan_bound or kr is None:
            return span
        points = list(span.points)
        first, last = kr.min_key, kr.max_key
        if first is not None and span.lo is None and all(first < b for b in (span.hi, *points[:1]) if b):
            points.insert(0, first)
        if last is not None and span.hi is None and all(b < last for b in (span.lo, *points[-1:]) if b):
            points.append(last)
        return Span(lo=span.lo, hi=span.hi, points=points)

    def _clipped(self, span: Span) -> Span:
        """The span cut at the shard's far bound (--lo/--hi), with the cut points inside it."""
        span = Span(lo=span.lo, hi=span.hi, points=inner_points(span.lo, span.hi, span.points))
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

    def _apply(
        self, state: DiffState, units: list[Unit], seconds: float, on_difference: DifferenceCallback | None
    ) -> None:
        top = [u for u in units if u.top]
        new_pending: list[PendingRange] = []
        for unit in units:
            if unit.top:
                self._advance(state, unit)
            new_pending += unit.new_pending
            state.rows_read += unit.rows_read
            for t, kind, key in unit.found:
                getattr(state.targets[t], kind).append(key)
                if on_difference is not None:
                    on_difference(t, kind, key)
        state.pending += new_pending
        if top:
            self.tuning.adapt(state, [u.findings() for u in top], seconds)

    def _advance(self, state: DiffState, chunk: Unit) -> None:
        """The walk moves past a checked chunk; its source rows are counted."""
        state.started = True
        state.chunks += 1
        state.source_rows += chunk.source_count
        for tally in state.targets:
            tally.rows_compared += chunk.source_count
        state.cursor = chunk.lo if self.options.reverse else chunk.hi
        if self._walk_ends_at(state.cursor):
            state.walk_done = True
        if chunk.differing_buckets or chunk.found:
            state.streak = 0
            return
        state.streak += chunk.source_count
        stop = self.options.stop_on_streak
        if stop is not None and state.streak >= stop and not state.walk_done:
            state.walk_done = True
            state.stopped_on_streak = True


def _quantiles(keys: list[Key], parts: int) -> list[Key]:
    """The keys that cut a sorted sample into `parts` equal shares (distinct, ascending)."""
    ordered = sorted({tuple(k) for k in keys})
    if len(ordered) < 2:
        return []
    cuts = {ordered[(i * len(ordered)) // parts] for i in range(1, parts)}
    return [list(k) for k in sorted(cuts)]
