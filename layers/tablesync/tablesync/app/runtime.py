"""Per-container singletons of the Lambda functions: settings, AWS clients, the checkpoint store,
the connectors, and (in a connector Lambda) the database connection, reused while the container
is warm."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from functools import lru_cache

from ..connectors import Connector, open_connector
from ..errors import ConnectError, InputError
from ..urls import SSL_MODES, DatabaseUrl
from .checkpoints import DynamoDbCheckpointStore
from .environment import Clients, ConnectorOpener, Settings, checkpoint_store, lambda_connectors, lambda_writers
from .secrets import url_from_secret
from .serving import parse_allow_list

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
            url = session_settings(url_from_secret(data, name), os.environ)
            self._connector = open_connector(url, connect_timeout=timeout, read_only=self.read_only)
        return self._connector

    def reset(self) -> None:
        if self._connector is not None:
            try:
                self._connector.close()
            finally:
                self._connector = None


def session_settings(url: DatabaseUrl, env: Mapping[str, str]) -> DatabaseUrl:
    """The deployment's TLS and statement timeout for a database's sessions: verified TLS unless
    DATABASE_TLS says otherwise (a parameter, for local use), with the CA bundle DATABASE_CA_BUNDLE
    names (the RDS bundle in the layer; see README), and STATEMENT_TIMEOUT_SECONDS."""
    if url.dialect == "sqlite":
        return url
    mode = env.get("DATABASE_TLS", "verify-full")
    if mode not in SSL_MODES:
        raise InputError(f"DATABASE_TLS must be one of {', '.join(SSL_MODES)}, not {mode!r}")
    bundle = env.get("DATABASE_CA_BUNDLE") or None
    if mode.startswith("verify-") and bundle is not None and not os.path.isfile(bundle):
        raise ConnectError(
            f"verified TLS to {url.redacted()} needs the CA bundle {bundle}, which the layer lacks: run "
            "`make rds-ca` before `sam build` (README), or deploy with DatabaseCaBundle set to another file"
        )
    timeout = float(env.get("STATEMENT_TIMEOUT_SECONDS") or 0) or None
    return dataclasses.replace(url, sslmode=mode, sslrootcert=bundle, statement_timeout=timeout)


database = DatabaseConnection("DATABASE_SECRET_ARN", read_only=True)
writer = DatabaseConnection("WRITER_SECRET_ARN", read_only=False)
