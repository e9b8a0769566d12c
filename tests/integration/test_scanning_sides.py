"""Text keys whose collation does not order by bytes (MariaDB's *_ci, PostgreSQL's en_US): such a
side scans for byte-order ranges, so the walk takes the whole table in one chunk cut at sampled
keys, PostgreSQL buckets short text keys as `name`, and MariaDB narrows the ranges it lists with a
LIKE on their bounds' common prefix. Each test checks the exact keys found against the rows as the
drivers read them back, on keys made to trip those paths: LIKE's wildcards and tablesync's escape
character, case and accent twins, trailing spaces, long shared prefixes, keys of 64 bytes and more,
characters beyond the BMP."""

from __future__ import annotations

import random
import unicodedata
from typing import Any

import pytest
from test_diff import Diff, diff_json, found

pytestmark = pytest.mark.integration

NARROW = ("--bisection-threshold", "4", "--bisection-factor", "4")
PIECES = ["SKU-", "sku-", "a%", "a_", "a!", "!", "%", "_", "\u00e9", "e\u0301", "E", " ", "Z", "z", "\U0001f600", "0"]


def _fold(text: str) -> str:
    """At least as coarse as the equality of the *_ci collations used here: a MariaDB unique key
    holds one key of each fold."""
    text = "".join(c for c in unicodedata.normalize("NFD", text) if not unicodedata.combining(c))
    return "".join("\U0001f600" if ord(c) > 0xFFFF else c for c in text.casefold().rstrip(" "))


def _keys(count: int, seed: int) -> list[str]:
    """Distinct keys (one per fold) with long shared prefixes, punctuation LIKE treats specially,
    twins that differ by case, accent or trailing space (only one of each fold is kept), and some
    longer than 63 bytes."""
    rng = random.Random(seed)
    keys: dict[str, str] = {}
    while len(keys) < count:
        stem = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3)))
        key = f"{stem}{rng.randint(0, 99999):05d}"
        if rng.random() < 0.05:
            key = "long-" + "x" * rng.randint(55, 70) + key  # 64 bytes and more: not a `name`
        if rng.random() < 0.05:
            key += " "
        keys.setdefault(_fold(key), key)
    return list(keys.values())


def _drift(keys: list[str], seed: int) -> tuple[list[tuple[str, int]], list[tuple[str, int]], Diff]:
    """Source rows, target rows and the expected differences: deleted, changed and extra rows."""
    rng = random.Random(seed)
    source = [(k, i) for i, k in enumerate(keys)]
    extra_keys = [k for k in _keys(len(keys) + 60, seed + 1) if _fold(k) not in {_fold(x) for x in keys}][:40]
    target: list[tuple[str, int]] = []
    expected = Diff(set(), set(), set())
    for key, value in source:
        roll = rng.random()
        if roll < 0.01:
            expected.missing.add((key,))
        elif roll < 0.02:
            target.append((key, value + 1))
            expected.differing.add((key,))
        else:
            target.append((key, value))
    for key in extra_keys:
        target.append((key, -1))
        expected.extra.add((key,))
    return source, target, expected


@pytest.mark.parametrize("collation", ["utf8mb4_general_ci", "utf8mb4_unicode_ci", "utf8mb4_czech_ci"])
@pytest.mark.parametrize("options", [(), NARROW], ids=["default", "narrow"])
def test_a_case_insensitive_mariadb_key_is_exact(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], collation: str, options: tuple[str, ...]
) -> None:
    """Every kind of difference, at every depth of narrowing, on a MariaDB key that scans: the
    Czech collation (its 'ch' is one letter) is narrowed by nothing, the others by LIKE."""
    source, target, expected = _drift(_keys(3000, 7), 8)
    dbs.pg.create(table_name, 'code varchar(120) COLLATE "C" PRIMARY KEY, n int')
    dbs.pg.insert(table_name, ["code", "n"], source)
    dbs.mysql.create(table_name, f"code varchar(120) CHARACTER SET utf8mb4 COLLATE {collation} PRIMARY KEY, n int")
    dbs.mysql.insert(table_name, ["code", "n"], target)
    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, *options)
    assert code == 1
    assert found(result["targets"][0]) == expected
    # And the other way: the MariaDB table as the source (PostgreSQL's index serves the walk).
    code, result = diff_json(capsys, dbs.mysql.url, dbs.pg.url, table_name, *options)
    assert code == 1
    back = found(result["targets"][0])
    assert back == Diff(expected.extra, expected.missing, expected.differing)


