"""Progress lines reach the terminal while a gate's setup runs, though pytest captures its output.

These start a pytest process of their own: in-process, pytester's capture sits outside the inner
session's, so a captured line would show up there too and the tests could not tell.
"""

import pytest

REPORTS_PROGRESS = """
from pytest_specdecode.plugin import spec_session

def test_reports_progress(request):
    spec_session(request.config).progress("ngram: starting spec engine")
"""


def test_progress_lines_are_live_under_default_capture_and_carry_the_elapsed_time(pytester):
    pytester.makepyfile(REPORTS_PROGRESS)
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcome.assert_outcomes(passed=1)
    outcome.stdout.re_match_lines([r"^\[specdecode \+\d+\.\ds\] ngram: starting spec engine$"])


def test_without_a_terminal_reporter_progress_is_dropped_quietly(pytester):
    pytester.makepyfile(REPORTS_PROGRESS)
    outcome = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:terminal")
    assert outcome.ret == pytest.ExitCode.OK
    assert "specdecode" not in outcome.stdout.str() + outcome.stderr.str()


WAITS_FOR_A_READER = """
import pathlib, time
from pytest_specdecode.plugin import spec_session

def test_reports_then_waits(request):
    spec_session(request.config).progress("ngram: starting spec engine")
    deadline = time.monotonic() + 60
    while not pathlib.Path("seen").exists():
        assert time.monotonic() < deadline, "the progress line never reached the pipe while the test ran"
        time.sleep(0.05)
"""


def test_progress_lines_reach_a_pipe_while_the_test_still_runs(pytester):
    """CI logs are pipes, block-buffered: the line must be flushed as written, not at exit."""
    import subprocess
    import sys

    pytester.makepyfile(WAITS_FOR_A_READER)
    process = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=pytester.path,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for line in process.stdout:
            if "ngram: starting spec engine" in line:
                (pytester.path / "seen").touch()
                break
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
