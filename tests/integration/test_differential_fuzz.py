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
  engine has several (json/jsonb, text/varchar/citext/ICU collation, MariaDB char(36)/uuid, ...);
  MariaDB tables draw their collation (utf8mb4_bin, utf8mb4_general_ci, utf8mb4_unicode_ci);
* 0-40 source rows holding edge values (NULL, '', '0', ~300-character text, bigint extremes,
  -0.0, subnormal and huge doubles, 0.000000 and -0.00, timestamps at microsecond edges, nested
  JSON), only values both engines of the pair can hold: without MariaDB also BC dates and
  timestamps, years after 9999 and +-infinity (`Far`), which PostgreSQL holds and SQLite holds as
  PostgreSQL's text;
* a target copy with drift: rows deleted, extra rows, one column changed (to its nearest
  neighbour, to NULL or to a fresh value), and "non-changes" that must not be reported (the same
  JSON respelled: key order, whitespace, escapes, 1 vs 1.0 vs 1e0, a duplicated key whose last
  value wins; the same timestamptz instant in another offset; 1.50 vs 1.5; a UUID written in upper
  case on SQLite; a SQLite date/time text in another ISO 8601 spelling: 'T', a shorter fraction, Z);
* optionally a --where filter over one or two columns (= != <> < <= > >=, IN, NOT IN, BETWEEN,
  IS [NOT] NULL, AND, OR, NOT) with literals drawn from the data, in several spellings (text in
  another case or with a trailing space, quoted numbers, 1/0 for booleans, UUIDs in upper case,
  timestamps with 'T', a short fraction, an offset, 'Z' or none); bytes and JSON columns only get
  IS [NOT] NULL;
* small --chunk-size, --bisection-factor and --bisection-threshold (and sometimes --reverse), so
  that chunking and bisection are exercised on a few dozen rows.

How the expected answer is computed, independently of tablesync's hashing: both tables are read
back with the plain drivers (psycopg, pymysql, sqlite3) and every stored value is reduced by the
rules of `comparable` (the promise of docs/normalization.md): integers, booleans and decimals by
numeric value; doubles by value with -0.0 == 0.0; text by code points (char(n) without padding);
UUIDs as lowercase text; bytes by bytes; timestamps to the microsecond; timestamptz as UTC instants;
dates; times; JSON by meaning (keys sorted, numbers as decimals). The filter is evaluated in Python
with SQL's three-valued logic and the promised semantics (text byte for byte whatever the
collation, numbers by value, timestamptz literals as instants, UTC when they carry no offset; a
literal takes the kind of the source's column, so on a MariaDB char(36) it is text), and the
missing / extra / differing keys are set differences over the canonical keys. As the model
reads what the databases actually hold, a value an engine stores differently from how it was
written (padding, rounding to SQLite's 15 digits) is part of the truth, not an error of the test.

The tool's JSON report must list exactly those keys, and exit with 0 when there is no difference,
1 otherwise. A failure prints the engine pair, both tables' DDL, the filter, the options and, for
every key on which the tool and the model disagree, that row as stored on each side.

FUZZ_EXAMPLES=N in the environment sets the number of examples (default 600, about 40 s here when
nothing fails; shrinking a failure takes a minute or two more).
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
import unicodedata
import uuid
from collections.abc import Callable, Iterator, Sequence
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

pytestmark = pytest.mark.integration

# The same servers as tests/conftest.py (its module cannot be imported from here: both are `conftest`).
PG_URL = os.environ.get("TABLESYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TABLESYNC_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")

MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "600"))
MAX_ROWS = 40
MAX_EXTRA_ROWS = 6

PG, MY, SQ = "pg", "mysql", "sqlite"
ENGINES = (SQ, PG, MY)  # hypothesis shrinks towards the first: SQLite, the cheapest
PAIRS = [(s, t) for s in ENGINES for t in ENGINES]
UTC = dt.UTC

# --------------------------------------------------------------------------------------------
# Kinds and their native types
# --------------------------------------------------------------------------------------------

KINDS = ("int", "bool", "dec", "double", "text", "char", "uuid", "bytes", "ts", "tstz", "date", "time", "json")
# Columns draw every kind, the ones with the most ways to go wrong twice as often.
COLUMN_KINDS = (*KINDS, "json", "tstz", "text", "uuid", "dec", "double")
KEY_KINDS = ("int", "text", "char", "uuid", "composite")
ORDERED = frozenset({"int", "dec", "double", "text", "char", "ts", "tstz", "date", "time"})
EQUALITY_ONLY = frozenset({"bool", "uuid"})  # filters: = != IN NOT IN IS [NOT] NULL
NULL_ONLY = frozenset({"bytes", "json"})  # filters: IS [NOT] NULL only (anything else is refused)
MY_COLLATIONS = ("utf8mb4_bin", "utf8mb4_general_ci", "utf8mb4_unicode_ci")
ICU = 'COLLATE "und-x-icu"'

