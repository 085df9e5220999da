"""pytest-xdist: each worker owns its engines; the controller merges results and verdicts."""

import json
import sys


def test_workers_measure_and_the_controller_reports_once(pytester, tiny_toml, engines_stopped):
    pytester.makepyfile(
        test_a="import pytest\n\n@pytest.mark.min_acceptance(0.3)\ndef test_a(spec_run):\n    pass\n",
        test_b="import pytest\n\n@pytest.mark.lossless\ndef test_b(spec_run):\n    pass\n",
    )
    report = pytester.path / "xdist.json"
    result = pytester.run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", f"--spec-config={tiny_toml}",
                          f"--spec-report={report}", timeout=900)
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(["*speculative decoding*", "tiny T=0 *2/2 passed*"])
    data = json.loads(report.read_text())
    assert [run["config_name"] for run in data["runs"]] == ["tiny"]
    assert sorted(g["gate"] for g in data["gates"]) == ["lossless(1, alpha=0.01)", "min_acceptance(0.3)"]
