"""Differential fuzz test: `tablesync diff` against an independent Python model, on random schemas,
rows, drift and filters, across PostgreSQL, MariaDB and SQLite in every direction.

What is fuzzed, per hypothesis example (one `Case`):

* an engine pair (source, target), both directions and same-engine pairs; when both sides are the
  same server, the target table lives in a second database created for this module (PostgreSQL and
  MariaDB) or a second SQLite file;
* a schema: a key (bigint; text whose values vary in case, leading/trailing spaces, composed vs
  decomposed accents; char(n); UUID as PostgreSQL `uuid`, MariaDB `char(36)` or native `uuid`,
  SQLite `UUID` text in lower or upper case; composite (varchar tenant, bigint id)) and 1-5
  compared columns of every supported kind (integer, boolean, decimal, double, text, char(n), uuid,
  bytes, timestamp, timestamptz, date, time, json). Each side draws its own native type where an
  engine has several (json/jsonb, text/varchar/citext/ICU collation, MariaDB char(36)/uuid,
  MariaDB integers and decimals with or without ZEROFILL, which are unsigned: only non-negative
  values there, ...); MariaDB tables draw their collation (utf8mb4_bin, utf8mb4_general_ci,
  utf8mb4_unicode_ci). Rarely, on a pair with SQLite, a wide table: 110-130 columns of simple kinds
  (SQLite hashes a row of more than 100 columns in parts), at most 8 rows;
* 0-40 source rows holding edge values (NULL, '', '0', ~300-character text, bigint extremes,
  -0.0, subnormal and huge doubles, 0.000000 and -0.00, timestamps at microsecond edges, nested
  JSON), only values both engines of the pair can hold: without MariaDB also BC dates and
  timestamps, years after 9999 and +-infinity (`Far`), which PostgreSQL holds and SQLite holds as
  PostgreSQL's text, infinite doubles, and JSON nested 100-900 levels deep (MariaDB's json_valid
  refuses more than 31); on PostgreSQL pairs NaN (double precision and numeric); without
  PostgreSQL, MariaDB's TIME durations (negative, or 24 to 838 hours; SQLite holds their text);
* with SQLite on a side, rarely (`Bad`), texts a column's declared type cannot parse ('2020-13-45'
  in a DATE, 'noon' in a TIME, 'abc' in a DOUBLE, 'x1' in an INTEGER, 'not-a-uuid' in a UUID),
  wherever the side holds them (a MariaDB char(36) holds a UUID column's); copied to a side that
  cannot hold one, it becomes NULL;
* a target copy with drift: rows deleted, extra rows, one column changed (to its nearest
  neighbour, to NULL or to a fresh value), and "non-changes" that must not be reported (the same
  JSON respelled: key order, whitespace, escapes, 1 vs 1.0 vs 1e0, a duplicated key whose last
  value wins; the same timestamptz instant in another offset; 1.50 vs 1.5; a UUID written in upper
  case on SQLite; a SQLite date/time text in another ISO 8601 spelling: 'T', a shorter fraction, Z);
* one time in five, a target without a primary key (nor NOT NULL on the key columns), whose drift
  also repeats keys (a twin row holding the same values, the same respelled, or changed ones) and
  puts NULLs in key columns (of copied rows and of extra rows); the source keeps its primary key;
* one time in six, a column only the target has (an integer or a text, anywhere among its columns);
* optionally a --where filter over one or two columns (= != <> < <= > >=, IN, NOT IN, BETWEEN,
  IS [NOT] NULL, AND, OR, NOT) with literals drawn from the data, in several spellings (text in
  another case or with a trailing space, quoted numbers, 1/0 for booleans, UUIDs in upper case,
  timestamps with 'T', a short fraction, an offset, 'Z' or none; durations); bytes and JSON
  columns only get IS [NOT] NULL, and so do number columns holding a `Bad` text (what a comparison
  makes of it is not promised);
* small --chunk-size, --bisection-factor and --bisection-threshold (and sometimes --reverse), so
  that chunking and bisection are exercised on a few dozen rows.

How the expected answer is computed, independently of tablesync's hashing: both tables are read
back with the plain drivers (psycopg, pymysql, sqlite3) and every stored value is reduced by the
rules of `comparable` (the promise of docs/normalization.md): integers, booleans and decimals by
numeric value; doubles by value with -0.0 == 0.0 and +-infinity; NaN equal to NaN (and, in
filters, above every number, as in PostgreSQL, the only engine drawn to hold it); text by code
points (char(n) without padding); UUIDs as lowercase text (a text that is no UUID as itself); bytes
by bytes; timestamps to the microsecond; timestamptz as UTC instants; dates; times as signed
microseconds (hours beyond 24 kept); JSON by meaning (keys sorted, numbers as exact decimals) at any
depth; a SQLite value its column's type cannot parse as its stored text (`Invalid`: equal to the
same text, different from every valid value and from NULL, and matching no filter comparison). The
filter is evaluated in Python with SQL's three-valued logic and the promised semantics (text byte
for byte whatever the collation, numbers by value, timestamptz literals as instants, UTC when they
carry no offset; a literal takes the kind of the source's column, so on a MariaDB char(36) it is
text). The filter applies to every row; of the rows it keeps, a key the source has and the target
lacks is missing, one the target has and the source lacks is extra, one both have whose rows differ
is differing. On a target without a primary key: a key held by more than one row is extra once
(whether or not the source has it), and differing too when the source has it and none of those
rows equals the source's; every row with a NULL in a key column is extra, with its key (JSON null
in that place), once per row. As the model reads what the databases actually hold, a value an
engine stores differently from how it was written (padding, rounding to SQLite's 15 digits) is part
of the truth, not an error of the test.

The tool's JSON report must list exactly those keys (each as often as the model counts it), and
exit with 0 when there is no difference, 1 otherwise; a column only the target has must be named in
`target_only_columns` and in one warning line on stderr, and without one stderr stays empty. A
failure prints the engine pair, both tables' DDL, the filter, the options and, for every key on
which the tool and the model disagree, that key's rows as stored on each side.

FUZZ_EXAMPLES=N in the environment sets the number of examples (default 600, about 45 s here when
nothing fails; shrinking a failure takes a few minutes more).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
import os
import random
import re
import sqlite3
import struct
import sys
import unicodedata
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pymysql
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from tablesync.cli import main
from watchdog import ToolHung, watchdog

pytestmark = pytest.mark.integration

# The same servers as tests/conftest.py (its module cannot be imported from here: both are `conftest`).
PG_URL = os.environ.get("TABLESYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TABLESYNC_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))
MAX_ROWS = 40
MAX_EXTRA_ROWS = 6
MAX_WIDE_ROWS = 8  # rows of a wide table (110-130 columns), drawn rarely: they are slow

PG, MY, SQ = "pg", "mysql", "sqlite"
ENGINES = (SQ, PG, MY)  # hypothesis shrinks towards the first: SQLite, the cheapest
PAIRS = [(s, t) for s in ENGINES for t in ENGINES]
UTC = dt.UTC

# --------------------------------------------------------------------------------------------
# Kinds and their native types
# --------------------------------------------------------------------------------------------

KINDS = ("int", "bool", "dec", "double", "text", "char", "uuid", "bytes", "ts", "tstz", "date", "time", "json")
# Columns draw every kind, the ones with the most ways to go wrong twice as often.
COLUMN_KINDS = (*KINDS, "json", "tstz", "text", "uuid", "dec", "double", "time")
KEY_KINDS = ("int", "text", "char", "uuid", "composite")
ORDERED = frozenset({"int", "dec", "double", "text", "char", "ts", "tstz", "date", "time"})
EQUALITY_ONLY = frozenset({"bool", "uuid"})  # filters: = != IN NOT IN IS [NOT] NULL
NULL_ONLY = frozenset({"bytes", "json"})  # filters: IS [NOT] NULL only (anything else is refused)
MY_COLLATIONS = ("utf8mb4_bin", "utf8mb4_general_ci", "utf8mb4_unicode_ci")
ICU = 'COLLATE "und-x-icu"'

# Native types per (engine, kind); each side of a case draws one.
TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    (PG, "int"): ("bigint",),
    # ZEROFILL (unsigned, padded when shown) one time in three; int(8) holds at most 2^32 - 1.
    (MY, "int"): ("bigint", "bigint", "bigint", "bigint", "int(8) zerofill", "bigint(20) zerofill"),
    (SQ, "int"): ("BIGINT", "INTEGER"),
    (PG, "bool"): ("boolean",),
    (MY, "bool"): ("tinyint(1)",),
    (SQ, "bool"): ("BOOLEAN",),
    (PG, "dec"): ("numeric(20,6)",),
    (MY, "dec"): ("decimal(20,6)", "decimal(20,6)", "decimal(20,6) zerofill"),
    (SQ, "dec"): ("NUMERIC(20,6)", "DECIMAL(20,6)"),
    (PG, "double"): ("double precision",),
    (MY, "double"): ("double",),
    (SQ, "double"): ("DOUBLE", "REAL"),
    (PG, "text"): ("text", "varchar(400)", "citext", f"text {ICU}"),
    (MY, "text"): ("varchar(400)", "text"),
    (SQ, "text"): ("TEXT", "VARCHAR(400)"),
    (PG, "char"): ("char(20)",),
    (MY, "char"): ("char(20)",),
    (SQ, "char"): ("CHAR(20)",),
    (PG, "uuid"): ("uuid",),
    (MY, "uuid"): ("char(36)", "uuid"),
    (SQ, "uuid"): ("UUID",),
    (PG, "bytes"): ("bytea",),
    (MY, "bytes"): ("blob", "longblob"),
    (SQ, "bytes"): ("BLOB",),
    (PG, "ts"): ("timestamp(6)",),
    (MY, "ts"): ("datetime(6)",),
    (SQ, "ts"): ("DATETIME", "TIMESTAMP"),
    (PG, "tstz"): ("timestamptz",),
    (MY, "tstz"): ("timestamp(6) NULL DEFAULT NULL",),
    (SQ, "tstz"): ("TIMESTAMPTZ",),
    (PG, "date"): ("date",),
    (MY, "date"): ("date",),
    (SQ, "date"): ("DATE",),
    (PG, "time"): ("time(6)",),
    (MY, "time"): ("time(6)",),
    (SQ, "time"): ("TIME",),
    (PG, "json"): ("json", "jsonb"),
    (MY, "json"): ("json",),
    (SQ, "json"): ("JSON",),
}
KEY_TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    **{(e, k): TYPES[e, k] for e in ENGINES for k in ("int", "uuid")},
    (PG, "text"): ("text", "varchar(64)", "citext", f"varchar(64) {ICU}"),
    (MY, "text"): ("varchar(64)",),
    (SQ, "text"): ("TEXT", "VARCHAR(64)"),
    (PG, "char"): ("char(12)",),
    (MY, "char"): ("char(12)",),
    (SQ, "char"): ("CHAR(12)",),
    (PG, "tenant"): ("varchar(16)", "text", "citext", f"varchar(16) {ICU}"),
    (MY, "tenant"): ("varchar(16)",),
    (SQ, "tenant"): ("VARCHAR(16)", "TEXT"),
}
CHAR_COLUMN_LENGTH, CHAR_KEY_LENGTH = 20, 12


@dataclass(frozen=True)
class Col:
    """A column: its name, kind and native type on the source and on the target."""

    name: str
    kind: str
    types: tuple[str, str]

    @property
    def unsigned_limit(self) -> int | None:
        """A MariaDB ZEROFILL column is unsigned: the largest integer both sides hold, or None when
        neither side's type is ZEROFILL."""
        filled = [t for t in self.types if "zerofill" in t]
        if not filled:
            return None
        return 2**32 - 1 if any(t.startswith("int(") for t in filled) else BIGINT_MAX


