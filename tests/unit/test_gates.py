"""Gate parsing and verdicts: pure logic, no engine."""

import math

import pytest

from pytest_specdecode import GateFailure, assert_lossless, assert_max_p99_regression, assert_min_acceptance, assert_min_speedup
from pytest_specdecode.config import GatesSection
from pytest_specdecode.gates import GateUsageError, judge, parse_gate

from .builders import result, run


@pytest.mark.parametrize(
    ("kind", "args", "kwargs", "message"),
    [
        ("min_acceptance", (1.5,), {}, "threshold must be within [0, 1], got 1.5"),
        ("min_acceptance", ("high",), {}, "threshold must be a number, got 'high'"),
        ("min_acceptance", (0.5, 0.6), {}, "takes one positional threshold"),
        ("min_acceptance", (0.5,), {"position": -1}, "position is a 0-based draft position"),
        ("min_acceptance", (0.5,), {"percentile": 25}, "percentile must be one of (10, 50, 90)"),
        ("min_acceptance", (0.5,), {"metric": "e2e"}, "unexpected argument 'metric'"),
        ("min_speedup", (0,), {}, "threshold must be > 0"),
        ("min_speedup", (1.2,), {"metric": "e2e"}, "metric must be one of throughput, tpot"),
        ("max_p99_regression", (-0.1,), {}, "threshold must be >= 0"),
        ("max_p99_regression", (0.1,), {"metric": "latency"}, "metric must be one of e2e, tpot, ttft, itl"),
        ("max_p99_regression", (0.1,), {"temperature": -1}, "temperature must be >= 0"),
        ("min_acceptance", (), {}, "no threshold given and none in the config's [gates]"),
        ("lossless", (), {"min_match": 2}, "threshold must be within [0, 1]"),
    ],
)
def test_bad_marker_arguments_are_usage_errors(kind, args, kwargs, message):
    with pytest.raises(GateUsageError) as caught:
        parse_gate(kind, args, kwargs)
    assert message in str(caught.value)
    assert str(caught.value).startswith(kind)


def test_thresholds_default_to_the_config_and_markers_win():
    defaults = GatesSection(min_acceptance=0.6, lossless_min_match=0.9)
    assert parse_gate("min_acceptance", (), {}, defaults).threshold == 0.6
    assert parse_gate("min_acceptance", (0.7,), {}, defaults).threshold == 0.7
    assert parse_gate("lossless", (), {}, defaults).threshold == 0.9
    assert parse_gate("lossless", (), {}, None).threshold == 1.0
    assert parse_gate("max_p99_regression", (0.1,), {}).metric == "e2e"


def test_every_matching_run_gets_a_verdict_and_temperature_selects():
    measured = result(run(0.0), run(0.8, accepted=(10, 2, 0)))
    gate = parse_gate("min_acceptance", (0.3,), {})
    verdicts = judge(gate, measured, "t")
    assert [(v.run, v.passed) for v in verdicts] == [("cfg T=0", True), ("cfg T=0.8", False)]
    assert verdicts[1].measured == pytest.approx(12 / 150)
    assert "measured 0.080, below threshold 0.3" in verdicts[1].message
    assert len(judge(parse_gate("min_acceptance", (0.3,), {"temperature": 0.0}), measured)) == 1


def test_position_gate_reads_per_position_acceptance():
    verdict, = judge(parse_gate("min_acceptance", (0.5,), {"position": 1}), result(run()))
    assert verdict.measured == pytest.approx(20 / 50) and not verdict.passed
    assert "per-position acceptance falls below 0.5 at position 1" in verdict.message


def test_a_gate_on_a_missing_position_or_temperature():
    verdict, = judge(parse_gate("min_acceptance", (0.5,), {"position": 7}), result(run()))
    assert verdict.measured is None and not verdict.passed
    with pytest.raises(GateUsageError, match="no measured run matches"):
        judge(parse_gate("min_acceptance", (0.5,), {"temperature": 0.5}), result(run()))


def test_invalid_runs_fail_every_gate_with_the_reason():
    verdict, = judge(parse_gate("min_speedup", (0.1,), {}), result(run(invalid="no drafts were proposed")))
    assert not verdict.passed and verdict.measured is None
    assert "invalid measurement: no drafts were proposed" in verdict.message


