"""DynamoDB's values in tablesync's canonical form (docs/normalization.md, "DynamoDB").

Items arrive in DynamoDB's own JSON ({"N": "1.0"}, {"SS": [...]}) from the low-level client, so a
number is never a float: its text is read as an exact Decimal and written in one spelling for
every equal number (1, 1.0 and 10E-1 are one number; 38 digits are kept). Sets are unordered,
lists ordered, maps by name; binaries are their bytes; NULL, an absent attribute and an empty
string are three different things."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from ..errors import SchemaError
from ..models import Key, KeyValue

AttributeValue = dict[str, Any]
Item = Mapping[str, AttributeValue]

# The bookkeeping attributes of global tables (version 2017): each replica writes its own.
REPLICATION_PREFIX = "aws:rep:"
HASH_BITS = 60  # row hashes fit the engine's (key, hash) pairs like the SQL dialects' do
_PLAIN_INTEGER = re.compile(r"[+-]?[0-9]{1,300}")
# A tag no DynamoDB type has: a SQL value DynamoDB cannot hold (NaN, a text its column type cannot
# parse), carried as {INVALID: its text}. It equals nothing on the other side and is never written.
INVALID = "INVALID"


@functools.lru_cache(maxsize=1 << 16)
def canonical_number(text: str) -> str:
    """The one spelling of a DynamoDB number: its significant digits and exponent, exactly
    (never through a float, never rounded to a context's precision). Remembered: a table's
    numbers repeat (counts, flags, prices), and this is the hottest path of a diff's hashing."""
    if _PLAIN_INTEGER.fullmatch(text):
        return str(int(text))  # exact at any length; "-0" and "007" as 0 and 7
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise SchemaError(f"DynamoDB returned {text!r} as a number") from None
    if not number.is_finite():
        raise SchemaError(f"DynamoDB returned {text!r} as a number")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)  # finite
    significant = "".join(map(str, digits)).lstrip("0")
    if not significant:
        return "0"
    stripped = significant.rstrip("0")
    exponent += len(significant) - len(stripped)
    # Plain positional notation of the trimmed digits: one text per number (DynamoDB's range,
    # 1E-130 to 1E+126, keeps it under 170 characters).
    return format(Decimal((sign, tuple(int(d) for d in stripped), exponent)), "f")


def _bytes(value: Any) -> str:
    raw = value if isinstance(value, bytes | bytearray) else base64.b64decode(value)
    return base64.b64encode(bytes(raw)).decode()


def canonical_value(value: AttributeValue) -> Any:
    """An attribute value as plain JSON whose equality is DynamoDB's: the type and the value in
    its canonical form; sets sorted (maps are sorted by name when written as text). Tuples, not
    lists: this is the hottest path of a diff, and they are written the same."""
    if len(value) != 1:
        raise SchemaError(f"not a DynamoDB attribute value: {sorted(value)}")
    for kind, inner in value.items():
        # The types in the order items hold them most.
        if kind == "S":
            return ("S", inner)
        if kind == "N":
            return ("N", canonical_number(inner))
        if kind == "M":
            return ("M", {name: canonical_value(v) for name, v in inner.items()})
        if kind == "L":
            return ("L", [canonical_value(v) for v in inner])
        if kind == "BOOL":
            return ("BOOL", bool(inner))
        if kind == "NULL":
            return ("NULL",)
        if kind == "SS":
            return ("SS", sorted(set(inner)))
        if kind == "NS":
            return ("NS", sorted({canonical_number(n) for n in inner}))
        if kind == "B":
            return ("B", _bytes(inner))
        if kind == "BS":
            return ("BS", sorted({_bytes(b) for b in inner}))
        if kind == INVALID:
            return (INVALID, inner)
        raise SchemaError(f"unknown DynamoDB attribute type {kind!r}")
    raise AssertionError("unreachable")  # pragma: no cover


def compared_attributes(item: Item, ignore: Iterable[str]) -> dict[str, Any]:
    """The item's compared attributes in canonical form: all but the ignored ones and the global
    tables' bookkeeping (aws:rep:*)."""
    skip = set(ignore)
    return {
        name: canonical_value(value)
        for name, value in sorted(item.items())
        if name not in skip and not name.startswith(REPLICATION_PREFIX)
    }


