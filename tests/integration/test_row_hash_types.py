"""Row hashes computed inside PostgreSQL, MariaDB and SQLite agree with each other and with the Python
reference (tablesync.normalize.row_hash) for every supported kind of value, tell apart values that
differ in the smallest way, and unsupported column types are refused by name.

Nothing is mocked: the tables live on the real servers (and in SQLite files under tmp_path), and
every hash comes from the connector API (describe -> TablePlan -> row_hashes).

The row string hashes the key columns first, then the compared columns (docs/normalization.md), so
two rows' hashes are only comparable under the same key: a value is compared with another by the
hash each would have under one key, either in a twin table or through the Python reference."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from conftest import MYSQL_URL, PG_URL
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from servers import MYSQL_ARGS, PG_DSN
from tablesync import normalize
from tablesync.connectors import Connector, open_connector
from tablesync.engine import Differ
from tablesync.errors import UnsupportedTypeError
from tablesync.models import DiffOptions, Kind, Span, TablePlan

pytestmark = pytest.mark.integration

PG, MY, SQ = "postgresql", "mysql", "sqlite"
ENGINES = (PG, MY, SQ)
UTC = dt.UTC

Row = tuple[Any, ...]  # (id, value, value, ...)


# --- column types ------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnType:
    """One kind of value and the column type that holds it in each engine."""

    name: str
    kind: Kind
    postgresql: str
    mysql: str
    sqlite: str

    def native(self, engine: str) -> str:
        return str(getattr(self, engine))


BIGINT = ColumnType("c_bigint", Kind.INTEGER, "bigint", "bigint", "BIGINT")
BOOLEAN = ColumnType("c_boolean", Kind.BOOLEAN, "boolean", "tinyint(1)", "BOOLEAN")
NUMERIC = ColumnType("c_numeric", Kind.DECIMAL, "numeric(20,6)", "decimal(20,6)", "NUMERIC")
DOUBLE = ColumnType("c_double", Kind.FLOAT, "double precision", "double", "DOUBLE")
TEXT = ColumnType("c_text", Kind.TEXT, "varchar(255)", "varchar(255)", "TEXT")
UUID = ColumnType("c_uuid", Kind.UUID, "uuid", "char(36)", "UUID")
BYTES = ColumnType("c_bytes", Kind.BYTES, "bytea", "blob", "BLOB")
TIMESTAMP = ColumnType("c_timestamp", Kind.TIMESTAMP, "timestamp(6)", "datetime(6)", "TIMESTAMP")
# MariaDB's TIMESTAMP holds UTC instants from 1970-01-01 00:00:01 to 2038-01-19 03:14:07.999999.
TIMESTAMPTZ = ColumnType(
    "c_timestamptz", Kind.TIMESTAMPTZ, "timestamptz", "timestamp(6) NULL DEFAULT NULL", "TIMESTAMPTZ"
)
DATE = ColumnType("c_date", Kind.DATE, "date", "date", "DATE")
TIME = ColumnType("c_time", Kind.TIME, "time(6)", "time(6)", "TIME")

ROW_TYPES = (BIGINT, BOOLEAN, NUMERIC, DOUBLE, TEXT, UUID, BYTES, TIMESTAMP, TIMESTAMPTZ, DATE, TIME)
ROW_KINDS = [t.kind for t in ROW_TYPES]


def engine_value(engine: str, kind: Kind, value: Any) -> Any:
    """A Python value as it is stored in one engine: SQLite holds decimals, times and dates as text,
    MariaDB holds UUIDs as char(36) and TIMESTAMP values as UTC (the sessions run at '+00:00')."""
    if value is None:
        return None
    if kind is Kind.UUID:
        return value if engine == PG else str(value)
    if kind is Kind.TIMESTAMPTZ and isinstance(value, dt.datetime):
        if engine == MY:
            return value.astimezone(UTC).replace(tzinfo=None)
        if engine == SQ:
            return value.isoformat(sep=" ", timespec="microseconds")
    if engine == SQ:
        if kind is Kind.DECIMAL:
            return str(value)
        if kind is Kind.TIMESTAMP and isinstance(value, dt.datetime):
            return value.isoformat(sep=" ", timespec="microseconds")
        if kind is Kind.DATE and isinstance(value, dt.date):
            return value.isoformat()
        if kind is Kind.TIME and isinstance(value, dt.time):
            return value.isoformat(timespec="microseconds")
    return value


# --- the three databases -----------------------------------------------------------------------
def plan_of(conn: Connector, table: str) -> TablePlan:
    schema = conn.describe(table)
    assert schema.primary_key == ["id"], schema
    key = [c for c in schema.columns if c.name == "id"]
    columns = [c for c in schema.columns if c.name != "id"]
    return TablePlan(table=table, key=key, columns=columns)


def hashes_by_id(conn: Connector, plan: TablePlan, lo: int | None = None, hi: int | None = None) -> dict[int, int]:
    span = Span(lo=None if lo is None else [lo], hi=None if hi is None else [hi])
    pairs = conn.row_hashes(plan, [span])
    out = {int(key[0]): value for key, value in pairs}
    assert len(out) == len(pairs)
    return out


class Databases:
    """Creates tables in PostgreSQL, MariaDB and a SQLite file, and drops every one of them at the end."""

    def __init__(
        self,
        pg_admin: psycopg.Connection,
        mysql_admin: pymysql.connections.Connection,
        tmp_path: Path,
        prefix: str,
    ) -> None:
        self.pg_admin = pg_admin
        self.mysql_admin = mysql_admin
        self.sqlite_path = tmp_path / f"{prefix}.db"
        self.sqlite = sqlite3.connect(self.sqlite_path)
        self.prefix = prefix
        self.counter = itertools.count(1)
        self.created: list[tuple[str, str]] = []
        self.urls = {PG: PG_URL, MY: MYSQL_URL, SQ: f"sqlite:///{self.sqlite_path}"}

    def new_name(self) -> str:
        return f"{self.prefix}_{next(self.counter)}"

    def create(self, engine: str, table: str, columns: Sequence[tuple[str, str]]) -> None:
        defs = ", ".join(f"{name} {native}" for name, native in columns)
        if engine == PG:
            self.pg_admin.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, {defs})")
        elif engine == MY:
            with self.mysql_admin.cursor() as cur:
                cur.execute(
                    f"CREATE TABLE {table} (id int PRIMARY KEY, {defs}) "
                    "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
                )
        else:
            self.sqlite.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY, {defs})")
            self.sqlite.commit()
        self.created.append((engine, table))

    def create_all(self, types: Sequence[ColumnType]) -> str:
        table = self.new_name()
        for engine in ENGINES:
            self.create(engine, table, [(t.name, t.native(engine)) for t in types])
        return table

    def insert(self, engine: str, table: str, names: Sequence[str], rows: Sequence[Row]) -> None:
        """Inserts rows of values already in the engine's form."""
        if not rows:
            return
        cols = ", ".join(["id", *names])
        if engine == SQ:
            marks = ", ".join("?" * (len(names) + 1))
            self.sqlite.executemany(f"INSERT INTO {table} ({cols}) VALUES ({marks})", rows)
            self.sqlite.commit()
            return
        marks = ", ".join(["%s"] * (len(names) + 1))
        sql = f"INSERT INTO {table} ({cols}) VALUES ({marks})"
        if engine == PG:
            with self.pg_admin.cursor() as cur:
                cur.executemany(sql, rows)
        else:
            with self.mysql_admin.cursor() as cur:
                cur.executemany(sql, rows)

    def insert_all(self, table: str, types: Sequence[ColumnType], rows: Sequence[Row]) -> None:
        """Inserts rows of Python values in every engine, converted to each engine's form."""
        names = [t.name for t in types]
        for engine in ENGINES:
            converted = [
                (row[0], *(engine_value(engine, t.kind, v) for t, v in zip(types, row[1:], strict=True)))
                for row in rows
            ]
            self.insert(engine, table, names, converted)

    def open(self, engine: str) -> Connector:
        return open_connector(self.urls[engine])

    def hashes(self, engine: str, table: str) -> dict[int, int]:
        conn = self.open(engine)
        try:
            return hashes_by_id(conn, plan_of(conn, table))
        finally:
            conn.close()

    def all_hashes(self, table: str) -> dict[str, dict[int, int]]:
        return {engine: self.hashes(engine, table) for engine in ENGINES}

    def canonical_texts(self, engine: str, table: str, row_id: int) -> dict[str, str | None]:
        conn = self.open(engine)
        try:
            rows = conn.fetch_rows(plan_of(conn, table), [[row_id]])
            return rows[0] if rows else {}
        finally:
            conn.close()

    def drop_all(self) -> None:
        for engine, table in reversed(self.created):
            if engine == PG:
                self.pg_admin.execute(f"DROP TABLE IF EXISTS {table}")
            elif engine == MY:
                with self.mysql_admin.cursor() as cur:
                    cur.execute(f"DROP TABLE IF EXISTS {table}")
            else:
                self.sqlite.execute(f"DROP TABLE IF EXISTS {table}")
                self.sqlite.commit()
        self.created.clear()
        self.sqlite.close()