@dataclass(frozen=True)
class Limits:
    """What both engines of a pair can hold."""

    mariadb: bool  # a side is MariaDB: dates and datetimes 1000-9999, timestamptz 1970-2038 (UTC),
    # no NaN nor infinite doubles, JSON nested at most 31 levels
    sqlite: bool  # a side is SQLite: decimals to 15 significant digits (it stores them as doubles), NaN as NULL
    postgres: bool  # a side is PostgreSQL: times of day only (MariaDB's TIME is a duration: -838 h to 838 h)

    @property
    def nan(self) -> bool:
        """Both sides are PostgreSQL: NaN (double precision and numeric)."""
        return not (self.mariadb or self.sqlite)


# --------------------------------------------------------------------------------------------
# Logical values: what a row holds, with the presentation details that must not matter
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Uid:
    """A UUID; `upper`: SQLite stores its text in upper case (the other engines store the UUID)."""

    value: uuid.UUID
    upper: bool

    def __repr__(self) -> str:
        text = str(self.value)
        return f"Uid({text.upper() if self.upper else text})"


@dataclass(frozen=True)
class Spelling:
    """How a JSON document is written: key order (a shuffle seed), whitespace, escapes, numbers."""

    seed: int
    spacing: int  # 0 compact, 1 ", " and ": ", 2 newlines and tabs
    ascii: bool  # non-ASCII characters as \\uXXXX escapes
    numbers: int  # 0 plain, 1 with ".0", 2 with ".00", 3 with an exponent
    decoys: bool  # each object starts with its last key holding null: a duplicated key, the last one wins


@dataclass(frozen=True, eq=False)
class Json:
    value: Any  # None, bool, int, Decimal, str, list, dict
    spelling: Spelling

    def __repr__(self) -> str:
        return f"Json({spell(self)})"


@contextmanager
def deep_recursion() -> Iterator[None]:
    """Room for recursing through JSON nested 900 levels deep (spelling it, nudging it, the model)."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(max(old, 20_000))
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def spell(doc: Json) -> str:
    with deep_recursion():
        return _spell(doc)


def _spell(doc: Json) -> str:
    rng = random.Random(doc.spelling.seed)
    comma, colon = ((",", ":"), (", ", ": "), (" ,\n ", " :\t"))[doc.spelling.spacing]
    style = doc.spelling.numbers

    def number(value: int | Decimal) -> str:
        plain = str(value) if isinstance(value, int) else format(value, "f")
        if style == 0:
            return plain
        if style == 3:
            return format(Decimal(value).scaleb(1), "f") + "e-1"
        zeros = "0" * style
        return plain + zeros if "." in plain else f"{plain}.{zeros}"

    def go(value: Any) -> str:
        if isinstance(value, dict):
            items = sorted(value.items())
            rng.shuffle(items)
            members = [go(k) + colon + go(v) for k, v in items]
            if doc.spelling.decoys and items:
                members.insert(0, go(items[-1][0]) + colon + "null")
            return "{" + comma.join(members) + "}"
        if isinstance(value, list):
            return "[" + comma.join(go(v) for v in value) + "]"
        if value is None or isinstance(value, bool):
            return json.dumps(value)
        if isinstance(value, int | Decimal):
            return number(value)
        return json.dumps(value, ensure_ascii=doc.spelling.ascii)

    return go(doc.value)


@dataclass(frozen=True)
class SqliteText:
    """A date or time value that SQLite stores in another ISO 8601 spelling (`iso_text` style);
    the other engines store the value itself."""

    value: Any
    style: int

    def __repr__(self) -> str:
        return f"SqliteText({iso_text(self.value, self.style)!r})"


@dataclass(frozen=True)
class Bad:
    """A text SQLite stores in a column whose declared type cannot parse it ('2020-13-45' in a DATE,
    'abc' in a DOUBLE): it is compared as stored. Only SQLite holds it, and for a UUID column (whose
    text that is no UUID is compared as text) a MariaDB char(36) too."""

    text: str


# Texts no engine's parser of the kind accepts (nor Python's float(), Decimal() or UUID()).
BAD_TEXTS: dict[str, tuple[str, ...]] = {
    "int": ("x1", "1x", "", "abc"),
    "bool": ("yes", "x1"),
    "dec": ("abc", "1.2.3"),
    "double": ("abc", "1.5e", "x1"),
    "date": ("2020-13-45", "2021-02-29", "yesterday"),
    "ts": ("2020-13-45 00:00:00", "2020-01-01 25:00:00", "soon"),
    "tstz": ("2020-02-30 12:00:00+00:00", "later"),
    "time": ("noon", "12:60:00", "25:99"),
    "uuid": ("not-a-uuid", "NOT-A-UUID", "", "0123"),
}


def holds_bad(engine: str, native: str, kind: str) -> bool:
    """Whether a column stores a `Bad` text of its kind."""
    return kind in BAD_TEXTS and (engine == SQ or (kind == "uuid" and native == "char(36)"))


@dataclass(frozen=True)
class Far:
    """A date or timestamp only PostgreSQL holds (and SQLite, as text): a BC one, one after 9999, or
    an infinity; `text` is how both are given it (PostgreSQL's own input form)."""

    text: str

    def __repr__(self) -> str:
        return f"Far({self.text!r})"


def unwrap(value: Any) -> Any:
    return value.value if isinstance(value, SqliteText) else value


# MariaDB's TIME is a duration: negative, or beyond 24 hours, up to this on either side.
TIME_MAX = dt.timedelta(hours=838, minutes=59, seconds=59, microseconds=999999)
MICROSECOND = dt.timedelta(microseconds=1)


def duration_text(value: dt.timedelta, style: int = 0) -> str:
    """A duration as MariaDB writes a TIME ('-01:00:00.000000', '838:59:59.500000'); style 2 without
    the fraction's trailing zeros."""
    micros = value // MICROSECOND
    seconds, micro = divmod(abs(micros), 1_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    text = f"{'-' if micros < 0 else ''}{hours:02d}:{minute:02d}:{second:02d}"
    if style == 2:
        return text + (f".{micro:06d}".rstrip("0") if micro else "")
    return f"{text}.{micro:06d}"


def iso_text(value: dt.datetime | dt.date | dt.time | dt.timedelta, style: int) -> str:
    """An ISO 8601 text: style 0 the usual form (' ' separator, 6 fractional digits), 1 with a 'T'
    separator, 2 the fraction without trailing zeros (none for whole seconds), 3 in UTC with 'Z'
    (timestamptz; otherwise like 0). A duration (MariaDB TIME) as duration_text."""
    if isinstance(value, dt.timedelta):
        return duration_text(value, style)
    if isinstance(value, dt.datetime):
        offset = ""
        if value.tzinfo is not None:
            if style == 3:
                value, offset = value.astimezone(UTC), "Z"
            else:
                offset = value.isoformat()[-6:]  # the drawn offsets are whole minutes: +HH:MM
            value = value.replace(tzinfo=None)
        if style == 2:
            text = value.isoformat(sep=" ", timespec="seconds")
            return text + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "") + offset
        return value.isoformat(sep="T" if style == 1 else " ", timespec="microseconds") + offset
    if isinstance(value, dt.time):
        if style == 2:
            text = value.isoformat(timespec="seconds")
            return text + (f".{value.microsecond:06d}".rstrip("0") if value.microsecond else "")
        return value.isoformat(timespec="microseconds")
    return value.isoformat()


Row = tuple[Any, ...]  # the key parts, then the compared columns


def show(value: Any) -> str:
    """A value as the failure messages print it."""
    if value is None:
        return "NULL"
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return f"<{value.isoformat(sep=' ') if isinstance(value, dt.datetime) else value.isoformat()}>"
    if isinstance(value, Decimal):
        return f"Decimal('{value}')"
    if isinstance(value, dt.timedelta):
        return f"<{duration_text(value)}>"
    if isinstance(value, float) and math.isnan(value):
        return f"nan({struct.pack('>d', value).hex()})"
    text = repr(value)
    return text if len(text) <= 400 else f"{text[:200]}...{text[-100:]} ({len(text)} characters)"


# --------------------------------------------------------------------------------------------
# Strategies for values
# --------------------------------------------------------------------------------------------

MIN_NORMAL = 2.2250738585072014e-308
MAX_DOUBLE = 1.7976931348623157e308
BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1
MARIADB_TS_MIN = dt.datetime(1970, 1, 1, 0, 0, 1)
MARIADB_TS_MAX = dt.datetime(2038, 1, 19, 3, 14, 7, 999999)
TEXT_CHARS = st.characters(codec="utf-8", exclude_characters="\x00")  # no surrogates, no NUL
# Key text comes from a small alphabet whose equalities under MariaDB's and citext's collations are
# known (see fold_key): case pairs, a composed and a decomposed accent, spaces, punctuation (LIKE's
# wildcards and tablesync's escape among them: MariaDB narrows ranges with LIKE on a prefix).
KEY_ALPHABET = "aAbBzZeE\u00e9\u00c9\u0301 0-_%!~\u03c9\u03a9\U0001f600"
KEY_EDGES = [
    "",
    " ",
    "0",
    "a",
    "A",
    "a ",
    " a",
    "\u00e9",
    "e\u0301",
    "E\u0301",
    "e",
    "ab",
    "aB",
    "AB",
    "~",
    "_",
    "a%",
    "a!_",
]
TENANTS = ["acme", "Acme", "ACME", "acme ", "", " b", "b", "\u00e9", "e\u0301", "zz", "\u03a9", "\u03c9"]
TEXT_EDGES = [
    *["", " ", "0", "NULL", "N", "a", "A", "a ", " a", "\u00e9", "e\u0301", "\u00df", "ss", "\U0001f600"],
    *["x" * 300, "\u00e9" * 150 + " ", "'quoted'", "back\\slash", "tab\t", "line\nbreak", "%s", "|", "3:abc"],
]


def _integers_up_to(limit: int) -> st.SearchStrategy[int]:
    """|n| <= limit with magnitudes spread over every bit length."""
    return st.integers(0, limit.bit_length()).flatmap(
        lambda bits: st.integers(-min(limit, 2**bits), min(limit, 2**bits))
    )


def _decimals(max_digits: int) -> st.SearchStrategy[Decimal]:
    """Decimals that fit numeric(20,6) (14 integer digits, 6 places), at most max_digits significant."""

    def with_scale(scale: int) -> st.SearchStrategy[Decimal]:
        digits = min(max_digits, 14 + scale)
        return _integers_up_to(10**digits - 1).map(lambda n: Decimal(n).scaleb(-scale))

    return st.integers(0, 6).flatmap(with_scale)


def _in_zone(instant: dt.datetime, quarter_hours: int) -> dt.datetime:
    """A UTC instant written in a fixed-offset zone (the same instant)."""
    return instant.replace(tzinfo=UTC).astimezone(dt.timezone(dt.timedelta(minutes=15 * quarter_hours)))


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.one_of(
        st.none(),
        st.booleans(),
        _integers_up_to(10**20),
        _decimals(12),
        st.text(TEXT_CHARS, max_size=6),
    )
    keys = st.text(st.sampled_from("abK\u00e9 _"), max_size=3)
    nested = st.recursive(
        scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3), max_leaves=6
    )
    edges: list[Any] = [{}, [], None, {"a": 1}, {"b": {"a": [1, Decimal("2.5")]}, "a": None}, 0, "", Decimal(1)]
    return st.sampled_from(edges) | nested


