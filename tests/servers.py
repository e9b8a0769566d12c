"""The test servers (tests/conftest.py and the test modules both import these): PostgreSQL and
MariaDB on 127.0.0.1, in the databases TABLESYNC_TEST_PG / TABLESYNC_TEST_MYSQL name, so that runs
side by side can each have their own (e.g. .../test_a)."""

from __future__ import annotations

import os
from urllib.parse import urlsplit

PG_URL = os.environ.get("TABLESYNC_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
MYSQL_URL = os.environ.get("TABLESYNC_TEST_MYSQL", "mysql://root@127.0.0.1:3306/test")
PG_DATABASE = urlsplit(PG_URL).path.lstrip("/") or "test"
MYSQL_DATABASE = urlsplit(MYSQL_URL).path.lstrip("/") or "test"
PG_DSN = f"host=127.0.0.1 port=5432 user=postgres dbname={PG_DATABASE}"
# pymysql.connect(**MYSQL_ARGS, ...): the test server's MariaDB database.
MYSQL_ARGS = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": "", "database": MYSQL_DATABASE}