@pytest.fixture
def dbs(
    pg_admin: psycopg.Connection,
    mysql_admin: pymysql.connections.Connection,
    tmp_path: Path,
    table_name: str,
) -> Iterator[Databases]:
    databases = Databases(pg_admin, mysql_admin, tmp_path, table_name)
    try:
        yield databases
    finally:
        databases.drop_all()


def reference_hash(types: Sequence[ColumnType], row: Row) -> int:
    """The Python reference hash of a row (id, values...): the integer key first, then the columns."""
    return normalize.row_hash([Kind.INTEGER, *(t.kind for t in types)], row)


def mismatch_report(
    texts: dict[str, dict[str, str | None]], types: Sequence[ColumnType], row: Row, hashes: dict[str, int | None]
) -> str:
    """Which column's canonical text differs between Python and the engines, for a failing row."""
    lines = [f"row id={row[0]}: hashes {hashes}"]
    key_type = ColumnType("id", Kind.INTEGER, "int", "int", "INTEGER")
    for t, value in zip([key_type, *types], row, strict=True):
        expected = normalize.canonical_text(t.kind, value)
        got = {engine: texts[engine].get(t.name, "<missing row>") for engine in texts}
        flag = "" if all(g == expected for g in got.values()) else "   <-- differs"
        lines.append(f"  {t.name} ({t.kind.value}) value={value!r} python={expected!r} engines={got!r}{flag}")
    return "\n".join(lines)


