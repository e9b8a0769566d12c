"""MySQL's and MariaDB's types for `tablesync copy`: columns read as portable types, and portable
types written as DDL (docs/copy.md, "Types"). Texts are created utf8mb4 with the binary collation:
they hold exactly what the source holds ('a' and 'A' are two keys), in byte order. Pure."""

from __future__ import annotations

from ..models import Column, Kind
from .portable import PortableType, arguments, unmappable

_INTEGER_BYTES = {"tinyint": 1, "smallint": 2, "mediumint": 3, "int": 4, "integer": 4, "bigint": 8, "year": 2}
_TEXT_LENGTHS = {"tinytext": 255, "text": None, "mediumtext": None, "longtext": None}
MAX_DECIMAL_PRECISION, MAX_DECIMAL_SCALE = 65, 30
MAX_VARCHAR = 16_383  # utf8mb4 characters in a varchar
MAX_KEY_CHARACTERS = 768  # InnoDB keys hold 3,072 bytes: 768 utf8mb4 characters
MAX_KEY_BYTES = 3_072
BINARY_TEXT = " CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"


def portable_type(column: Column) -> PortableType:
    kind = column.kind
    native = column.native_type.lower()
    name = native.split("(")[0].split(" ")[0]
    unsigned = "unsigned" in native
    if kind is None:
        raise unmappable(column, "the other engines")
    first, second = arguments(native)
    if kind is Kind.INTEGER:
        return PortableType(kind, integer_bytes=_INTEGER_BYTES.get(name, 8), unsigned=unsigned)
    if kind is Kind.BOOLEAN:
        return PortableType(kind, native_boolean=False)  # tinyint(1)
    if kind is Kind.DECIMAL:
        return PortableType(kind, precision=first or 10, scale=second or 0, unsigned=unsigned)
    if kind is Kind.FLOAT:
        return PortableType(kind, float_bytes=4 if name == "float" else 8)
    if kind is Kind.TEXT:
        if name in ("char", "varchar"):
            return PortableType(kind, length=first, fixed=name == "char")
        return PortableType(kind, length=_TEXT_LENGTHS.get(name))
    if kind is Kind.BYTES:
        if name in ("binary", "varbinary"):
            return PortableType(kind, length=first, fixed=name == "binary")
        return PortableType(kind, length=255 if name == "tinyblob" else None)
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ, Kind.TIME):
        return PortableType(kind, fraction_digits=first or 0)
    return PortableType(kind)


def column_ddl(column: Column, portable: PortableType, key: bool, *, mariadb: bool) -> str:
    kind = portable.kind
    target = "MariaDB" if mariadb else "MySQL"
    if kind is Kind.INTEGER:
        name = {1: "tinyint", 2: "smallint", 3: "mediumint", 4: "int"}.get(portable.integer_bytes, "bigint")
        return name + (" unsigned" if portable.unsigned else "")
    if kind is Kind.BOOLEAN:
        return "tinyint(1)"
    if kind is Kind.DECIMAL:
        if portable.precision is None:
            return f"decimal({MAX_DECIMAL_PRECISION},{MAX_DECIMAL_SCALE})"  # numeric without bounds
        scale = portable.scale or 0
        if portable.precision > MAX_DECIMAL_PRECISION or scale > MAX_DECIMAL_SCALE:
            raise unmappable(
                column, target, f"its decimals hold {MAX_DECIMAL_PRECISION} digits, {MAX_DECIMAL_SCALE} after the point"
            )
        return f"decimal({portable.precision},{scale})" + (" unsigned" if portable.unsigned else "")
    if kind is Kind.FLOAT:
        return "float" if portable.float_bytes == 4 else "double"
    if kind is Kind.TEXT:
        return _text(column, portable, key, target) + BINARY_TEXT
    if kind is Kind.UUID:
        # Not MariaDB's uuid type: it refuses UUIDs of unknown variants (PostgreSQL holds any 128
        # bits) and orders version-1 UUIDs by their time fields, not byte by byte.
        return "char(36)" + BINARY_TEXT
    if kind is Kind.BYTES:
        if portable.fixed and portable.length and portable.length <= 255:
            return f"binary({portable.length})"
        if key:
            length = portable.length or MAX_KEY_BYTES
            if length > MAX_KEY_BYTES:
                raise unmappable(column, target, f"a key holds {MAX_KEY_BYTES} bytes")
            return f"varbinary({length})"
        return f"varbinary({portable.length})" if portable.length and portable.length <= 65_535 else "longblob"
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        # A timestamptz is stored as its UTC instant (its canonical text): datetime has the range
        # MySQL's own timestamp (1970-2038) lacks.
        return f"datetime({min(portable.fraction_digits, 6)})"
    if kind is Kind.TIME:
        return f"time({min(portable.fraction_digits, 6)})"
    return {Kind.JSON: "json", Kind.DATE: "date"}[kind]


