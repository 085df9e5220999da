import json

from pytest_specdecode.gates import judge, parse_gate
from pytest_specdecode.report import break_even_lines, markdown, terminal_lines, write_json

from .builders import result, run


def test_report_json_terminal_and_markdown_read_the_same_result(tmp_path):
    measured = result(run(0.0), run(0.8, invalid="speculative outputs average 1.0 tokens"))
    verdicts = judge(parse_gate("min_acceptance", (0.3,), {}), measured, "test_x")
    path = tmp_path / "out" / "r.json"
    write_json(path, [measured], verdicts)
    data = json.loads(path.read_text())
    assert data["schema_version"] == 2
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


def test_break_even_line_names_the_first_crossing_and_a_non_monotone_sweep():
    runs = [
        run(0.0, concurrency=1, spec_duration=1.0, spec_e2e=0.9, n=20),   # 1.8x, tail better
        run(0.0, concurrency=16, spec_duration=2.5, spec_e2e=1.2, n=20),  # 0.72x, tail 20% worse
        run(0.0, concurrency=32, spec_duration=1.7, spec_e2e=1.5, n=20),  # 1.06x again
    ]
    line, = break_even_lines([result(*runs)])
    assert line.startswith("cfg T=0: speculation stops paying at c=16 (speedup 0.72x, 95% interval ")
    assert line.endswith("), pays up to c=1; non-monotone sweep: pays again at c=32; E2E P99 regresses (> 5%) from c=16")
    assert f"break-even {line}" in terminal_lines([result(*runs)], [])


def test_break_even_line_for_a_sweep_that_always_pays_with_too_few_requests_for_a_tail():
    runs = [run(0.0, request_rate=rate, spec_e2e=0.5) for rate in (1.0, 4.0)]  # TPOT speedup 2x; 4 requests a level
    assert break_even_lines([result(*runs)]) == [
        "cfg T=0: speculation pays at every level, up to rate=4 (TPOT speedup); "
        "E2E P99 not judged at rate=1, rate=4 (fewer than 20 requests a side)"
    ]


def test_per_request_acceptance_above_one_is_called_out_with_k():
    from pytest_specdecode.results import RequestSample

    merged = RequestSample(prompt_tokens=5, output_tokens=15, ttft_s=0.1, e2e_s=1.0, chunk_tokens=[1, 6, 6, 2])
    measured = run(k=3)
    measured = measured.model_copy(update={"spec": measured.spec.model_copy(update={"samples": [merged]})})
    assert (
        "note cfg T=0: 1 of 1 requests read per-request acceptance above 1 (K=3): their stream chunks merged engine "
        "steps, so per-request figures read high" in terminal_lines([result(measured)], [])
    )