def assert_consistent(
    dbs: Databases, table: str, types: Sequence[ColumnType], rows: Sequence[Row]
) -> dict[str, dict[int, int]]:
    """Every engine's hash of every row equals the Python reference hash; returns the hashes."""
    got = dbs.all_hashes(table)
    failures = []
    for row in rows:
        expected = reference_hash(types, row)
        per_engine = {engine: got[engine].get(row[0]) for engine in ENGINES}
        if any(h != expected for h in per_engine.values()):
            texts = {engine: dbs.canonical_texts(engine, table, row[0]) for engine in ENGINES}
            failures.append(mismatch_report(texts, types, row, {"python": expected, **per_engine}))
    assert not failures, "row hashes disagree:\n" + "\n".join(failures)
    return got


def assert_all_distinct(got: dict[str, dict[int, int]], types: Sequence[ColumnType], rows: Sequence[Row]) -> None:
    """No two rows' values hash alike under one key: each engine's hash of a row differs from the
    hash every other row's values have under that row's key."""
    for row in rows:
        for other in rows:
            if other is row:
                continue
            foreign = reference_hash(types, (row[0], *other[1:]))
            for engine in ENGINES:
                assert got[engine][row[0]] != foreign, (
                    f"{engine}: {row[1:]!r} and {other[1:]!r} hash alike under key {row[0]}"
                )


def assert_same_hash(
    got: dict[str, dict[int, int]], types: Sequence[ColumnType], ids: Sequence[int], values: Sequence[Any]
) -> None:
    """Each engine hashes rows `ids` exactly like `values` under the same keys."""
    for row_id in ids:
        expected = reference_hash(types, (row_id, *values))
        for engine in ENGINES:
            assert got[engine][row_id] == expected, f"{engine}: row {row_id} does not hash like {values!r}"


# --- 1. property test: one row of every kind on three engines ----------------------------------
def _integers_up_to(limit: int) -> st.SearchStrategy[int]:
    """Integers with |n| <= limit whose magnitudes are spread over every bit length (plain
    st.integers keeps to small numbers in a few dozen examples)."""

    def of_bits(bits: int) -> st.SearchStrategy[int]:
        bound = min(limit, 2**bits)
        return st.integers(-bound, bound)

    return st.sampled_from(range(limit.bit_length() + 1)).flatmap(of_bits)


def _decimals(max_significant: int) -> st.SearchStrategy[Decimal]:
    """Decimals that fit numeric(20,6) (14 integer digits, 6 places) with at most max_significant digits."""

    def with_scale(scale: int) -> st.SearchStrategy[Decimal]:
        digits = min(max_significant, 14 + scale)
        return _integers_up_to(10**digits - 1).map(lambda n: Decimal(n).scaleb(-scale))

    return st.integers(0, 6).flatmap(with_scale)


def _in_zone(instant: dt.datetime, quarter_hours: int) -> dt.datetime:
    """A UTC instant written in a fixed-offset zone (the value stays the same instant)."""
    return instant.replace(tzinfo=UTC).astimezone(dt.timezone(dt.timedelta(minutes=15 * quarter_hours)))


TEXT_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")
MAX_DOUBLE = 1.7976931348623157e308
MIN_NORMAL = 2.2250738585072014e-308
DOUBLES = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(-MIN_NORMAL, MIN_NORMAL),  # subnormals and zeros
    st.floats(1e300, MAX_DOUBLE),
    st.floats(-MAX_DOUBLE, -1e300),
    st.sampled_from([-0.0, 5e-324, -5e-324, MIN_NORMAL, MAX_DOUBLE, -MAX_DOUBLE, 2.0**53 + 2, 0.1]),
)
BIGINTS = st.one_of(_integers_up_to(2**63 - 1), st.sampled_from([-(2**63), 2**63 - 1, 2**62 + 1, 2**53 + 1]))
MARIADB_TS_MIN = dt.datetime(1970, 1, 1, 0, 0, 1)
MARIADB_TS_MAX = dt.datetime(2038, 1, 19, 3, 14, 7, 999999)

