"""CopyTable: the app's copy (mode copy: InitTable, for the targets that lack the table) and its
replication (mode replicate: every target gets the source's rows above its highest key), stepped
like ChecksumTable until the invocation's time is nearly up and checkpointed in DynamoDB between
invocations, so no table is too big for the 15-minute limit (engine/bulk_copy.py, replicate.py).

The source is read through its connector Lambda; a target is read through its own and written
through its writer Lambda, within the deployment's allow-list (a copy needs `create` to create a
table and `insert` to load it)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from .. import gc_policy
from ..connectors import Connector
from ..copy_models import CopyOptions, CopyState, CopyTargetResult
from ..engine.bulk_copy import Copier
from ..engine.replicate import Replicator, replicate_options
from ..errors import CheckpointDamagedError, InputError, LeaseHeldError, TransientDatabaseError
from ..models import DiffState
from .checking import _lease_held, _outage, _waiting
from .checkpoints import CheckpointStore, OwnerRunning
from .environment import ConnectorOpener, hides_values
from .events import ChecksumResult, TableItem
from .settings import CopyTableSettings

COPY_SUFFIX = "#copy"  # a table's copy is checkpointed apart from its check


class CopyTarget:
    """A target of the app's copy: read through its connector Lambda, written through its writer."""

    WRITES = frozenset({"create_table", "load_rows", "write_rows"})

    def __init__(self, reader: Connector, writer: Connector) -> None:
        self.reader, self.writer = reader, writer
        self.dialect = reader.dialect

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer if name in self.WRITES else self.reader, name)

    def close(self) -> None:
        self.reader.close()
        self.writer.close()


@hides_values
def copy_table(
    item: TableItem,
    remaining_seconds: float,
    settings: CopyTableSettings,
    store: CheckpointStore,
    connectors: ConnectorOpener,
    writers: ConnectorOpener,
    owner_running: OwnerRunning | None = None,
) -> ChecksumResult:
    """One invocation of a table's copy or replication: until its time is nearly up, the state
    saved as it goes. Status "done" hands the item on (a copy to its check), "continue" calls again,
    "waiting" waits out a database that is away (as ChecksumTable does)."""
    if item.mode not in ("copy", "replicate"):
        raise InputError(f"table {item.table}: mode {item.mode} has no copy")
    started = time.monotonic()
    lease = remaining_seconds + settings.lease_grace_seconds
    copy_id = item.item_id + COPY_SUFFIX
    try:
        checkpoint = store.acquire(item.run_id, copy_id, item.owner, lease, owner_running)
    except LeaseHeldError as held:
        return _lease_held(item, held, settings)
    if checkpoint.version == 0 and item.copy_invocations > 0:
        raise CheckpointDamagedError(f"checkpoint for the copy of {item.item_id} (run {item.run_id}) disappeared")
    saved = checkpoint.state.copying if checkpoint.state is not None else None
    progress = CopyState.model_validate(saved) if saved is not None else None
    if progress is not None and progress.done:
        return _copy_result(item, progress, checkpoint.invocations)
    deadline = started + remaining_seconds - settings.safety_margin_seconds
    holder = DiffState(fingerprint="copy", chunk_size=1, targets=[])
    try:
        names = progress.names if progress is not None else _copied_targets(item, connectors)
        if not names:  # every target has the table already: nothing to copy, on to the check
            done = CopyState(fingerprint="none", names=[], targets=[])
            store.save(checkpoint, holder.model_copy(update={"copying": done.model_dump(mode="json")}), lease)
            return _copy_result(item, done, checkpoint.invocations)
        with _engine(item, names, settings, connectors, writers) as engine:
            copier = engine.copier if isinstance(engine, Replicator) else engine
            if progress is None:
                if isinstance(engine, Replicator):
                    _validated(engine, item, names)
                progress = copier.prepare(copier.initial_state())
                progress.names = names
            else:
                progress = copier.prepare(progress)
            gc_policy.relax()
            while True:
                until = min(deadline, time.monotonic() + settings.save_every_seconds)
                progress = copier.step(progress, until)
                progress.names = names
                state = holder.model_copy(update={"copying": progress.model_dump(mode="json")})
                checkpoint = store.save(checkpoint, state, lease)
                if progress.done or time.monotonic() >= deadline:
                    break
    except TransientDatabaseError as exc:
        waiting = _outage(item, checkpoint, store, None, lease, exc, settings)
        waiting.copy_invocations = checkpoint.invocations
        return waiting
    return _copy_result(item, progress, checkpoint.invocations)


def _copied_targets(item: TableItem, connectors: ConnectorOpener) -> list[str]:
    """The targets a copy creates and loads (those that lack the table), or that a replication feeds (all)."""
    if item.mode == "replicate":
        return list(item.targets)
    names = []
    for name in item.targets:
        reader = connectors(name)
        try:
            if not reader.table_exists(item.table):  # type: ignore[attr-defined]
                names.append(name)
        finally:
            reader.close()
    return names


def _engine(
    item: TableItem,
    names: Sequence[str],
    settings: CopyTableSettings,
    connectors: ConnectorOpener,
    writers: ConnectorOpener,
) -> Copier | Replicator:
    targets = [lambda name=name: CopyTarget(connectors(name), writers(name)) for name in names]
    o = item.options
    if item.mode == "replicate":
        options = replicate_options(o.key, o.columns, o.ignore, settings.copy_batch, item.group_column)
        return Replicator(
            item.table,
            lambda: connectors(item.source),
            targets,
            options,
            source_label=item.source,
            destination_labels=list(names),
        )
    options = CopyOptions(
        key=o.key,
        columns=o.columns,
        ignore=o.ignore,
        where=o.where,
        batch=settings.copy_batch,
        create=True,
        verify=False,
    )
    return Copier(
        item.table,
        lambda: connectors(item.source),
        targets,
        options,
        source_label=item.source,
        target_labels=list(names),
    )


def _validated(replicator: Replicator, item: TableItem, names: Sequence[str]) -> None:
    """The replication's start-up validations: one that fails fails the table, naming the target."""
    same = [name == item.source for name in names]
    failed = next((v for v in replicator.validate(same) if not v.ok), None)
    if failed is not None:
        raise InputError(f"replicate {item.table} to {failed.destination}: {failed.check}: {failed.detail}")


def _copy_result(item: TableItem, progress: CopyState, invocations: int) -> ChecksumResult:
    """The item handed on, with what the copy did to each target; a copy that is done passes to
    the check (whose own invocations start from zero)."""
    result = _waiting(item)
    result.status = "done" if progress.done else "continue"
    result.copy_invocations = invocations
    result.copied = [
        CopyTargetResult(url=name, rows_copied=t.rows, created=t.created, error=t.error)
        for name, t in zip(progress.names, progress.targets, strict=True)
    ]
    return result
