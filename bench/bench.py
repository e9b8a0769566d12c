"""Benchmark: tablesync against reladiff and against the databases' own full-table hash.

    python bench/bench.py                  # 1,000,000 rows, every scenario, writes docs/benchmarks.md
    python bench/bench.py --rows 10000000 --scenarios identical,diff_0_01
    python bench/bench.py --quick          # ~50,000 rows, one repetition, no reladiff (runs in CI)

For each scenario it creates a table in PostgreSQL (data from generate_series) and a copy in
MariaDB (from the sequence engine), injects known differences into the copy, then times, in
alternation: the floor (each database hashes the whole table once, both at the same time),
`tablesync diff`, and reladiff (latest release from PyPI, in its own virtualenv under bench/).
It checks that tablesync found exactly the injected differences, reports whether reladiff did,
and prints a markdown table per scenario.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pymysql
from tablesync.connectors import open_connector
from tablesync.models import TablePlan

ROOT = Path(__file__).resolve().parent.parent
PG_URL = os.environ.get("TABLESYNC_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TABLESYNC_BENCH_MYSQL", "mysql://root@127.0.0.1:3306/test")
RELADIFF_VENV = ROOT / "bench" / ".venv-reladiff"
TABLESYNC = Path(sys.executable).parent / "tablesync"
COLUMNS = ["qty", "name", "amount", "created_at", "note", "paid"]
RUN_TIMEOUT = 1800

# name -> (key kind, share of rows changed or None, contiguous block missing)
SCENARIOS: dict[str, tuple[str, float | None, int]] = {
    "identical": ("bigint", None, 0),
    "diff_0_01": ("bigint", 0.0001, 0),
    "diff_1": ("bigint", 0.01, 0),
    "block_missing": ("bigint", None, 10_000),
    "varchar_pk": ("varchar", 0.0001, 0),
    "composite_pk": ("composite", 0.0001, 0),
    "uuid_char": ("uuid_char", 0.0001, 0),
    "uuid_native": ("uuid_native", 0.0001, 0),
    "varchar_both_scan": ("varchar_icu", 0.0001, 0),
}
UUID_KINDS = ("uuid_char", "uuid_native")

KeyT = tuple[Any, ...]


@dataclass
class Expected:
    missing: set[KeyT] = field(default_factory=set)
    extra: set[KeyT] = field(default_factory=set)
    differing: set[KeyT] = field(default_factory=set)


@dataclass
class Measure:
    seconds: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    rows_read: int | None = None
    exact: bool | None = None
    failure: str | None = None


def key_of(kind: str, id_: int) -> KeyT:
    if kind in UUID_KINDS:
        return (uuid_of(id_),)
    if kind in ("varchar", "varchar_icu"):
        return (f"k{id_:012d}",)
    if kind == "composite":
        return (f"t{(id_ // 2) % 100}", id_)
    return (id_,)


def key_columns(kind: str) -> list[str]:
    if kind == "composite":
        return ["tenant", "id"]
    return ["id"] if kind == "bigint" else ["code"]


def _mysql_uuid(number: str) -> str:
    """MariaDB SQL for the version-4 UUID made of the MD5 of a number's text (PG_UUID's)."""
    md5 = f"MD5({number})"
    return (
        f"CONCAT(SUBSTR({md5}, 1, 8), '-', SUBSTR({md5}, 9, 4), '-4', SUBSTR({md5}, 14, 3), '-8', "
        f"SUBSTR({md5}, 18, 3), '-', SUBSTR({md5}, 21, 12))"
    )


# The same in PostgreSQL: version and variant digits set, as MariaDB's UUID type requires.
PG_UUID = "overlay(overlay(md5((2 * g)::text) placing '4' from 13) placing '8' from 17)::uuid"


def uuid_of(number: int) -> str:
    digits = hashlib.md5(str(number).encode()).hexdigest()
    digits = digits[:12] + "4" + digits[13:16] + "8" + digits[17:]
    return str(uuid.UUID(digits))


# --- setup ---------------------------------------------------------------------------------------
def pg_setup(conn: psycopg.Connection, table: str, kind: str, rows: int) -> None:
    key_ddl = {
        "bigint": "id bigint PRIMARY KEY",
        "varchar": "code varchar(24) PRIMARY KEY, id bigint NOT NULL",
        # A linguistic collation (ICU's en-US): 'B' < 'a' in bytes, not here; the index cannot serve
        # byte order either.
        "varchar_icu": 'code varchar(24) COLLATE "en-US-x-icu" PRIMARY KEY, id bigint NOT NULL',
        "composite": "tenant varchar(16) NOT NULL, id bigint NOT NULL",
        "uuid_char": "code uuid PRIMARY KEY, id bigint NOT NULL",
        "uuid_native": "code uuid PRIMARY KEY, id bigint NOT NULL",
    }[kind]
    pk = ", PRIMARY KEY (tenant, id)" if kind == "composite" else ""
    key_values = {
        "bigint": "2 * g",
        "varchar": "'k' || lpad((2 * g)::text, 12, '0'), 2 * g",
        "varchar_icu": "'k' || lpad((2 * g)::text, 12, '0'), 2 * g",
        "composite": "'t' || (g % 100), 2 * g",
        "uuid_char": f"{PG_UUID}, 2 * g",
        "uuid_native": f"{PG_UUID}, 2 * g",
    }[kind]
    conn.execute(f"DROP TABLE IF EXISTS {table}")
    conn.execute(
        f"CREATE TABLE {table} ({key_ddl}, qty int NOT NULL, name varchar(64) NOT NULL, amount numeric(12,2) "
        f"NOT NULL, created_at timestamp(6) NOT NULL, note text, paid boolean NOT NULL{pk})"
    )
    conn.execute(
        f"INSERT INTO {table} SELECT {key_values}, g % 1000, 'customer ' || (g % 50000), ((g * 37) % 100000) / 100.0, "
        "timestamp '2024-01-01' + g * interval '1 second' + (g % 1000000) * interval '1 microsecond', "
        "CASE WHEN g % 5 = 0 THEN NULL ELSE md5(g::text) END, g % 2 = 0 "
        f"FROM generate_series(1, {int(rows)}) g"
    )
    conn.execute(f"VACUUM ANALYZE {table}")


def mysql_setup(conn: Any, table: str, kind: str, rows: int) -> None:
    key_ddl = {
        "bigint": "id bigint PRIMARY KEY",
        "varchar": "code varchar(24) PRIMARY KEY, id bigint NOT NULL",
        "varchar_icu": "code varchar(24) PRIMARY KEY, id bigint NOT NULL",
        "composite": "tenant varchar(16) NOT NULL, id bigint NOT NULL",
        "uuid_char": "code char(36) PRIMARY KEY, id bigint NOT NULL",
        "uuid_native": "code uuid PRIMARY KEY, id bigint NOT NULL",
    }[kind]
    pk = ", PRIMARY KEY (tenant, id)" if kind == "composite" else ""
    key_values = {
        "bigint": "2 * seq",
        "varchar": "CONCAT('k', LPAD(2 * seq, 12, '0')), 2 * seq",
        "varchar_icu": "CONCAT('k', LPAD(2 * seq, 12, '0')), 2 * seq",
        "composite": "CONCAT('t', seq % 100), 2 * seq",
        "uuid_char": f"{_mysql_uuid('2 * seq')}, 2 * seq",
        "uuid_native": f"{_mysql_uuid('2 * seq')}, 2 * seq",
    }[kind]
    with conn.cursor() as cur:
        cur.execute(f"DROP TABLE IF EXISTS {table}")
        cur.execute(
            f"CREATE TABLE {table} ({key_ddl}, qty int NOT NULL, name varchar(64) NOT NULL, amount decimal(12,2) "
            f"NOT NULL, created_at datetime(6) NOT NULL, note text, paid tinyint(1) NOT NULL{pk}) "
            "DEFAULT CHARSET utf8mb4"
        )
        cur.execute(
            f"INSERT INTO {table} SELECT {key_values}, seq % 1000, CONCAT('customer ', seq % 50000), "
            "((seq * 37) % 100000) / 100.0, TIMESTAMP('2024-01-01') + INTERVAL seq SECOND + "
            "INTERVAL (seq % 1000000) MICROSECOND, CASE WHEN seq % 5 = 0 THEN NULL ELSE MD5(seq) END, seq % 2 = 0 "
            f"FROM seq_1_to_{int(rows)}"
        )


def inject(conn: Any, table: str, kind: str, rows: int, share: float | None, block: int) -> Expected:
    """Changes the MariaDB copy (conn None: only tells what a run changed): updates, deletes and
    inserts spread evenly (share of the rows), or one contiguous block of missing rows. Returns the
    keys a correct diff reports."""
    expected = Expected()
    statements: list[str] = []
    if share:
        per_class = max(1, round(rows * share) // 3)
        step = max(1, rows // per_class)
        period = 2 * step  # ids are 2g; g % step == r  <=>  id % (2 step) == 2r
        new_key = {
            "bigint": "id + 1",
            "varchar": "CONCAT('k', LPAD(id + 1, 12, '0')), id + 1",
            "varchar_icu": "CONCAT('k', LPAD(id + 1, 12, '0')), id + 1",
            "composite": "tenant, id + 1",
            "uuid_char": f"{_mysql_uuid('id + 1')}, id + 1",
            "uuid_native": f"{_mysql_uuid('id + 1')}, id + 1",
        }[kind]
        statements += [
            f"UPDATE {table} SET qty = qty + 1 WHERE id % {period} = 6",
            f"DELETE FROM {table} WHERE id % {period} = 10",
            f"INSERT INTO {table} SELECT {new_key}, qty, name, amount, created_at, note, paid "
            f"FROM {table} WHERE id % {period} = 14",
        ]
        for g in range(1, rows + 1):
            if g % step == 3:
                expected.differing.add(key_of(kind, 2 * g))
            elif g % step == 5:
                expected.missing.add(key_of(kind, 2 * g))
            elif g % step == 7:
                odd = 2 * g + 1
                expected.extra.add((f"t{g % 100}", odd) if kind == "composite" else key_of(kind, odd))
    if block:
        first = rows // 2
        statements.append(f"DELETE FROM {table} WHERE id BETWEEN {2 * first} AND {2 * (first + block - 1)}")
        expected.missing |= {key_of(kind, 2 * g) for g in range(first, first + block)}
    if conn is not None:
        with conn.cursor() as cur:
            for statement in statements:
                cur.execute(statement)
    return expected


# --- runs ----------------------------------------------------------------------------------------
def floor_seconds(table: str, key: list[str]) -> float:
    """Each database hashes the whole table once with tablesync's own row hash, both at once."""
    plans: list[tuple[Any, TablePlan]] = []
    for url in (PG_URL, MYSQL_URL):
        conn = open_connector(url)
        schema = conn.describe(table)
        cols = [c for c in schema.columns if c.name not in key]
        plans.append((conn, TablePlan(table=table, key=[schema.column(k) for k in key], columns=cols)))
    threads = [threading.Thread(target=conn.checksum, args=(plan, None, None)) for conn, plan in plans]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    for conn, _ in plans:
        conn.close()
    return elapsed