VALUES: dict[Kind, st.SearchStrategy[Any]] = {
    Kind.INTEGER: BIGINTS,
    Kind.BOOLEAN: st.booleans(),
    # SQLite gives a NUMERIC column numeric affinity: decimal text is stored as a REAL (or INTEGER),
    # which keeps 15 significant digits. Wider numeric(20,6) values are covered on PostgreSQL and
    # MariaDB by test_numeric_20_6_full_precision below.
    Kind.DECIMAL: _decimals(15),
    Kind.FLOAT: DOUBLES,
    Kind.TEXT: st.text(TEXT_CHARS, max_size=40),
    Kind.UUID: st.uuids(),
    Kind.BYTES: st.binary(max_size=40),
    Kind.TIMESTAMP: st.datetimes(dt.datetime(1000, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999)),
    Kind.TIMESTAMPTZ: st.builds(_in_zone, st.datetimes(MARIADB_TS_MIN, MARIADB_TS_MAX), st.integers(-56, 56)),
    Kind.DATE: st.dates(dt.date(1000, 1, 1), dt.date(9999, 12, 31)),
    Kind.TIME: st.times(),
}


def nullable(kind: Kind) -> st.SearchStrategy[Any]:
    return st.none() | VALUES[kind]


def same_value(a: Any, b: Any) -> bool:
    """Whether two values of one kind are the same value: -0.0 equals 0.0, 1.50 equals 1.5, aware
    datetimes are equal when they are the same instant."""
    if a is None or b is None:
        return a is b
    return bool(a == b)


def nudge(kind: Kind, value: Any) -> Any:
    """The nearest different value of the same kind: one unit, bit, microsecond or character away."""
    if value is None:
        return {
            Kind.INTEGER: 0,
            Kind.BOOLEAN: False,
            Kind.DECIMAL: Decimal(0),
            Kind.FLOAT: 0.0,
            Kind.TEXT: "",
            Kind.UUID: uuid.UUID(int=0),
            Kind.BYTES: b"",
            Kind.TIMESTAMP: dt.datetime(2000, 1, 1),
            Kind.TIMESTAMPTZ: dt.datetime(2000, 1, 1, tzinfo=UTC),
            Kind.DATE: dt.date(2000, 1, 1),
            Kind.TIME: dt.time(0, 0),
        }[kind]
    if kind is Kind.INTEGER:
        return value - 1 if value > 0 else value + 1
    if kind is Kind.BOOLEAN:
        return not value
    if kind is Kind.DECIMAL:
        step = Decimal(1).scaleb(value.as_tuple().exponent)  # one unit in the last place written
        return value - step if value > 0 else value + step
    if kind is Kind.FLOAT:
        up = math.nextafter(value, math.inf)
        return up if math.isfinite(up) else math.nextafter(value, -math.inf)
    if kind is Kind.TEXT:
        return value + "x" if len(value) < 40 else value[:-1]
    if kind is Kind.UUID:
        return uuid.UUID(int=value.int ^ 1)
    if kind is Kind.BYTES:
        return value + b"\x00" if len(value) < 40 else value[:-1]
    if kind is Kind.DATE:
        return value + dt.timedelta(days=1) if value.year < 9999 else value - dt.timedelta(days=1)
    if kind is Kind.TIME:
        return (
            dt.time(0, 0, 0, 1)
            if value == dt.time(0, 0)
            else (dt.datetime.combine(dt.date(2000, 1, 1), value) - dt.timedelta(microseconds=1)).time()
        )
    us = dt.timedelta(microseconds=1)
    if kind is Kind.TIMESTAMPTZ:
        return value - us if value.astimezone(UTC).replace(tzinfo=None) > MARIADB_TS_MIN else value + us
    return value - us if value > dt.datetime(1000, 1, 1) else value + us


def mutation(kind: Kind, old: Any, use_nudge: bool, drawn: Any) -> Any:
    """A value of the same kind that differs from old: its nearest neighbour, or a drawn value
    (replaced by the neighbour when the draw happens to be the same value)."""
    new = nudge(kind, old) if use_nudge or same_value(drawn, old) else drawn
    assert not same_value(new, old), (kind, old, new)
    return new


ROWS = st.tuples(*(nullable(t.kind) for t in ROW_TYPES))
MUTATIONS_PER_ROW = len(ROW_TYPES)


