"""Nothing left behind: a real pytest process, interrupted after measuring, stops its engines and
still reports what it measured."""

import json
import sys

import psutil


def _engine_processes() -> set[int]:
    return {p.pid for p in psutil.process_iter(["name", "cmdline"]) if "VLLM::" in " ".join(p.info["cmdline"] or [p.info["name"] or ""])}


def test_ctrl_c_after_measuring_stops_engines_and_keeps_the_report(pytester, ngram_toml):
    pytester.makepyfile(
        """
        def test_measure(spec_run):
            assert spec_run.runs

        def test_interrupt(spec_run):
            raise KeyboardInterrupt
        """
    )
    before = _engine_processes()
    report = pytester.path / "interrupted.json"
    result = pytester.run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--spec-config={ngram_toml}",
                          f"--spec-report={report}", timeout=900)
    assert result.ret == 2  # pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*KeyboardInterrupt*", "*speculative decoding*", "ngram T=0 *"])
    assert {run["temperature"] for run in json.loads(report.read_text())["runs"]} == {0.0, 0.8}
    assert _engine_processes() - before == set()
