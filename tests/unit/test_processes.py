import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from pytest_specdecode.engines.processes import spawn, start_in_thread

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


def test_a_start_returns_what_it_built_and_holds_what_it_started():
    value, children = start_in_thread(lambda: ("engine", subprocess.Popen(SLEEPER)))
    assert value[0] == "engine"
    assert [p.pid for p in children.alive()] == [value[1].pid]
    children.stop(grace_s=5)
    assert value[1].wait(5) is not None


def test_a_failed_start_raises_its_error_and_leaves_nothing_behind():
    started = []

    def construct():
        started.append(subprocess.Popen(SLEEPER))
        raise RuntimeError("Engine core initialization failed")

    with pytest.raises(RuntimeError, match="initialization failed"):
        start_in_thread(construct)
    assert started[0].wait(5) is not None


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_start_ends_at_once_and_leaves_nothing_behind(signum, monkeypatch):
    """vLLM's LLM() went on after a Ctrl-C (the session exited 0), or, when its engine core got the
    Ctrl-C too, waited 600 s for a ready message that never came: the interrupt must not depend on
    what the library does while it starts."""
    from pytest_specdecode import interrupts

    previous = interrupts.install() if signum == signal.SIGTERM else None
    started = []

    def construct():  # swallows the interrupt if it ever sees it, then waits for a child forever
        started.append(subprocess.Popen(SLEEPER))
        try:
            threading.Event().wait(600)
        except KeyboardInterrupt:
            pass
        started[0].wait(600)

    threading.Timer(1.0, os.kill, (os.getpid(), signum)).start()
    began = time.monotonic()
    try:
        with pytest.raises(KeyboardInterrupt):
            start_in_thread(construct)
    finally:
        interrupts.restore(previous)
    assert time.monotonic() - began < 15
    assert started[0].wait(5) is not None


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


def test_an_engine_that_fails_validation_says_why_in_one_line():
    from pydantic import BaseModel, field_validator

    from pytest_specdecode.engines.offline import start_failure

    class SpeculativeConfig(BaseModel):
        method: str

        @field_validator("method")
        @classmethod
        def known(cls, value: str) -> str:
            raise ValueError(f"unknown speculative method {value!r}")

    try:
        SpeculativeConfig(method="eagle9")
    except ValueError as exc:
        line = start_failure(exc)
    assert "\n" not in line
    assert line.startswith("ValidationError: 1 validation error for SpeculativeConfig")
    assert "unknown speculative method 'eagle9'" in line and "For further information" not in line


TRACKER_AND_ENGINE = """
import subprocess, sys
from multiprocessing import resource_tracker
from pytest_specdecode.engines.processes import start_in_thread

def start():
    resource_tracker.ensure_running()  # as vLLM's first engine start does, in this process
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])

engine, children = start_in_thread(start)
held = {process.pid for process in children.alive()}
tracker = resource_tracker._resource_tracker._pid
children.stop(grace_s=30)
print(sorted(held) == [engine.pid], tracker not in held, engine.poll() is not None)
"""


def test_an_engine_start_does_not_hold_this_process_s_resource_tracker():
    """Was: the tracker, started by the first engine start, was held as that engine's process; it
    ignores SIGTERM, so every engine stop waited out its whole grace period (5 s) and then killed
    the tracker every later start still used. A fresh interpreter: this one's tracker may be older."""
    done = subprocess.run([sys.executable, "-c", TRACKER_AND_ENGINE], capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True", "True"], done.stderr
