"""Canonical text forms of values and the row hash, in Python.

The dialect modules compute the same texts inside their databases (docs/normalization.md is the
specification); this module is the reference they are tested against, and it computes the row hash
itself for SQLite (as a registered SQL function) and compares fetched rows."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import struct
import uuid
from collections.abc import Callable, Iterable, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .models import Kind

# JSON by meaning has its own module; the decimal text is shared by JSON numbers and decimal columns.
from .normalize_json import canonical_decimal as canonical_decimal
from .normalize_json import canonical_json as canonical_json

NULL_FIELD = "N"
FIELD_SEPARATOR = "|"
HASH_HEX_DIGITS = 15  # 60 bits of each row's SHA-256
# Kinds whose canonical text may contain any character: written as <octet length>:<text>.
LENGTH_PREFIXED = frozenset({Kind.TEXT, Kind.UUID, Kind.JSON})


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        return Decimal(int(value))
    if isinstance(value, float):
        return Decimal(repr(value))
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"not a decimal number: {value!r}") from None


CANONICAL_NAN = "7ff8000000000000"


def canonical_float(value: Any) -> str:
    number = float(value)
    if number == 0.0:
        number = 0.0  # -0.0 and 0.0 are one value in every engine's comparisons
    if number != number:
        return CANONICAL_NAN  # every NaN is one value (PostgreSQL: NaN = NaN), whatever its sign and payload
    return struct.pack(">d", number).hex()


# PostgreSQL holds dates and timestamps that Python's datetime cannot: years before 1 (written
# `0044-03-15 BC`), after 9999, and the values `infinity` and `-infinity`. Their canonical texts are
# PostgreSQL's own ISO forms; MySQL/MariaDB cannot hold them, so they differ from every value there.
INFINITIES = {"infinity": "infinity", "+infinity": "infinity", "-infinity": "-infinity"}
_EXTENDED_TIMESTAMP = re.compile(
    r"(\d{4,})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,6}))?)?)?"
    r"\s*(Z|[+-]\d\d(?::?\d\d)?)?(\s+BC)?",
    re.IGNORECASE,
)
_TIME = re.compile(r"(-)?(\d+):(\d\d)(?::(\d\d)(?:\.(\d{1,6}))?)?")
_GREGORIAN_CYCLE_YEARS = 400  # the calendar repeats exactly every 400 years (146,097 days)


def _format_timestamp(year: int, moment: dt.datetime, with_time: bool = True) -> str:
    """The canonical text of `moment`, whose real year is `year` (astronomical: 0 is 1 BC)."""
    shown = year if year > 0 else 1 - year
    text = f"{shown:04d}-{moment.month:02d}-{moment.day:02d}"
    if with_time:
        text += f" {moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}.{moment.microsecond:06d}"
    return text if year > 0 else text + " BC"


def _timestamp_parts(text: str, *, utc: bool) -> tuple[int, dt.datetime, bool]:
    """(astronomical year, the moment with its year moved into 1..9999, whether a time was given)
    of an ISO timestamp text, BC and 5-digit years included; with `utc`, an offset is applied."""
    match = _EXTENDED_TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"not a timestamp: {text!r}")
    year_text, month, day, hour, minute, second, fraction, offset, bc = match.groups()
    year = int(year_text)
    if year == 0:
        # No year 0 (1 BC precedes 1 AD); MySQL's zero dates are compared as stored, see INVALID_MARK.
        raise ValueError(f"not a timestamp: {text!r}")
    if bc:
        year = 1 - year
    # Moved by whole 400-year cycles into datetime's range: the same month, day and weekday rules.
    shift = 0
    while year + shift < 1000:
        shift += _GREGORIAN_CYCLE_YEARS * 5
    while year + shift > 9000:
        shift -= _GREGORIAN_CYCLE_YEARS * 5
    moment = dt.datetime(
        year + shift,
        int(month),
        int(day),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")),
    )
    if offset and utc:
        aware = dt.datetime.fromisoformat(f"{moment.isoformat()}{'+00:00' if offset in 'Zz' else offset}")
        moment = aware.astimezone(dt.UTC).replace(tzinfo=None)
    return moment.year - shift, moment, hour is not None


def canonical_timestamp(value: Any) -> str:
    """Timestamps with a time zone are shown in UTC; naive ones are taken as they are."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return _format_timestamp(value.year, value)
    if isinstance(value, dt.date):
        return _format_timestamp(value.year, dt.datetime(value.year, value.month, value.day))
    text = str(value).strip()
    if text.lower() in INFINITIES:
        return INFINITIES[text.lower()]
    year, moment, _ = _timestamp_parts(text, utc=True)
    return _format_timestamp(year, moment)