@dataclass
class HashTables:
    """Two tables of ROW_TYPES in each engine: `rows` gets an example row and its mutations, `twin`
    the unmutated row under every one of those keys."""

    dbs: Databases
    rows: str
    twin: str
    conns: dict[str, Connector]
    plans: dict[tuple[str, str], TablePlan]  # (engine, table) -> plan
    ids: Iterator[int]

    def hashes(self, table: str, lo: int, hi: int) -> dict[str, dict[int, int]]:
        return {engine: hashes_by_id(conn, self.plans[engine, table], lo, hi) for engine, conn in self.conns.items()}

    def texts(self, table: str, row_id: int) -> dict[str, dict[str, str | None]]:
        return {
            engine: next(iter(conn.fetch_rows(self.plans[engine, table], [[row_id]])), {})
            for engine, conn in self.conns.items()
        }


@pytest.fixture
def hash_tables(dbs: Databases) -> Iterator[HashTables]:
    tables = [dbs.create_all(ROW_TYPES), dbs.create_all(ROW_TYPES)]
    conns: dict[str, Connector] = {}
    try:
        for engine in ENGINES:
            conns[engine] = dbs.open(engine)
        plans = {(engine, table): plan_of(conn, table) for engine, conn in conns.items() for table in tables}
        for (engine, _), plan in plans.items():
            assert [c.name for c in plan.columns] == [t.name for t in ROW_TYPES], engine
            kinds = [c.kind for c in plan.columns]
            expected = [Kind.TEXT if (engine == MY and k is Kind.UUID) else k for k in ROW_KINDS]
            assert kinds == expected, f"{engine} describes {kinds}"
        yield HashTables(dbs, tables[0], tables[1], conns, plans, itertools.count(1, MUTATIONS_PER_ROW + 1))
    finally:
        for conn in conns.values():
            conn.close()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(row=ROWS, data=st.data())
def test_row_hash_of_every_kind_matches_on_three_engines(hash_tables: HashTables, row: Row, data: st.DataObject):
    # Each mutation changes one column to a different value of the same kind (NULL included).
    mutated: list[Row] = []
    for i, t in enumerate(ROW_TYPES):
        use_nudge = data.draw(st.booleans(), label=f"nudge {t.name}")
        drawn = data.draw(nullable(t.kind), label=f"new {t.name}")
        new = mutation(t.kind, row[i], use_nudge, drawn)
        mutated.append((*row[:i], new, *row[i + 1 :]))
    base = next(hash_tables.ids)
    rows = [(base, *row)] + [(base + 1 + i, *values) for i, values in enumerate(mutated)]
    twins = [(r[0], *row) for r in rows]
    hash_tables.dbs.insert_all(hash_tables.rows, ROW_TYPES, rows)
    hash_tables.dbs.insert_all(hash_tables.twin, ROW_TYPES, twins)

    failures = []
    got: dict[str, dict[str, dict[int, int]]] = {}
    for table, table_rows in ((hash_tables.rows, rows), (hash_tables.twin, twins)):
        got[table] = hash_tables.hashes(table, base, base + len(rows))
        for r in table_rows:
            expected = reference_hash(ROW_TYPES, r)
            per_engine = {engine: got[table][engine].get(r[0]) for engine in ENGINES}
            if any(h != expected for h in per_engine.values()):
                texts = hash_tables.texts(table, r[0])
                failures.append(mismatch_report(texts, ROW_TYPES, r, {"python": expected, **per_engine}))
    assert not failures, "row hashes disagree:\n" + "\n".join(failures)

    mine, twin = got[hash_tables.rows], got[hash_tables.twin]
    for engine in ENGINES:
        assert mine[engine][base] == twin[engine][base]
        for i, t in enumerate(ROW_TYPES):
            assert mine[engine][base + 1 + i] != twin[engine][base + 1 + i], (
                f"{engine}: changing {t.name} from {row[i]!r} to {mutated[i][i]!r} leaves the row hash unchanged"
            )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(st.none() | _decimals(20), min_size=1, max_size=20))
def test_numeric_20_6_full_precision(dbs: Databases, values: list[Decimal | None]):
    """numeric(20,6) / decimal(20,6) with all 20 digits: PostgreSQL, MariaDB and Python agree, and
    values one unit in the last place apart differ. (SQLite cannot store these exactly, see VALUES.)"""
    table = dbs.new_name()
    for engine in (PG, MY):
        dbs.create(engine, table, [(NUMERIC.name, NUMERIC.native(engine))])
    rows: list[Row] = []
    for i, value in enumerate(values):
        rows.append((2 * i + 1, value))
        neighbour = None if value is None else value + Decimal("0.000001") * (-1 if value > 0 else 1)
        rows.append((2 * i + 2, neighbour))
    for engine in (PG, MY):
        dbs.insert(engine, table, [NUMERIC.name], rows)
    got = {engine: dbs.hashes(engine, table) for engine in (PG, MY)}
    for row_id, value in rows:
        expected = reference_hash([NUMERIC], (row_id, value))
        assert got[PG][row_id] == got[MY][row_id] == expected, (
            f"{value!r}: postgresql {got[PG][row_id]}, mysql {got[MY][row_id]}, python {expected}; "
            f"texts {dbs.canonical_texts(PG, table, row_id)} {dbs.canonical_texts(MY, table, row_id)} "
            f"python {normalize.canonical_text(Kind.DECIMAL, value)!r}"
        )
    for i, value in enumerate(values):
        if value is not None:
            # The neighbour's row hashes differently from `value` under the neighbour's key.
            unchanged = reference_hash([NUMERIC], (2 * i + 2, value))
            for engine in (PG, MY):
                assert got[engine][2 * i + 2] != unchanged, f"{engine}: {value} vs its neighbour"


