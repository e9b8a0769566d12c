"""ListTables: the run's check definition (stored in SSM, in S3, or inline) -> the Map's items:
tables, or key-range shards of them, or a re-sync of given keys."""

from __future__ import annotations

import itertools
import json
import math
from typing import Any
from urllib.parse import urlsplit

from ..connectors import Connector
from ..errors import InputError, SchemaError, TablesyncError
from ..models import Key, Kind, SplitRequest, TablePlan
from .checks import TableSpec, parse_definition
from .environment import ConnectorOpener, diff_options, hides_values, repair_options
from .events import ListTablesResult, RunInput, TableItem
from .stores import Clients, DefinitionSource, aws_error
from .stores import definitions as stored_definitions


def load_definition(run: RunInput, definitions: DefinitionSource) -> dict[str, Any]:
    sources = [s for s in (run.check is not None, run.check_s3, run.check_ssm) if s]
    if len(sources) != 1:
        raise InputError("the execution input needs exactly one of check, check_s3 and check_ssm")
    if run.check is not None:
        return run.check
    where = run.check_s3 or run.check_ssm or ""
    try:
        if run.check_s3:
            parts = urlsplit(run.check_s3)
            if parts.scheme != "s3" or not parts.netloc or not parts.path.strip("/"):
                raise InputError(f"check_s3 must be s3://bucket/key, got {run.check_s3!r}")
            body: bytes | str = definitions.s3_object(parts.netloc, parts.path.lstrip("/"))
        else:
            body = definitions.ssm_parameter(where)
    except TablesyncError:
        raise
    except Exception as exc:  # noqa: BLE001 - the store's (botocore's) errors: one clear line
        raise InputError(f"cannot read the check definition from {where}: {aws_error(exc)}") from None
    try:
        data: dict[str, Any] = json.loads(body)
    except ValueError:
        raise InputError(f"the check definition in {where} is not JSON") from None
    return data


@hides_values
def list_tables(
    run: RunInput,
    clients: Clients | None,
    connectors: ConnectorOpener,
    max_concurrency: int = 10,
    *,
    definitions: DefinitionSource | None = None,
) -> ListTablesResult:
    """The run's Map items; the check definition read from `definitions` (by default the S3
    objects and SSM parameters the clients reach)."""
    definition = parse_definition(load_definition(run, definitions or stored_definitions(clients)))
    source = connectors(definition.source)
    try:
        items_stores = source.dialect == "dynamodb"
        for name in definition.targets:
            target = connectors(name)  # every database must have a connector deployed
            items_stores = items_stores or target.dialect == "dynamodb"
            target.close()
        if items_stores:
            _check_item_stores(definition.specs())
        _check_copies(definition.specs())
        entries: list[tuple[str, TableSpec]] = []
        for spec in definition.specs():
            if spec.pattern is not None:
                names = source.list_tables(spec.pattern)
                entries += [(name, spec) for name in names]
            else:
                assert spec.table is not None
                entries.append((spec.table, spec))
        seen: dict[str, TableSpec] = {}
        for name, spec in entries:
            seen.setdefault(name, spec)  # the first entry naming a table wins
        if run.tables is not None:
            unknown = sorted(set(run.tables) - set(seen))
            if unknown:
                raise InputError(f"table(s) not in the check definition: {', '.join(unknown)}")
            seen = {name: seen[name] for name in run.tables}
        if run.resync is not None:
            return ListTablesResult(
                run_id=run.run_id,
                owner=run.owner,
                max_concurrency=1,
                items=[_resync_item(run, definition.source, definition.targets, seen)],
            )
        items: list[TableItem] = []
        for table, spec in seen.items():
            options = diff_options(spec)
            bounds = _shard_bounds(source, table, spec) if spec.shards > 1 else [None, None]
            shards = len(bounds) - 1
            for index, (lo, hi) in enumerate(itertools.pairwise(bounds)):
                items.append(
                    TableItem(
                        run_id=run.run_id,
                        owner=run.owner,
                        item_id=table if shards == 1 else f"{table}#{index + 1}/{shards}",
                        table=table,
                        source=definition.source,
                        targets=list(definition.targets),
                        options=options.model_copy(update={"lo": lo, "hi": hi}),
                        shard=index,
                        shards=shards,
                        recheck_after=spec.recheck_after,
                        repair=repair_options(spec),
                        check_ssm=run.check_ssm,
                        mode=spec.mode,
                        group_column=spec.group_column,
                    )
                )
    finally:
        source.close()
    return ListTablesResult(run_id=run.run_id, owner=run.owner, max_concurrency=max_concurrency, items=items)


