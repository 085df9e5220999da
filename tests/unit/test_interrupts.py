"""SIGTERM (CI timeouts, docker stop, kill) ends a session like Ctrl-C: reports written, exit 2.
The engine side (every child gone) is shown on real engines in tests/e2e/test_cleanup.py."""

import signal

import pytest

from pytest_specdecode import interrupts

TERMINATES_ITSELF = """
import os, signal, time

def test_first():
    pass

def test_terminated():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)

def test_never_reached():
    pass
"""


def test_sigterm_interrupts_the_session_and_the_summary_still_runs(pytester):
    pytester.makepyfile(TERMINATES_ITSELF)
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--junitxml=junit.xml")
    assert outcome.ret == pytest.ExitCode.INTERRUPTED
    outcome.stdout.fnmatch_lines(["*received SIGTERM: stopping engines and writing reports*"])
    assert "test_never_reached" not in outcome.stdout.str()
    assert (pytester.path / "junit.xml").exists()


def test_a_handler_someone_else_installed_is_left_alone():
    def theirs(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, theirs)
    try:
        assert interrupts.install() is None
        assert signal.getsignal(signal.SIGTERM) is theirs
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_install_and_restore_round_trip():
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        saved = interrupts.install()
        with pytest.raises(interrupts.Terminated):
            signal.raise_signal(signal.SIGTERM)
        interrupts.restore(saved)
        assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_signals_inside_deferred_are_noted_not_raised_and_the_handlers_come_back():
    before = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    with interrupts.deferred() as received:
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    assert received == ["SIGTERM", "SIGINT"]
    assert {signum: signal.getsignal(signum) for signum in before} == before


SIGTERM_WHILE_FINISHING = """
import os, signal

def pytest_sessionfinish(session):
    os.kill(os.getpid(), signal.SIGTERM)  # as a CI timeout would, while the reports are being written
"""


def test_a_sigterm_while_the_reports_are_written_keeps_them_and_exits_interrupted(pytester):
    pytester.makeconftest(SIGTERM_WHILE_FINISHING)
    pytester.makepyfile("def test_passes():\n    pass\n")
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--spec-report=report.json")
    assert outcome.ret == pytest.ExitCode.INTERRUPTED
    assert "Traceback" not in outcome.stdout.str() + outcome.stderr.str()
    outcome.stdout.fnmatch_lines(["*SIGTERM while the reports were written*"])
    assert (pytester.path / "report.json").is_file()
