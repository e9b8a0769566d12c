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
from .service import Clients, ConnectorOpener, Settings, checkpoint_store, lambda_connectors

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


class DatabaseConnection:
    """The connector Lambda's database connection: opened from the secret on first use, dropped
    after a transient error so that the next invocation reconnects."""

    def __init__(self) -> None:
        self._connector: Connector | None = None

    def get(self) -> Connector:
        if self._connector is None:
            from aws_lambda_powertools.utilities import parameters

            secret = os.environ.get("DATABASE_SECRET_ARN", "")
            if not secret:
                raise InputError("DATABASE_SECRET_ARN is not set for this connector")
            name = os.environ.get("DATABASE_NAME", secret)
            data = parameters.get_secret(secret, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
            timeout = float(os.environ.get("CONNECT_TIMEOUT_SECONDS", "10"))
            self._connector = open_connector(url_from_secret(data, name), connect_timeout=timeout, read_only=True)
        return self._connector

    def reset(self) -> None:
        if self._connector is not None:
            try:
                self._connector.close()
            finally:
                self._connector = None


database = DatabaseConnection()
