"""Replication of append-only tables (`tablesync replicate`, the app's replicate mode): each
destination's watermark is its own highest key; the source's rows above it are copied in key order,
a batch a transaction, through the bulk copy's fast paths (bulk_copy.py), destinations apart (one
that fails is left for the next round, the others go on, and it catches up when it is back). With
a group column, rows sharing its value (a source transaction) are never split between batches.

Nothing is kept but the destinations' own rows: a replication stopped at any moment (kill -9)
starts again from each destination's highest key, with nothing copied twice or skipped.

Start-up validations, per destination, before anything is written: it is not the source (nor
another destination); its table has the replicated columns; when it holds rows, its first row is
the source's first row; it holds no more rows, and no higher key, than the source."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, cast

from ..copy_models import CopyOptions, CopyState
from ..errors import TablesyncError
from ..models import DiffOptions, Model
from ..plans import describe_plans
from .bulk_copy import Copier
from .keys import differing_columns
from .sides import ConnectorFactory


class Validation(Model):
    destination: str
    check: str
    ok: bool
    detail: str = ""


class DestinationStatus(Model):
    url: str
    rows_copied: int
    lag_rows: int | None  # the source's rows above its watermark when the round ended (None: unknown)
    rows_per_second: float
    error: str | None = None


class ReplicateResult(Model):
    table: str
    source: str
    destinations: list[DestinationStatus]
    rounds: int
    duration_s: float


def replicate_options(
    key: list[str] | None, columns: list[str] | None, ignore: list[str], batch: int, group_column: str | None
) -> CopyOptions:
    return CopyOptions(
        key=key,
        columns=columns,
        ignore=ignore,
        batch=batch,
        existing="append",  # the destination's own rows are the watermark
        verify=False,
        group_column=group_column,
        independent=True,
    )


class Replicator:
    def __init__(
        self,
        table: str,
        source: ConnectorFactory,
        destinations: Sequence[ConnectorFactory],
        options: CopyOptions,
        *,
        source_label: str,
        destination_labels: Sequence[str],
    ) -> None:
        self.table = table
        self.options = options
        self.source_factory = source
        self.destination_factories = list(destinations)
        self.source_label = source_label
        self.labels = list(destination_labels)
        self.copier = Copier(
            table, source, destinations, options, source_label=source_label, target_labels=destination_labels
        )
        self.stop_requested = False
        self.rounds = 0
        self.started = time.monotonic()

    # --- start-up validations --------------------------------------------------------------------
    def validate(self, same_location: Sequence[bool]) -> list[Validation]:
        """`same_location[i]`: destination i is the source's own table (told from the URLs)."""
        out: list[Validation] = []
        for i, label in enumerate(self.labels):
            if same_location[i]:
                out.append(Validation(destination=label, check="distinct", ok=False, detail="it is the source itself"))
                continue
            if label in self.labels[:i]:
                detail = "it is named twice"
                out.append(Validation(destination=label, check="distinct", ok=False, detail=detail))
                continue
            out.append(Validation(destination=label, check="distinct", ok=True))
            out += self._validate_one(i, label)
        return out

    def _validate_one(self, i: int, label: str) -> list[Validation]:
        source = cast(Any, self.source_factory())  # a SQL connector: Connector and BulkCopy
        destination = cast(Any, self.destination_factories[i]())
        try:
            o = self.options
            try:
                plans = describe_plans(
                    self.table,
                    source,
                    [destination],
                    DiffOptions(key=o.key, columns=o.columns, ignore=o.ignore),
                    [label],
                )
            except TablesyncError as exc:
                return [Validation(destination=label, check="table", ok=False, detail=str(exc))]
            checks = [Validation(destination=label, check="table", ok=True)]
            splan, dplan = plans.source, plans.targets[0]
            theirs, ours = destination.key_range(dplan), source.key_range(splan)
            if theirs.min_key is None:
                return [*checks, Validation(destination=label, check="first row", ok=True, detail="empty")]
            first = [theirs.min_key]
            src_rows, dst_rows = source.fetch_rows(splan, first), destination.fetch_rows(dplan, first)
            same_first = theirs.min_key == ours.min_key and bool(src_rows) and bool(dst_rows)
            if same_first:
                src = [src_rows[0].get(c.name) for c in splan.columns]
                dst = [dst_rows[0].get(c.name) for c in dplan.columns]
                same_first = not differing_columns(splan, dplan, src, dst)
            detail = "" if same_first else f"its first row (key {theirs.min_key}) is not the source's first row"
            checks.append(Validation(destination=label, check="first row", ok=same_first, detail=detail))
            counts = (source.count_rows(splan, None), destination.count_rows(dplan, None))
            above = counts[1] > counts[0] or (ours.max_key is None or list(theirs.max_key or []) > list(ours.max_key))
            detail = (
                f"it holds {counts[1]:,} rows up to key {theirs.max_key}; the source {counts[0]:,} up to {ours.max_key}"
                if above
                else ""
            )
            checks.append(Validation(destination=label, check="rows and highest key", ok=not above, detail=detail))
            return checks
        finally:
            source.close()
            destination.close()

    # --- replicating ------------------------------------------------------------------------------
    def start(self, state: CopyState | None = None) -> CopyState:
        return self.copier.prepare(state or self.copier.initial_state())

    def catch_up(
        self, state: CopyState, *, step_seconds: float = 1.0, on_state: Callable[[CopyState], None] | None = None
    ) -> CopyState:
        """Copies every destination up to the source's end (as it is now), or until a stop is
        requested (between batches)."""
        state = state.model_copy(deep=True)
        for progress in state.targets:
            progress.done = False  # rows may have come since the last round
            progress.error = None
        state = self.copier.reconciled(state)  # each destination from its own highest key
        self.copier.should_stop = lambda: self.stop_requested
        while not state.done and not self.stop_requested:
            state = self.copier.step(state, time.monotonic() + step_seconds)
            if on_state is not None:
                on_state(state)
        self.rounds += 1
        return state

    def result(self, state: CopyState) -> ReplicateResult:
        elapsed = max(1e-9, time.monotonic() - self.started)
        errors = [t.error for t in state.targets]
        state = self.copier.reconciled(state.model_copy(deep=True))  # where each destination is now
        for progress, error in zip(state.targets, errors, strict=True):
            progress.error = progress.error or error
        lags = self._lags(state)
        return ReplicateResult(
            table=self.table,
            source=self.source_label,
            destinations=[
                DestinationStatus(
                    url=label,
                    rows_copied=t.rows,
                    lag_rows=lag,
                    rows_per_second=round(t.rows / elapsed, 1),
                    error=t.error,
                )
                for label, t, lag in zip(self.labels, state.targets, lags, strict=True)
            ],
            rounds=self.rounds,
            duration_s=round(elapsed, 3),
        )

    def _lags(self, state: CopyState) -> list[int | None]:
        """The source's rows from each destination's next position (0 when caught up)."""
        plan = self.copier.source_plan
        out: list[int | None] = []
        for progress in state.targets:
            if progress.error is not None or plan is None:
                out.append(None)
            else:
                out.append(0 if progress.done else self.copier.source.call("count_rows", plan, progress.lo))
        return out

    def close(self) -> None:
        self.copier.close()

    def __enter__(self) -> Replicator:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