def _deep_json(depth: int, shape: int, leaf: Any) -> Any:
    """`leaf` inside `depth` levels of nesting: arrays (shape 0), objects (1), or objects and arrays
    alternating, each with a sibling member (2: key order and whitespace matter at every level)."""
    value = leaf
    for level in range(depth):
        if shape == 0:
            value = [value]
        elif shape == 1:
            value = {"a": value}
        else:
            value = {"b": level, "a": value} if level % 2 else [value, Decimal(level)]
    return value


# JSON nested 100 to 900 levels deep (MariaDB's json_valid refuses more than 31 levels).
DEEP_JSON = st.builds(
    _deep_json, st.integers(100, 900), st.integers(0, 2), st.sampled_from([1, Decimal("1.5"), "x", None, {}])
)


SPELLINGS = st.builds(
    Spelling, st.integers(0, 2**16), st.integers(0, 2), st.booleans(), st.integers(0, 3), st.integers(0, 3).map(bool)
)


def _mariadb_valid(value: uuid.UUID) -> uuid.UUID:
    """MariaDB's uuid type refuses a version nibble of 8 or more unless the clock_seq_hi byte is 0
    or above 0x80: such UUIDs get that byte's top bit (and 0x80 becomes 0x81)."""
    number = value.int
    byte = (number >> 56) & 0xFF
    if (number >> 76) & 0xF >= 8 and 0 < byte <= 0x80:
        number = (number & ~(0xFF << 56)) | (max(byte | 0x80, 0x81) << 56)
    return uuid.UUID(int=number)


_FAR_OFFSETS = ["+00", "+02", "-05:30", "+14", "-12"]


def _far(kind: str, day: dt.date, moment: dt.time, offset: str, era: int) -> Far:
    """era 0: BC; 1: a year after 9999 (day's year + 10000 * k); 2: 1 January of 1 AD (a timestamptz at
    +01, which before 01:00 is an instant of 1 BC); 3 and 4: the infinities."""
    if era >= 3:
        return Far("infinity" if era == 3 else "-infinity")
    if era == 2:
        day, offset = dt.date(1, 1, 1), "+01"
    date_text = f"{day.year + (10000 * (day.year % 9 + 1) if era == 1 else 0):04d}-{day.month:02d}"
    date_text += f"-{min(day.day, 28) if day.month == 2 else day.day:02d}"  # 29 February: not every year
    bc = " BC" if era == 0 else ""
    if kind == "date":
        return Far(date_text + bc)
    time_text = moment.isoformat(timespec="microseconds")
    return Far(f"{date_text} {time_text}{offset if kind == 'tstz' else ''}{bc}")


def far_values(kind: str) -> st.SearchStrategy[Far]:
    return st.builds(
        _far,
        st.just(kind),
        st.dates(dt.date(1, 1, 1), dt.date(4712, 12, 31)),
        st.times(),
        st.sampled_from(_FAR_OFFSETS),
        st.integers(0, 4),
    )


def fit(col: Col, value: Any) -> Any:
    """A drawn value moved into what both sides' columns hold: a ZEROFILL column is unsigned."""
    limit = col.unsigned_limit
    if limit is None or value is None or isinstance(value, Bad):
        return value
    if col.kind == "int":
        return min(abs(value), limit)
    return abs(value) if col.kind == "dec" else value


def rarely(common: st.SearchStrategy[Any], rare: st.SearchStrategy[Any], one_in: int) -> st.SearchStrategy[Any]:
    """`rare` one time in `one_in`, else `common` (one_of would draw each distinct branch about as
    often, whatever their number); shrinks towards `common`."""
    return st.sampled_from(range(one_in)).flatmap(lambda i: rare if i == one_in - 1 else common)


def column_values(col: Col, lim: Limits, bad: bool = False) -> st.SearchStrategy[Any]:
    """Non-NULL values of a column; with `bad`, now and then a text its type cannot parse."""
    values = values_of(col.kind, lim).map(lambda v: fit(col, v))
    return rarely(values, st.sampled_from(BAD_TEXTS[col.kind]).map(Bad), 8) if bad else values


