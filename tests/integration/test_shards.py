"""A table split into key-range shards ([lo, hi) each, the first and last unbounded) gives, shard
results put together, exactly the result of one diff over the whole table: every row is compared
once, in one shard, forward and newest first."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from tablesync.connectors import open_connector
from tablesync.engine import Differ
from tablesync.errors import InputError
from tablesync.models import DiffOptions, DiffResult, Key

pytestmark = pytest.mark.integration

DDL = {
    "pg": "tenant text, n integer, qty integer, PRIMARY KEY (tenant, n)",
    "mysql": "tenant varchar(20), n int, qty int, PRIMARY KEY (tenant, n)",
    "sqlite": "tenant TEXT, n INTEGER, qty INTEGER, PRIMARY KEY (tenant, n)",
}


def _diff(dbs: Any, table: str, options: DiffOptions) -> DiffResult:
    with Differ(
        table,
        lambda: open_connector(dbs.pg.url),
        [lambda: open_connector(dbs.mysql.url), lambda: open_connector(dbs.sqlite.url)],
        options,
    ) as differ:
        return differ.result(differ.run(differ.initial_state(), step_seconds=0.05))


def _keys(result: DiffResult, kind: str) -> list[list[Key]]:
    return [sorted(map(tuple, getattr(t, kind))) for t in result.targets]  # type: ignore[arg-type]


@pytest.mark.parametrize("reverse", [False, True], ids=["forward", "reverse"])
def test_shards_add_up_to_the_whole_table(dbs: Any, table_name: str, reverse: bool) -> None:
    rows = {(t, n): (t, n, n % 11) for t in ("acme", "beta", "zulu") for n in range(1, 601)}
    target = dict(rows)
    for key in [("acme", 1), ("beta", 300), ("beta", 301), ("zulu", 600)]:
        del target[key]
    for key in [("acme", 2), ("beta", 299), ("zulu", 1)]:
        target[key] = (*key, 99)
    target[("aaa", 5)] = ("aaa", 5, 0)  # below every shard bound
    target[("beta", 1000)] = ("beta", 1000, 0)
    target[("zzz", 1)] = ("zzz", 1, 0)  # beyond the source's last key
    dbs.pg.create(table_name, DDL["pg"])
    dbs.pg.insert(table_name, ["tenant", "n", "qty"], rows.values())
    for db in (dbs.mysql, dbs.sqlite):
        db.create(table_name, DDL[db.dialect])
        db.insert(table_name, ["tenant", "n", "qty"], target.values())
    tuning = {"chunk_size": 50, "bisection_threshold": 6, "bisection_factor": 4, "reverse": reverse}
    whole = _diff(dbs, table_name, DiffOptions(**tuning))
    bounds: list[Key | None] = [None, ["acme", 300], ["beta", 300], ["beta", 301], ["zulu", 1], None]
    parts = [_diff(dbs, table_name, DiffOptions(lo=lo, hi=hi, **tuning)) for lo, hi in itertools.pairwise(bounds)]
    assert sum(p.source.rows for p in parts) == whole.source.rows == len(rows)
    for kind in ("missing", "extra", "differing"):
        merged = [sorted(k for p in parts for k in _keys(p, kind)[t]) for t in range(2)]
        assert merged == _keys(whole, kind)
    assert _keys(whole, "extra")[0] == [("aaa", 5), ("beta", 1000), ("zzz", 1)]
    assert all(p.complete for p in parts)


def test_empty_or_inverted_shard_is_refused(dbs: Any, table_name: str) -> None:
    dbs.pg.create(table_name, DDL["pg"])
    with pytest.raises(InputError, match="lower bound"):
        _diff(dbs, table_name, DiffOptions(lo=["b", 1], hi=["a", 1]))
