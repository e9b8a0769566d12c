"""Repair's write transaction on a database connection: lock the rows, let the caller read the
source, then write each row only where it is still as the caller read it. Mixed into SqlConnector,
whose connection runs the statements its dialect builds."""

from __future__ import annotations

import abc
import contextlib
from collections.abc import Sequence
from typing import Any

from ..errors import DatabaseError
from ..models import Key, RowWrite, TablePlan, WriteFailure, WriteOutcome
from .base import SqlDialect

# The savepoint after the lock, to redo a batch row by row when one of its statements fails; and
# the savepoint around each row while it is redone.
BATCH_SAVEPOINT = "ts_batch"
ROW_SAVEPOINT = "ts_row"

Runnable = tuple[int, str, list[Any]]  # (position in the batch, SQL, parameters)


class SqlWriter(abc.ABC):
    """The write operations of a connector opened for writing (read_only=False)."""

    sql_dialect: SqlDialect

    @abc.abstractmethod
    def execute(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    @abc.abstractmethod
    def execute_many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abc.abstractmethod
    def literal(self, value: Any) -> str: ...

    @abc.abstractmethod
    def _rows_by_key(self, plan: TablePlan, keys: Sequence[Key], *, lock: bool) -> list[dict[str, str | None]]: ...

    def write_rows(self, plan: TablePlan, writes: Sequence[RowWrite], dry_run: bool = False) -> WriteOutcome:
        """Applies a batch of writes in one transaction, each only where the row is still as the
        caller read it (`expected`): the rows are locked and read again first, and a row that
        changed is left alone (`changed`). For a caller that cannot hold a transaction open (a
        connector Lambda); lock_rows and write_locked let one that can read the source after the
        lock. Failing statements as in write_locked."""
        if dry_run:
            d = self.sql_dialect
            statements = [
                d.write_sql(plan, w.action, [self.literal(v) for v in d.write_params(plan, w)]) + ";" for w in writes
            ]
            return WriteOutcome(statements=statements)
        current = {_row_key_texts(plan, row): row for row in self.lock_rows(plan, [w.key for w in writes])}
        unchanged = [i for i, w in enumerate(writes) if current.get(_key_texts(w.key)) == w.expected]
        outcome = self.write_locked(plan, [writes[i] for i in unchanged])
        kept = set(unchanged)
        return WriteOutcome(
            applied=[unchanged[i] for i in outcome.applied],
            changed=[i for i in range(len(writes)) if i not in kept],
            failed=[f.model_copy(update={"index": unchanged[f.index]}) for f in outcome.failed],
        )

    def lock_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        """Begins a write transaction and locks the rows holding the keys (SELECT ... FOR UPDATE;
        SQLite: BEGIN IMMEDIATE locks the database); returns them as fetch_rows does. The caller
        then reads the source, so that what it writes is never older than what it replaces, and
        ends the transaction with write_locked or rollback."""
        self.execute(self.sql_dialect.begin_sql, [])
        try:
            rows = self._rows_by_key(plan, keys, lock=True)
            self.execute(f"SAVEPOINT {BATCH_SAVEPOINT}", [])
        except BaseException:
            self._rollback()
            raise
        return rows

    def write_locked(self, plan: TablePlan, writes: Sequence[RowWrite]) -> WriteOutcome:
        """Applies the writes in the transaction lock_rows began, and commits. When a statement
        fails for a reason retrying will not fix, the batch goes back to the savepoint after the
        lock and is redone with a savepoint per row, so exactly the failing rows are left out,
        each with its reason. A transient error (lost connection, deadlock, lock timeout) rolls
        the transaction back and is raised."""
        d = self.sql_dialect
        shapes = {action: d.write_sql(plan, action) for action in ("insert", "update", "delete")}
        runnable = [(i, shapes[w.action], d.write_params(plan, w)) for i, w in enumerate(writes)]
        try:
            try:
                outcome = self._execute_writes(runnable, isolate=False)
            except DatabaseError:
                self.execute(f"ROLLBACK TO SAVEPOINT {BATCH_SAVEPOINT}", [])
                outcome = self._appeared(plan, writes, self._execute_writes(runnable, isolate=True))
            self.execute("COMMIT", [])
        except BaseException:
            self._rollback()
            raise
        return outcome

    def _appeared(self, plan: TablePlan, writes: Sequence[RowWrite], outcome: WriteOutcome) -> WriteOutcome:
        """An insert refused while its key is there now lost to another writer (a row that did
        not exist could not be locked): the row appeared under the repair, so it is `changed`
        (left alone, to be checked again), not a failure. A locking read sees the newest row."""
        inserts = [f for f in outcome.failed if writes[f.index].action == "insert"]
        if not inserts:
            return outcome
        rows = self._rows_by_key(plan, [writes[f.index].key for f in inserts], lock=True)
        present = {_row_key_texts(plan, row) for row in rows}
        appeared = {f.index for f in inserts if _key_texts(writes[f.index].key) in present}
        return outcome.model_copy(
            update={
                "changed": [*outcome.changed, *sorted(appeared)],
                "failed": [f for f in outcome.failed if f.index not in appeared],
            }
        )

    def rollback(self) -> None:
        """Ends the transaction lock_rows began without writing."""
        self._rollback()

    def _rollback(self) -> None:
        with contextlib.suppress(Exception):  # the connection may be gone; the server rolls back then
            self.execute("ROLLBACK", [])

    def _execute_writes(self, runnable: Sequence[Runnable], *, isolate: bool) -> WriteOutcome:
        outcome = WriteOutcome()
        if not isolate:
            # Statements of one shape run as one batch (a multi-row INSERT on MySQL, a pipeline on
            # PostgreSQL): the keys are distinct, so their order does not matter.
            batched: dict[str, list[Sequence[Any]]] = {}
            for index, sql, params in runnable:
                batched.setdefault(sql, []).append(params)
                outcome.applied.append(index)
            for sql, rows in batched.items():
                self.execute_many(sql, rows)
            return outcome
        for index, sql, params in runnable:
            self.execute(f"SAVEPOINT {ROW_SAVEPOINT}", [])
            try:
                self.execute(sql, params)
            except DatabaseError as exc:
                self.execute(f"ROLLBACK TO SAVEPOINT {ROW_SAVEPOINT}", [])
                outcome.failed.append(WriteFailure(index=index, reason=str(exc)))
                continue
            self.execute(f"RELEASE SAVEPOINT {ROW_SAVEPOINT}", [])
            outcome.applied.append(index)
        return outcome


def _row_key_texts(plan: TablePlan, row: dict[str, str | None]) -> tuple[str | None, ...]:
    """A fetched row's key as canonical texts, in key order."""
    return tuple(row[c.name] for c in plan.key)


def _key_texts(key: Key) -> tuple[str, ...]:
    """A key's canonical texts: its JSON values as text (integers, text, lowercase UUIDs)."""
    return tuple(str(v) for v in key)
