"""`tablesync copy --create` against the databases' own dump-and-load path, measured in the same run
on the benchmark's table (bench.py: a bigint key, int, varchar, numeric, timestamp(6), text with
NULLs, boolean):

- PostgreSQL to MariaDB: tablesync, and `COPY (SELECT ...) TO STDOUT` into a file, then
  `LOAD DATA LOCAL INFILE` into the same table created beforehand (not timed);
- MariaDB to PostgreSQL: tablesync, and `SELECT ... INTO OUTFILE`, then `COPY FROM STDIN`.

tablesync runs as the command a user types (process start included), without and with its verify
(the diff of the copied rows); each run in its own process, with its peak RSS, at two sizes (memory
must stay flat). Then `tablesync replicate` to three destinations, with and without --group-column.

    python bench/copy_bench.py --rows 1000000 --write-docs docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import MYSQL_URL, PG_URL, TABLESYNC, _mysql_conn, _pg_dsn, machine, mysql_setup, pg_setup, write_block

SOURCE_PG, SOURCE_MY = "ts_bench_copy_pg", "ts_bench_copy_my"
COLUMNS = "id, qty, name, amount, created_at, note, paid"
MY_DDL = (
    "(id bigint PRIMARY KEY, qty int NOT NULL, name varchar(64) NOT NULL, amount decimal(12,2) NOT NULL, "
    "created_at datetime(6) NOT NULL, note longtext, paid tinyint(1) NOT NULL) DEFAULT CHARSET utf8mb4"
)
PG_DDL = (
    "(id bigint PRIMARY KEY, qty int NOT NULL, name varchar(64) NOT NULL, amount numeric(12,2) NOT NULL, "
    "created_at timestamp(6) NOT NULL, note text, paid smallint NOT NULL)"
)


def timed_child(command: list[str]) -> tuple[float, float, int]:
    """Seconds, peak RSS (MB) and exit status of a command run in its own process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        error = process.stderr.read().decode()[-1000:] if process.stderr else ""
        raise RuntimeError(f"{command[:3]} exited {code}: {error}")
    return seconds, usage.ru_maxrss / 1024, code


def drop(pg: psycopg.Connection, my: Any, table: str) -> None:
    pg.execute(f"DROP TABLE IF EXISTS {table}")
    with my.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")


def pg_to_mariadb_by_hand(pg: psycopg.Connection, table: str, work: Path) -> float:
    """The databases' own path: COPY TO into a file, LOAD DATA LOCAL INFILE from it."""
    dump = work / "pg.tsv"
    loader = pymysql.connect(**_mysql_args(), local_infile=True, autocommit=True)
    with loader.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(f"CREATE TABLE {table} {MY_DDL}")
    started = time.perf_counter()
    select = f"SELECT id, qty, name, amount, created_at, note, paid::int FROM {SOURCE_PG}"
    with open(dump, "wb") as out, pg.cursor() as cur, cur.copy(f"COPY ({select}) TO STDOUT") as copy:
        for block in copy:
            out.write(block)
    with loader.cursor() as cur:
        cur.execute(f"LOAD DATA LOCAL INFILE '{dump}' INTO TABLE {table} ({COLUMNS})")
    seconds = time.perf_counter() - started
    loader.close()
    return seconds


def mariadb_to_pg_by_hand(pg: psycopg.Connection, my: Any, table: str, work: Path) -> float:
    """The databases' own path: SELECT ... INTO OUTFILE (on this machine), COPY FROM from it."""
    dump = work / f"my-{time.time_ns()}.tsv"
    pg.execute(f"DROP TABLE IF EXISTS {table}")
    pg.execute(f"CREATE TABLE {table} {PG_DDL}")
    started = time.perf_counter()
    with my.cursor() as cur:
        cur.execute(f"SELECT {COLUMNS} FROM {SOURCE_MY} INTO OUTFILE '{dump}'")
    with open(dump, "rb") as source, pg.cursor() as cur, cur.copy(f"COPY {table} ({COLUMNS}) FROM STDIN") as copy:
        while block := source.read(1 << 20):
            copy.write(block)
    return time.perf_counter() - started


