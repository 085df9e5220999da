import json

from pytest_specdecode.gates.kinds import judge, parse_gate
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
                                "threshold": 0.3, "measured": None, "passed": False, "outcome": "inconclusive",
                                "interval": None, "level": None, "n": None, "interval_basis": None, "config_name": "cfg",
                                "condition": {"temperature": 0.8, "concurrency": None, "request_rate": None}}
    lines = terminal_lines([measured], verdicts)
    assert lines[0].split()[:3] == ["run", "accept", "mean"]
    assert any("INVALID" in line and "cfg T=0.8" in line for line in lines)
    assert "INCONCLUSIVE test_x: min_acceptance(0.3) at cfg T=0.8: measured -" in lines
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
    assert line.startswith("cfg T=0: speculation stops paying at c=16 (speedup 0.72x, interval ")
    assert line.endswith("), pays up to c=1; non-monotone sweep: pays again at c=32; E2E P99 regresses (> 5%) from c=16")
    assert f"break-even {line}" in terminal_lines([result(*runs)], [])


def test_break_even_line_for_a_sweep_that_always_pays_with_too_few_requests_for_a_tail():
    runs = [run(0.0, request_rate=rate, spec_e2e=0.5, n=4) for rate in (1.0, 4.0)]  # TPOT speedup 2x; 12 requests a level
    assert break_even_lines([result(*runs)]) == [
        "cfg T=0: speculation pays at every level, up to rate=4 (TPOT speedup); "
        "E2E P99 not judged at rate=1, rate=4 (fewer than [run] min_p99_requests requests a side)"
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


def _check(**fields):
    from pytest_specdecode.results import LosslessCheck

    return LosslessCheck(**{"n_pairs": 40, "distinct_samples": 40, "min_pairs": 8, **fields})


def _row(measured, label):
    from pytest_specdecode.report.table import COLUMNS, table_rows

    row, = [row for row in table_rows([measured], []) if row[0] == label]
    return dict(zip(COLUMNS, row))


def test_lossless_column_shows_the_match_share_at_t0_and_the_check_verdict_when_sampled():
    measured = result(
        run(0.0),
        run(0.1, lossless_check=_check(p_value=0.41, spec_mean_logprob=-1.234, vanilla_mean_logprob=-1.21,
                                       mean_difference=-0.024, mean_difference_ci=[-0.08, 0.03])),
        run(0.2, lossless_check=_check(p_value=2e-7, mean_difference=-2.0, mean_difference_ci=[-2.5, -1.5])),
        run(0.3, lossless_check=_check(n_pairs=5, p_value=0.3)),
        run(0.4, lossless_check=_check(n_pairs=0, distinct_samples=0, not_measured="no vanilla engine to score outputs with")),
        run(0.5),
    )
    unmeasured_t0 = run(0.0).model_copy(update={"config_name": "ids", "outputs_match": None})
    cells = {label: _row(measured, label)["lossless"] for label in ("cfg T=0", "cfg T=0.1", "cfg T=0.2", "cfg T=0.3", "cfg T=0.4", "cfg T=0.5")}
    assert cells == {
        "cfg T=0": "match 1.00", "cfg T=0.1": "lossless +-0.1", "cfg T=0.2": "NOT LOSSLESS p=2e-07",
        "cfg T=0.3": "inconclusive (5 pairs)", "cfg T=0.4": "not measured", "cfg T=0.5": "not measured",
    }
    assert _row(result(unmeasured_t0), "ids T=0")["lossless"] == "-"
    lines = terminal_lines([measured], [])
    assert ("lossless cfg T=0.1: lossless within +-0.1: spec - vanilla -0.024 nats/token (0.99 interval -0.080..+0.030, "
            "p = 0.41, 40 pairs); 40 distinct pairs; target log-prob/token spec -1.234 vs vanilla -1.210") in lines
    assert "lossless cfg T=0.4: not measured: no vanilla engine to score outputs with" in lines
    assert "lossless cfg T=0.5: not measured ([run] lossless_check is off)" in lines
    text = markdown([measured], [])
    assert "| gates |" in text and "| NOT LOSSLESS p=2e-07 |" in text and "**Lossless check (T>0)**" in text


def test_vanilla_source_is_one_line_per_config_with_a_cached_baseline_s_age_and_fingerprint():
    from pytest_specdecode.results import BaselineInfo

    measured = BaselineInfo(source="measured", fingerprint="ffffffffffff", age_s=0.0)
    ages = {0.0: 3 * 86400 + 100, 0.1: 42, 0.2: 300, 0.3: 7200}
    cached = {t: BaselineInfo(source="cached", fingerprint=f"a1b2c{i}d4e5f6", age_s=age) for i, (t, age) in enumerate(ages.items())}
    mixed = result(*(run(t, baseline=info) for t, info in cached.items()), run(0.8, baseline=measured))
    assert (
        "vanilla cfg: T=0 cached 3 d ago (a1b2c0); T=0.1 cached 42 s ago (a1b2c1); T=0.2 cached 5 min ago (a1b2c2); "
        "T=0.3 cached 2 h ago (a1b2c3); T=0.8 measured"
    ) in terminal_lines([mixed], [])
    assert "vanilla cfg: measured" in terminal_lines([result(run(0.0, baseline=measured), run(0.8, baseline=measured))], [])
    assert "- cfg: T=0 cached 3 d ago (a1b2c0); " in markdown([mixed], [])


def test_warnings_are_one_line_per_run_short_in_the_terminal_and_whole_in_markdown():
    from pytest_specdecode.results import RunWarning

    short = RunWarning(code="short_window", message="spec window of 0.45 s < 3 s: too short to resolve a few percent of speed")
    unequal = RunWarning(code="unequal_lengths", message="spec outputs are 1.20x vanilla's length: throughput speedup compares unequal work")
    busy = RunWarning(code="client_bound", message="the measuring client set the pace of a spec window (event-loop lag 80 ms)")
    measured = result(run(0.0), run(0.8, warnings=[short, unequal]), run(1.0, invalid="no drafts were proposed", warnings=[busy]))
    lines = terminal_lines([measured], [])
    assert [line for line in lines if line.startswith("warnings ")] == [
        "warnings cfg T=0.8: short_window (spec window of 0.45 s < 3 s: ...), unequal_lengths (spec outputs are 1.20x vanilla's length: ...)",
        "warnings cfg T=1: client_bound (the measuring client set the pace of a spec window (event-loop lag 80 ms))",
    ]
    assert any(line.startswith("cfg T=1 ") and "INVALID" in line and "no drafts were proposed" in line for line in lines)
    text = markdown([measured], [])
    assert f"- cfg T=0.8: short_window ({short.message}), unequal_lengths ({unequal.message})" in text


def test_a_speedup_over_unequal_output_lengths_is_starred_and_the_star_explained_once():
    from pytest_specdecode.report.table import UNEQUAL_NOTE

    from pytest_specdecode.results import RunWarning

    unequal = {"speedup_basis": "output tokens/s, unequal lengths (1200 spec vs 1000 vanilla tokens)",
               "warnings": [RunWarning(code="unequal_lengths", message="spec outputs are 1.20x vanilla's length")]}
    measured = result(
        run(0.0, speedup_basis="output tokens/s, equal lengths (1000 spec vs 1000 vanilla tokens)"),
        run(0.8, **unequal), run(1.0, **unequal),
    )
    assert [_row(measured, f"cfg T={t}")["speedup"] for t in ("0", "0.8", "1")] == ["1.80x", "1.80x*", "1.80x*"]
    lines = terminal_lines([measured], [])
    assert lines.count(f"* {UNEQUAL_NOTE}") == 1
    assert not any(line.startswith("* ") for line in terminal_lines([result(run(0.0))], []))
    text = markdown([measured], [])
    assert "| 1.80x\\* |" in text and f"\\* {UNEQUAL_NOTE}" in text


def test_json_report_is_strict_json_and_carries_what_each_run_was_judged_by(tmp_path):
    import math

    from pytest_specdecode.results import BaselineInfo, RunResult, RunWarning, Window

    window = Window(duration_s=0.45, output_tokens=40, prefix_cache_reset=True)
    measured = run(
        0.8, request_rate=float("inf"), warnings=[RunWarning(code="short_window", message="spec window of 0.45 s")],
        speedup_basis="output tokens/s, equal lengths", lossless_check=_check(p_value=0.41),
        baseline=BaselineInfo(source="cached", fingerprint="a1b2c3d4", age_s=10.0),
        engine_args={"enforce_eager": True}, speculative_config={"method": "ngram", "num_speculative_tokens": 3},
    )
    measured = measured.model_copy(update={"spec": measured.spec.model_copy(update={"windows": [window]})})
    path = tmp_path / "r.json"
    write_json(path, [result(measured)], [])

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    data = json.loads(path.read_text(), parse_constant=refuse)
    written, = data["runs"]
    assert written["request_rate"] == "Infinity"
    assert math.isinf(RunResult.model_validate(written).request_rate)
    assert written["warnings"] == [{"code": "short_window", "message": "spec window of 0.45 s"}]
    assert written["speedup_basis"] == "output tokens/s, equal lengths"
    assert written["lossless_check"]["p_value"] == 0.41 and written["lossless_check"]["verdict"] == "inconclusive"
    assert written["baseline"] == {"source": "cached", "fingerprint": "a1b2c3d4", "age_s": 10.0}
    assert written["engine_args"] == {"enforce_eager": True}
    assert written["speculative_config"] == {"method": "ngram", "num_speculative_tokens": 3}
    assert written["spec"]["windows"][0]["duration_s"] == 0.45


def test_engine_line_per_config_tells_an_eager_run_from_a_cuda_graph_run():
    from pytest_specdecode.results import ConfigResult

    speculative = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4}
    eager = run(0.0, engine_args={"enforce_eager": True, "max_model_len": 2048}, speculative_config=speculative)
    graphs = run(0.0, engine_args={"max_model_len": 2048}, speculative_config={"method": "eagle3", "model": "/m/draft", "num_speculative_tokens": 2})
    graphs = ConfigResult(config="/c/e.toml", config_name="eagle", runs=[graphs.model_copy(update={"config_name": "eagle"})])
    lines = terminal_lines([result(eager, eager.model_copy(update={"temperature": 0.8})), graphs], [])
    assert [line for line in lines if line.startswith("engines ")] == [
        "engines cfg: engine {enforce_eager: true, max_model_len: 2048} speculative {method: ngram, num_speculative_tokens: 3, prompt_lookup_max: 4}",
        "engines eagle: engine {max_model_len: 2048} speculative {method: eagle3, model: /m/draft, num_speculative_tokens: 2}; "
        "enforce_eager unset: CUDA graphs (vLLM's default)",
    ]
    assert "**Engines**" in markdown([graphs], [])