def canonical_date(value: Any) -> str:
    if isinstance(value, dt.date):  # a datetime too: its date
        return _format_timestamp(value.year, dt.datetime(value.year, value.month, value.day), with_time=False)
    text = str(value).strip()
    if text.lower() in INFINITIES:
        return INFINITIES[text.lower()]
    # A date column holding a timestamp text (SQLite stores what it is given): its date.
    year, moment, _ = _timestamp_parts(text, utc=False)
    return _format_timestamp(year, moment, with_time=False)


def canonical_time(value: Any) -> str:
    if isinstance(value, dt.timedelta):
        micros = value // dt.timedelta(microseconds=1)
    elif isinstance(value, dt.time):
        micros = ((value.hour * 60 + value.minute) * 60 + value.second) * 1_000_000 + value.microsecond
    else:
        # MySQL's TIME is a duration: a sign and more than 24 hours are values, not errors.
        match = _TIME.fullmatch(str(value).strip())
        if match is None:
            raise ValueError(f"not a time: {value!r}")
        sign, hours, minutes, seconds, fraction = match.groups()
        if int(minutes) > 59 or int(seconds or 0) > 59:
            raise ValueError(f"not a time: {value!r}")
        micros = ((int(hours) * 60 + int(minutes)) * 60 + int(seconds or 0)) * 1_000_000
        micros += int((fraction or "0").ljust(6, "0"))
        micros = -micros if sign else micros
    sign = "-" if micros < 0 else ""
    seconds, micro = divmod(abs(micros), 1_000_000)
    minutes, second = divmod(seconds, 60)
    hours, minute = divmod(minutes, 60)
    return f"{sign}{hours:02d}:{minute:02d}:{second:02d}.{micro:06d}"


_EPOCH_MICROS_LIMIT = 2**62  # beyond every finite timestamp PostgreSQL holds


def temporal_order(kind: Kind, text: str | None) -> int | None:
    """An integer that orders canonical date, timestamp and time texts as the values they stand
    for (BC years and the infinities included): microseconds from 0001-01-01, or of the time of
    day. None for NULL and for a value its kind cannot hold (it then matches no comparison)."""
    if text is None or text.startswith(INVALID_MARK):
        return None
    if kind is Kind.TIME:
        sign, rest = (-1, text[1:]) if text.startswith("-") else (1, text)
        hours, minutes, second_text = rest.split(":")
        whole, _, fraction = second_text.partition(".")
        return sign * (((int(hours) * 60 + int(minutes)) * 60 + int(whole)) * 1_000_000 + int(fraction or 0))
    if text in ("infinity", "-infinity"):
        return -_EPOCH_MICROS_LIMIT if text.startswith("-") else _EPOCH_MICROS_LIMIT
    year, moment, _ = _timestamp_parts(text, utc=False)
    cycles = (moment.year - year) // _GREGORIAN_CYCLE_YEARS
    days = moment.toordinal() - cycles * 146_097
    total_seconds = (days * 86_400) + moment.hour * 3_600 + moment.minute * 60 + moment.second
    return total_seconds * 1_000_000 + moment.microsecond


def _number_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    return canonical_decimal(_to_decimal(value))


def _float_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError("not a number")
    return canonical_float(value)


def _text_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8")
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _uuid_text(value: Any) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return str(uuid.UUID(bytes=bytes(value)))
    return str(uuid.UUID(str(value).strip()))


