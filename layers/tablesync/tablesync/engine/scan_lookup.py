"""The scan-and-lookup strategy, for stores that cannot compute checksums or answer key-ordered
ranges (DynamoDB). Every side is scanned at once, in parallel segments, page by page, as (key, item
hash) pairs: the source for missing and differing items, each target for extra ones (each table
has its own capacity, often in its own region). The two scans are paired as they go
(engine/pairing.py): a key met on both sides is compared there; a key left unpaired (its partner
is far away in the other scan's order, or there is none) is looked up by key on the other side. A
key a target lacks is missing, a hash that differs is differing, a target key the source lacks is
extra. With --skip-extra the targets are not scanned and every source key is looked up (half the
reads where lookups cost what scans do).

Memory holds one round's pages and the unpaired keys (capped), whatever the table's size; the
state holds each segment's last key and the unpaired keys, so a run resumed from any saved state
neither counts an item twice nor skips one."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

from ..errors import TransientDatabaseError
from ..models import (
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
    UnpairedKeys,
)
from .keys import sort_key
from .pairing import Pairing, paced, settle_source, settle_target
from .sides import SOURCE, SideRef, Sides
from .strategy import DifferenceCallback

ABSENT = "(absent)"  # a sample's attribute that one side's item does not have
LOOKUP_KEYS = 100  # keys per lookup call: one BatchGetItem, answered on any thread of the side
Found = tuple[int, DiffKind, Key]  # target, kind, key
Pages = dict[tuple[int, int], ScanPage]  # (side, segment) -> its page
UNPAIRED_PAGES = 2.0  # unpaired keys a pairing holds per side, in pages per segment, before looking up the oldest


class ScanLookup:
    def __init__(self, sides: Sides, options: DiffOptions, estimated_rows: int | None) -> None:
        self.sides = sides
        self.options = options
        self.estimated_rows = estimated_rows
        # Pages read ahead, by (side, segment): (where the page starts, its answer to come).
        self._ahead: dict[tuple[int, int], tuple[Key | None, Future[ScanPage]]] = {}
        self._ahead_lock = threading.Lock()
        # The most items a page has held (--chunk-size, or what DynamoDB's 1 MB pages hold): how
        # long keys may wait to pair, and how far a segment may run ahead of its partner.
        self._page_len = options.page_items or 1
        self._deadline = 0.0  # the current step's: no page is read ahead past it

    def key_range(self) -> KeyRange:
        return KeyRange(min_key=None, max_key=None, estimated_rows=self.estimated_rows)

    def drop_prefetch(self) -> None:
        with self._ahead_lock:
            self._ahead.clear()

    def step(self, state: DiffState, deadline: float, on_difference: DifferenceCallback | None) -> None:
        if state.scan is None:
            state.scan = self._fresh()
        self._deadline = deadline
        first = True
        while not state.done and (first or time.monotonic() < deadline):
            started = time.monotonic()
            try:
                pages, found, unpaired = self._round(state.scan)
            except TransientDatabaseError:
                self.drop_prefetch()  # pages read ahead may have broken with the round
                if first:
                    raise
                break
            first = False
            state.scan.unpaired = unpaired
            self._apply(state, state.scan, pages, found, on_difference)
            state.elapsed_s += time.monotonic() - started

    def _fresh(self) -> ScanProgress:
        scanned = 1 if self.options.skip_extra else 1 + len(self.sides.targets)
        sides = [[SegmentProgress() for _ in range(self.options.segments)] for _ in range(scanned)]
        unpaired = [] if self.options.skip_extra else [UnpairedKeys() for _ in self.sides.targets]
        return ScanProgress(sides=sides, items_scanned=[0] * scanned, unpaired=unpaired)

    def _page(self) -> int | None:
        """Items a scan page asks for: --chunk-size where given, else as many as DynamoDB puts
        in a page (1 MB): fewer calls, each of which a table serves at a cost of its own."""
        return self.options.page_items

    def _round(self, scan: ScanProgress) -> tuple[Pages, list[Found], list[UnpairedKeys]]:
        """A page of every segment that is read this round, the pairing of their keys, and the
        lookups of the keys that are to be settled by key. Nothing is applied here: a round that
        breaks leaves no trace."""
        # A state saved before pairing existed has none: nothing waits in it.
        saved = scan.unpaired or [UnpairedKeys() for _ in scan.sides[1:]]
        pairings = [Pairing.load(unpaired) for unpaired in saved]
        jobs = {at: self._page_from(scan, at) for at in self._reading(scan, pairings)}
        pages: Pages = {at: job.result() for at, job in jobs.items()}

        def done(side: int) -> bool:
            return all(
                pages[(side, i)].next is None if (side, i) in pages else segment.done
                for i, segment in enumerate(scan.sides[side])
            )

        source_pairs = [(i, answer.pairs) for (side, i), answer in sorted(pages.items()) if side == 0]
        by_key: list[list[tuple[Key, int]]] = [[] for _ in self.sides.targets]  # source keys to look up
        from_target: list[list[tuple[Key, int]]] = [[] for _ in self.sides.targets]  # target keys to look up
        if len(scan.sides) == 1:  # --skip-extra (as the state was begun): every source key is looked up
            by_key = [[pair for _, pairs in source_pairs for pair in pairs] for _ in self.sides.targets]
        self._page_len = max([self._page_len, *(len(p.pairs) for p in pages.values())])
        cap = int(UNPAIRED_PAGES * self._page_len * len(scan.sides[0]))
        for t, pairing in enumerate(pairings):
            for index, pairs in source_pairs:
                pairing.add_source(index, pairs)
            for (side, index), answer in sorted(pages.items()):
                if side == t + 1:
                    pairing.add_target(index, answer.pairs)
            by_key[t] = pairing.take_oldest(pairing.source, 0 if done(t + 1) else cap)
            from_target[t] = pairing.take_oldest(pairing.target, 0 if done(0) else cap)
        # Every lookup is asked before any answer is read: the sides work at once.
        asked = [self._ask(SideRef(t), [k for k, _ in keys]) for t, keys in enumerate(by_key)]
        asked_back = [self._ask(SOURCE, [k for k, _ in keys]) for keys in from_target]
        found: list[Found] = []
        for t, pairing in enumerate(pairings):
            found += [(t, DiffKind.DIFFERING, key) for key in pairing.differing]
        for t, keys in enumerate(by_key):
            found += [(t, kind, key) for kind, key in settle_source(keys, self._held(asked[t]))]
        for t, keys in enumerate(from_target):
            found += [(t, kind, key) for kind, key in settle_target(keys, self._held(asked_back[t]))]
        found.sort(key=lambda f: (f[0], sort_key(f[2])))
        return pages, found, [pairing.save() for pairing in pairings]

    def _page_from(self, scan: ScanProgress, at: tuple[int, int]) -> Future[ScanPage]:
        """The page of a segment from its saved position: the one read ahead when it starts
        there, else asked for now. When it is in, the segment's next page is read ahead, so the
        database serves it while this round's pages are paired (one page ahead, no more)."""
        side, index = at
        start, total = scan.sides[side][index].start, len(scan.sides[side])
        with self._ahead_lock:
            ahead = self._ahead.pop(at, None)
        job = ahead[1] if ahead is not None and ahead[0] == start else self._ask_page(at, start, total)

        def read_ahead(done: Future[ScanPage]) -> None:
            if done.cancelled() or done.exception() is not None or done.result().next is None:
                return
            if time.monotonic() >= self._deadline:
                return  # the step is ending: a page read now would wait unused (and cost units)
            following = done.result().next
            try:
                with self._ahead_lock:
                    self._ahead[at] = (following, self._ask_page(at, following, total))
            except RuntimeError:  # the diff is closing: its threads take no more work
                return

        job.add_done_callback(read_ahead)
        return job

    def _ask_page(self, at: tuple[int, int], start: Key | None, total: int) -> Future[ScanPage]:
        side, index = at
        ref = SOURCE if side == 0 else SideRef(side - 1)
        request = ScanRequest(segment=index, total_segments=total, start=start, limit=self._page())
        job: Future[ScanPage] = self.sides.submit(ref, "scan_hashes", request)
        return job

    def _reading(self, scan: ScanProgress, pairings: list[Pairing]) -> list[tuple[int, int]]:
        """The (side, segment)s read this round: every unfinished one, but for a segment that is
        far ahead of its partner on the other side (pairing.paced)."""
        segments = len(scan.sides[0])
        source_done = [s.done for s in scan.sides[0]]
        if not pairings:
            return [(0, i) for i, done in enumerate(source_done) if not done]
        targets_done = [[s.done for s in side] for side in scan.sides[1:]]
        read_source, read_targets = paced(
            [Pairing.waiting_by_segment(p.source, segments) for p in pairings],
            [Pairing.waiting_by_segment(p.target, segments) for p in pairings],
            source_done,
            targets_done,
            lead=self._page_len // 2,
        )
        reading = [(0, i) for i, read in enumerate(read_source) if read]
        for t, reads in enumerate(read_targets):
            reading += [(t + 1, i) for i, read in enumerate(reads) if read]
        return reading

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