def _check_copies(specs: list[TableSpec]) -> None:
    """What a copy or a replication cannot be asked for, refused before any run."""
    for spec in specs:
        name = spec.table or spec.pattern
        if spec.mode in ("copy", "replicate") and spec.shards > 1:
            raise InputError(f"{name}: a {spec.mode} walks the table in key order: use one shard")
        if spec.group_column is not None and spec.mode != "replicate":
            raise InputError(f"{name}: group_column is for mode replicate")


def _check_item_stores(specs: list[TableSpec]) -> None:
    """What a definition with a DynamoDB database cannot ask for (yet), refused before any run."""
    for spec in specs:
        name = spec.table or spec.pattern
        if spec.pattern is not None:
            raise InputError(f"{name}: name DynamoDB tables one by one (no patterns)")
        if spec.shards > 1:
            raise InputError(f"{name}: shards are key ranges, which DynamoDB has not: use one shard")
        if spec.mode in ("copy", "replicate"):
            raise InputError(f"{name}: mode {spec.mode} is for SQL tables (DynamoDB tables are checked and repaired)")


def _resync_item(run: RunInput, source: str, targets: list[str], specs: dict[str, TableSpec]) -> TableItem:
    """A re-sync: one item that reads the given keys again on every target (no walk); the report
    then queues those still different for the repair Lambda, as after a check."""
    assert run.resync is not None
    table = run.resync.table
    spec = specs.get(table)
    if spec is None:
        raise InputError(f"resync.table: {table} is not in the check definition")
    if not run.check_ssm:
        raise InputError("resync: give the stored check definition (check_ssm): only it can enable a repair")
    repair = repair_options(spec)
    if repair is None:
        raise InputError(f"resync: the stored check definition does not enable repair for table {table}")
    width = len(run.resync.keys[0])
    if any(len(k) != width for k in run.resync.keys):
        raise InputError("resync.keys: every key must have the same number of values")
    return TableItem(
        run_id=run.run_id,
        owner=run.owner,
        item_id=f"{table}#resync",
        table=table,
        source=source,
        targets=list(targets),
        options=diff_options(spec),
        repair=repair,
        keys=run.resync.keys,
        check_ssm=run.check_ssm,
    )


def _shard_bounds(source: Connector, table: str, spec: TableSpec) -> list[Key | None]:
    """Keys cutting the table into about `spec.shards` ranges of equal row counts (the first and
    last unbounded, so every key, also one only a target holds, falls in exactly one shard)."""
    schema = source.describe(table)
    names = spec.key or schema.primary_key
    if not names:
        raise SchemaError(f"table {table} has no primary key: give its key in the check definition")
    key = []
    for name in names:
        column = schema.column(name)
        if column is None:
            raise SchemaError(f"unknown key column {name!r} in table {table}")
        key.append(column)
    plan = TablePlan(table=table, key=key, columns=[])
    key_range = source.key_range(plan)
    if key_range.min_key is None or key_range.max_key is None:
        return [None, None]
    cuts: list[Key] = []
    if len(key) == 1 and key[0].kind is Kind.INTEGER:
        low, high = int(key_range.min_key[0] or 0), int(key_range.max_key[0] or 0)
        width = (high - low + 1) / spec.shards
        cuts = [[low + round(width * i)] for i in range(1, spec.shards)]
    else:
        rows = key_range.estimated_rows or source.checksum(plan, None, None).count
        step = max(1, math.ceil(rows / spec.shards))
        points = source.split_points(plan, [SplitRequest(step=step)])[0]
        cuts = points[: spec.shards - 1]
    distinct = [c for i, c in enumerate(cuts) if i == 0 or c != cuts[i - 1]]
    return [None, *distinct, None]
