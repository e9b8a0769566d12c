"""`tablesync copy`: a source table copied into one or more targets (created first with --create),
resumable from --state-file, then proven equal by a diff of the copied rows (engine/bulk_copy.py
holds the rules)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DatabaseUnavailableError, InputError, TransientDatabaseError

if TYPE_CHECKING:
    from .copy_models import CopyOptions, CopyResult, CopyState
    from .engine.bulk_copy import Copier

STEP_SECONDS = 1.0
DEFAULT_BATCH = 20_000  # CopyOptions' (the engine is imported only when a copy runs)


def add_parser(commands: Any, positive: Any, names: Any) -> None:
    copy = commands.add_parser(
        "copy",
        help="copy a table into one or more targets (creating them with --create), then verify",
        description="Copy SOURCE_URL's table into the same table at each TARGET_URL, in key order, a "
        "batch per transaction, resumable; then diff the copied rows. Exit status: 0 copied and verified "
        "equal, 1 the verify found differences, 2 error.",
    )
    copy.add_argument("source", metavar="SOURCE_URL")
    copy.add_argument("targets", metavar="TARGET_URL", nargs="+")
    copy.add_argument("--table", required=True, help="table name, optionally schema.table")
    copy.add_argument("--create", action="store_true", help="create a target table that does not exist")
    existing = copy.add_mutually_exclusive_group()
    existing.add_argument(
        "--append", action="store_true", help="a target with rows: copy the rows after its highest key"
    )
    existing.add_argument("--replace", action="store_true", help="a target with rows: delete them first")
    copy.add_argument(
        "--evolve-schema", action="store_true", help="add the source's columns a target table lacks (ALTER TABLE)"
    )
    copy.add_argument("--key", type=names, help="key column(s) when the table has no primary key")
    copy.add_argument("--columns", type=names, help="copy only these columns (and the key)")
    copy.add_argument("--ignore", type=names, default=[], help="do not copy these columns")
    copy.add_argument("--where", help="copy only the rows this filter admits (as tablesync diff's --where)")
    copy.add_argument("--batch", type=positive, default=DEFAULT_BATCH, metavar="N", help="rows per transaction")
    copy.add_argument("--no-verify", action="store_true", help="do not diff the copied rows at the end")
    copy.add_argument("--format", choices=["text", "json"], default="text")
    copy.add_argument("--state-file", type=Path, help="save progress here; an interrupted copy resumes from it")
    copy.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    copy.add_argument("--max-outage", type=float, default=300.0, metavar="SECONDS")
    copy.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run_copy(args: argparse.Namespace) -> int:
    from . import gc_policy
    from .connectors import open_connector
    from .copy_models import CopyState
    from .engine.bulk_copy import Copier
    from .outages import wait_out
    from .output import ProgressBar
    from .state_files import load_state, save_state
    from .urls import parse_url

    source_url = parse_url(args.source)
    target_urls = [parse_url(t) for t in args.targets]
    for url in target_urls:
        if url.same_database(source_url):
            raise InputError(f"target {url.redacted()} is the source database: refusing to copy onto it")
    if source_url.dialect == "dynamodb":
        raise InputError("copy reads PostgreSQL, MySQL/MariaDB and SQLite tables (a DynamoDB source is not built yet)")
    options = _options(args)
    for url in target_urls:
        if args.create and url.dialect == "sqlite" and url.path and Path(url.path).parent.is_dir():
            Path(url.path).touch()  # an empty file is an empty SQLite database: --create makes its table
    as_target: Any = _identity
    if any(u.dialect == "dynamodb" for u in target_urls):
        from .dynamodb.loader import for_copy as as_target  # DynamoDB's driver only when asked for
    timeout = args.connect_timeout
    state = load_state(args.state_file, CopyState, "tablesync copy state") if args.state_file else None
    copier = wait_out(
        lambda: Copier(
            args.table,
            lambda: open_connector(source_url, connect_timeout=timeout),
            [lambda u=u: as_target(open_connector(u, connect_timeout=timeout, read_only=False)) for u in target_urls],  # type: ignore[misc]
            options,
            source_label=source_url.redacted(),
            target_labels=[u.redacted() for u in target_urls],
        ),
        args.max_outage if state is not None else 0.0,
    )
    gc_policy.relax()
    progress = ProgressBar(state.targets[0].rows if state else 0) if not args.no_progress else None
    started = time.monotonic()

    def on_state(new_state: CopyState) -> None:
        if args.state_file:
            save_state(args.state_file, new_state)
        if progress:
            progress.update(min(t.rows for t in new_state.targets), None, None)

    with copier:
        try:
            state = copier.run(state, step_seconds=STEP_SECONDS, on_state=on_state, max_outage=args.max_outage)
        except TransientDatabaseError as exc:
            kept = f"; the progress is in {args.state_file}: run again to resume" if args.state_file else ""
            raise DatabaseUnavailableError(
                f"a database stayed away longer than --max-outage {args.max_outage:.0f} s: {exc}{kept}"
            ) from None
        if progress:
            progress.finish()
        result = copier.result(state)
        result.duration_s = round(time.monotonic() - started, 3)
        if options.verify:
            result.verify = _verify(args, copier, state, source_url, target_urls)
            identical = {t.url: not (t.missing or t.extra or t.differing) for t in result.verify.targets}
            for target in result.targets:
                target.verified = identical.get(target.url)
    if args.state_file and args.state_file.exists():
        args.state_file.unlink()
    print(render_json(result) if args.format == "json" else render_text(result))
    return 1 if result.verify is not None and result.verify.has_differences else 0


def _options(args: argparse.Namespace) -> CopyOptions:
    from pydantic import ValidationError

    from .copy_models import CopyOptions

    try:
        return CopyOptions(
            key=args.key,
            columns=args.columns,
            ignore=args.ignore,
            where=args.where,
            batch=args.batch,
            create=args.create,
            existing="append" if args.append else "replace" if args.replace else "refuse",
            evolve_schema=args.evolve_schema,
            verify=not args.no_verify,
        )
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg'].lower()}") from None


def _identity(connector: Any) -> Any:
    return connector


def _verify(args: argparse.Namespace, copier: Copier, state: CopyState, source_url: Any, target_urls: Any) -> Any:
    from .connectors import open_connector
    from .engine import Differ

    timeout = args.connect_timeout
    with Differ(
        args.table,
        lambda: open_connector(source_url, connect_timeout=timeout),
        [lambda u=u: open_connector(u, connect_timeout=timeout) for u in target_urls],  # type: ignore[misc]
        copier.verify_options(state),
        source_label=copier.source_label,
        target_labels=copier.target_labels,
    ) as differ:
        return differ.result(differ.run(max_outage=args.max_outage))


def render_text(result: CopyResult) -> str:
    from .output import RENDERERS

    lines = []
    for target in result.targets:
        head = f"{result.table}: {target.rows_copied:,} rows copied to {target.url}"
        notes = []
        if target.created:
            notes.append("table created")
        if target.replaced:
            notes.append("its rows deleted first (--replace)")
        if target.added_columns:
            notes.append(f"columns added: {', '.join(target.added_columns)}")
        if target.verified is not None:
            notes.append("verified identical" if target.verified else "VERIFY FOUND DIFFERENCES")
        lines.append(head + (f" ({'; '.join(notes)})" if notes else ""))
    lines.append(f"{result.duration_s:.1f} s, {result.rows_per_second:,.0f} rows/s a target")
    if result.verify is not None and result.verify.has_differences:
        lines += ["", RENDERERS["text"](result.verify)]
    return "\n".join(lines)


def render_json(result: CopyResult) -> str:
    return json.dumps(result.model_dump(mode="json"), indent=2)
