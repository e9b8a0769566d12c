"""The scan-and-lookup strategy, for stores that cannot compute checksums or answer key-ordered
ranges (DynamoDB). The source is scanned in parallel segments, page by page, as (key, item hash)
pairs; each page's keys are looked up in every target (their hashes, by key): a key a target lacks
is missing, a hash that differs is differing. At the same time each target is scanned the same way
and its keys looked up in the source: a key the source lacks is extra (--skip-extra leaves this
out: half the reads).

Memory holds one round's pages, whatever the table's size; the state holds each segment's last
key, so a run resumed from any saved state neither counts an item twice nor skips one."""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from ..errors import TransientDatabaseError
from ..models import (
    MAX_KEYS_PER_REQUEST,
    DiffKind,
    DiffOptions,
    DiffState,
    Key,
    KeyRange,
    Sample,
    ScanPage,
    ScanProgress,
    ScanRequest,
    SegmentProgress,
)
from .keys import sort_key
from .sides import SOURCE, SideRef, Sides
from .strategy import DifferenceCallback

ABSENT = "(absent)"  # a sample's attribute that one side's item does not have
LOOKUP_KEYS = 100  # keys per lookup call: one BatchGetItem, answered on any thread of the side
Found = tuple[int, DiffKind, Key]  # target, kind, key
Pages = dict[tuple[int, int], ScanPage]  # (side, segment) -> its page


