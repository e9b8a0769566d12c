"""Waiting out a database that is away (a failover, a restart, a network cut) outside the engine's
own walk (Differ.run): opening the connections of a run, its recheck, its repair. The same rule
as the walk: transient errors are retried with backoff, on new connections, until the outage has
lasted `max_outage` seconds; then the last error is raised."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any, TypeVar

from .connectors import Connector
from .errors import TransientDatabaseError

T = TypeVar("T")
OutageCallback = Callable[[float, TransientDatabaseError], None]


def backoff(waits: int) -> float:
    """Seconds before the next try: 1, 2, 4, 8, then 10."""
    return min(10.0, 0.5 * 2.0 ** min(waits, 5))


def wait_out(
    action: Callable[[], T],
    max_outage: float,
    *,
    on_outage: OutageCallback | None = None,
    reopen: Callable[[], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """`action()`, tried again after each transient error until the outage has lasted
    `max_outage` seconds in a row; `reopen` (new connections) runs before each new try."""
    since: float | None = None
    waits = 0
    while True:
        try:
            return action()
        except TransientDatabaseError as exc:
            now = time.monotonic()
            since = since if since is not None else now
            if now - since >= max_outage:
                raise
            waits += 1
            if on_outage is not None:
                on_outage(now - since, exc)
            sleep(min(backoff(waits), max(0.1, since + max_outage - now)))
            if reopen is not None:
                reopen()


class Reopening:
    """A connector that is opened anew after an outage: `reopen` drops the connection, and the
    next call opens one from the factory (inside the action being retried, so a server still
    away is one more transient error to wait out)."""

    def __init__(self, factory: Callable[[], Connector]) -> None:
        self.factory = factory
        self._inner: Connector | None = factory()

    @property
    def inner(self) -> Connector:
        if self._inner is None:
            self._inner = self.factory()
        return self._inner

    def reopen(self) -> None:
        if self._inner is not None:
            with contextlib.suppress(Exception):  # the old connection is gone anyway
                self._inner.close()
            self._inner = None

    def close(self) -> None:
        if self._inner is not None:
            self._inner.close()
            self._inner = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
