"""A watchdog for tests of the engine: a diff that loops forever fails the test instead of hanging
the run (SIGALRM interrupts the main thread's wait)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ToolHung(BaseException):
    """Raised in the main thread by the watchdog's alarm, out of whatever the tool was doing (a
    BaseException: the CLI turns any Exception into exit status 2)."""


@contextmanager
def watchdog(seconds: int) -> Iterator[None]:
    """Interrupts the block (SIGALRM) after `seconds`: a diff that loops forever fails the example
    instead of hanging the run (and its shrinking)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def fire(signum: int, frame: object) -> None:
        raise ToolHung(f"tablesync did not finish within {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
