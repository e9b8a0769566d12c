"""A SQL table (PostgreSQL, MariaDB, SQLite: the real servers) against a DynamoDB table (moto)
holding the same rows, in both directions: the type mapping of docs/normalization.md, drift of
every kind found exactly, in pages smaller than the table (memory flat in its size)."""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from moto import mock_aws
from test_diff import assert_clean_error, diff_json, run_cli

pytestmark = pytest.mark.integration
DYNAMO = "dynamodb://us-east-1"

DDL = {
    "pg": "id bigint PRIMARY KEY, name text, amount numeric(12,3), ratio double precision, active boolean, "
    "raw bytea, doc jsonb, seen timestamp, note text",
    "mysql": "id bigint PRIMARY KEY, name text, amount decimal(12,3), ratio double, active tinyint(1), "
    "raw varbinary(32), doc json, seen datetime(6), note text",
    "sqlite": "id INTEGER PRIMARY KEY, name TEXT, amount DECIMAL(12,3), ratio DOUBLE, active BOOLEAN, "
    "raw BLOB, doc JSON, seen DATETIME, note TEXT",
}
COLUMNS = ["id", "name", "amount", "ratio", "active", "raw", "doc", "seen", "note"]
BASE = dt.datetime(2026, 1, 2, 3, 4, 5, 123456)


def _row(i: int) -> tuple[Any, ...]:
    doc = {"n": i, "tags": ["a", f"t{i}"], "deep": {"x": 1.5}}
    note = None if i % 4 == 0 else ("" if i % 4 == 1 else f"note {i}")
    return (i, f"name-{i}", Decimal(i * 37).scaleb(-3), i / 8, i % 2 == 0, bytes([i % 256, 7]), doc, BASE, note)


def _item(row: tuple[Any, ...]) -> dict[str, Any]:
    """The DynamoDB item a document SDK writes for the row (NULL: the attribute left out)."""
    i, name, amount, ratio, active, raw, doc, seen, note = row

    def value(v: Any) -> dict[str, Any]:
        if isinstance(v, dict):
            return {"M": {k: value(x) for k, x in v.items()}}
        if isinstance(v, list):
            return {"L": [value(x) for x in v]}
        if isinstance(v, bool):
            return {"BOOL": v}
        if isinstance(v, int | float | Decimal):
            return {"N": str(v)}
        return {"S": v}

    item = {
        "id": {"N": str(i)},
        "name": {"S": name},
        "amount": {"N": str(amount)},
        "ratio": {"N": repr(ratio)},
        "active": {"BOOL": active},
        "raw": {"B": raw},
        "doc": value(doc),
        "seen": {"S": seen.strftime("%Y-%m-%d %H:%M:%S.%f")},
    }
    if note is not None:
        item["note"] = {"S": note}
    return item


@pytest.fixture
def dynamo() -> Iterator[Any]:
    os.environ.update({"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"})
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        yield client


def _load(dbs: Any, engine: str, table: str, dynamo: Any, sql_rows: list[tuple[Any, ...]], items: list[dict]) -> str:
    db = dbs[engine]
    db.create(table, DDL[engine])
    converted = [tuple(json.dumps(v) if isinstance(v, dict) else v for v in row) for row in sql_rows]
    db.insert(table, COLUMNS, converted)
    dynamo.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    for item in items:
        dynamo.put_item(TableName=table, Item=item)
    return db.url


def _drifted() -> tuple[list[tuple[Any, ...]], list[dict[str, Any]], dict[str, set[int]]]:
    rows = [_row(i) for i in range(1, 121)]
    items = [_item(r) for r in rows]
    by_id = {int(i["id"]["N"]): i for i in items}
    by_id[5]["amount"] = {"N": "0.186"}  # was 0.185
    by_id[6]["doc"]["M"]["tags"]["L"].reverse()  # lists are ordered
    by_id[7]["note"] = {"NULL": True}  # NULL is not an empty string
    by_id[8]["note"] = {"S": ""}  # an empty string is not NULL (absent)
    by_id[9]["extra"] = {"S": "only in DynamoDB"}
    by_id[10]["amount"] = {"N": "0.3700"}  # 0.370: the same number
    by_id[11]["ratio"] = {"N": "1.3750"}  # 11/8: the same number
    del by_id[12]
    by_id[500] = _item(_row(500))
    return rows, list(by_id.values()), {"missing": {12}, "extra": {500}, "differing": {5, 6, 7, 8, 9}}


