"""JSON by meaning: the canonical text of a JSON document (docs/normalization.md, "json"), parsed
without recursion so that any depth of nesting is read."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any


def canonical_decimal(value: Decimal) -> str:
    """A number's decimal text: no exponent, no trailing zeros, no negative zero."""
    if value.is_nan():
        return "NaN"
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    if text in ("-0", ""):
        text = "0"
    return text


_JSON_SPACE = re.compile(r"[ \t\n\r]*")
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][-+]?\d+)?")
_JSON_LITERALS = ("true", "false", "null")
# The standard library's (C) scanner of one JSON string: escapes decoded, control characters refused.
_SCANSTRING: Callable[[str, int, bool], tuple[str, int]] = json.decoder.scanstring  # type: ignore[attr-defined]


def canonical_json(value: Any) -> str:
    """Semantic JSON form: sorted keys (the last of duplicated keys wins, as in jsonb), no
    whitespace, numbers as trimmed decimals. Parsed iteratively: any depth of nesting."""
    if isinstance(value, bytes | bytearray | memoryview):
        text = bytes(value).decode("utf-8")
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return _JsonCanonicaliser(text).run()


class _JsonCanonicaliser:
    """A JSON parser with an explicit stack that writes each value's canonical text as it closes."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def _space(self) -> None:
        match = _JSON_SPACE.match(self.text, self.pos)
        assert match is not None
        self.pos = match.end()

    def _peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def _fail(self) -> ValueError:
        return ValueError(f"not JSON at offset {self.pos}")

    def _string(self) -> str:
        if self._peek() != '"':
            raise self._fail()
        value, self.pos = _scan_json_string(self.text, self.pos + 1)
        return value

    def _key(self) -> str:
        self._space()
        key = self._string()
        self._space()
        if self._peek() != ":":
            raise self._fail()
        self.pos += 1
        return key

    def run(self) -> str:
        # Each open container: a list of member texts (array), or a dict of key -> text (object)
        # and the key whose value is being read. Iterative: nesting depth costs no recursion.
        stack: list[tuple[list[str] | dict[str, str], str]] = []
        while True:
            done = self._value(stack)
            if done is None:
                continue  # a container was opened: read its first member
            finished = self._hand_up(stack, done)
            if finished is not None:
                return finished

    def _value(self, stack: list[tuple[list[str] | dict[str, str], str]]) -> str | None:
        """The next value's canonical text, or None when it opens a (non-empty) container."""
        self._space()
        char = self._peek()
        if char in "{[" and char:
            self.pos += 1
            self._space()
            closing = "}" if char == "{" else "]"
            if self._peek() == closing:
                self.pos += 1
                return char + closing
            stack.append(({}, self._key()) if char == "{" else ([], ""))
            return None
        if char == '"':
            return json.dumps(self._string(), ensure_ascii=False)
        number = _JSON_NUMBER.match(self.text, self.pos)
        if number is not None and number.end() > self.pos:
            self.pos = number.end()
            return canonical_decimal(Decimal(number.group()))
        literal = next((w for w in _JSON_LITERALS if self.text.startswith(w, self.pos)), None)
        if literal is None:
            raise self._fail()
        self.pos += len(literal)
        return literal

    def _hand_up(self, stack: list[tuple[list[str] | dict[str, str], str]], done: str) -> str | None:
        """Hands a finished value to its container and closes every container that ends here: the
        whole document's text when none is left open, None when a member follows."""
        while True:
            self._space()
            if not stack:
                if self.pos != len(self.text):
                    raise self._fail()
                return done
            members, key = stack[-1]
            if isinstance(members, dict):
                members[key] = done
            else:
                members.append(done)
            char = self._peek()
            self.pos += 1
            if char == ",":
                if isinstance(members, dict):
                    stack[-1] = (members, self._key())
                return None
            if char == "}" and isinstance(members, dict):
                items = sorted(members.items())
                done = "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + v for k, v in items) + "}"
            elif char == "]" and isinstance(members, list):
                done = "[" + ",".join(members) + "]"
            else:
                self.pos -= 1
                raise self._fail()
            stack.pop()


def _scan_json_string(text: str, end: int) -> tuple[str, int]:
    """The JSON string starting after the quote at end - 1, and the offset after its closing quote."""
    try:
        return _SCANSTRING(text, end, True)
    except json.JSONDecodeError as exc:
        raise ValueError(str(exc)) from None