def run_measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, str, str]:
    """Wall time, peak RSS (MB) of the process itself (from wait4), exit status, stdout, stderr."""
    started = time.monotonic()
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True
    )
    streams: dict[str, str] = {}
    readers = [
        threading.Thread(target=lambda n=n, f=f: streams.__setitem__(n, f.read()))  # type: ignore[misc]
        for n, f in (("out", proc.stdout), ("err", proc.stderr))
    ]
    for reader in readers:
        reader.start()
    killer = threading.Timer(RUN_TIMEOUT, proc.kill)
    killer.start()
    _, status, usage = os.wait4(proc.pid, 0)
    killer.cancel()
    elapsed = time.monotonic() - started
    for reader in readers:
        reader.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return elapsed, usage.ru_maxrss / 1024, proc.returncode, streams.get("out", ""), streams.get("err", "")


def tablesync_run(table: str, threads: int) -> tuple[float, float, dict[str, Any] | None, str]:
    command = [str(TABLESYNC), "diff", "--table", table, PG_URL, MYSQL_URL, "--format", "json", "--no-progress"]
    command += ["--threads", str(threads)]
    elapsed, rss, code, out, err = run_measured(command)
    if code not in (0, 1):
        return elapsed, rss, None, (err.strip().splitlines() or ["exit " + str(code)])[-1]
    return elapsed, rss, json.loads(out), ""


