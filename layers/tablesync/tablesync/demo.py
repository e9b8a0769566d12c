"""`tablesync demo`: two SQLite databases holding a customers table, the copy drifted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

ROWS = 5_000
SCHEMA = """
CREATE TABLE customers (
    id INTEGER PRIMARY KEY,
    name VARCHAR(80) NOT NULL,
    email TEXT,
    balance NUMERIC(12, 2),
    score DOUBLE,
    active BOOLEAN,
    updated_at TIMESTAMP
)
"""


def _rows() -> list[tuple[object, ...]]:
    return [
        (
            i,
            f"Customer {i}",
            f"c{i}@example.com" if i % 7 else None,
            f"{(i * 37) % 10000}.{i % 100:02d}",
            i / 3,
            i % 2,
            f"2026-01-{1 + i % 28:02d} 12:{i % 60:02d}:00.{i:06d}",
        )
        for i in range(1, ROWS + 1)
    ]


def make_demo_databases(folder: Path) -> tuple[Path, Path]:
    source, target = folder / "source.db", folder / "replica.db"
    for path in (source, target):
        with sqlite3.connect(path) as conn:
            conn.execute(SCHEMA)
            conn.executemany("INSERT INTO customers VALUES (?, ?, ?, ?, ?, ?, ?)", _rows())
    with sqlite3.connect(target) as conn:
        conn.execute("DELETE FROM customers WHERE id IN (17, 2500)")  # a failed batch
        conn.execute("INSERT INTO customers VALUES (5001, 'Ghost', NULL, 0, 0, 0, NULL)")  # extra row
        conn.execute("UPDATE customers SET name = name || ' ' WHERE id = 42")  # a trailing space
        conn.execute("UPDATE customers SET email = NULL WHERE id = 1000")  # NULL, not ''
        conn.execute("UPDATE customers SET updated_at = '2026-01-05 12:03:00.000004' WHERE id = 3003")
    return source, target