class ScanLookup:
    def __init__(self, sides: Sides, options: DiffOptions, estimated_rows: int | None) -> None:
        self.sides = sides
        self.options = options
        self.estimated_rows = estimated_rows

    def key_range(self) -> KeyRange:
        return KeyRange(min_key=None, max_key=None, estimated_rows=self.estimated_rows)

    def drop_prefetch(self) -> None:
        return None

    def step(self, state: DiffState, deadline: float, on_difference: DifferenceCallback | None) -> None:
        if state.scan is None:
            state.scan = self._fresh()
        first = True
        while not state.done and (first or time.monotonic() < deadline):
            started = time.monotonic()
            try:
                pages, found = self._round(state.scan)
            except TransientDatabaseError:
                if first:
                    raise
                break
            first = False
            self._apply(state, state.scan, pages, found, on_difference)
            state.elapsed_s += time.monotonic() - started

    def _fresh(self) -> ScanProgress:
        """The source and, for extra items, every target: each table has its own capacity (its own
        region, often), so all of them are read at once."""
        scanned = 1 if self.options.skip_extra else 1 + len(self.sides.targets)
        sides = [[SegmentProgress() for _ in range(self.options.segments)] for _ in range(scanned)]
        return ScanProgress(sides=sides, items_scanned=[0] * scanned)

    def _round(self, scan: ScanProgress) -> tuple[Pages, list[Found]]:
        """A page of every unfinished segment of every side, and the lookups of its keys on the
        other sides. Nothing is applied here: a round that breaks leaves no trace."""
        page = min(self.options.chunk_size, MAX_KEYS_PER_REQUEST)  # items per page (and at most 1 MB)
        jobs: dict[tuple[int, int], Future[Any]] = {}
        for side, segments in enumerate(scan.sides):
            ref = SOURCE if side == 0 else SideRef(side - 1)
            for index, segment in enumerate(segments):
                if not segment.done:
                    request = ScanRequest(segment=index, total_segments=len(segments), start=segment.start, limit=page)
                    jobs[(side, index)] = self.sides.submit(ref, "scan_hashes", request)
        pages: Pages = {at: job.result() for at, job in jobs.items()}
        by_side: dict[int, list[tuple[Key, int]]] = {}
        for (side, _), answer in pages.items():
            by_side.setdefault(side, []).extend(answer.pairs)
        # Every lookup is asked before any answer is read: the sides work at once.
        source_pairs = by_side.get(0, [])
        asked = [self._ask(SideRef(t), [k for k, _ in source_pairs]) for t in range(len(self.sides.targets))]
        extra_asked = {side: self._ask(SOURCE, [k for k, _ in pairs]) for side, pairs in by_side.items() if side > 0}
        found = self._missing_or_differing(source_pairs, asked)
        for side, jobs_of_side in extra_asked.items():
            found += self._extra(side - 1, by_side[side], self._held(jobs_of_side))
        return pages, found

    def _ask(self, ref: SideRef, keys: Sequence[Key]) -> list[Future[Any]]:
        """Lookups of `keys` on one side, a batch per call, spread over the side's threads."""
        return [
            self.sides.submit(ref, "lookup_hashes", list(keys[i : i + LOOKUP_KEYS]))
            for i in range(0, len(keys), LOOKUP_KEYS)
        ]

    @staticmethod
    def _held(jobs: list[Future[Any]]) -> dict[tuple[Any, ...], int]:
        held: dict[tuple[Any, ...], int] = {}
        for job in jobs:
            for key, item_hash in job.result():
                held[tuple(key)] = item_hash
        return held

    def _missing_or_differing(self, pairs: list[tuple[Key, int]], asked: list[list[Future[Any]]]) -> list[Found]:
        found: list[Found] = []
        ordered = sorted(pairs, key=lambda p: sort_key(p[0]))
        for t, jobs in enumerate(asked):
            held = self._held(jobs)
            for key, item_hash in ordered:
                there = held.get(tuple(key))
                if there is None:
                    found.append((t, DiffKind.MISSING, key))
                elif there != item_hash:
                    found.append((t, DiffKind.DIFFERING, key))
        return found

    @staticmethod
    def _extra(target: int, pairs: list[tuple[Key, int]], held: dict[tuple[Any, ...], int]) -> list[Found]:
        extra = [key for key, _ in pairs if tuple(key) not in held]
        return [(target, DiffKind.EXTRA, key) for key in sorted(extra, key=sort_key)]

    def _apply(
        self,
        state: DiffState,
        scan: ScanProgress,
        pages: Pages,
        found: list[Found],
        on_difference: DifferenceCallback | None,
    ) -> None:
        for (side, index), answer in pages.items():
            scan.sides[side][index] = SegmentProgress(start=answer.next, done=answer.next is None)
            scan.items_scanned[side] += len(answer.pairs)
        source_items = sum(len(a.pairs) for (side, _), a in pages.items() if side == 0)
        state.chunks += len(pages)
        state.rows_read += sum(len(a.pairs) for a in pages.values())
        state.source_rows += source_items
        for tally in state.targets:
            tally.rows_compared += source_items
        for t, kind, key in found:
            getattr(state.targets[t], kind).append(key)
            if on_difference is not None:
                on_difference(t, kind, key)
        state.started = True
        if all(s.done for segments in scan.sides for s in segments):
            state.walk_done = state.done = True

    def samples(self, state: DiffState, limit: int) -> list[list[Sample]]:
        out: list[list[Sample]] = []
        for t, tally in enumerate(state.targets):
            chosen = [(DiffKind.DIFFERING, k) for k in tally.differing] + [(DiffKind.MISSING, k) for k in tally.missing]
            chosen = (chosen + [(DiffKind.EXTRA, k) for k in tally.extra])[:limit]
            keys = [k for _, k in chosen]
            source = self._items(SOURCE, keys)
            target = self._items(SideRef(t), keys)
            samples = []
            for kind, key in chosen:
                a, b = source.get(tuple(key), {}), target.get(tuple(key), {})
                names = sorted(n for n in set(a) | set(b) if a.get(n) != b.get(n))
                # Present values are DynamoDB JSON ({"NULL":true} for NULL): "(absent)" is no value.
                columns = {n: {"source": a.get(n, ABSENT), "target": b.get(n, ABSENT)} for n in names}
                samples.append(Sample(key=key, kind=kind, columns=columns))
            out.append(samples)
        return out

    def _items(self, ref: SideRef, keys: list[Key]) -> dict[tuple[Any, ...], dict[str, str | None]]:
        if not keys:
            return {}
        fetched = self.sides.submit(ref, "fetch_items", keys).result()
        return {tuple(key): attributes for key, attributes in fetched}