def test_every_run_shows_its_intervals_and_inconclusive_verdicts_are_counted_apart(tmp_path):
    from .simulate import simulated_run

    resolved = simulated_run(0, repeats=8, window_noise=0.05)
    single = simulated_run(1, repeats=1, window_noise=0.05, true_speedup=1.0).model_copy(update={"temperature": 0.8})
    measured = result(resolved, single)
    verdicts = judge(parse_gate("min_speedup", (1.1,), {}), measured, "test_x")
    assert [v.outcome for v in verdicts] == ["pass", "inconclusive"]
    lines = terminal_lines([measured], verdicts)
    interval_lines = [line for line in lines if line.startswith("intervals")]
    assert len(interval_lines) == 2
    assert f"speedup {resolved.speedup_ci[0]:.2f}..{resolved.speedup_ci[1]:.2f}" in interval_lines[0]
    assert "[8 ABBA window pairs (paired t on the pooled ratio's window contributions); engine-start noise not covered" in interval_lines[0]
    assert "window-to-window noise not covered" in interval_lines[1]
    assert lines[-1] == "gates: 1 passed, 1 inconclusive"
    assert any("1/1 passed" in line for line in lines) and any("0/1 passed, 1 inconclusive" in line for line in lines)
    assert "Gates: 1 passed, 1 inconclusive" in markdown([measured], verdicts)
    path = tmp_path / "r.json"
    write_json(path, [measured], verdicts)
    data = json.loads(path.read_text())
    for key in ("speedup_ci", "tpot_speedup_ci", "acceptance_rate_ci", "p99_regression_ci", "interval_basis"):
        assert key in data["runs"][0]
    assert data["runs"][0]["speedup_ci"] == resolved.speedup_ci
    assert data["gates"][0]["interval_basis"].startswith("8 ABBA window pairs")


