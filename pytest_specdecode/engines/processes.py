"""Every child process the plugin starts, stopped one way: SIGTERM, a grace period, SIGKILL.

`vllm serve` runs in a session of its own and leaves its engine core, workers and resource
tracker behind when it crashes; an in-process `vllm.LLM` forks an engine core and workers of
ours. Both are held here as `psutil.Process` objects taken while they were ours: psutil checks a
process's start time before signalling it, so a PID the kernel has since given to another program
is never signalled.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

from .. import interrupts


class Children:
    """A set of our child processes, and what they start until they are stopped."""

    def __init__(self, processes: Iterable[psutil.Process] = (), session_id: int | None = None) -> None:
        self._held: set[psutil.Process] = set(processes)
        self._session_id = session_id

    def adopt(self, processes: Iterable[psutil.Process]) -> None:
        self._held.update(processes)

    def refresh(self) -> None:
        """Take in what the held processes started since, and any process left in their session
        (a crashed `vllm serve` leaves its children reparented to init, but still in its session)."""
        for process in list(self._held):
            try:
                self._held.update(process.children(recursive=True))
            except psutil.Error:
                continue
        if self._session_id is not None:
            self._held.update(_session_members(self._session_id))

    def alive(self) -> list[psutil.Process]:
        """Held processes that still run (a zombie holds no memory and counts as gone)."""
        running = []
        for process in self._held:
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    running.append(process)
            except psutil.Error:
                continue
        return running

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM so vLLM frees memory cleanly, then SIGKILL what is left; returns once all are gone."""
        self.refresh()
        _signal(self.alive(), "terminate")
        _, survivors = psutil.wait_procs(self.alive(), timeout=grace_s)
        for _ in range(3):  # a process may start another while it is being stopped
            self.refresh()
            survivors = self.alive()
            if not survivors:
                return
            _signal(survivors, "kill")
            psutil.wait_procs(survivors, timeout=5.0)


def _signal(processes: Iterable[psutil.Process], how: str) -> None:
    for process in processes:
        try:
            getattr(process, how)()
        except psutil.Error:
            continue


def _session_members(session_id: int) -> list[psutil.Process]:
    members = []
    for process in psutil.process_iter():
        try:
            if os.getsid(process.pid) == session_id:
                members.append(process)
        except (OSError, psutil.Error):
            continue
    return members


def descendants() -> set[psutil.Process]:
    """Every process this one has started and that still runs, as psutil objects."""
    return set(psutil.Process().children(recursive=True))


@contextmanager
def started_within() -> Iterator[Children]:
    """The processes started while the block runs (an in-process engine's core and workers).

    Stopped at once if the block raises, Ctrl-C included, so a half-started engine leaves nothing
    behind. A Ctrl-C or SIGTERM during the block stops them from the signal handler itself: vLLM's
    `LLM()` waits for its engine core without looking at the interrupt (it went on, or waited out
    a 600 s handshake when the core got the Ctrl-C too), and notices a core that exited at once.
    The interrupt is raised again when the block ends, whatever the library did with it.
    """
    before = descendants()
    children = Children()
    interrupted: list[int] = []

    def stop_then_interrupt(signum: int, frame: FrameType | None) -> None:
        if not interrupted:
            interrupted.append(signum)
            Children(descendants() - before).stop()
        previous[signum](signum, frame)

    previous = _intercept(stop_then_interrupt)
    try:
        yield children
    except BaseException:
        Children(descendants() - before).stop()
        if not interrupted:
            raise
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    children.adopt(descendants() - before)
    if interrupted:  # the library caught the interrupt, or failed because its core was stopped
        children.stop()
        previous[interrupted[0]](interrupted[0], None)


def _intercept(handler: Callable[[int, FrameType | None], None]) -> dict[int, Callable[[int, FrameType | None], Any]]:
    """`handler` for SIGINT and SIGTERM where they raise an interrupt now (Ctrl-C's KeyboardInterrupt,
    the plugin's SIGTERM); their handlers, to restore. Signals can only be handled in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        current = signal.getsignal(signum)
        if interrupts.raises_interrupt(current):
            previous[signum] = current
            signal.signal(signum, handler)
    return previous


def spawn(command: Sequence[str], log_path: Path, env: Mapping[str, str]) -> tuple[psutil.Popen, Children]:
    """`command` in a session of its own (a Ctrl-C meant for pytest must not reach it half-way),
    its output to `log_path`; the process, and the children to stop it by."""
    with open(log_path, "wb") as log:
        process = psutil.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=dict(env),
            start_new_session=True,
        )
    return process, Children([process], session_id=process.pid)