def ensure_reladiff() -> Path | None:
    exe = RELADIFF_VENV / "bin" / "reladiff"
    if exe.exists():
        return exe
    print("installing reladiff (latest from PyPI) into", RELADIFF_VENV, file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(RELADIFF_VENV)], check=True)
    pip = [str(RELADIFF_VENV / "bin" / "pip"), "install", "--quiet", "--upgrade"]
    result = subprocess.run([*pip, "reladiff[postgresql,mysql]"], capture_output=True, text=True)
    if result.returncode != 0:
        print("could not install reladiff:", result.stderr.strip().splitlines()[-1:], file=sys.stderr)
        return None
    return exe


def reladiff_run(exe: Path, table: str, kind: str, threads: int) -> tuple[float, Expected | None, str]:
    key = key_columns(kind)
    command = [str(exe), PG_URL, table, MYSQL_URL, table, "--json", "-j", str(threads)]
    for column in key:
        command += ["-k", column]
    for column in COLUMNS:
        command += ["-c", column]
    env = dict(os.environ, COLUMNS="1000000")  # its console would wrap JSON lines at 80 columns
    elapsed, _, code, out, err = run_measured(command, env)
    if code != 0:
        return elapsed, None, (err.strip().splitlines() or [f"exit {code}"])[-1][:200]
    # reladiff logs some refusals ("Cannot use a column of type Text() as a key") and exits 0.
    errors = [line.split(" ERROR - ", 1)[1].strip() for line in err.splitlines() if " ERROR - " in line]
    if errors:
        return elapsed, None, f"cannot run: {errors[0][:200]}"
    minus: set[KeyT] = set()
    plus: set[KeyT] = set()
    for line in out.splitlines():
        line = line.strip()
        if not line:
            continue
        sign, values = json.loads(line)
        raw = tuple(values[: len(key)])
        typed = tuple(
            int(v) if k == "id" else str(v).lower() if kind in UUID_KINDS else v for k, v in zip(key, raw, strict=True)
        )
        (minus if sign == "-" else plus).add(typed)
    return elapsed, Expected(missing=minus - plus, extra=plus - minus, differing=minus & plus), ""


