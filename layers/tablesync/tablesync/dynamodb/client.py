"""The DynamoDB client of one URL (region, endpoint, profile, role to assume), and the rules every
call keeps: throttling and unprocessed keys retried with exponential backoff and full jitter, never
dropped; a read-capacity budget per table shared by the threads of a process."""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.credentials import RefreshableCredentials
from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError
from botocore.session import get_session

from ..errors import ConnectError, DatabaseError, DatabaseUnavailableError, SchemaError, TransientDatabaseError
from ..urls import DatabaseUrl

THROTTLED = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingException",
        "Throttling",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    }
)
DENIED = frozenset({"AccessDeniedException", "UnrecognizedClientException", "InvalidSignatureException"})
MAX_ATTEMPTS = 12  # a throttled call is tried this often (up to about a minute of backoff) before it is an outage
BASE_DELAY = 0.05
MAX_DELAY = 20.0


_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


def make_client(url: DatabaseUrl, connect_timeout: float, *, raw_items: bool = False) -> Any:
    """A low-level DynamoDB client (numbers stay texts: no float anywhere), one per URL in the
    process: botocore's clients are thread-safe, and making one costs tens of milliseconds, which
    every thread of every side would pay. botocore's own retries are off: `call` retries, so that
    a throttled call is never fatal while attempts remain.

    raw_items: the items of Scan and BatchGetItem answers are left as DynamoDB's JSON sent them
    (binaries as base64 texts), not walked by botocore's parser, which costs more than hashing
    them (docs/benchmarks.md): for reads that only hash or show items, never for items written
    back."""
    ident = (url.region, url.endpoint, url.profile, url.role_arn, connect_timeout, raw_items)
    with _clients_lock:
        made = _clients.get(ident)
        if made is None:
            made = _clients[ident] = _new_client(url, connect_timeout)
            if raw_items:
                for operation in RAW_ITEM_LISTS:
                    made.meta.events.register(f"before-parse.dynamodb.{operation}", keep_items_raw)
        return made


RAW_ITEM_LISTS = {"Scan": "Items", "BatchGetItem": "Responses"}


def keep_items_raw(
    operation_model: Any, response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """Takes the item lists out of a successful answer's body before botocore parses it (the rest,
    LastEvaluatedKey and UnprocessedKeys included, is parsed as usual: they are sent back)."""
    name = RAW_ITEM_LISTS.get(operation_model.name)
    if name is None or response_dict.get("status_code") != 200:
        return
    body = json.loads(response_dict["body"])
    if isinstance(body, dict) and name in body:
        customized_response_dict[name] = body.pop(name)
        response_dict["body"] = json.dumps(body).encode()


def _new_client(url: DatabaseUrl, connect_timeout: float) -> Any:
    try:
        session = boto3.Session(profile_name=url.profile) if url.profile else boto3.Session()
        config = Config(
            region_name=url.region,
            connect_timeout=connect_timeout,
            read_timeout=60,
            retries={"max_attempts": 1, "mode": "standard"},
            max_pool_connections=64,
        )
        if url.role_arn:
            session = _assumed(session, url.role_arn, url.region, config)
        return session.client("dynamodb", endpoint_url=url.endpoint, config=config)
    except ClientError as exc:
        raise ConnectError(f"{url.redacted()}: {_message(exc)}") from None
    except BotoCoreError as exc:
        raise ConnectError(f"{url.redacted()}: {exc}") from None


def backoff_delay(attempt: int, rng: Callable[[], float] = random.random) -> float:
    """Full jitter: a random wait up to an exponentially growing cap."""
    return float(rng() * min(MAX_DELAY, BASE_DELAY * 2**attempt))


def call(
    label: str,
    operation: Callable[..., dict[str, Any]],
    sleep: Callable[[float], None] = time.sleep,
    **request: Any,
) -> dict[str, Any]:
    """One DynamoDB call, throttling retried with backoff; the errors as tablesync's."""
    for attempt in range(MAX_ATTEMPTS):
        try:
            return operation(**request)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in THROTTLED and attempt + 1 < MAX_ATTEMPTS:
                sleep(backoff_delay(attempt))
                continue
            raise _error(label, code, exc) from None
        except EndpointConnectionError as exc:
            raise DatabaseUnavailableError(f"{label}: {exc}") from None
        except BotoCoreError as exc:
            raise TransientDatabaseError(f"{label}: {exc}") from None
    raise AssertionError("unreachable")  # pragma: no cover


def _error(label: str, code: str, exc: ClientError) -> Exception:
    text = f"{label}: {_message(exc)}"
    if code in THROTTLED:
        return TransientDatabaseError(f"{text} (still throttled after {MAX_ATTEMPTS} attempts)")
    if code == "ResourceNotFoundException":
        return SchemaError(text)
    if code in DENIED:
        return ConnectError(text)
    return DatabaseError(text)


def _message(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    return f"{error.get('Code', 'Error')}: {error.get('Message', '')}".strip().rstrip(":")


def _assumed(base: boto3.Session, role_arn: str, region: str | None, config: Config) -> boto3.Session:
    """A session with another account's role (role_arn), its credentials assumed now (a role that
    cannot be assumed fails at once) and again before they expire: a run, or a warm Lambda
    container, outlives the hour they last."""
    sts = base.client("sts", region_name=region, config=config)

    def assume() -> dict[str, str]:
        role = sts.assume_role(RoleArn=role_arn, RoleSessionName="tablesync")["Credentials"]
        return {
            "access_key": role["AccessKeyId"],
            "secret_key": role["SecretAccessKey"],
            "token": role["SessionToken"],
            "expiry_time": role["Expiration"].isoformat(),
        }

    credentials = RefreshableCredentials.create_from_metadata(
        metadata=assume(), refresh_using=assume, method="sts-assume-role"
    )
    assumed = get_session()
    # botocore's way to give a session refreshable credentials (its assume-role profiles do so too).
    assumed._credentials = credentials  # type: ignore[attr-defined]
    return boto3.Session(botocore_session=assumed)


class ReadBudget:
    """Read capacity units per second for one table, shared by every thread of the process that
    reads it: each call takes its turn, spaced by the units the calls before it consumed."""

    _budgets: dict[tuple[str, ...], ReadBudget] = {}
    _registry_lock = threading.Lock()

    def __init__(self, units_per_second: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = units_per_second
        self.clock = clock
        self._lock = threading.Lock()
        self._free_at = clock()
        self._estimate = 1.0  # units a call is expected to consume, learnt from the calls made

    @classmethod
    def shared(cls, ident: tuple[str, ...], units_per_second: float) -> ReadBudget:
        with cls._registry_lock:
            budget = cls._budgets.get(ident)
            if budget is None or budget.rate != units_per_second:
                budget = cls._budgets[ident] = cls(units_per_second)
            return budget

    def wait(self, sleep: Callable[[float], None] = time.sleep) -> float:
        """Before a call: reserves the units it is expected to cost (what calls have cost lately)
        and waits for its turn, so that threads calling at once are spaced, not let through
        together. Returns the units reserved (for spend)."""
        with self._lock:
            now = self.clock()
            turn = max(self._free_at, now)
            reserved = self._estimate
            self._free_at = turn + reserved / self.rate
        if turn > now:
            sleep(turn - now)
        return reserved

    def spend(self, units: float, reserved: float = 0.0) -> None:
        """After a call: what it consumed beyond (or short of) its reservation moves the next turn."""
        with self._lock:
            self._free_at = max(self._free_at + (units - reserved) / self.rate, self.clock() - 1.0)
            self._estimate = 0.8 * self._estimate + 0.2 * units