def test_speedup_and_p99_regression_directions():
    fast = result(run(spec_duration=1.0, spec_e2e=1.25))
    assert judge(parse_gate("min_speedup", (1.5,), {}), fast)[0].passed  # 2x
    assert not judge(parse_gate("min_speedup", (2.5,), {}), fast)[0].passed
    regression, = judge(parse_gate("max_p99_regression", (0.10,), {}), fast)
    assert regression.measured == pytest.approx(0.25) and not regression.passed
    assert "above threshold 0.1" in regression.message
    assert judge(parse_gate("max_p99_regression", (0.30,), {}), fast)[0].passed


def _checked(temperature, spec_logprob, n=10):
    from pytest_specdecode.lossless import check_lossless
    from pytest_specdecode.results import RequestSample

    def side(value, text):
        return [RequestSample(prompt_tokens=3, output_tokens=4, ttft_s=0.1, e2e_s=1.0, output_text=f"{text} {i}",
                              output_token_ids=[i, 1, 2, 3], target_logprob=value + 0.01 * (i % 3)) for i in range(n)]

    spec, vanilla = side(spec_logprob, "spec text"), side(-1.2, "vanilla text")
    return run(temperature, lossless_check=check_lossless(spec, vanilla)).model_copy(
        update={"spec": run().spec.model_copy(update={"samples": spec}),
                "vanilla": run().vanilla.model_copy(update={"samples": vanilla})})


def test_lossless_judges_greedy_runs_by_match_and_sampled_runs_by_distribution():
    measured = result(run(0.0), _checked(0.8, spec_logprob=-1.2))
    verdicts = judge(parse_gate("lossless", (), {}), measured)
    assert [(v.run, v.outcome) for v in verdicts] == [("cfg T=0", "pass"), ("cfg T=0.8", "pass")]
    broken = judge(parse_gate("lossless", (), {"alpha": 0.01}), result(_checked(0.8, spec_logprob=-4.1)))[0]
    assert broken.outcome == "fail" and broken.measured < 0.01
    assert "not lossless at T=0.8: spec outputs have mean log-likelihood -4.09 vs vanilla -1.19 per token" in broken.message
    assert broken.message.count("spec:    'spec text") == 3 and "vanilla: 'vanilla text" in broken.message


def test_a_sampled_run_without_a_check_or_with_too_few_requests_fails_saying_so():
    unchecked = judge(parse_gate("lossless", (), {}), result(run(0.8)))[0]
    assert unchecked.outcome == "fail" and "not measured" in unchecked.message
    few = judge(parse_gate("lossless", (), {}), result(_checked(0.8, -4.1, n=5)))[0]
    assert few.outcome == "fail" and "not enough requests: 5 pairs, the check needs at least 8" in few.message
    with pytest.raises(GateUsageError, match="alpha"):
        parse_gate("lossless", (), {"alpha": 1.5})


def test_assertion_helpers_share_the_marker_logic():
    measured = result(run(0.0), run(0.8, accepted=(10, 2, 0)))
    assert_min_acceptance(measured, 0.3, temperature=0.0)
    assert_min_speedup(measured, 1.5)
    assert_lossless(measured, temperature=0.0)
    with pytest.raises(GateFailure, match=r"min_acceptance\(0.3\) at cfg T=0.8: measured 0.080"):
        assert_min_acceptance(measured, 0.3)
    with pytest.raises(GateFailure):
        assert_max_p99_regression(result(run(spec_e2e=2.0)), 0.5)
    with pytest.raises(GateUsageError):
        assert_min_acceptance(measured, 3)


def test_a_throughput_speedup_gate_that_would_judge_a_paced_rate_is_a_usage_error():
    paced = result(run(concurrency=1), run(request_rate=4.0))
    with pytest.raises(GateUsageError) as caught:
        judge(parse_gate("min_speedup", (1.3,), {}), paced)
    assert str(caught.value) == (
        "min_speedup(1.3, metric=throughput): throughput speedup is not defined at rate=4 (a paced window's "
        "length is set by the arrivals); use metric='tpot' or a concurrency level"
    )
    with pytest.raises(GateUsageError, match="not defined at rate=4"):
        assert_min_speedup(paced, 1.3)
    assert judge(parse_gate("min_speedup", (1.3,), {"concurrency": 1}), paced)[0].passed
    by_tpot = judge(parse_gate("min_speedup", (0.5,), {"metric": "tpot"}), paced)
    assert [(v.run, v.passed) for v in by_tpot] == [("cfg T=0 c=1", True), ("cfg T=0 rate=4", True)]
    unpaced = result(run(request_rate=math.inf))
    assert judge(parse_gate("min_speedup", (1.3,), {}), unpaced)[0].passed


