"""Keys as the engine holds them: their order, the points inside a range, and rows by key."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from ..models import Key, Kind, TablePlan
from ..normalize import canonical_json


def inner_points(lo: Key | None, hi: Key | None, points: Sequence[Key]) -> list[Key]:
    """The ascending points strictly inside (lo, hi), each once."""
    out: list[Key] = []
    for point in points:
        if (lo is None or point > lo) and (hi is None or point < hi) and (not out or point > out[-1]):
            out.append(point)
    return out


def walk_key(lo: Key | None, reverse: bool) -> tuple[Any, ...]:
    """Sorts ranges by their lower bound in walk order. Python orders str by code point, which is
    UTF-8 byte order, the databases' key order."""
    if reverse:
        return (lo is None, Descending(lo))
    return (lo is not None, lo or [])


def sort_key(key: Key) -> tuple[Any, ...]:
    """Orders reported keys: integers before texts, each in its own order."""
    return tuple((0, v) if isinstance(v, int) else (1, str(v)) for v in key)


class Descending:
    """Reverses the order of keys (for walking newest first)."""

    def __init__(self, key: Key | None) -> None:
        self.key = key or []

    def __lt__(self, other: Descending) -> bool:
        return bool(self.key > other.key)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Descending) and self.key == other.key

    __hash__ = None  # type: ignore[assignment]


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