def found_of(result: dict[str, Any]) -> Expected:
    target = result["targets"][0]
    return Expected(
        missing={tuple(k) for k in target["missing"]},
        extra={tuple(k) for k in target["extra"]},
        differing={tuple(k) for k in target["differing"]},
    )


# --- report --------------------------------------------------------------------------------------
def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    with psycopg.connect(_pg_dsn(), autocommit=True) as pg:
        pg_version = pg.execute("SHOW server_version").fetchone()[0]  # type: ignore[index]
    conn = _mysql_conn()
    with conn.cursor() as cur:
        cur.execute("SELECT VERSION()")
        my_version = cur.fetchone()[0]
    conn.close()
    return (
        f"{os.cpu_count()} cores ({cpu}), {mem_gb:.0f} GiB RAM, {platform.system()} {platform.release()}; "
        f"PostgreSQL {pg_version} and MariaDB {my_version} on the same machine (127.0.0.1); "
        f"Python {platform.python_version()}"
    )


def _pg_dsn() -> str:
    from tablesync.urls import parse_url

    u = parse_url(PG_URL)
    return f"host={u.host} port={u.port or 5432} user={u.user} dbname={u.database}" + (
        f" password={u.password}" if u.password else ""
    )


def _mysql_conn() -> Any:
    from tablesync.urls import parse_url

    u = parse_url(MYSQL_URL)
    return pymysql.connect(
        host=u.host,
        port=u.port or 3306,
        user=u.user or "root",
        password=u.password or "",
        database=u.database,
        autocommit=True,
    )


