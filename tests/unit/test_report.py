import json

from pytest_specdecode.gates import judge, parse_gate
from pytest_specdecode.report import markdown, terminal_lines, write_json

from .builders import result, run


def test_report_json_terminal_and_markdown_read_the_same_result(tmp_path):
    measured = result(run(0.0), run(0.8, invalid="speculative outputs average 1.0 tokens"))
    verdicts = judge(parse_gate("min_acceptance", (0.3,), {}), measured, "test_x")
    path = tmp_path / "out" / "r.json"
    write_json(path, [measured], verdicts)
    data = json.loads(path.read_text())
    assert data["schema_version"] == 1
    assert [r["temperature"] for r in data["runs"]] == [0.0, 0.8]
    assert data["runs"][0]["acceptance_rate"] == measured.runs[0].acceptance_rate
    assert data["gates"][1] == {"test": "test_x", "gate": "min_acceptance(0.3)", "run": "cfg T=0.8",
                                "threshold": 0.3, "measured": None, "passed": False, "outcome": "fail", "interval": None}
    lines = terminal_lines([measured], verdicts)
    assert lines[0].split()[:3] == ["run", "accept", "mean"]
    assert any("INVALID" in line and "cfg T=0.8" in line for line in lines)
    assert "FAIL test_x: min_acceptance(0.3) at cfg T=0.8: measured -" in lines
    text = markdown([measured], verdicts)
    assert "| cfg T=0 | 0.433 |" in text and "**Missed or inconclusive gates**" in text


def test_nothing_measured_shows_nothing():
    assert terminal_lines([], []) == [] and markdown([], []) == ""


def test_break_even_is_the_highest_paying_level_and_the_first_regressing_one():
    from pytest_specdecode.results import ConfigResult

    runs = [
        run(0.0, concurrency=1, spec_duration=1.0, spec_e2e=0.9),   # 2x faster, tail better
        run(0.0, concurrency=8, spec_duration=1.8, spec_e2e=1.2),   # still >= 1, tail 20% worse
        run(0.0, concurrency=32, spec_duration=2.5, spec_e2e=1.5),  # slower
    ]
    measured = ConfigResult(config="/c/cfg.toml", config_name="cfg", runs=runs)
    point, = measured.break_even
    assert (point.axis, point.highest_level_with_speedup, point.first_level_p99_regresses) == ("concurrency", 8, 8)
    assert "break-even cfg T=0: speedup >= 1 up to c=8; E2E P99 regresses from c=8" in terminal_lines([measured], [])
