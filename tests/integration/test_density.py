"""Whatever the density of differences, from a few to every row, the engine reports exactly the
injected ones: it sizes buckets from the density it sees (small buckets when differences are
dense, every row listed when nearly all differ) and that must never change the answer.

And a composite key whose text column is case-insensitive on MariaDB, holding values the collation
calls equal ('acme', 'ACME', 'acme '), is compared exactly when ranges fix that column."""

from __future__ import annotations

import random
from typing import Any

import pytest
from tablesync.connectors import open_connector
from tablesync.engine import Differ
from tablesync.models import DiffOptions, DiffState

pytestmark = pytest.mark.integration

DDL = {
    "pg": "id integer PRIMARY KEY, qty integer NOT NULL, note text",
    "mysql": "id int PRIMARY KEY, qty int NOT NULL, note text",
    "sqlite": "id INTEGER PRIMARY KEY, qty INTEGER NOT NULL, note TEXT",
}
ROWS = 20_000


def _drift(
    rows: dict[int, tuple[Any, ...]], share: float, seed: int
) -> tuple[dict[int, tuple[Any, ...]], dict[str, set[int]]]:
    rng = random.Random(seed)
    target = dict(rows)
    chosen = rng.sample(sorted(rows), int(len(rows) * share))
    expected: dict[str, set[int]] = {"missing": set(), "extra": set(), "differing": set()}
    for n, key in enumerate(chosen):
        if n % 3 == 0:
            del target[key]
            expected["missing"].add(key)
        elif n % 3 == 1:
            target[key] = (key, rows[key][1] + 1, rows[key][2])
            expected["differing"].add(key)
        else:
            extra = key + ROWS * 2
            target[extra] = (extra, 0, "extra")
            expected["extra"].add(extra)
    return target, expected


def _run(dbs: Any, table: str) -> tuple[DiffState, Differ]:
    differ = Differ(
        table,
        lambda: open_connector(dbs.pg.url),
        [lambda: open_connector(dbs.mysql.url), lambda: open_connector(dbs.sqlite.url)],
        DiffOptions(chunk_size=500),
    )
    return differ.run(differ.initial_state(), step_seconds=0.05), differ


@pytest.mark.parametrize("share", [0.0005, 0.01, 0.2, 1.0])
def test_exact_at_every_density(dbs: Any, table_name: str, share: float) -> None:
    source = {i: (i, i % 97, None if i % 7 == 0 else f"note {i}") for i in range(1, ROWS + 1)}
    dbs.pg.create(table_name, DDL["pg"])
    dbs.pg.insert(table_name, ["id", "qty", "note"], source.values())
    expectations = []
    for seed, db in enumerate((dbs.mysql, dbs.sqlite)):
        target, expected = _drift(source, share, seed)
        db.create(table_name, DDL[db.dialect])
        db.insert(table_name, ["id", "qty", "note"], target.values())
        expectations.append(expected)
    state, differ = _run(dbs, table_name)
    try:
        result = differ.result(state)
    finally:
        differ.close()
    for got, expected in zip(result.targets, expectations, strict=True):
        assert {k[0] for k in got.missing} == expected["missing"]
        assert {k[0] for k in got.extra} == expected["extra"]
        assert {k[0] for k in got.differing} == expected["differing"]
        assert got.rows_compared == ROWS
    if share >= 0.01:
        # Dense differences: buckets shrank below the default (or rows were listed outright).
        assert state.dense or (state.bucket_rows is not None and state.bucket_rows < 50)


CI_DDL = {
    "pg": 'tenant varchar(20) COLLATE "C", n integer, qty integer, PRIMARY KEY (tenant, n)',
    "mysql": "tenant varchar(20), n int, qty int, PRIMARY KEY (tenant, n)",  # utf8mb4_general_ci
}
TWINS = ["ACME", "Acme", "acme", "acme ", "acme  ", "beta", "Beta", "BETA "]


@pytest.mark.parametrize("direction", ["pg-to-mysql", "mysql-to-pg"])
def test_collation_twins_in_a_composite_key(dbs: Any, table_name: str, direction: str) -> None:
    rows = {(t, n): (t, n, n % 13) for i, t in enumerate(TWINS) for n in range(i * 1000, i * 1000 + 400)}
    changed = dict(rows)
    gone = {("acme", 2010), ("acme ", 3399), ("Acme", 1000)}
    differing = {("acme  ", 4100), ("ACME", 5), ("BETA ", 7200)}
    added = {("acme", 2500), ("Beta", 6999)}
    for key in gone:
        del changed[key]
    for key in differing:
        changed[key] = (*key, 99)
    for key in added:
        changed[key] = (*key, 1)
    source_db, target_db = (dbs.pg, dbs.mysql) if direction == "pg-to-mysql" else (dbs.mysql, dbs.pg)
    source_rows, target_rows = (rows, changed) if direction == "pg-to-mysql" else (changed, rows)
    for db, data in ((source_db, source_rows), (target_db, target_rows)):
        db.create(table_name, CI_DDL[db.dialect])
        db.insert(table_name, ["tenant", "n", "qty"], data.values())
    options = DiffOptions(chunk_size=300, bisection_threshold=8, bisection_factor=4)
    with Differ(
        table_name, lambda: open_connector(source_db.url), [lambda: open_connector(target_db.url)], options
    ) as differ:
        result = differ.result(differ.run(differ.initial_state(), step_seconds=0.05))
    got = result.targets[0]
    missing, extra = (gone, added) if direction == "pg-to-mysql" else (added, gone)
    assert {tuple(k) for k in got.missing} == missing
    assert {tuple(k) for k in got.extra} == extra
    assert {tuple(k) for k in got.differing} == differing
    assert got.rows_compared == len(source_rows)