@cache
def values_of(kind: str, lim: Limits) -> st.SearchStrategy[Any]:
    """Non-NULL values of a kind that both engines of the pair hold."""
    edges: list[Any]
    low: Any
    high: Any
    if kind == "int":
        edges = [0, 1, -1, BIGINT_MAX, BIGINT_MIN, 2**53 + 1, 2**62 + 1]
        return st.sampled_from(edges) | _integers_up_to(BIGINT_MAX)
    if kind == "bool":
        return st.booleans()
    if kind == "dec":
        edges = ["0.000000", "-0.00", "0", "1.50", "1.5", "-0.000001", "0.000001", "12345678901234.5"]
        if not lim.sqlite:
            edges += ["99999999999999.999999", "-99999999999999.999999", "12345678901234.567891"]
        if lim.nan:
            edges += ["NaN", "NaN"]
        return st.sampled_from([Decimal(e) for e in edges]) | _decimals(15 if lim.sqlite else 20)
    if kind == "double":
        edges = [
            0.0,
            -0.0,
            5e-324,
            -5e-324,
            MIN_NORMAL,
            MAX_DOUBLE,
            -MAX_DOUBLE,
            0.1,
            1 / 3,
            1e300,
            1e-300,
            2.0**53 + 2,
        ]
        finite = st.sampled_from(edges) | st.floats(allow_nan=False, allow_infinity=False)
        if lim.mariadb:
            return finite
        # SQLite stores NaN as NULL: NaN on PostgreSQL pairs only.
        specials = st.sampled_from([math.inf, -math.inf, *([math.nan] * 4 if lim.nan else [])])
        return rarely(finite, specials, 3)
    if kind == "text":
        return (
            st.sampled_from(TEXT_EDGES)
            | st.text(TEXT_CHARS, max_size=30)
            | st.text(st.sampled_from(KEY_ALPHABET), max_size=40)
        )
    if kind == "char":
        edges = [t for t in TEXT_EDGES if len(t) <= CHAR_COLUMN_LENGTH] + ["a  ", "  ", "x" * CHAR_COLUMN_LENGTH]
        return st.sampled_from(edges) | st.text(TEXT_CHARS, max_size=CHAR_COLUMN_LENGTH)
    if kind == "uuid":
        edges = [uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), uuid.UUID("0123abcd-ef01-4bcd-8f00-00000000abcd")]
        uuids: st.SearchStrategy[uuid.UUID] = st.sampled_from(edges) | st.uuids()
        return st.builds(Uid, uuids.map(_mariadb_valid), st.booleans())
    if kind == "bytes":
        return st.sampled_from([b"", b"\x00", b"\xff" * 300, b"N", b"|"]) | st.binary(max_size=24)
    if kind == "ts":
        low, high = (dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999))
        if not lim.mariadb:
            low = dt.datetime(1, 1, 1)
        edges = [
            low,
            high,
            dt.datetime(2000, 1, 1),
            dt.datetime(1999, 12, 31, 23, 59, 59, 999999),
            dt.datetime(2000, 1, 1, 0, 0, 0, 1),
            dt.datetime(2024, 2, 29, 12, 0, 0, 500000),
        ]
        regular = st.sampled_from(edges) | st.datetimes(low, high)
        return regular if lim.mariadb else st.one_of(regular, regular, regular, far_values(kind))
    if kind == "tstz":
        low, high = (
            (MARIADB_TS_MIN, MARIADB_TS_MAX) if lim.mariadb else (dt.datetime(1000, 1, 2), dt.datetime(9998, 12, 30))
        )
        edges = [low, high, dt.datetime(2000, 1, 1), dt.datetime(1999, 12, 31, 23, 59, 59, 999999)]
        instants = st.sampled_from(edges) | st.datetimes(low, high)
        zoned = st.builds(_in_zone, instants, st.sampled_from([0, 4, -20, 56, -48, 22]) | st.integers(-56, 56))
        return zoned if lim.mariadb else st.one_of(zoned, zoned, zoned, far_values(kind))
    if kind == "date":
        low = dt.date(1000, 1, 1) if lim.mariadb else dt.date(1, 1, 1)
        edges = [low, dt.date(9999, 12, 31), dt.date(2000, 2, 29), dt.date(1970, 1, 1)]
        days = st.sampled_from(edges) | st.dates(low, dt.date(9999, 12, 31))
        return days if lim.mariadb else st.one_of(days, days, days, far_values(kind))
    if kind == "time":
        edges = [dt.time(0), dt.time(23, 59, 59, 999999), dt.time(0, 0, 0, 1), dt.time(12)]
        times = st.sampled_from(edges) | st.times()
        if lim.postgres:
            return times
        # MariaDB's durations (and SQLite's texts of them): negative, or 24 hours and more.
        hour = dt.timedelta(hours=1)
        spans = [-hour, TIME_MAX, -TIME_MAX, 24 * hour, -MICROSECOND, 100 * hour, -(12 * hour + 500_000 * MICROSECOND)]
        long = st.integers(-(TIME_MAX // MICROSECOND), TIME_MAX // MICROSECOND).map(lambda n: n * MICROSECOND)
        return rarely(times, st.sampled_from(spans) | long, 3)
    if kind == "json":
        documents = _json_values()
        if not lim.mariadb:
            documents = rarely(documents, DEEP_JSON, 10)
        return st.builds(Json, documents, SPELLINGS)
    raise AssertionError(kind)


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """NULL one time in six (and NULL is where a value shrinks to)."""
    return st.one_of(st.none(), *[strategy] * 5)


def key_values(kind: str, key: tuple[Col, ...], lim: Limits) -> st.SearchStrategy[tuple[Any, ...]]:
    """A key's parts, fit for its columns."""
    return _key_values(kind, lim).map(lambda parts: tuple(fit(col, v) for col, v in zip(key, parts, strict=True)))


def _key_values(kind: str, lim: Limits) -> st.SearchStrategy[tuple[Any, ...]]:
    if kind == "int":
        return values_of("int", lim).map(lambda v: (v,))
    if kind in ("text", "char"):
        length = CHAR_KEY_LENGTH - 2 if kind == "char" else 40  # room for a respelling's trailing spaces
        edges = [k for k in KEY_EDGES if len(k) <= length]
        short = st.text(st.sampled_from(KEY_ALPHABET), max_size=10)
        text = st.sampled_from(edges) | short
        if kind == "text":
            text = text | st.text(st.sampled_from(KEY_ALPHABET), min_size=30, max_size=length)
        return text.map(lambda v: (v,))
    if kind == "uuid":
        return values_of("uuid", lim).map(lambda v: (v,))
    ids = st.sampled_from([0, 1, -1, BIGINT_MAX, BIGINT_MIN]) | st.integers(-3, 30)
    return st.tuples(st.sampled_from(TENANTS), ids)


def coarse(text: str) -> str:
    """A fold at least as coarse as the equality of MariaDB's *_ci collations and of citext on the
    key alphabet: accents and combining marks dropped, case folded, trailing spaces dropped, every
    character beyond the BMP one (utf8mb4_general_ci weighs them all alike)."""
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    text = text.casefold().rstrip(" ")
    return "".join("\U0001f600" if ord(c) > 0xFFFF else c for c in text)


def fold_key(engine: str, native: str, collation: str | None, value: Any) -> Any:
    """A key part as the side's unique index sees it (coarser is fine: it only thins the keys)."""
    if isinstance(value, Uid):
        return value.value
    if not isinstance(value, str):
        return value
    if engine == MY:
        value = value.rstrip(" ")  # every collation drawn here is PAD SPACE
        return value if collation == "utf8mb4_bin" else coarse(value)
    if native.lower().startswith("char"):
        value = value.rstrip(" ")
    return coarse(value) if native == "citext" else value


# --------------------------------------------------------------------------------------------
# Nearest neighbours and respellings
# --------------------------------------------------------------------------------------------


def _json_nudge(value: Any) -> Any:
    if value is None:
        return False
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | Decimal):
        return value + 1
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return [_json_nudge(value[0]), *value[1:]] if value else [None]
    if not value:
        return {"a": None}
    first = sorted(value)[0]
    return {**value, first: _json_nudge(value[first])}


def _text_nudge(value: str, variant: int, limit: int) -> str:
    """A text near `value`: a trailing or leading space, another case, the other Unicode form, one
    character more or less."""
    candidates = [
        value + " ",
        value.swapcase(),
        unicodedata.normalize("NFD" if unicodedata.is_normalized("NFC", value) else "NFC", value),
        value[:-1],
        " " + value,
        value + "x",
    ]
    new = candidates[variant % len(candidates)][:limit]
    return new if new != value else (value[:-1] if len(value) >= limit else value + "x")


def nudge(kind: str, value: Any, variant: int, lim: Limits) -> Any:
    """The nearest different value of the same kind (`variant` picks among text's neighbours)."""
    us = MICROSECOND
    if isinstance(value, Far):  # no neighbour that is as far: an ordinary value
        return {"ts": dt.datetime(2000, 1, 1), "tstz": dt.datetime(2000, 1, 1, tzinfo=UTC)}.get(
            kind, dt.date(2000, 1, 1)
        )
    if isinstance(value, Bad):  # another text the type cannot parse either
        return Bad(value.text + "x")
    if kind == "int":
        return value - 1 if value > 0 else value + 1
    if kind == "bool":
        return not value
    if kind == "dec":
        if value.is_nan():
            return Decimal(0)
        step = Decimal(1).scaleb(max(value.as_tuple().exponent, -6))
        return value - step if value > 0 else value + step
    if kind == "double":
        if not math.isfinite(value):
            # No neighbour: NULL (what infinities and NaN were once hashed like), or another value.
            others = [None, math.inf if math.isnan(value) else math.nextafter(value, 0)]
            others += [math.nan] if lim.nan and not math.isnan(value) else []
            return others[variant % len(others)]
        up = math.nextafter(value, math.inf)
        return up if math.isfinite(up) else math.nextafter(value, -math.inf)
    if kind == "text":
        return _text_nudge(value, variant, 400)
    if kind == "char":
        return _text_nudge(value, variant + 1, CHAR_COLUMN_LENGTH)  # a trailing space is no change there
    if kind == "uuid":
        return Uid(uuid.UUID(int=value.value.int ^ 1), value.upper)
    if kind == "bytes":
        return value + b"\x00" if len(value) < 300 else value[:-1]
    if kind == "ts":
        low = dt.datetime(1000, 1, 1) if lim.mariadb else dt.datetime(1, 1, 1)
        return value - us if value > low else value + us
    if kind == "tstz":
        low = MARIADB_TS_MIN.replace(tzinfo=UTC) if lim.mariadb else dt.datetime(1000, 1, 2, tzinfo=UTC)
        return value - us if value > low else value + us
    if kind == "date":
        return value + dt.timedelta(days=1) if value < dt.date(9999, 12, 31) else value - dt.timedelta(days=1)
    if kind == "time":
        if isinstance(value, dt.timedelta):
            return value - us if value > -TIME_MAX else value + us
        moment = dt.datetime.combine(dt.date(2000, 1, 1), value)
        return (moment - us if value > dt.time(0) else moment + us).time()
    if kind == "json":
        with deep_recursion():
            return Json(_json_nudge(value.value), value.spelling)
    raise AssertionError(kind)


NAN_BITS = ("fff8000000000000", "7ff8000000000001", "fffc000000000000")


def respell(kind: str, value: Any, draw: st.DrawFn) -> Any:
    """The same value written another way (must never be reported)."""
    if isinstance(value, Far | Bad):
        return value
    if kind in ("ts", "tstz", "time") and draw(st.booleans()):
        return SqliteText(value, draw(st.integers(1, 3)))
    if kind == "tstz":
        return value.astimezone(dt.timezone(dt.timedelta(minutes=15 * draw(st.integers(-56, 56)))))
    if kind == "json":
        return Json(value.value, draw(SPELLINGS))
    if kind == "uuid":
        return Uid(value.value, not value.upper)
    if kind == "dec":
        return value.normalize() if draw(st.booleans()) else value.quantize(Decimal("0.000001"))
    if kind == "double" and math.isnan(value):
        # Another NaN: PostgreSQL's arithmetic makes 'inf' - 'inf' with the sign bit set; all its
        # NaNs are one value there ('NaN'::float8 = 'inf'::float8 - 'inf'::float8).
        return struct.unpack(">d", bytes.fromhex(draw(st.sampled_from(NAN_BITS))))[0]
    return value


# --------------------------------------------------------------------------------------------
# Filters: a tree, its --where text, and its value in Python (SQL's three-valued logic)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Lit:
    text: str  # as written in --where
    value: Any  # compared with the column's comparable values


@dataclass(frozen=True)
class Cond:
    index: int  # position of the column in the row
    name: str
    op: str  # = != <> < <= > >= in not_in between is_null is_not_null
    lits: tuple[Lit, ...] = ()


@dataclass(frozen=True)
class BoolOp:
    op: str  # not, and, or
    items: tuple[Cond | BoolOp, ...]


Node = Cond | BoolOp


def render(node: Node) -> str:
    if isinstance(node, BoolOp):
        if node.op == "not":
            return f"NOT ({render(node.items[0])})"
        return f" {node.op.upper()} ".join(f"({render(item)})" for item in node.items)
    texts = [lit.text for lit in node.lits]
    if node.op == "is_null":
        return f"{node.name} IS NULL"
    if node.op == "is_not_null":
        return f"{node.name} IS NOT NULL"
    if node.op in ("in", "not_in"):
        return f"{node.name} {'NOT IN' if node.op == 'not_in' else 'IN'} ({', '.join(texts)})"
    if node.op == "between":
        return f"{node.name} BETWEEN {texts[0]} AND {texts[1]}"
    return f"{node.name} {node.op} {texts[0]}"


def evaluate(node: Node, row: Sequence[Any]) -> bool | None:
    """True, False or None (SQL's unknown) for one row of comparable values."""
    if isinstance(node, BoolOp):
        values = [evaluate(item, row) for item in node.items]
        if node.op == "not":
            return None if values[0] is None else not values[0]
        if node.op == "and":
            return False if False in values else (None if None in values else True)
        return True if True in values else (None if None in values else False)
    value = row[node.index]
    if node.op in ("is_null", "is_not_null"):
        return (value is None) == (node.op == "is_null")
    if value is None or isinstance(value, Invalid):  # a value its type cannot hold matches no comparison
        return None
    lits = [lit.value for lit in node.lits]
    comparisons: dict[str, Callable[[Any, Any], bool]] = {
        "=": lambda a, b: a == b,
        "!=": lambda a, b: a != b,
        "<>": lambda a, b: a != b,
        "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b,
        ">=": lambda a, b: a >= b,
    }
    if node.op == "in":
        return value in lits
    if node.op == "not_in":
        return value not in lits
    if node.op == "between":
        return bool(lits[0] <= value <= lits[1])
    return comparisons[node.op](value, lits[0])


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def literal(kind: str, value: Any, variant: int, source_type: str) -> Lit:
    """A --where literal for a logical value of a kind; `variant` picks a nearby spelling or value
    (text in another case or with a space, the instant without its offset, ...). A literal takes the
    kind of the source's column (`source_type`): on a MariaDB char(36) it is text, compared exactly."""
    value = unwrap(value)
    quoted = variant % 5 == 4  # a quoted number is a number
    if kind in ("int", "dec"):
        number = Decimal(value)
        if variant % 3 == 1:
            # one unit in the last place written: still within SQLite's 15 digits
            number += Decimal(1).scaleb(max(number.as_tuple().exponent, -6))  # type: ignore[arg-type]
        if kind == "int" and not BIGINT_MIN <= number <= BIGINT_MAX:
            number = Decimal(value)
        text = str(int(number)) if kind == "int" else format(number, "f")
        return Lit(_quote(text) if quoted else text, number)
    if kind == "bool":
        return Lit(("TRUE" if value else "FALSE") if variant % 2 else str(int(value)), Decimal(int(value)))
    if kind == "double":
        double = math.nextafter(value, math.inf) if variant % 3 == 1 else value
        double = double if math.isfinite(double) else value
        return Lit(_quote(repr(double)) if quoted else repr(double), double)
    if kind in ("text", "char"):
        base = value.rstrip(" ") if kind == "char" else value
        text = [base, base.upper(), base.lower(), base + " ", base.rstrip(" "), base + "x"][variant % 6]
        return Lit(_quote(text), text)
    if kind == "uuid":
        text = str(value.value)
        written = text.upper() if variant % 2 else text
        # On a uuid column an upper-case literal means the lowercase UUID; a char(36) holds text.
        return Lit(_quote(written), written if source_type == "char(36)" else text)
    if kind == "ts":
        return Lit(_quote(iso_text(value, variant % 3)), moment_order(value))
    if kind == "tstz":
        instant = value.astimezone(UTC).replace(tzinfo=None)
        if variant % 5 == 4:
            return Lit(_quote(iso_text(instant, variant % 3)), moment_order(instant))  # no offset: UTC
        return Lit(_quote(iso_text(value, variant % 4)), moment_order(instant))
    if kind == "date":
        return Lit(_quote(value.isoformat()), moment_order(value))
    if kind == "time":
        return Lit(_quote(iso_text(value, variant % 3)), comparable("time", value, MY))
    raise AssertionError(f"no literals for {kind}")


# --------------------------------------------------------------------------------------------
# The case: schema, rows, drift, filter, options
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Added:
    """A column only the target has: not compared, but named in one warning line on stderr and in
    the JSON result's `target_only_columns`."""

    name: str
    native: str
    position: int  # its place among the target's columns
    values: tuple[Any, ...]  # one per target row


@dataclass(eq=False)
class Case:
    engines: tuple[str, str]
    collations: tuple[str | None, str | None]  # MariaDB table collation per side
    key_kind: str
    key: tuple[Col, ...]
    columns: tuple[Col, ...]
    source: list[Row]
    target: list[Row]
    drift: list[str]  # what was done to the copy, for the failure message
    where: Node | None
    options: tuple[str, ...]
    keyless: bool = False  # the target has no primary key: its keys may repeat, or hold a NULL
    added: Added | None = None

    @property
    def all_columns(self) -> tuple[Col, ...]:
        return (*self.key, *self.columns)

    def ddl(self, side: int, table: str) -> str:
        engine = self.engines[side]
        keyless = side == 1 and self.keyless
        defs = [
            f"{c.name} {c.types[side]}" + (" NOT NULL" if i < len(self.key) and not keyless else "")
            for i, c in enumerate(self.all_columns)
        ]
        if side == 1 and self.added is not None:
            defs.insert(self.added.position, f"{self.added.name} {self.added.native}")
        if not keyless:
            defs.append(f"PRIMARY KEY ({', '.join(c.name for c in self.key)})")
        body = f"CREATE TABLE {table} ({', '.join(defs)})"
        if engine == MY:
            body += f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.collations[side]}"
        return body

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        lines = [
            f"Case({self.engines[0]} -> {self.engines[1]}, key {self.key_kind}, {len(self.columns)} compared columns"
            + (", target without primary key" if self.keyless else ""),
            f"  source DDL: {self.ddl(0, 'T')}",
            f"  target DDL: {self.ddl(1, 'T')}",
            f"  --where {render(self.where)!r}" if self.where is not None else "  no --where",
            f"  options {' '.join(self.options)}",
            f"  source rows ({len(self.source)}):",
            *(f"    ({', '.join(show(v) for v in row)})" for row in self.source),
            "  drift:",
            *(f"    {line}" for line in self.drift),
            ")",
        ]
        return "\n".join(lines)


