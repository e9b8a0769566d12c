"""The seam between the Differ and the ways of comparing a table. A strategy advances a DiffState
by whole rounds; the Differ plans, saves, resumes and reports whatever the strategy.

RangeWalk (walk.py) is for sides that answer key-ordered range queries with checksums computed in
the database (the SQL dialects). ScanLookup (scan_lookup.py) is for stores that cannot range scan
in key order (DynamoDB: hash-partitioned): the sides' scans, as (key, hash) pairs, looked up by
key on the other sides. The Differ chooses from the sides' schemas (TableSchema.key_ordered)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from ..models import DiffState, Key, KeyRange, Sample

DifferenceCallback = Callable[[int, str, Key], None]


class Strategy(Protocol):
    def key_range(self) -> KeyRange | None:
        """The key space to walk (kept in the state for progress), where it can be told."""
        ...

    def step(self, state: DiffState, deadline: float, on_difference: DifferenceCallback | None) -> None:
        """Advances `state` in place by whole rounds until time.monotonic() passes `deadline`
        (at least one round); a round's effects apply only once all its queries have answered.
        A transient error in the first round is raised with `state` as it was."""
        ...

    def samples(self, state: DiffState, limit: int) -> list[list[Sample]]:
        """Per target, up to `limit` of its differences with the values that differ on each side."""
        ...

    def drop_prefetch(self) -> None:
        """Forgets queries started ahead (after an outage their connections are gone)."""
        ...
