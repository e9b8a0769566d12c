"""Table plans: what is compared on each side, from the sides' schemas and the options. Pure: no
connection, no thread; the engine, the repair and the app's steps all plan through build_plans.

A plan names the key columns (in key order) and the compared columns of one side, with that
side's own column names and types, the filter (typed by the source's kinds, renamed to the side's
spelling) and the columns the filter needs that are not compared."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from .connectors import Connector
from .errors import InputError, KeyColumnError, SchemaError, UnsupportedTypeError
from .filters import filter_columns, parse_filter, rename_columns, typed_filter
from .models import KEY_KINDS, Column, DiffOptions, Filter, Kind, TablePlan, TableSchema, index_serves, kinds_compatible


@dataclass(frozen=True)
class TablePlans:
    """The plans of one table on the source and each target, and what follows from them."""

    source: TablePlan
    targets: list[TablePlan]
    key_names: list[str]
    column_names: list[str]
    # Per target: a side holding JSON is compared by meaning, its rows read again where hashes differ.
    verify_json: list[bool]
    # Per target: columns only it has (not compared; the result names them, --strict-schema refuses).
    target_only_columns: list[list[str]]
    # Per target, then the source: whether the side's primary key is within the key columns (else
    # it may hold a key twice, reported as an extra row, or a NULL in it).
    unique_key: list[bool]
    # Per target, then the source: whether the side's index cannot serve byte-order key ranges.
    scan_bound: list[bool]
    # Compared as stores of items (DynamoDB on some side): by scan and lookup, rechecked by item hash.
    items: bool = False


def describe_plans(
    table: str, source: Connector, targets: Sequence[Connector], options: DiffOptions, target_labels: Sequence[str]
) -> TablePlans:
    """build_plans from the schemas the connectors describe (one call each, no thread pool): for
    the paths that need plans but no walk (repair of given keys, a recheck)."""
    schemas = [source.describe(table), *(t.describe(table) for t in targets)]
    plan = build_plans if all(s.key_ordered for s in schemas) else item_plans
    return plan(table, schemas, options, target_labels)


def require(schema: TableSchema, name: str, label: str) -> Column:
    col = schema.column(name)
    if col is None:
        raise SchemaError(f"unknown column {name!r} in table {schema.table} on {label}")
    return col


def build_plans(
    table: str, schemas: Sequence[TableSchema], options: DiffOptions, target_labels: Sequence[str]
) -> TablePlans:
    """The plans of `table` from the schemas of the source (first) and the targets."""
    source_schema, target_schemas = schemas[0], schemas[1:]
    key_names = list(options.key or source_schema.primary_key)
    key_cols = _key_columns(table, source_schema, key_names)
    compared = _compared_columns(source_schema, options, {c.name for c in key_cols})
    where, filter_names = _typed_where(options, schemas, ["the source", *target_labels])
    planned = {c.name for c in key_cols} | {c.name for c in compared}

    def plan_for(schema: TableSchema, label: str) -> TablePlan:
        side_where = None
        if where is not None:
            side_where = rename_columns(where, lambda n: require(schema, n, label).name)
        return TablePlan(
            table=table,
            key=[_match(schema, label, c) for c in key_cols],
            columns=[_match(schema, label, c) for c in compared],
            where=side_where,
            filter_columns=[require(schema, n, label) for n in filter_names if n not in planned],
        )

    source_plan = plan_for(source_schema, "the source")
    target_plans = [plan_for(s, target_labels[i]) for i, s in enumerate(target_schemas)]
    target_only = [[c.name for c in s.columns if source_schema.column(c.name) is None] for s in target_schemas]
    if options.strict_schema:
        for label, names in zip(target_labels, target_only, strict=True):
            if names:
                raise SchemaError(
                    f"column(s) {', '.join(repr(n) for n in names)} exist only in {label} (--strict-schema)"
                )
    keys_lower = {n.lower() for n in key_names}
    return TablePlans(
        source=source_plan,
        targets=target_plans,
        key_names=[c.name for c in key_cols],
        column_names=[c.name for c in compared],
        verify_json=[source_plan.has_json or p.has_json for p in target_plans],
        target_only_columns=target_only,
        unique_key=[
            bool(s.primary_key) and {n.lower() for n in s.primary_key} <= keys_lower
            for s in [*target_schemas, source_schema]
        ],
        scan_bound=[not index_serves(p.key, None, None) for p in [*target_plans, source_plan]],
    )


# Options that shape SQL range queries and have no meaning for a store of items (DynamoDB).
RANGE_ONLY_OPTIONS = {
    "key": "--key",
    "columns": "--columns",
    "where": "--where",
    "lo": "--lo",
    "hi": "--hi",
    "stop_on_streak": "--stop-on-streak",
}


def item_plans(
    table: str, schemas: Sequence[TableSchema], options: DiffOptions, target_labels: Sequence[str]
) -> TablePlans:
    """The plans of a table in stores of items (DynamoDB) on every side: its key attributes
    (the same names and types on every side) and how its items are read; every other attribute
    is compared, but the ignored ones."""
    for field, flag in RANGE_ONLY_OPTIONS.items():
        if getattr(options, field) is not None:
            raise InputError(f"{flag} is not available for DynamoDB tables")
    if options.reverse:
        raise InputError("--reverse is not available for DynamoDB tables")
    labels = ["the source", *target_labels]
    items = next(s for s in schemas if not s.key_ordered)  # the key schema every side must have
    key = [c for name in items.primary_key for c in items.columns if c.name == name]

    def shown(schema: TableSchema) -> str:
        return ", ".join(f"{c.name} ({c.native_type})" for c in schema.columns if c.name in schema.primary_key)

    def plan(schema: TableSchema, label: str) -> TablePlan:
        read = {"ignore": list(options.ignore), "consistent_read": options.consistent_read}
        if not schema.key_ordered:
            if shown(schema) != shown(items) or schema.primary_key != items.primary_key:
                raise SchemaError(
                    f"{label} has the key {shown(schema)}, {shown(items)} elsewhere: the key schemas must match"
                )
            return TablePlan(table=table, key=key, columns=[], read_units_per_second=options.rate_limit, **read)
        return _sql_item_plan(table, schema, label, key, options)

    plans = [plan(schema, label) for schema, label in zip(schemas, labels, strict=True)]
    targets = len(schemas) - 1
    return TablePlans(
        source=plans[0],
        targets=plans[1:],
        key_names=[c.name for c in key],
        # The SQL side's columns, where there is one: a resumed run compares the same columns.
        column_names=next(([c.name for c in p.columns] for p in plans if p.columns), []),
        verify_json=[False] * targets,
        target_only_columns=[[] for _ in range(targets)],
        unique_key=[True] * (targets + 1),
        scan_bound=[False] * (targets + 1),
        items=True,
    )


# The DynamoDB key types a SQL key column may hold the same values as.
ITEM_KEY_KINDS = {"N": {Kind.INTEGER}, "S": {Kind.TEXT, Kind.UUID}, "B": set()}


def _sql_item_plan(table: str, schema: TableSchema, label: str, key: list[Column], options: DiffOptions) -> TablePlan:
    """A SQL table compared with DynamoDB items: its key columns are the key attributes (same
    names, values of the same type), its primary key; every other column an attribute."""
    if sorted(n.lower() for n in schema.primary_key) != sorted(c.name.lower() for c in key):
        raise KeyColumnError(
            f"{label}'s primary key ({', '.join(schema.primary_key) or 'none'}) must be the DynamoDB key "
            f"({', '.join(c.name for c in key)})"
        )
    key_columns = []
    for item_key in key:
        column = require(schema, item_key.name, label)
        if column.name != item_key.name:  # DynamoDB's names are case-sensitive: an item's are its own
            raise SchemaError(
                f"key column {column.name!r} in {label} is {item_key.name!r} in DynamoDB: the names must match"
            )
        if column.kind not in ITEM_KEY_KINDS[item_key.native_type]:
            raise SchemaError(
                f"key column {column.name!r} is {column.native_type} in {label}, {item_key.native_type} in DynamoDB"
            )
        key_columns.append(column)
    # Attribute names are case-sensitive: a column is the attribute of exactly its name.
    ignored = set(options.ignore)
    names = {c.name for c in key_columns}
    columns = [c for c in schema.columns if c.name not in names and c.name not in ignored]
    for column in columns:
        if column.kind is None:
            raise UnsupportedTypeError(
                f"column {column.name!r} has unsupported type {column.native_type} in {label}: "
                f"exclude it with --ignore {column.name}"
            )
    return TablePlan(table=table, key=key_columns, columns=columns)


def _key_columns(table: str, schema: TableSchema, key_names: list[str]) -> list[Column]:
    if not key_names:
        raise KeyColumnError(f"table {table} has no primary key on the source: give --key COL[,COL]")
    key_cols = [require(schema, n, "source") for n in key_names]
    for col in key_cols:
        if col.kind not in KEY_KINDS:
            raise KeyColumnError(
                f"key column {col.name!r} has type {col.native_type}; keys must be integer, text or uuid columns"
            )
    return key_cols


def _compared_columns(schema: TableSchema, options: DiffOptions, key_set: set[str]) -> list[Column]:
    wanted = [require(schema, n, "source") for n in options.columns] if options.columns else list(schema.columns)
    ignored = {require(schema, n, "source").name for n in options.ignore}
    compared = [c for c in wanted if c.name not in key_set and c.name not in ignored]
    for col in compared:
        if col.kind is None:
            raise UnsupportedTypeError(
                f"column {col.name!r} has unsupported type {col.native_type}: exclude it with --ignore {col.name}"
            )
    return compared


def _typed_where(
    options: DiffOptions, schemas: Sequence[TableSchema], labels: Sequence[str]
) -> tuple[Filter | None, list[str]]:
    """The filter in the source's column names, typed by each side's kinds, and the columns it names."""
    if options.where is None:
        return None, []
    where = rename_columns(parse_filter(options.where), lambda n: require(schemas[0], n, "the source").name)
    names = list(dict.fromkeys(filter_columns(where)))
    kinds = {
        name: [require(schema, name, label).kind for schema, label in zip(schemas, labels, strict=True)]
        for name in names
    }
    return typed_filter(where, kinds), names


def _match(schema: TableSchema, label: str, col: Column) -> Column:
    """The side's own column of a source column, comparable with it."""
    other = schema.column(col.name)
    if other is None:
        raise SchemaError(f"column {col.name!r} is missing in {label}")
    if other.kind is None:
        raise UnsupportedTypeError(
            f"column {col.name!r} has unsupported type {other.native_type} in {label}: "
            f"exclude it with --ignore {col.name}"
        )
    assert col.kind is not None
    if not kinds_compatible(col.kind, other.kind):
        raise SchemaError(
            f"column {col.name!r} cannot be compared: source type {col.native_type}, {label} type {other.native_type}"
        )
    return other