# A wide table (more than 100 columns: SQLite hashes its rows in parts) has columns of these kinds.
WIDE_KINDS = ("int", "text", "double", "bool", "dec")
WIDE_TYPES = {**TYPES, (MY, "text"): ("text",)}  # 130 varchar(400) columns are more than a MariaDB row holds


def _draw_schema(draw: st.DrawFn, engines: tuple[str, str], wide: bool) -> tuple[str, tuple[Col, ...], tuple[Col, ...]]:
    key_kind = draw(st.sampled_from(KEY_KINDS))

    def native(kind: str, table: dict[tuple[str, str], tuple[str, ...]]) -> tuple[str, str]:
        return (draw(st.sampled_from(table[engines[0], kind])), draw(st.sampled_from(table[engines[1], kind])))

    if key_kind == "composite":
        key: tuple[Col, ...] = (
            Col("tenant", "text", native("tenant", KEY_TYPES)),
            Col("id", "int", native("int", KEY_TYPES)),
        )
    else:
        key = (Col("k", key_kind, native(key_kind, KEY_TYPES)),)
    if wide:  # drawn from one seed: 130 columns' worth of choices would overrun hypothesis's buffer
        rng = random.Random(draw(st.integers(0, 2**32)))
        wide_kinds = [rng.choice(WIDE_KINDS) for _ in range(rng.randint(110, 130))]
        return (
            key_kind,
            key,
            tuple(
                Col(
                    f"c{i + 1}_{kind}",
                    kind,
                    (rng.choice(WIDE_TYPES[engines[0], kind]), rng.choice(WIDE_TYPES[engines[1], kind])),
                )
                for i, kind in enumerate(wide_kinds)
            ),
        )
    kinds = draw(st.lists(st.sampled_from(COLUMN_KINDS), min_size=1, max_size=5))
    columns = tuple(Col(f"c{i + 1}_{kind}", kind, native(kind, TYPES)) for i, kind in enumerate(kinds))
    return key_kind, key, columns


def _wide_row(columns: tuple[Col, ...], seed: int) -> tuple[Any, ...]:
    """A wide table's row, from one seed: edge values and small random ones, NULL one time in six."""
    rng = random.Random(seed)

    def value(col: Col) -> Any:
        if rng.randrange(6) == 0:
            return None
        if col.kind == "int":
            return fit(col, rng.choice([0, 1, -1, BIGINT_MAX, BIGINT_MIN, 2**53 + 1, rng.randint(-(10**6), 10**6)]))
        if col.kind == "bool":
            return rng.random() < 0.5
        if col.kind == "double":
            return rng.choice([0.0, -0.0, 0.1, 1 / 3, 5e-324, MAX_DOUBLE, rng.uniform(-1e6, 1e6)])
        if col.kind == "dec":
            return fit(col, Decimal(rng.randint(-(10**12), 10**12)).scaleb(-rng.randint(0, 6)))
        return rng.choice([*TEXT_EDGES, "".join(rng.choice(KEY_ALPHABET) for _ in range(rng.randint(0, 12)))])

    return tuple(value(col) for col in columns)


class KeyRegistry:
    """Admits a key only if neither side's unique index would take it for one already there."""

    def __init__(self, case_key: tuple[Col, ...], engines: tuple[str, str], collations: tuple[str | None, ...]) -> None:
        self.key = case_key
        self.engines = engines
        self.collations = collations
        self.seen: list[set[tuple[Any, ...]]] = [set(), set()]

    def folds(self, parts: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        return [
            tuple(
                fold_key(self.engines[side], col.types[side], self.collations[side], part)
                for col, part in zip(self.key, parts, strict=True)
            )
            for side in (0, 1)
        ]

    def admit(self, parts: tuple[Any, ...], sides: Sequence[int] = (0, 1)) -> bool:
        folds = self.folds(parts)
        if any(folds[side] in self.seen[side] for side in sides):
            return False
        for side in sides:
            self.seen[side].add(folds[side])
        return True


def special(value: Any) -> bool:
    """A value of a rare sort, where wrong answers were found before: an infinity or NaN, a date only
    PostgreSQL holds, a text its type cannot parse, a duration that is no time of day, JSON nested
    100 levels deep."""
    value = unwrap(value)
    if isinstance(value, Far | Bad):
        return True
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, Decimal):
        return value.is_nan()
    if isinstance(value, dt.timedelta):
        return not dt.timedelta(0) <= value < dt.timedelta(days=1)
    return isinstance(value, Json) and nesting(value.value) >= 100


