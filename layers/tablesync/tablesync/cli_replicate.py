"""`tablesync replicate`: an append-only table copied to one or more destinations, each from its own
highest key (engine/replicate.py holds the rules); with --follow, for as long as it runs, woken by
PostgreSQL's LISTEN/NOTIFY or by polling."""

from __future__ import annotations

import argparse
import json
import signal
import time
from typing import TYPE_CHECKING, Any

from .errors import InputError

if TYPE_CHECKING:
    from .copy_models import CopyState
    from .engine.replicate import ReplicateResult, Replicator, Validation

EXIT_SAME, EXIT_LEFT_BEHIND, EXIT_ERROR = 0, 1, 2
WAKE_CHECK_SECONDS = 0.5  # how often a wait looks for a stop request


def add_parser(commands: Any, positive: Any, names: Any) -> None:
    replicate = commands.add_parser(
        "replicate",
        help="copy an append-only table's new rows to one or more destinations (--follow: keep at it)",
        description="Copy the rows of SOURCE_URL's table above each destination's highest key to it, in "
        "key order, a batch a transaction, destinations apart. Exit status: 0 every destination caught "
        "up, 1 a destination was left behind (away, or refusing a batch), 2 error.",
    )
    replicate.add_argument("source", metavar="SOURCE_URL")
    replicate.add_argument("destinations", metavar="DEST_URL", nargs="+")
    replicate.add_argument("--table", required=True, help="table name, optionally schema.table")
    replicate.add_argument("--key", type=names, help="the ordering key (default: the primary key)")
    replicate.add_argument("--columns", type=names, help="replicate only these columns (and the key)")
    replicate.add_argument("--ignore", type=names, default=[], help="do not replicate these columns")
    replicate.add_argument("--batch", type=positive, default=10_000, metavar="N", help="rows a transaction (10000)")
    replicate.add_argument(
        "--group-column", metavar="COL", help="never split rows sharing this column's value (a transaction id)"
    )
    replicate.add_argument("--follow", action="store_true", help="keep replicating until stopped (SIGINT, SIGTERM)")
    replicate.add_argument(
        "--notify-channel", metavar="NAME", help="PostgreSQL source: wake on NOTIFY on this channel (see README)"
    )
    replicate.add_argument(
        "--interval", type=float, default=5.0, metavar="SECONDS", help="--follow: look for new rows this often (5)"
    )
    replicate.add_argument("--dry-run", action="store_true", help="print the parameters and the validations only")
    replicate.add_argument("--format", choices=["text", "json"], default="text")
    replicate.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    replicate.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")


def run_replicate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from . import gc_policy
    from .connectors import open_connector
    from .engine.replicate import Replicator, replicate_options
    from .output import ProgressBar
    from .urls import parse_url

    source_url = parse_url(args.source)
    urls = [parse_url(d) for d in args.destinations]
    if any(u.dialect == "dynamodb" for u in [source_url, *urls]):
        raise InputError("replicate takes PostgreSQL, MySQL/MariaDB and SQLite tables")
    if args.notify_channel and source_url.dialect != "postgresql":
        raise InputError("--notify-channel needs a PostgreSQL source (LISTEN/NOTIFY); others are polled (--interval)")
    if not 0 < args.interval <= 86_400:
        raise InputError("--interval must be more than 0 and at most 86400 seconds")
    try:
        options = replicate_options(args.key, args.columns, args.ignore, args.batch, args.group_column)
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InputError(f"--{str(error['loc'][0]).replace('_', '-')}: {error['msg'].lower()}") from None
    timeout = args.connect_timeout
    replicator = Replicator(
        args.table,
        lambda: open_connector(source_url, connect_timeout=timeout),
        [lambda u=u: open_connector(u, connect_timeout=timeout, read_only=False) for u in urls],  # type: ignore[misc]
        options,
        source_label=source_url.redacted(),
        destination_labels=[u.redacted() for u in urls],
    )
    with replicator:
        validations = replicator.validate([u.same_database(source_url) for u in urls])
        if args.dry_run:
            print(_dry_run(args, source_url.redacted(), replicator.labels, validations))
            return EXIT_SAME if all(v.ok for v in validations) else EXIT_ERROR
        failed = next((v for v in validations if not v.ok), None)
        if failed is not None:
            raise InputError(f"destination {failed.destination}: {failed.check}: {failed.detail}")
        gc_policy.relax()
        _stop_on_signals(replicator)
        state = replicator.start()
        progress = ProgressBar() if not args.no_progress else None
        state = _replicate(args, replicator, state, progress)
        if progress:
            progress.finish()
        result = replicator.result(state)
    print(json.dumps(result.model_dump(mode="json"), indent=2) if args.format == "json" else render(result))
    return EXIT_LEFT_BEHIND if any(d.error for d in result.destinations) else EXIT_SAME


