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