def render(name: str, rows: int, measures: dict[str, Measure]) -> str:
    def med(m: Measure) -> float | None:
        return statistics.median(m.seconds) if m.seconds else None

    floor = med(measures["floor"])
    rd = med(measures["reladiff"]) if "reladiff" in measures else None
    lines = [
        f"### {name} ({rows:,} rows)",
        "",
        "| run | median s | x floor | x reladiff | rows read out | peak RSS MB | exact |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for label, m in measures.items():
        s = med(m)
        if m.failure and s is None:
            lines.append(f"| {label} | failed: {m.failure} | | | | | |")
            continue
        ratio_floor = f"{s / floor:.2f}" if s and floor else ""
        ratio_rd = f"{s / rd:.2f}" if s and rd and label != "reladiff" else ""
        rss = f"{max(m.rss_mb):.0f}" if m.rss_mb and max(m.rss_mb) > 0 else ""
        read = f"{m.rows_read:,}" if m.rows_read is not None else ""
        exact = "" if m.exact is None else ("yes" if m.exact else f"NO {m.failure or ''}".strip())
        lines.append(f"| {label} | {s:.2f} | {ratio_floor} | {ratio_rd} | {read} | {rss} | {exact} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--quick", action="store_true", help="~50,000 rows, one repetition, no reladiff")
    parser.add_argument("--no-reladiff", action="store_true")
    parser.add_argument("--write-docs", type=Path, help="write the report here (docs/benchmarks.md)")
    parser.add_argument("--section", default="1m", help="the block of --write-docs to replace (1m, 10m)")
    parser.add_argument("--keep-tables", action="store_true", help="leave the tables for a later --reuse-tables")
    parser.add_argument("--reuse-tables", action="store_true", help="use tables kept by an earlier run as they are")
    parser.add_argument("--prefix", help="table name prefix (default ts_bench_, ts_benchq_ with --quick)")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.reps, args.no_reladiff = 50_000, 1, True
    prefix = args.prefix or ("ts_benchq_" if args.quick else "ts_bench_")
    names = [n.strip() for n in args.scenarios.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    reladiff = None if args.no_reladiff else ensure_reladiff()

    pg = psycopg.connect(_pg_dsn(), autocommit=True)
    my = _mysql_conn()
    sections = []
    all_exact = True
    for name in names:
        kind, share, block = SCENARIOS[name]
        table = f"{prefix}{name}"
        if args.reuse_tables:
            expected = inject(None, table, kind, args.rows, share, block)
        else:
            print(f"== {name}: creating {args.rows:,} rows in PostgreSQL and MariaDB", file=sys.stderr, flush=True)
            pg_setup(pg, table, kind, args.rows)
            mysql_setup(my, table, kind, args.rows)
            expected = inject(my, table, kind, args.rows, share, block)
            with my.cursor() as cur:
                cur.execute(f"ANALYZE TABLE {table}")
        key = key_columns(kind)
        measures: dict[str, Measure] = {"floor": Measure(), "tablesync": Measure()}
        if reladiff:
            measures["reladiff"] = Measure()
        for rep in range(args.reps):
            measures["floor"].seconds.append(floor_seconds(table, key))
            elapsed, rss, result, failure = tablesync_run(table, args.threads)
            m = measures["tablesync"]
            if result is None:
                m.failure = failure
            else:
                m.seconds.append(elapsed)
                m.rss_mb.append(rss)
                m.rows_read = result.get("rows_read")
                got = found_of(result)
                m.exact = got == expected
                if not m.exact:
                    m.failure = (
                        f"missing {len(got.missing)}/{len(expected.missing)}, extra {len(got.extra)}/"
                        f"{len(expected.extra)}, differing {len(got.differing)}/{len(expected.differing)}"
                    )
            if reladiff:
                elapsed, rd_found, failure = reladiff_run(reladiff, table, kind, args.threads)
                rm = measures["reladiff"]
                if rd_found is None:
                    rm.failure = failure
                else:
                    rm.seconds.append(elapsed)
                    rm.exact = rd_found == expected
                    if not rm.exact:
                        rm.failure = (
                            f"missing {len(rd_found.missing)}/{len(expected.missing)}, extra {len(rd_found.extra)}/"
                            f"{len(expected.extra)}, differing {len(rd_found.differing)}/{len(expected.differing)}"
                        )
            print(f"   repetition {rep + 1}/{args.reps} done", file=sys.stderr, flush=True)
        section = render(name, args.rows, measures)
        print(section + "\n", flush=True)
        sections.append(section)
        all_exact &= bool(measures["tablesync"].exact)
        if not args.keep_tables:
            pg.execute(f"DROP TABLE IF EXISTS {table}")
            with my.cursor() as cur:
                cur.execute(f"DROP TABLE IF EXISTS {table}")
    if args.write_docs:
        command = "python bench/bench.py " + " ".join(argv if argv is not None else sys.argv[1:])
        command = command.replace(" --reuse-tables", "").replace(" --keep-tables", "")
        write_docs(args.write_docs, sections, args, command.strip())
    pg.close()
    my.close()
    if not all_exact:
        print("tablesync did not find exactly the injected differences", file=sys.stderr)
        return 1
    return 0


def write_docs(path: Path, sections: list[str], args: argparse.Namespace, command: str) -> None:
    """Writes the run's results into the page's `--section` block."""
    body = "\n".join(
        [
            f"Measured {time.strftime('%Y-%m-%d')} on: {machine()}.",
            "",
            f"Command: `{command}`, {args.reps} repetition(s) per scenario, alternating floor, tablesync "
            f"and reladiff; medians shown. Threads: {args.threads} for both tools.",
            "",
            *[s + "\n" for s in sections],
        ]
    )
    write_block(path, args.section, body)


def write_block(path: Path, name: str, body: str) -> None:
    """Replaces the block between `<!-- results:NAME -->` and `<!-- /results:NAME -->` in the page
    (appending it when missing), leaving the rest of the page as it is."""
    begin, end = f"<!-- results:{name} -->", f"<!-- /results:{name} -->"
    page = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{begin}\n{body}{end}"
    if begin in page and end in page:
        page = page.split(begin)[0] + block + page.split(end, 1)[1]
    else:
        page = page.rstrip() + "\n\n" + block + "\n"
    path.write_text(page)


if __name__ == "__main__":
    sys.exit(main())
