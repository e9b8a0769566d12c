"""The step-wise diff engine's front: it plans a table on its sides, chooses a strategy, and
steps, saves, resumes and reports. It knows nothing of AWS or of how a connector reaches its
database.

Progress lives in a small JSON-serialisable DiffState. `step(state, deadline)` does whole rounds of
work until the deadline and returns the new state; a round's effects are applied to the state only
once all its queries have answered, so stopping anywhere and resuming from the last state gives the
same result, with no row counted twice or skipped. docs/algorithm.md tells the whole story."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence

from ..errors import InputError, StateError, TransientDatabaseError
from ..models import (
    DiffKind,
    DiffOptions,
    DiffResult,
    DiffState,
    Sample,
    SourceResult,
    TableSchema,
    TargetResult,
    TargetTally,
)
from ..outages import wait_out
from ..plans import build_plans, item_plans
from .keys import sort_key
from .narrowing import Narrowing
from .scan_lookup import ScanLookup
from .sides import SOURCE, ConnectorFactory, Side, SideRef, Sides
from .strategy import DifferenceCallback, Strategy
from .tuning import Tuning
from .walk import RangeWalk


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
        workers = max(self.options.threads, self.options.segments) + 1
        opened: list[Side] = [Side(source, workers, "source")]
        try:
            for i, factory in enumerate(targets):
                opened.append(Side(factory, workers, f"target{i + 1}"))
            self.sides = Sides(opened[0], opened[1:], self.source_label, self.target_labels)
            self.strategy: Strategy = self._prepare()
        except BaseException:
            for side in opened:
                side.close()
            raise

    def _prepare(self) -> Strategy:
        sides = self.sides
        futures = [side.submit("describe", self.table) for side in sides.all()]
        schemas: list[TableSchema] = [f.result() for f in futures]
        items = self.items = not all(s.key_ordered for s in schemas)
        plan = item_plans if items else build_plans
        plans = plan(self.table, schemas, self.options, self.target_labels)
        sides.source_plan, sides.target_plans = plans.source, plans.targets
        self.source_plan, self.target_plans = plans.source, plans.targets
        self.key_names, self.column_names = plans.key_names, plans.column_names
        self.target_only_columns = plans.target_only_columns
        # A side whose key order is not its index order scans for every range query; the walk's
        # chunk bounds come from a side whose index serves them, and differing ranges are listed
        # in large batches so that such a side is scanned as few times as possible.
        self.any_scan_bound = any(plans.scan_bound)
        walker = SOURCE
        if plans.scan_bound[-1]:
            walker = next(
                (SideRef(t) for t in range(len(plans.targets)) if not plans.scan_bound[t] and plans.unique_key[t]),
                SOURCE,
            )
        if items:
            # A store that cannot answer key-ordered ranges is compared by scan and lookup; a SQL
            # side of such a comparison answers as a store of items (dynamodb/sql_items.py).
            from ..dynamodb.sql_items import SqlItems

            for side, schema in zip(sides.all(), schemas, strict=True):
                if schema.key_ordered:
                    side.adapt(SqlItems)
            return ScanLookup(sides, self.options, schemas[0].estimated_rows)
        key = self.options.key
        if self._validate_key and key and list(key) != list(schemas[0].primary_key):
            # The key must identify the source's rows; a target's duplicates and NULLs are drift.
            sides.source.call("validate_key", self.source_plan)
        self.tuning = Tuning(self.options, self.any_scan_bound)
        narrowing = Narrowing(sides, self.options, self.tuning, self.key_names, plans.verify_json)
        return RangeWalk(sides, self.options, narrowing, walker)

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
        if opts.skip_extra:  # the targets are not scanned: a state begun either way resumes only so
            ident["skip_extra"] = True
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def initial_state(self) -> DiffState:
        opts = self.options
        return DiffState(
            fingerprint=self.fingerprint(),
            cursor=opts.hi if opts.reverse else opts.lo,
            chunk_size=opts.chunk_size,
            targets=[TargetTally(target_only_columns=names) for names in self.target_only_columns],
            key_range=self.strategy.key_range(),
        )

    def check_state(self, state: DiffState) -> None:
        if state.fingerprint != self.fingerprint() or len(state.targets) != len(self.target_labels):
            raise StateError("the saved state belongs to a different diff (table, URLs or options changed)")

    def step(self, state: DiffState, deadline: float, on_difference: DifferenceCallback | None = None) -> DiffState:
        """Advances until time.monotonic() passes `deadline` or the diff is done; always does at
        least one round of work, so any deadline makes progress.

        A round's effects apply only once all its queries have answered. When a transient
        database error breaks a round, the rounds done before it are returned (each difference
        reported once); when it breaks the first, it is raised and the caller's state stands."""
        self.check_state(state)
        state = _copy_state(state)
        self.strategy.step(state, deadline, on_difference)
        return state

    # --- results ------------------------------------------------------------------------------
    def samples(self, state: DiffState, limit: int) -> list[list[Sample]]:
        """Up to `limit` differences per target with the differing values on each side."""
        return self.strategy.samples(state, limit)

    def result(self, state: DiffState) -> DiffResult:
        wanted = self.options.sample
        samples = self.samples(state, wanted) if wanted > 0 else [[] for _ in self.target_labels]
        return DiffResult(
            table=self.table,
            source=SourceResult(url=self.source_label, rows=state.source_rows),
            targets=[
                TargetResult(
                    url=self.target_labels[i],
                    rows_compared=tally.rows_compared,
                    missing=sorted(tally.missing, key=sort_key),
                    extra=sorted(tally.extra, key=sort_key),
                    differing=sorted(tally.differing, key=sort_key),
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
        self.strategy.drop_prefetch()
        self.sides.reconnect()

    def close(self) -> None:
        self.sides.close()

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
            "scan": state.scan.model_copy(deep=True) if state.scan is not None else None,
        }
    )


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