def _mysql_args() -> dict[str, Any]:
    from tablesync.urls import parse_url

    u = parse_url(MYSQL_URL)
    return {"host": u.host, "port": u.port or 3306, "user": u.user or "root", "password": u.password or "",
            "database": u.database}  # fmt: skip


def bench(rows: int, reps: int, work: Path) -> list[str]:
    pg = psycopg.connect(_pg_dsn(), autocommit=True)
    my = _mysql_conn()
    print(f"== {rows:,} rows: creating the sources", flush=True)
    pg_setup(pg, SOURCE_PG, "bigint", rows)
    mysql_setup(my, SOURCE_MY, "bigint", rows)
    os.chmod(work, 0o777)  # INTO OUTFILE writes as the server's user
    out = [f"### {rows:,} rows", "",
           "| direction | run | seconds (median) | rows/s | x by hand | peak RSS MB |",
           "|---|---|---:|---:|---:|---:|"]  # fmt: skip
    directions = [
        ("PostgreSQL to MariaDB", PG_URL, MYSQL_URL, SOURCE_PG, "ts_bench_copy_to_my"),
        ("MariaDB to PostgreSQL", MYSQL_URL, PG_URL, SOURCE_MY, "ts_bench_copy_to_pg"),
    ]
    for name, source, target, table, copy_table in directions:
        hand = []
        for _ in range(reps):
            if source == PG_URL:
                hand.append(pg_to_mariadb_by_hand(pg, copy_table, work))
            else:
                hand.append(mariadb_to_pg_by_hand(pg, my, copy_table, work))
        floor = statistics.median(hand)
        label = "COPY TO + LOAD DATA" if source == PG_URL else "INTO OUTFILE + COPY FROM"
        out.append(f"| {name} | by hand: {label} | {floor:.2f} | {rows / floor:,.0f} | 1.00 | |")
        print(out[-1], flush=True)
        for verify in (False, True):
            seconds, rss = [], []
            for _ in range(reps):
                # The copy goes to a table of the source's name in the other database.
                _drop_copy(pg, my, source, table)
                command = [str(TABLESYNC), "copy", "--table", table, source, target, "--create", "--no-progress"]
                command += [] if verify else ["--no-verify"]
                s, r, _ = timed_child(command)
                seconds.append(s)
                rss.append(r)
                _drop_copy(pg, my, source, table)
            median = statistics.median(seconds)
            run = "tablesync copy --create" + ("" if verify else " --no-verify")
            figures = f"{median:.2f} | {rows / median:,.0f} | {median / floor:.2f} | {max(rss):.0f}"
            out.append(f"| {name} | {run} | {figures} |")
            print(out[-1], flush=True)
    for table in (SOURCE_PG, SOURCE_MY, "ts_bench_copy_to_my", "ts_bench_copy_to_pg"):
        drop(pg, my, table)
    return out


def _drop_copy(pg: psycopg.Connection, my: Any, source: str, table: str) -> None:
    """The copy made in the other database (the source's table name there)."""
    if source == PG_URL:
        with my.cursor() as cur:
            cur.execute(f"DROP TABLE IF EXISTS {table}")
    else:
        pg.execute(f"DROP TABLE IF EXISTS {table}")


REPLICATED = "ts_bench_replicate"
EVENTS_PG = "(id bigint PRIMARY KEY, tx bigint NOT NULL, kind text NOT NULL, payload text, at timestamp(6) NOT NULL)"
EVENTS_MY = "(id bigint PRIMARY KEY, tx bigint NOT NULL, kind text NOT NULL, payload text, at datetime(6) NOT NULL)"