# --- 2. named edge cases -----------------------------------------------------------------------
def test_big_integers_are_not_converted_to_float(dbs: Databases):
    types = [BIGINT]
    rows = [(1, 2**62), (2, 2**62 + 1), (3, 2**53), (4, 2**53 + 1), (5, 2**63 - 1), (6, -(2**63)), (7, 0), (8, None)]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert_all_distinct(got, types, rows)


def test_decimal_scale_and_trailing_zeros_do_not_matter(dbs: Databases):
    types = [ColumnType("c_numeric", Kind.DECIMAL, "numeric(12,2)", "decimal(12,2)", "NUMERIC")]
    rows = [
        (1, Decimal("1.50")),
        (2, Decimal("100.00")),
        (3, Decimal("0.00")),
        (4, Decimal("-0.50")),
        (5, Decimal("1.51")),
        (6, Decimal("1")),
        (7, Decimal("10.10")),
    ]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    # 1.50 in numeric(12,2) / decimal(12,2) is the decimal 1.5 on every engine.
    assert got[PG][1] == got[MY][1] == got[SQ][1]
    assert_same_hash(got, types, [1], [Decimal("1.5")])
    assert_same_hash(got, types, [3], [Decimal("0")])
    assert_all_distinct(got, types, rows)


def test_double_last_bit(dbs: Databases):
    types = [DOUBLE]
    pairs = [
        (0.1, math.nextafter(0.1, math.inf)),
        (1 / 3, math.nextafter(1 / 3, -math.inf)),
        (1e300, math.nextafter(1e300, math.inf)),
        (5e-324, 1e-323),  # the two smallest subnormals
        (MIN_NORMAL, math.nextafter(MIN_NORMAL, 0)),  # smallest normal, largest subnormal
        (MAX_DOUBLE, math.nextafter(MAX_DOUBLE, 0)),
        (-2.5, math.nextafter(-2.5, 0)),
        (2.0**53, 2.0**53 + 2),
    ]
    rows: list[Row] = []
    for i, (a, b) in enumerate(pairs):
        assert a != b
        rows += [(2 * i + 1, a), (2 * i + 2, b)]
    zeros = [(100, 0.0), (101, -0.0)]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows + zeros)
    got = assert_consistent(dbs, table, types, rows + zeros)
    for engine in ENGINES:
        for i, (a, b) in enumerate(pairs):
            assert got[engine][2 * i + 1] == got[PG][2 * i + 1]
            # b's row differs from the row a would make under b's key.
            assert got[engine][2 * i + 2] != reference_hash(types, (2 * i + 2, a)), f"{engine}: {a!r} vs {b!r}"
    # -0.0 and 0.0 are one value in every engine's comparisons (normalize.canonical_float).
    assert_same_hash(got, types, [100, 101], [0.0])


def test_boolean_true_equals_tinyint_one(dbs: Databases):
    types = [BOOLEAN]
    rows = [(1, True), (2, False), (3, None)]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert got[PG][1] == got[MY][1] == got[SQ][1]
    # PostgreSQL's true, MariaDB's tinyint(1) 1 and an integer column holding 1 hash alike.
    assert got[PG][1] == normalize.row_hash([Kind.INTEGER, Kind.INTEGER], [1, 1])
    assert got[PG][2] == normalize.row_hash([Kind.INTEGER, Kind.INTEGER], [2, 0])
    assert_all_distinct(got, types, rows)


@pytest.mark.parametrize(
    "values",
    [
        pytest.param(["abc", "abc "], id="trailing-space"),
        pytest.param(["\u00e9", "e\u0301"], id="composed-vs-decomposed"),
        pytest.param([None, "", "NULL", "N", "null"], id="null-empty-NULL"),
        pytest.param(["abc", "ABC", " abc"], id="case-and-leading-space"),
    ],
)
def test_distinct_texts_hash_differently(dbs: Databases, values: list[str | None]):
    types = [TEXT]
    rows = [(i + 1, v) for i, v in enumerate(values)]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert_all_distinct(got, types, rows)


