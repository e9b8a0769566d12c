"""ChecksumTable and RecheckTable: one table item stepped until the invocation's time is nearly up,
its state checkpointed; outages and a table held by another execution of the run are waited out
(status "waiting"); after the state machine's Wait, the differences found are read again."""

from __future__ import annotations

import time

from .. import gc_policy
from ..engine import Differ
from ..errors import CheckpointDamagedError, InputError, LeaseHeldError, OutageError, TransientDatabaseError
from ..models import DiffState, Key, TablePlan
from ..plans import TablePlans, describe_plans
from ..repair import recheck_state
from ..report import tally_summary
from .checkpoints import Checkpoint, CheckpointStore, OwnerRunning
from .environment import ConnectorOpener, hides_values
from .events import ChecksumResult, TableItem
from .settings import ChecksumTableSettings, RecheckTableSettings, WaitSettings

# The longest Wait for another execution's lease: about one of its invocations, so that a long wait
# adds a handful of events an hour to the execution's history (at most 25,000 of them).
MAX_LEASE_WAIT_SECONDS = 900


@hides_values
def checksum_table(
    item: TableItem,
    remaining_seconds: float,
    settings: ChecksumTableSettings,
    store: CheckpointStore,
    connectors: ConnectorOpener,
    owner_running: OwnerRunning | None = None,
) -> ChecksumResult:
    """Works on one table item until the invocation's time is nearly up, saving the state as it
    goes (at least every `save_every_seconds`). The lease lasts until the invocation would have
    been stopped, and a little longer: no other execution takes the table while this one may still
    be working on it (a lease whose execution has ended is taken over: `owner_running`).

    A database that goes away (an outage, a failover) does not fail the table: the state is saved
    and the answer is status "waiting", which the state machine meets with a Wait and a new call;
    only when it has been away longer than `outage_budget_seconds` does the table fail, with the
    database's reason, its state kept for a resume with the same run id."""
    started = time.monotonic()
    lease = remaining_seconds + settings.lease_grace_seconds
    if item.invocations == 0 or item.held_since is not None:
        # A table this execution has not worked on yet (a resume, a second execution of the run)
        # may be done already: answered without a lease, so that it never blocks the recheck of
        # the execution that finished it. (Later invocations find it by the lease, below.)
        finished = store.load(item.run_id, item.item_id)
        if finished is not None and finished.state is not None and finished.state.done:
            return _checksum_result(item, finished.state, finished.invocations, 1.0)
    try:
        checkpoint = store.acquire(item.run_id, item.item_id, item.owner, lease, owner_running)
    except LeaseHeldError as held:
        return _lease_held(item, held, settings)
    if checkpoint.version == 0 and item.invocations > 0:
        raise CheckpointDamagedError(
            f"checkpoint for {item.item_id} (run {item.run_id}) disappeared while the table was being checked "
            f"({item.invocations} invocations in); start a new run id to check it again"
        )
    if checkpoint.invocations >= settings.max_invocations:
        raise CheckpointDamagedError(
            f"table {item.item_id} (run {item.run_id}) is not done after {checkpoint.invocations} invocations "
            f"(the MaxInvocationsPerTable guard): start a new run id, with shards or a narrower check"
        )
    if checkpoint.state is not None and checkpoint.state.done:
        return _checksum_result(item, checkpoint.state, checkpoint.invocations, 1.0)
    deadline = started + remaining_seconds - settings.safety_margin_seconds
    state = checkpoint.state
    saved = False  # the first save of an invocation counts it (the MaxInvocationsPerTable guard)
    try:
        with Differ(
            item.table,
            lambda: connectors(item.source),
            [lambda name=name: connectors(name) for name in item.targets],  # type: ignore[misc]
            item.options,
            source_label=item.source,
            target_labels=item.targets,
            validate_key=checkpoint.state is None,  # checked once, when the table run starts
        ) as differ:
            gc_policy.relax()  # once per container: its modules and clients are loaded now
            state = state or differ.initial_state()
            if item.keys is not None:
                keys = [item.keys] * len(item.targets)
                state = _recheck(differ.source_plan, differ.target_plans, state, item, connectors, keys, differ.items)
                state.source_rows = len(item.keys)
                for tally in state.targets:
                    tally.rows_compared = len(item.keys)
                state.walk_done = state.done = True
                checkpoint = store.save(checkpoint, state, lease)
            else:
                # Saved as it goes: an outage or a crash loses at most save_every_seconds of work.
                while True:
                    until = min(deadline, time.monotonic() + settings.save_every_seconds)
                    state = differ.step(state, until)
                    checkpoint = store.save(checkpoint, state, lease, count=not saved)
                    saved = True
                    if state.done or time.monotonic() >= deadline:
                        break
            progress = differ.progress(state)
    except TransientDatabaseError as exc:
        return _outage(item, checkpoint, store, state, lease, exc, settings, count=not saved)
    result = _checksum_result(item, state, checkpoint.invocations, progress)
    result.wait_seconds = settings.outage_wait_seconds
    return result


def _waiting(item: TableItem) -> ChecksumResult:
    """The item handed back unchanged with status "waiting" (a recheck keeps its findings)."""
    if isinstance(item, ChecksumResult):
        return item.model_copy(update={"status": "waiting"})
    return ChecksumResult(
        **item.model_dump(include=set(TableItem.model_fields) - {"invocations"}),
        status="waiting",
        invocations=item.invocations,
    )


