"""The bulk copy strategy (`tablesync copy`, the app's InitTable): a source table's rows copied
into one or more targets in key order, a batch at a time, each batch one transaction on each
target through its fastest load path (dialects/loader.py), the next batch read while the current
one is written. Step-wise and resumable like the diff: the state is where each target's next batch
starts; and because rows are written in key order, a target's own highest key says how far it got,
so a copy stopped at any moment (kill -9 between a commit and the save of the state) resumes with
no row written twice and none skipped. Targets may be created first from the source's schema
(portable types: dialects/portable.py), emptied, or given the source's new columns."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from ..copy_models import CopyOptions, CopyResult, CopyState, CopyTargetResult, TargetCopy
from ..dialects.portable import PortableType
from ..errors import DatabaseError, InputError, SchemaError, StateError, TransientDatabaseError
from ..models import Column, DiffOptions, Key, Span, TablePlan, TableSchema
from ..outages import wait_out
from ..plans import build_plans
from .sides import ConnectorFactory, Side

# A batch's span and its rows, by the form each target loads: a bulk format's chunks (dialects/
# loader.py: rendered by the source database, loaded as they are), or None: canonical texts.
Payload = tuple[list[Any], int]  # (chunks or rows, how many rows)
Batch = tuple[Span, dict[str | None, Payload]]


class Copier:
    def __init__(
        self,
        table: str,
        source: ConnectorFactory,
        targets: Sequence[ConnectorFactory],
        options: CopyOptions | None = None,
        *,
        source_label: str = "source",
        target_labels: Sequence[str] | None = None,
    ) -> None:
        if not targets:
            raise InputError("give at least one target")
        self.table = table
        self.options = options or CopyOptions()
        self.source_label = source_label
        self.target_labels = list(target_labels or [f"target{i + 1}" for i in range(len(targets))])
        # One connection a side: the source reads batches in key order, each target writes its own.
        self.source = Side(source, 1, "source")
        self.targets = [Side(f, 1, f"target{i + 1}") for i, f in enumerate(targets)]
        self.source_plan: TablePlan | None = None
        self.target_plans: list[TablePlan] = []
        self._ahead: tuple[Key | None, frozenset[str | None], Future[Batch]] | None = None
        self._formats: list[str | None] = []  # how each target's batches travel (None: canonical texts)
        self._items: list[bool] = []  # which targets are stores of items (DynamoDB)
        self.should_stop: Callable[[], bool] = lambda: False  # asked between batches (replicate's signals)

    # --- state ------------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        o = self.options
        ident = {
            "copy": self.table,
            "source": self.source_label,
            "targets": self.target_labels,
            "key": o.key,
            "columns": o.columns,
            "ignore": o.ignore,
            "where": o.where,
        }
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:16]

    def initial_state(self) -> CopyState:
        return CopyState(fingerprint=self.fingerprint(), targets=[TargetCopy() for _ in self.targets])

    def check_state(self, state: CopyState) -> None:
        if state.fingerprint != self.fingerprint() or len(state.targets) != len(self.targets):
            raise StateError("the saved state belongs to a different copy (table, URLs or options changed)")

    # --- preparing the targets --------------------------------------------------------------------
    def prepare(self, state: CopyState) -> CopyState:
        """The plans; on a fresh state, the targets made ready (created, emptied, evolved, their
        starting points found); on a resumed one, each target's position checked against its own
        rows. Nothing is written to a target before every target has been checked."""
        self.check_state(state)
        state = state.model_copy(deep=True)
        source_schema: TableSchema = self.source.call("describe", self.table)
        wanted = self._wanted(source_schema)
        schemas = []
        for i, side in enumerate(self.targets):
            schemas.append(self._target_schema(i, side, source_schema, wanted, state.targets[i], state.prepared))
        # A store of items (DynamoDB) takes the source's rows as items of the same attributes: it
        # has no columns to plan, and no key order (its writes are idempotent puts instead).
        self._items = [not schema.key_ordered for schema in schemas]
        ordered = [
            (schema, label)
            for schema, label, items in zip(schemas, self.target_labels, self._items, strict=True)
            if not items
        ]
        plans = build_plans(
            self.table,
            [source_schema, *(s for s, _ in ordered)] if ordered else [source_schema, source_schema],
            self._diff_options(),
            [label for _, label in ordered] or ["the copy"],
        )
        self.source_plan = plans.source
        sql_plans = iter(plans.targets)
        self.target_plans = [plans.source if items else next(sql_plans) for items in self._items]
        readable: tuple[str, ...] = self.source.submit_call(
            lambda c: tuple(getattr(c, "bulk_read_formats", ()))
        ).result()
        loads = [
            side.submit_call(lambda c: tuple(getattr(c, "bulk_write_formats", ()))).result() for side in self.targets
        ]
        self._formats = [next((f for f in formats if f in readable), None) for formats in loads]
        if not state.prepared:
            self._check_existing(state)
            state.prepared = True
        return self.reconciled(state)

    def _diff_options(self) -> DiffOptions:
        o = self.options
        return DiffOptions(key=o.key, columns=o.columns, ignore=o.ignore, where=o.where)

    def _wanted(self, source: TableSchema) -> list[str]:
        return wanted_columns(self.table, source, self._diff_options())

    def _target_schema(
        self, i: int, side: Side, source: TableSchema, wanted: list[str], progress: TargetCopy, prepared: bool
    ) -> TableSchema:
        label = self.target_labels[i]
        if not side.call("table_exists", self.table):
            if prepared and progress.created is None:
                raise SchemaError(f"table {self.table!r} is gone from {label} since the copy began")
            if not self.options.create:
                raise SchemaError(f"table {self.table!r} does not exist in {label} (--create creates it)")
            columns = [(c, self.source.call("portable_type", c)) for c in source.columns if c.name in wanted]
            key = list(self.options.key or source.primary_key)
            progress.created = side.call("create_table", self.table, columns, key)
        if self.options.evolve_schema:

            def portable(column: Column) -> PortableType:
                return self.source.call("portable_type", column)  # type: ignore[no-any-return]

            added = side.submit_call(lambda conn: add_missing_columns(source, portable, conn, self.table, wanted))
            progress.added_columns += added.result()
        schema: TableSchema = side.call("describe", self.table)
        return schema

    def _check_existing(self, state: CopyState) -> None:
        """A target table that holds rows is refused, emptied (replace) or continued after its
        highest key (append); every target is checked before any is changed."""
        held = [side.call("has_rows", self.table) for side in self.targets]
        mode = self.options.existing
        for i, has_rows in enumerate(held):
            if has_rows and mode != "refuse" and self._items[i]:
                raise InputError(
                    f"{self.target_labels[i]}: --append and --replace need a SQL target (a DynamoDB table has no "
                    "highest key, and is not emptied by tablesync)"
                )
            if has_rows and mode == "refuse" and state.targets[i].created is None:
                raise InputError(
                    f"{self.target_labels[i]} already holds rows in {self.table}: give --append (copy the rows "
                    "after its highest key) or --replace (delete its rows first)"
                )
        for i, has_rows in enumerate(held):
            progress = state.targets[i]
            if has_rows and mode == "replace":
                self.targets[i].call("truncate", self.table)
                progress.replaced = True
            elif has_rows and mode == "append":
                last = self.targets[i].call("key_range", self.target_plans[i]).max_key
                if last is not None:
                    progress.lo = self.source.call("key_after", self.source_plan, last)
                    progress.start = progress.lo
                    progress.done = progress.lo is None

    def reconciled(self, state: CopyState) -> CopyState:
        """Each target's position moved past its own highest key (in place): a batch committed
        just before a crash (before its state was saved) is not written again."""
        for i, progress in enumerate(state.targets):
            if progress.done or self._items[i]:  # a store of items: a batch put twice is put once
                continue
            try:
                last = self.targets[i].call("key_range", self.target_plans[i]).max_key
            except (TransientDatabaseError, DatabaseError) as exc:
                if not self.options.independent:
                    raise
                progress.error = str(exc)
                self.targets[i].reconnect()
                continue
            if last is not None and (progress.lo is None or list(last) >= list(progress.lo)):
                progress.lo = self.source.call("key_after", self.source_plan, last)
                progress.done = progress.lo is None
        return state

    # --- copying ----------------------------------------------------------------------------------
    def step(self, state: CopyState, deadline: float) -> CopyState:
        """Copies batches until the deadline passes (at least one) or every target is done. A
        batch's effects apply once every target of it has committed; a transient error raises
        with the state as it was (the next step finds what committed from the targets' rows)."""
        state = state.model_copy(deep=True)
        for progress in state.targets:
            progress.error = None  # a destination that failed last time is tried again
        state = self.reconciled(state)
        first = True
        while not state.done and (first or time.monotonic() < deadline) and not self.should_stop():
            first = False
            started = time.monotonic()
            lo = _lowest([t.lo for t in state.targets if not t.done and t.error is None])
            group = [i for i, t in enumerate(state.targets) if not t.done and t.error is None and t.lo == lo]
            formats = frozenset(self._formats[i] for i in group)
            span, payloads = self._batch(lo, formats).result()
            if span.hi is not None:
                self._ahead = (span.hi, formats, self._read(span.hi, formats))  # read while this batch is written
            loads = []
            for i in group:
                data, _ = payloads[self._formats[i]]
                fmt = self._formats[i]
                if fmt is None:
                    loads.append(self.targets[i].submit("load_rows", self.target_plans[i], data))
                else:
                    loads.append(self.targets[i].submit("load_bulk", self.target_plans[i], fmt, data))
            for i, load in zip(group, loads, strict=True):
                try:
                    load.result()
                except (TransientDatabaseError, DatabaseError) as exc:
                    if not self.options.independent:
                        raise
                    state.targets[i].error = str(exc)  # rolled back; the others go on
                    self.targets[i].reconnect()
            for i in group:
                progress = state.targets[i]
                if progress.error is not None:
                    continue
                rows = payloads[self._formats[i]][1]
                progress.lo, progress.done, progress.rows = span.hi, span.hi is None, progress.rows + rows
            state.batches += 1
            state.elapsed_s += time.monotonic() - started
        return state

    def _batch(self, lo: Key | None, formats: frozenset[str | None]) -> Future[Batch]:
        ahead, self._ahead = self._ahead, None
        if ahead is not None and ahead[0] == lo and ahead[1] == formats:
            return ahead[2]
        return self._read(lo, formats)

    def _read(self, lo: Key | None, formats: frozenset[str | None]) -> Future[Batch]:
        """The next batch's bounds (one index-ordered seek), then its rows in each form wanted."""
        plan, size = self.source_plan, self.options.batch
        assert plan is not None

        group = self.options.group_column

        def read(conn: Any) -> Batch:
            span = conn.chunk_bounds(plan, lo, size, 1, False)
            if group is not None and span.hi is not None:
                span = Span(lo=span.lo, hi=conn.group_end(plan, span.lo, span.hi, group))
            payloads: dict[str | None, Payload] = {}
            for fmt in formats:
                if fmt is None:
                    rows = conn.read_rows(plan, span.lo, span.hi)
                    payloads[None] = (rows, len(rows))
                else:
                    payloads[fmt] = conn.read_bulk(plan, span.lo, span.hi, fmt)
            return span, payloads

        return self.source.submit_call(read)

    def run(
        self,
        state: CopyState | None = None,
        *,
        step_seconds: float = 1.0,
        on_state: Callable[[CopyState], None] | None = None,
        max_outage: float = 0.0,
        on_outage: Callable[[float, TransientDatabaseError], None] | None = None,
    ) -> CopyState:
        fresh = state or self.initial_state()
        state = wait_out(lambda: self.prepare(fresh), max_outage, on_outage=on_outage, reopen=self.reconnect)
        if on_state is not None:
            on_state(state)
        while not state.done:
            state = wait_out(
                lambda last=state: self.step(last, time.monotonic() + step_seconds),  # type: ignore[misc]
                max_outage,
                on_outage=on_outage,
                reopen=self.reconnect,
            )
            if on_state is not None:
                on_state(state)
        return state

    def reconnect(self) -> None:
        self._ahead = None
        self.source.reconnect()
        for side in self.targets:
            side.reconnect()

    # --- results ----------------------------------------------------------------------------------
    def result(self, state: CopyState) -> CopyResult:
        total = sum(t.rows for t in state.targets)
        return CopyResult(
            table=self.table,
            source=self.source_label,
            targets=[
                CopyTargetResult(
                    url=label,
                    rows_copied=t.rows,
                    created=t.created,
                    added_columns=t.added_columns,
                    replaced=t.replaced,
                )
                for label, t in zip(self.target_labels, state.targets, strict=True)
            ],
            complete=state.done,
            duration_s=round(state.elapsed_s, 3),
            rows_per_second=round(total / len(state.targets) / state.elapsed_s, 1) if state.elapsed_s else 0.0,
        )

    def verify_options(self, state: CopyState) -> DiffOptions:
        """The diff that proves the copy: the copied columns, from where the copy began (after the
        rows an --append found) to the end."""
        starts = {json.dumps(t.start) for t in state.targets}
        lo = state.targets[0].start if len(starts) == 1 else None
        return self._diff_options().model_copy(update={"lo": lo})

    def close(self) -> None:
        self.source.close()
        for side in self.targets:
            side.close()

    def __enter__(self) -> Copier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wanted_columns(table: str, source: TableSchema, options: DiffOptions) -> list[str]:
    """The source's columns that a copy carries, or a diff compares (its key first)."""
    plan = build_plans(table, [source, source], options, ["the copy"]).source
    return [c.name for c in [*plan.key, *plan.columns]]


def add_missing_columns(
    source: TableSchema, portable: Callable[[Column], PortableType], target: Any, table: str, wanted: Sequence[str]
) -> list[str]:
    """--evolve-schema: each of the source's `wanted` columns the target's table lacks is added to
    it (nullable, its portable type mapped: the rows there get NULL, which a diff then reports and
    a repair fills); returns their names. Any other difference of schema stays an error."""
    schema: TableSchema = target.describe(table)
    added = []
    for column in source.columns:
        if column.name in wanted and schema.column(column.name) is None:
            target.add_column(table, column, portable(column))
            added.append(column.name)
    return added


def _lowest(keys: list[Key | None]) -> Key | None:
    """The lowest position: None (the table's start) before any key."""
    if any(k is None for k in keys):
        return None
    return min(keys, key=lambda k: list(k or []))
