"""Creates the read-only database user tablesync checks with, and stores its credentials as the
Secrets Manager secret a connector Lambda reads (or, with --writer, the user repairs write through).

    python setup/create_checker.py \\
        --admin-url 'postgresql://admin@orders.cluster-x.eu-west-1.rds.amazonaws.com:5432/shop?password_env=ADMIN_PW' \\
        --user tablesync_checker --schema public --secret-name tablesync/prod/orders-aurora

    python setup/create_checker.py --admin-url 'mysql://admin@orders-mysql:3306/shop?password_env=ADMIN_PW' \\
        --user tablesync_checker --secret-name tablesync/prod/orders-mysql

Grants, and nothing more:
- PostgreSQL: LOGIN, CONNECT on the database, USAGE on the schema, SELECT on its tables (also those
  created later, through default privileges), read-only transactions by default, and at most
  `--connection-limit` sessions (10);
- MySQL / MariaDB: SELECT on the database, at most `--connection-limit` connections (10), from the
  hosts `--client-host` allows (a MySQL host pattern: the connectors' subnet, e.g. `10.0.%`).

`--writer` creates the user the repair writes through instead (a target's DatabaseNWriterSecretArn;
never give one for a source): the same, plus INSERT, UPDATE and DELETE, and no read-only default.

The password is generated (48 random characters), set on the user and written only to the secret
(`{"engine", "host", "port", "username", "password", "dbname"}`, the format RDS uses); it is never
printed, and PostgreSQL receives only its SCRAM-SHA-256 verifier (computed here), so the password
cannot reach the server's statement log. Run again to rotate it. `--dry-run` prints the
statements with the password masked and changes nothing. AWS credentials and region come from
the environment (AWS_ENDPOINT_URL too, so it works against a local emulator). Needs tablesync
installed (`pip install '.[app]'`)."""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import string
import sys
from typing import Any

from tablesync.errors import TablesyncError
from tablesync.urls import DatabaseUrl, parse_url

MASK = "********"


def new_password(length: int = 48) -> str:
    # Letters and digits only: no quoting surprises in any client or connection string.
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(length))


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for a password (RFC 5802 / 7677), as
    `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`: the server takes it as the
    password's verifier and never sees the password itself."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def postgres_statements(
    url: DatabaseUrl,
    user: str,
    schema: str,
    exists: bool,
    password: str,
    writer: bool = False,
    connection_limit: int = 10,
) -> list[Any]:
    """Statements built with psycopg.sql: every name quoted, the password's verifier a quoted
    literal (PostgreSQL takes no parameters in CREATE ROLE)."""
    from psycopg import sql

    role, db, nsp = sql.Identifier(user), sql.Identifier(url.database or ""), sql.Identifier(schema)
    limit = f" CONNECTION LIMIT {int(connection_limit)}"
    create = ("ALTER ROLE {} WITH LOGIN PASSWORD {}" if exists else "CREATE ROLE {} WITH LOGIN PASSWORD {}") + limit
    rights = sql.SQL("SELECT, INSERT, UPDATE, DELETE" if writer else "SELECT")
    read_only = "off" if writer else "on"
    return [
        sql.SQL(create).format(role, sql.Literal(password)),
        sql.SQL("ALTER ROLE {} SET default_transaction_read_only = " + read_only).format(role),
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(db, role),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(nsp, role),
        sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(rights, nsp, role),
        sql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT {} ON TABLES TO {}").format(nsp, rights, role),
    ]


def create_postgres(
    url: DatabaseUrl, user: str, schema: str, password: str, dry_run: bool, writer: bool, connection_limit: int
) -> None:
    import psycopg

    with psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.user, password=url.password, dbname=url.database, autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user]).fetchone() is not None
        shown = MASK if dry_run else scram_verifier(password)
        for statement in postgres_statements(url, user, schema, exists, shown, writer, connection_limit):
            if dry_run:
                print(statement.as_string(conn) + ";")
            else:
                conn.execute(statement)


