"""MySQL 8 and MariaDB 10.11: type mapping, canonical-text expressions and catalogue queries. Pure:
the connection (mysql.py) reads the server's flavour and passes it in."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import SchemaError
from ..models import Column, Key, Kind, TablePlan, fixed_prefix
from ..normalize import INVALID_MARK
from .base import SqlDialect, Statement
from .predicates import Condition

TYPE_KINDS: dict[str, Kind] = {
    "tinyint": Kind.INTEGER,
    "smallint": Kind.INTEGER,
    "mediumint": Kind.INTEGER,
    "int": Kind.INTEGER,
    "integer": Kind.INTEGER,
    "bigint": Kind.INTEGER,
    "year": Kind.INTEGER,
    "decimal": Kind.DECIMAL,
    "numeric": Kind.DECIMAL,
    "float": Kind.FLOAT,
    "double": Kind.FLOAT,
    "real": Kind.FLOAT,
    "char": Kind.TEXT,
    "varchar": Kind.TEXT,
    "tinytext": Kind.TEXT,
    "text": Kind.TEXT,
    "mediumtext": Kind.TEXT,
    "longtext": Kind.TEXT,
    "enum": Kind.TEXT,
    "set": Kind.TEXT,
    "uuid": Kind.UUID,
    "json": Kind.JSON,
    "binary": Kind.BYTES,
    "varbinary": Kind.BYTES,
    "tinyblob": Kind.BYTES,
    "blob": Kind.BYTES,
    "mediumblob": Kind.BYTES,
    "longblob": Kind.BYTES,
    "datetime": Kind.TIMESTAMP,
    "timestamp": Kind.TIMESTAMPTZ,
    "date": Kind.DATE,
    "time": Kind.TIME,
}

COLUMNS_SQL = """
            SELECT COLUMN_NAME, COLUMN_TYPE, DATA_TYPE, IS_NULLABLE, CHARACTER_SET_NAME, COLLATION_NAME
            FROM information_schema.COLUMNS
            WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s
            ORDER BY ORDINAL_POSITION
            """
PRIMARY_KEY_SQL = """
            SELECT COLUMN_NAME FROM information_schema.KEY_COLUMN_USAGE
            WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s AND CONSTRAINT_NAME = 'PRIMARY'
            ORDER BY ORDINAL_POSITION
            """

TWO_POW_52 = "4503599627370496"
TWO_POW_63 = "9223372036854775808"


def float_bits_sql(value: str) -> str:
    """The IEEE 754 bits of a DOUBLE as 16 lowercase hex digits, computed exactly with arithmetic
    (MySQL has no function for them). Scaling by powers of two is exact for doubles; LOG2's last-bit
    error is corrected by looking at the scaled mantissa."""
    a = f"ABS({value})"
    e0 = f"GREATEST(LEAST(FLOOR(LOG2({a})), 1023), -1074)"
    m0 = f"({a} / POW(2, {e0}))"
    e = f"({e0} + ({m0} >= 2) - ({m0} < 1))"
    normal = (
        f"(CAST({e} + 1023 AS DECIMAL(20,0)) * {TWO_POW_52}"
        f" + CAST(({a} / POW(2, {e}) - 1) * {TWO_POW_52} AS DECIMAL(20,0)))"
    )
    subnormal = f"CAST({a} * POW(2, 1022) * {TWO_POW_52} AS DECIMAL(20,0))"
    bits = f"(({value} < 0) * {TWO_POW_63} + CASE WHEN {e} >= -1022 THEN {normal} ELSE {subnormal} END)"
    return f"CASE WHEN {value} = 0 THEN '0000000000000000' ELSE LOWER(LPAD(CONV({bits}, 10, 16), 16, '0')) END"


class MysqlDialect(SqlDialect):
    row_values = False  # MariaDB's range optimizer does not use indexes for (a, b) >= (x, y)
    begin_sql = "START TRANSACTION"

    def __init__(self, mariadb: bool = False) -> None:
        # MariaDB, not MySQL: its JSON columns and its statement timeout differ.
        self.mariadb = mariadb

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``").replace("%", "%%") + "`"

    def statement_timeout_sql(self, seconds: float) -> str:
        # MariaDB: any statement, in seconds; MySQL 8: SELECTs, in milliseconds.
        if self.mariadb:
            return f"SET SESSION max_statement_time = {float(seconds)}"
        return f"SET SESSION max_execution_time = {int(seconds * 1000)}"

    # --- the catalogue ----------------------------------------------------------------------------
    def columns_sql(self, table: str) -> Statement:
        """The table's columns, in order: (name, column type, data type, nullable, charset, collation)."""
        schema, _, name = table.rpartition(".")
        return COLUMNS_SQL, [schema or None, name]

    def json_columns_sql(self, table: str) -> Statement | None:
        """The table's check clauses, where MariaDB's JSON columns show (None on MySQL, whose JSON
        is a type of its own)."""
        if not self.mariadb:
            return None
        schema, _, name = table.rpartition(".")
        return (
            "SELECT CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "
            "WHERE CONSTRAINT_SCHEMA = COALESCE(%s, DATABASE()) AND TABLE_NAME = %s",
            [schema or None, name],
        )

    def json_column_names(self, rows: Sequence[Sequence[Any]]) -> set[str]:
        """The columns MariaDB declared JSON: it stores them as LONGTEXT with a json_valid check."""
        names = set()
        for (clause,) in rows:
            match = re.fullmatch(r"\s*json_valid\(`((?:[^`]|``)+)`\)\s*", str(clause))
            if match:
                names.add(match.group(1).replace("``", "`"))
        return names

    def column_of(self, row: Sequence[Any], json_columns: set[str]) -> Column:
        """A row of columns_sql as the column's kind and order."""
        col_name, column_type, data_type, nullable, charset, collation = row
        column_type = str(column_type).lower()
        kind = TYPE_KINDS.get(str(data_type).lower())
        if column_type.startswith("tinyint(1)"):
            kind = Kind.BOOLEAN
        if col_name in json_columns:
            kind = Kind.JSON  # MariaDB's JSON is a LONGTEXT checked by json_valid()
        # MariaDB's UUID type orders version-1 UUIDs by their time fields, not byte by byte.
        binary_order = kind is not Kind.UUID
        if kind in (Kind.TEXT, Kind.UUID) and charset:
            collation = str(collation or "")
            binary_order = charset == "binary" or "nopad_bin" in collation or collation.endswith("0900_bin")
        return Column(
            name=col_name,
            native_type=column_type,
            kind=kind,
            nullable=nullable == "YES",
            binary_order=binary_order,
            charset=charset,
            collation=collation or None,
            base_type=str(data_type).lower(),
        )

    def primary_key_sql(self, table: str) -> Statement:
        """The primary key's column names, in key order."""
        schema, _, name = table.rpartition(".")
        return PRIMARY_KEY_SQL, [schema or None, name]

    def table_names_sql(self, schema: str | None) -> Statement:
        return (
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE())",
            [schema],
        )

    def estimated_rows_sql(self, table: str) -> Statement | None:
        schema, _, name = table.rpartition(".")
        return (
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = COALESCE(%s, DATABASE()) "
            "AND TABLE_NAME = %s",
            [schema or None, name],
        )

    # --- expressions ------------------------------------------------------------------------------
    def _utf8(self, column: Column) -> str:
        """The column's text in utf8mb4 with one collation, so that CONCAT never meets an
        'illegal mix of collations' (MariaDB refuses to mix *_nopad_bin with others)."""
        q = self.quote(column.name)
        if column.charset == "utf8mb4":
            return f"{q} COLLATE utf8mb4_bin"
        if column.charset and column.charset != "binary":
            return f"CONVERT({q} USING utf8mb4) COLLATE utf8mb4_bin"
        return q

    def canonical_expr(self, column: Column) -> str:
        q = self.quote(column.name)
        kind = column.kind
        # ZEROFILL columns print their padding zeros; + 0 gives the number itself.
        number = f"{q} + 0" if "zerofill" in column.native_type else q
        if kind in (Kind.INTEGER, Kind.BOOLEAN):
            return f"CAST({number} AS CHAR)"
        if kind is Kind.DECIMAL:
            s = f"CAST({number} AS CHAR)"
            scale = _decimal_scale(column.native_type)
            if scale == 0:
                return s
            if scale is not None:
                # A declared scale always prints its point: trimming needs no test for one.
                return f"TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s}))"
            return (
                f"CASE WHEN INSTR({s}, '.') > 0 THEN TRIM(TRAILING '.' FROM TRIM(TRAILING '0' FROM {s})) ELSE {s} END"
            )
        if kind is Kind.FLOAT:
            value = f"CAST({q} AS DOUBLE)" if column.native_type.startswith("float") else q
            return float_bits_sql(value)
        if kind in (Kind.TEXT, Kind.JSON):
            return (
                self._utf8(column)
                if column.native_type.split("(")[0] not in ("enum", "set", "json")
                else f"CAST({q} AS CHAR)"
            )
        if kind is Kind.UUID:
            return f"CAST({q} AS CHAR)"
        if kind is Kind.BYTES:
            return f"LOWER(HEX({q}))"
        if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.DATE):
            return self._temporal_expr(column, with_length=False)
        if kind is Kind.TIME:
            return f"TIME_FORMAT({q}, '%%H:%%i:%%s.%%f')"
        raise SchemaError(f"column {column.name!r} has unsupported type {column.native_type}")

    def _temporal_expr(self, column: Column, *, with_length: bool) -> str:
        """A date or timestamp's text. Year 0 is no year, so MySQL's "zero dates" hold no value
        another engine holds: they are marked as stored text (normalize.INVALID_MARK), as a SQLite
        copy of them is; in the row string the mark is followed by the text's length."""
        q = self.quote(column.name)
        fmt = "'%%Y-%%m-%%d'" if column.kind is Kind.DATE else "'%%Y-%%m-%%d %%H:%%i:%%s.%%f'"
        text = f"DATE_FORMAT({q}, {fmt})"
        marked = [f"'{INVALID_MARK}'", *([f"LENGTH({text})", "':'"] if with_length else []), text]
        return f"IF({q} < '0001-01-01', CONCAT({', '.join(marked)}), {text})"

    def field_expr(self, column: Column) -> str:
        if column.kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.DATE):
            return self._temporal_expr(column, with_length=True)
        return super().field_expr(column)

    def octet_length(self, expr: str) -> str:
        return f"LENGTH({expr})"

    def concat(self, parts: Sequence[str]) -> str:
        return f"CONCAT({', '.join(parts)})"

    def hash60(self, expr: str) -> str:
        return f"CAST(CONV(SUBSTRING(SHA2({expr}, 256), 1, 15), 16, 10) AS UNSIGNED)"

    def key_order_expr(self, column: Column) -> str:
        if column.binary_order:
            return self.quote(column.name)
        if column.native_type.startswith("uuid"):
            # MariaDB's UUID type orders by its own segment order; its 16 bytes are in the text's
            # order (key_value_in binds the bounds as those bytes). A CAST to CHAR formats all 36
            # characters at every comparison: twice the cost.
            return f"CAST({self.quote(column.name)} AS BINARY(16))"
        if self.mariadb and column.charset and column.charset != "binary":
            # utf8mb4_nopad_bin orders by code point (UTF-8's byte order) without PAD SPACE, and
            # costs no copy per comparison as a CAST does: a scanning side compares each row's key
            # with a dozen bucket bounds.
            q = self.quote(column.name)
            text = q if column.charset == "utf8mb4" else f"CONVERT({q} USING utf8mb4)"
            return f"{text} COLLATE utf8mb4_nopad_bin"
        return f"CAST({self._utf8(column)} AS BINARY)"

    def key_value_in(self, column: Column, value: Any) -> Any:
        if column.native_type.startswith("uuid") and isinstance(value, str):
            digits = value.replace("-", "")
            if len(digits) == 32 and all(c in "0123456789abcdefABCDEF" for c in digits):
                return bytes.fromhex(digits)  # MariaDB takes 16 bytes for a UUID in the text's order
        return super().key_value_in(column, value)

    def range_superset(self, plan: TablePlan, ranges: Sequence[tuple[Key | None, Key | None]]) -> Condition | None:
        """Every string between two others in byte order begins with their common prefix, and
        every string that begins with a prefix is LIKE it under the column's own collation, whose
        index serves a LIKE on a prefix. So a range that varies in a text column whose collation
        does not order by bytes still reads only the rows LIKE its bounds' common prefix, rather
        than the whole table (the exact byte-order bounds then keep the range's rows). Columns
        fixed in the range are matched by their own equality. Only for collations that match LIKE
        character by character (no contractions such as Czech 'ch'); None where any range has no
        common prefix."""
        parts: list[str] = []
        params: list[Any] = []
        for lo, hi in ranges:
            if lo is None or hi is None:
                return None
            fixed = fixed_prefix(lo, hi)
            column = plan.key[fixed]
            low, high = lo[fixed], hi[fixed]
            if not (_like_narrows(column) and isinstance(low, str) and isinstance(high, str)):
                return None
            prefixes = _covering_prefixes(low, high)
            if not prefixes:
                return None
            fixed_values = [self.key_value_in(c, v) for c, v in zip(plan.key[:fixed], lo, strict=False)]
            for prefix in prefixes:
                clauses = [f"{self.quote(c.name)} = %s" for c in plan.key[:fixed]]
                clauses.append(f"{self.quote(column.name)} LIKE %s ESCAPE '!'")
                parts.append("(" + " AND ".join(clauses) + ")")
                params += [*fixed_values, LIKE_SPECIAL.sub(r"!\1", prefix) + "%"]
        return "(" + " OR ".join(parts) + ")", params

    def text_order_expr(self, column: Column) -> str:
        # Exact and in byte order: no case folding, no PAD SPACE (`'a' = 'a '` is true under it).
        if column.binary_order and column.kind is Kind.TEXT and column.base_type not in ("enum", "set"):
            return self.quote(column.name)
        return f"CAST({self.canonical_expr(column)} AS BINARY)"

    def mod(self, left: str, right: str) -> str:
        return f"MOD({left}, {right})"

    def fetched_text(self, column: Column, value: Any) -> str | None:
        if isinstance(value, bytes):
            return value.decode("utf-8")
        return None if value is None else str(value)


