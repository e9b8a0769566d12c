"""The `tablesync` command: `tablesync diff` and `tablesync demo`."""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

from pydantic import BaseModel, ValidationError

from . import __version__, cli_copy, cli_replicate, gc_policy
from .cli_repair import recheck_after, repair_targets
from .connectors import open_connector
from .engine import Differ
from .errors import DatabaseUnavailableError, InputError, TablesyncError, TransientDatabaseError
from .models import MAX_KEYS_PER_REQUEST, DiffOptions, DiffState, Key, RepairOptions
from .outages import OutageCallback, wait_out
from .output import RENDERERS, ProgressBar, difference_line, repair_line
from .state_files import load_state, save_state
from .urls import DatabaseUrl, parse_url

M = TypeVar("M", bound=BaseModel)
STEP_SECONDS = 1.0  # the state file is saved (and the progress bar drawn) after each step
EXIT_SAME, EXIT_DIFFERENT, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 0, 1, 2, 130, 141


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One clear line, no usage dump.
        self.exit(EXIT_ERROR, f"tablesync: error: {message} (see {self.prog} --help)\n")


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("expected one or more column names separated by commas")
    return names


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="tablesync", description="Find (and fix) drift between copies of a database table.")
    parser.add_argument("--version", action="version", version=f"tablesync {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    diff = commands.add_parser(
        "diff",
        help="compare a source table with one or more target tables",
        description="Compare SOURCE_URL's table with the same table at each TARGET_URL. Exit status: "
        "0 no differences, 1 differences found, 2 error.",
    )
    diff.add_argument("source", metavar="SOURCE_URL")
    diff.add_argument("targets", metavar="TARGET_URL", nargs="+")
    diff.add_argument("--table", required=True, help="table name, optionally schema.table")
    diff.add_argument("--key", type=_names, help="key column(s) when the table has no primary key")
    diff.add_argument("--columns", type=_names, help="compare only these columns")
    diff.add_argument("--ignore", type=_names, default=[], help="do not compare these columns")
    diff.add_argument("--where", help="filter applied on both sides, e.g. \"status = 'open' AND id > 100\"")
    diff.add_argument(
        "--strict-schema", action="store_true", help="a column only a target has is an error (default: a warning)"
    )
    diff.add_argument("--reverse", action="store_true", help="walk the key space from the newest (highest) key")
    diff.add_argument("--stop-on-streak", type=_positive, help="stop after N identical rows in a row")
    defaults = DiffOptions()
    diff.add_argument(
        "--chunk-size", type=_positive, help=f"first chunk's rows ({defaults.chunk_size}); DynamoDB: items a page"
    )
    diff.add_argument("--max-chunk-size", type=_positive, default=defaults.max_chunk_size)
    diff.add_argument("--bisection-factor", type=_positive, default=defaults.bisection_factor)
    diff.add_argument("--bisection-threshold", type=_positive, default=defaults.bisection_threshold)
    diff.add_argument("--threads", type=_positive, default=defaults.threads, help="chunks checked at once")
    diff.add_argument("--sample", type=int, default=0, metavar="N", help="show N differing rows with values")
    diff.add_argument("--format", choices=["text", "json", "jsonl"], default="text")
    diff.add_argument("--state-file", type=Path, help="save progress here; an interrupted diff resumes from it")
    diff.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS")
    diff.add_argument(
        "--max-outage",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="wait out a database that goes away mid-run (a failover, a restart) for this long (300)",
    )
    diff.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    items = diff.add_argument_group("DynamoDB tables (dynamodb://REGION URLs)")
    items.add_argument(
        "--segments", type=_positive, default=defaults.segments, metavar="N", help="parallel scan segments (1)"
    )
    items.add_argument(
        "--skip-extra", action="store_true", help="do not scan the targets for items the source lacks (saves reads)"
    )
    items.add_argument("--consistent-read", action="store_true", help="strongly consistent reads (twice the units)")
    items.add_argument(
        "--rate-limit", type=float, metavar="UNITS", help="read capacity units per second per table, at most"
    )
    repair = diff.add_argument_group(
        "repair (opt-in; the source is never written)",
        "Each key is read again on both sides and written only if it still differs, with the source's "
        "current row. With any of these, the exit status is 0 when no difference is left, 1 when some are.",
    )
    repair.add_argument("--write-missing", action="store_true", help="insert rows missing in the target")
    repair.add_argument("--write-differing", action="store_true", help="update differing rows in the target")
    repair.add_argument("--delete-extra", action="store_true", help="delete rows the source does not have")
    repair.add_argument("--dry-run", action="store_true", help="print the statements; write nothing")
    repair.add_argument("--write-batch", type=_positive, default=1000, metavar="N", help="rows per transaction")
    repair.add_argument("--audit-file", type=Path, help="append a JSON line per write (key, action, row hashes)")
    repair.add_argument(
        "--evolve-schema",
        action="store_true",
        help="first add to each target the compared columns its table lacks (ALTER TABLE), for the repair to fill",
    )
    diff.add_argument(
        "--recheck-after",
        type=float,
        metavar="SECONDS",
        help="check the differences again after this delay; report (and repair) only those still there",
    )

    cli_copy.add_parser(commands, _positive, _names)
    cli_replicate.add_parser(commands, _positive, _names)
    commands.add_parser("demo", help="diff two small SQLite databases with drift, in a temporary directory")
    return parser


