"""The --where filter language: parsing into a tree, rendering with bound parameters, and refusal
of anything that is not a filter (no user text ever reaches the SQL)."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import pytest
from tablesync.errors import InputError
from tablesync.filters import filter_columns, parse_filter, rename_columns, render_filter, typed_filter
from tablesync.models import Condition, Filter, Kind


def quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def sql(text: str, placeholder: str = "?") -> tuple[str, list[object]]:
    return render_filter(parse_filter(text), quote, placeholder)


def leaf(column: str, op: str, *values: object) -> Filter:
    return Filter(op="cond", cond=Condition(column=column, op=op, values=list(values)))


# --- comparisons -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "op", "rendered"),
    [
        ("a = 1", "=", '"a" = ?'),
        ("a != 1", "!=", '"a" <> ?'),
        ("a <> 1", "!=", '"a" <> ?'),
        ("a < 1", "<", '"a" < ?'),
        ("a <= 1", "<=", '"a" <= ?'),
        ("a > 1", ">", '"a" > ?'),
        ("a >= 1", ">=", '"a" >= ?'),
        ("a=1", "=", '"a" = ?'),
        ("a>=1", ">=", '"a" >= ?'),
        ("  a   =\t1  ", "=", '"a" = ?'),
    ],
)
def test_comparison_operators(text: str, op: str, rendered: str) -> None:
    assert parse_filter(text) == leaf("a", op, 1)
    assert sql(text) == (rendered, [1])


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("a = 42", 42),
        ("a = 0", 0),
        ("a = -7", -7),
        ("a > -5", -5),
        ("a>-5", -5),
        ("a = 1.5", Decimal("1.5")),
        ("a = -0.25", Decimal("-0.25")),
        ("a = 1.50", Decimal("1.50")),
        ("a = 1e3", Decimal("1E+3")),
        ("a = 2.5E-2", Decimal("0.025")),
        ("a = 123456789012345678901234567890", 123456789012345678901234567890),
        ("a = 'x'", "x"),
        ("a = ''", ""),
        ("a = 'it''s'", "it's"),
        ("a = ''''", "'"),
        ("a = 'two words'", "two words"),
        ("a = 'line\nbreak'", "line\nbreak"),
        ("a = 'é 中 😀'", "é 中 😀"),
        ("a = '\"dq\" `bq`'", '"dq" `bq`'),
        ("a = 'AND OR NOT'", "AND OR NOT"),
        ("a = TRUE", True),
        ("a = FALSE", False),
        ("a = true", True),
        ("a = False", False),
    ],
)
def test_literals(text: str, value: object) -> None:
    node = parse_filter(text)
    assert node.op == "cond" and node.cond is not None
    (got,) = node.cond.values
    assert got == value
    assert type(got) is type(value)
    rendered, params = sql(text)
    assert rendered == f'"a" {node.cond.op} ?'
    assert params == [value]


def test_decimal_keeps_its_exact_digits() -> None:
    (value,) = parse_filter("price = 0.1").cond.values  # type: ignore[union-attr]
    assert value == Decimal("0.1")
    assert isinstance(value, Decimal)


# --- AND / OR / NOT and parentheses ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "rendered", "params"),
    [
        ("a = 1 AND b = 2", '("a" = ?) AND ("b" = ?)', [1, 2]),
        ("a = 1 OR b = 2", '("a" = ?) OR ("b" = ?)', [1, 2]),
        ("a = 1 and b = 2 or c = 3", '(("a" = ?) AND ("b" = ?)) OR ("c" = ?)', [1, 2, 3]),
        ("a = 1 OR b = 2 AND c = 3", '("a" = ?) OR (("b" = ?) AND ("c" = ?))', [1, 2, 3]),
        ("(a = 1 OR b = 2) AND c = 3", '(("a" = ?) OR ("b" = ?)) AND ("c" = ?)', [1, 2, 3]),
        ("a = 1 AND (b = 2 OR c = 3)", '("a" = ?) AND (("b" = ?) OR ("c" = ?))', [1, 2, 3]),
        ("a = 1 AND b = 2 AND c = 3", '("a" = ?) AND ("b" = ?) AND ("c" = ?)', [1, 2, 3]),
        ("a = 1 OR b = 2 OR c = 3", '("a" = ?) OR ("b" = ?) OR ("c" = ?)', [1, 2, 3]),
        ("NOT a = 1", 'NOT ("a" = ?)', [1]),
        ("not a = 1", 'NOT ("a" = ?)', [1]),
        ("NOT a = 1 AND b = 2", '(NOT ("a" = ?)) AND ("b" = ?)', [1, 2]),
        ("NOT a = 1 OR b = 2", '(NOT ("a" = ?)) OR ("b" = ?)', [1, 2]),
        ("NOT (a = 1 AND b = 2)", 'NOT (("a" = ?) AND ("b" = ?))', [1, 2]),
        ("NOT NOT a = 1", 'NOT (NOT ("a" = ?))', [1]),
        ("((a = 1))", '"a" = ?', [1]),
        ("(((a = 1) OR (b = 2)))", '("a" = ?) OR ("b" = ?)', [1, 2]),
        ("a = 1\nAND\tb = 2", '("a" = ?) AND ("b" = ?)', [1, 2]),
        (
            "(a = 1 OR NOT (b = 2 AND c = 3)) AND d = 4",
            '(("a" = ?) OR (NOT (("b" = ?) AND ("c" = ?)))) AND ("d" = ?)',
            [1, 2, 3, 4],
        ),
    ],
)
def test_boolean_precedence(text: str, rendered: str, params: list[object]) -> None:
    assert sql(text) == (rendered, params)


def test_and_binds_tighter_than_or_in_the_tree() -> None:
    assert parse_filter("a = 1 OR b = 2 AND c = 3") == Filter(
        op="or", items=[leaf("a", "=", 1), Filter(op="and", items=[leaf("b", "=", 2), leaf("c", "=", 3)])]
    )
    assert parse_filter("NOT a = 1 AND b = 2") == Filter(
        op="and", items=[Filter(op="not", items=[leaf("a", "=", 1)]), leaf("b", "=", 2)]
    )


# --- IN, IS NULL, BETWEEN --------------------------------------------------------------------


def test_in_and_not_in() -> None:
    assert parse_filter("a IN (1, 'x', -2.5, TRUE)") == leaf("a", "in", 1, "x", Decimal("-2.5"), True)
    assert sql("a IN (1, 'x', -2.5, TRUE)") == ('"a" IN (?, ?, ?, ?)', [1, "x", Decimal("-2.5"), True])
    assert sql("a in (7)") == ('"a" IN (?)', [7])
    assert parse_filter("a NOT IN ('p', 'q')") == leaf("a", "not_in", "p", "q")
    assert sql("a not in ('p','q')") == ('"a" NOT IN (?, ?)', ["p", "q"])


def test_is_null_and_is_not_null() -> None:
    assert parse_filter("a IS NULL") == leaf("a", "is_null")
    assert parse_filter("a is not null") == leaf("a", "is_not_null")
    assert sql("a IS NULL") == ('"a" IS NULL', [])
    assert sql("a IS NOT NULL") == ('"a" IS NOT NULL', [])
    assert sql("a IS NULL OR b IS NOT NULL") == ('("a" IS NULL) OR ("b" IS NOT NULL)', [])


def test_between_is_inclusive_and_binds_its_own_and() -> None:
    assert parse_filter("a BETWEEN 1 AND 5") == Filter(op="and", items=[leaf("a", ">=", 1), leaf("a", "<=", 5)])
    assert sql("a BETWEEN 1 AND 5") == ('("a" >= ?) AND ("a" <= ?)', [1, 5])
    assert sql("a between 'k' and 'm' AND b = 2") == ('(("a" >= ?) AND ("a" <= ?)) AND ("b" = ?)', ["k", "m", 2])
    assert sql("a BETWEEN -1.5 AND 2 OR b = 3") == ('(("a" >= ?) AND ("a" <= ?)) OR ("b" = ?)', [Decimal("-1.5"), 2, 3])


# --- identifiers ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "column", "rendered"),
    [
        ('"x y" = 1', "x y", '"x y" = ?'),
        ("`x y` = 1", "x y", '"x y" = ?'),
        ('"a""b" = 1', 'a"b', '"a""b" = ?'),
        ("`a``b` = 1", "a`b", '"a`b" = ?'),
        ('"select" = 1', "select", '"select" = ?'),
        ('"AND" = 1', "AND", '"AND" = ?'),
        ("`in` = 1", "in", '"in" = ?'),
        ('"Mixed Case" = 1', "Mixed Case", '"Mixed Case" = ?'),
        ('"é" = 1', "é", '"é" = ?'),
        ("col_1$x = 1", "col_1$x", '"col_1$x" = ?'),
        ("_private = 1", "_private", '"_private" = ?'),
        ("CamelCase = 1", "CamelCase", '"CamelCase" = ?'),
    ],
)
def test_identifiers(text: str, column: str, rendered: str) -> None:
    assert parse_filter(text) == leaf(column, "=", 1)
    assert sql(text) == (rendered, [1])


def test_identifier_with_injection_is_quoted_by_the_dialect() -> None:
    text = '"a"" OR 1=1 --" = 1'
    assert filter_columns(parse_filter(text)) == ['a" OR 1=1 --']
    assert sql(text) == ('"a"" OR 1=1 --" = ?', [1])


# --- rendering ---------------------------------------------------------------------------------


def test_other_placeholder_and_quote() -> None:
    node = parse_filter("a = 1 AND b IN ('x', 'y') AND c IS NULL")
    rendered = render_filter(node, lambda n: f"`{n}`", "%s")
    assert rendered == ("(`a` = %s) AND (`b` IN (%s, %s)) AND (`c` IS NULL)", [1, "x", "y"])


def test_convert_is_applied_to_every_value() -> None:
    node = parse_filter("a = 1.5 OR b IN (2, 3) OR c BETWEEN 'p' AND 'q'")
    text, params = render_filter(node, quote, "?", convert=lambda column, v: f"<{column}:{v}>")
    assert params == ["<a:1.5>", "<b:2>", "<b:3>", "<c:p>", "<c:q>"]
    assert text == '("a" = ?) OR ("b" IN (?, ?)) OR (("c" >= ?) AND ("c" <= ?))'


@pytest.mark.parametrize(
    "text",
    [
        "name = 'secret'",
        "name = 'x''; DROP TABLE t; --'",
        "name = 'a'' OR ''1''=''1'",
        "amount >= 12345 AND amount < 99.75",
        "name IN ('alpha', 'beta') OR NOT score BETWEEN -3 AND 17",
        "flag = TRUE AND other = FALSE",
        "name NOT IN ('x y', '') AND note IS NOT NULL",
    ],
)
def test_values_never_appear_in_the_sql_text(text: str) -> None:
    rendered, params = sql(text)
    assert params, "every literal becomes a parameter"
    assert "'" not in rendered
    assert not re.search(r"\d", rendered)
    assert "DROP" not in rendered and "--" not in rendered
    for value in params:
        if isinstance(value, str) and value:
            assert value not in rendered
    assert rendered.count("?") == len(params)
    for keyword in ("TRUE", "FALSE"):
        assert keyword not in rendered


def test_string_with_sql_is_a_single_bound_value() -> None:
    assert sql("name = 'x''; DROP TABLE t; --'") == ('"name" = ?', ["x'; DROP TABLE t; --"])
    assert sql("name = 'a'' OR ''1''=''1'") == ('"name" = ?', ["a' OR '1'='1"])


# --- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "id = 1; DROP TABLE t",
        "id = 1;",
        "id = '1' OR 1=1 --",
        "id = 1 OR 1=1",
        "id = 1 -- comment",
        "id = 1 /* comment */",
        "id = 1 UNION SELECT password FROM users",
        "id = (SELECT 1)",
        "name = 'abc",
        "name = abc'",
        "name = 'abc''",
        "'abc = 1",
        '"abc = 1',
        "`abc = 1",
        '"" = 1',
        "(id = 1",
        "((id = 1)",
        "id = 1)",
        "(id = 1))",
        "()",
        "id = 1 AND",
        "AND id = 1",
        "id = 1 OR",
        "id = 1 AND OR id = 2",
        "id =",
        "id",
        "= 1",
        "1 = id",
        "'a' = id",
        "id 1",
        "id == 1",
        "id = other",
        "id = NULL",
        "id != NULL",
        "id IS 1",
        "id IS NOT",
        "id IN ()",
        "id IN (1,)",
        "id IN (1",
        "id IN 1",
        "id IN (other)",
        "id NOT = 1",
        "id NOT BETWEEN 1 AND 2",
        "id BETWEEN 1",
        "id BETWEEN 1 OR 2",
        "id = 'x' 'y'",
        "id = 0x10",
        "id = 1.",
        "id = 1 2",
        "NOT",
        "id = 1 NOT",
        "a = 1\n; DROP TABLE t",
        "a = 'x\ny",
        "a = 1 \\",
        "a = @var",
        "a = ?",
        "a = %s",
        "a = $1",
    ],
)
def test_bad_filters_raise_one_line_input_error(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_filter(text)
    message = str(info.value)
    assert message.startswith("--where")
    assert "\n" not in message and "\r" not in message
    assert len(message) < 200


def test_error_names_the_unreadable_part() -> None:
    with pytest.raises(InputError, match="DROP TABLE"):
        parse_filter("id = 1; DROP TABLE t")


# --- column helpers ----------------------------------------------------------------------------


def test_filter_columns_in_order_with_repeats() -> None:
    node = parse_filter('a = 1 AND (b IS NULL OR NOT c IN (1, 2)) AND d BETWEEN 1 AND 2 OR "e f" != 3')
    assert filter_columns(node) == ["a", "b", "c", "d", "d", "e f"]
    assert filter_columns(parse_filter("x IS NOT NULL")) == ["x"]


def test_rename_columns_keeps_structure_and_values() -> None:
    original = parse_filter("a = 1 AND (b IN ('x', 'y') OR NOT c IS NULL) AND d BETWEEN 2 AND 3")
    before = original.model_dump()
    renamed = rename_columns(original, str.upper)
    assert filter_columns(renamed) == ["A", "B", "C", "D", "D"]
    assert render_filter(renamed, quote, "?") == (
        '("A" = ?) AND (("B" IN (?, ?)) OR (NOT ("C" IS NULL))) AND (("D" >= ?) AND ("D" <= ?))',
        [1, "x", "y", 2, 3],
    )
    assert original.model_dump() == before, "the original tree is not modified"
    assert filter_columns(original) == ["a", "b", "c", "d", "d"]


def test_rename_columns_to_real_names() -> None:
    real = {"id": "ID", "name": "Name"}
    renamed = rename_columns(parse_filter("id > 5 AND name = 'x'"), lambda n: real[n])
    assert render_filter(renamed, quote, "%s") == ('("ID" > %s) AND ("Name" = %s)', [5, "x"])


def test_filter_round_trips_as_json() -> None:
    node = parse_filter("a IN (1, 'x', TRUE) AND NOT b IS NULL OR c BETWEEN -1 AND 2")
    assert Filter.model_validate_json(node.model_dump_json()) == node


# --- literals typed by the source column's kind (docs/normalization.md, "Filters") --------------


def _typed(text: str, **kinds: Kind | None) -> list[Any]:
    node = typed_filter(parse_filter(text), {name: [kind] for name, kind in kinds.items()})
    return render_filter(node, quote, "?")[1]


@pytest.mark.parametrize(
    ("text", "kind", "values"),
    [
        ("c = 5", Kind.TEXT, ["5"]),
        ("c = 'x'", Kind.TEXT, ["x"]),
        ("c = '12345678-9ABC-DEF0-1234-56789ABCDEF0'", Kind.UUID, ["12345678-9abc-def0-1234-56789abcdef0"]),
        ("c = 'not-a-uuid'", Kind.UUID, ["not-a-uuid"]),
        ("c IN (TRUE, 0)", Kind.BOOLEAN, [True, False]),
        ("c = '42'", Kind.INTEGER, [42]),
        ("c = '4.50'", Kind.DECIMAL, [Decimal("4.50")]),
        ("c = TRUE", Kind.INTEGER, [1]),
        ("c < '2024-01-01T02:00:00+02:00'", Kind.TIMESTAMPTZ, ["2024-01-01 00:00:00.000000"]),
        ("c < '2024-01-01'", Kind.TIMESTAMP, ["2024-01-01 00:00:00.000000"]),
        ("c BETWEEN '0044-03-15 BC' AND 'infinity'", Kind.DATE, ["0044-03-15 BC", "infinity"]),
        ("c > '-01:00'", Kind.TIME, ["-01:00:00.000000"]),
    ],
)
def test_literals_take_the_canonical_form_of_the_source_kind(text: str, kind: Kind, values: list[Any]) -> None:
    assert _typed(text, c=kind) == values


@pytest.mark.parametrize(
    ("text", "kind", "needle"),
    [
        ("c = '{}'", Kind.JSON, "IS NULL"),
        ("c = 'ab'", Kind.BYTES, "IS NULL"),
        ("c = 'x'", None, "cannot compare"),
        ("c = 'twelve'", Kind.INTEGER, "not a number"),
        ("c = 2", Kind.BOOLEAN, "boolean"),
        ("c = TRUE", Kind.TEXT, "not a text"),
        ("c = 5", Kind.UUID, "UUID"),
        ("c < 5", Kind.TIMESTAMP, "timestamp"),
        ("c < '2024-13-01'", Kind.DATE, "date"),
    ],
)
def test_literals_a_kind_cannot_take_are_refused(text: str, kind: Kind | None, needle: str) -> None:
    with pytest.raises(InputError, match=needle):
        _typed(text, c=kind)


def test_null_tests_work_on_every_kind() -> None:
    assert _typed("c IS NULL AND d IS NOT NULL", c=Kind.JSON, d=None) == []


def test_a_target_kind_that_cannot_compare_refuses_too() -> None:
    with pytest.raises(InputError, match="JSON or bytes"):
        typed_filter(parse_filter("c = 'x'"), {"c": [Kind.TEXT, Kind.JSON]})


@pytest.mark.parametrize(
    ("literal", "value"), [("5e-324", 5e-324), ("1e+81", 1e81), ("0.1", 0.1), ("'2.5'", 2.5), ("7", 7.0)]
)
def test_double_literals_are_the_nearest_double(literal: str, value: float) -> None:
    """Found by the differential fuzz test: MariaDB read a decimal literal of 5e-324 as 0 and one
    of 1e+81 as 65 nines, selecting other rows than PostgreSQL and SQLite."""
    (got,) = _typed(f"c = {literal}", c=Kind.FLOAT)
    assert isinstance(got, float) and got == value
