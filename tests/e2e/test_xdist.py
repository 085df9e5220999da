"""pytest-xdist: each worker owns its engines, the device lock keeps their windows apart in time,
and the controller merges every config's result and verdicts.

This is plumbing between processes, not engines: the workers measure on scripted engines (through
the plugin's `pytest_specdecode_measurer` hook) that take the time they report, so windows that
the lock failed to keep apart would overlap. Everything else (configs, checks against the
installed vLLM, the target's tokenizer, reports) is real.
"""

import json
import sys
from pathlib import Path

REPO = Path(__file__).parents[2]

SCRIPTED_ENGINES = f"""
import sys
import time

sys.path.insert(0, {str(REPO)!r})

from pytest_specdecode.engines.pool import EnginePool
from pytest_specdecode.measure.measurer import Measurer
from tests.unit.fakes import FakeEngine


class TimedEngine(FakeEngine):
    def generate(self, prompts, sampling, load=None):
        generated = super().generate(prompts, sampling, load)
        time.sleep(generated.duration_s)
        return generated


def pytest_specdecode_measurer(config):
    return Measurer(EnginePool({{"offline": lambda spec: TimedEngine(spec, seconds=0.5)}}))
"""


def test_workers_measure_one_at_a_time_and_the_controller_reports_once(pytester, tiny_toml):
    other = pytester.path / "other.toml"
    other.write_text(tiny_toml.read_text())
    pytester.makeconftest(SCRIPTED_ENGINES)
    pytester.makepyfile(
        test_a="import pytest\n\n@pytest.mark.min_acceptance(0.3)\ndef test_a(spec_run):\n    pass\n",
        test_b="import pytest\n\n@pytest.mark.spec_config('other.toml')\n@pytest.mark.lossless\n"
               "def test_b(spec_run):\n    pass\n",
    )
    report = pytester.path / "xdist.json"
    result = pytester.run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "2", f"--spec-config={tiny_toml}",
                          f"--spec-report={report}", timeout=300)
    assert result.ret == 0, result.stdout.str()
    for line in ("*speculative decoding*", "tiny T=0 *1/1 passed*", "other T=0 *1/1 passed*"):
        result.stdout.fnmatch_lines([line])  # configs are listed in the order the workers finished
    data = json.loads(report.read_text())
    assert sorted(run["config_name"] for run in data["runs"]) == ["other", "tiny"]
    assert sorted(g["gate"] for g in data["gates"]) == ["lossless(1)", "min_acceptance(0.3)"]
    spans = {
        run["config_name"]: [
            (window["started_at"], window["started_at"] + window["duration_s"])
            for side in ("spec", "vanilla") for window in run[side]["windows"]
        ]
        for run in data["runs"]
    }
    (first, second) = sorted(spans.values())
    assert max(end for _, end in first) <= min(start for start, _ in second)  # never two windows at once
