"""Every child process the plugin starts, stopped one way: SIGTERM, a grace period, SIGKILL.

`vllm serve` runs in a session of its own and leaves its engine core, workers and resource
tracker behind when it crashes; an in-process `vllm.LLM` forks an engine core and workers of
ours. Both are held here as `psutil.Process` objects taken while they were ours: psutil checks a
process's start time before signalling it, so a PID the kernel has since given to another program
is never signalled.
"""

from __future__ import annotations

import os
import subprocess
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

import psutil

T = TypeVar("T")

#: what `python -c` runs in multiprocessing's resource tracker process
RESOURCE_TRACKER = "multiprocessing.resource_tracker"


class Children:
    """A set of our child processes, and what they start until they are stopped."""

    def __init__(self, processes: Iterable[psutil.Process] = (), session_id: int | None = None) -> None:
        self._held: set[psutil.Process] = set(processes)
        self._session_id = session_id

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
        psutil.wait_procs(self.alive(), timeout=grace_s)
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
    """Every process this one has started and that still runs, as psutil objects, but this process's
    own multiprocessing resource tracker: vLLM's first engine start starts it, every later start
    shares it, it ignores SIGTERM (so stopping it as an engine's waited out the whole grace period,
    5 s an engine stop) and it exits by itself with this process."""
    return {process for process in psutil.Process().children(recursive=True) if not _is_our_resource_tracker(process)}


def _is_our_resource_tracker(process: psutil.Process) -> bool:
    try:
        return process.ppid() == os.getpid() and any(RESOURCE_TRACKER in part for part in process.cmdline())
    except psutil.Error:
        return False


def start_in_thread(construct: Callable[[], T]) -> tuple[T, Children]:
    """`construct()` (an in-process `vllm.LLM`) and the processes it started (engine core, workers).

    It runs in a thread while this one, the main thread, waits in short steps, because a signal
    handler runs only in the main thread and only between Python steps: vLLM's start blocks in C
    calls for up to 600 s (waiting for a ready message from an engine core that a group Ctrl-C has
    already stopped) and, when a handler did run inside it, went on without the interrupt. So a
    Ctrl-C or SIGTERM is raised here within a tenth of a second; it and any failure of the start
    stop every process the start created, what it starts while finishing included.
    """
    before = descendants()
    outcome: list[T] = []
    failure: list[BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append(construct())
        except BaseException as exc:  # handed to the main thread, which raises it
            failure.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="specdecode-engine-start", daemon=True).start()
    try:
        while not done.wait(0.1):
            pass
    except BaseException:
        Children(descendants() - before).stop()
        done.wait(3.0)  # a start whose core is gone fails soon; what it forked meanwhile goes too
        Children(descendants() - before).stop()
        raise
    if failure:
        Children(descendants() - before).stop()
        raise failure[0]
    return outcome[0], Children(descendants() - before)


def spawn(command: Sequence[str], log_path: Path, env: Mapping[str, str]) -> tuple[psutil.Popen, Children]:
    """`command` in a session of its own (a Ctrl-C meant for pytest must not reach it half-way),
    its output to `log_path`; the process, and the children to stop it by."""
    with open(log_path, "wb") as log:
        process = psutil.Popen(
            list(command), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=dict(env),
            start_new_session=True,
        )
    return process, Children([process], session_id=process.pid)
