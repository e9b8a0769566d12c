"""The --where filter: a small expression language parsed into a tree, so that no SQL is ever
built from the user's text. Columns are checked against the table and quoted by each dialect;
values are bound parameters.

    expr       := or_expr
    or_expr    := and_expr ("OR" and_expr)*
    and_expr   := not_expr ("AND" not_expr)*
    not_expr   := "NOT" not_expr | "(" expr ")" | comparison
    comparison := column ( OP literal | "IS" ["NOT"] "NULL" | ["NOT"] "IN" "(" literal, ... ")"
                         | "BETWEEN" literal "AND" literal )
    OP         := = | != | <> | < | <= | > | >=
    literal    := number | 'string' | TRUE | FALSE
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from .errors import InputError
from .models import Condition, Filter

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<number>-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)
      | '(?P<string>(?:[^']|'')*)'
      | "(?P<dquoted>(?:[^"]|"")+)"
      | `(?P<bquoted>(?:[^`]|``)+)`
      | (?P<op><=|>=|<>|!=|=|<|>)
      | (?P<punct>[(),])
      | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    )""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "TRUE", "FALSE"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, Any]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            match = _TOKEN.match(text, pos)
            if not match or match.end() == pos:
                raise InputError(f"--where: cannot read the filter at {text[pos : pos + 20]!r}")
            pos = match.end()
            kind = match.lastgroup
            assert kind is not None
            value: Any = match.group(kind)
            if kind == "number":
                value = int(value) if re.fullmatch(r"-?\d+", value) else Decimal(value)
            elif kind == "string":
                value = value.replace("''", "'")
            elif kind == "dquoted":
                kind, value = "ident", value.replace('""', '"')
            elif kind == "bquoted":
                kind, value = "ident", value.replace("``", "`")
            elif kind == "word":
                kind, value = ("kw", value.upper()) if value.upper() in _KEYWORDS else ("ident", value)
            self.tokens.append((kind, value))
        self.index = 0

    def peek(self) -> tuple[str, Any] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> tuple[str, Any]:
        token = self.peek()
        if token is None:
            raise InputError("--where: the filter ends too early")
        self.index += 1
        return token

    def accept(self, kind: str, value: Any = None) -> bool:
        token = self.peek()
        if token and token[0] == kind and (value is None or token[1] == value):
            self.index += 1
            return True
        return False

    def expect(self, kind: str, value: Any = None) -> None:
        if not self.accept(kind, value):
            found = self.peek()
            raise InputError(f"--where: expected {value or kind}, found {found[1] if found else 'the end'!r}")

    def parse(self) -> Filter:
        result = self.or_expr()
        if self.peek() is not None:
            raise InputError(f"--where: unexpected {self.peek()[1]!r}")  # type: ignore[index]
        return result

    def or_expr(self) -> Filter:
        items = [self.and_expr()]
        while self.accept("kw", "OR"):
            items.append(self.and_expr())
        return items[0] if len(items) == 1 else Filter(op="or", items=items)

    def and_expr(self) -> Filter:
        items = [self.not_expr()]
        while self.accept("kw", "AND"):
            items.append(self.not_expr())
        return items[0] if len(items) == 1 else Filter(op="and", items=items)

    def not_expr(self) -> Filter:
        if self.accept("kw", "NOT"):
            return Filter(op="not", items=[self.not_expr()])
        if self.accept("punct", "("):
            inner = self.or_expr()
            self.expect("punct", ")")
            return inner
        return self.comparison()

    def literal(self) -> Any:
        kind, value = self.take()
        if kind in ("number", "string"):
            return value
        if kind == "kw" and value in ("TRUE", "FALSE"):
            return value == "TRUE"
        raise InputError(f"--where: expected a value, found {value!r}")

    def comparison(self) -> Filter:
        kind, column = self.take()
        if kind != "ident":
            raise InputError(f"--where: expected a column name, found {column!r}")
        if self.accept("kw", "IS"):
            negated = self.accept("kw", "NOT")
            self.expect("kw", "NULL")
            return _leaf(column, "is_not_null" if negated else "is_null", [])
        negated = self.accept("kw", "NOT")
        if self.accept("kw", "IN"):
            self.expect("punct", "(")
            values = [self.literal()]
            while self.accept("punct", ","):
                values.append(self.literal())
            self.expect("punct", ")")
            return _leaf(column, "not_in" if negated else "in", values)
        if negated:
            raise InputError("--where: NOT must come before a comparison or before IN")
        if self.accept("kw", "BETWEEN"):
            low = self.literal()
            self.expect("kw", "AND")
            high = self.literal()
            return Filter(op="and", items=[_leaf(column, ">=", [low]), _leaf(column, "<=", [high])])
        op_kind, op = self.take()
        if op_kind != "op":
            raise InputError(f"--where: expected an operator after {column!r}, found {op!r}")
        return _leaf(column, "!=" if op == "<>" else op, [self.literal()])


def _leaf(column: str, op: str, values: list[Any]) -> Filter:
    return Filter(op="cond", cond=Condition(column=column, op=op, values=values))


def parse_filter(text: str) -> Filter:
    if not text.strip():
        raise InputError("--where: the filter is empty")
    return _Parser(text).parse()


def filter_columns(node: Filter) -> list[str]:
    if node.op == "cond":
        assert node.cond is not None
        return [node.cond.column]
    return [name for item in node.items for name in filter_columns(item)]


def rename_columns(node: Filter, rename: Callable[[str], str]) -> Filter:
    if node.op == "cond":
        assert node.cond is not None
        cond = node.cond.model_copy(update={"column": rename(node.cond.column)})
        return Filter(op="cond", cond=cond)
    return Filter(op=node.op, items=[rename_columns(item, rename) for item in node.items])


def render_filter(
    node: Filter, quote: Callable[[str], str], placeholder: str, convert: Callable[[Any], Any] = lambda v: v
) -> tuple[str, list[Any]]:
    """SQL text and parameters for a filter tree; quote() quotes identifiers for the dialect."""
    if node.op == "cond":
        cond = node.cond
        assert cond is not None
        column = quote(cond.column)
        if cond.op == "is_null":
            return f"{column} IS NULL", []
        if cond.op == "is_not_null":
            return f"{column} IS NOT NULL", []
        params = [convert(v) for v in cond.values]
        if cond.op in ("in", "not_in"):
            marks = ", ".join([placeholder] * len(params))
            return f"{column} {'NOT IN' if cond.op == 'not_in' else 'IN'} ({marks})", params
        return f"{column} {'<>' if cond.op == '!=' else cond.op} {placeholder}", params
    parts = [render_filter(item, quote, placeholder, convert) for item in node.items]
    params = [p for _, item_params in parts for p in item_params]
    if node.op == "not":
        return f"NOT ({parts[0][0]})", params
    joiner = " AND " if node.op == "and" else " OR "
    return joiner.join(f"({sql})" for sql, _ in parts), params
