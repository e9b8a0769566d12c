"""Report: the run's result to S3, an SNS alert when something differs or failed (once per
outcome), metrics per table, and every differing key, batched, on the repair queue (once per
table item, never lost)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable
from typing import Any, Literal

from ..errors import CheckpointDamagedError, TablesyncError
from ..models import DiffKind, DiffState, Key
from ..output import render_run_text
from .checkpoints import CheckpointStore
from .events import SAMPLE_KEYS, FailedItem, RepairMessage, ReportInput, ReportResult, TableReport, TableResult
from .settings import ReportSettings
from .stores import Clients, KeysQueue, ReportStores, report_stores

KEYS_PER_MESSAGE = 500


REPORT_TABLES = 100  # tables listed in the state machine's output (all of them are in S3)


def report(
    run: ReportInput,
    settings: ReportSettings,
    clients: Clients | None,
    store: CheckpointStore,
    emit_metric: Callable[[str, str, float], None] | None = None,
    *,
    stores: ReportStores | None = None,
) -> ReportResult:
    """The run's result: JSON in the results bucket, an SNS message when something differs or
    failed, metrics per table, and every differing key, batched, on the repair queue (`stores`;
    by default the settings' bucket, topic and queue, through the clients)."""
    stores = stores or report_stores(settings, clients)
    tables = _table_reports(run.results)
    unqueued: dict[str, str] = {}
    keys_queued = _queue_keys(run, stores.keys, store, unqueued) if stores.keys is not None else 0
    for table in tables:
        if table.table in unqueued:
            table.status, table.error = "failed", unqueued[table.table]
    status: Literal["identical", "different", "failed"]
    if any(t.status == "failed" for t in tables):
        status = "failed"
    elif any(t.status in ("different", "incomplete") for t in tables):
        status = "different"
    else:
        status = "identical"
    result = ReportResult(run_id=run.run_id, status=status, tables=tables)
    if emit_metric is not None:
        for table in tables:
            emit_metric(table.table, "RowsCompared", float(sum(t.rows_compared for t in table.targets)))
            for kind in tuple(DiffKind):
                emit_metric(table.table, kind.capitalize(), float(sum(getattr(t, kind) for t in table.targets)))
            emit_metric(table.table, "Failed", 1.0 if table.status == "failed" else 0.0)
    result.keys_queued = keys_queued
    if stores.results is not None:
        # One object per execution of the run: a later execution (a resume) never overwrites
        # what an earlier one reported, its database errors included.
        # Milliseconds: the keys of a run's reports sort in the order they were written.
        now = dt.datetime.now(dt.UTC)
        stamp = now.strftime("%Y%m%dT%H%M%S") + f"{now.microsecond // 1000:03d}Z"
        execution = run.owner.rsplit(":", 1)[-1] or "run"
        key = f"reports/{run.run_id}/{stamp}-{execution}.json"
        result.report_uri = stores.results.uri(key)
        stores.results.put(key, result.model_dump_json(indent=2).encode(), "application/json")
    # An outcome is alerted once per run, however many executions report it; a publish that
    # fails clears its mark, so the next execution alerts (at least once, never lost).
    flag = f"alert_{_outcome(result)}"
    if stores.alerts is not None and status != "identical" and store.mark_once(run.run_id, "#report", flag):
        try:
            stores.alerts.publish(f"tablesync run {run.run_id}: {status}", render_run_text(result))
        except Exception:
            store.unmark(run.run_id, "#report", flag)
            raise
    if len(result.tables) > REPORT_TABLES:
        # The state machine's output is capped at 256 KB; the full report is in S3.
        result.tables = result.tables[:REPORT_TABLES]
    return result


def _table_reports(results: list[TableResult | FailedItem]) -> list[TableReport]:
    by_table: dict[str, TableReport] = {}
    for entry in results:
        report = by_table.setdefault(
            entry.table, TableReport(table=entry.table, status="identical", shards=entry.shards)
        )
        if isinstance(entry, FailedItem):
            report.status = "failed"
            shard = f" (shard {entry.shard + 1} of {entry.shards})" if entry.shards > 1 else ""
            report.error = f"{entry.error}{shard}: {_cause(entry.cause)}"
            continue
        report.source = entry.source
        report.mode = entry.mode
        report.copied += entry.copied
        left_behind = [c for c in entry.copied if c.error]
        if left_behind:
            report.status = "failed"
            report.error = "; ".join(f"{c.url} left behind: {c.error}" for c in left_behind)[:1000]
        report.source_rows += entry.source_rows
        report.invocations += entry.invocations
        report.duration_s = max(report.duration_s, entry.duration_s)
        for summary in entry.targets_summary:
            merged = next((t for t in report.targets if t.database == summary.database), None)
            if merged is None:
                report.targets.append(summary.model_copy(deep=True))
                continue
            merged.rows_compared += summary.rows_compared
            for kind in tuple(DiffKind):
                setattr(merged, kind, getattr(merged, kind) + getattr(summary, kind))
                keys = merged.sample.get(kind, []) + summary.sample.get(kind, [])
                if keys:
                    merged.sample[kind] = keys[:SAMPLE_KEYS]
        if report.status == "failed":
            continue
        if entry.status != "done":
            report.status = "incomplete"
        elif any(t.missing or t.extra or t.differing for t in report.targets) and report.status != "incomplete":
            report.status = "different"
    return sorted(by_table.values(), key=lambda t: t.table)


def _cause(cause: str) -> str:
    """A Lambda error's Cause is JSON ({"errorMessage": ..., "errorType": ...}); keep the message."""
    try:
        data = json.loads(cause)
    except ValueError:
        return cause[:500]
    if isinstance(data, dict):
        return str(data.get("errorMessage") or data.get("Cause") or cause)[:500]
    return cause[:500]


def _queue_keys(run: ReportInput, keys: KeysQueue, store: CheckpointStore, unqueued: dict[str, str]) -> int:
    """Sends every differing key of the run to the repair queue, KEYS_PER_MESSAGE per message, once
    per table item however many executions report the run; a table whose keys cannot be queued is
    named in `unqueued`, with the reason."""
    queued = 0
    batch: list[dict[str, Any]] = []

    def flush() -> None:
        if batch:
            refused = keys.send_batch([json.dumps(m) for m in batch])
            if refused:
                raise TablesyncError(f"the repair queue refused {refused} message(s)")
            batch.clear()

    for entry in run.results:
        if not isinstance(entry, TableResult) or entry.status != "done":
            continue
        if not any(t.missing or t.extra or t.differing for t in entry.targets_summary):
            continue
        try:
            checkpoint = store.load(entry.run_id, entry.item_id)
        except CheckpointDamagedError as exc:
            unqueued[entry.table] = f"{exc} (its differing keys were not queued for repair)"
            continue
        if checkpoint is None or checkpoint.state is None:
            # Its keys cannot be queued: said, never silently dropped.
            unqueued[entry.table] = (
                f"checkpoint for {entry.item_id} (run {entry.run_id}) is gone: its differing keys were not queued "
                "for repair; start a new run id to find them again"
            )
            continue
        if not store.mark_once(entry.run_id, entry.item_id, "queued"):
            continue  # another execution of this run queued them already
        try:
            queued += _queue_item_keys(run, entry, checkpoint.state, batch, flush)
            flush()
        except Exception:
            # Not all sent: cleared, so that the next execution sends them (again: a repair of a
            # key already repaired finds it equal and writes nothing). Never lost.
            batch.clear()
            store.unmark(entry.run_id, entry.item_id, "queued")
            raise
    return queued


def _queue_item_keys(
    run: ReportInput, entry: TableResult, state: DiffState, batch: list[dict[str, Any]], flush: Callable[[], None]
) -> int:
    queued = 0
    for target, tally in zip(entry.targets, state.targets, strict=True):
        for kind in tuple(DiffKind):
            keys: list[Key] = getattr(tally, kind)
            for start in range(0, len(keys), KEYS_PER_MESSAGE):
                part = keys[start : start + KEYS_PER_MESSAGE]
                # A reference to the stored definition, not its settings: a message grants nothing.
                message = RepairMessage(
                    run_id=run.run_id,
                    check_ssm=entry.check_ssm,
                    table=entry.table,
                    source=entry.source,
                    target=target,
                    kind=kind,
                    keys=part,
                )
                batch.append(message.model_dump(mode="json", exclude={"failures"}))
                queued += len(part)
                if len(batch) == 10:
                    flush()
    return queued


def _outcome(result: ReportResult) -> str:
    """What makes two reports of a run the same outcome: each table's status and counts, and a
    failed table's error class (its text names times and executions, which differ each time)."""
    parts: list[Any] = [result.status]
    for table in result.tables:
        error = (table.error or "").split(":", 1)[0] if table.status == "failed" else ""
        counts = [(t.database, t.missing, t.extra, t.differing) for t in table.targets]
        parts.append((table.table, table.status, error, counts))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]