def test_paced_levels_report_ttft_from_the_scheduled_send_apart():
    paced = run(request_rate=2.0)
    late = [s.model_copy(update={"scheduled_ttft_s": s.ttft_s + 0.5}) for s in paced.spec.samples]
    paced = paced.model_copy(update={"spec": paced.spec.model_copy(update={"samples": late})})
    lines = [line for line in terminal_lines([result(paced)], []) if line.startswith("scheduled ")]
    assert lines == ["scheduled cfg T=0 rate=2: TTFT p99 from schedule 600 vs - ms (from send 100 vs 100 ms), spec vs vanilla"]


def test_a_session_where_every_config_failed_still_writes_its_reports(tmp_path):
    failures = {"/c/eagle.toml": "engine start failed: no such file /models/head", "/c/ngram.toml":
                "interrupted before its measurement finished"}
    path = tmp_path / "r.json"
    write_json(path, [], [], failures=failures)
    assert json.loads(path.read_text())["failed_configs"] == failures
    text = markdown([], [], failures)
    assert "**No config measured**" in text
    assert "- /c/ngram.toml: interrupted before its measurement finished" in text


def test_a_huge_k_shows_eight_positions_and_says_how_many_there_are():
    many = run(accepted=tuple(range(100, 0, -1)), k=100, drafts=200)
    row = next(line for line in terminal_lines([result(many)], []) if line.startswith("cfg T=0 "))
    assert "… (100 positions)" in row and len(row) < 200
