"""The connector operations over lambda:Invoke: `LambdaConnector` is a Connector whose every call is
an invocation of a connector Lambda, and `serve` is what that Lambda runs. Both sides use the same
table of operations, so a request and its answer are plain JSON checked against the same models.

The checksum Lambda runs outside the databases' VPCs and reaches them only this way: to the engine
it is one more Connector, not a second implementation."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

from .. import errors
from ..connectors import Connector
from ..dialects.portable import PortableType
from ..errors import TablesyncError, TransientDatabaseError
from ..models import (
    MAX_CHUNK_ROWS,
    MAX_KEYS_PER_REQUEST,
    MAX_SCAN_BUCKETS,
    MAX_SPANS_PER_REQUEST,
    Checksum,
    Column,
    Key,
    KeyRange,
    RowWrite,
    Span,
    SplitRequest,
    TablePlan,
    TableSchema,
    WriteOutcome,
    index_serves,
)
from .events import ConnectorRequest

# Sync invocation payloads are limited to 6 MB each way; answers above this are refused by the
# connector and the caller splits its request.
MAX_ANSWER_BYTES = 5_000_000
INVOKE_ATTEMPTS = 4


class AnswerTooLargeError(TablesyncError):
    """A connector answer would exceed the Lambda payload limit; the caller splits the request."""


@dataclass(frozen=True)
class Operation:
    args: dict[str, TypeAdapter[Any]]
    result: TypeAdapter[Any]


def _op(result: Any, **args: Any) -> Operation:
    return Operation({name: TypeAdapter(kind) for name, kind in args.items()}, TypeAdapter(result))


# Every list and size a request carries is bounded: no request makes a database do more at once.
ChunkRows = Annotated[int, Field(ge=1, le=4 * MAX_CHUNK_ROWS)]
Parts = Annotated[int, Field(ge=1, le=MAX_SCAN_BUCKETS)]
Spans = Annotated[list[Span], Field(max_length=MAX_SPANS_PER_REQUEST)]
Requests = Annotated[list[SplitRequest], Field(max_length=MAX_SPANS_PER_REQUEST)]
Keys = Annotated[list[Key], Field(max_length=MAX_KEYS_PER_REQUEST)]
Writes = Annotated[list[RowWrite], Field(max_length=MAX_KEYS_PER_REQUEST)]
Name = Annotated[str, Field(min_length=1, max_length=1_000)]

OPERATIONS: dict[str, Operation] = {
    "describe": _op(TableSchema, table=Name),
    "list_tables": _op(list[str], pattern=Name),
    "key_range": _op(KeyRange, plan=TablePlan),
    "validate_key": _op(None, plan=TablePlan),
    "null_keys": _op(list[Key], plan=TablePlan),
    "chunk_bounds": _op(Span, plan=TablePlan, bound=Key | None, size=ChunkRows, parts=Parts, reverse=bool),
    "split_points": _op(list[list[Key]], plan=TablePlan, requests=Requests),
    "sample_keys": _op(
        list[Key],
        plan=TablePlan,
        fraction=Annotated[float, Field(gt=0, le=1)],
        limit=Annotated[int, Field(ge=1, le=MAX_KEYS_PER_REQUEST)],
    ),
    "checksum": _op(Checksum, plan=TablePlan, lo=Key | None, hi=Key | None),
    "bucket_checksums": _op(list[list[Checksum]], plan=TablePlan, spans=Spans),
    "row_hashes": _op(list[tuple[Key, int]], plan=TablePlan, spans=Spans),
    "fetch_rows": _op(list[dict[str, str | None]], plan=TablePlan, keys=Keys),
    "write_rows": _op(WriteOutcome, plan=TablePlan, writes=Writes, dry_run=bool),
    # The copy's and the replication's (engine/bulk_copy.py): reads, then the writer's writes.
    "read_rows": _op(list[list[str | None]], plan=TablePlan, lo=Key | None, hi=Key | None),
    "key_after": _op(Key | None, plan=TablePlan, key=Key),
    "count_rows": _op(int, plan=TablePlan, lo=Key | None),
    "group_end": _op(Key | None, plan=TablePlan, lo=Key | None, hi=Key, column=Name),
    "table_exists": _op(bool, table=Name),
    "has_rows": _op(bool, table=Name),
    "portable_type": _op(PortableType, column=Column),
    "create_table": _op(str, table=Name, columns=list[tuple[Column, PortableType]], key=list[Name]),
    "load_rows": _op(
        None, plan=TablePlan, rows=Annotated[list[list[str | None]], Field(max_length=MAX_KEYS_PER_REQUEST)]
    ),
}

# Errors a connector Lambda raises travel as their class name (the errorType of a failed
# invocation) and are raised again by that name on the calling side.
ERRORS: dict[str, type[TablesyncError]] = {
    name: cls for name, cls in vars(errors).items() if isinstance(cls, type) and issubclass(cls, TablesyncError)
}
ERRORS["AnswerTooLargeError"] = AnswerTooLargeError


# --- serving (inside the connector Lambda) ---------------------------------------------------
def serve(request: ConnectorRequest, connector: Connector) -> dict[str, Any]:
    """Runs one operation on a connector. The answer is `{"result": ...}`, or, for an error
    tablesync knows, `{"error": {"type": <class name>, "message": ...}}`: expected errors travel
    in the answer (the same on AWS and on emulators, and no Lambda error metric for a bad table
    name); only a crash or a timeout is a failed invocation."""
    try:
        return {"result": _answer(request, connector)}
    except TablesyncError as exc:
        # Without the table's values: the answer reaches the checking Lambda's logs and traces.
        return {"error": {"type": type(exc).__name__, "message": exc.redacted}}


def _answer(request: ConnectorRequest, connector: Connector) -> Any:
    operation = OPERATIONS.get(request.op)
    if operation is None:
        raise errors.InputError(f"unknown connector operation {request.op!r}")
    unknown = set(request.args) - set(operation.args)
    if unknown:
        raise errors.InputError(f"unknown argument(s) for {request.op}: {', '.join(sorted(unknown))}")
    try:
        kwargs = {name: adapter.validate_python(request.args.get(name)) for name, adapter in operation.args.items()}
    except ValueError as exc:
        raise errors.InputError(f"bad arguments for {request.op}: {str(exc).splitlines()[0]}") from None
    answer = operation.result.dump_python(getattr(connector, request.op)(**kwargs), mode="json")
    if len(json.dumps(answer)) > MAX_ANSWER_BYTES:
        raise AnswerTooLargeError(f"the answer to {request.op} exceeds {MAX_ANSWER_BYTES} bytes")
    return answer


# --- calling (in the checksum Lambda) ----------------------------------------------------------
Invoke = Callable[[str, bytes], tuple[bytes, str | None]]  # (function, payload) -> (answer, error)


def boto3_invoke(client: Any) -> Invoke:
    """An Invoke over a boto3 Lambda client (RequestResponse invocations)."""

    def invoke(function: str, payload: bytes) -> tuple[bytes, str | None]:
        response = client.invoke(FunctionName=function, InvocationType="RequestResponse", Payload=payload)
        return response["Payload"].read(), response.get("FunctionError")

    return invoke


class LambdaConnector:
    """A Connector whose operations run in a connector Lambda. Transient failures (a lost database
    connection, throttled invocations) are retried with jittered backoff; an answer too large for
    one invocation is fetched in halves of the request."""

    def __init__(
        self, function: str, invoke: Invoke, *, dialect: str = "remote", sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.function = function
        self.dialect = dialect
        self._invoke = invoke
        self._sleep = sleep

    def _call(self, op: str, **args: Any) -> Any:
        operation = OPERATIONS[op]
        payload = json.dumps(
            {"op": op, "args": {k: operation.args[k].dump_python(v, mode="json") for k, v in args.items()}}
        ).encode()
        for attempt in range(1, INVOKE_ATTEMPTS + 1):
            try:
                body, function_error = self._invoke(self.function, payload)
            except Exception as exc:  # noqa: BLE001 - botocore raises many kinds; only throttling is retried
                if attempt < INVOKE_ATTEMPTS and _throttled(exc):
                    self._backoff(attempt)
                    continue
                raise TransientDatabaseError(f"cannot invoke connector {self.function}: {type(exc).__name__}") from None
            answer = json.loads(body or b"null")
            if not function_error and isinstance(answer, dict) and "result" in answer:
                return operation.result.validate_python(answer["result"])
            error = _remote_error(self.function, answer, function_error)
            if isinstance(error, TransientDatabaseError) and attempt < INVOKE_ATTEMPTS:
                self._backoff(attempt)
                continue
            raise error
        raise AssertionError("unreachable")

    def _backoff(self, attempt: int) -> None:
        self._sleep(min(8.0, 0.2 * 2**attempt) * (0.5 + random.random() / 2))

    def _halving(self, op: str, plan: TablePlan, items: Sequence[Any], name: str) -> list[Any]:
        """Calls `op` over a list argument, splitting the list while the answer is too large."""
        try:
            return list(self._call(op, plan=plan, **{name: list(items)}))
        except AnswerTooLargeError:
            if len(items) < 2:
                raise
            middle = len(items) // 2
            return self._halving(op, plan, items[:middle], name) + self._halving(op, plan, items[middle:], name)

    # --- the Connector operations ----------------------------------------------------------
    def describe(self, table: str) -> TableSchema:
        schema: TableSchema = self._call("describe", table=table)
        return schema

    def list_tables(self, pattern: str) -> list[str]:
        return list(self._call("list_tables", pattern=pattern))

    def key_range(self, plan: TablePlan) -> KeyRange:
        key_range: KeyRange = self._call("key_range", plan=plan)
        return key_range

    def validate_key(self, plan: TablePlan) -> None:
        self._call("validate_key", plan=plan)

    def null_keys(self, plan: TablePlan) -> list[Key]:
        return list(self._call("null_keys", plan=plan))

    def index_serves(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> bool:
        return index_serves(plan.key, lo, hi)

    def chunk_bounds(self, plan: TablePlan, bound: Key | None, size: int, parts: int, reverse: bool) -> Span:
        span: Span = self._call("chunk_bounds", plan=plan, bound=bound, size=size, parts=parts, reverse=reverse)
        return span

    def split_points(self, plan: TablePlan, requests: Sequence[SplitRequest]) -> list[list[Key]]:
        return self._halving("split_points", plan, requests, "requests")

    def sample_keys(self, plan: TablePlan, fraction: float, limit: int) -> list[Key]:
        return list(self._call("sample_keys", plan=plan, fraction=fraction, limit=limit))

    def checksum(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> Checksum:
        checksum: Checksum = self._call("checksum", plan=plan, lo=lo, hi=hi)
        return checksum

    def bucket_checksums(self, plan: TablePlan, spans: Sequence[Span]) -> list[list[Checksum]]:
        return self._halving("bucket_checksums", plan, spans, "spans")

    def row_hashes(self, plan: TablePlan, spans: Sequence[Span]) -> list[tuple[Key, int]]:
        return self._halving("row_hashes", plan, spans, "spans")

    def fetch_rows(self, plan: TablePlan, keys: Sequence[Key]) -> list[dict[str, str | None]]:
        return self._halving("fetch_rows", plan, keys, "keys")

    def write_rows(self, plan: TablePlan, writes: Sequence[RowWrite], dry_run: bool = False) -> WriteOutcome:
        """One invocation, one transaction. A batch whose request would not fit in one invocation
        is sent in parts, each its own transaction (positions in the answer stay the batch's)."""
        size = len(json.dumps([w.model_dump(mode="json") for w in writes]))
        if size <= MAX_ANSWER_BYTES or len(writes) < 2:
            outcome: WriteOutcome = self._call("write_rows", plan=plan, writes=list(writes), dry_run=dry_run)
            return outcome
        middle = len(writes) // 2
        first = self.write_rows(plan, writes[:middle], dry_run)
        second = self.write_rows(plan, writes[middle:], dry_run)
        return WriteOutcome(
            applied=first.applied + [i + middle for i in second.applied],
            changed=first.changed + [i + middle for i in second.changed],
            failed=first.failed + [f.model_copy(update={"index": f.index + middle}) for f in second.failed],
            statements=first.statements + second.statements,
        )

    # --- the copy's (the writes through a writer function) ---------------------------------------
    def read_rows(self, plan: TablePlan, lo: Key | None, hi: Key | None) -> list[list[str | None]]:
        return list(self._call("read_rows", plan=plan, lo=lo, hi=hi))

    def key_after(self, plan: TablePlan, key: Key) -> Key | None:
        after: Key | None = self._call("key_after", plan=plan, key=key)
        return after

    def count_rows(self, plan: TablePlan, lo: Key | None) -> int:
        return int(self._call("count_rows", plan=plan, lo=lo))

    def group_end(self, plan: TablePlan, lo: Key | None, hi: Key, column: str) -> Key | None:
        end: Key | None = self._call("group_end", plan=plan, lo=lo, hi=hi, column=column)
        return end

    def table_exists(self, table: str) -> bool:
        return bool(self._call("table_exists", table=table))

    def has_rows(self, table: str) -> bool:
        return bool(self._call("has_rows", table=table))

    def portable_type(self, column: Column) -> PortableType:
        portable: PortableType = self._call("portable_type", column=column)
        return portable

    def create_table(self, table: str, columns: Sequence[tuple[Column, PortableType]], key: Sequence[str]) -> str:
        return str(self._call("create_table", table=table, columns=list(columns), key=list(key)))

    def load_rows(self, plan: TablePlan, rows: Sequence[list[str | None]]) -> None:
        """One invocation, one transaction (the copy's batches are sized to fit one)."""
        self._call("load_rows", plan=plan, rows=list(rows))

    def close(self) -> None:
        pass


def _throttled(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in {"TooManyRequestsException", "ThrottlingException", "ServiceException", "EC2ThrottledException"}


def _remote_error(function: str, answer: Any, function_error: str | None) -> TablesyncError:
    """The exception an answer stands for: an error the connector reported, by its class name; a
    failed invocation (a crash, a timeout) or an answer that is no answer is worth another try."""
    reported = answer.get("error") if isinstance(answer, dict) and not function_error else None
    if isinstance(reported, dict):
        cls = ERRORS.get(str(reported.get("type")), TablesyncError)
        return cls(str(reported.get("message", "")))
    kind = answer.get("errorType", "") if isinstance(answer, dict) else ""
    message = answer.get("errorMessage", "") if isinstance(answer, dict) else ""
    return TransientDatabaseError(f"connector {function} failed: {kind or 'error'}: {message}"[:500])
