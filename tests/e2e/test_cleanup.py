"""Nothing left behind: a real pytest process, interrupted after measuring, stops its engines and
still reports what it measured. Signals from outside (SIGTERM, SIGINT, timeouts) are in test_faults.py."""

import json
import sys
import uuid

from tests.e2e.leftovers import TAG, left_after_exit


def test_ctrl_c_after_measuring_stops_engines_and_keeps_the_report(pytester, tiny_toml, monkeypatch, engines_stopped):
    pytester.makepyfile(
        """
        def test_measure(spec_run):
            assert spec_run.runs

        def test_interrupt(spec_run):
            raise KeyboardInterrupt
        """
    )
    tiny_toml.write_text(tiny_toml.read_text().replace("temperatures = [0.0]", "temperatures = [0.0, 0.8]"))
    tag = uuid.uuid4().hex
    monkeypatch.setenv(TAG, tag)
    report = pytester.path / "interrupted.json"
    result = pytester.run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--spec-config={tiny_toml}",
                          f"--spec-report={report}", timeout=900)
    assert result.ret == 2  # pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*speculative decoding*", "tiny T=0 *", "*KeyboardInterrupt*"])
    assert {run["temperature"] for run in json.loads(report.read_text())["runs"]} == {0.0, 0.8}
    _, left = left_after_exit(tag)
    assert left == []
