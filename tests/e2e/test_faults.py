"""Signals from outside end a session fast, leave no process behind and keep the report.

One test per row of the faults table (issue 15): what CI timeouts, `docker stop`, `kill`, `timeout`
and Ctrl-C send, in both modes, during an engine start or after it. Each runs a real pytest process
on the smallest workload, lists the processes that inherited its tag afterwards, reads the JSON
report, the step summary and the JUnit file, and prints its row: exit code, seconds from signal to
exit, leftovers, what the report kept.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest

from tests.e2e.leftovers import TAG, left_after_exit

#: The goal: every row ends within ~30 s of its signal.
EXIT_WITHIN_S = 30
INTERRUPTED = "interrupted before its measurement finished"
MEASURE = "def test_measure(spec_run):\n    assert spec_run.runs\n"


class Session:
    """A pytest process measuring one config, read line by line until it is signalled."""

    def __init__(self, pytester: pytest.Pytester, toml: Path, *options: str, prefix: tuple[str, ...] = (),
                 new_session: bool = False) -> None:
        pytester.makepyfile(MEASURE)
        self.tag = uuid.uuid4().hex
        self.report = pytester.path / "report.json"
        self.summary = pytester.path / "step-summary.md"
        self.junit = pytester.path / "junit.xml"
        env = {**os.environ, TAG: self.tag, "GITHUB_STEP_SUMMARY": str(self.summary)}
        command = [*prefix, sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--spec-config={toml}",
                   f"--spec-report={self.report}", f"--junitxml={self.junit}", *options]
        self.process = subprocess.Popen(command, cwd=pytester.path, env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, start_new_session=new_session)
        self.lines: list[str] = []
        self.signalled = time.monotonic()

    def wait_for(self, text: str) -> None:
        for line in self.process.stdout:
            self.lines.append(line)
            if text in line:
                return
        pytest.fail(f"the session ended before printing {text!r}:\n{''.join(self.lines)}")

    def wait_for_engine_core(self, timeout_s: float = 300) -> None:
        """Until vLLM's engine core runs under pytest: the start is then half-way, its handshake pending."""
        pytest_process = psutil.Process(self.process.pid)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                names = [" ".join([child.name(), *child.cmdline()]) for child in pytest_process.children(recursive=True)]
            except psutil.Error:
                names = []
            if any("EngineCore" in name for name in names):
                return
            time.sleep(0.2)
        pytest.fail("no engine core appeared under the pytest process")

    def signal(self, signum: int, group: bool = False) -> None:
        self.signalled = time.monotonic()
        if group:
            os.killpg(self.process.pid, signum)
        else:
            self.process.send_signal(signum)

    def finish(self, timeout_s: float = 300) -> tuple[int, float, str]:
        """Exit code, seconds from the signal to the exit, and everything the session printed."""
        try:
            rest, _ = self.process.communicate(timeout=timeout_s)
        finally:
            self.process.kill()
        return self.process.returncode, time.monotonic() - self.signalled, "".join(self.lines) + (rest or "")

    def leftovers(self) -> tuple[int, list[str]]:
        return left_after_exit(self.tag)

    def kept(self) -> dict:
        return json.loads(self.report.read_text()) if self.report.exists() else {}


def _row(fault: str, code: int, seconds: float, at_exit: int, report: dict) -> None:
    kept = f"runs={len(report.get('runs', []))} failed_configs={report.get('failed_configs')}" if report else "no report"
    print(f"\nFAULT | {fault} | rc {code} | {seconds:.1f} s | leftovers at exit {at_exit} | {kept}")


def _assert_clean(session: Session, fault: str, code: int, seconds: float, output: str,
                  expected_codes: tuple[int, ...] = (2,)) -> None:
    at_exit, left = session.leftovers()
    report = session.kept()
    _row(fault, code, seconds, at_exit, report)
    assert code in expected_codes, output
    assert seconds < EXIT_WITHIN_S, output
    assert left == []
    assert [reason.startswith(INTERRUPTED) for reason in report["failed_configs"].values()] == [True], output
    assert INTERRUPTED in session.summary.read_text()  # the job page says which config was cut short
    assert session.junit.exists()


def test_sigterm_in_server_mode_stops_the_server_it_started(pytester, tiny_toml, engines_stopped):
    """Was: pytest died at once (rc -15, no report); vllm serve, its engine core, worker and resource
    tracker orphaned and still alive 30 s later."""
    session = Session(pytester, tiny_toml, "--spec-mode=server")
    session.wait_for("engine started in")
    session.signal(signal.SIGTERM)
    code, seconds, output = session.finish()
    _assert_clean(session, "SIGTERM to pytest, server mode", code, seconds, output)
    assert "received SIGTERM" in output


def test_timeout_in_server_mode_leaves_no_server(pytester, tiny_toml, engines_stopped):
    """Was: rc 124 and the server survived: it runs in its own session, so the group signal never reached it."""
    limit_s = 30
    session = Session(pytester, tiny_toml, "--spec-mode=server", prefix=("timeout", str(limit_s)))
    code, seconds, output = session.finish()
    seconds -= limit_s  # from timeout's SIGTERM, not from the start
    _assert_clean(session, f"timeout {limit_s} pytest --spec-mode=server", code, seconds, output, expected_codes=(124,))


def test_sigterm_in_offline_mode_stops_every_engine_process(pytester, tiny_toml, engines_stopped):
    """Was: the engine core and its worker orphaned."""
    session = Session(pytester, tiny_toml)
    session.wait_for("engine started in")  # the engine core is up: the case that was orphaned
    session.signal(signal.SIGTERM)
    code, seconds, output = session.finish()
    _assert_clean(session, "SIGTERM to pytest, offline mode", code, seconds, output)
    assert "received SIGTERM" in output


def test_sigint_to_pytest_during_an_offline_engine_start_interrupts_it(pytester, tiny_toml, engines_stopped):
    """Was silently ignored: vLLM's LLM() went on and the session exited 0."""
    session = Session(pytester, tiny_toml)
    session.wait_for("starting")
    session.wait_for_engine_core()
    session.signal(signal.SIGINT)
    code, seconds, output = session.finish()
    _assert_clean(session, "SIGINT to the pytest PID, offline engine start", code, seconds, output)


def test_sigint_to_the_group_during_an_offline_engine_start_interrupts_it(pytester, tiny_toml, engines_stopped):
    """Was: the engine core took the Ctrl-C too, and pytest waited ~630 s for vLLM's handshake, then rc 1."""
    session = Session(pytester, tiny_toml, new_session=True)
    session.wait_for("starting")
    session.wait_for_engine_core()
    session.signal(signal.SIGINT, group=True)
    code, seconds, output = session.finish()
    _assert_clean(session, "SIGINT to the process group, offline engine start", code, seconds, output)
