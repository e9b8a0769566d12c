"""Rows with a NULL in a key column fall in no key range and in no key's bucket, so neither the
walk nor the hash buckets see them: on a side that may hold them they are listed once. A target's
are extra rows; the source's make the key unusable (--key must identify every row)."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import KeyColumnError
from ..models import DiffKind, DiffState, Key
from .sides import SOURCE, SideRef, Sides
from .strategy import DifferenceCallback


def list_null_keys(
    sides: Sides, state: DiffState, key_names: Sequence[str], on_difference: DifferenceCallback | None
) -> bool:
    """Lists them (in place on `state`); whether any side was asked."""
    state.null_keys_listed = True
    refs = [SideRef(t) for t, plan in enumerate(sides.target_plans) if any(c.nullable for c in plan.key)]
    if any(c.nullable for c in sides.plan(SOURCE).key):
        refs.append(SOURCE)
    jobs = [(ref, sides.submit(ref, "null_keys")) for ref in refs]
    answers: list[tuple[SideRef, list[Key]]] = [(ref, job.result()) for ref, job in jobs]  # all, then apply
    for ref, keys in answers:
        if ref.target is None:
            if keys:
                names = ", ".join(key_names)
                advice = "give --key columns that identify every row"
                raise KeyColumnError(
                    f"key {names} has NULL values on the source ({keys[0]}): {advice}",
                    redacted=f"key {names} has NULL values on the source: {advice}",
                )
            continue
        for key in keys:
            state.targets[ref.target].extra.append(key)
            if on_difference is not None:
                on_difference(ref.target, DiffKind.EXTRA, key)
    return bool(refs)