# Native types per (engine, kind); each side of a case draws one.
TYPES: dict[tuple[str, str], tuple[str, ...]] = {
    (PG, "int"): ("bigint",),
    (MY, "int"): ("bigint",),
    (SQ, "int"): ("BIGINT", "INTEGER"),
    (PG, "bool"): ("boolean",),
    (MY, "bool"): ("tinyint(1)",),
    (SQ, "bool"): ("BOOLEAN",),
    (PG, "dec"): ("numeric(20,6)",),
    (MY, "dec"): ("decimal(20,6)",),
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


@dataclass(frozen=True)
class Limits:
    """What both engines of a pair can hold."""

    mariadb: bool  # a side is MariaDB: dates and datetimes 1000-9999, timestamptz 1970-2038 (UTC)
    sqlite: bool  # a side is SQLite: decimals to 15 significant digits (it stores them as doubles)


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


def spell(doc: Json) -> str:
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
class Far:
    """A date or timestamp only PostgreSQL holds (and SQLite, as text): a BC one, one after 9999, or
    an infinity; `text` is how both are given it (PostgreSQL's own input form)."""

    text: str

    def __repr__(self) -> str:
        return f"Far({self.text!r})"


def unwrap(value: Any) -> Any:
    return value.value if isinstance(value, SqliteText) else value


def iso_text(value: dt.datetime | dt.date | dt.time, style: int) -> str:
    """An ISO 8601 text: style 0 the usual form (' ' separator, 6 fractional digits), 1 with a 'T'
    separator, 2 the fraction without trailing zeros (none for whole seconds), 3 in UTC with 'Z'
    (timestamptz; otherwise like 0)."""
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
    return repr(value)


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
# known (see fold_key): case pairs, a composed and a decomposed accent, spaces, punctuation.
KEY_ALPHABET = "aAbBzZeE\u00e9\u00c9\u0301 0-_~\u03c9\u03a9\U0001f600"
KEY_EDGES = ["", " ", "0", "a", "A", "a ", " a", "\u00e9", "e\u0301", "E\u0301", "e", "ab", "aB", "AB", "~", "_"]
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
        return st.sampled_from(edges) | st.floats(allow_nan=False, allow_infinity=False)
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
        return st.sampled_from(edges) | st.times()
    if kind == "json":
        return st.builds(Json, _json_values(), SPELLINGS)
    raise AssertionError(kind)


def nullable(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """NULL one time in six (and NULL is where a value shrinks to)."""
    return st.one_of(st.none(), *[strategy] * 5)


def key_values(kind: str, lim: Limits) -> st.SearchStrategy[tuple[Any, ...]]:
    """A key's parts."""
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
    us = dt.timedelta(microseconds=1)
    if isinstance(value, Far):  # no neighbour that is as far: an ordinary value
        return {"ts": dt.datetime(2000, 1, 1), "tstz": dt.datetime(2000, 1, 1, tzinfo=UTC)}.get(
            kind, dt.date(2000, 1, 1)
        )
    if kind == "int":
        return value - 1 if value > 0 else value + 1
    if kind == "bool":
        return not value
    if kind == "dec":
        step = Decimal(1).scaleb(max(value.as_tuple().exponent, -6))
        return value - step if value > 0 else value + step
    if kind == "double":
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
        moment = dt.datetime.combine(dt.date(2000, 1, 1), value)
        return (moment - us if value > dt.time(0) else moment + us).time()
    if kind == "json":
        return Json(_json_nudge(value.value), value.spelling)
    raise AssertionError(kind)


def respell(kind: str, value: Any, draw: st.DrawFn) -> Any:
    """The same value written another way (must never be reported)."""
    if isinstance(value, Far):
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
    if value is None:
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
        return Lit(_quote(iso_text(value, variant % 3)), value)
    raise AssertionError(f"no literals for {kind}")


# --------------------------------------------------------------------------------------------
# The case: schema, rows, drift, filter, options
# --------------------------------------------------------------------------------------------


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

    @property
    def all_columns(self) -> tuple[Col, ...]:
        return (*self.key, *self.columns)

    def ddl(self, side: int, table: str) -> str:
        engine = self.engines[side]
        defs = [f"{c.name} {c.types[side]}" + (" NOT NULL" if c in self.key else "") for c in self.all_columns]
        defs.append(f"PRIMARY KEY ({', '.join(c.name for c in self.key)})")
        body = f"CREATE TABLE {table} ({', '.join(defs)})"
        if engine == MY:
            body += f" ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE={self.collations[side]}"
        return body

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def __repr__(self) -> str:
        lines = [
            f"Case({self.engines[0]} -> {self.engines[1]}, key {self.key_kind}",
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


def _draw_schema(draw: st.DrawFn, engines: tuple[str, str]) -> tuple[str, tuple[Col, ...], tuple[Col, ...]]:
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
    kinds = draw(st.lists(st.sampled_from(COLUMN_KINDS), min_size=1, max_size=5))
    columns = tuple(Col(f"c{i + 1}_{kind}", kind, native(kind, TYPES)) for i, kind in enumerate(kinds))
    return key_kind, key, columns


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


ACTIONS = ["keep"] * 4 + ["delete", "change", "change", "respell", "respell"]
RESPELLED = frozenset({"tstz", "json", "uuid", "dec", "ts", "time"})  # kinds `respell` writes another way


@st.composite
def cases(draw: st.DrawFn) -> Case:
    engines: tuple[str, str] = draw(st.sampled_from(PAIRS))
    lim = Limits(mariadb=MY in engines, sqlite=SQ in engines)
    collations = (
        draw(st.sampled_from(MY_COLLATIONS)) if engines[0] == MY else None,
        draw(st.sampled_from(MY_COLLATIONS)) if engines[1] == MY else None,
    )
    key_kind, key, columns = _draw_schema(draw, engines)
    registry = KeyRegistry(key, engines, collations)
    row_values = st.tuples(*(nullable(values_of(c.kind, lim)) for c in columns))
    count = draw(st.integers(0, MAX_ROWS))
    drawn = draw(st.lists(st.tuples(key_values(key_kind, lim), row_values), min_size=count, max_size=count))
    source = [(*k, *values) for k, values in drawn if registry.admit(k)]

    # The target: a copy with drift.
    nkey = len(key)
    target: list[Row] = []
    log: list[str] = []
    for row in source:
        action = draw(st.sampled_from(ACTIONS))
        label = f"key ({', '.join(show(v) for v in row[:nkey])})"
        if action == "delete":
            log.append(f"{label}: deleted")
            continue
        new = list(row)
        if action == "change":
            i = draw(st.integers(0, len(columns) - 1))
            col, old = columns[i], row[nkey + i]
            mode = draw(st.sampled_from(["nudge", "null", "fresh"]))
            if mode == "nudge" and old is not None:
                new[nkey + i] = nudge(col.kind, old, draw(st.integers(0, 5)), lim)
            elif mode == "null" and old is not None:
                new[nkey + i] = None
            else:
                new[nkey + i] = draw(values_of(col.kind, lim))
            log.append(f"{label}: {col.name} {show(old)} -> {show(new[nkey + i])}")
        elif action == "respell":
            spelled = [i for i, col in enumerate((*key, *columns)) if col.kind in RESPELLED and row[i] is not None]
            if spelled:
                i = draw(st.sampled_from(spelled))
                new[i] = respell((*key, *columns)[i].kind, row[i], draw)
                log.append(f"{label}: respelled {show(row[i])} as {show(new[i])} (same value)")
        target.append(tuple(new))
    extra = draw(st.lists(st.tuples(key_values(key_kind, lim), row_values), max_size=MAX_EXTRA_ROWS))
    for k, values in extra:
        if registry.admit(k, sides=(1,)):
            target.append((*k, *values))
            log.append(f"key ({', '.join(show(v) for v in k)}): extra row {tuple(show(v) for v in values)}")

    where = (
        None if draw(st.booleans()) else draw(filters(case_columns=(*key, *columns), rows=[*source, *target], lim=lim))
    )
    options = ["--chunk-size", str(draw(st.integers(3, 20)))]
    options += ["--bisection-factor", str(draw(st.integers(2, 8)))]
    options += ["--bisection-threshold", str(draw(st.integers(2, 8)))]
    if draw(st.integers(0, 3)) == 0:
        options.append("--reverse")
    return Case(engines, collations, key_kind, key, columns, source, target, log, where, tuple(options))


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
        op = draw(st.sampled_from(ops))
        if op in ("is_null", "is_not_null"):
            return Cond(index, col.name, op)
        pool = [unwrap(row[index]) for row in rows if row[index] is not None and not isinstance(row[index], Far)]
        fresh = values_of(kind, lim).filter(lambda v: not isinstance(v, Far))  # literals: ISO texts only
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

    def insert(self, table: str, names: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        """Inserts rows; a row whose key the unique index already holds is skipped (the model reads
        back what is stored, so a collation's notion of a duplicate is part of the data)."""
        if not rows:
            return
        columns = ", ".join(names)
        if self.engine == SQ:
            marks = ", ".join("?" * len(names))
            self.conn.execute("BEGIN")
            self.conn.executemany(f"INSERT OR IGNORE INTO {self.ref(table)} ({columns}) VALUES ({marks})", rows)
            self.conn.execute("COMMIT")
            return
        marks = ", ".join(["%s"] * len(names))
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


def json_meaning(value: Any) -> Any:
    """A JSON document's meaning as a hashable tree: keys sorted, numbers as decimals (1.0 == 1),
    true distinct from 1."""
    if isinstance(value, bool):
        raise AssertionError(f"JSON read back as a boolean: {value!r}")
    if isinstance(value, int | float):  # SQLite's NUMERIC affinity turned a top-level number into one
        parsed: Any = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
    else:
        parsed = json.loads(value, parse_float=Decimal, parse_int=Decimal)

    def tag(node: Any) -> Any:
        if node is None:
            return ("null",)
        if isinstance(node, bool):
            return ("bool", node)
        if isinstance(node, Decimal):
            return ("number", node)
        if isinstance(node, str):
            return ("string", node)
        if isinstance(node, list):
            return ("array", tuple(tag(v) for v in node))
        return ("object", tuple(sorted((k, tag(v)) for k, v in node.items())))

    return tag(parsed)


_MOMENT = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)(?:[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?)?(Z|[+-]\d\d(?::\d\d)?)?( BC)?"
)


def moment_order(value: Any) -> tuple[int, ...]:
    """A date, timestamp or instant (UTC) as a tuple that orders as time does: (0,) for -infinity,
    (2,) for infinity, else (1, astronomical year (1 BC is 0), month, day, hour, minute, second,
    microsecond). Texts are PostgreSQL's and SQLite's: ISO 8601, BC years, 5-digit years."""
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
    assert match is not None, f"the model cannot read the stored date/time {text!r}"
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


def comparable(kind: str, value: Any) -> Any:
    """A stored value reduced by the promised equality rules (docs/normalization.md)."""
    if value is None:
        return None
    if kind in ("int", "bool", "dec"):
        if isinstance(value, bool):
            return Decimal(int(value))
        if isinstance(value, float):  # SQLite holds decimals as doubles: their shortest decimal
            return Decimal(repr(value))
        return Decimal(value) if isinstance(value, int) else Decimal(str(value))
    if kind == "double":
        number = float(value)
        return 0.0 if number == 0 else number  # -0.0 == 0.0; otherwise IEEE equality is bit equality
    if kind == "text":
        return value.decode() if isinstance(value, bytes) else str(value)
    if kind == "char":
        return str(value).rstrip(" ")
    if kind == "uuid":
        return str(value).lower()
    if kind == "bytes":
        return bytes(value)
    if kind in ("ts", "tstz", "date"):
        return moment_order(value)
    if kind == "time":
        if isinstance(value, dt.timedelta):
            return (dt.datetime(2000, 1, 1) + value).time()
        return value if isinstance(value, dt.time) else dt.time.fromisoformat(str(value))
    if kind == "json":
        return json_meaning(value)
    raise AssertionError(kind)


def report_key(kind: str, value: Any) -> Any:
    """A key part as the report lists it: integers as numbers, text unpadded, UUIDs lowercase."""
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
    """One table as read back: canonical key -> comparable row, and the raw rows for messages."""

    rows: dict[tuple[Any, ...], tuple[Any, ...]]
    raw: dict[tuple[Any, ...], tuple[Any, ...]]


def read_side(case: Case, side: int, place: Place, table: str) -> Side:
    rows: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    raw: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    nkey = len(case.key)
    for record in place.execute(select_sql(case, side, place, table)):
        key = tuple(report_key(col.kind, v) for col, v in zip(case.key, record[:nkey], strict=True))
        assert key not in rows, f"two rows with key {key} on the {('source', 'target')[side]}: a bug of the test"
        rows[key] = tuple(comparable(col.kind, v) for col, v in zip(case.all_columns, record, strict=True))
        raw[key] = tuple(record)
    return Side(rows, raw)


@dataclass
class Expected:
    missing: set[tuple[Any, ...]]
    extra: set[tuple[Any, ...]]
    differing: set[tuple[Any, ...]]
    selected: tuple[set[tuple[Any, ...]], set[tuple[Any, ...]]]  # keys the filter keeps per side

    def as_dict(self) -> dict[str, set[tuple[Any, ...]]]:
        return {"missing": self.missing, "extra": self.extra, "differing": self.differing}


def expected_diff(case: Case, source: Side, target: Side) -> Expected:
    def kept(side: Side) -> set[tuple[Any, ...]]:
        return {k for k, row in side.rows.items() if case.where is None or evaluate(case.where, row) is True}

    src, dst = kept(source), kept(target)
    nkey = len(case.key)
    differing = {k for k in src & dst if source.rows[k][nkey:] != target.rows[k][nkey:]}
    return Expected(src - dst, dst - src, differing, (src, dst))


# --------------------------------------------------------------------------------------------
# Running the tool and explaining a disagreement
# --------------------------------------------------------------------------------------------


def run_tool(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        code = main(args)
    except SystemExit as exc:  # argparse
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    return code, out, err


def explain(
    case: Case,
    source: Side,
    target: Side,
    expected: Expected,
    reported: dict[str, set[tuple[Any, ...]]] | None,
    run: tuple[int, str, str],
    table: str,
) -> str:
    code, out, err = run
    lines = [
        f"engines: {case.engines[0]} -> {case.engines[1]} (table {table})",
        f"source DDL: {case.ddl(0, table)}",
        f"target DDL: {case.ddl(1, table)}",
        f"--where: {render(case.where) if case.where is not None else '(none)'}",
        f"options: {' '.join(case.options)}",
        f"exit status {code}; stderr: {err.strip()!r}",
        f"rows stored: source {len(source.rows)}, target {len(target.rows)}; "
        f"kept by the filter: source {len(expected.selected[0])}, target {len(expected.selected[1])}",
    ]
    if reported is None:
        lines.append(f"stdout: {out[:2000]!r}")
        lines.append(f"expected: { {k: sorted(v, key=repr) for k, v in expected.as_dict().items()} }")
    else:
        names = [c.name for c in case.all_columns]
        for kind, keys in expected.as_dict().items():
            for label, wrong in (
                ("expected, not reported", keys - reported[kind]),
                ("reported, not expected", reported[kind] - keys),
            ):
                for key in sorted(wrong, key=repr):
                    lines.append(f"{kind} {label}: key {list(key)}")
                    for side_name, side, kept in (
                        ("source", source, expected.selected[0]),
                        ("target", target, expected.selected[1]),
                    ):
                        if key not in side.raw:
                            lines.append(f"    {side_name}: no such row")
                            continue
                        stored_row = ", ".join(f"{n}={show(v)}" for n, v in zip(names, side.raw[key], strict=True))
                        lines.append(f"    {side_name} (kept by filter: {key in kept}): {stored_row}")
                    if key in source.rows and key in target.rows:
                        cols = [
                            f"{n}: {show(a)} vs {show(b)}"
                            for n, a, b in zip(names, source.rows[key], target.rows[key], strict=True)
                            if a != b
                        ]
                        lines.append(f"    model sees differing columns: {cols or 'none'}")
    lines.append(f"drift applied: {case.drift}")
    return "\n".join(lines)


def load(case: Case, env: Env, table: str) -> tuple[Place, Place]:
    places = (env.places[case.engines[0], 0], env.places[case.engines[1], 1])
    names = [c.name for c in case.all_columns]
    for side, (place, rows) in enumerate(zip(places, (case.source, case.target), strict=True)):
        place.execute(case.ddl(side, place.ref(table)))
        converted = [
            tuple(stored(place.engine, col.kind, v) for col, v in zip(case.all_columns, row, strict=True))
            for row in rows
        ]
        place.insert(table, names, converted)
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
        reported: dict[str, set[tuple[Any, ...]]] = {}
        for kind in ("missing", "extra", "differing"):
            keys = [tuple(k) for k in result[kind]]
            assert len(keys) == len(set(keys)), f"{kind} lists a key twice: {keys}"
            reported[kind] = set(keys)
        any_difference = any(expected.as_dict().values())
        agree = reported == expected.as_dict() and code == (1 if any_difference else 0)
        assert agree, "tablesync and the model disagree\n" + explain(
            case, source, target, expected, reported, run, table
        )
    finally:
        drop(places, table)
