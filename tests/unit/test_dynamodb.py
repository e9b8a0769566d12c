"""DynamoDB tables compared on moto: exact rules, parallel segments, resume, throttling.

Ground truth comes from an oracle written apart from the code under test: boto3's own
TypeDeserializer (numbers as Decimal, sets as sets) with every value tagged by its DynamoDB type."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import boto3
import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import ClientError
from moto import mock_aws
from tablesync.cli import main
from tablesync.dynamodb.client import ReadBudget
from tablesync.dynamodb.connector import DynamoConnector
from tablesync.dynamodb.values import canonical_number
from tablesync.engine import Differ, scan_lookup
from tablesync.errors import InputError
from tablesync.models import DiffOptions, DiffState
from tablesync.urls import parse_url

SOURCE, TARGET = "dynamodb://us-east-1", "dynamodb://us-west-2"
TABLE = "orders"


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_SESSION_TOKEN": "testing"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    with mock_aws():
        clients = {r: boto3.client("dynamodb", region_name=r) for r in ("us-east-1", "us-west-2", "eu-west-1")}
        yield clients
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _create(client: Any, table: str = TABLE, sort: str | None = "N") -> None:
    schema = [{"AttributeName": "pk", "KeyType": "HASH"}]
    attrs = [{"AttributeName": "pk", "AttributeType": "S"}]
    if sort:
        schema.append({"AttributeName": "sk", "KeyType": "RANGE"})
        attrs.append({"AttributeName": "sk", "AttributeType": sort})
    client.create_table(TableName=table, KeySchema=schema, AttributeDefinitions=attrs, BillingMode="PAY_PER_REQUEST")


def _put(client: Any, items: list[dict[str, Any]], table: str = TABLE) -> None:
    for item in items:
        client.put_item(TableName=table, Item=item)


def _tagged(value: dict[str, Any]) -> Any:
    ((kind, inner),) = value.items()
    if kind == "L":
        return ("L", tuple(_tagged(v) for v in inner))
    if kind == "M":
        return ("M", tuple(sorted((k, _tagged(v)) for k, v in inner.items())))
    plain = TypeDeserializer().deserialize(value)
    if kind in ("SS", "NS", "BS"):
        return (kind, frozenset(bytes(v) if kind == "BS" else v for v in plain))
    return (kind, bytes(plain) if kind == "B" else plain)


def _oracle(source: list[dict[str, Any]], target: list[dict[str, Any]], ignore: set[str] = frozenset()) -> dict:
    def key(item: dict[str, Any]) -> tuple[Any, ...]:
        return (item["pk"]["S"], int(Decimal(item["sk"]["N"])))

    def body(item: dict[str, Any]) -> dict[str, Any]:
        return {k: _tagged(v) for k, v in item.items() if k not in ignore and not k.startswith("aws:rep:")}

    src, tgt = {key(i): body(i) for i in source}, {key(i): body(i) for i in target}
    return {
        "missing": sorted(list(k) for k in src.keys() - tgt.keys()),
        "extra": sorted(list(k) for k in tgt.keys() - src.keys()),
        "differing": sorted(list(k) for k in src.keys() & tgt.keys() if src[k] != tgt[k]),
    }


def _item(pk: str, sk: int, **attrs: dict[str, Any]) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": str(sk)}, **attrs}


# Pairs of (source, target) attribute values: equal in DynamoDB's meaning, or not.
SAME = [
    ({"N": "1"}, {"N": "1.0"}),
    ({"N": "1.50"}, {"N": "15E-1"}),
    ({"N": "-0"}, {"N": "0"}),
    ({"SS": ["a", "b", "c"]}, {"SS": ["c", "a", "b"]}),
    ({"NS": ["1", "2.0"]}, {"NS": ["2", "1.00"]}),
    ({"M": {"a": {"N": "1"}, "b": {"S": "x"}}}, {"M": {"b": {"S": "x"}, "a": {"N": "1.0"}}}),
    ({"B": b"\x00\x01"}, {"B": b"\x00\x01"}),
]
DIFFERENT = [
    ({"N": "9007199254740993"}, {"N": "9007199254740992"}),  # 2^53 + 1 vs 2^53: equal as doubles
    ({"N": "1"}, {"N": "1.0000000000000000000000000000000000001"}),  # 38 digits
    ({"L": [{"S": "a"}, {"S": "b"}]}, {"L": [{"S": "b"}, {"S": "a"}]}),  # lists are ordered
    ({"NULL": True}, {"S": ""}),  # NULL vs empty string
    ({"S": ""}, None),  # empty string vs absent
    ({"NULL": True}, None),  # NULL vs absent
    ({"BOOL": True}, {"N": "1"}),
    ({"B": b"\x00\x01"}, {"B": b"\x00\x02"}),
    ({"M": {"a": {"M": {"b": {"L": [{"N": "1"}]}}}}}, {"M": {"a": {"M": {"b": {"L": [{"N": "2"}]}}}}}),
    ({"SS": ["a"]}, {"S": "a"}),
]


def _drifted() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    source, target = [], []
    for i, (a, b) in enumerate(SAME):
        source.append(_item("same", i, v=a))
        target.append(_item("same", i, v=b))
    for i, (a, b) in enumerate(DIFFERENT):
        source.append(_item("diff", i, v=a))
        target.append(_item("diff", i, v=b) if b is not None else _item("diff", i))
    for i in range(60):
        body = {"qty": {"N": str(i)}, "tags": {"SS": ["x", f"t{i}"]}, "doc": {"M": {"n": {"N": f"{i}.5"}}}}
        source.append(_item(f"c{i % 7}", 100 + i, **body))
        if i % 10 == 3:
            continue  # missing on the target
        if i % 10 == 4:
            body = {**body, "qty": {"N": str(i + 1)}}
        target.append(_item(f"c{i % 7}", 100 + i, **body))
    target += [_item("extra", 1), _item("extra", 2, v={"S": "x"})]
    return source, target


def _diff(options: DiffOptions | None = None, targets: tuple[str, ...] = (TARGET,), **kw: Any) -> Any:
    with Differ(
        TABLE,
        lambda: DynamoConnector(parse_url(SOURCE), **kw),
        [lambda u=u: DynamoConnector(parse_url(u), **kw) for u in targets],
        options or DiffOptions(),
    ) as differ:
        return differ.result(differ.run(step_seconds=0.01))


def _loaded(aws: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    source, target = _drifted()
    _create(aws["us-east-1"])
    _create(aws["us-west-2"])
    _put(aws["us-east-1"], source)
    _put(aws["us-west-2"], target)
    return source, target


def _found(result: Any, t: int = 0) -> dict[str, list[Any]]:
    target = result.targets[t]
    return {"missing": sorted(target.missing), "extra": sorted(target.extra), "differing": sorted(target.differing)}


def test_every_rule_of_equality_matches_the_oracle(aws: dict[str, Any]) -> None:
    source, target = _loaded(aws)
    result = _diff(DiffOptions(page_items=7))
    expected = _oracle(source, target)
    assert _found(result) == expected
    # The oracle agrees with the table of cases: every DIFFERENT pair differs, no SAME pair does.
    assert all(["diff", i] in expected["differing"] for i in range(len(DIFFERENT)))
    assert not any(k[0] == "same" for kind in expected.values() for k in kind)
    assert result.source.rows == len(source) and result.targets[0].rows_compared == len(source)
    assert result.complete


@pytest.mark.parametrize("segments", [1, 4, 8])
def test_parallel_segments_give_the_same_answer(aws: dict[str, Any], segments: int) -> None:
    source, target = _drifted()
    for region, items in (("us-east-1", source), ("us-west-2", target), ("eu-west-1", source[5:])):
        _create(aws[region])
        _put(aws[region], items)
    result = _diff(DiffOptions(segments=segments, threads=2, page_items=5), (TARGET, "dynamodb://eu-west-1"))
    assert _found(result, 0) == _oracle(source, target)
    assert _found(result, 1) == _oracle(source, source[5:])
    assert result.source.rows == len(source)


def test_ignored_and_replication_attributes_are_left_out(aws: dict[str, Any]) -> None:
    source = [_item("a", 1, seen={"N": "1"}, **{"aws:rep:updatetime": {"N": "1"}}), _item("a", 2, v={"S": "x"})]
    target = [_item("a", 1, seen={"N": "2"}, **{"aws:rep:updatetime": {"N": "2"}}), _item("a", 2, v={"S": "y"})]
    _create(aws["us-east-1"])
    _create(aws["us-west-2"])
    _put(aws["us-east-1"], source)
    _put(aws["us-west-2"], target)
    result = _diff(DiffOptions(ignore=["seen"]))
    assert _found(result) == _oracle(source, target, {"seen"}) == {"missing": [], "extra": [], "differing": [["a", 2]]}


def test_skip_extra_saves_the_target_scans(aws: dict[str, Any]) -> None:
    source, target = _loaded(aws)
    found = _found(_diff(DiffOptions(skip_extra=True)))
    expected = _oracle(source, target)
    assert found == {**expected, "extra": []}


@pytest.mark.parametrize("room", [2.0, 0.25], ids=["keys-wait", "keys-looked-up"])
def test_a_run_resumed_from_any_saved_state_counts_every_item_once(
    aws: dict[str, Any], room: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Resumed from every state a run saved on its way (unpaired keys included), with room for
    keys to wait until they pair, and with so little that most are looked up."""
    monkeypatch.setattr(scan_lookup, "UNPAIRED_PAGES", room)
    source, target = _loaded(aws)
    options = DiffOptions(segments=3, page_items=4)
    saved: list[str] = []

    def differ() -> Differ:
        return Differ(
            TABLE, lambda: DynamoConnector(parse_url(SOURCE)), [lambda: DynamoConnector(parse_url(TARGET))], options
        )

    with differ() as first:
        state = first.initial_state()
        while not state.done:  # every round saved as JSON, as the CLI and the app save them
            state = first.step(state, 0.0)
            saved.append(state.model_dump_json())
        assert _found(first.result(state)) == _oracle(source, target)
    assert len(saved) > 5
    assert any(json.loads(s)["scan"]["unpaired"][0]["source"] for s in saved)  # keys did wait
    for at in range(0, len(saved) - 1, 2):  # the process "dies" after that save
        with differ() as second:
            resumed = DiffState.model_validate_json(saved[at])
            result = second.result(second.run(resumed, step_seconds=0.0))
        assert _found(result) == _oracle(source, target), at
        assert result.source.rows == len(source), at  # no item counted twice, none skipped
    assert [len(side) for side in json.loads(saved[0])["scan"]["sides"]] == [3, 3]  # the source, the target