def test_a_failure_at_a_paced_rate_still_shows_the_acceptance_summary():
    verdict, = judge(parse_gate("min_acceptance", (0.9,), {}), result(run(request_rate=4.0)))
    assert "  acceptance rate 0.433, mean acceptance length 2.30\n" in verdict.message + "\n"
    assert "speedup" not in verdict.message


def test_assert_lossless_judges_sampled_runs_by_the_distribution_check():
    assert_lossless(result(_checked(0.8, spec_logprob=-1.2)), temperature=0.8)
    with pytest.raises(GateFailure, match=r"not lossless at T=0.8: spec outputs have mean log-likelihood -4.09"):
        assert_lossless(result(_checked(0.8, spec_logprob=-4.1)), temperature=0.8, alpha=0.01)
    with pytest.raises(GateFailure, match="not measured"):
        assert_lossless(result(run(0.8)), temperature=0.8)


def test_a_marker_taking_its_threshold_from_a_config_is_skipped_without_one(pytester):
    """Was a usage error (rc 4) that kept every unrelated test from running; the docs promise a skip."""
    pytester.makepyfile(
        "import pytest\n\n@pytest.mark.min_speedup\ndef test_gated(spec_run):\n    pass\n\n"
        "def test_unrelated():\n    pass\n"
    )
    outcome = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    outcome.assert_outcomes(passed=1, skipped=1)
    outcome.stdout.fnmatch_lines(["*no spec-config: pass --spec-config=FILE*"])


def test_a_marker_without_a_threshold_is_still_an_error_when_the_config_has_none(pytester):
    config = pytester.path / "c.toml"
    config.write_text('[model]\nname = "org/m"\n[speculative]\nmethod = "ngram"\nnum_speculative_tokens = 3\n')
    pytester.makepyfile("import pytest\n\n@pytest.mark.min_speedup\ndef test_gated(spec_run):\n    pass\n")
    outcome = pytester.runpytest("-p", "no:cacheprovider", f"--spec-config={config}")
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    assert "min_speedup: no threshold given and none in the config's [gates]" in outcome.stderr.str()


def test_a_k_beyond_sixteen_is_warned_about_when_the_config_loads(tmp_path, pytestconfig):
    from pytest_specdecode.options import Options
    from pytest_specdecode.session import LargeK, SpecSession

    path = tmp_path / "c.toml"
    path.write_text('[model]\nname = "org/m"\n[speculative]\nmethod = "ngram"\nnum_speculative_tokens = 100\n')
    with pytest.warns(LargeK, match="num_speculative_tokens = 100: beyond 16 drafts per step"):
        SpecSession(pytestconfig, Options()).config_for(path)


def test_every_registered_marker_is_a_row_of_the_gate_table_with_its_help():
    from pytest_specdecode.gates import KINDS
    from pytest_specdecode.markers import GATE_MARKERS, MARKER_HELP

    assert set(KINDS) == set(GATE_MARKERS) == set(MARKER_HELP)
    assert all(kind.help.startswith(name) for name, kind in KINDS.items())


def test_a_verdict_survives_the_trip_through_plain_values_and_names_its_run_by_condition():
    from pytest_specdecode.results import Condition, Verdict

    measured = result(run(0.0), run(0.8))
    verdict = judge(parse_gate("min_speedup", (1.1,), {"metric": "tpot"}), measured, "t", confident=True)[1]
    assert Verdict.model_validate(verdict.model_dump(mode="json")) == verdict
    assert verdict.of("cfg", Condition(temperature=0.8)) and not verdict.of("cfg", Condition(temperature=0.0))
    assert Verdict(test="t", gate="no_regression(vs x)", run="cfg", threshold=0.05, measured=None, passed=True).condition is None