def nesting(document: Any) -> int:
    """How deep a JSON document's containers nest (without recursion: it may be 900 levels)."""
    deepest, stack = 0, [(document, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list | dict):
            stack += [(child, depth + 1) for child in (node.values() if isinstance(node, dict) else node)]
        deepest = max(deepest, depth)
    return deepest


def respellable(kind: str, value: Any) -> bool:
    """Whether `respell` writes the value another way."""
    if isinstance(value, float):
        return math.isnan(value)
    return kind in RESPELLED and value is not None


ACTIONS = ["keep"] * 4 + ["delete", "change", "change", "respell", "respell"]
# A target without a primary key also gets a key twice (the copy and a twin: the same values, the
# same respelled, or changed ones) and NULLs in key columns.
KEYLESS_ACTIONS = ["repeat", "repeat", "null key"]
RESPELLED = frozenset({"tstz", "json", "uuid", "dec", "ts", "time"})  # kinds `respell` writes another way
ADDED_NAMES = ("added_by", "zz_note", "a0")
ADDED_TYPES = {PG: ("bigint", "text"), MY: ("bigint", "text"), SQ: ("INTEGER", "TEXT")}


def one_in(draw: st.DrawFn, n: int) -> bool:
    """True one time in n (hypothesis draws an integer's lower bound more often than the others;
    shrinking goes towards False)."""
    return draw(st.integers(1, n)) == n


@st.composite
def cases(draw: st.DrawFn) -> Case:
    engines: tuple[str, str] = draw(st.sampled_from(PAIRS))
    lim = Limits(mariadb=MY in engines, sqlite=SQ in engines, postgres=PG in engines)
    collations = (
        draw(st.sampled_from(MY_COLLATIONS)) if engines[0] == MY else None,
        draw(st.sampled_from(MY_COLLATIONS)) if engines[1] == MY else None,
    )
    wide = SQ in engines and one_in(draw, 20)
    key_kind, key, columns = _draw_schema(draw, engines, wide)
    keyless = one_in(draw, 5)
    # Now and then, texts a column's type cannot parse where SQLite (or a char(36), for a UUID) holds them.
    odd = SQ in engines and not wide and one_in(draw, 5)

    def row_values(side: int) -> st.SearchStrategy[tuple[Any, ...]]:
        if wide:
            return st.integers(0, 2**32).map(lambda seed: _wide_row(columns, seed))
        return st.tuples(*(nullable(values_for(c, side)) for c in columns))

    def values_for(col: Col, side: int) -> st.SearchStrategy[Any]:
        return column_values(col, lim, bad=odd and holds_bad(engines[side], col.types[side], col.kind))

    registry = KeyRegistry(key, engines, collations)
    count = draw(st.integers(1, MAX_WIDE_ROWS) if wide else st.integers(0, MAX_ROWS))
    drawn = draw(st.lists(st.tuples(key_values(key_kind, key, lim), row_values(0)), min_size=count, max_size=count))
    source = [(*k, *values) for k, values in drawn if registry.admit(k, sides=(0,) if keyless else (0, 1))]

    # The target: a copy with drift.
    nkey = len(key)
    all_columns = (*key, *columns)
    target: list[Row] = []
    log: list[str] = []

    def label(row: Row) -> str:
        return f"key ({', '.join(show(v) for v in row[:nkey])})"

    def change(new: list[Any], what: str) -> None:
        # Often a special value, if the row holds one (special values were once hashed like NULL).
        specials = [i for i, v in enumerate(new[nkey:]) if special(v)]
        i = draw(st.sampled_from(specials)) if specials and one_in(draw, 2) else draw(st.integers(0, len(columns) - 1))
        col, old = columns[i], new[nkey + i]
        mode = draw(st.sampled_from(["nudge", "null", "fresh"]))
        if mode == "nudge" and old is not None:
            new[nkey + i] = nudge(col.kind, old, draw(st.integers(0, 5)), lim)
        elif mode == "null" and old is not None:
            new[nkey + i] = None
        else:
            new[nkey + i] = draw(values_for(col, 1))
        log.append(f"{what}: {col.name} {show(old)} -> {show(new[nkey + i])}")

    def respell_one(new: list[Any], what: str) -> None:
        spelled = [i for i, col in enumerate(all_columns) if respellable(col.kind, new[i])]
        if spelled:
            specials = [i for i in spelled if special(new[i])]  # often a special value, if there is one
            i = draw(st.sampled_from(specials if specials and one_in(draw, 2) else spelled))
            old, new[i] = new[i], respell(all_columns[i].kind, new[i], draw)
            log.append(f"{what}: respelled {show(old)} as {show(new[i])} (same value)")

    def conform(new: list[Any], what: str) -> Row:
        """A value the target cannot hold (a text its type cannot parse) becomes NULL there."""
        for i, col in enumerate(all_columns):
            if isinstance(new[i], Bad) and not holds_bad(engines[1], col.types[1], col.kind):
                log.append(f"{what}: {col.name} {show(new[i])} -> NULL (the target cannot hold it)")
                new[i] = None
        return tuple(new)

    for row in source:
        action = draw(st.sampled_from(ACTIONS + KEYLESS_ACTIONS if keyless else ACTIONS))
        what = label(row)
        if action == "delete":
            log.append(f"{what}: deleted")
            continue
        new = list(row)
        if action == "change":
            change(new, what)
        elif action == "respell":
            respell_one(new, what)
        elif action == "null key":
            i = draw(st.integers(0, nkey - 1))
            new[i] = None
            log.append(f"{what}: {key[i].name} -> NULL")
        elif action == "repeat":
            twin = list(row)
            how = draw(st.sampled_from(["same", "respell", "change"]))
            if how == "respell":
                respell_one(twin, f"{what} (twin)")
            elif how == "change":
                change(twin, f"{what} (twin)")
            log.append(f"{what}: twice ({how})")
            target.append(conform(twin, f"{what} (twin)"))
        target.append(conform(new, what))
    extra = draw(st.lists(st.tuples(key_values(key_kind, key, lim), row_values(1)), max_size=MAX_EXTRA_ROWS))
    for k, values in extra:
        if keyless and draw(st.integers(0, 2)) == 0:
            i = draw(st.integers(0, nkey - 1))
            k = (*k[:i], None, *k[i + 1 :])
        if keyless or registry.admit(k, sides=(1,)):
            target.append((*k, *values))
            log.append(f"key ({', '.join(show(v) for v in k)}): extra row {tuple(show(v) for v in values)}")

    added = None
    if one_in(draw, 6):
        kind = draw(st.sampled_from(["int", "text"]))
        native = ADDED_TYPES[engines[1]][kind == "text"]
        values = draw(st.lists(nullable(values_of(kind, lim)), min_size=len(target), max_size=len(target)))
        position = draw(st.integers(0, len(all_columns)))
        added = Added(draw(st.sampled_from(ADDED_NAMES)), native, position, tuple(values))

    where = None if draw(st.booleans()) else draw(filters(case_columns=all_columns, rows=[*source, *target], lim=lim))
    options = ["--chunk-size", str(draw(st.integers(3, 20)))]
    options += ["--bisection-factor", str(draw(st.integers(2, 8)))]
    options += ["--bisection-threshold", str(draw(st.integers(2, 8)))]
    if draw(st.integers(0, 3)) == 0:
        options.append("--reverse")
    return Case(engines, collations, key_kind, key, columns, source, target, log, where, tuple(options), keyless, added)


def literal_value(value: Any) -> bool:
    """Whether a --where literal is drawn from this value: literals are finite numbers and ISO texts
    (no BC years, infinities, NaN, nor texts a type cannot parse)."""
    if value is None or isinstance(value, Far | Bad):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    return not (isinstance(value, Decimal) and value.is_nan())


@st.composite
def filters(draw: st.DrawFn, case_columns: tuple[Col, ...], rows: list[Row], lim: Limits) -> Node:
    def atom() -> Cond:
        index = draw(st.integers(0, len(case_columns) - 1))
        col = case_columns[index]
        kind = col.kind
        if kind in NULL_ONLY:
            ops = ["is_null", "is_not_null"]
        elif kind in EQUALITY_ONLY:
            ops = ["=", "!=", "<>", "in", "not_in", "is_null", "is_not_null"]
        else:
            assert kind in ORDERED, kind
            ops = ["=", "!=", "<", "<=", ">", ">=", "in", "not_in", "between", "is_null", "is_not_null"]
        if kind in ("int", "bool", "dec", "double") and any(isinstance(row[index], Bad) for row in rows):
            # What a comparison makes of a number column's text that is no number is not promised
            # (SQLite orders text after every number): only IS [NOT] NULL there.
            ops = ["is_null", "is_not_null"]
        op = draw(st.sampled_from(ops))
        if op in ("is_null", "is_not_null"):
            return Cond(index, col.name, op)
        pool = [unwrap(row[index]) for row in rows if literal_value(row[index])]
        fresh = values_of(kind, lim).filter(literal_value)
        values = st.sampled_from(pool) if pool else fresh
        if pool and draw(st.integers(0, 4)) == 0:
            values = fresh
        count = {"in": 3, "not_in": 3, "between": 2}.get(op, 1)
        lits = draw(
            st.lists(st.tuples(values, st.integers(0, 11)), min_size=1 if count == 3 else count, max_size=count)
        )
        return Cond(index, col.name, op, tuple(literal(kind, v, variant, col.types[0]) for v, variant in lits))

    shape = draw(st.sampled_from(["atom", "atom", "not", "and", "or", "not-or"]))
    if shape == "atom":
        return atom()
    if shape == "not":
        return BoolOp("not", (atom(),))
    pair = (atom(), atom())
    if shape == "not-or":
        return BoolOp("not", (BoolOp("or", pair),))
    return BoolOp(shape, pair)


# --------------------------------------------------------------------------------------------
# The databases
# --------------------------------------------------------------------------------------------


@dataclass
class Place:
    """Where one side's tables live: an engine, the URL tablesync gets and an admin connection."""

    engine: str
    url: str
    conn: Any
    mysql_db: str | None = None  # MariaDB: the database, when not the connection's own

    def ref(self, table: str) -> str:
        if self.engine == MY:
            return f"`{self.mysql_db}`.`{table}`" if self.mysql_db else f"`{table}`"
        return f'"{table}"'

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        if self.engine == SQ:
            return list(self.conn.execute(sql).fetchall())
        if self.engine == PG:
            cur = self.conn.execute(sql)
            return list(cur.fetchall()) if cur.description else []
        with self.conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())

    def insert(
        self, table: str, names: Sequence[str], rows: Sequence[Sequence[Any]], binary: Sequence[bool] = ()
    ) -> None:
        """Inserts rows; a row whose key the unique index already holds is skipped (the model reads
        back what is stored, so a collation's notion of a duplicate is part of the data). PostgreSQL
        gets the `binary` columns in binary form (a double's every bit, a NaN's sign and payload too)."""
        if not rows:
            return
        columns = ", ".join(names)
        if self.engine == SQ:
            marks = ", ".join("?" * len(names))
            self.conn.execute("BEGIN")
            self.conn.executemany(f"INSERT OR IGNORE INTO {self.ref(table)} ({columns}) VALUES ({marks})", rows)
            self.conn.execute("COMMIT")
            return
        binary = [*binary, *[False] * (len(names) - len(binary))]
        marks = ", ".join("%b" if self.engine == PG and bits else "%s" for bits in binary)
        if self.engine == PG:
            sql = f"INSERT INTO {self.ref(table)} ({columns}) VALUES ({marks}) ON CONFLICT DO NOTHING"
            with self.conn.cursor() as cur:
                cur.executemany(sql, rows)
            return
        update = f"ON DUPLICATE KEY UPDATE {names[0]} = {names[0]}"
        sql = f"INSERT INTO {self.ref(table)} ({columns}) VALUES ({marks}) {update}"
        with self.conn.cursor() as cur:
            cur.executemany(sql, rows)