def test_timestamps_one_microsecond_apart(dbs: Databases):
    ts = dt.datetime(2024, 6, 1, 12, 0, 0, 123456)
    tz = dt.datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    us = dt.timedelta(microseconds=1)
    types = [TIMESTAMP, TIMESTAMPTZ]
    rows = [
        (1, ts, tz),
        (2, ts + us, tz),
        (3, ts, tz + us),
        (4, dt.datetime(1000, 1, 1), MARIADB_TS_MIN.replace(tzinfo=UTC)),
        (5, dt.datetime(9999, 12, 31, 23, 59, 59, 999999), MARIADB_TS_MAX.replace(tzinfo=UTC)),
        (6, dt.datetime(2024, 6, 1), dt.datetime(2024, 6, 1, tzinfo=UTC)),
        (7, None, None),
    ]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert_all_distinct(got, types, rows)


def test_timestamptz_is_compared_in_utc(dbs: Databases, monkeypatch: pytest.MonkeyPatch):
    """One instant, 2024-06-01 10:00:00 UTC, written under different session time zones and offsets."""
    types = [TIMESTAMPTZ]
    instant = dt.datetime(2024, 6, 1, 10, 0, 0, tzinfo=UTC)
    table = dbs.new_name()
    for engine in ENGINES:
        dbs.create(engine, table, [(TIMESTAMPTZ.name, TIMESTAMPTZ.native(engine))])
    insert = f"INSERT INTO {table} (id, {TIMESTAMPTZ.name}) VALUES "

    with psycopg.connect(PG_DSN, autocommit=True, connect_timeout=5) as pg:
        pg.execute("SET TIME ZONE 'America/Los_Angeles'")  # UTC-7 in June
        pg.execute(insert + "(1, '2024-06-01 12:00:00+02')")
        pg.execute(insert + "(2, '2024-06-01 03:00:00')")
        pg.execute(insert + "(3, %s)", [instant.astimezone(dt.timezone(-dt.timedelta(hours=3)))])

    my = pymysql.connect(**MYSQL_ARGS, autocommit=True, charset="utf8mb4")
    try:
        with my.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(insert + "(1, '2024-06-01 10:00:00')")
            cur.execute("SET time_zone = '+05:00'")
            cur.execute(insert + "(2, '2024-06-01 15:00:00')")
            # The same wall-clock text under +05:00 is another instant (05:00 UTC).
            cur.execute(insert + "(3, '2024-06-01 10:00:00')")
    finally:
        my.close()

    dbs.insert(
        SQ,
        table,
        [TIMESTAMPTZ.name],
        [(1, "2024-06-01 12:00:00+02:00"), (2, "2024-06-01T10:00:00Z"), (3, "2024-06-01 10:00:00.000000+00:00")],
    )

    # The PostgreSQL connector starts in another session time zone (libpq reads PGTZ); its own
    # session settings must still give UTC.
    monkeypatch.setenv("PGTZ", "Asia/Kolkata")
    with psycopg.connect(PG_DSN, connect_timeout=5) as probe:
        assert probe.execute("SHOW TimeZone").fetchone() == ("Asia/Kolkata",)
    got = dbs.all_hashes(table)
    expected = {i: reference_hash(types, (i, instant)) for i in (1, 2, 3)}
    assert got[PG] == expected
    assert got[SQ] == expected
    assert got[MY] == {**expected, 3: reference_hash(types, (3, instant - dt.timedelta(hours=5)))}


def test_dates(dbs: Databases):
    types = [DATE]
    rows = [
        (1, dt.date(2024, 2, 29)),
        (2, dt.date(2024, 3, 1)),
        (3, dt.date(1000, 1, 1)),
        (4, dt.date(9999, 12, 31)),
        (5, dt.date(1970, 1, 1)),
        (6, None),
    ]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert_all_distinct(got, types, rows)


def test_times_with_microseconds(dbs: Databases):
    types = [TIME]
    rows = [
        (1, dt.time(13, 14, 15, 123456)),
        (2, dt.time(13, 14, 15, 123457)),
        (3, dt.time(13, 14, 15)),
        (4, dt.time(0, 0, 0)),
        (5, dt.time(23, 59, 59, 999999)),
        (6, dt.time(0, 0, 0, 1)),
        (7, None),
    ]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert_all_distinct(got, types, rows)


def test_uuid_equals_char36(dbs: Databases):
    types = [UUID]
    values = [uuid.UUID("12345678-9abc-def0-1234-56789abcdef0"), uuid.UUID(int=0), uuid.UUID(int=2**128 - 1), None]
    rows = [(i + 1, v) for i, v in enumerate(values)]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert got[PG][1] == got[MY][1] == got[SQ][1]
    assert_all_distinct(got, types, rows)
    # A uuid column and a text column holding its lowercase text hash the same.
    assert got[PG][1] == normalize.row_hash([Kind.INTEGER, Kind.TEXT], [1, "12345678-9abc-def0-1234-56789abcdef0"])