def bench_replicate(rows: int) -> list[str]:
    """`tablesync replicate` of an events table from PostgreSQL to three destinations (two MariaDB
    databases and a second PostgreSQL database), from empty, then the same with --group-column."""
    from tablesync.urls import parse_url

    pg = psycopg.connect(_pg_dsn(), autocommit=True)
    my = _mysql_conn()
    second = f"{parse_url(PG_URL).database}_copy"
    if not pg.execute("SELECT 1 FROM pg_database WHERE datname = %s", [second]).fetchone():
        pg.execute(f'CREATE DATABASE "{second}"')
    pg2_url = PG_URL.rsplit("/", 1)[0] + "/" + second
    my2 = f"{parse_url(MYSQL_URL).database}_copy"
    my2_url = MYSQL_URL.rsplit("/", 1)[0] + "/" + my2
    pg2 = psycopg.connect(
        _pg_dsn().replace(f"dbname={parse_url(PG_URL).database}", f"dbname={second}"), autocommit=True
    )
    print(f"== replicate: {rows:,} events", flush=True)
    pg.execute(f"DROP TABLE IF EXISTS {REPLICATED}")
    pg.execute(f"CREATE TABLE {REPLICATED} {EVENTS_PG}")
    pg.execute(
        f"INSERT INTO {REPLICATED} SELECT g, g / 5, 'kind' || (g % 20), md5(g::text), "
        f"timestamp '2024-01-01' + g * interval '1 second' FROM generate_series(1, {int(rows)}) g"
    )
    pg.execute(f"VACUUM ANALYZE {REPLICATED}")
    out = [f"### replicate, {rows:,} rows to 3 destinations", "",
           "| run | seconds | rows/s a destination | peak RSS MB |", "|---|---:|---:|---:|"]  # fmt: skip
    for extra in ([], ["--group-column", "tx"]):
        with my.cursor() as cur:
            cur.execute(f"CREATE DATABASE IF NOT EXISTS `{my2}`")
            for db in (parse_url(MYSQL_URL).database, my2):
                cur.execute(f"DROP TABLE IF EXISTS `{db}`.{REPLICATED}")
                cur.execute(f"CREATE TABLE `{db}`.{REPLICATED} {EVENTS_MY}")
        pg2.execute(f"DROP TABLE IF EXISTS {REPLICATED}")
        pg2.execute(f"CREATE TABLE {REPLICATED} {EVENTS_PG}")
        command = [str(TABLESYNC), "replicate", "--table", REPLICATED, PG_URL, MYSQL_URL, my2_url, pg2_url]
        seconds, rss, _ = timed_child([*command, "--no-progress", *extra])
        out.append(f"| tablesync replicate {' '.join(extra)} | {seconds:.2f} | {rows / seconds:,.0f} | {rss:.0f} |")
        print(out[-1], flush=True)
    pg.execute(f"DROP TABLE IF EXISTS {REPLICATED}")
    pg2.execute(f"DROP TABLE IF EXISTS {REPLICATED}")
    with my.cursor() as cur:
        for db in (parse_url(MYSQL_URL).database, my2):
            cur.execute(f"DROP TABLE IF EXISTS `{db}`.{REPLICATED}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000, help="a second, smaller size: memory must stay flat")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--write-docs", type=Path)
    args = parser.parse_args(argv)
    sections: list[str] = []
    with tempfile.TemporaryDirectory(prefix="ts-copy-bench-") as tmp:
        for rows in [args.small, args.rows] if args.small else [args.rows]:
            sections += [*bench(rows, args.reps, Path(tmp)), ""]
    sections += [*bench_replicate(args.rows), ""]
    print("\n".join(sections))
    if args.write_docs:
        command = f"python bench/copy_bench.py --rows {args.rows} --small {args.small} --reps {args.reps}"
        body = "\n".join([f"`{command}`, {time.strftime('%Y-%m-%d')}, {machine()}.", "", *sections])
        write_block(args.write_docs, "copy", body + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
