"""The databases of one diff: the source and its targets, each a thread pool of connections,
named by a SideRef (never by a bare index where -1 would mean the source)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from ..connectors import Connector
from ..models import Key, TablePlan
from .keys import row_key, rows_by_key

ConnectorFactory = Callable[[], Connector]
T = TypeVar("T")


@dataclass(frozen=True, order=True)
class SideRef:
    """One database of a diff: the source (target None) or the target at that index."""

    target: int | None = None

    @property
    def is_source(self) -> bool:
        return self.target is None


SOURCE = SideRef()


class Side:
    """One database: a small thread pool whose threads each hold their own connection."""

    def __init__(self, factory: ConnectorFactory, threads: int, label: str) -> None:
        self.factory = factory
        self.label = label
        self._local = threading.local()
        self._opened: list[Connector] = []
        self._lock = threading.Lock()
        self.pool = ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix=f"ts-{label}")

    def _connector(self) -> Connector:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self.factory()
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def submit(self, method: str, *args: Any) -> Future[Any]:
        return self.pool.submit(lambda: getattr(self._connector(), method)(*args))

    def call(self, method: str, *args: Any) -> Any:
        return self.submit(method, *args).result()

    def submit_call(self, action: Callable[[Connector], T]) -> Future[T]:
        """`action(connection)` on a thread of this side: several calls on one connection."""
        return self.pool.submit(lambda: action(self._connector()))

    def adapt(self, wrapper: Callable[[Connector], Any]) -> None:
        """From now on each connection is wrapped (a SQL table answering as a store of items);
        the ones open are dropped."""
        factory = self.factory
        self.factory = lambda: wrapper(factory())
        self.reconnect()

    def reconnect(self) -> None:
        """Drops every connection (after an outage they may be dead); each thread opens a new
        one on its next call."""
        with self._lock:
            opened, self._opened = self._opened, []
            self._local = threading.local()
        for conn in opened:
            with contextlib.suppress(Exception):  # closing is best effort
                conn.close()

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)  # work queued ahead is not waited for
        for conn in self._opened:
            with contextlib.suppress(Exception):  # closing is best effort
                conn.close()


class Sides:
    """The source and the targets of a diff, their plans and labels, looked up by SideRef."""

    def __init__(self, source: Side, targets: Sequence[Side], source_label: str, target_labels: Sequence[str]) -> None:
        self.source = source
        self.targets = list(targets)
        self.source_label = source_label
        self.target_labels = list(target_labels)
        self.source_plan: TablePlan | None = None
        self.target_plans: list[TablePlan] = []

    def side(self, ref: SideRef) -> Side:
        return self.source if ref.target is None else self.targets[ref.target]

    def plan(self, ref: SideRef) -> TablePlan:
        if ref.target is not None:
            return self.target_plans[ref.target]
        assert self.source_plan is not None, "plans are set before any range is asked for"
        return self.source_plan

    def label(self, ref: SideRef) -> str:
        return self.source_label if ref.target is None else self.target_labels[ref.target]

    def submit(self, ref: SideRef, method: str, *args: Any) -> Future[Any]:
        """Calls `method(plan, *args)` on a connection of that side."""
        return self.side(ref).submit(method, self.plan(ref), *args)

    def involved(self, targets: Iterable[int]) -> list[SideRef]:
        """The source and each of the given targets, once, in order."""
        return [SOURCE, *(SideRef(t) for t in sorted(set(targets)))]

    def fetch_pairs(
        self, target: int, keys: list[Key]
    ) -> dict[tuple[Any, ...], tuple[list[str | None] | None, list[str | None] | None]]:
        """The rows of `keys` on the source and on one target, by key (None where a side has none)."""
        ref = SideRef(target)
        src_future = self.submit(SOURCE, "fetch_rows", keys)
        tgt_future = self.submit(ref, "fetch_rows", keys)
        src_rows = rows_by_key(self.plan(SOURCE), src_future.result())
        tgt_rows = rows_by_key(self.plan(ref), tgt_future.result())
        return {tuple(k): (src_rows.get(tuple(k)), tgt_rows.get(tuple(k))) for k in keys}

    def fetch_groups(
        self, target: int, keys: list[Key]
    ) -> dict[tuple[Any, ...], tuple[list[str | None] | None, list[list[str | None]]]]:
        """The source's row of each key and all of one target's rows of it (a target without a
        primary key may hold a key more than once)."""
        ref = SideRef(target)
        src_future = self.submit(SOURCE, "fetch_rows", keys)
        tgt_future = self.submit(ref, "fetch_rows", keys)
        src_rows = rows_by_key(self.plan(SOURCE), src_future.result())
        plan = self.plan(ref)
        held: dict[tuple[Any, ...], list[list[str | None]]] = {}
        for row in tgt_future.result():
            held.setdefault(row_key(plan, row), []).append([row[c.name] for c in plan.columns])
        return {tuple(k): (src_rows.get(tuple(k)), held.get(tuple(k), [])) for k in keys}

    def all(self) -> list[Side]:
        return [self.source, *self.targets]

    def reconnect(self) -> None:
        for side in self.all():
            side.reconnect()

    def close(self) -> None:
        for side in self.all():
            side.close()
