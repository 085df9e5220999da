"""SIGTERM ends a session the way Ctrl-C does.

CI timeouts, `docker stop` and `kill` send SIGTERM, whose default action kills pytest on the spot:
no report, and `vllm serve` (in its own session) or an engine core left running, reparented to
init. Raised as KeyboardInterrupt in the main thread instead, it unwinds through pytest's own
interrupt handling: the engines stop, and the reports are written with what was measured.
Standard library only: the plugin installs it at configure time.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, delivered as an interrupt."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"received {signal.Signals(signum).name}: stopping engines and writing reports")


def install() -> Any:
    """Turn SIGTERM into `Terminated` unless someone else already handles it; returns what to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous not in (signal.SIG_DFL, None):
        return None
    signal.signal(signal.SIGTERM, _raise_terminated)
    return previous


def restore(previous: Any) -> None:
    if previous is not None and signal.getsignal(signal.SIGTERM) is _raise_terminated:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def deferred() -> Iterator[list[str]]:
    """SIGTERM and SIGINT are noted, not raised, inside the block (the names land in the list).

    For writing the reports: an interrupt there would lose everything the session measured, and the
    second signal is the likely one (a CI timeout's SIGTERM after its own grace period, a second
    Ctrl-C). The caller decides what a noted signal means once the reports are safe.
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(signum: int, frame: FrameType | None) -> None:
        received.append(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, note) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