class CountingClient:
    """A real (moto) client that counts the keys looked up; with mirror_segments, its parallel
    scan returns segment n-1-i's items when asked for segment i."""

    def __init__(self, inner: Any, mirror_segments: bool = False) -> None:
        self.inner = inner
        self.mirror_segments = mirror_segments
        self.looked_up = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def scan(self, **request: Any) -> Any:
        if self.mirror_segments and "Segment" in request:
            request = {**request, "Segment": request["TotalSegments"] - 1 - request["Segment"]}
        return self.inner.scan(**request)

    def batch_get_item(self, **request: Any) -> Any:
        ((_, wanted),) = request["RequestItems"].items()
        self.looked_up += len(wanted["Keys"])
        return self.inner.batch_get_item(**request)


def _counted_diff(aws: dict[str, Any], options: DiffOptions, mirror: bool = False) -> tuple[Any, int]:
    clients = {
        SOURCE: CountingClient(aws["us-east-1"]),
        TARGET: CountingClient(aws["us-west-2"], mirror_segments=mirror),
    }
    with Differ(
        TABLE,
        lambda: DynamoConnector(parse_url(SOURCE), client=clients[SOURCE]),
        [lambda: DynamoConnector(parse_url(TARGET), client=clients[TARGET])],
        options,
    ) as differ:
        result = differ.result(differ.run(step_seconds=0.01))
    return result, sum(c.looked_up for c in clients.values())


