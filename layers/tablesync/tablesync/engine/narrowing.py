"""One round of the range-checksum strategy: the ranges it takes are cut where they hold equal
shares of rows, compared by bucket checksums on every side at the same time, and the small ones
that differ are listed as (key, row hash) pairs, which name the exact keys."""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import KeyColumnError, SchemaError
from ..models import Checksum, DiffKind, DiffOptions, Key, PendingRange, Span, SplitRequest
from .keys import differing_columns, inner_points, walk_key
from .sides import SOURCE, SideRef, Sides
from .tuning import ChunkFindings, Tuning

LIST_ROWS_PER_ROUND = 100_000  # rows listed per side in one round (bounds memory)


class Found(NamedTuple):
    """One difference: on which target, what kind, and the key."""

    target: int
    kind: DiffKind
    key: Key


@dataclass
class Unit:
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
    found: list[Found] = field(default_factory=list)
    rows_read: int = 0

    @property
    def biggest(self) -> int:
        return max(self.counts) if self.counts else 0

    def involves(self, ref: SideRef) -> bool:
        return ref.target is None or ref.target in self.targets

    def findings(self) -> ChunkFindings:
        return ChunkFindings(self.source_count, self.listed, len(self.found), self.buckets, self.differing_buckets)


Hashes = dict[tuple[Any, ...], int]
Repeats = dict[tuple[Any, ...], set[int]]