def _url_with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + database))


@pytest.fixture(scope="module")
def second_databases(
    pg_admin: psycopg.Connection, mysql_admin: pymysql.connections.Connection
) -> Iterator[tuple[psycopg.Connection, str]]:
    """A second PostgreSQL database and a second MariaDB database (same name), for the target of
    same-engine pairs (tablesync diffs the same table name on both sides)."""
    name = f"tsfuzz_{uuid.uuid4().hex[:10]}"
    pg_admin.execute("CREATE EXTENSION IF NOT EXISTS citext")
    pg_admin.execute(f'CREATE DATABASE "{name}"')
    with mysql_admin.cursor() as cur:
        cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
    info = pg_admin.info
    conn = psycopg.connect(host=info.host, port=info.port, user=info.user, dbname=name, autocommit=True)
    try:
        conn.execute("CREATE EXTENSION IF NOT EXISTS citext")
        yield conn, name
    finally:
        conn.close()
        pg_admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        with mysql_admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")


@dataclass
class Env:
    places: dict[tuple[str, int], Place]  # (engine, side) -> place; side 0 source, 1 target
    prefix: str
    counter: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text("Env(...)")

    def new_table(self) -> str:
        return f"{self.prefix}_{next(self.counter)}"


@pytest.fixture
def env(
    pg_admin: psycopg.Connection,
    mysql_admin: pymysql.connections.Connection,
    second_databases: tuple[psycopg.Connection, str],
    tmp_path: Path,
    table_name: str,
) -> Iterator[Env]:
    pg_b, second = second_databases
    with mysql_admin.cursor() as cur:
        cur.execute("SET time_zone = '+00:00'")  # TIMESTAMP values are written and read in UTC
    sqlite_conns = []
    for name in ("source.db", "target.db"):
        conn = sqlite3.connect(tmp_path / name, isolation_level=None)
        sqlite_conns.append(conn)
    places = {
        (PG, 0): Place(PG, PG_URL, pg_admin),
        (PG, 1): Place(PG, _url_with_database(PG_URL, second), pg_b),
        (MY, 0): Place(MY, MYSQL_URL, mysql_admin),
        (MY, 1): Place(MY, _url_with_database(MYSQL_URL, second), mysql_admin, mysql_db=second),
        (SQ, 0): Place(SQ, f"sqlite:///{(tmp_path / 'source.db').resolve()}", sqlite_conns[0]),
        (SQ, 1): Place(SQ, f"sqlite:///{(tmp_path / 'target.db').resolve()}", sqlite_conns[1]),
    }
    try:
        yield Env(places, table_name)
    finally:
        for conn in sqlite_conns:
            conn.close()


def stored(engine: str, kind: str, value: Any) -> Any:
    """A logical value as the driver writes it into the engine."""
    if isinstance(value, SqliteText):
        return iso_text(value.value, value.style) if engine == SQ else stored(engine, kind, value.value)
    if value is None:
        return None
    if isinstance(value, Far):
        return value.text
    if isinstance(value, Bad):
        return value.text
    if isinstance(value, dt.timedelta):
        return duration_text(value)  # pymysql writes a negative timedelta's fraction wrongly
    if kind == "uuid":
        text = str(value.value)
        return value.value if engine == PG else (text.upper() if engine == SQ and value.upper else text)
    if kind == "json":
        return spell(value)
    if engine == PG:
        return value
    if kind == "bool":
        return int(value)
    if kind == "tstz":
        if engine == MY:
            return value.astimezone(UTC).replace(tzinfo=None)  # the session's time zone is UTC
        return value.isoformat(sep=" ", timespec="microseconds")
    if engine == MY:
        return value
    if kind == "char":
        return value.rstrip(" ")  # SQLite CHAR(n) holds the value without padding
    if kind == "dec":
        return format(value, "f")  # NUMERIC affinity: stored as an integer or a double
    if kind == "ts":
        return value.isoformat(sep=" ", timespec="microseconds")
    if kind in ("date", "time"):
        return value.isoformat(timespec="microseconds") if kind == "time" else value.isoformat()
    return value


# --------------------------------------------------------------------------------------------
# The model: values read back and reduced to comparable forms
# --------------------------------------------------------------------------------------------


class NaN:
    """PostgreSQL's NaN (double precision or numeric), the only engine of the pairs it is drawn on:
    equal to itself and greater than every number, in comparisons as in PostgreSQL."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NaN)

    def __hash__(self) -> int:
        return 0

    def __lt__(self, other: object) -> bool:
        return False

    def __le__(self, other: object) -> bool:
        return isinstance(other, NaN)

    def __gt__(self, other: object) -> bool:
        return not isinstance(other, NaN)

    def __ge__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "NaN"


NAN = NaN()


@dataclass(frozen=True)
class Invalid:
    """A value SQLite stores that its column's declared type cannot parse: compared as the stored
    text (equal to the same text on another SQLite copy, different from every valid value and NULL,
    matching no comparison of a --where filter)."""

    text: str


def json_meaning(value: Any) -> str:
    """A JSON document's meaning as one text: keys sorted (the last of duplicated keys wins), no
    whitespace, numbers as exact decimals (1.0 == 1 == 1e0), true distinct from 1; any depth."""
    if isinstance(value, bool):
        raise AssertionError(f"JSON read back as a boolean: {value!r}")
    if isinstance(value, int | float):  # SQLite's NUMERIC affinity turned a top-level number into one
        return _json_number(Decimal(repr(value)) if isinstance(value, float) else Decimal(value))
    with deep_recursion():
        return _json_text(json.loads(value, parse_float=Decimal, parse_int=Decimal))


def _json_number(number: Decimal) -> str:
    """One text per value, exactly (no rounding to a context's precision): 1.50, 15e-1 and 1.5 alike."""
    if number == 0:
        return "0"
    sign, digits, exponent = number.as_tuple()
    text = "".join(map(str, digits))
    stripped = text.rstrip("0")
    assert isinstance(exponent, int)
    return f"{'-' if sign else ''}{stripped}e{exponent + len(text) - len(stripped)}"


def _json_text(node: Any) -> str:
    if node is None:
        return "null"
    if isinstance(node, bool):
        return "true" if node else "false"
    if isinstance(node, Decimal):
        return _json_number(node)
    if isinstance(node, str):
        return json.dumps(node)
    if isinstance(node, list):
        return "[" + ",".join([_json_text(v) for v in node]) + "]"
    return "{" + ",".join([json.dumps(k) + ":" + _json_text(v) for k, v in sorted(node.items())]) + "}"


_MOMENT = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?(Z|[+-]\d\d(?::\d\d)?)?( BC)?"
)
_DURATION = re.compile(r"(-)?(\d+):(\d\d):(\d\d)(?:\.(\d{1,6}))?")