def _validated(model: type[M], **values: Any) -> M:
    """The options as a model; a value out of its bounds is one line naming the option."""
    try:
        return model(**values)
    except ValidationError as exc:
        error = exc.errors()[0]
        option = "--" + str(error["loc"][0]).replace("_", "-") if error.get("loc") else "an option"
        raise InputError(f"{option}: {error['msg'].lower()}") from None


def run_diff(args: argparse.Namespace) -> int:
    source_url, target_urls, options, repair = _run_options(args)
    timeout = args.connect_timeout
    state = load_state(args.state_file, DiffState) if args.state_file else None
    on_outage = _outage_warner(args.max_outage)
    if args.evolve_schema:
        _evolve(args.table, source_url, target_urls, options, timeout)
    # A database away when a resumed run starts (a failover) is waited out as one away mid-run;
    # one a fresh run cannot reach is most often a wrong host or port: said at once.
    opened = wait_out(
        lambda: Differ(
            args.table,
            lambda: open_connector(source_url, connect_timeout=timeout),
            [lambda u=u: open_connector(u, connect_timeout=timeout) for u in target_urls],  # type: ignore[misc]
            options,
            source_label=source_url.redacted(),
            target_labels=[u.redacted() for u in target_urls],
            validate_key=state is None,  # a resumed diff checked its --key when it started
        ),
        args.max_outage if state is not None else 0.0,
        on_outage=on_outage,
    )
    gc_policy.relax()  # the drivers are loaded: what lives now lives for the whole run
    with opened as differ:
        for label, names in zip(differ.target_labels, differ.target_only_columns, strict=True):
            if names:
                print(
                    f"tablesync: warning: column(s) {', '.join(repr(n) for n in names)} exist only in {label}: "
                    "not compared (--strict-schema makes this an error)",
                    file=sys.stderr,
                )
        state = _walk(differ, state, args, on_outage)
        if args.recheck_after is not None:
            state = recheck_after(differ, state, args, source_url, target_urls, on_outage)
        result = differ.result(state)
        if repair.enabled:
            result.repairs = repair_targets(
                differ, result, repair, source_url, target_urls, timeout, args.audit_file, args.max_outage
            )
    if args.format in RENDERERS:
        print(RENDERERS[args.format](result))
    else:
        for done in result.repairs:
            print(repair_line(done), flush=True)
    if args.state_file and args.state_file.exists():
        args.state_file.unlink()  # the diff is complete; a new run starts afresh
    if repair.enabled and not repair.dry_run:
        return EXIT_DIFFERENT if any(r.remaining for r in result.repairs) else EXIT_SAME
    return EXIT_DIFFERENT if result.has_differences else EXIT_SAME


def _run_options(args: argparse.Namespace) -> tuple[DatabaseUrl, list[DatabaseUrl], DiffOptions, RepairOptions]:
    """The run's databases and options, every one checked before anything is opened."""
    if args.sample < 0:
        raise InputError("--sample must be 0 or more")
    source_url = parse_url(args.source)
    target_urls = [parse_url(t) for t in args.targets]
    chunk_size = args.chunk_size if args.chunk_size is not None else DiffOptions().chunk_size
    if args.max_chunk_size < chunk_size:
        raise InputError("--max-chunk-size must be at least --chunk-size")
    options = _validated(
        DiffOptions,
        key=args.key,
        columns=args.columns,
        ignore=args.ignore,
        where=args.where,
        reverse=args.reverse,
        stop_on_streak=args.stop_on_streak,
        chunk_size=chunk_size,
        # DynamoDB: items a page, where given (else its own 1 MB pages)
        page_items=min(args.chunk_size, MAX_KEYS_PER_REQUEST) if args.chunk_size else None,
        max_chunk_size=args.max_chunk_size,
        bisection_factor=args.bisection_factor,
        bisection_threshold=args.bisection_threshold,
        threads=args.threads,
        sample=args.sample,
        strict_schema=args.strict_schema,
        segments=args.segments,
        skip_extra=args.skip_extra,
        consistent_read=args.consistent_read,
        rate_limit=args.rate_limit,
    )
    repair = _validated(
        RepairOptions,
        write_missing=args.write_missing,
        write_differing=args.write_differing,
        delete_extra=args.delete_extra,
        dry_run=args.dry_run,
        write_batch=args.write_batch,
    )
    if args.dry_run and not repair.enabled:
        raise InputError("--dry-run goes with --write-missing, --write-differing or --delete-extra")
    if args.evolve_schema and not (repair.enabled and not repair.dry_run):
        raise InputError("--evolve-schema goes with --write-missing, --write-differing or --delete-extra")
    if args.evolve_schema and any(u.dialect == "dynamodb" for u in [source_url, *target_urls]):
        raise InputError("--evolve-schema is for SQL tables (a DynamoDB item takes any attribute)")
    if args.audit_file and not repair.enabled:
        raise InputError("--audit-file goes with --write-missing, --write-differing or --delete-extra")
    if not 0 <= args.max_outage <= 86_400:
        raise InputError("--max-outage must be from 0 to 86400 seconds")
    if args.recheck_after is not None and not 0 <= args.recheck_after <= 86_400:
        raise InputError("--recheck-after must be from 0 to 86400 seconds")
    if not 0 < args.connect_timeout <= 600:
        raise InputError("--connect-timeout must be more than 0 and at most 600 seconds")
    for url in target_urls if repair.enabled else []:
        if url.same_database(source_url):
            raise InputError(f"target {url.redacted()} is the source database: refusing to repair it")
    return source_url, target_urls, options, repair