@pytest.mark.parametrize("options", [(), NARROW], ids=["default", "narrow"])
def test_both_sides_scanning_is_exact(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str], options: tuple[str, ...]
) -> None:
    """PostgreSQL under a linguistic collation ('B' < 'a' in bytes, not in en_US) and MariaDB
    under utf8mb4_general_ci: neither index serves byte order, so the walk's cuts come from a
    sample of one scanning side."""
    collations = {row[0] for row in dbs.pg.execute("SELECT collname FROM pg_collation")}
    linguistic = next((c for c in ("en_US.utf8", "en_US", "en-US-x-icu", "und-x-icu") if c in collations), None)
    if linguistic is None:
        pytest.fail("no linguistic collation on this PostgreSQL")
    source, target, expected = _drift(_keys(2000, 11), 12)
    dbs.pg.create(table_name, f'code varchar(120) COLLATE "{linguistic}" PRIMARY KEY, n int')
    dbs.pg.insert(table_name, ["code", "n"], source)
    dbs.mysql.create(
        table_name, "code varchar(120) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY, n int"
    )
    dbs.mysql.insert(table_name, ["code", "n"], target)
    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, *options)
    assert code == 1
    assert found(result["targets"][0]) == expected


def test_a_stale_row_estimate_only_costs_rounds(dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The whole-table chunk's cuts come from a sample sized by the walker's row estimate; an
    estimate far below the rows (statistics from when the table was small) leaves few cuts, and
    the differing buckets are cut again: the answer is the same."""
    source, target, expected = _drift(_keys(2500, 21), 22)
    dbs.pg.create(table_name, 'code varchar(120) COLLATE "C" PRIMARY KEY, n int')
    dbs.pg.insert(table_name, ["code", "n"], source[:10])
    dbs.pg.execute(f"ANALYZE {dbs.pg.quote(table_name)}")  # reltuples: 10
    dbs.pg.insert(table_name, ["code", "n"], source[10:])
    dbs.mysql.create(
        table_name, "code varchar(120) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci PRIMARY KEY, n int"
    )
    dbs.mysql.insert(table_name, ["code", "n"], target)
    code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name)
    assert code == 1
    assert found(result["targets"][0]) == expected


def test_composite_keys_with_a_scanning_text_column(
    dbs: Any, table_name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """(tenant varchar under utf8mb4_general_ci, id bigint): ranges within one tenant are index
    ranges; ranges across tenants are narrowed by the tenants' common prefix."""
    rng = random.Random(31)
    tenants = ["acme", "acme-eu", "acme_us", "b%x", "B!y", "zeta", "\u00e9cole", "Zulu"]
    source = [(t, i, i % 7) for t in tenants for i in range(0, 400, 2)]
    target: list[tuple[str, int, int]] = []
    expected = Diff(set(), set(), set())
    for tenant, i, v in source:
        roll = rng.random()
        if roll < 0.02:
            expected.missing.add((tenant, i))
        elif roll < 0.04:
            target.append((tenant, i, v + 1))
            expected.differing.add((tenant, i))
        else:
            target.append((tenant, i, v))
    for tenant in tenants[:4]:
        target.append((tenant, 1001, 0))
        expected.extra.add((tenant, 1001))
    dbs.pg.create(table_name, 'tenant varchar(16) COLLATE "C", id bigint, v int, PRIMARY KEY (tenant, id)')
    dbs.pg.insert(table_name, ["tenant", "id", "v"], source)
    dbs.mysql.create(
        table_name,
        "tenant varchar(16) CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci, id bigint, v int, "
        "PRIMARY KEY (tenant, id)",
    )
    dbs.mysql.insert(table_name, ["tenant", "id", "v"], target)
    for options in [(), NARROW]:
        code, result = diff_json(capsys, dbs.pg.url, dbs.mysql.url, table_name, *options)
        assert code == 1
        assert found(result["targets"][0]) == expected