def moment_order(value: Any) -> tuple[int, ...]:
    """A date, timestamp or instant (UTC) as a tuple that orders as time does: (0,) for -infinity,
    (2,) for infinity, else (1, astronomical year (1 BC is 0), month, day, hour, minute, second,
    microsecond). Texts are PostgreSQL's and SQLite's: ISO 8601, BC years, 5-digit years. A text that
    is no date (a month 13, 30 February) raises ValueError."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return (1, *value.timetuple()[:6], value.microsecond)
    if isinstance(value, dt.date):
        return (1, value.year, value.month, value.day, 0, 0, 0, 0)
    text = str(value).strip()
    if text in ("infinity", "-infinity"):
        return (2,) if text == "infinity" else (0,)
    match = _MOMENT.fullmatch(text)
    if match is None:
        raise ValueError(f"the model cannot read the stored date/time {text!r}")
    year_text, month, day, hour, minute, second, fraction, offset, bc = match.groups()
    year = 1 - int(year_text) if bc else int(year_text)
    shift = 400 * ((5000 - year) // 400)  # the Gregorian calendar repeats every 400 years
    moment = dt.datetime(
        year + shift,
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")),
    )
    if offset and offset != "Z":
        sign = -1 if offset[0] == "-" else 1
        hours, _, minutes = offset[1:].partition(":")
        moment -= sign * dt.timedelta(hours=int(hours), minutes=int(minutes or 0))
    return (1, moment.year - shift, *moment.timetuple()[1:6], moment.microsecond)


def duration_micros(value: Any) -> int:
    """A time of day or a MariaDB duration in microseconds (signed; hours beyond 24 kept); a text
    that is none raises ValueError."""
    if isinstance(value, dt.timedelta):
        return value // MICROSECOND
    if isinstance(value, dt.time):
        return ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    match = _DURATION.fullmatch(str(value))
    if match is None or int(match[3]) > 59 or int(match[4]) > 59:
        raise ValueError(f"no time: {value!r}")
    sign, hours, minutes, seconds, fraction = match.groups()
    micros = ((int(hours) * 60 + int(minutes)) * 60 + int(seconds)) * 1_000_000 + int((fraction or "0").ljust(6, "0"))
    return -micros if sign else micros


def comparable(kind: str, value: Any, engine: str) -> Any:
    """A stored value reduced by the promised equality rules (docs/normalization.md); `engine`: where
    it is stored (only SQLite holds values their column's type cannot parse: `Invalid`)."""
    if value is None:
        return None
    if kind in ("int", "bool", "dec", "double") and engine == SQ and isinstance(value, str):
        return Invalid(value)  # a text the column's numeric affinity could not convert
    if kind in ("int", "bool", "dec"):
        if isinstance(value, bool):
            return Decimal(int(value))
        if isinstance(value, float):  # SQLite holds decimals as doubles: their shortest decimal
            return Decimal(repr(value))
        number = Decimal(value) if isinstance(value, int) else Decimal(str(value))
        return NAN if number.is_nan() else number
    if kind == "double":
        double = float(value)
        if math.isnan(double):
            return NAN
        return 0.0 if double == 0 else double  # -0.0 == 0.0; otherwise IEEE equality is bit equality
    if kind == "text":
        return value.decode() if isinstance(value, bytes) else str(value)
    if kind == "char":
        return str(value).rstrip(" ")
    if kind == "uuid":
        try:
            return str(value if isinstance(value, uuid.UUID) else uuid.UUID(str(value)))
        except ValueError:
            return str(value)  # a text that is no UUID is compared as that text
    if kind == "bytes":
        return bytes(value)
    if kind == "json":
        return json_meaning(value)
    try:
        if kind in ("ts", "tstz", "date"):
            return moment_order(value)
        if kind == "time":
            return duration_micros(value)
    except ValueError:
        if engine == SQ:
            return Invalid(str(value))
        raise
    raise AssertionError(kind)


Key = tuple[Any, ...]


def report_key(kind: str, value: Any) -> Any:
    """A key part as the report lists it: integers as numbers, text unpadded, UUIDs lowercase, NULL
    (a target without a primary key) as null."""
    if value is None:
        return None
    if kind == "int":
        return int(value)
    if kind == "char":
        return str(value).rstrip(" ")
    if kind == "uuid":
        return str(value).lower()
    return str(value)


def select_sql(case: Case, side: int, place: Place, table: str) -> str:
    exprs = []
    for col in case.all_columns:
        native = col.types[side]
        if place.engine == PG and (col.kind == "json" or native == "citext"):
            exprs.append(f"{col.name}::text")  # the stored JSON text (psycopg would parse it to floats)
        elif place.engine == PG and col.kind == "tstz":
            exprs.append(f"({col.name} AT TIME ZONE 'UTC')::text")  # as text: BC years, infinities
        elif place.engine == PG and col.kind in ("ts", "date"):
            exprs.append(f"{col.name}::text")
        else:
            exprs.append(col.name)
    return f"SELECT {', '.join(exprs)} FROM {place.ref(table)}"


@dataclass
class Side:
    """One table as read back: canonical key -> its rows, comparable and as stored (for messages).
    A key has more than one row, and rows with a NULL in a key column (`null_rows`: key, comparable
    row, stored row) exist, only on a target without a primary key."""

    rows: dict[Key, list[Row]]
    raw: dict[Key, list[Row]]
    null_rows: list[tuple[Key, Row, Row]]


def read_side(case: Case, side: int, place: Place, table: str) -> Side:
    result = Side({}, {}, [])
    nkey = len(case.key)
    keyless = side == 1 and case.keyless
    for record in place.execute(select_sql(case, side, place, table)):
        key = tuple(report_key(col.kind, v) for col, v in zip(case.key, record[:nkey], strict=True))
        row = tuple(comparable(col.kind, v, place.engine) for col, v in zip(case.all_columns, record, strict=True))
        if None in key:
            assert keyless, f"a NULL in the key {key} on the {('source', 'target')[side]}: a bug of the test"
            result.null_rows.append((key, row, tuple(record)))
            continue
        if key in result.rows:
            assert keyless, f"two rows with key {key} on the {('source', 'target')[side]}: a bug of the test"
        result.rows.setdefault(key, []).append(row)
        result.raw.setdefault(key, []).append(tuple(record))
    return result


KINDS_FOUND = ("missing", "extra", "differing")


@dataclass
class Expected:
    found: dict[str, Counter[Key]]  # missing, extra, differing: how many times each key is listed
    kept: tuple[set[Key], set[Key]]  # keys of the rows the filter keeps per side
    rows_kept: tuple[int, int]


def expected_diff(case: Case, source: Side, target: Side) -> Expected:
    """The promise: missing and differing keys, and the target's extra ones; on a target without a
    primary key, a key held by more than one row is extra once (whether or not the source has it)
    and differing too when the source has it and none of those rows equals the source's; each row
    with a NULL in a key column is extra, with its key. The filter applies to every row."""

    def kept(row: Row) -> bool:
        return case.where is None or evaluate(case.where, row) is True

    nkey = len(case.key)
    src = {k: rows[0] for k, rows in source.rows.items() if kept(rows[0])}
    dst = {k: held for k, rows in target.rows.items() if (held := [r for r in rows if kept(r)])}
    nulls = [k for k, row, _ in target.null_rows if kept(row)]
    found = {
        "missing": Counter(k for k in src if k not in dst),
        "extra": Counter(k for k, rows in dst.items() if k not in src or len(rows) > 1) + Counter(nulls),
        "differing": Counter(k for k, row in src.items() if k in dst and all(r[nkey:] != row[nkey:] for r in dst[k])),
    }
    return Expected(found, (set(src), set(dst) | set(nulls)), (len(src), sum(map(len, dst.values())) + len(nulls)))


# --------------------------------------------------------------------------------------------
# Running the tool and explaining a disagreement
# --------------------------------------------------------------------------------------------


TOOL_SECONDS = 20  # an example's diff takes well under a second: beyond this, it would never end
HUNG = -1  # run_tool's exit status for a diff stopped by the watchdog


def run_tool(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        with watchdog(TOOL_SECONDS):
            code = main(args)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    except ToolHung as exc:
        out, err = capsys.readouterr()
        return HUNG, out, f"{err}{exc}"
    out, err = capsys.readouterr()
    return code, out, err


def explain(
    case: Case,
    source: Side,
    target: Side,
    expected: Expected,
    reported: dict[str, Counter[Key]] | None,
    run: tuple[int, str, str],
    table: str,
) -> str:
    code, out, err = run

    def count(side: Side) -> int:
        return sum(map(len, side.rows.values())) + len(side.null_rows)

    lines = [
        f"engines: {case.engines[0]} -> {case.engines[1]} (table {table})",
        f"source DDL: {case.ddl(0, table)}",
        f"target DDL: {case.ddl(1, table)}",
        f"--where: {render(case.where) if case.where is not None else '(none)'}",
        f"options: {' '.join(case.options)}",
        f"exit status {code}; stderr: {err.strip()!r}",
        f"rows stored: source {count(source)}, target {count(target)}; "
        f"kept by the filter: source {expected.rows_kept[0]}, target {expected.rows_kept[1]}",
    ]
    if reported is None:
        lines.append(f"stdout: {out[:2000]!r}")
        lines.append(f"expected: { {k: sorted(v.elements(), key=repr) for k, v in expected.found.items()} }")
    else:
        names = [c.name for c in case.all_columns]
        for kind, keys in expected.found.items():
            for label, wrong in (
                ("expected, not reported", keys - reported[kind]),
                ("reported, not expected", reported[kind] - keys),
            ):
                for key, times in sorted(wrong.items(), key=repr):
                    lines.append(f"{kind} {label}: key {list(key)}" + (f" ({times} times)" if times > 1 else ""))
                    for side_name, side, kept in (
                        ("source", source, expected.kept[0]),
                        ("target", target, expected.kept[1]),
                    ):
                        stored_rows = side.raw.get(key, []) + [raw for k, _, raw in side.null_rows if k == key]
                        if not stored_rows:
                            lines.append(f"    {side_name}: no such row")
                        for stored_row in stored_rows:
                            values = ", ".join(f"{n}={show(v)}" for n, v in zip(names, stored_row, strict=True))
                            lines.append(f"    {side_name} (kept by filter: {key in kept}): {values}")
                    for target_row in target.rows.get(key, []) if key in source.rows else []:
                        cols = [
                            f"{n}: {show(a)} vs {show(b)}"
                            for n, a, b in zip(names, source.rows[key][0], target_row, strict=True)
                            if a != b
                        ]
                        lines.append(f"    model sees differing columns: {cols or 'none'}")
    lines.append(f"drift applied: {case.drift}")
    return "\n".join(lines)


def load(case: Case, env: Env, table: str) -> tuple[Place, Place]:
    places = (env.places[case.engines[0], 0], env.places[case.engines[1], 1])
    for side, (place, rows) in enumerate(zip(places, (case.source, case.target), strict=True)):
        place.execute(case.ddl(side, place.ref(table)))
        names = [c.name for c in case.all_columns]
        converted = [
            tuple(stored(place.engine, col.kind, v) for col, v in zip(case.all_columns, row, strict=True))
            for row in rows
        ]
        binary = [col.kind == "double" for col in case.all_columns]
        if side == 1 and case.added is not None:
            names.append(case.added.name)
            converted = [(*row, value) for row, value in zip(converted, case.added.values, strict=True)]
        place.insert(table, names, converted, binary)
    return places


def drop(places: Sequence[Place], table: str) -> None:
    for place in places:
        place.execute(f"DROP TABLE IF EXISTS {place.ref(table)}")


# --------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------


@settings(
    max_examples=MAX_EXAMPLES,
    # CI replays one fixed sequence of examples (a landing is not decided by chance); elsewhere each
    # run explores new ones (`FUZZ_EXAMPLES=5000` for a longer hunt).
    derandomize=os.environ.get("CI") == "true",
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],  # no explain: it costs minutes
)
@given(case=cases())
def test_diff_matches_the_python_model(env: Env, capsys: pytest.CaptureFixture[str], case: Case) -> None:
    table = env.new_table()
    places = (env.places[case.engines[0], 0], env.places[case.engines[1], 1])
    try:
        load(case, env, table)
        source = read_side(case, 0, places[0], table)
        target = read_side(case, 1, places[1], table)
        expected = expected_diff(case, source, target)
        args = ["diff", "--table", table, places[0].url, places[1].url, "--format", "json", "--no-progress"]
        if case.where is not None:
            args += ["--where", render(case.where)]
        run = run_tool(capsys, [*args, *case.options])
        code, out, err = run
        assert code in (0, 1) and "Traceback" not in err, explain(case, source, target, expected, None, run, table)
        (result,) = json.loads(out)["targets"]
        reported = {kind: Counter(tuple(k) for k in result[kind]) for kind in KINDS_FOUND}
        any_difference = any(expected.found.values())
        agree = reported == expected.found and code == (1 if any_difference else 0)
        assert agree, "tablesync and the model disagree\n" + explain(
            case, source, target, expected, reported, run, table
        )
        # A column only the target has is not compared, and is named: in the result, and in one
        # warning line on stderr (nothing else is written there).
        added = [case.added.name] if case.added is not None else []
        warnings = err.splitlines()
        named = len(warnings) == 1 and "warning" in warnings[0] and repr(added[0]) in warnings[0] if added else not err
        assert result["target_only_columns"] == added and named, (
            f"target-only column {added}: target_only_columns {result['target_only_columns']}, stderr {err!r}"
        )
    finally:
        drop(places, table)
