"""Named exceptions. The CLI maps every TablesyncError to exit status 2; the state machine's
Retry and Catch clauses refer to these class names."""


class TablesyncError(Exception):
    """Base of every error tablesync reports as one clear line. `redacted` is the same line
    without the table's values (a key named as an example), for the app's logs and traces: the
    CLI shows the whole line to the user who ran it."""

    def __init__(self, *args: object, redacted: str | None = None) -> None:
        super().__init__(*args)
        self.redacted = redacted if redacted is not None else (str(args[0]) if args else "")


class InputError(TablesyncError):
    """Bad command-line option, URL, filter or check definition."""


class ConnectError(TablesyncError):
    """A database could not be reached or refused the credentials."""


class SchemaError(TablesyncError):
    """Unknown table or column, or source and target schemas that cannot be compared."""


class UnsupportedTypeError(SchemaError):
    """A compared column has a type tablesync cannot normalise."""


class KeyColumnError(SchemaError):
    """The chosen key is unusable: missing, NULL or duplicate values, unsupported type."""


class StateError(TablesyncError):
    """A saved state does not belong to this diff or cannot be read."""


class TransientDatabaseError(TablesyncError):
    """A database error worth retrying: lost connection, deadlock, lock timeout."""


class DatabaseUnavailableError(TransientDatabaseError):
    """A database cannot be reached for now: connection refused or lost, a timeout, a host name
    that does not resolve during a failover, the server starting up or shutting down, too many
    connections. Waited out, up to an outage budget (--max-outage; the app's OutageBudget)."""


class DatabaseError(TablesyncError):
    """A database error that retrying will not fix."""


class LeaseHeldError(TablesyncError):
    """Another execution holds the checkpoint of this table run; it is worked on elsewhere."""

    def __init__(self, message: str, holder: str = "", seconds: float = 0.0) -> None:
        super().__init__(message)
        self.holder = holder  # the execution that holds the lease
        self.seconds = seconds  # until its lease runs out


class OutageError(TablesyncError):
    """A database stayed away longer than the outage budget: the table fails with the database's
    reason (not retried), its state kept for a resume with the same run id."""


class CheckpointDamagedError(TablesyncError):
    """A checkpoint that cannot be trusted (undecodable, its checksum or its done flag disagreeing
    with its state, gone mid-run), or an item that never finishes: the table stops with one line."""


class CheckpointConflictError(TablesyncError):
    """The checkpoint changed since this invocation read it (a duplicated or retried invocation
    saved first); the state machine retries, and the next invocation resumes from the newer one."""
