"""The CLI's steps after a diff: --recheck-after reads the differences again, then the repair
writes each target (cli.py runs them; repair.py holds the rules)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from .connectors import open_connector
from .engine import Differ
from .models import AuditRecord, DiffKind, DiffResult, DiffState, Key, RepairOptions, RepairResult
from .outages import OutageCallback, Reopening, wait_out
from .output import difference_line
from .repair import recheck_state, repair_target
from .urls import DatabaseUrl


def recheck_after(
    differ: Differ,
    state: DiffState,
    args: argparse.Namespace,
    source_url: DatabaseUrl,
    target_urls: list[DatabaseUrl],
    on_outage: OutageCallback,
) -> DiffState:
    """After --recheck-after seconds, the differences found read again: only those still there
    are kept (rows that were travelling through replication drop out)."""
    time.sleep(args.recheck_after)
    timeout = args.connect_timeout
    source = wait_out(
        lambda: Reopening(lambda: open_connector(source_url, connect_timeout=timeout)),
        args.max_outage,
        on_outage=on_outage,
    )
    try:
        targets = [lambda u=u: open_connector(u, connect_timeout=timeout) for u in target_urls]
        state = wait_out(
            lambda: recheck_state(state, source, targets, differ.source_plan, differ.target_plans, items=differ.items),
            args.max_outage,
            on_outage=on_outage,
            reopen=source.reopen,
        )
    finally:
        source.close()
    if args.format == "jsonl":
        for label, tally in zip(differ.target_labels, state.targets, strict=True):
            for kind in tuple(DiffKind):
                for key in getattr(tally, kind):
                    print(difference_line(label, kind, key), flush=True)
    return state


def repair_targets(
    differ: Differ,
    result: DiffResult,
    options: RepairOptions,
    source_url: DatabaseUrl,
    target_urls: list[DatabaseUrl],
    timeout: float,
    audit_file: Path | None,
    max_outage: float = 0.0,
) -> list[RepairResult]:
    """Repairs each target in turn. The source connection is read-only; a target is opened for
    writing only when something is to be written (not for --dry-run)."""
    audit_handle = open(audit_file, "a", encoding="utf-8") if audit_file and not options.dry_run else None  # noqa: SIM115

    def audit(record: AuditRecord) -> None:
        assert audit_handle is not None
        audit_handle.write(record.model_dump_json() + "\n")
        audit_handle.flush()

    out = []
    # Reopened after an outage: a batch broken by one is done again on new connections.
    source = wait_out(lambda: Reopening(lambda: open_connector(source_url, connect_timeout=timeout)), max_outage)
    try:
        for t, target_result in enumerate(result.targets):
            keys = [*target_result.missing, *target_result.differing, *target_result.extra]
            url = target_urls[t]
            target = wait_out(
                lambda url=url: Reopening(  # type: ignore[misc]
                    lambda: open_connector(url, connect_timeout=timeout, read_only=options.dry_run)
                ),
                max_outage,
            )
            try:
                if differ.items:  # DynamoDB on one side or both
                    sink = audit if audit_handle else None
                    out.append(
                        _repair_items(differ, t, source, target, keys, options, target_result.url, sink, max_outage)
                    )
                    continue
                out.append(
                    repair_target(
                        source,
                        target,
                        differ.source_plan,
                        differ.target_plans[t],
                        keys,
                        options,
                        table=differ.table,
                        target_label=target_result.url,
                        audit=audit if audit_handle else None,
                        max_outage=max_outage,
                    )
                )
            finally:
                target.close()
    finally:
        source.close()
        if audit_handle:
            audit_handle.close()
    return out


def _repair_items(
    differ: Differ,
    t: int,
    source: Reopening,
    target: Reopening,
    keys: list[Key],
    options: RepairOptions,
    label: str,
    audit: Callable[[AuditRecord], None] | None,
    max_outage: float,
) -> RepairResult:
    """DynamoDB on one side or both (dynamodb/mixed.py): a DynamoDB target is written
    conditionally; a SQL one through the SQL repair, the source's items read as its rows."""
    from .dynamodb.connector import DynamoConnector
    from .dynamodb.mixed import repair_mixed

    # A DynamoDB table has no connection to lose; a SQL side keeps its reopening wrapper.
    source_side = source.inner if isinstance(source.inner, DynamoConnector) else source
    target_side = target.inner if isinstance(target.inner, DynamoConnector) else target
    return repair_mixed(
        source_side,
        target_side,
        differ.source_plan,
        differ.target_plans[t],
        keys,
        options,
        table=differ.table,
        target_label=label,
        audit=audit,
        max_outage=max_outage,
    )
