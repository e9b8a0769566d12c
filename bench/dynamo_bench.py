"""DynamoDB on the local emulator (ministack): a table of N items with nested maps, lists, sets and
numbers in one region and a copy with 0.1% drift in another. Measured in the same run:

- the floor: plain parallel scans of both tables (every page read, its items not even parsed);
- tablesync diff at 1, 4 and 8 segments (and with --skip-extra, which saves the target scans);
- the straightforward approach of the seed (dynamodb-table-sync): a serial scan of the source, one
  BatchGetItem of 50 keys at a time in the target, items compared in Python;
- the repair of the drift by tablesync (conditional writes, 8 at a time) and by the straightforward
  approach (one unconditional PutItem per write);

each in a fresh process, with its peak RSS, at two table sizes (memory must stay flat).

    python bench/dynamo_bench.py --items 100000 --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "setup"))
TABLE = "ts_bench_items"
REGIONS = ("us-east-1", "us-west-2")


def client(endpoint: str, region: str) -> Any:
    import boto3

    return boto3.client(
        "dynamodb", endpoint_url=endpoint, region_name=region, aws_access_key_id="test", aws_secret_access_key="test"
    )


def item(i: int, drifted: bool = False) -> dict[str, Any]:
    rng = random.Random(i)
    return {
        "pk": {"S": f"customer-{i % 5000:05d}"},
        "sk": {"N": str(i)},
        "amount": {"N": f"{rng.randint(0, 10**9)}.{rng.randint(0, 99):02d}" if not drifted else "-1"},
        "big": {"N": str(2**53 + i)},
        "tags": {"SS": [f"t{rng.randint(0, 50)}", "all"]},
        "scores": {"NS": [str(rng.randint(0, 1000)), "1.5"]},
        "history": {"L": [{"M": {"at": {"S": f"2026-01-{d + 1:02d}"}, "n": {"N": str(d)}}} for d in range(3)]},
        "profile": {"M": {"name": {"S": f"name {i}"}, "vip": {"BOOL": i % 7 == 0}, "note": {"NULL": True}}},
    }


def load(endpoint: str, items: int) -> dict[str, int]:
    """The source, and a copy with 0.1% drift: a third missing, a third differing, a third extra."""
    drift = max(3, items // 1000)
    chosen = set(random.Random(7).sample(range(items), drift))
    ordered = sorted(chosen)
    missing, differing, extra = set(ordered[0::3]), set(ordered[1::3]), set(ordered[2::3])
    for region in REGIONS:
        c = client(endpoint, region)
        c.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "N"},
            ],
            BillingMode="PAY_PER_REQUEST",
        )

    def put(region: str, batch: list[dict[str, Any]]) -> None:
        c = client(endpoint, region)
        requests = [{"PutRequest": {"Item": it}} for it in batch]
        while requests:
            answer = c.batch_write_item(RequestItems={TABLE: requests})
            requests = answer.get("UnprocessedItems", {}).get(TABLE, [])

    source = [item(i) for i in range(items)]
    target = [item(i, i in differing) for i in range(items) if i not in missing]
    target += [item(items + i) for i in extra]
    with ThreadPoolExecutor(8) as pool:
        jobs = [pool.submit(put, "us-east-1", source[i : i + 25]) for i in range(0, len(source), 25)]
        jobs += [pool.submit(put, "us-west-2", target[i : i + 25]) for i in range(0, len(target), 25)]
        for job in jobs:
            job.result()
    return {"missing": len(missing), "differing": len(differing), "extra": len(extra)}


# --- the measured runs, each in its own process ------------------------------------------------------
def run_floor(endpoint: str, segments: int) -> dict[str, Any]:
    """The emulator's own rate: every page of both tables read, its items left as the JSON came
    (botocore's parser, which walks every attribute, is the client's cost, not the emulator's),
    the garbage collector relaxed as tablesync's is."""
    from tablesync import gc_policy
    from tablesync.dynamodb.client import RAW_ITEM_LISTS, keep_items_raw

    gc_policy.relax()  # as tablesync runs: the collector would otherwise walk the heap every page

    def raw_client(region: str) -> Any:
        made = client(endpoint, region)
        for operation in RAW_ITEM_LISTS:
            made.meta.events.register(f"before-parse.dynamodb.{operation}", keep_items_raw)
        return made

    def scan(region: str, segment: int) -> int:
        c, start, count = raw_client(region), None, 0
        while True:
            request: dict[str, Any] = {"TableName": TABLE}
            if segments > 1:  # a plain scan: one segment is no parallel scan
                request.update(Segment=segment, TotalSegments=segments)
            if start:
                request["ExclusiveStartKey"] = start
            page = c.scan(**request)
            count += len(page["Items"])
            start = page.get("LastEvaluatedKey")
            if not start:
                return count

    with ThreadPoolExecutor(2 * segments) as pool:
        jobs = [pool.submit(scan, r, s) for r in REGIONS for s in range(segments)]
        return {"items": sum(j.result() for j in jobs)}


def run_tablesync(endpoint: str, segments: int, *extra: str) -> dict[str, Any]:
    from tablesync.cli import main

    urls = [f"dynamodb://{r}?endpoint={endpoint}" for r in REGIONS]
    args = ["diff", *urls, "--table", TABLE, "--format", "json", "--no-progress", "--segments", str(segments)]
    args += ["--threads", str(segments), *extra]
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(args)
    if "--write-missing" in extra:
        repair = json.loads(out.getvalue())["repairs"][0]
        return {"status": status, "written": repair["inserted"] + repair["updated"] + repair["deleted"]}
    target = json.loads(out.getvalue())["targets"][0]
    return {"status": status, **{k: len(target[k]) for k in ("missing", "differing", "extra")}}


def run_straightforward(endpoint: str, repair: bool) -> dict[str, Any]:
    """The seed's loop: a serial scan of the source; each page's keys looked up 50 at a time in
    the target; compared as Python objects; with `repair`, one PutItem per missing or differing
    item (no condition). It finds no extra items."""
    from boto3.dynamodb.types import TypeDeserializer

    source, target = client(endpoint, REGIONS[0]), client(endpoint, REGIONS[1])
    plain = TypeDeserializer()

    def same(a: dict[str, Any], b: dict[str, Any]) -> bool:
        return {k: plain.deserialize(v) for k, v in a.items()} == {k: plain.deserialize(v) for k, v in b.items()}

    start, found, written = None, {"missing": 0, "differing": 0}, 0
    while True:
        request: dict[str, Any] = {"TableName": TABLE}
        if start:
            request["ExclusiveStartKey"] = start
        page = source.scan(**request)
        items = page["Items"]
        for i in range(0, len(items), 50):
            batch = items[i : i + 50]
            keys = [{"pk": it["pk"], "sk": it["sk"]} for it in batch]
            held: dict[tuple[str, str], dict[str, Any]] = {}
            while keys:
                answer = target.batch_get_item(RequestItems={TABLE: {"Keys": keys}})
                for it in answer["Responses"].get(TABLE, []):
                    held[(it["pk"]["S"], it["sk"]["N"])] = it
                keys = answer.get("UnprocessedKeys", {}).get(TABLE, {}).get("Keys", [])
            for it in batch:
                there = held.get((it["pk"]["S"], it["sk"]["N"]))
                kind = "missing" if there is None else (None if same(it, there) else "differing")
                if kind is None:
                    continue
                found[kind] += 1
                if repair:
                    target.put_item(TableName=TABLE, Item=it)
                    written += 1
        start = page.get("LastEvaluatedKey")
        if not start:
            return {**found, "written": written}


def one(args: argparse.Namespace) -> int:
    """A child process: one measured run; prints seconds, its answer and its peak RSS."""
    os.environ.update(AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test")
    # Imports before the clock: every run is timed from its first request, not its start-up.
    import boto3.dynamodb.types  # noqa: F401
    import tablesync.cli  # noqa: F401

    started = time.perf_counter()
    kind, endpoint = args.one, args.endpoint
    if kind == "load":
        answer = load(endpoint, args.segments)
    elif kind == "floor":
        answer = run_floor(endpoint, args.segments)
    elif kind == "tablesync":
        answer = run_tablesync(endpoint, args.segments, *json.loads(args.extra))
    else:
        answer = run_straightforward(endpoint, kind == "straightforward-repair")
    seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rss_mb": rss, **answer}))
    return 0


def measure(endpoint: str, kind: str, segments: int = 1, extra: tuple[str, ...] = ()) -> dict[str, Any]:
    command = [sys.executable, __file__, "--one", kind, "--endpoint", endpoint, "--segments", str(segments)]
    command += ["--extra", json.dumps(list(extra))]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "tablesync")}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if run.returncode != 0:
        raise RuntimeError(run.stderr[-2000:])
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return result


