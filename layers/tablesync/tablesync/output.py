"""Rendering of the result models (report.py) and of progress, for the terminal and the alerts."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any, TextIO

from .models import DiffKind, DiffResult, Key, RepairResult
from .report import RunReport, TableReport, table_report

LIST_LIMIT = 20


def _key_text(key: Key) -> str:
    return json.dumps(key, ensure_ascii=False)


def _value(text: str | None) -> str:
    return "NULL" if text is None else repr(text)


def render_text(report: TableReport) -> str:
    """One table's report for a terminal: counts, the first keys of each kind, value samples and
    repairs."""
    lines = []
    total = sum(t.differences for t in report.targets)
    status = " (incomplete)" if report.status == "incomplete" else ""
    if report.stopped_on_streak:
        status = " (stopped early: --stop-on-streak reached)"
    lines.append(
        f"table {report.table}: {total} difference{'s' if total != 1 else ''}{status}; "
        f"source {report.source}: {report.source_rows:,} rows, {report.duration_s:.2f} s"
    )
    for target in report.targets:
        lines.append(
            f"target {target.database}: {target.rows_compared:,} rows compared, {target.missing} missing, "
            f"{target.extra} extra, {target.differing} differing"
        )
        for kind in (DiffKind.MISSING, DiffKind.EXTRA, DiffKind.DIFFERING):
            count, keys = getattr(target, kind), target.sample.get(kind, [])
            if not count:
                continue
            listed = keys[:LIST_LIMIT]  # a summary may carry fewer keys than it counts
            shown = " ".join(_key_text(k) for k in listed)
            more = f" ... and {count - len(listed)} more (--format json lists all)" if count > len(listed) else ""
            lines.append(f"  {kind:<10} {shown}{more}")
        for sample in target.samples:
            lines.append(f"  sample {sample.kind} {_key_text(sample.key)}")
            for column, values in sample.columns.items():
                lines.append(f"      {column}: source {_value(values['source'])}  target {_value(values['target'])}")
    for copied in report.copied:
        made = " (table created)" if copied.created else ""
        behind = f"; left behind: {copied.error}" if copied.error else ""
        verb = "replicated" if report.mode == "replicate" else "copied"
        lines.append(f"target {copied.url}: {copied.rows_copied:,} rows {verb}{made}{behind}")
    for repair in report.repairs:
        lines += render_repair(repair)
    return "\n".join(lines)


def render_run_text(run: RunReport) -> str:
    """A run of the app over its tables, one line per table and target that is not identical
    (the alert's text)."""
    lines = [f"tablesync run {run.run_id}: {run.status}"]
    for table in run.tables:
        if table.status == "identical":
            continue
        if table.status == "failed":
            lines.append(f"- {table.table}: FAILED: {table.error}")
            continue
        for target in table.targets:
            lines.append(
                f"- {table.table} -> {target.database}: {target.missing} missing, {target.extra} extra, "
                f"{target.differing} differing of {target.rows_compared:,} rows"
            )
    if run.report_uri:
        lines.append(f"report: {run.report_uri}")
    return "\n".join(lines)


def render_repair(repair: RepairResult) -> list[str]:
    if repair.dry_run:
        lines = [f"repair {repair.url} (dry run, nothing written): {len(repair.statements)} statement(s)"]
        return lines + [f"  {statement}" for statement in repair.statements]
    parts = [f"{repair.inserted} inserted", f"{repair.updated} updated", f"{repair.deleted} deleted"]
    if repair.in_sync:
        parts.append(f"{repair.in_sync} already in sync when re-read")
    if repair.changed:
        parts.append(f"{repair.changed} changed on the target under the repair (left alone)")
    if repair.source_changed:
        parts.append(f"{repair.source_changed} written while their source row changed (to be checked again)")
    for kind, count in sorted(repair.not_enabled.items()):
        flag = {
            DiffKind.MISSING: "--write-missing",
            DiffKind.DIFFERING: "--write-differing",
            DiffKind.EXTRA: "--delete-extra",
        }[DiffKind(kind)]
        parts.append(f"{count} {kind} not written (no {flag})")
    if repair.failed:
        parts.append(f"{len(repair.failed)} failed")
    lines = [f"repair {repair.url}: " + ", ".join(parts) + f"; {repair.verdict}"]
    if repair.changed_keys:
        shown = " ".join(_key_text(k) for k in repair.changed_keys[:LIST_LIMIT])
        more = " ..." if len(repair.changed_keys) > LIST_LIMIT else ""
        lines.append(f"  changed    {shown}{more} (run again to repair them)")
    for failure in repair.failed[:LIST_LIMIT]:
        lines.append(f"  failed {failure.action} {_key_text(failure.key)}: {failure.reason}")
    if len(repair.failed) > LIST_LIMIT:
        lines.append(f"  ... and {len(repair.failed) - LIST_LIMIT} more failures (--format json lists all)")
    return lines


def render_json(result: DiffResult) -> str:
    """The full result, every key listed (the CLI's --format json)."""
    return json.dumps(result.model_dump(mode="json"), ensure_ascii=False)


# A finished diff rendered by --format (jsonl streams its lines as differences are found, then
# ends with its repair lines). A new format (HTML) is a function here over the same models.
RENDERERS: dict[str, Callable[[DiffResult], str]] = {
    "text": lambda result: render_text(table_report(result, sample_keys=LIST_LIMIT)),
    "json": render_json,
}


def repair_line(repair: RepairResult) -> str:
    """--format jsonl: one line per repaired target, after the differences (its counts, the keys
    that changed under it, what is left and the verdict; statements and failures in full)."""
    return json.dumps({"repair": repair.model_dump(mode="json")}, ensure_ascii=False)


def difference_line(target_url: str, kind: str, key: Key) -> str:
    return json.dumps({"target": target_url, "kind": kind, "key": key}, ensure_ascii=False)


class ProgressBar:
    """Rows checked, % of the key range, rows/s and ETA, redrawn on one stderr line."""

    def __init__(self, start_rows: int = 0, stream: TextIO = sys.stderr) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.started = time.monotonic()
        self.base_rows = start_rows  # rows already checked by an earlier, interrupted run

    def update(self, rows: int, fraction: float | None, found: int | None) -> None:
        if not self.enabled:
            return
        elapsed = max(1e-6, time.monotonic() - self.started)
        rate = (rows - self.base_rows) / elapsed
        parts: list[Any] = [f"{rows:,} rows"]
        if fraction is not None:
            parts.append(f"{fraction * 100:5.1f}%")
        parts.append(f"{rate:,.0f} rows/s")
        if fraction and 0 < fraction < 1 and rate > 0:
            eta = elapsed * (1 - fraction) / fraction
            parts.append(f"ETA {int(eta // 60)}:{int(eta % 60):02d}")
        if found is not None:
            parts.append(f"{found} differences")
        self.stream.write("\r" + "  ".join(str(p) for p in parts) + "\x1b[K")
        self.stream.flush()

    def finish(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
