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
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

from .errors import InputError
from .models import Condition, Filter, Kind
from .normalize import canonical_text, stored_text

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


def typed_filter(node: Filter, kinds: Mapping[str, Sequence[Kind | None]]) -> Filter:
    """The filter with each literal in the canonical form of its column's kind, so that it means
    the same on every engine (docs/normalization.md, "Filters"). `kinds` gives each filter
    column's kind on the source first, then on each target; the source's kind types the literal."""
    if node.op != "cond":
        return Filter(op=node.op, items=[typed_filter(item, kinds) for item in node.items])
    cond = node.cond
    assert cond is not None
    if cond.op in ("is_null", "is_not_null"):
        return node
    column_kinds = kinds[cond.column]
    if any(k is None for k in column_kinds):
        raise InputError(f"--where: column {cond.column!r} has a type tablesync cannot compare: only IS [NOT] NULL")
    if any(k in (Kind.JSON, Kind.BYTES) for k in column_kinds):
        raise InputError(
            f"--where: column {cond.column!r} holds JSON or bytes: only IS NULL and IS NOT NULL can filter on it"
        )
    kind = column_kinds[0]
    assert kind is not None
    values = [_typed_literal(cond.column, kind, v) for v in cond.values]
    return Filter(op="cond", cond=cond.model_copy(update={"values": values}))


def _typed_literal(column: str, kind: Kind, value: Any) -> Any:
    def refuse(what: str) -> InputError:
        return InputError(f"--where: {value!r} is not {what} (column {column!r})")

    if kind is Kind.TEXT:
        if isinstance(value, bool):
            raise refuse("a text")
        return value if isinstance(value, str) else str(value)
    if kind is Kind.UUID:
        if not isinstance(value, str):
            raise refuse("a UUID")
        return stored_text(Kind.UUID, value)  # lowercase when it is a UUID
    if kind is Kind.BOOLEAN:
        if isinstance(value, bool) or value in (0, 1):
            return bool(value)
        raise refuse("a boolean (TRUE, FALSE, 1 or 0)")
    if kind in (Kind.INTEGER, Kind.DECIMAL, Kind.FLOAT):
        if isinstance(value, bool):
            value = int(value)
        if not isinstance(value, int | Decimal):
            try:
                value = Decimal(str(value).strip())
            except InvalidOperation:
                raise refuse("a number") from None
            if value == value.to_integral_value() and "." not in str(value):
                value = int(value)
        # A double column compares with the double nearest the literal, on every engine (MySQL
        # would take a decimal literal beyond 65 digits, or 38 places, as another number).
        return float(value) if kind is Kind.FLOAT else value
    if not isinstance(value, str):
        raise refuse(f"a {kind.value} (write it as a quoted ISO text)")
    try:
        return canonical_text(kind, value)
    except ValueError:
        raise refuse(f"a {kind.value} (write it as a quoted ISO text)") from None


def render_filter(
    node: Filter,
    operand: Callable[[str], str],
    placeholder: str,
    convert: Callable[[str, Any], Any] = lambda column, value: value,
    null_operand: Callable[[str], str] | None = None,
) -> tuple[str, list[Any]]:
    """SQL text and parameters for a filter tree: operand() gives the SQL a column is compared
    through (a quoted identifier, or an expression of it), convert() a literal as bound, and
    null_operand() what IS [NOT] NULL tests (by default the operand)."""
    if node.op == "cond":
        cond = node.cond
        assert cond is not None
        if cond.op in ("is_null", "is_not_null"):
            tested = (null_operand or operand)(cond.column)
            return f"{tested} {'IS NULL' if cond.op == 'is_null' else 'IS NOT NULL'}", []
        column = operand(cond.column)
        params = [convert(cond.column, v) for v in cond.values]
        if cond.op in ("in", "not_in"):
            marks = ", ".join([placeholder] * len(params))
            return f"{column} {'NOT IN' if cond.op == 'not_in' else 'IN'} ({marks})", params
        return f"{column} {'<>' if cond.op == '!=' else cond.op} {placeholder}", params
    parts = [render_filter(item, operand, placeholder, convert, null_operand) for item in node.items]
    params = [p for _, item_params in parts for p in item_params]
    if node.op == "not":
        return f"NOT ({parts[0][0]})", params
    joiner = " AND " if node.op == "and" else " OR "
    return joiner.join(f"({sql})" for sql, _ in parts), params
