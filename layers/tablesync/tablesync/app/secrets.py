"""A database's connection details from its Secrets Manager secret.

The secret is the JSON that RDS and `setup/create_checker.py` write:
`{"engine": "postgres" | "mysql" | "mariadb" | "sqlite", "host": ..., "port": ..., "username": ...,
"password": ..., "dbname": ...}` (SQLite: `{"engine": "sqlite", "path": "/file.db"}`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import InputError
from ..urls import DatabaseUrl

ENGINES = {
    "postgres": "postgresql",
    "postgresql": "postgresql",
    "aurora-postgresql": "postgresql",
    "mysql": "mysql",
    "mariadb": "mysql",
    "aurora-mysql": "mysql",
    "aurora": "mysql",
    "sqlite": "sqlite",
}


class DatabaseSecret(BaseModel):
    model_config = ConfigDict(extra="ignore")

    engine: str
    host: str | None = None
    port: int | None = None
    username: str | None = None
    password: str | None = None
    dbname: str | None = None
    path: str | None = None


def url_from_secret(data: Any, name: str) -> DatabaseUrl:
    """The DatabaseUrl a secret describes; errors name the secret, never its values."""
    try:
        secret = DatabaseSecret.model_validate(data)
    except ValidationError as exc:
        fields = ", ".join(str(e["loc"][0]) for e in exc.errors() if e.get("loc"))
        raise InputError(f"secret {name} is not a database secret (check: {fields})") from None
    dialect = ENGINES.get(secret.engine.lower())
    if dialect is None:
        raise InputError(f"secret {name} names an unsupported engine {secret.engine!r}")
    if dialect == "sqlite":
        if not secret.path:
            raise InputError(f"secret {name} (sqlite) needs a path")
        return DatabaseUrl(dialect="sqlite", path=secret.path)
    if not secret.host or not secret.dbname:
        raise InputError(f"secret {name} needs host and dbname")
    return DatabaseUrl(
        dialect=dialect,
        host=secret.host,
        port=secret.port,
        user=secret.username,
        password=secret.password,
        database=secret.dbname,
    )