def _bytes_text(value: Any) -> str:
    if isinstance(value, str):
        return value.encode("utf-8").hex()
    return bytes(value).hex()


def _temporal(convert: Callable[[Any], str]) -> Callable[[Any], str]:
    def text(value: Any) -> str:
        if isinstance(value, bytes | bytearray | memoryview):
            raise ValueError("not a date or time")
        return convert(value)

    return text


def canonical_text(kind: Kind, value: Any) -> str | None:
    """The canonical text of one value; None for SQL NULL. Raises ValueError for a value the kind
    cannot hold (see stored_text for SQLite, which stores anything)."""
    if value is None:
        return None
    convert = _CANONICAL.get(kind)
    if convert is None:
        raise ValueError(f"unknown kind {kind}")
    return convert(value)


# A value its column's type cannot hold: SQLite stores whatever it is given ('2020-13-45' in a
# DATE column, 'abc' in a DOUBLE). It is compared by what is stored, after this mark, which no
# valid canonical text of a non-text kind starts with: it equals the same stored text elsewhere
# and differs from every valid value. A BLOB is shown as \x and its hex digits. A UUID column's
# text that is no UUID is a text like any other (UUIDs compare with text).
INVALID_MARK = "!"


def stored_text(kind: Kind, value: Any) -> str | None:
    """canonical_text, or for a value the kind cannot hold, INVALID_MARK and the stored text."""
    try:
        return canonical_text(kind, value)
    except (ValueError, TypeError, OverflowError, ArithmeticError):
        stored = "\\x" + bytes(value).hex() if isinstance(value, bytes | bytearray | memoryview) else str(value)
        # A UUID column's text that is no UUID is compared as the text it is (a text kind).
        return stored if kind is Kind.UUID else INVALID_MARK + stored


def comparable_text(kind: Kind, value: Any) -> str | None:
    """Canonical text for comparing fetched rows: JSON compared by meaning, not by spelling."""
    text = canonical_text(kind, value)
    if text is not None and kind is Kind.JSON:
        return canonical_json(text)
    return text


def row_field(kind: Kind | None, text: str | None) -> str:
    """One field of the row string (docs/normalization.md, "The row string")."""
    if text is None:
        return NULL_FIELD
    if kind in LENGTH_PREFIXED:
        return f"{len(text.encode('utf-8'))}:{text}"
    if text.startswith(INVALID_MARK):
        stored = text[len(INVALID_MARK) :]
        return f"{INVALID_MARK}{len(stored.encode('utf-8'))}:{stored}"
    return text


def row_string(kinds: Sequence[Kind], values: Iterable[Any], *, lenient: bool = False) -> str:
    """lenient: a value the kind cannot hold is hashed as stored (stored_text) instead of raising."""
    text_of = stored_text if lenient else canonical_text
    return FIELD_SEPARATOR.join(
        row_field(kind, text_of(kind, value)) for kind, value in zip(kinds, values, strict=True)
    )


def hash_row_string(text: str) -> int:
    return int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:HASH_HEX_DIGITS], 16)


def row_hash(kinds: Sequence[Kind], values: Iterable[Any], *, lenient: bool = False) -> int:
    return hash_row_string(row_string(kinds, values, lenient=lenient))


# Each kind's canonical text of a driver's value (docs/normalization.md, "Kinds").
_CANONICAL: dict[Kind, Callable[[Any], str]] = {
    Kind.INTEGER: _number_text,
    Kind.BOOLEAN: _number_text,
    Kind.DECIMAL: _number_text,
    Kind.FLOAT: _float_text,
    Kind.TEXT: _text_text,
    Kind.JSON: _text_text,
    Kind.UUID: _uuid_text,
    Kind.BYTES: _bytes_text,
    Kind.TIMESTAMP: _temporal(canonical_timestamp),
    Kind.TIMESTAMPTZ: _temporal(canonical_timestamp),
    Kind.DATE: _temporal(canonical_date),
    Kind.TIME: _temporal(canonical_time),
}