# Collations whose LIKE matches character by character, so that a string beginning with a prefix
# is always LIKE it (language tailorings with contractions, such as Czech 'ch', may not be).
LIKE_SAFE_COLLATIONS = frozenset(
    f"{charset}_{name}"
    for charset in ("utf8mb4", "utf8mb3", "utf8")
    for name in (
        "general_ci",
        "general_nopad_ci",
        "unicode_ci",
        "unicode_nopad_ci",
        "unicode_520_ci",
        "unicode_520_nopad_ci",
        "bin",
        "general_mysql500_ci",
    )
)


MAX_NEXT_CHARACTERS = 16  # prefixes one range's superset may name at the character after the common prefix
LIKE_SPECIAL = re.compile(r"([!%_])")  # escaped with ! in a LIKE pattern


def _covering_prefixes(low: str, high: str) -> list[str]:
    """Prefixes that every string s with low <= s <= high (code point order) begins with one of:
    their common prefix P or, where both go on after it, P followed by each character from low's
    next one to high's (when there are few): that narrows the reads by one character more.
    Empty when P is."""
    length = 0
    for a, b in zip(low, high, strict=False):
        if a != b:
            break
        length += 1
    common = low[:length]
    if not common:
        return []
    if len(low) == length or len(high) == length:
        return [common]
    first, last = ord(low[length]), ord(high[length])
    if last - first >= MAX_NEXT_CHARACTERS:
        return [common]
    return [common + chr(c) for c in range(first, last + 1)]


def _like_narrows(column: Column) -> bool:
    return (
        column.kind is Kind.TEXT
        and not column.binary_order
        and column.base_type not in ("enum", "set")
        and (column.collation or "") in LIKE_SAFE_COLLATIONS
    )


def _decimal_scale(native_type: str) -> int | None:
    """The declared scale of decimal(p,s) / decimal(p) (scale 0); None when not declared."""
    match = re.match(r"(?:decimal|numeric)\((\d+)(?:,(\d+))?\)", native_type)
    if match is None:
        return None
    return int(match.group(2) or 0)