class Narrowing:
    """Works the rounds of one diff's ranges on its sides."""

    def __init__(
        self, sides: Sides, options: DiffOptions, tuning: Tuning, key_names: list[str], verify_json: list[bool]
    ) -> None:
        self.sides = sides
        self.options = options
        self.tuning = tuning
        self.key_names = key_names
        self.verify_json = verify_json

    def work(self, units: list[Unit], bucket_rows: int) -> list[Unit]:
        """Runs one round; returns every unit to apply (the given ones and the leaves it listed)."""
        threshold = self.options.bisection_threshold
        # Phase 1: pending ranges too big to list are cut where the side holding the most rows has
        # equal shares (so that extra rows on a target are divided too).
        to_split: dict[SideRef, list[Unit]] = {}
        leaves: list[Unit] = []
        for unit in units:
            if unit.top:
                continue
            if unit.biggest <= threshold:
                leaves.append(unit)
                continue
            fullest = unit.counts.index(unit.biggest)
            ref = SOURCE if fullest == 0 else SideRef(unit.targets[fullest - 1])
            to_split.setdefault(ref, []).append(unit)
        split_jobs = []
        for ref, group in to_split.items():
            for part in self._grouped(SOURCE, group):
                steps = [max(1, -(-u.biggest // self.tuning.parts(u.biggest, bucket_rows))) for u in part]
                requests = [SplitRequest(lo=u.lo, hi=u.hi, step=step) for u, step in zip(part, steps, strict=True)]
                split_jobs.append((part, self.sides.submit(ref, "split_points", requests)))
        bucketed = [u for u in units if u.top and not u.listed]
        for part, future in split_jobs:
            for unit, points in zip(part, future.result(), strict=True):
                # A side that holds a key twice may name it twice, or name a bound.
                unit.points = inner_points(unit.lo, unit.hi, points)
                # A range that cannot be cut (the side that was asked holds no inner key) is listed.
                (bucketed if unit.points else leaves).append(unit)
        # Phase 2: bucket checksums on every side at the same time; each new chunk is its own call
        # (one per thread), pending ranges go in one call per thread.
        new_leaves = self._checksum(bucketed)
        # Phase 3: small differing ranges: compare (key, row hash) lists to get the exact keys.
        listed = [u for u in units if u.top and u.listed] + leaves + new_leaves
        if listed:
            self._list(listed)
        return units + new_leaves

    def _grouped(self, ref: SideRef, units: Sequence[Unit]) -> list[list[Unit]]:
        """The units that involve `ref`, sorted by key and cut into one group per thread."""
        mine = sorted((u for u in units if u.involves(ref)), key=lambda u: walk_key(u.lo, False))
        if not mine:
            return []
        groups = min(self.options.threads, len(mine))
        size = -(-len(mine) // groups)
        return [mine[i : i + size] for i in range(0, len(mine), size)]

    def _involved(self, units: Sequence[Unit]) -> list[SideRef]:
        return self.sides.involved(t for u in units for t in u.targets)

    def _checksum(self, units: list[Unit]) -> list[Unit]:
        """Bucket checksums of the units on their sides; differing buckets become leaves to list
        in this round or pending ranges. Returns the leaves."""
        if not units:
            return []
        jobs: list[tuple[SideRef, list[Unit], list[Span], Future[Any]]] = []
        for ref in self._involved(units):
            mine = [u for u in units if u.involves(ref)]
            groups = [[u] for u in mine if u.top] + self._grouped(ref, [u for u in mine if not u.top])
            for group in groups:
                spans = [Span(lo=u.lo, hi=u.hi, points=u.points, narrow=not u.top) for u in group]
                jobs.append((ref, group, spans, self.sides.submit(ref, "bucket_checksums", spans)))
        sums: dict[tuple[int, SideRef], list[Checksum]] = {}
        for ref, group, spans, future in jobs:
            answer = future.result()
            if _lost_rows(group, ref, [sum(c.count for c in unit_sums) for unit_sums in answer]):
                answer = self.sides.submit(ref, "bucket_checksums", _in_full(spans)).result()
            for unit, unit_sums in zip(group, answer, strict=True):
                sums[(id(unit), ref)] = unit_sums
        leaves: list[Unit] = []
        leaf_rows = 0
        defer = self.tuning.scan_bound  # where a side scans, differing ranges are listed in batches
        threshold = self.options.bisection_threshold
        for unit in units:
            source_sums = sums[(id(unit), SOURCE)]
            target_sums = {t: sums[(id(unit), SideRef(t))] for t in unit.targets}
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
                    leaves.append(Unit(bounds[b], bounds[b + 1], off, False, counts=counts))
                else:
                    unit.new_pending.append(PendingRange(lo=bounds[b], hi=bounds[b + 1], targets=off, counts=counts))
        return leaves

    def _list(self, units: list[Unit]) -> None:
        """Lists (key, row hash) on every side of the units and compares them."""
        jobs: list[tuple[SideRef, list[Unit], list[Span], Future[Any]]] = []
        for ref in self._involved(units):
            for group in self._grouped(ref, units):
                spans = [Span(lo=u.lo, hi=u.hi, narrow=not u.top) for u in group]
                jobs.append((ref, group, spans, self.sides.submit(ref, "row_hashes", spans)))
        listed: dict[tuple[int, SideRef], Hashes] = {}
        repeated: dict[tuple[int, SideRef], Repeats] = {}
        for ref, group, spans, future in jobs:
            assigned = self._assign(ref, group, future.result())
            if _lost_rows(group, ref, [count for _, _, count in assigned]):
                assigned = self._assign(ref, group, self.sides.submit(ref, "row_hashes", _in_full(spans)).result())
            for unit, (hashes, twice, _) in zip(group, assigned, strict=True):
                listed[(id(unit), ref)] = hashes
                repeated[(id(unit), ref)] = twice
                unit.rows_read += len(hashes)
                if twice and ref.is_source:
                    names = ", ".join(self.key_names)
                    raise KeyColumnError(
                        f"key {names} is not unique on the source: {list(next(iter(twice)))} appears more than once",
                        redacted=f"key {names} is not unique on the source: a key appears more than once",
                    )
        verify: list[tuple[Unit, int, list[Key]]] = []
        for unit in units:
            source_hashes = listed[(id(unit), SOURCE)]
            if unit.top:
                unit.source_count = len(source_hashes)
            for t in unit.targets:
                ref = SideRef(t)
                differing = _compare(unit, t, source_hashes, listed[(id(unit), ref)], repeated[(id(unit), ref)])
                if differing and self.verify_json[t]:
                    verify.append((unit, t, differing))
                else:
                    unit.found += [Found(t, DiffKind.DIFFERING, k) for k in differing]
        # JSON is hashed as each database spells it; confirm such differences by meaning.
        for unit, t, keys in verify:
            unit.found += [Found(t, DiffKind.DIFFERING, key) for key in confirmed(self.sides, t, keys)]

    def _assign(
        self, ref: SideRef, group: list[Unit], pairs: list[tuple[Key, int]]
    ) -> list[tuple[Hashes, Repeats, int]]:
        """Sorts listed (key, hash) pairs into the group's ranges (sorted, disjoint): for each range,
        its hashes by key, for keys listed more than once all their hashes, and its rows. A key outside
        every range asked for means a database orders keys differently than tablesync expects, and
        the answer would be wrong: that is an error, never a silent difference."""
        out: list[Hashes] = [{} for _ in group]
        twice: list[Repeats] = [{} for _ in group]
        rows = [0] * len(group)
        unbounded_start = group[0].lo is None
        starts: list[Key] = [u.lo for u in group if u.lo is not None]
        for key, row_hash in pairs:
            at = bisect.bisect_right(starts, key)
            index = at if unbounded_start else at - 1
            unit = group[index] if index >= 0 else None
            if unit is None or (unit.hi is not None and key >= unit.hi):
                raise SchemaError(
                    f"{self.sides.label(ref)} returned key {key} outside the ranges asked for: it orders the key "
                    f"column(s) {', '.join(self.key_names)} differently from byte order"
                )
            held = tuple(key)
            rows[index] += 1
            if held in out[index]:
                twice[index].setdefault(held, {out[index][held]}).add(row_hash)
            out[index][held] = row_hash
        return list(zip(out, twice, rows, strict=True))


def _lost_rows(group: Sequence[Unit], ref: SideRef, counts: Sequence[int]) -> bool:
    """Whether a narrowed read of the group's ranges on one side found other row counts than the
    ranges are known to hold there (from the round that found them differing): its index missed
    rows (or the table changed since); the ranges are then read again in full."""
    for unit, count in zip(group, counts, strict=True):
        if unit.top or not unit.counts:
            continue
        place = 0 if ref.target is None else 1 + unit.targets.index(ref.target)
        if count != unit.counts[place]:
            return True
    return False


def _in_full(spans: Sequence[Span]) -> list[Span]:
    return [span.model_copy(update={"narrow": False}) for span in spans]


def _compare(unit: Unit, target: int, source: Hashes, listed: Hashes, twice: Repeats) -> list[Key]:
    """Records the unit's missing and extra keys on one target; returns its differing keys."""
    missing, extra, differing = compare_listed(source, listed, twice)
    unit.found += [Found(target, DiffKind.MISSING, k) for k in missing]
    unit.found += [Found(target, DiffKind.EXTRA, k) for k in extra]
    return differing


def compare_listed(source: Hashes, listed: Hashes, twice: Repeats) -> tuple[list[Key], list[Key], list[Key]]:
    """Missing, extra and differing keys (each sorted) of one target's listed rows against the
    source's. A key the target holds more than once: its surplus rows are extra (and the key
    differs unless one of its rows equals the source's)."""
    missing = [k for k in source if k not in listed]
    extra = [k for k in listed if k not in source or k in twice]
    differing = [k for k, h in source.items() if k in listed and listed[k] != h and h not in twice.get(k, ())]
    return [list(k) for k in sorted(missing)], [list(k) for k in sorted(extra)], [list(k) for k in sorted(differing)]


def confirmed(sides: Sides, target: int, keys: list[Key]) -> list[Key]:
    """Of keys whose JSON was hashed as spelled, those that differ by meaning too. A key a target
    holds more than once differs only if none of its rows equals the source's."""
    fetched = sides.fetch_groups(target, keys)
    source_plan, target_plan = sides.plan(SOURCE), sides.plan(SideRef(target))
    out = []
    for key in keys:
        src_row, tgt_rows = fetched.get(tuple(key), (None, []))
        if src_row is None or all(differing_columns(source_plan, target_plan, src_row, row) for row in tgt_rows):
            out.append(key)
    return out
