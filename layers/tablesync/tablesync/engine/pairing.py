"""Pairing the scans of a source and a target that both have to be scanned (DynamoDB, or a SQL
table against one), without holding either table in memory.

Each side's scanned (key, item hash) pairs wait, unpaired, until the same key comes from the other
side's scan: then the two hashes are compared, and both are forgotten. Where the two scans return
keys in the same order (two DynamoDB tables with the same key schema, read with the same number of
segments, come back in the order of DynamoDB's hash of the partition key), a key waits for about a
page, and the diff reads each table once: the floor. Where they do not (a SQL table walked in key
order), the unpaired keys pile up to a cap, and the oldest beyond it are looked up on the other
side by key, as a scan-and-lookup diff does: the answer never depends on the order, only the cost.

The rule that makes every key counted once, whatever is paired and whatever is looked up:
- a source key is settled once: paired with the target's (compared), or looked up in the target
  (missing, or compared);
- a target key is settled once: paired with the source's, or looked up in the source (extra when
  the source lacks it; when the source holds it, the source key's own settling compares them).

Pure: no I/O. The scan-and-lookup strategy (scan_lookup.py) does the reads and the lookups."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..models import DiffKind, Key, UnpairedKeys

Waiting = dict[tuple[Any, ...], tuple[Key, int, int]]  # key -> (key, item hash, segment it came from)


@dataclass
class Pairing:
    """One target's unpaired keys on both sides, during a round (loaded from and saved to the
    state's UnpairedKeys)."""

    source: Waiting = field(default_factory=dict)
    target: Waiting = field(default_factory=dict)
    differing: list[Key] = field(default_factory=list)

    @classmethod
    def load(cls, saved: UnpairedKeys) -> Pairing:
        return cls(
            source={tuple(k): (k, h, s) for k, h, s in saved.source},
            target={tuple(k): (k, h, s) for k, h, s in saved.target},
        )

    def save(self) -> UnpairedKeys:
        return UnpairedKeys(source=list(self.source.values()), target=list(self.target.values()))

    def add_source(self, segment: int, pairs: Iterable[tuple[Key, int]]) -> None:
        self._add(self.source, self.target, segment, pairs)

    def add_target(self, segment: int, pairs: Iterable[tuple[Key, int]]) -> None:
        self._add(self.target, self.source, segment, pairs)

    def _add(self, mine: Waiting, theirs: Waiting, segment: int, pairs: Iterable[tuple[Key, int]]) -> None:
        for key, item_hash in pairs:
            at = tuple(key)
            partner = theirs.pop(at, None)
            if partner is None:
                mine[at] = (key, item_hash, segment)
            elif partner[1] != item_hash:
                self.differing.append(key)

    @staticmethod
    def take_oldest(waiting: Waiting, keep: int) -> list[tuple[Key, int]]:
        """Removes and returns the oldest waiting keys beyond `keep` (all of them for keep=0):
        they are to be looked up on the other side."""
        over = len(waiting) - keep
        if over <= 0:
            return []
        oldest = [at for _, at in zip(range(over), waiting, strict=False)]
        return [(waiting[at][0], waiting.pop(at)[1]) for at in oldest]

    @staticmethod
    def waiting_by_segment(waiting: Waiting, segments: int) -> list[int]:
        counts = [0] * segments
        for _, _, segment in waiting.values():
            if segment < segments:
                counts[segment] += 1
        return counts


def settle_source(keys: list[tuple[Key, int]], held: dict[tuple[Any, ...], int]) -> list[tuple[DiffKind, Key]]:
    """Source keys looked up in the target (`held`: the target's hash of each key it holds)."""
    found: list[tuple[DiffKind, Key]] = []
    for key, item_hash in keys:
        there = held.get(tuple(key))
        if there is None:
            found.append((DiffKind.MISSING, key))
        elif there != item_hash:
            found.append((DiffKind.DIFFERING, key))
    return found


def settle_target(keys: list[tuple[Key, int]], held: dict[tuple[Any, ...], int]) -> list[tuple[DiffKind, Key]]:
    """Target keys looked up in the source: extra where the source lacks them (where it holds
    them, the source key's own settling compares them)."""
    return [(DiffKind.EXTRA, key) for key, _ in keys if tuple(key) not in held]


def paced(
    source_waiting: list[list[int]],
    target_waiting: list[list[int]],
    source_done: list[bool],
    targets_done: list[list[bool]],
    lead: int,
) -> tuple[list[bool], list[list[bool]]]:
    """Which segments to read this round, so that the scans of the two sides keep pace (a
    segment far ahead of its partner waits a round while the partner catches up; its keys would
    otherwise pile up unpaired). `source_waiting[t][i]`: source keys of segment i waiting for
    target t; `target_waiting[t][i]`: target t's keys of segment i waiting for the source.
    Returns (read source segment i, read target t's segment i); never holds back everything."""
    segments = len(source_done)
    read_source = [not done for done in source_done]
    read_targets = [[not done for done in target] for target in targets_done]
    for t, target_done in enumerate(targets_done):
        for i in range(segments):
            mine, theirs = source_waiting[t][i], target_waiting[t][i]
            if read_source[i] and not target_done[i] and mine > lead and theirs * 2 < mine:
                read_source[i] = False  # the source's segment is ahead of this target's
            if read_targets[t][i] and not source_done[i] and theirs > lead and mine * 2 < theirs:
                read_targets[t][i] = False  # this target's segment is ahead of the source's
    if not any(read_source) and not any(any(r) for r in read_targets):
        return [not d for d in source_done], [[not d for d in target] for target in targets_done]
    return read_source, read_targets