def create_mysql(
    url: DatabaseUrl, user: str, password: str, dry_run: bool, writer: bool, connection_limit: int, client_host: str
) -> None:
    import pymysql

    database = (url.database or "").replace("`", "``")
    rights = "SELECT, INSERT, UPDATE, DELETE" if writer else "SELECT"
    statements = [
        ("CREATE USER IF NOT EXISTS %s@%s IDENTIFIED BY %s", [user, client_host, password]),
        (
            f"ALTER USER %s@%s IDENTIFIED BY %s WITH MAX_USER_CONNECTIONS {int(connection_limit)}",
            [user, client_host, password],
        ),
        (f"GRANT {rights} ON `{database}`.* TO %s@%s", [user, client_host]),
    ]
    conn = pymysql.connect(
        host=url.host, port=url.port or 3306, user=url.user, password=url.password or "", database=url.database
    )
    try:
        with conn.cursor() as cur:
            for statement, params in statements:
                if dry_run:
                    shown = [MASK if p == password else p for p in params]
                    print(cur.mogrify(statement, shown) + ";")
                else:
                    cur.execute(statement, params)
        conn.commit()
    finally:
        conn.close()


def store_secret(name: str, value: dict[str, Any], dry_run: bool) -> str:
    if dry_run:
        shown = {**value, "password": MASK}
        print(f"-- secret {name}: {json.dumps(shown)}")
        return name
    import boto3

    client = boto3.client("secretsmanager")
    body = json.dumps(value)
    try:
        arn: str = client.create_secret(Name=name, SecretString=body, Description="tablesync read-only checker")["ARN"]
    except client.exceptions.ResourceExistsException:
        arn = client.put_secret_value(SecretId=name, SecretString=body)["ARN"]
    return arn


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", required=True, help="a URL with the rights to create users (password_env=...)")
    parser.add_argument("--user", default="tablesync_checker")
    parser.add_argument("--schema", default="public", help="PostgreSQL schema whose tables may be read")
    parser.add_argument("--secret-name", required=True, help="e.g. tablesync/prod/orders-aurora")
    parser.add_argument("--host", help="host the connector reaches (default: the admin URL's)")
    parser.add_argument("--dry-run", action="store_true", help="print what would be done; change nothing")
    parser.add_argument("--writer", action="store_true", help="a user repairs may write through (targets only)")
    parser.add_argument("--connection-limit", type=int, default=10, help="sessions the user may hold at once (10)")
    parser.add_argument(
        "--client-host", default="%", help="MySQL: the hosts the user may connect from, e.g. 10.0.% (default %%: any)"
    )
    args = parser.parse_args(argv)
    password = ""
    try:
        url = parse_url(args.admin_url)
        if url.dialect == "sqlite":
            raise TablesyncError("SQLite has no users: point the secret at the file instead")
        password = new_password()
        if not 1 <= args.connection_limit <= 1000:
            raise TablesyncError("--connection-limit must be from 1 to 1000")
        if url.dialect == "postgresql":
            create_postgres(url, args.user, args.schema, password, args.dry_run, args.writer, args.connection_limit)
            engine, port = "postgres", url.port or 5432
        else:
            create_mysql(url, args.user, password, args.dry_run, args.writer, args.connection_limit, args.client_host)
            engine, port = "mysql", url.port or 3306
        secret = {
            "engine": engine,
            "host": args.host or url.host,
            "port": port,
            "username": args.user,
            "password": password,
            "dbname": url.database,
        }
        arn = store_secret(args.secret_name, secret, args.dry_run)
    except TablesyncError as exc:
        print(f"create_checker: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback (and never the password)
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if password:
            message = message.replace(password, MASK)
        print(f"create_checker: error: {type(exc).__name__}: {message}", file=sys.stderr)
        return 2
    if not args.dry_run:
        print(f"user {args.user} ready on {url.redacted()}; secret {arn}")
        print("deploy with: Database<N>Name=<name> Database<N>SecretArn=" + arn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
