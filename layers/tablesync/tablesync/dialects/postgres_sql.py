"""PostgreSQL's SQL: type mapping, canonical-text expressions and catalogue queries. Pure: the
connection (postgres.py) reads the database's default collation and passes it in."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import SchemaError
from ..models import Column, Key, Kind, TablePlan
from ..normalize import CANONICAL_NAN
from .base import SqlDialect, Statement
from .predicates import Condition

TYPE_KINDS: dict[str, Kind] = {
    "int2": Kind.INTEGER,
    "int4": Kind.INTEGER,
    "int8": Kind.INTEGER,
    "bool": Kind.BOOLEAN,
    "numeric": Kind.DECIMAL,
    "float4": Kind.FLOAT,
    "float8": Kind.FLOAT,
    "text": Kind.TEXT,
    "varchar": Kind.TEXT,
    "bpchar": Kind.TEXT,
    "name": Kind.TEXT,
    "citext": Kind.TEXT,
    "uuid": Kind.UUID,
    "json": Kind.JSON,
    "jsonb": Kind.JSON,
    "bytea": Kind.BYTES,
    "timestamp": Kind.TIMESTAMP,
    "timestamptz": Kind.TIMESTAMPTZ,
    "date": Kind.DATE,
    "time": Kind.TIME,
}
# libc collations whose order is code point order (glibc's C.UTF-8 compares code points).
BINARY_COLLATIONS = {"C", "POSIX", "C.UTF-8", "C.utf8", "ucs_basic"}
NAMEDATALEN = 64  # PostgreSQL's `name`: up to 63 bytes and a terminating NUL
NAME_BUCKET_TYPES = ("text", "varchar", "citext")  # whose byte-order text name holds unchanged
KEY_ARRAY_TYPES = {Kind.INTEGER: "bigint[]", Kind.TEXT: "text[]", Kind.UUID: "uuid[]"}

COLUMNS_SQL = """
            SELECT c.oid, a.attname, format_type(a.atttypid, a.atttypmod), t.typname,
                   NOT a.attnotnull, co.collname, bt.typname
            FROM pg_class c
            JOIN pg_namespace n ON n.oid = c.relnamespace
            JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
            JOIN pg_type t ON t.oid = a.atttypid
            LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
            LEFT JOIN pg_collation co ON co.oid = a.attcollation
            WHERE c.relname = %s AND n.nspname = COALESCE(%s, current_schema())
              AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
            ORDER BY a.attnum
            """
PRIMARY_KEY_SQL = """
            SELECT a.attname FROM pg_index i
            JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
            WHERE i.indrelid = %s AND i.indisprimary
            ORDER BY array_position(i.indkey::int2[], a.attnum)
            """


class PostgresDialect(SqlDialect):
    def __init__(self, default_collation: str = "C") -> None:
        # The database's collation, which a column declared without one (or COLLATE "default") has.
        self.default_collation = default_collation

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""').replace("%", "%%") + '"'

    def group_key_expr(self, column: Column) -> str:
        # PostgreSQL has no MIN(uuid): the uuid's text, which is its canonical form.
        if column.kind is Kind.UUID:
            return f"MIN({self.quote(column.name)}::text)"
        return super().group_key_expr(column)

    # --- the catalogue ----------------------------------------------------------------------------
    def columns_sql(self, table: str) -> Statement:
        """The table's columns, in order: (table oid, name, type, type name, nullable, collation,
        domain's base type name)."""
        schema, _, name = table.rpartition(".")
        return COLUMNS_SQL, [name, schema or None]

    def column_of(self, row: Sequence[Any]) -> Column:
        """A row of columns_sql as the column's kind and order."""
        _, col_name, native, typname, nullable, collation, base_type = row
        type_name = base_type or typname  # domains compare as their base type
        collation = self.default_collation if collation in (None, "default") else collation
        kind = TYPE_KINDS.get(type_name)
        # citext compares case-insensitively whatever its collation: never byte order.
        binary_order = kind is not Kind.TEXT or (collation in BINARY_COLLATIONS and type_name != "citext")
        return Column(
            name=col_name,
            native_type=native,
            kind=kind,
            nullable=bool(nullable),
            binary_order=binary_order,
            base_type=type_name,
        )

    def primary_key_sql(self, oid: int) -> Statement:
        """The primary key's column names, in key order."""
        return PRIMARY_KEY_SQL, [oid]

    def table_names_sql(self, schema: str | None) -> Statement:
        return (
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = COALESCE(%s, current_schema()) AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
            [schema],
        )

    def estimated_rows_sql(self, table: str) -> Statement | None:
        schema, _, name = table.rpartition(".")
        return (
            "SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relname = %s AND n.nspname = COALESCE(%s, current_schema())",
            [name, schema or None],
        )

    # --- values -----------------------------------------------------------------------------------
    def write_value(self, column: Column, text: str | None) -> Any:
        if text is not None and column.kind is Kind.TIMESTAMPTZ and text[:1].isdigit():
            # Canonical timestamptz texts are in UTC; the era comes after the offset.
            return text[:-3] + "+00 BC" if text.endswith(" BC") else text + "+00"
        return super().write_value(column, text)

    def key_value_out(self, column: Column, value: Any) -> Any:
        if isinstance(value, str) and column.base_type == "bpchar":
            return value.rstrip(" ")  # char(n) without its padding, as its ::text is
        return super().key_value_out(column, value)

    def filter_value_in(self, column: Column, value: Any) -> Any:
        if isinstance(value, bool):
            return value  # booleans bind as booleans
        return super().filter_value_in(column, value)

    # --- expressions ------------------------------------------------------------------------------
    def canonical_expr(self, column: Column) -> str:
        q = self.quote(column.name)
        kind = column.kind
        if kind is Kind.INTEGER:
            return f"{q}::text"
        if kind is Kind.BOOLEAN:
            return f"{q}::int::text"
        if kind is Kind.DECIMAL:
            return f"trim_scale({q})::text"
        if kind is Kind.FLOAT:
            # -0.0 is 0.0, and every NaN (any sign or payload; PostgreSQL's NaN = NaN) one NaN.
            return (
                f"CASE WHEN {q} = 0 THEN '0000000000000000' WHEN {q} = 'NaN' THEN '{CANONICAL_NAN}' "
                f"ELSE encode(float8send({q}::float8), 'hex') END"
            )
        if kind in (Kind.TEXT, Kind.UUID, Kind.JSON):
            return f"{q}::text"
        if kind is Kind.BYTES:
            return f"encode({q}, 'hex')"
        if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
            # Years 1 to 9999... as to_char writes them; BC years get ' BC' and the infinities
            # their names (to_char gives NULL for them), so that neither equals an AD value or NULL.
            # A timestamptz is written in the session's time zone, pinned to UTC.
            fmt = "'YYYY-MM-DD HH24:MI:SS.US'"
            return (
                f"CASE WHEN {q} >= '0001-01-01' AND {q} < 'infinity' THEN to_char({q}, {fmt}) "
                f"ELSE COALESCE(to_char({q}, {fmt[:-1]} BC'), {q}::text) END"
            )
        if kind is Kind.DATE:
            return f"{q}::text"  # ISO, with ' BC' and 'infinity' (DateStyle is pinned)
        if kind is Kind.TIME:
            return f"to_char({q}, 'HH24:MI:SS.US')"
        raise SchemaError(f"column {column.name!r} has unsupported type {column.native_type}")

    def octet_length(self, expr: str) -> str:
        return f"octet_length({expr})::text"

    def concat(self, parts: Sequence[str]) -> str:
        return "(" + " || ".join(parts) + ")"

    def hash60(self, expr: str) -> str:
        # convert_to: the UTF-8 bytes whatever the database encoding (sha256 takes bytea). The first
        # 8 bytes as 64 bits, shifted right by 4: the first 15 hex digits, never negative.
        digest = f"sha256(convert_to({expr}, 'UTF8'))"
        return f"(('x' || encode(substring({digest} from 1 for 8), 'hex'))::bit(64) >> 4)::bigint"

    def key_order_expr(self, column: Column) -> str:
        q = self.quote(column.name)
        if column.binary_order:
            return q
        # citext's operators ignore case whatever the collation: compare its text.
        return f'{q}::text COLLATE "C"' if column.base_type == "citext" else f'{q} COLLATE "C"'

    def text_order_expr(self, column: Column) -> str:
        q = self.quote(column.name)
        if column.kind is Kind.UUID or column.base_type in ("bpchar", "citext"):
            return f'{q}::text COLLATE "C"'  # the canonical text: lowercase, without char(n) padding
        return f'{q} COLLATE "C"'

    def bucket_expr(self, plan: TablePlan, points: Sequence[Key], offset: int) -> Condition:
        # width_bucket binary-searches a sorted array in C: far cheaper per row than a CASE tree.
        if len(plan.key) == 1 and points and plan.key[0].kind in KEY_ARRAY_TYPES:
            key = plan.key[0]
            expr = self.key_order_expr(key)
            if key.base_type in NAME_BUCKET_TYPES and all(len(str(p[0]).encode()) < NAMEDATALEN for p in points):
                # Over text[] width_bucket walks the array from its start at every step of its
                # search (variable-width elements): O(points) per row, 3x the row hash's cost at
                # 2,048 points. `name` is fixed-width (64 bytes) and compares byte by byte under
                # "C": keys shorter than 64 bytes (name would cut longer ones) take that search.
                fixed = f'width_bucket(({expr})::name COLLATE "C", %s::name[] COLLATE "C")'
                whole = f'width_bucket({expr} COLLATE "C", %s::text[] COLLATE "C")'
                values = [p[0] for p in points]
                sql = f"(CASE WHEN octet_length({expr}) < {NAMEDATALEN} THEN {fixed} ELSE {whole} END + {int(offset)})"
                return sql, [values, values]
            array = f"%s::{KEY_ARRAY_TYPES[key.kind]}"  # type: ignore[index]
            if not key.binary_order:
                array += ' COLLATE "C"'
            return f"(width_bucket({expr}, {array}) + {int(offset)})", [[p[0] for p in points]]
        return super().bucket_expr(plan, points, offset)

    def mod(self, left: str, right: str) -> str:
        return f"mod({left}, {right})"

    def sampled_table(self, plan: TablePlan, fraction: float) -> str:
        # BERNOULLI picks rows (SYSTEM would pick whole pages: runs of neighbouring keys).
        return f"{self.table_ref(plan.table)} TABLESAMPLE BERNOULLI ({100 * float(fraction)!r})"

    def random_below(self, fraction: float) -> str:
        return "1 = 1"
