import os
import signal
import subprocess
import sys
import time

import psutil
import pytest

from pytest_specdecode.engines.processes import spawn, started_within

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# ignores SIGTERM, and starts a grandchild once it runs: both must still go
STUBBORN = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('ready', flush=True)\n"
    "time.sleep(60)\n"
)


def _gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_block_interrupted_while_it_starts_processes_leaves_none_behind():
    """An offline engine start cut short by Ctrl-C left its engine core running (only Exception was handled)."""
    started = []
    with pytest.raises(KeyboardInterrupt):
        with started_within():
            started.append(subprocess.Popen(SLEEPER))
            raise KeyboardInterrupt
    assert started[0].wait(5) is not None


def test_what_a_block_started_is_held_and_stopped_later():
    with started_within() as children:
        started = subprocess.Popen(SLEEPER)
    assert [p.pid for p in children.alive()] == [started.pid]
    children.stop(grace_s=5)
    assert started.wait(5) is not None


def test_a_spawned_process_that_ignores_sigterm_is_killed_with_what_it_started(tmp_path):
    log = tmp_path / "stubborn.log"
    process, children = spawn([sys.executable, "-c", STUBBORN], log, {})
    deadline = time.monotonic() + 30
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    grandchild = process.children()[0]
    began = time.monotonic()
    children.stop(grace_s=1)
    assert time.monotonic() - began < 10
    assert _gone(process) and _gone(grandchild)
    assert children.alive() == []


@pytest.mark.parametrize("then", ["returns", "fails"])
def test_ctrl_c_a_library_swallows_while_it_starts_still_stops_its_processes_and_interrupts(then):
    """vLLM's LLM() went on after a Ctrl-C (the session exited 0), or, when its engine core got the
    Ctrl-C too, waited out a 600 s handshake; the handler stops the children, so the wait ends, and
    the block ends in the interrupt whether the library then returns or fails."""
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        with started_within():
            child = subprocess.Popen(SLEEPER)
            try:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(30)
            except KeyboardInterrupt:
                pass  # what the library does with it
            child.wait(60)  # a library waiting on its child notices at once that it exited
            if then == "fails":
                raise RuntimeError("Engine core initialization failed. See root cause above.")
    assert time.monotonic() - began < 15
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_sigterm_handler_that_is_not_ours_is_left_alone():
    def theirs(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, theirs)
    try:
        with started_within():
            assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, previous)