def bench(items: int, segments: list[int]) -> list[str]:
    from local import LocalStack

    stack = LocalStack(Path(tempfile.mkdtemp(prefix="ts-dynamo-bench-")))
    stack.start()
    try:
        print(f"== loading {items:,} items and a drifted copy", flush=True)
        started = time.perf_counter()
        # Loaded by a child process: a child's peak RSS starts from its parent's (Linux keeps
        # ru_maxrss across fork and exec), so the driver never holds the items itself.
        loaded = measure(stack.endpoint, "load", items)  # the item count travels as --segments
        drift = {kind: loaded[kind] for kind in ("missing", "differing", "extra")}
        print(f"   loaded in {time.perf_counter() - started:.0f} s; drift {drift}", flush=True)
        rows = [f"### {items:,} items, drift {sum(drift.values())} ({drift['missing']} missing, "
                f"{drift['differing']} differing, {drift['extra']} extra)", "",
                "| run | segments | seconds | source items/s | x floor | x straightforward's items/s "
                "| peak RSS MB | answer |",
                "|---|---:|---:|---:|---:|---:|---:|---|"]  # fmt: skip
        floors: dict[int, float] = {}
        plain_seconds = [float("nan")]

        def row(name: str, seg: int, result: dict[str, Any], exact: str) -> None:
            rate = items / result["seconds"]
            ratio = result["seconds"] / floors[seg] if seg in floors else float("nan")
            speedup = plain_seconds[0] / result["seconds"]
            figures = f"{result['seconds']:.1f} | {rate:,.0f} | {ratio:.2f} | {speedup:.2f} | {result['rss_mb']:.0f}"
            rows.append(f"| {name} | {seg} | {figures} | {exact} |")
            print(rows[-1], flush=True)

        for seg in segments:
            floor = measure(stack.endpoint, "floor", seg)
            floors[seg] = floor["seconds"]
            row("floor: plain scans of both tables", seg, floor, f"{floor['items']:,} items read")
        expected = (drift["missing"], drift["differing"], drift["extra"])
        plain = measure(stack.endpoint, "straightforward")
        plain_seconds[0] = plain["seconds"]
        got = (plain["missing"], plain["differing"])
        row(
            "straightforward (serial scan, BatchGetItem of 50)",
            1,
            plain,
            "exact (no extras)" if got == expected[:2] else f"WRONG {got}",
        )
        for seg in segments:
            for name, extra in (("tablesync diff", ()), ("tablesync diff --skip-extra", ("--skip-extra",))):
                result = measure(stack.endpoint, "tablesync", seg, extra)
                got = (result["missing"], result["differing"], result["extra"])
                want = expected if not extra else (expected[0], expected[1], 0)
                row(name, seg, result, "exact" if got == want else f"WRONG {got}")
        repair = measure(stack.endpoint, "tablesync", 4, ("--write-missing", "--write-differing", "--delete-extra"))
        row("tablesync diff + repair", 4, repair, f"{repair['written']} written, the diff included")
        return rows
    finally:
        stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=25_000, help="a second, smaller table: memory must stay flat")
    parser.add_argument("--segments", default="1,4,8")
    parser.add_argument("--write-docs", type=Path)
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", help=argparse.SUPPRESS)
    parser.add_argument("--extra", default="[]", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        args.segments = int(args.segments)
        return one(args)
    segments = [int(s) for s in args.segments.split(",")]
    sections = []
    for size in [args.small, args.items] if args.small else [args.items]:
        sections += [*bench(size, segments), ""]
    print("\n".join(sections))
    if args.write_docs:
        from bench import write_block

        command = f"python bench/dynamo_bench.py --items {args.items} --small {args.small} --segments {args.segments}"
        body = "\n".join(
            [f"`{command}`, {time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores, ministack.", "", *sections]
        )
        write_block(args.write_docs, "dynamodb", body + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