@pytest.mark.parametrize(("segments", "mirror"), [(1, False), (3, False), (4, True)])
def test_scans_in_the_same_order_are_paired_without_lookups(aws: dict[str, Any], segments: int, mirror: bool) -> None:
    """Two tables whose scans come back in the same order are each read once: only the keys one
    side lacks are looked up on the other (to tell them from keys still to come). Keys pair
    across segments too (mirror: the target's segments are the source's in reverse)."""
    source, target = _loaded(aws)
    result, looked_up = _counted_diff(aws, DiffOptions(segments=segments, page_items=6), mirror)
    expected = _oracle(source, target)
    assert _found(result) == expected
    assert looked_up <= len(expected["missing"]) + len(expected["extra"])


def test_keys_with_no_room_to_wait_are_looked_up(aws: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Where keys cannot wait for their partner (a SQL table walked in key order against
    DynamoDB's hash order fills the room at once), they are looked up by key: the same answer."""
    monkeypatch.setattr(scan_lookup, "UNPAIRED_PAGES", 0)
    source, target = _loaded(aws)
    result, looked_up = _counted_diff(aws, DiffOptions(segments=4, page_items=3), mirror=True)
    assert _found(result) == _oracle(source, target)
    assert result.source.rows == len(source)
    # Keys met in the same round still pair; all the others were looked up on the other side.
    assert looked_up > (len(source) + len(target)) // 4


class ThrottlingClient:
    """A real (moto) client that throttles every third call and leaves keys unprocessed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.throttled = 0
        self.unprocessed = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _maybe_throttle(self, operation: str) -> None:
        self.calls += 1
        if self.calls % 3 == 0:
            self.throttled += 1
            error = {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}
            raise ClientError(error, operation)

    def scan(self, **request: Any) -> Any:
        self._maybe_throttle("Scan")
        return self.inner.scan(**request)

    def batch_get_item(self, **request: Any) -> Any:
        self._maybe_throttle("BatchGetItem")
        ((table, wanted),) = request["RequestItems"].items()
        keys = wanted["Keys"]
        if len(keys) > 1:
            # Half the keys come back unprocessed, as DynamoDB does under load.
            half = len(keys) // 2
            self.unprocessed += len(keys) - half
            answer = self.inner.batch_get_item(RequestItems={table: {**wanted, "Keys": keys[:half]}})
            answer["UnprocessedKeys"] = {table: {**wanted, "Keys": keys[half:]}}
            return answer
        return self.inner.batch_get_item(**request)


def test_throttling_and_unprocessed_keys_still_give_the_exact_answer(aws: dict[str, Any]) -> None:
    source, target = _loaded(aws)
    clients: list[ThrottlingClient] = []

    def connector(url: str) -> DynamoConnector:
        region = parse_url(url).region
        clients.append(ThrottlingClient(boto3.client("dynamodb", region_name=region)))
        return DynamoConnector(parse_url(url), client=clients[-1], sleep=lambda s: None)

    with Differ(TABLE, lambda: connector(SOURCE), [lambda: connector(TARGET)], DiffOptions(page_items=9)) as differ:
        result = differ.result(differ.run(step_seconds=0.01))
    assert _found(result) == _oracle(source, target)
    assert sum(c.throttled for c in clients) > 0 and sum(c.unprocessed for c in clients) > 0


def test_samples_show_the_differing_attributes(aws: dict[str, Any]) -> None:
    _create(aws["us-east-1"])
    _create(aws["us-west-2"])
    _put(aws["us-east-1"], [_item("a", 1, qty={"N": "1.0"}, note={"S": "x"}, big={"N": "9007199254740993"})])
    _put(aws["us-west-2"], [_item("a", 1, qty={"N": "1"}, big={"N": "9007199254740992"})])
    sample = _diff(DiffOptions(sample=5)).targets[0].samples[0]
    assert sample.kind == "differing"
    assert sample.columns == {
        "big": {"source": '{"N":"9007199254740993"}', "target": '{"N":"9007199254740992"}'},
        "note": {"source": '{"S":"x"}', "target": "(absent)"},
    }


def test_key_schemas_must_match(aws: dict[str, Any]) -> None:
    _create(aws["us-east-1"])
    _create(aws["us-west-2"], sort="S")
    with pytest.raises(Exception, match="key schemas must match"):
        _diff()


def test_the_cli_diffs_two_regions(aws: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    source, target = _loaded(aws)
    status = main(["diff", "--table", TABLE, SOURCE, TARGET, "--format", "json", "--segments", "2", "--no-progress"])
    out = json.loads(capsys.readouterr().out)
    assert status == 1
    expected = _oracle(source, target)
    assert {k: sorted(out["targets"][0][k]) for k in expected} == expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--where", "qty > 1"], "--where is not available for DynamoDB tables"),
        (["--write-missing", "--recheck-after", "-1"], "--recheck-after"),
        (["--segments", "0"], "--segments"),
        (["--rate-limit", "-1"], "--rate-limit"),
    ],
)
def test_bad_input_is_one_line_and_status_2(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    _create(aws["us-east-1"])
    _create(aws["us-west-2"])
    status = main(["diff", "--table", TABLE, SOURCE, TARGET, "--no-progress", *args])
    err = capsys.readouterr().err
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("dynamodb://", "names its region"),
        ("dynamodb://us-east-1?endpoint=ftp://x", "endpoint must be"),
        ("dynamodb://us-east-1?role_arn=arn:aws:iam::12:role/x", "role_arn must be"),
        ("dynamodb://us-east-1?table=x", "unknown URL option"),
    ],
)
def test_bad_urls(url: str, error: str) -> None:
    with pytest.raises(InputError, match=error):
        parse_url(url)


def test_url_options_and_redaction() -> None:
    url = parse_url(
        "dynamodb://eu-west-1?role_arn=arn:aws:iam::123456789012:role/checker&endpoint=http://127.0.0.1:4566"
    )
    assert (url.region, url.role_arn, url.endpoint) == (
        "eu-west-1",
        "arn:aws:iam::123456789012:role/checker",
        "http://127.0.0.1:4566",
    )
    assert url.redacted().startswith("dynamodb://eu-west-1?endpoint=http://127.0.0.1:4566")
    assert not url.same_database(parse_url("dynamodb://eu-west-1"))
    assert not parse_url("dynamodb://us-east-1?profile=prod").same_database(
        parse_url("dynamodb://us-east-1?profile=qa")
    )


def test_numbers_have_one_spelling_and_keep_38_digits() -> None:
    assert canonical_number("1.0") == canonical_number("1") == canonical_number("10E-1") == "1"
    assert canonical_number("-0.0") == "0"
    assert canonical_number("1.0000000000000000000000000000000000001") == "1.0000000000000000000000000000000000001"
    assert canonical_number("12345678901234567890123456789012345678") == "12345678901234567890123456789012345678"
    assert canonical_number("1E+125") == "1" + "0" * 125


def test_the_read_budget_paces_calls() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    budget = ReadBudget(5.0, clock=lambda: now[0])
    reserved = budget.wait(sleep)
    budget.spend(10.0, reserved)  # 10 units at 5 per second: the next call waits 2 s
    budget.wait(sleep)
    assert slept == [2.0]


def _scan(client: Any) -> list[dict[str, Any]]:
    return client.scan(TableName=TABLE, ConsistentRead=True)["Items"]


REPAIR = ["--write-missing", "--write-differing", "--delete-extra"]


def test_repair_makes_the_target_equal_and_keeps_every_digit(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    source, _ = _loaded(aws)
    audit = tmp_path / "audit.jsonl"
    status = main(["diff", "--table", TABLE, SOURCE, TARGET, "--no-progress", *REPAIR, "--audit-file", str(audit)])
    assert status == 0, capsys.readouterr().err
    expected = _oracle(source, source)
    assert _oracle(source, _scan(aws["us-west-2"])) == expected == {"missing": [], "extra": [], "differing": []}
    # Numbers were written as DynamoDB's texts: 2^53 + 1 is still 2^53 + 1 on the target.
    written = {(i["pk"]["S"], i["sk"]["N"]): i for i in _scan(aws["us-west-2"])}
    assert written[("diff", "0")]["v"] == {"N": "9007199254740993"}
    assert written[("diff", "1")]["v"] == {"N": "1"}
    lines = [json.loads(line) for line in audit.read_text().splitlines()]
    assert {line["action"] for line in lines} == {"insert", "update", "delete"}
    assert all(line["status"] == "applied" for line in lines)
    assert main(["diff", "--table", TABLE, SOURCE, TARGET, "--no-progress"]) == 0


def test_a_dry_run_writes_nothing(aws: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    _loaded(aws)
    before = _scan(aws["us-west-2"])
    status = main(["diff", "--table", TABLE, SOURCE, TARGET, "--no-progress", *REPAIR, "--dry-run"])
    out = capsys.readouterr().out
    assert status == 1 and "dry run, nothing written" in out and "PutItem orders" in out and "DeleteItem" in out
    assert _scan(aws["us-west-2"]) == before


def test_only_the_kinds_asked_for_are_written(aws: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    source, target = _loaded(aws)
    assert main(["diff", "--table", TABLE, SOURCE, TARGET, "--no-progress", "--write-missing"]) == 1
    left = _oracle(source, _scan(aws["us-west-2"]))
    before = _oracle(source, target)
    assert left == {**before, "missing": []}


class RacingClient:
    """The target's client: just before each conditional write, another writer changes the item."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.raced: list[dict[str, Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_item(self, **request: Any) -> Any:
        key = {k: request["Item"][k] for k in ("pk", "sk")}
        newer = {**key, "v": {"S": "written by the application meanwhile"}}
        self.inner.put_item(TableName=request["TableName"], Item=newer)
        self.raced.append(newer)
        return self.inner.put_item(**request)


def test_an_item_changed_under_the_repair_is_never_overwritten(aws: dict[str, Any]) -> None:
    from tablesync.dynamodb.repair import repair_items
    from tablesync.models import RepairOptions

    _loaded(aws)
    with Differ(
        TABLE, lambda: DynamoConnector(parse_url(SOURCE)), [lambda: DynamoConnector(parse_url(TARGET))]
    ) as differ:
        result = differ.result(differ.run())
        plan = differ.target_plans[0]
    found = result.targets[0]
    keys = [*found.missing, *found.differing]
    racing = RacingClient(boto3.client("dynamodb", region_name="us-west-2"))
    repaired = repair_items(
        DynamoConnector(parse_url(SOURCE)),
        DynamoConnector(parse_url(TARGET), client=racing, read_only=False),
        plan,
        plan,
        keys,
        RepairOptions(write_missing=True, write_differing=True),
        table=TABLE,
        target_label=TARGET,
    )
    assert repaired.changed == len(keys) and sorted(repaired.changed_keys) == sorted(keys)
    assert repaired.inserted == repaired.updated == 0 and repaired.remaining == len(keys)
    # The application's writes stand: none was overwritten with the source's older read.
    held = {(i["pk"]["S"], int(i["sk"]["N"])): i for i in _scan(aws["us-west-2"])}
    for item in racing.raced:
        assert held[(item["pk"]["S"], int(item["sk"]["N"]))] == item


class RecordingClient:
    """The target's client, recording what each PutItem asked."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.puts = inner, []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def put_item(self, **request: Any) -> Any:
        self.puts.append(request)
        return self.inner.put_item(**request)


def test_repair_never_writes_replication_attributes_and_keeps_the_targets_ignored_ones(aws: dict[str, Any]) -> None:
    from tablesync.dynamodb.repair import repair_items
    from tablesync.models import RepairOptions

    _create(aws["us-east-1"])
    _create(aws["us-west-2"])
    rep = {"aws:rep:updateregion": {"S": "e"}}
    _put(aws["us-east-1"], [_item("a", 1, v={"S": "new"}, seen={"N": "1"}, **rep), _item("a", 2, seen={"N": "9"})])
    _put(aws["us-west-2"], [_item("a", 1, v={"S": "old"}, seen={"N": "2"}, **{"aws:rep:updateregion": {"S": "w"}})])
    with Differ(
        TABLE,
        lambda: DynamoConnector(parse_url(SOURCE)),
        [lambda: DynamoConnector(parse_url(TARGET))],
        DiffOptions(ignore=["seen"]),
    ) as differ:
        result = differ.result(differ.run())
        plan = differ.target_plans[0]
    found = result.targets[0]
    assert (found.differing, found.missing) == ([["a", 1]], [["a", 2]])
    recording = RecordingClient(boto3.client("dynamodb", region_name="us-west-2"))
    repaired = repair_items(
        DynamoConnector(parse_url(SOURCE)),
        DynamoConnector(parse_url(TARGET), client=recording, read_only=False),
        plan,
        plan,
        [*found.differing, *found.missing],
        RepairOptions(write_missing=True, write_differing=True),
        table=TABLE,
        target_label=TARGET,
    )
    assert (repaired.updated, repaired.inserted) == (1, 1)
    written = {put["Item"]["sk"]["N"]: put["Item"] for put in recording.puts}
    assert not any(name.startswith("aws:rep:") for item in written.values() for name in item)
    assert written["1"]["v"] == {"S": "new"} and written["1"]["seen"] == {"N": "2"}  # the target's own
    assert "seen" not in written["2"]  # an ignored attribute the target lacks stays absent


def test_what_dynamodb_cannot_hold_is_not_held() -> None:
    from tablesync.dynamodb.values import KeySchema

    schema = KeySchema(["pk", "sk"], ["S", "N"])
    assert schema.holdable(["a", 1]) and schema.holdable(["a", "1.5"])
    assert not schema.holdable(["", 1]) and not schema.holdable([None, 1]) and not schema.holdable(["x" * 2049, 1])
    assert not schema.holdable(["a", "not a number"])


def test_sql_values_dynamodb_cannot_hold_equal_nothing() -> None:
    from tablesync.dynamodb.sql_items import INVALID, item_value
    from tablesync.models import Column, Kind

    def value(kind: Kind, text: str) -> Any:
        return item_value(Column(name="c", native_type="x", kind=kind), text)

    assert value(Kind.BOOLEAN, "1") == ("BOOL", True) and value(Kind.BOOLEAN, "0") == ("BOOL", False)
    assert value(Kind.BOOLEAN, "2")[0] == INVALID  # a tinyint(1) holding 2 is no BOOL
    assert value(Kind.DECIMAL, "Infinity")[0] == INVALID and value(Kind.DECIMAL, "NaN")[0] == INVALID
    assert value(Kind.DECIMAL, "0.370") == ("N", "0.37")
    assert value(Kind.FLOAT, "3fb999999999999a") == ("N", "0.1")  # the double 0.1, shortest spelling
    assert value(Kind.JSON, '{"a": [1, 2.50, "x", null, true]}') == (
        "M",
        {"a": ("L", [("N", "1"), ("N", "2.5"), ("S", "x"), ("NULL",), ("BOOL", True)])},
    )


def test_the_read_budget_spaces_calls_made_at_once() -> None:
    now = [0.0]
    slept: list[float] = []
    budget = ReadBudget(10.0, clock=lambda: now[0])
    reservations = [budget.wait(slept.append) for _ in range(3)]  # three threads at the same moment
    assert slept == [0.1, 0.2]  # one unit each expected: spaced at 10 units a second, not let through together
    assert reservations == [1.0, 1.0, 1.0]


def test_sql_and_dynamodb_names_match_exactly() -> None:
    """DynamoDB's attribute names are case-sensitive: a SQL key `orderid` is not `orderId` (the
    rows would all hash apart)."""
    from tablesync.errors import SchemaError
    from tablesync.models import Column, Kind, TableSchema
    from tablesync.plans import item_plans

    items = TableSchema(
        table="t",
        columns=[Column(name="orderId", native_type="N", kind=Kind.DECIMAL, nullable=False)],
        primary_key=["orderId"],
        key_ordered=False,
    )
    sql = TableSchema(
        table="t",
        columns=[Column(name="orderid", native_type="bigint", kind=Kind.INTEGER, nullable=False)],
        primary_key=["orderid"],
    )
    with pytest.raises(SchemaError, match="the names must match"):
        item_plans("t", [sql, items], DiffOptions(), ["target"])


def test_recheck_after_drops_what_replication_delivered_meanwhile(
    aws: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tablesync import cli_repair

    source, target = _loaded(aws)
    late = [i for i in source if i["pk"]["S"] == "c3"]  # items still travelling when the diff saw them

    def replication_catches_up(seconds: float) -> None:
        _put(aws["us-west-2"], late)

    monkeypatch.setattr(cli_repair.time, "sleep", replication_catches_up)
    status = main(
        ["diff", "--table", TABLE, SOURCE, TARGET, "--format", "json", "--no-progress", "--recheck-after", "5"]
    )
    out = json.loads(capsys.readouterr().out)
    assert status == 1
    expected = _oracle(source, [*target, *late])
    assert {k: sorted(out["targets"][0][k]) for k in expected} == expected
    assert expected != _oracle(source, target)  # the recheck changed the answer


@pytest.mark.parametrize(
    ("kind", "native", "value", "text"),
    [
        ("INTEGER", "bigint", {"N": "12"}, "12"),
        ("INTEGER", "bigint", {"N": "1.2E1"}, "12"),
        ("DECIMAL", "numeric(12,3)", {"N": "0.370"}, "0.37"),
        ("DECIMAL", "decimal(4,2)", {"N": "-12.5E0"}, "-12.5"),
        ("DECIMAL", "numeric", {"N": "1E+20"}, "100000000000000000000"),
        ("FLOAT", "double precision", {"N": "0.1"}, "3fb999999999999a"),
        ("BOOLEAN", "boolean", {"BOOL": True}, "1"),
        ("BYTES", "bytea", {"B": b"\x00\x07"}, "0007"),
        ("TEXT", "text", {"S": ""}, ""),
        ("JSON", "jsonb", {"M": {"b": {"N": "9007199254740993"}, "a": {"L": [{"NULL": True}, {"BOOL": False}]}}},
         '{"a":[null,false],"b":9007199254740993}'),
        ("TIMESTAMP", "timestamp", {"S": "2026-01-02 03:04:05.123456"}, "2026-01-02 03:04:05.123456"),
    ],
)  # fmt: skip
def test_an_item_value_becomes_the_column_text_that_holds_it(kind: str, native: str, value: Any, text: str) -> None:
    from tablesync.dynamodb.sql_rows import column_text
    from tablesync.models import Column, Kind

    assert column_text(Column(name="c", native_type=native, kind=Kind[kind]), value) == text


@pytest.mark.parametrize(
    ("kind", "native", "value"),
    [
        ("INTEGER", "bigint", {"N": "1.5"}),  # no whole number
        ("DECIMAL", "numeric(12,3)", {"N": "0.1234"}),  # PostgreSQL would round it to 0.123
        ("DECIMAL", "decimal(4,2)", {"N": "123"}),  # MariaDB would refuse or clip it
        ("FLOAT", "double precision", {"N": "0.10000000000000001"}),  # no double is exactly that
        ("TEXT", "text", {"NULL": True}),  # a NULL attribute: a SQL NULL reads back as absent
        ("TEXT", "text", {"N": "1"}),  # a number is no text
        ("TIMESTAMP", "timestamp", {"S": "2026-01-02T03:04:05Z"}),  # reads back in another spelling
        ("JSON", "json", {"M": {"tags": {"SS": ["a"]}}}),  # JSON has no sets
        ("BOOLEAN", "tinyint(1)", {"N": "1"}),
    ],
)
def test_an_item_value_no_column_holds_exactly_is_refused(kind: str, native: str, value: Any) -> None:
    from tablesync.dynamodb.sql_rows import Unholdable, column_text
    from tablesync.models import Column, Kind

    with pytest.raises(Unholdable):
        column_text(Column(name="c", native_type=native, kind=Kind[kind]), value)


@pytest.mark.parametrize(
    ("native", "base", "kind", "value"),
    [
        ("real", "float4", "FLOAT", {"N": "0.1"}),  # a 4-byte float rounds it
        ("float", "float", "FLOAT", {"N": "0.1"}),
        ("smallint", "int2", "INTEGER", {"N": "40000"}),
        ("tinyint(4) unsigned", "tinyint", "INTEGER", {"N": "-1"}),
        ("character varying(3)", "varchar", "TEXT", {"S": "abcd"}),
        ("datetime(3)", "datetime", "TIMESTAMP", {"S": "2026-01-02 03:04:05.123456"}),
        ("datetime", "datetime", "TIMESTAMP", {"S": "2026-01-02 03:04:05.100000"}),
        ("year", "year", "INTEGER", {"N": "1800"}),
    ],
)
def test_a_value_the_column_would_change_as_it_stores_it_is_refused(
    native: str, base: str, kind: str, value: Any
) -> None:
    from tablesync.dynamodb.sql_rows import Unholdable, column_text
    from tablesync.models import Column, Kind

    with pytest.raises(Unholdable):
        column_text(Column(name="c", native_type=native, base_type=base, kind=Kind[kind]), value)


def test_values_the_column_stores_as_they_are_pass() -> None:
    from tablesync.dynamodb.sql_rows import column_text
    from tablesync.models import Column, Kind

    def text(native: str, base: str, kind: Kind, value: Any) -> str:
        return column_text(Column(name="c", native_type=native, base_type=base, kind=kind), value)

    assert text("real", "float4", Kind.FLOAT, {"N": "0.5"}) == "3fe0000000000000"
    assert text("numeric(3,3)", "numeric", Kind.DECIMAL, {"N": "0"}) == "0"
    assert text("timestamp(3) without time zone", "timestamp", Kind.TIMESTAMP, {"S": "2026-01-02 03:04:05.120000"})
    assert text("datetime", "datetime", Kind.TIMESTAMP, {"S": "2026-01-02 03:04:05.000000"})


def test_a_skip_extra_state_resumes_only_with_skip_extra(aws: dict[str, Any]) -> None:
    """A state begun with --skip-extra (the targets not scanned) is refused by a diff without it,
    rather than resumed with its keys never looked up."""
    from tablesync.errors import StateError

    _loaded(aws)

    def differ(skip: bool) -> Differ:
        options = DiffOptions(skip_extra=skip, page_items=5)
        return Differ(
            TABLE, lambda: DynamoConnector(parse_url(SOURCE)), [lambda: DynamoConnector(parse_url(TARGET))], options
        )

    with differ(True) as first:
        state = first.step(first.initial_state(), 0.0)
    with differ(False) as second, pytest.raises(StateError):
        second.step(state, 0.0)


def _sqlite_orders(path: Any, rows: int = 900) -> str:
    import sqlite3

    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE orders (pk TEXT NOT NULL, sk INTEGER NOT NULL, amount DECIMAL(12,3), ratio REAL, "
            "active BOOLEAN, raw BLOB, doc JSON, note TEXT, PRIMARY KEY (pk, sk))"
        )
        db.executemany(
            "INSERT INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                (f"c{i % 9}", i, f"{i}.125", i / 8, i % 2, bytes([i % 256, 0]), json.dumps({"n": i, "l": [1, "x"]}),
                 None if i % 5 == 0 else f"note {i}")
                for i in range(rows)
            ],
        )  # fmt: skip
    return f"sqlite:///{path}"


def test_copy_creates_a_dynamodb_table_from_a_sql_one_and_verifies_it(
    aws: dict[str, Any], tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """tablesync copy --create into DynamoDB: the key schema from the primary key, each row as the
    item that holds its values (NULL: no attribute), then the diff of the copy finds nothing."""
    source = _sqlite_orders(tmp_path / "orders.db")
    code = main(
        ["copy", source, TARGET, "--table", TABLE, "--create", "--batch", "100", "--format", "json", "--no-progress"]
    )
    result = json.loads(capsys.readouterr().out)
    assert code == 0 and result["targets"][0]["rows_copied"] == 900 and result["targets"][0]["verified"] is True
    table = aws["us-west-2"].describe_table(TableName=TABLE)["Table"]
    assert [(k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]] == [("pk", "HASH"), ("sk", "RANGE")]
    item = aws["us-west-2"].get_item(TableName=TABLE, Key={"pk": {"S": "c0"}, "sk": {"N": "0"}})["Item"]
    assert "note" not in item and item["amount"] == {"N": "0.125"} and item["active"] == {"BOOL": False}
    # Once there, the table holds rows: --append and --replace need a SQL target.
    code = main(["copy", source, TARGET, "--table", TABLE, "--append"])
    assert code == 2 and "need a SQL target" in capsys.readouterr().err


def test_a_copy_into_dynamodb_resumed_after_a_lost_state_writes_each_item_once(
    aws: dict[str, Any], tmp_path: Any
) -> None:
    from tablesync.connectors import open_connector
    from tablesync.copy_models import CopyOptions
    from tablesync.dynamodb.loader import for_copy
    from tablesync.engine.bulk_copy import Copier

    source = _sqlite_orders(tmp_path / "orders.db")

    def copier() -> Copier:
        return Copier(
            TABLE,
            lambda: open_connector(source),
            [lambda: for_copy(DynamoConnector(parse_url(TARGET), read_only=False))],
            CopyOptions(batch=200, create=True),
        )

    with copier() as first:
        before = first.prepare(first.initial_state())
        first.step(before, 0.0)  # a batch written, its state "lost"
    with copier() as second:
        state = second.run(before)
    assert state.done
    assert len(_scan(aws["us-west-2"])) == 900