def _lease_held(item: TableItem, held: LeaseHeldError, settings: WaitSettings) -> ChecksumResult:
    """Another execution of the same run is still working on the table (the same run started
    twice, or a resume while the first still runs): wait for it, as for an outage, and answer from
    its checkpoint once it is done (or take the table over once that execution has ended). This
    keeps one answer per run: the report of either execution says the same, so it is alerted
    once. Each Wait lasts until the holder's lease would run out (at most MAX_LEASE_WAIT_SECONDS);
    after `lease_wait_budget_seconds` of waiting the table fails, naming the holder."""
    now = time.time()
    since = item.held_since if item.held_since is not None else now
    if now - since >= settings.lease_wait_budget_seconds:
        raise LeaseHeldError(
            f"{held} (waited for it {now - since:.0f} s, LeaseWaitBudgetSeconds "
            f"{settings.lease_wait_budget_seconds:.0f})",
            held.holder,
            held.seconds,
        ) from None
    result = _waiting(item)
    result.held_since = since
    result.wait_seconds = int(min(max(held.seconds, settings.outage_wait_seconds), MAX_LEASE_WAIT_SECONDS))
    result.outage = str(held)[:500]
    return result


def _outage(
    item: TableItem,
    checkpoint: Checkpoint,
    store: CheckpointStore,
    state: DiffState | None,
    lease: float,
    exc: TransientDatabaseError,
    settings: WaitSettings,
    count: bool = True,
) -> ChecksumResult:
    """A database is away: keep what was done, and have the state machine wait and call again,
    until the outage has lasted longer than the budget."""
    now = time.time()
    since = item.outage_since if item.outage_since is not None else now
    if now - since >= settings.outage_budget_seconds:
        raise OutageError(
            f"a database of table {item.item_id} stayed away for {now - since:.0f} s (OutageBudgetSeconds "
            f"{settings.outage_budget_seconds:.0f}): {exc}; the table's progress is kept: start the execution "
            "again with the same run id to resume"
        ) from None
    if state is not None:
        checkpoint = store.save(checkpoint, state, lease, count=count)
        result = _checksum_result(item, state, checkpoint.invocations, None)
    else:
        result = _waiting(item)
        result.invocations = checkpoint.invocations
    result.status = "waiting"
    result.outage_since = since
    result.wait_seconds = settings.outage_wait_seconds
    result.outage = str(exc)[:500]
    return result


@hides_values
def recheck_table(
    item: ChecksumResult,
    remaining_seconds: float,
    settings: RecheckTableSettings,
    store: CheckpointStore,
    connectors: ConnectorOpener,
    owner_running: OwnerRunning | None = None,
) -> ChecksumResult:
    """After the state machine's Wait: reads the differences found again on both sides and keeps
    only those still there (rows that were travelling through replication drop out). A database
    away, or the table held by another execution of the run, is waited out as in checksum_table
    (status "waiting"; the recheck is done again whole, nothing of it is saved before)."""
    lease = remaining_seconds + settings.lease_grace_seconds
    try:
        checkpoint = store.acquire(item.run_id, item.item_id, item.owner, lease, owner_running)
    except LeaseHeldError as held:
        return _lease_held(item, held, settings)
    if checkpoint.state is None or not checkpoint.done:
        raise InputError(f"table item {item.item_id} has no finished check to recheck")
    state = checkpoint.state
    try:
        plans = _plans(item, connectors)
        state = _recheck(plans.source, plans.targets, state, item, connectors, items=plans.items)
        saved = store.save(checkpoint, state, lease)
    except TransientDatabaseError as exc:
        return _outage(item, checkpoint, store, None, lease, exc, settings)
    result = _checksum_result(item, state, saved.invocations, 1.0)
    result.recheck_pending, result.rechecked = False, True
    return result


def _plans(item: TableItem, connectors: ConnectorOpener) -> TablePlans:
    """The item's plans, from one describe per side (no walk, no thread pool)."""
    sides = [connectors(item.source), *(connectors(name) for name in item.targets)]
    try:
        return describe_plans(item.table, sides[0], sides[1:], item.options, item.targets)
    finally:
        for side in sides:
            side.close()


def _recheck(
    source_plan: TablePlan,
    target_plans: list[TablePlan],
    state: DiffState,
    item: TableItem,
    connectors: ConnectorOpener,
    keys: list[list[Key]] | None = None,
    items: bool = False,
) -> DiffState:
    source = connectors(item.source)
    try:
        targets = [lambda name=name: connectors(name) for name in item.targets]
        return recheck_state(state, source, targets, source_plan, target_plans, keys, items=items)
    finally:
        source.close()


def _checksum_result(item: TableItem, state: DiffState, invocations: int, progress: float | None) -> ChecksumResult:
    summaries = [tally_summary(name, tally) for name, tally in zip(item.targets, state.targets, strict=True)]
    differences = any(t.missing or t.extra or t.differing for t in state.targets)
    return ChecksumResult(
        **item.model_dump(include=set(TableItem.model_fields) - {"invocations", "outage_since", "held_since"}),
        recheck_pending=state.done and differences and item.recheck_after > 0 and item.keys is None,
        status="done" if state.done else "continue",
        invocations=invocations,
        source_rows=state.source_rows,
        progress=progress,
        targets_summary=summaries,
        duration_s=round(state.elapsed_s, 3),
    )