def _replicate(args: argparse.Namespace, replicator: Replicator, state: CopyState, progress: Any) -> CopyState:
    def on_state(new_state: CopyState) -> None:
        if progress:
            progress.update(sum(t.rows for t in new_state.targets), None, None)

    from .connectors import open_connector
    from .urls import parse_url

    listener = None
    if args.follow and args.notify_channel:
        listener = open_connector(parse_url(args.source), connect_timeout=args.connect_timeout)
        listener.listen(args.notify_channel)  # type: ignore[attr-defined]
    try:
        while True:
            state = replicator.catch_up(state, on_state=on_state)
            if not args.follow or replicator.stop_requested:
                return state
            _wait(replicator, listener, args.interval)
    finally:
        if listener is not None:
            listener.close()


def _wait(replicator: Replicator, listener: Any, interval: float) -> None:
    """Until a notification (with --notify-channel; the interval still bounds the wait: a missed
    notification never stalls replication), the interval's end, or a stop request."""
    until = time.monotonic() + interval
    while not replicator.stop_requested and time.monotonic() < until:
        pause = min(WAKE_CHECK_SECONDS, until - time.monotonic())
        if listener is not None:
            if listener.notified(max(0.0, pause)):
                return
        else:
            time.sleep(max(0.0, pause))


def _stop_on_signals(replicator: Replicator) -> None:
    """SIGINT and SIGTERM stop between batches: what is written is whole, and a new run goes on
    from each destination's highest key."""

    def stop(signum: int, frame: Any) -> None:
        replicator.stop_requested = True

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)


def render(result: ReplicateResult) -> str:
    lines = []
    for d in result.destinations:
        lag = "lag unknown" if d.lag_rows is None else f"lag {d.lag_rows:,} rows"
        state = f"; LEFT BEHIND: {d.error}" if d.error else ""
        rate = f"{d.rows_per_second:,.0f} rows/s"
        lines.append(f"{result.table} -> {d.url}: {d.rows_copied:,} rows copied, {lag}, {rate}{state}")
    lines.append(f"{result.rounds} round(s) in {result.duration_s:.1f} s")
    return "\n".join(lines)


def _follow_line(args: argparse.Namespace) -> str:
    if not args.follow:
        return "follow: no (one round)"
    if args.notify_channel:
        return f"follow: yes, woken by NOTIFY on {args.notify_channel} (at least every {args.interval:g} s)"
    return f"follow: yes, every {args.interval:g} s"


def _dry_run(args: argparse.Namespace, source: str, destinations: list[str], validations: list[Validation]) -> str:
    lines = [
        f"table: {args.table}",
        f"source: {source}",
        *(f"destination: {d}" for d in destinations),
        f"key: {', '.join(args.key) if args.key else '(the primary key)'}",
        f"batch: {args.batch} rows a transaction"
        + (f", never splitting rows of one {args.group_column}" if args.group_column else ""),
        _follow_line(args),
        "validations:",
        *(
            f"  {'ok  ' if v.ok else 'FAIL'} {v.destination}: {v.check}" + (f" ({v.detail})" if v.detail else "")
            for v in validations
        ),
        "dry run: nothing written",
    ]
    return "\n".join(lines)
