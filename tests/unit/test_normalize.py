"""Canonical texts of values, the row string and the row hash (the Python reference)."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import struct
import uuid
from decimal import Decimal
from typing import Any

import pytest
from tablesync.models import Kind
from tablesync.normalize import (
    canonical_json,
    canonical_text,
    comparable_text,
    hash_row_string,
    row_hash,
    row_string,
)

UTC = dt.UTC
PLUS2 = dt.timezone(dt.timedelta(hours=2))
MINUS5 = dt.timezone(dt.timedelta(hours=-5, minutes=-30))


# --- NULL ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(Kind))
def test_null_is_none_for_every_kind(kind: Kind) -> None:
    assert canonical_text(kind, None) is None
    assert comparable_text(kind, None) is None


# --- integers, booleans, decimals ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "text"),
    [
        (Kind.INTEGER, 0, "0"),
        (Kind.INTEGER, 42, "42"),
        (Kind.INTEGER, -7, "-7"),
        (Kind.INTEGER, 2**63 - 1, "9223372036854775807"),
        (Kind.INTEGER, -(2**63), "-9223372036854775808"),
        (Kind.INTEGER, 10**30, "1" + "0" * 30),
        (Kind.INTEGER, True, "1"),
        (Kind.INTEGER, False, "0"),
        (Kind.INTEGER, "17", "17"),
        (Kind.BOOLEAN, True, "1"),
        (Kind.BOOLEAN, False, "0"),
        (Kind.BOOLEAN, 1, "1"),
        (Kind.BOOLEAN, 0, "0"),
        (Kind.DECIMAL, Decimal("1.50"), "1.5"),
        (Kind.DECIMAL, Decimal("100"), "100"),
        (Kind.DECIMAL, Decimal("100.00"), "100"),
        (Kind.DECIMAL, Decimal("1E+2"), "100"),
        (Kind.DECIMAL, Decimal("-0.00"), "0"),
        (Kind.DECIMAL, Decimal("-0"), "0"),
        (Kind.DECIMAL, Decimal("0E-10"), "0"),
        (Kind.DECIMAL, Decimal("0.000"), "0"),
        (Kind.DECIMAL, Decimal("-1.2300"), "-1.23"),
        (Kind.DECIMAL, Decimal("-0.5"), "-0.5"),
        (Kind.DECIMAL, Decimal("0.001"), "0.001"),
        (Kind.DECIMAL, Decimal("1E-7"), "0.0000001"),
        (Kind.DECIMAL, Decimal("10"), "10"),
        (Kind.DECIMAL, Decimal("12345678901234567890.123456789"), "12345678901234567890.123456789"),
        (Kind.DECIMAL, 7, "7"),
        (Kind.DECIMAL, -7, "-7"),
        (Kind.DECIMAL, 1.5, "1.5"),
        (Kind.DECIMAL, 0.1, "0.1"),
        (Kind.DECIMAL, 100.0, "100"),
        (Kind.DECIMAL, -0.0, "0"),
        (Kind.DECIMAL, "2.50", "2.5"),
        (Kind.DECIMAL, " 3.000 ", "3"),
        (Kind.DECIMAL, True, "1"),
    ],
)
def test_numbers(kind: Kind, value: Any, text: str) -> None:
    assert canonical_text(kind, value) == text


def test_decimal_scale_never_matters() -> None:
    texts = {canonical_text(Kind.DECIMAL, v) for v in (Decimal("12.5"), Decimal("12.50"), Decimal("12.500000"), 12.5)}
    assert texts == {"12.5"}
    assert canonical_text(Kind.INTEGER, 12) == canonical_text(Kind.DECIMAL, Decimal("12.00"))


def test_not_a_decimal_raises() -> None:
    with pytest.raises(ValueError):
        canonical_text(Kind.DECIMAL, "twelve")


# --- floats --------------------------------------------------------------------------------------


def _bits(value: float) -> str:
    return struct.pack(">d", value).hex()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (1.0, "3ff0000000000000"),
        (-1.0, "bff0000000000000"),
        (0.0, "0000000000000000"),
        (-0.0, "0000000000000000"),
        (2.5, "4004000000000000"),
        (math.inf, "7ff0000000000000"),
        (-math.inf, "fff0000000000000"),
        (0.1, "3fb999999999999a"),
        (5e-324, "0000000000000001"),
    ],
)
def test_float_is_ieee_bits(value: float, text: str) -> None:
    assert canonical_text(Kind.FLOAT, value) == text


@pytest.mark.parametrize("value", [1 / 3, -123.456, 1e300, 6.02214076e23, 2.0**-1070, math.pi])
def test_float_text_is_16_hex_digits(value: float) -> None:
    text = canonical_text(Kind.FLOAT, value)
    assert text is not None
    assert re.fullmatch(r"[0-9a-f]{16}", text)
    assert struct.unpack(">d", bytes.fromhex(text))[0] == value


def test_negative_zero_is_zero() -> None:
    assert canonical_text(Kind.FLOAT, -0.0) == canonical_text(Kind.FLOAT, 0.0)
    assert canonical_text(Kind.FLOAT, 0) == canonical_text(Kind.FLOAT, "-0.0")


@pytest.mark.parametrize("value", [1.0, 1 / 3, 1e-300, 123456.789, -2.5])
def test_last_bit_change_differs(value: float) -> None:
    neighbour = math.nextafter(value, math.inf)
    assert canonical_text(Kind.FLOAT, value) != canonical_text(Kind.FLOAT, neighbour)
    assert int(canonical_text(Kind.FLOAT, neighbour), 16) - int(canonical_text(Kind.FLOAT, value), 16) in (1, -1)


def test_float_from_int_string_and_decimal() -> None:
    assert canonical_text(Kind.FLOAT, 3) == canonical_text(Kind.FLOAT, 3.0) == _bits(3.0)
    assert canonical_text(Kind.FLOAT, "1.5") == _bits(1.5)
    assert canonical_text(Kind.FLOAT, Decimal("0.1")) == _bits(0.1)


# --- text, uuid, bytes -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("abc", "abc"),
        ("", ""),
        ("trailing ", "trailing "),
        (" leading", " leading"),
        ("NULL", "NULL"),
        ("N", "N"),
        ("a|b", "a|b"),
        ("line\nbreak\ttab", "line\nbreak\ttab"),
        ("é 中 😀", "é 中 😀"),
        ("Case", "Case"),
        (b"bytes", "bytes"),
        ("é".encode(), "é"),
        (memoryview(b"mv"), "mv"),
        (5, "5"),
    ],
)
def test_text(value: Any, text: str) -> None:
    assert canonical_text(Kind.TEXT, value) == text


def test_text_is_case_and_space_sensitive() -> None:
    assert canonical_text(Kind.TEXT, "a") != canonical_text(Kind.TEXT, "A")
    assert canonical_text(Kind.TEXT, "a") != canonical_text(Kind.TEXT, "a ")


UUID_TEXT = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"


@pytest.mark.parametrize(
    "value",
    [
        uuid.UUID(UUID_TEXT),
        UUID_TEXT,
        UUID_TEXT.upper(),
        UUID_TEXT.replace("-", ""),
        "{" + UUID_TEXT + "}",
        "urn:uuid:" + UUID_TEXT,
    ],
)
def test_uuid(value: Any) -> None:
    assert canonical_text(Kind.UUID, value) == UUID_TEXT


def test_uuid_and_text_spelling_agree() -> None:
    value = uuid.uuid4()
    assert canonical_text(Kind.UUID, value) == canonical_text(Kind.TEXT, str(value))


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (b"", ""),
        (b"\x00", "00"),
        (b"\x00\xffab", "00ff6162"),
        (bytearray(b"\x01\x02"), "0102"),
        (memoryview(b"\xde\xad\xbe\xef"), "deadbeef"),
        ("ab", "6162"),
        ("é", "c3a9"),
    ],
)
def test_bytes_are_lowercase_hex(value: Any, text: str) -> None:
    assert canonical_text(Kind.BYTES, value) == text


# --- dates and times -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "value", "text"),
    [
        (Kind.TIMESTAMP, dt.datetime(2026, 1, 5, 12, 3), "2026-01-05 12:03:00.000000"),
        (Kind.TIMESTAMP, dt.datetime(2026, 1, 5, 12, 3, 0, 4), "2026-01-05 12:03:00.000004"),
        (Kind.TIMESTAMP, dt.datetime(2026, 12, 31, 23, 59, 59, 999999), "2026-12-31 23:59:59.999999"),
        (Kind.TIMESTAMP, dt.datetime(5, 1, 2, 3, 4, 5), "0005-01-02 03:04:05.000000"),
        (Kind.TIMESTAMP, dt.datetime(9999, 12, 31), "9999-12-31 00:00:00.000000"),
        (Kind.TIMESTAMP, dt.date(2026, 2, 28), "2026-02-28 00:00:00.000000"),
        # aware values are converted to UTC
        (Kind.TIMESTAMPTZ, dt.datetime(2026, 1, 1, 1, 2, 3, 456, tzinfo=PLUS2), "2025-12-31 23:02:03.000456"),
        (Kind.TIMESTAMPTZ, dt.datetime(2026, 1, 1, 12, 0, tzinfo=UTC), "2026-01-01 12:00:00.000000"),
        (Kind.TIMESTAMPTZ, dt.datetime(2026, 1, 1, 20, 0, tzinfo=MINUS5), "2026-01-02 01:30:00.000000"),
        (Kind.TIMESTAMP, dt.datetime(2026, 1, 1, 12, 0, tzinfo=PLUS2), "2026-01-01 10:00:00.000000"),
        (Kind.TIMESTAMPTZ, dt.datetime(2026, 1, 1, 12, 0), "2026-01-01 12:00:00.000000"),
        # ISO strings, as SQLite stores them
        (Kind.TIMESTAMP, "2026-01-05 12:03:00", "2026-01-05 12:03:00.000000"),
        (Kind.TIMESTAMP, "2026-01-05T12:03:00", "2026-01-05 12:03:00.000000"),
        (Kind.TIMESTAMP, "2026-01-05 12:03:00.5", "2026-01-05 12:03:00.500000"),
        (Kind.TIMESTAMP, "2026-01-05 12:03:00.000004", "2026-01-05 12:03:00.000004"),
        (Kind.TIMESTAMP, "2026-01-05 12:03", "2026-01-05 12:03:00.000000"),
        (Kind.TIMESTAMP, "2026-01-05", "2026-01-05 00:00:00.000000"),
        (Kind.TIMESTAMP, " 2026-01-05 12:03:00 ", "2026-01-05 12:03:00.000000"),
        (Kind.TIMESTAMPTZ, "2026-01-05 12:03:00+02:00", "2026-01-05 10:03:00.000000"),
        (Kind.TIMESTAMPTZ, "2026-01-05T12:03:00Z", "2026-01-05 12:03:00.000000"),
        (Kind.TIMESTAMPTZ, "2026-01-05 00:30:00.25-01:00", "2026-01-05 01:30:00.250000"),
        (Kind.TIMESTAMPTZ, "2026-01-05 12:03:00+00:00", "2026-01-05 12:03:00.000000"),
    ],
)
def test_timestamps(kind: Kind, value: Any, text: str) -> None:
    assert canonical_text(kind, value) == text


def test_timestamp_spellings_agree() -> None:
    moment = dt.datetime(2026, 3, 4, 5, 6, 7, 80000, tzinfo=UTC)
    spellings = [
        moment,
        moment.astimezone(PLUS2),
        moment.astimezone(MINUS5),
        "2026-03-04 05:06:07.08",
        "2026-03-04T07:06:07.080000+02:00",
        "2026-03-04T05:06:07.08Z",
    ]
    assert {canonical_text(Kind.TIMESTAMPTZ, s) for s in spellings} == {"2026-03-04 05:06:07.080000"}


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.date(2026, 2, 28), "2026-02-28"),
        (dt.date(2024, 2, 29), "2024-02-29"),
        (dt.date(5, 1, 1), "0005-01-01"),
        (dt.datetime(2026, 2, 28, 23, 59), "2026-02-28"),
        ("2026-02-28", "2026-02-28"),
        ("2026-02-28 13:00:00", "2026-02-28"),
        (" 2026-02-28 ", "2026-02-28"),
    ],
)
def test_dates(value: Any, text: str) -> None:
    assert canonical_text(Kind.DATE, value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.time(1, 2, 3), "01:02:03.000000"),
        (dt.time(23, 59, 59, 999999), "23:59:59.999999"),
        (dt.time(0, 0), "00:00:00.000000"),
        (dt.time(1, 2, 3, 400), "01:02:03.000400"),
        ("13:45:00", "13:45:00.000000"),
        ("13:45", "13:45:00.000000"),
        ("13:45:00.5", "13:45:00.500000"),
        # MySQL TIME columns come back as timedelta: any sign, beyond 24 hours
        (dt.timedelta(0), "00:00:00.000000"),
        (dt.timedelta(hours=1, minutes=2, seconds=3), "01:02:03.000000"),
        (dt.timedelta(hours=13, minutes=45, microseconds=500000), "13:45:00.500000"),
        (dt.timedelta(hours=838, minutes=59, seconds=59), "838:59:59.000000"),
        (dt.timedelta(days=2, hours=1), "49:00:00.000000"),
        (dt.timedelta(hours=-2), "-02:00:00.000000"),
        (dt.timedelta(microseconds=-1_500_000), "-00:00:01.500000"),
        (dt.timedelta(hours=-838, minutes=-59, seconds=-59), "-838:59:59.000000"),
        (dt.timedelta(microseconds=1), "00:00:00.000001"),
    ],
)
def test_times(value: Any, text: str) -> None:
    assert canonical_text(Kind.TIME, value) == text


def test_time_and_timedelta_agree() -> None:
    assert canonical_text(Kind.TIME, dt.time(8, 30, 15, 250)) == canonical_text(
        Kind.TIME, dt.timedelta(hours=8, minutes=30, seconds=15, microseconds=250)
    )


# --- JSON ----------------------------------------------------------------------------------------


def test_json_text_is_kept_as_spelled() -> None:
    assert canonical_text(Kind.JSON, '{"b": 1, "a": 2}') == '{"b": 1, "a": 2}'
    assert canonical_text(Kind.JSON, b'{"a":1}') == '{"a":1}'


def test_json_from_python_values() -> None:
    assert canonical_text(Kind.JSON, {"a": "é"}) == '{"a": "é"}'
    assert canonical_text(Kind.JSON, [1, 2]) == "[1, 2]"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ('{"b": 1, "a": {"d": [1, 2.0], "c": null}}', '{"a":{"c":null,"d":[1,2]},"b":1}'),
        ('{ "a" : [ 1 , 2 ] }', '{"a":[1,2]}'),
        ("1.0", "1"),
        ("1", "1"),
        ("1.50", "1.5"),
        ("1e2", "100"),
        ("-0", "0"),
        ("-0.0", "0"),
        ("0.10", "0.1"),
        ("12345678901234567890123", "12345678901234567890123"),
        ("true", "true"),
        ("false", "false"),
        ("null", "null"),
        ("[]", "[]"),
        ("{}", "{}"),
        ('"é"', '"é"'),
        ('"\\u00e9"', '"é"'),
        ('"quote \\" backslash \\\\"', '"quote \\" backslash \\\\"'),
        ('{"b": true, "a": false, "c": null}', '{"a":false,"b":true,"c":null}'),
        ('{"B": 1, "a": 2, "_": 3}', '{"B":1,"_":3,"a":2}'),
        ('[{"z": 1, "y": 2}, 3.50]', '[{"y":2,"z":1},3.5]'),
        (b'{"x": 1.0}', '{"x":1}'),
        ({"b": 1.0, "a": True, "c": [None, 2]}, '{"a":true,"b":1,"c":[null,2]}'),
    ],
)
def test_canonical_json(value: Any, text: str) -> None:
    assert canonical_json(value) == text


def test_canonical_json_equal_meaning() -> None:
    assert canonical_json('{"a": 1.0, "b": [1, 2]}') == canonical_json('{"b":[1,2.00],"a":1}')
    assert canonical_json("[1, 2]") != canonical_json("[2, 1]")
    assert canonical_json('{"a": "1"}') != canonical_json('{"a": 1}')
    assert canonical_json('{"a": true}') != canonical_json('{"a": 1}')


def test_comparable_text_compares_json_by_meaning() -> None:
    assert comparable_text(Kind.JSON, '{"b": 1, "a": 2.0}') == comparable_text(Kind.JSON, '{"a":2,"b":1}')
    assert comparable_text(Kind.TEXT, '{"b": 1}') == '{"b": 1}'
    assert comparable_text(Kind.DECIMAL, Decimal("2.50")) == "2.5"


# --- the row string and the row hash -----------------------------------------------------------


def test_row_string_fields() -> None:
    kinds = [Kind.INTEGER, Kind.TEXT, Kind.DECIMAL, Kind.FLOAT, Kind.BYTES, Kind.TIMESTAMP]
    values = [7, "a|b", Decimal("2.50"), 1.0, b"\x01", "2026-01-05 12:03:00"]
    assert row_string(kinds, values) == "7|3:a|b|2.5|3ff0000000000000|01|2026-01-05 12:03:00.000000"


def test_row_string_null_is_n() -> None:
    assert row_string([Kind.INTEGER, Kind.TEXT, Kind.BYTES], [None, None, None]) == "N|N|N"


def test_row_string_length_prefix_counts_utf8_octets() -> None:
    assert row_string([Kind.TEXT], ["é"]) == "2:é"
    assert row_string([Kind.TEXT], ["😀"]) == "4:😀"
    assert row_string([Kind.UUID], [UUID_TEXT]) == f"36:{UUID_TEXT}"
    assert row_string([Kind.JSON], ['{"a":1}']) == '7:{"a":1}'
    assert row_string([Kind.TEXT], [""]) == "0:"


def test_row_string_has_no_ambiguous_splits() -> None:
    kinds = [Kind.TEXT, Kind.TEXT]
    assert row_string(kinds, ["a|b", "c"]) != row_string(kinds, ["a", "b|c"])
    assert row_string(kinds, ["a|1:b", ""]) != row_string(kinds, ["a", "b|0:"])
    assert row_hash(kinds, ["a|b", "c"]) != row_hash(kinds, ["a", "b|c"])


@pytest.mark.parametrize("kind", [Kind.TEXT, Kind.UUID, Kind.JSON])
def test_row_string_null_empty_and_the_word_null_differ(kind: Kind) -> None:
    values = [None, "", "NULL", "N"] if kind is not Kind.UUID else [None, UUID_TEXT]
    strings = [row_string([kind], [v]) for v in values]
    assert len(set(strings)) == len(values)
    hashes = [row_hash([kind], [v]) for v in values]
    assert len(set(hashes)) == len(values)


def test_row_string_null_empty_and_null_word_differ_with_neighbours() -> None:
    kinds = [Kind.INTEGER, Kind.TEXT, Kind.TEXT]
    rows = [[1, None, "x"], [1, "", "x"], [1, "NULL", "x"], [1, "N", "x"], [1, "x", None], [1, "x", ""]]
    assert len({row_string(kinds, r) for r in rows}) == len(rows)
    assert len({row_hash(kinds, r) for r in rows}) == len(rows)


def test_row_string_needs_one_value_per_kind() -> None:
    with pytest.raises(ValueError):
        row_string([Kind.INTEGER, Kind.TEXT], [1])


def test_row_string_of_no_columns() -> None:
    assert row_string([], []) == ""


@pytest.mark.parametrize(
    ("kinds", "values"),
    [
        ([], []),
        ([Kind.INTEGER], [1]),
        ([Kind.TEXT, Kind.FLOAT], ["x", 1.5]),
        ([Kind.TEXT], [None]),
        ([Kind.BYTES, Kind.DATE], [b"\xff" * 100, dt.date(2026, 1, 1)]),
    ],
)
def test_row_hash_is_60_bit_non_negative(kinds: list[Kind], values: list[Any]) -> None:
    value = row_hash(kinds, values)
    assert isinstance(value, int)
    assert 0 <= value < 2**60
    expected = int(hashlib.sha256(row_string(kinds, values).encode()).hexdigest()[:15], 16)
    assert value == expected == hash_row_string(row_string(kinds, values))


def test_row_hash_spread() -> None:
    hashes = [row_hash([Kind.INTEGER, Kind.TEXT], [i, f"row {i}"]) for i in range(2000)]
    assert len(set(hashes)) == 2000
    assert max(hashes) >= 2**59, "the top bit of the 60 is used"
    assert max(hashes) < 2**60


def test_row_hash_equal_values_equal_hashes() -> None:
    assert row_hash([Kind.DECIMAL], [Decimal("1.50")]) == row_hash([Kind.DECIMAL], ["1.5"])
    assert row_hash([Kind.FLOAT], [-0.0]) == row_hash([Kind.FLOAT], [0.0])
    assert row_hash([Kind.TIMESTAMPTZ], ["2026-01-01 12:00:00+02:00"]) == row_hash(
        [Kind.TIMESTAMPTZ], [dt.datetime(2026, 1, 1, 10, tzinfo=UTC)]
    )
    assert row_hash([Kind.BOOLEAN], [True]) == row_hash([Kind.INTEGER], [1])
    assert row_hash([Kind.UUID], [uuid.UUID(UUID_TEXT)]) == row_hash([Kind.TEXT], [UUID_TEXT])


def test_row_hash_sees_small_changes() -> None:
    base = row_hash([Kind.FLOAT, Kind.TEXT], [1.0, "x"])
    assert row_hash([Kind.FLOAT, Kind.TEXT], [math.nextafter(1.0, 2.0), "x"]) != base
    assert row_hash([Kind.FLOAT, Kind.TEXT], [1.0, "x "]) != base
    assert row_hash([Kind.FLOAT, Kind.TEXT], [1.0, "X"]) != base
    assert row_hash([Kind.FLOAT, Kind.TEXT], [1.0, None]) != base


# --- details the specification (docs/normalization.md) spells out --------------------------------


def test_integers_never_go_through_a_float() -> None:
    assert canonical_text(Kind.INTEGER, 2**62) != canonical_text(Kind.INTEGER, 2**62 + 1)
    assert canonical_text(Kind.INTEGER, 4611686018427387905) == "4611686018427387905"
    assert canonical_text(Kind.DECIMAL, "4611686018427387905") == "4611686018427387905"


def test_decimal_nan() -> None:
    assert canonical_text(Kind.DECIMAL, Decimal("NaN")) == "NaN"


def test_composed_and_decomposed_text_differ() -> None:
    composed, decomposed = "\u00e9", "e\u0301"
    assert canonical_text(Kind.TEXT, composed) != canonical_text(Kind.TEXT, decomposed)
    assert row_hash([Kind.TEXT], [composed]) != row_hash([Kind.TEXT], [decomposed])


def test_spec_examples() -> None:
    assert row_string([Kind.TEXT, Kind.TEXT], ["a|b", "c"]) == "3:a|b|1:c"
    assert row_string([Kind.TEXT, Kind.TEXT], ["a", "b|c"]) == "1:a|3:b|c"
    assert [row_string([Kind.TEXT], [v]) for v in (None, "", "NULL")] == ["N", "0:", "4:NULL"]
    assert canonical_text(Kind.FLOAT, 0.1) == "3fb999999999999a"


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        (Kind.INTEGER, -5),
        (Kind.DECIMAL, Decimal("-1.25")),
        (Kind.FLOAT, -1.5),
        (Kind.BYTES, b"\xff"),
        (Kind.TIMESTAMP, "2026-01-05 12:03:00"),
        (Kind.TIMESTAMPTZ, "2026-01-05 12:03:00+05:00"),
        (Kind.DATE, "2026-01-05"),
        (Kind.TIME, dt.timedelta(hours=-3)),
        (Kind.BOOLEAN, True),
    ],
)
def test_unprefixed_kinds_hold_no_separator_and_no_n(kind: Kind, value: Any) -> None:
    text = canonical_text(kind, value)
    assert text is not None
    assert "|" not in text and "N" not in text


# --- values Python's datetime cannot hold (PostgreSQL's BC years, years past 9999, infinity) ------


@pytest.mark.parametrize(
    ("kind", "value", "text"),
    [
        (Kind.DATE, "0044-03-15 BC", "0044-03-15 BC"),
        (Kind.DATE, "0001-01-01 BC", "0001-01-01 BC"),
        (Kind.DATE, "0001-02-29 BC", "0001-02-29 BC"),  # 1 BC is a leap year (astronomical year 0)
        (Kind.DATE, "10000-01-01", "10000-01-01"),
        (Kind.DATE, "infinity", "infinity"),
        (Kind.DATE, "-infinity", "-infinity"),
        (Kind.DATE, "+infinity", "infinity"),
        (Kind.TIMESTAMP, "0044-03-15 12:00:00.5 BC", "0044-03-15 12:00:00.500000 BC"),
        (Kind.TIMESTAMP, "12345-06-07 08:09:10", "12345-06-07 08:09:10.000000"),
        (Kind.TIMESTAMP, "Infinity", "infinity"),
        # An offset may cross the era: 0001-01-01 00:30 at +01:00 is the last day of 1 BC in UTC.
        (Kind.TIMESTAMPTZ, "0001-01-01 00:30:00+01:00", "0001-12-31 23:30:00.000000 BC"),
        (Kind.TIMESTAMPTZ, "0010-06-01 00:00:00-02 BC", "0010-06-01 02:00:00.000000 BC"),
        (Kind.TIMESTAMPTZ, "2024-01-01 00:00:00+02", "2023-12-31 22:00:00.000000"),
        (Kind.TIMESTAMPTZ, "-infinity", "-infinity"),
    ],
)
def test_dates_beyond_python(kind: Kind, value: str, text: str) -> None:
    assert canonical_text(kind, value) == text


def test_bc_differs_from_ad_and_infinity_from_null() -> None:
    assert canonical_text(Kind.DATE, "0044-03-15 BC") != canonical_text(Kind.DATE, "0044-03-15")
    assert row_string([Kind.DATE], ["infinity"]) != row_string([Kind.DATE], [None])
    assert canonical_text(Kind.DATE, "infinity") != canonical_text(Kind.DATE, "-infinity")


@pytest.mark.parametrize("value", ["0002-02-29 BC", "0000-01-01", "2024-13-01", "2024-02-30"])
def test_impossible_dates_raise(value: str) -> None:
    with pytest.raises(ValueError):
        canonical_text(Kind.DATE, value)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("-01:00:00", "-01:00:00.000000"),
        ("838:59:59", "838:59:59.000000"),
        ("-838:59:59.5", "-838:59:59.500000"),
        ("24:00:00", "24:00:00.000000"),
        ("00:00:00.000001", "00:00:00.000001"),
    ],
)
def test_time_texts_keep_sign_and_hours(value: str, text: str) -> None:
    assert canonical_text(Kind.TIME, value) == text


@pytest.mark.parametrize(
    ("kind", "texts"),
    [
        (Kind.DATE, ["-infinity", "0044-03-15 BC", "0001-12-31 BC", "0001-01-01", "2024-02-29", "10000-01-01"]),
        (
            Kind.TIMESTAMP,
            [
                "0001-01-01 00:00:00.000000 BC",
                "0001-12-31 23:59:59.999999 BC",
                "0001-01-01 00:00:00.000000",
                "infinity",
            ],
        ),
        (
            Kind.TIME,
            ["-838:59:59.000000", "-00:00:00.000001", "00:00:00.000000", "23:59:59.999999", "100:00:00.000000"],
        ),
    ],
)
def test_temporal_order_follows_time(kind: Kind, texts: list[str]) -> None:
    from tablesync.normalize import temporal_order

    orders = [temporal_order(kind, t) for t in texts]
    assert orders == sorted(orders) and len(set(orders)) == len(orders)
    assert temporal_order(kind, None) is None
    assert temporal_order(kind, "!2020-13-45") is None


# --- what SQLite stores but the declared type cannot hold --------------------------------------


def test_stored_text_marks_values_the_kind_cannot_hold() -> None:
    from tablesync.normalize import stored_text

    assert stored_text(Kind.DATE, "2020-13-45") == "!2020-13-45"
    assert stored_text(Kind.FLOAT, "abc") == "!abc"
    assert stored_text(Kind.INTEGER, b"ab") == "!\\x6162"
    assert stored_text(Kind.DATE, "2020-12-31") == "2020-12-31"
    # A UUID column's text that is no UUID is text; one that is, in any case, is canonical.
    assert stored_text(Kind.UUID, "not-a-uuid") == "not-a-uuid"
    assert stored_text(Kind.UUID, UUID_TEXT.upper()) == UUID_TEXT
    # In the row string the stored text is length-prefixed after the mark: no field can be forged.
    assert row_string([Kind.DATE, Kind.FLOAT], ["2020-13-45", "a|b"], lenient=True) == "!10:2020-13-45|!3:a|b"
    with pytest.raises(ValueError):
        row_string([Kind.DATE], ["2020-13-45"])


# --- JSON of any depth ---------------------------------------------------------------------------


def test_deep_json_is_canonicalised_without_recursion() -> None:
    depth = 20_000
    assert canonical_json("[" * depth + "1.0" + "]" * depth) == "[" * depth + "1" + "]" * depth
    nested = '{"b": 1, "a": ' * depth + "null" + "}" * depth
    assert canonical_json(nested) == '{"a":' * depth + "null" + ',"b":1}' * depth


@pytest.mark.parametrize("text", ["", "[1,]", '{"a" 1}', "[1] 2", "{'a': 1}", "tru", '"\x01"', "[", "01"])
def test_invalid_json_raises(text: str) -> None:
    with pytest.raises(ValueError):
        canonical_json(text)


def test_duplicated_json_keys_keep_the_last_as_jsonb_does() -> None:
    assert canonical_json('{"a": 1, "a": 2}') == canonical_json('{"a": 2}')


def test_every_nan_is_one_canonical_value() -> None:
    negative_nan = struct.unpack(">d", bytes.fromhex("fff8000000000000"))[0]
    payload_nan = struct.unpack(">d", bytes.fromhex("7ff0000000000001"))[0]
    texts = {canonical_text(Kind.FLOAT, v) for v in (math.nan, -math.nan, negative_nan, payload_nan, "NaN")}
    assert texts == {"7ff8000000000000"}
    assert canonical_text(Kind.FLOAT, math.inf) != canonical_text(Kind.FLOAT, math.nan)
