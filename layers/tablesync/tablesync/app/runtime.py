"""Per-container singletons of the Lambda functions: settings, AWS clients, the checkpoint store,
the connectors, and (in a connector Lambda) the database connection, reused while the container
is warm."""

from __future__ import annotations

import os
from functools import lru_cache

from ..connectors import Connector, open_connector
from ..errors import InputError
from .checkpoints import DynamoDbCheckpointStore
from .secrets import url_from_secret
from .service import (
    Clients,
    ConnectorOpener,
    Settings,
    checkpoint_store,
    lambda_connectors,
    lambda_writers,
    parse_allow_list,
)

SECRET_MAX_AGE_SECONDS = 300


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings.from_env()


@lru_cache(maxsize=1)
def clients() -> Clients:
    return Clients()


@lru_cache(maxsize=1)
def store() -> DynamoDbCheckpointStore:
    return checkpoint_store(settings(), clients())


@lru_cache(maxsize=1)
def connectors() -> ConnectorOpener:
    return lambda_connectors(settings(), clients())


@lru_cache(maxsize=1)
def writers() -> ConnectorOpener:
    return lambda_writers(settings(), clients())


@lru_cache(maxsize=1)
def writable_tables() -> dict[str, frozenset[str]]:
    """A writer's allow-list, fixed at deploy time (DatabaseNWritableTables)."""
    return parse_allow_list(os.environ.get("WRITABLE_TABLES", ""))


class DatabaseConnection:
    """A connector or writer Lambda's database connection: opened from its secret on first use,
    dropped after a transient error so that the next invocation reconnects. A connector holds only
    the read-only user's secret (and session); a writer only the writer user's."""

    def __init__(self, secret_variable: str, *, read_only: bool) -> None:
        self._connector: Connector | None = None
        self.secret_variable = secret_variable
        self.read_only = read_only

    def get(self) -> Connector:
        if self._connector is None:
            from aws_lambda_powertools.utilities import parameters

            secret = os.environ.get(self.secret_variable, "")
            name = os.environ.get("DATABASE_NAME", secret)
            if not secret:
                if not self.read_only:
                    raise InputError(f"database {name} has no writer secret (DatabaseNWriterSecretArn): not repaired")
                raise InputError(f"{self.secret_variable} is not set for this connector")
            data = parameters.get_secret(secret, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
            timeout = float(os.environ.get("CONNECT_TIMEOUT_SECONDS", "10"))
            url = url_from_secret(data, name)
            self._connector = open_connector(url, connect_timeout=timeout, read_only=self.read_only)
        return self._connector

    def reset(self) -> None:
        if self._connector is not None:
            try:
                self._connector.close()
            finally:
                self._connector = None


database = DatabaseConnection("DATABASE_SECRET_ARN", read_only=True)
writer = DatabaseConnection("WRITER_SECRET_ARN", read_only=False)
