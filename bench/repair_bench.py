"""Repair throughput: a PostgreSQL table of N rows (the benchmark's columns) and a MariaDB copy
missing half of them; each repetition deletes those rows from the copy again, finds them with the
engine and inserts them with tablesync.repair (--write-missing), as `tablesync diff
--write-missing` does. The repair is timed apart from the diff, and a final diff must find
nothing.

    python bench/repair_bench.py --rows 200000 --reps 3 --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import psycopg
from tablesync.connectors import open_connector
from tablesync.engine import Differ
from tablesync.models import RepairOptions
from tablesync.repair import repair_target

from bench import MYSQL_URL, PG_URL, _mysql_conn, _pg_dsn, machine, mysql_setup, pg_setup, write_block

TABLE = "ts_bench_repair"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=200_000, help="source rows; half of them are missing")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--write-batch", type=int, default=1000)
    parser.add_argument("--write-docs", type=Path)
    args = parser.parse_args(argv)

    pg = psycopg.connect(_pg_dsn(), autocommit=True)
    my = _mysql_conn()
    print(f"== creating {args.rows:,} rows in PostgreSQL and MariaDB", flush=True)
    pg_setup(pg, TABLE, "bigint", args.rows)
    mysql_setup(my, TABLE, "bigint", args.rows)
    options = RepairOptions(write_missing=True, write_batch=args.write_batch)
    diff_s, repair_s, inserted = [], [], 0
    for rep in range(args.reps):
        with my.cursor() as cur:
            cur.execute(f"DELETE FROM {TABLE} WHERE id % 4 = 0")  # ids are 2, 4, 6, ...: half of them
            missing = cur.rowcount
        started = time.monotonic()
        with Differ(TABLE, lambda: open_connector(PG_URL), [lambda: open_connector(MYSQL_URL)]) as differ:
            keys = differ.result(differ.run()).targets[0].missing
            source_plan, target_plan = differ.source_plan, differ.target_plans[0]
        diff_s.append(time.monotonic() - started)
        assert len(keys) == missing, (len(keys), missing)
        source, target = open_connector(PG_URL), open_connector(MYSQL_URL, read_only=False)
        started = time.monotonic()
        result = repair_target(
            source, target, source_plan, target_plan, keys, options, table=TABLE, target_label="mariadb"
        )
        repair_s.append(time.monotonic() - started)
        source.close()
        target.close()
        assert result.inserted == missing and not result.failed, result
        inserted = missing
        print(
            f"   repetition {rep + 1}/{args.reps}: diff {diff_s[-1]:.2f} s, repair of {missing:,} rows "
            f"{repair_s[-1]:.2f} s ({missing / repair_s[-1]:,.0f} rows/s)",
            flush=True,
        )
    with Differ(TABLE, lambda: open_connector(PG_URL), [lambda: open_connector(MYSQL_URL)]) as differ:
        after = differ.result(differ.run())
    assert not after.has_differences, "differences left after the repair"
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    median = statistics.median(repair_s)
    table = "\n".join(
        [
            f"### repair: {inserted:,} missing rows inserted, PostgreSQL to MariaDB ({args.rows:,}-row table)",
            "",
            "| step | median s | rows/s | peak RSS MB |",
            "|---|---:|---:|---:|",
            f"| diff (finds the missing keys) | {statistics.median(diff_s):.2f} | "
            f"{args.rows / statistics.median(diff_s):,.0f} |  |",
            f"| repair (lock the target's rows, then read the source, insert; {args.write_batch} rows per "
            "transaction) | "
            f"{median:.2f} | {inserted / median:,.0f} | {rss_mb:.0f} |",
            "",
            "A diff afterwards: no differences.",
        ]
    )
    print("\n" + table)
    if args.write_docs:
        command = f"python bench/repair_bench.py --rows {args.rows} --reps {args.reps} --write-docs {args.write_docs}"
        write_block(
            args.write_docs,
            "repair",
            f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}.\n\nCommand: `{command}`.\n\n{table}\n",
        )
    pg.execute(f"DROP TABLE IF EXISTS {TABLE}")
    with my.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {TABLE}")
    pg.close()
    my.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