def _keys(result: dict[str, Any]) -> dict[str, set[int]]:
    target = result["targets"][0]
    return {kind: {k[0] for k in target[kind]} for kind in ("missing", "extra", "differing")}


@pytest.mark.parametrize("engine", ["pg", "mysql", "sqlite"])
def test_sql_against_dynamodb_both_ways(
    dbs: Any, table_name: str, dynamo: Any, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    rows, items, expected = _drifted()
    url = _load(dbs, engine, table_name, dynamo, rows, items)
    code, result = diff_json(capsys, url, DYNAMO, table_name, "--chunk-size", "16", "--segments", "3")
    assert code == 1 and _keys(result) == expected
    assert result["source"]["rows"] == len(rows)
    flipped = {"missing": expected["extra"], "extra": expected["missing"], "differing": expected["differing"]}
    code, result = diff_json(capsys, DYNAMO, url, table_name, "--chunk-size", "16")
    assert code == 1 and _keys(result) == flipped


def test_identical_copies_are_identical(
    dbs: Any, table_name: str, dynamo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [_row(i) for i in range(1, 60)]
    url = _load(dbs, "pg", table_name, dynamo, rows, [_item(r) for r in rows])
    code, result = diff_json(capsys, url, DYNAMO, table_name, "--chunk-size", "7", "--sample", "3")
    assert code == 0 and _keys(result) == {"missing": set(), "extra": set(), "differing": set()}


def test_a_differing_row_shows_its_attributes(
    dbs: Any, table_name: str, dynamo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    rows, items, _ = _drifted()
    url = _load(dbs, "pg", table_name, dynamo, rows, items)
    _, result = diff_json(capsys, url, DYNAMO, table_name, "--sample", "20", "--skip-extra")
    samples = {s["key"][0]: s["columns"] for s in result["targets"][0]["samples"]}
    assert samples[5] == {"amount": {"source": '{"N":"0.185"}', "target": '{"N":"0.186"}'}}
    assert samples[9] == {"extra": {"source": "(absent)", "target": '{"S":"only in DynamoDB"}'}}


def test_the_keys_must_match(dbs: Any, table_name: str, dynamo: Any, capsys: pytest.CaptureFixture[str]) -> None:
    dbs.pg.create(table_name, "code text PRIMARY KEY, v int")
    dynamo.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )
    assert_clean_error(run_cli(capsys, dbs.pg.url, DYNAMO, "--table", table_name), "primary key", "DynamoDB key")
    run = run_cli(capsys, dbs.pg.url, DYNAMO, "--table", table_name, "--write-missing")
    assert_clean_error(run, "primary key", "DynamoDB key")


REPAIR = ("--write-missing", "--write-differing", "--delete-extra")


@pytest.mark.parametrize("engine", ["pg", "mysql", "sqlite"])
def test_a_dynamodb_copy_of_a_sql_table_is_repaired(
    dbs: Any, table_name: str, dynamo: Any, engine: str, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    """SQL source, DynamoDB target: each row written as the item a document SDK writes for it
    (numbers exact), conditionally; then the copy is identical and every write audited."""
    rows, items, expected = _drifted()
    url = _load(dbs, engine, table_name, dynamo, rows, items)
    audit = tmp_path / "audit.jsonl"
    code, result = diff_json(capsys, url, DYNAMO, table_name, *REPAIR, "--audit-file", str(audit))
    assert code == 0 and _keys(result) == expected  # 0: no difference is left
    repair = result["repairs"][0]
    assert (repair["inserted"], repair["updated"], repair["deleted"], repair["failed"]) == (1, 5, 1, [])
    assert len(audit.read_text().splitlines()) == 7
    code, result = diff_json(capsys, url, DYNAMO, table_name)
    assert code == 0, result
    held = dynamo.get_item(TableName=table_name, Key={"id": {"N": "5"}}, ConsistentRead=True)["Item"]
    assert (
        held["amount"] == {"N": "0.185"}
        and "extra" not in dynamo.get_item(TableName=table_name, Key={"id": {"N": "9"}}, ConsistentRead=True)["Item"]
    )


@pytest.mark.parametrize("engine", ["pg", "mysql", "sqlite"])
def test_a_sql_copy_of_a_dynamodb_table_is_repaired(
    dbs: Any, table_name: str, dynamo: Any, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """DynamoDB source, SQL target: each item written as the row that holds its values, through
    the SQL repair (locked, read, written). An item the columns cannot hold exactly (a NULL
    attribute, an attribute with no column, 1.5 for an integer) is refused with the reason, and
    the others are written."""
    rows, items, expected = _drifted()
    url = _load(dbs, engine, table_name, dynamo, rows, items)
    code, result = diff_json(capsys, DYNAMO, url, table_name, *REPAIR)
    flipped = {"missing": expected["extra"], "extra": expected["missing"], "differing": expected["differing"]}
    assert code == 1 and _keys(result) == flipped  # 1: some are left
    repair = result["repairs"][0]
    refused = {f["key"][0]: f["reason"] for f in repair["failed"]}
    assert set(refused) == {7, 9}, json.dumps(repair)  # a NULL attribute; an attribute the table has no column for
    assert "note" in refused[7] and "extra" in refused[9] and "no column" in refused[9]
    assert (repair["inserted"], repair["updated"], repair["deleted"]) == (1, 3, 1)
    code, result = diff_json(capsys, DYNAMO, url, table_name)
    assert code == 1 and _keys(result) == {"missing": set(), "extra": set(), "differing": {7, 9}}
    db = dbs[engine]
    (amount,) = db.execute(f"SELECT amount FROM {db.quote(table_name)} WHERE id = 5")[0]
    assert Decimal(str(amount)) == Decimal("0.186")


def test_recheck_after_reads_both_sides_again(
    dbs: Any, table_name: str, dynamo: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tablesync import cli_repair

    rows, items, expected = _drifted()
    url = _load(dbs, "pg", table_name, dynamo, rows, items)

    def replication_catches_up(seconds: float) -> None:
        dynamo.put_item(TableName=table_name, Item=_item(_row(12)))  # the missing row arrives

    monkeypatch.setattr(cli_repair.time, "sleep", replication_catches_up)
    code, result = diff_json(capsys, url, DYNAMO, table_name, "--recheck-after", "3")
    assert code == 1 and _keys(result) == {**expected, "missing": set()}


def test_a_repair_from_dynamodb_leaves_out_ignored_attributes_and_refuses_keys_sql_cannot_hold(
    dbs: Any, table_name: str, dynamo: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """--ignore: an item's ignored attribute (a ttl, a version) is not carried to the SQL row, so
    the item is repaired like any other; a key the table's key column cannot hold (1.5 for a
    bigint) is refused, not counted in sync."""
    rows, items, _ = _drifted()
    url = _load(dbs, "pg", table_name, dynamo, rows, items)
    dynamo.put_item(TableName=table_name, Item={**_item(_row(2)), "id": {"N": "1.5"}})
    code, result = diff_json(capsys, DYNAMO, url, table_name, *REPAIR, "--ignore", "extra")
    repair = result["repairs"][0]
    refused = {str(f["key"][0]): f["reason"] for f in repair["failed"]}
    assert set(refused) == {"7", "1.5"}, refused  # a NULL attribute; a key no bigint holds
    assert "cannot hold this key" in refused["1.5"]
    code, result = diff_json(capsys, DYNAMO, url, table_name, "--ignore", "extra")
    assert code == 1 and _keys(result)["differing"] == {7}