_encode = json.JSONEncoder(ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode


def canonical_text(canonical: Any) -> str:
    """Canonical values as one text: maps by name, no spaces."""
    return _encode(canonical)


def item_hash(item: Item, ignore: Iterable[str]) -> int:
    """A 60-bit hash of the item's compared attributes (the key attributes included: equal keys
    hash alike on both sides)."""
    skip = ignore if isinstance(ignore, frozenset | set) else frozenset(ignore)
    return canonical_hash(
        {
            name: canonical_value(value)
            for name, value in item.items()
            if name not in skip and not name.startswith(REPLICATION_PREFIX)
        }
    )


def canonical_hash(attributes: Mapping[str, Any]) -> int:
    """The 60-bit hash of an item's attributes in canonical form (a DynamoDB item's, or a SQL row
    seen as one: sql_items.py)."""
    digest = hashlib.sha256(_encode(attributes).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> (64 - HASH_BITS)


def item_texts(item: Item, ignore: Iterable[str], key_names: Iterable[str] = ()) -> dict[str, str | None]:
    """The item's compared attributes but its key, each as DynamoDB JSON in canonical form (for
    samples): {"N":"1"}, {"SS":["a","b"]}."""
    return canonical_texts(compared_attributes(item, ignore), key_names)


def canonical_texts(attributes: Mapping[str, Any], key_names: Iterable[str] = ()) -> dict[str, str | None]:
    keys = set(key_names)
    return {name: canonical_text(dynamodb_json(value)) for name, value in attributes.items() if name not in keys}


def dynamodb_json(canonical: Any) -> Any:
    """A canonical value in DynamoDB's JSON spelling."""
    kind = canonical[0]
    if kind == "NULL":
        return {"NULL": True}
    if kind == "L":
        return {"L": [dynamodb_json(v) for v in canonical[1]]}
    if kind == "M":
        return {"M": {name: dynamodb_json(v) for name, v in canonical[1].items()}}
    return {kind: canonical[1]}


def stored_value(canonical: Any) -> AttributeValue:
    """A canonical value as the attribute value a DynamoDB client sends (binaries as bytes;
    a SQL value DynamoDB cannot hold as {INVALID: its text}, which is never written)."""
    kind = canonical[0]
    if kind == "NULL":
        return {"NULL": True}
    if kind == "L":
        return {"L": [stored_value(v) for v in canonical[1]]}
    if kind == "M":
        return {"M": {name: stored_value(v) for name, v in canonical[1].items()}}
    if kind == "B":
        return {"B": base64.b64decode(canonical[1])}
    if kind == "BS":
        return {"BS": [base64.b64decode(b) for b in canonical[1]]}
    return {kind: canonical[1]}


def invalid_attributes(item: Item) -> list[str]:
    """The names of the item's attributes that hold a value DynamoDB cannot (see INVALID)."""
    return sorted(name for name, value in item.items() if INVALID in value)


def key_value(kind: str, value: AttributeValue) -> KeyValue:
    """A key attribute as the engine holds keys: a string as itself, a number as an int where it
    is whole (else its canonical text), a binary as base64."""
    if kind not in value:
        raise SchemaError(f"a key attribute of type {kind} holds {sorted(value)}")
    inner = value[kind]
    if kind == "S":
        return str(inner)
    if kind == "B":
        return _bytes(inner)
    number = Decimal(inner)
    if number == number.to_integral_value():
        return int(number)
    return canonical_number(inner)


def key_attribute(kind: str, value: KeyValue) -> AttributeValue:
    """The inverse of key_value: the attribute value DynamoDB takes in a key."""
    if value is None:
        raise SchemaError("a DynamoDB key has no NULL")
    if kind == "S":
        return {"S": str(value)}
    if kind == "B":
        return {"B": base64.b64decode(str(value))}
    return {"N": _number_text(value)}


def _number_text(value: KeyValue) -> str:
    return str(value)


class KeySchema:
    """A table's key attributes (partition key, then the sort key if any) and their types."""

    def __init__(self, names: Sequence[str], kinds: Sequence[str]) -> None:
        self.names = list(names)
        self.kinds = list(kinds)

    def key_of(self, item: Item) -> Key:
        try:
            return [key_value(kind, item[name]) for name, kind in zip(self.names, self.kinds, strict=True)]
        except KeyError as exc:
            raise SchemaError(f"an item lacks the key attribute {exc.args[0]!r}") from None

    def holdable(self, key: Key) -> bool:
        """Whether DynamoDB can hold the key: no NULL, strings and binaries not empty and within
        its limits (2,048 bytes for a partition key, 1,024 for a sort key), numbers for N."""
        for position, (kind, value) in enumerate(zip(self.kinds, key, strict=True)):
            limit = 2048 if position == 0 else 1024
            if value is None:
                return False
            if kind == "S" and not (isinstance(value, str) and 0 < len(value.encode()) <= limit):
                return False
            if kind == "B" and not (
                isinstance(value, str) and len(value) > 0 and len(base64.b64decode(value)) <= limit
            ):
                return False
            if kind == "N" and isinstance(value, str):
                try:
                    Decimal(value)
                except InvalidOperation:
                    return False
        return True

    def attributes(self, key: Key) -> dict[str, AttributeValue]:
        return {name: key_attribute(kind, v) for name, kind, v in zip(self.names, self.kinds, key, strict=True)}