def _evolve(
    table: str, source_url: DatabaseUrl, target_urls: list[DatabaseUrl], options: DiffOptions, timeout: float
) -> None:
    """--evolve-schema: each target gets the compared columns of the source its table lacks."""
    from .engine.bulk_copy import add_missing_columns, wanted_columns

    source = open_connector(source_url, connect_timeout=timeout)
    try:
        schema = source.describe(table)
        wanted = wanted_columns(table, schema, options)
        for url in target_urls:
            target = open_connector(url, connect_timeout=timeout, read_only=False)
            try:
                added = add_missing_columns(schema, source.portable_type, target, table, wanted)  # type: ignore[attr-defined]
            finally:
                target.close()
            if added:
                print(f"tablesync: added column(s) {', '.join(added)} to {table} in {url.redacted()}", file=sys.stderr)
    finally:
        source.close()


def _outage_warner(max_outage: float) -> OutageCallback:
    """One warning line when an outage starts, and one a minute while it lasts."""
    last_told = [-math.inf]

    def on_outage(seconds: float, exc: TransientDatabaseError) -> None:
        if seconds == 0 or seconds - last_told[0] >= 60:
            last_told[0] = seconds
            print(
                f"tablesync: warning: {exc} (away for {seconds:.0f} s; waiting up to --max-outage "
                f"{max_outage:.0f} s, progress kept)",
                file=sys.stderr,
            )

    return on_outage


def _walk(differ: Differ, state: DiffState | None, args: argparse.Namespace, on_outage: OutageCallback) -> DiffState:
    """The diff to its end (or from a saved state), saving the state and showing progress as it
    goes; jsonl prints each difference as found (after the recheck, with --recheck-after)."""
    if state is None:
        state = differ.initial_state()
    else:
        differ.check_state(state)
    progress = ProgressBar(state.source_rows) if not args.no_progress and args.format != "jsonl" else None
    found = sum(len(t.missing) + len(t.extra) + len(t.differing) for t in state.targets)

    def on_difference(target: int, kind: str, key: Key) -> None:
        nonlocal found
        found += 1
        if args.format == "jsonl" and args.recheck_after is None:
            print(difference_line(differ.target_labels[target], kind, key), flush=True)

    def on_state(new_state: DiffState) -> None:
        if args.state_file:
            save_state(args.state_file, new_state)
        if progress:
            progress.update(new_state.source_rows, differ.progress(new_state), found)

    try:
        state = differ.run(
            state,
            step_seconds=STEP_SECONDS,
            on_state=on_state,
            on_difference=on_difference,
            max_outage=args.max_outage,
            on_outage=on_outage,
        )
    except TransientDatabaseError as exc:
        kept = f"; the progress is in {args.state_file}: run again to resume" if args.state_file else ""
        raise DatabaseUnavailableError(
            f"a database stayed away longer than --max-outage {args.max_outage:.0f} s: {exc}{kept}"
        ) from None
    if progress:
        progress.finish()
    return state


def run_demo() -> int:
    from .demo import make_demo_databases

    with tempfile.TemporaryDirectory(prefix="tablesync-demo-") as tmp:
        source, target = make_demo_databases(Path(tmp))
        print(f"demo: {source.name} and {target.name} in {tmp}, table 'customers' with some drift\n")
        print(f"$ tablesync diff --table customers --sample 3 sqlite:///{source} sqlite:///{target}\n")
        args = build_parser().parse_args(
            [
                "diff",
                "--table",
                "customers",
                "--sample",
                "3",
                "--no-progress",
                f"sqlite:///{source}",
                f"sqlite:///{target}",
            ]
        )
        status = run_diff(args)
        print(f"\nexit status {status} (0: identical, 1: differences found, 2: error)")
    return EXIT_SAME


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already reported
        return exc.code if isinstance(exc.code, int) else EXIT_ERROR
    try:
        if args.command == "demo":
            return run_demo()
        if args.command == "copy":
            return cli_copy.run_copy(args)
        if args.command == "replicate":
            return cli_replicate.run_replicate(args)
        return run_diff(args)
    except TablesyncError as exc:
        print(f"tablesync: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, as other commands do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        resume = " (resume with the same command)" if getattr(args, "state_file", None) else ""
        print(f"\ntablesync: interrupted{resume}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback
        print(
            f"tablesync: error: unexpected {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
            file=sys.stderr,
        )
        return EXIT_ERROR


def entry_point() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry_point()