def test_bytea_equals_blob(dbs: Databases):
    types = [BYTES]
    values = [b"", b"\x00", b"\x00\xff\x10abc|", bytes(range(256)), b"N", None]
    rows = [(i + 1, v) for i, v in enumerate(values)]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert got[PG][4] == got[MY][4] == got[SQ][4]
    assert_all_distinct(got, types, rows)


def test_column_separators_and_length_prefixes_cannot_be_forged(dbs: Databases):
    first = ColumnType("c_first", Kind.TEXT, "text", "varchar(255)", "TEXT")
    second = ColumnType("c_second", Kind.TEXT, "text", "varchar(255)", "TEXT")
    types = [first, second]
    pairs = [
        ("a|b", "c"),
        ("a", "b|c"),
        ("1:a", ""),
        ("", "1:a"),
        ("1:a|0:", ""),
        ("3:1:a", ""),
        ("a|1:b", "c"),
        ("a", "b|1:c"),
        ("N", ""),
        (None, ""),
        ("", "N"),
        ("", None),
        ("N|N", None),
        (None, "N|N"),
        ("|", "|"),
        ("||", ""),
        ("", "||"),
        ("\u00e9", "x"),  # 2 bytes, 1 character
        ("e|", "x"),
    ]
    rows = [(i + 1, a, b) for i, (a, b) in enumerate(pairs)]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert_all_distinct(got, types, rows)


def test_key_is_part_of_the_row_hash(dbs: Databases):
    """The same values under keys 1 and 11 hash differently (keys are hashed: a missing row and an
    extra row with equal values under other keys must not cancel out in a checksum), and the key
    field is not confused with the first column: (1, '1|x') vs (11, 'x')."""
    types = [TEXT]
    rows = [(1, "x"), (11, "x"), (2, "1|x"), (12, "x|1")]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    for engine in ENGINES:
        assert got[engine][1] != got[engine][11]
        assert len({got[engine][i] for i, _ in rows}) == len(rows)


def test_json_and_jsonb_equal_mariadb_json(dbs: Databases):
    json_type = ColumnType("c_json", Kind.JSON, "json", "json", "JSON")
    jsonb_type = ColumnType("c_jsonb", Kind.JSON, "jsonb", "json", "JSON")
    types = [json_type, jsonb_type]
    # Texts as jsonb prints them, so that every column holds exactly the same text.
    texts = ['{"a": 1, "b": [true, null, "\u00e9|x"]}', "[1, 2.5, -3]", '"text"', "null", "{}", None]
    rows = [(i + 1, t, t) for i, t in enumerate(texts)]
    table = dbs.create_all(types)
    dbs.insert_all(table, types, rows)
    got = assert_consistent(dbs, table, types, rows)
    assert got[PG][1] == got[MY][1] == got[SQ][1]
    # json and text columns holding the same text hash alike (both are length-prefixed texts).
    assert got[PG][1] == normalize.row_hash([Kind.INTEGER, Kind.TEXT, Kind.TEXT], [1, texts[0], texts[0]])
    assert_all_distinct(got, types, rows)


# --- 3. unsupported types ----------------------------------------------------------------------
def test_unsupported_postgres_types_must_be_ignored(pg_admin: psycopg.Connection, table_name: str):
    pg_admin.execute(f"CREATE TABLE {table_name} (id int PRIMARY KEY, c_interval interval, c_array int[], name text)")
    try:
        pg_admin.execute(f"INSERT INTO {table_name} VALUES (1, '1 day', '{{1,2}}', 'x'), (2, NULL, NULL, 'y')")

        def factory() -> Connector:
            return open_connector(PG_URL)

        with pytest.raises(UnsupportedTypeError, match=r"'c_interval'.*interval"):
            Differ(table_name, factory, [factory], DiffOptions())
        with pytest.raises(UnsupportedTypeError, match=r"'c_array'.*integer\[\]"):
            Differ(table_name, factory, [factory], DiffOptions(ignore=["c_interval"]))
        with pytest.raises(UnsupportedTypeError, match=r"'c_interval'"):
            Differ(table_name, factory, [factory], DiffOptions(ignore=["c_array"]))

        differ = Differ(table_name, factory, [factory], DiffOptions(ignore=["c_interval", "c_array"]))
        try:
            assert differ.column_names == ["name"]
            state = differ.run()
            assert state.done
            tally = state.targets[0]
            assert (tally.missing, tally.extra, tally.differing) == ([], [], [])
        finally:
            differ.close()
    finally:
        pg_admin.execute(f"DROP TABLE IF EXISTS {table_name}")
