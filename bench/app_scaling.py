"""Figures for docs/scaling.md: one table checked the way the app checks it (ListTables' shards,
ChecksumTable's checkpointed invocations, connectors behind the Lambda transport), against the
benchmark's tables in the local PostgreSQL and MariaDB.

    python bench/app_scaling.py --rows 5000000 --shards 1,2,4 --budget 870

Each "invocation" works until its budget (the checksum Lambda's time minus its safety margin),
saves its state and is called again, as the state machine does; shards run side by side in
threads, as the Map runs them. The connector transport is the real one (JSON both ways), invoked
in-process, so connector calls are counted. Prints rows per second per shard and in all, the
checksum invocations, the connector invocations, and the same per 100M rows."""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
from tablesync.app import checking, environment, listing
from tablesync.app.checkpoints import MemoryCheckpointStore
from tablesync.app.events import ChecksumResult, ConnectorRequest, RunInput, TableItem
from tablesync.app.transport import LambdaConnector, serve
from tablesync.connectors import Connector, open_connector

from bench import _mysql_conn, _pg_dsn, mysql_setup, pg_setup

URLS = {"pg": "postgresql://postgres@127.0.0.1:5432/test", "mysql": "mysql://root@127.0.0.1:3306/test"}


class CountingInvoke:
    """lambda:Invoke of the connector functions, in-process: one connection per calling thread
    (concurrent invocations run in separate containers), every call counted."""

    def __init__(self) -> None:
        self.calls = 0
        self.local = threading.local()
        self.lock = threading.Lock()
        self.opened: list[Connector] = []
        self.busy: dict[str, float] = {}  # seconds each connector function spent answering

    def __call__(self, function: str, payload: bytes) -> tuple[bytes, str | None]:
        with self.lock:
            self.calls += 1
        conns = getattr(self.local, "conns", None)
        if conns is None:
            conns = self.local.conns = {}
        if function not in conns:
            conns[function] = open_connector(URLS[function])
            with self.lock:
                self.opened.append(conns[function])
        started = time.monotonic()
        answer = json.dumps(serve(ConnectorRequest.model_validate_json(payload), conns[function])).encode()
        with self.lock:
            self.busy[function] = self.busy.get(function, 0.0) + time.monotonic() - started
        return answer, None


def run(table: str, shards: int, budget: float) -> dict[str, Any]:
    invoke = CountingInvoke()

    def opener(name: str) -> Connector:
        return LambdaConnector(name, invoke)

    check = {"source": "pg", "targets": ["mysql"], "tables": [{"table": table, "shards": shards}]}
    items = listing.list_tables(
        RunInput(run_id="scaling", owner="bench", check=check), environment.Clients(), opener
    ).items
    store = MemoryCheckpointStore()
    settings = environment.Settings(safety_margin_seconds=0.0)
    invocations = [0] * len(items)

    def one(index: int, item: TableItem) -> ChecksumResult:
        result: TableItem = item
        while True:
            invocations[index] += 1
            done = checking.checksum_table(result, budget, settings, store, opener)
            if done.status == "done":
                return done
            result = done

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=len(items)) as pool:
        results = list(pool.map(one, range(len(items)), items))
    seconds = time.monotonic() - started
    for conn in invoke.opened:
        conn.close()
    rows = sum(r.source_rows for r in results)
    return {
        "shards": len(items),
        "rows": rows,
        "seconds": round(seconds, 2),
        "rows_per_s": round(rows / seconds),
        "rows_per_s_per_shard": round(rows / seconds / len(items)),
        "checksum_invocations": sum(invocations),
        "connector_invocations": invoke.calls,
        "connector_invocations_per_100M": round(invoke.calls * 100_000_000 / max(1, rows)),
        "connector_busy_s": {name: round(value, 1) for name, value in invoke.busy.items()},
        "differences": sum(t.missing + t.extra + t.differing for r in results for t in r.targets_summary),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", default="ts_bench_scaling")
    parser.add_argument("--rows", type=int, default=5_000_000, help="rows of the identical table pair it creates")
    parser.add_argument("--keep", action="store_true", help="keep the table pair (and reuse it next time)")
    parser.add_argument("--shards", default="1,2,4")
    parser.add_argument("--budget", type=float, default=870.0, help="seconds of work per checksum invocation")
    args = parser.parse_args(argv)
    pg = psycopg.connect(_pg_dsn(), autocommit=True)
    my = _mysql_conn()
    count = pg.execute("SELECT count(*) FROM pg_class WHERE relname = %s", [args.table]).fetchone()
    if not count or not count[0]:
        print(f"== creating {args.rows:,} identical rows in PostgreSQL and MariaDB", file=sys.stderr, flush=True)
        pg_setup(pg, args.table, "bigint", args.rows)
        mysql_setup(my, args.table, "bigint", args.rows)
    for shards in (int(s) for s in args.shards.split(",")):
        print(json.dumps(run(args.table, shards, args.budget)), flush=True)
    if not args.keep:
        pg.execute(f"DROP TABLE IF EXISTS {args.table}")
        with my.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {args.table}")
    pg.close()
    my.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
