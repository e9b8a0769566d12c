"""Creates the read-only database user tablesync checks with, and stores its credentials as the
Secrets Manager secret a connector Lambda reads (or, with --writer, the user repairs write through).

    python setup/create_checker.py \\
        --admin-url 'postgresql://admin@orders.cluster-x.eu-west-1.rds.amazonaws.com:5432/shop?password_env=ADMIN_PW' \\
        --user tablesync_checker --schema public --secret-name tablesync/prod/orders-aurora

    python setup/create_checker.py --admin-url 'mysql://admin@orders-mysql:3306/shop?password_env=ADMIN_PW' \\
        --user tablesync_checker --secret-name tablesync/prod/orders-mysql

Grants, and nothing more:
- PostgreSQL: LOGIN, CONNECT on the database, USAGE on the schema, SELECT on its tables (also those
  created later, through default privileges), and read-only transactions by default;
- MySQL / MariaDB: SELECT on the database, at most 10 connections.

`--writer` creates the user the repair writes through instead (a target's DatabaseNWriterSecretArn;
never give one for a source): the same, plus INSERT, UPDATE and DELETE, and no read-only default.

The password is generated (48 random characters), set on the user and written only to the secret
(`{"engine", "host", "port", "username", "password", "dbname"}`, the format RDS uses); it is never
printed. Run again to rotate it. `--dry-run` prints the statements with the password masked and
changes nothing. AWS credentials and region come from the environment (AWS_ENDPOINT_URL too, so it
works against a local emulator). Needs tablesync installed (`pip install '.[app]'`)."""

from __future__ import annotations

import argparse
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


def postgres_statements(
    url: DatabaseUrl, user: str, schema: str, exists: bool, password: str, writer: bool = False
) -> list[Any]:
    """Statements built with psycopg.sql: every name quoted, the password a quoted literal
    (PostgreSQL takes no parameters in CREATE ROLE)."""
    from psycopg import sql

    role, db, nsp = sql.Identifier(user), sql.Identifier(url.database or ""), sql.Identifier(schema)
    create = "ALTER ROLE {} WITH LOGIN PASSWORD {}" if exists else "CREATE ROLE {} WITH LOGIN PASSWORD {}"
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


def create_postgres(url: DatabaseUrl, user: str, schema: str, password: str, dry_run: bool, writer: bool) -> None:
    import psycopg

    with psycopg.connect(
        host=url.host, port=url.port or 5432, user=url.user, password=url.password, dbname=url.database, autocommit=True
    ) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [user]).fetchone() is not None
        shown = MASK if dry_run else password
        for statement in postgres_statements(url, user, schema, exists, shown, writer):
            if dry_run:
                print(statement.as_string(conn) + ";")
            else:
                conn.execute(statement)


def create_mysql(url: DatabaseUrl, user: str, password: str, dry_run: bool, writer: bool) -> None:
    import pymysql

    database = (url.database or "").replace("`", "``")
    rights = "SELECT, INSERT, UPDATE, DELETE" if writer else "SELECT"
    statements = [
        ("CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", [user, password]),
        ("ALTER USER %s@'%%' IDENTIFIED BY %s WITH MAX_USER_CONNECTIONS 10", [user, password]),
        (f"GRANT {rights} ON `{database}`.* TO %s@'%%'", [user]),
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
    args = parser.parse_args(argv)
    password = ""
    try:
        url = parse_url(args.admin_url)
        if url.dialect == "sqlite":
            raise TablesyncError("SQLite has no users: point the secret at the file instead")
        password = new_password()
        if url.dialect == "postgresql":
            create_postgres(url, args.user, args.schema, password, args.dry_run, args.writer)
            engine, port = "postgres", url.port or 5432
        else:
            create_mysql(url, args.user, password, args.dry_run, args.writer)
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