def _text(column: Column, portable: PortableType, key: bool, target: str) -> str:
    length = portable.length
    if key:
        length = length or MAX_KEY_CHARACTERS
        if length > MAX_KEY_CHARACTERS:
            raise unmappable(column, target, f"a key holds {MAX_KEY_CHARACTERS} characters")
    if portable.fixed and length and length <= 255:
        return f"char({length})"
    if length and length <= MAX_VARCHAR:
        return f"varchar({length})"
    return "longtext"


# --- rows in another engine's bulk format (dialects/loader.py's fast paths) ----------------------
COPY_ESCAPES = (("\\\\", "\\\\\\\\"), ("\\t", "\\\\t"), ("\\n", "\\\\n"), ("\\r", "\\\\r"))


# The statements run with parameters: the driver reads % as a placeholder's start (%% is one %).
def copy_field(column: Column, quote: str, *, for_postgres: bool = True) -> str:
    """A column as a field of PostgreSQL's COPY text format (for_postgres), or of LOAD DATA's, which
    shares its escapes: NULL as \\N, texts with backslash, tab, newline and carriage return
    escaped, times in their ISO form, doubles in their shortest exact form (a 4-byte float widened
    to a double first: MySQL writes floats with 6 digits); bytes as \\x and hex for PostgreSQL,
    as hex for LOAD DATA (unhexed by the loader)."""
    kind = column.kind
    if kind is Kind.FLOAT:
        text = f"CAST(CAST({quote} AS DOUBLE) AS CHAR)"
    elif kind is Kind.BYTES:
        text = f"CONCAT('\\\\\\\\x', LOWER(HEX({quote})))" if for_postgres else f"HEX({quote})"
    elif kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        text = f"DATE_FORMAT({quote}, '%%Y-%%m-%%d %%H:%%i:%%s.%%f')"
        if kind is Kind.TIMESTAMPTZ and for_postgres:
            text = f"CONCAT({text}, '+00')"  # the session's zone is UTC
    elif kind is Kind.DATE:
        text = f"DATE_FORMAT({quote}, '%%Y-%%m-%%d')"
    elif kind in (Kind.TEXT, Kind.UUID, Kind.JSON):
        text = f"CAST({quote} AS CHAR)"
        for plain, escaped in COPY_ESCAPES:
            text = f"REPLACE({text}, '{plain}', '{escaped}')"
    else:
        text = f"CAST({quote} AS CHAR)"
    return f"IFNULL({text}, '\\\\N')"


def values_field(column: Column, quote: str) -> str:
    """A column as a MySQL literal (its VALUES form): QUOTE escapes texts and bytes; doubles as
    above; times in their ISO form with all six digits."""
    kind = column.kind
    if kind is Kind.FLOAT:
        return f"IFNULL(CAST(CAST({quote} AS DOUBLE) AS CHAR), 'NULL')"
    if kind is Kind.BYTES:
        return f"IFNULL(CONCAT('X''', HEX({quote}), ''''), 'NULL')"
    if kind in (Kind.TIMESTAMP, Kind.TIMESTAMPTZ):
        return f"IFNULL(QUOTE(DATE_FORMAT({quote}, '%%Y-%%m-%%d %%H:%%i:%%s.%%f')), 'NULL')"
    return f"QUOTE({quote})"  # QUOTE(NULL) is the word NULL
