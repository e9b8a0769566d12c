"""Per-container singletons of the Lambda functions: their settings, the AWS clients, the
checkpoint store, the connectors, and (in a connector or writer Lambda) the database connection,
reused while the container is warm."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import TypeVar

from ..connectors import Connector, open_connector
from ..errors import ConnectError
from ..urls import DatabaseUrl
from .checkpoints import DynamoDbCheckpointStore, OwnerRunning
from .environment import ConnectorOpener, lambda_connectors, lambda_writers
from .secrets import url_from_secret
from .settings import (
    CheckpointSettings,
    ConnectorFunctions,
    ConnectorSettings,
    DatabaseSession,
    FunctionSettings,
    WriterFunctions,
    WriterSettings,
)
from .stores import SECRET_MAX_AGE_SECONDS as SECRET_MAX_AGE_SECONDS
from .stores import Clients, PowertoolsSecrets, SecretSource, checkpoint_store, execution_running

SettingsT = TypeVar("SettingsT", bound=FunctionSettings)


@cache
def settings(model: type[SettingsT]) -> SettingsT:
    """A function's settings, validated from its environment on the first call (the cold start; a
    bad environment fails every invocation with the same line) and kept while the container is."""
    return model.from_env()


@lru_cache(maxsize=1)
def clients() -> Clients:
    return Clients()


@lru_cache(maxsize=1)
def store() -> DynamoDbCheckpointStore:
    return checkpoint_store(settings(CheckpointSettings), clients())


@lru_cache(maxsize=1)
def connectors() -> ConnectorOpener:
    return lambda_connectors(settings(ConnectorFunctions), clients())


@lru_cache(maxsize=1)
def writers() -> ConnectorOpener:
    return lambda_writers(settings(WriterFunctions), clients())


def execution_status() -> OwnerRunning:
    return execution_running(clients())


@lru_cache(maxsize=1)
def writable_tables() -> dict[str, frozenset[str]]:
    """A writer's allow-list, fixed at deploy time (DatabaseNWritableTables)."""
    return WriterSettings.from_env().writable_tables


class DatabaseConnection:
    """A connector or writer Lambda's settings and database connection: read from its environment
    and opened from its secret on first use, dropped after a transient error so that the next
    invocation reconnects (and reads them again). A connector holds only the read-only user's
    secret (and session); a writer only the writer user's."""

    def __init__(
        self,
        model: type[ConnectorSettings] | type[WriterSettings],
        *,
        read_only: bool,
        secrets: SecretSource | None = None,
    ) -> None:
        self._connector: Connector | None = None
        self._settings: ConnectorSettings | WriterSettings | None = None
        self.model = model
        self.read_only = read_only
        self.secrets = secrets or PowertoolsSecrets()

    def settings(self) -> ConnectorSettings | WriterSettings:
        if self._settings is None:
            self._settings = self.model.from_env()
        return self._settings

    def get(self) -> Connector:
        if self._connector is None:
            settings = self.settings()
            data = self.secrets.secret(settings.secret_arn)
            url = session_settings(url_from_secret(data, settings.database_name), settings)
            self._connector = open_connector(
                url, connect_timeout=settings.connect_timeout_seconds, read_only=self.read_only
            )
        return self._connector

    def reset(self) -> None:
        self._settings = None
        if self._connector is not None:
            try:
                self._connector.close()
            finally:
                self._connector = None


def session_settings(url: DatabaseUrl, session: DatabaseSession | Mapping[str, str]) -> DatabaseUrl:
    """The deployment's TLS and statement timeout for a database's sessions: verified TLS unless
    DATABASE_TLS says otherwise (a parameter, for local use), with the CA bundle DATABASE_CA_BUNDLE
    names (the RDS bundle in the layer; see README), and STATEMENT_TIMEOUT_SECONDS (`session`: a
    database function's settings, or the variables themselves)."""
    if url.dialect == "sqlite":
        return url
    if not isinstance(session, DatabaseSession):
        session = DatabaseSession.from_env(session)
    mode, bundle = session.database_tls, session.database_ca_bundle or None
    if mode.startswith("verify-") and bundle is not None and not os.path.isfile(bundle):
        raise ConnectError(
            f"verified TLS to {url.redacted()} needs the CA bundle {bundle}, which the layer lacks: run "
            "`make rds-ca` before `sam build` (README), or deploy with DatabaseCaBundle set to another file"
        )
    timeout = session.statement_timeout_seconds or None
    return dataclasses.replace(url, sslmode=mode, sslrootcert=bundle, statement_timeout=timeout)


database = DatabaseConnection(ConnectorSettings, read_only=True)
writer = DatabaseConnection(WriterSettings, read_only=False)
