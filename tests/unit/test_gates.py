"""Gate parsing and verdicts: pure logic, no engine."""

import math

import pytest

from pytest_specdecode import GateFailure, assert_lossless, assert_max_p99_regression, assert_min_acceptance, assert_min_speedup
from pytest_specdecode.config.spec import GatesSection
from pytest_specdecode.gates.kinds import GateUsageError, judge, parse_gate

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
        ("lossless", (), {"alpha": 0.05}, "alpha is not a gate argument: every gate is judged at one false-alarm rate"),
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
    # was `lossless_min_match or 1.0`: a declared 0.0 became 1.0
    assert parse_gate("lossless", (), {}, GatesSection(lossless_min_match=0.0)).threshold == 0.0
    assert parse_gate("max_p99_regression", (0.1,), {}).metric == "e2e"


def test_every_matching_run_gets_a_verdict_and_temperature_selects():
    measured = result(run(0.0), run(0.8, accepted=(10, 2, 0)))
    gate = parse_gate("min_acceptance", (0.3,), {})
    verdicts = judge(gate, measured, "t")
    assert [(v.run, v.passed) for v in verdicts] == [("cfg T=0", True), ("cfg T=0.8", False)]
    assert verdicts[1].measured == pytest.approx(12 / 150)
    assert "measured 0.080 (0.99 interval 0.080..0.080), below threshold 0.3" in verdicts[1].message
    assert verdicts[1].level == 0.99 and verdicts[1].interval == (pytest.approx(0.08), pytest.approx(0.08))
    assert len(judge(parse_gate("min_acceptance", (0.3,), {"temperature": 0.0}), measured)) == 1


def test_position_gate_reads_per_position_acceptance_with_an_interval_from_the_requests():
    measured = run()
    steps = [[1, 3, 3, 1, 2], [1, 2, 2, 1, 1], [1, 3, 1, 2, 3]]  # requests differ in how far they accept
    samples = [s.model_copy(update={"chunk_tokens": steps[i % 8 % 3]}) for i, s in enumerate(measured.spec.samples)]
    measured = measured.model_copy(update={"spec": measured.spec.model_copy(update={"samples": samples})})
    verdict, = judge(parse_gate("min_acceptance", (0.9,), {"position": 1}), result(measured))
    assert verdict.measured == pytest.approx(20 / 50) and verdict.outcome == "fail"
    assert verdict.interval[0] < 0.4 < verdict.interval[1] < 0.9
    # three windows of the same greedy outputs are one window's evidence, not three: same interval
    one = measured.model_copy(update={"spec": measured.spec.model_copy(update={"samples": samples[:8]})})
    assert judge(parse_gate("min_acceptance", (0.9,), {"position": 1}), result(one))[0].interval == verdict.interval
    assert "per-position acceptance falls below 0.5 at position 1" in verdict.message


def test_a_gate_on_a_missing_position_or_temperature():
    verdict, = judge(parse_gate("min_acceptance", (0.5,), {"position": 7}), result(run()))
    assert verdict.measured is None and verdict.outcome == "inconclusive"
    with pytest.raises(GateUsageError, match="no measured run matches"):
        judge(parse_gate("min_acceptance", (0.5,), {"temperature": 0.5}), result(run()))


def test_invalid_runs_judge_no_gate_and_say_why():
    verdict, = judge(parse_gate("min_speedup", (0.1,), {}), result(run(invalid="no drafts were proposed")))
    assert verdict.outcome == "inconclusive" and not verdict.passed and verdict.measured is None
    assert "inconclusive: invalid measurement: no drafts were proposed" in verdict.message


def test_speedup_and_p99_regression_directions():
    fast = result(run(spec_duration=1.0, spec_e2e=1.25))
    assert judge(parse_gate("min_speedup", (1.5,), {}), fast)[0].passed  # 2x
    assert not judge(parse_gate("min_speedup", (2.5,), {}), fast)[0].passed
    regression, = judge(parse_gate("max_p99_regression", (0.10,), {}), fast)
    assert regression.measured == pytest.approx(0.25) and not regression.passed
    assert "above threshold 0.1" in regression.message
    assert judge(parse_gate("max_p99_regression", (0.30,), {}), fast)[0].passed


def _checked(temperature, spec_logprob, n=10):
    from pytest_specdecode.measure.lossless import check_lossless
    from pytest_specdecode.results import RequestSample

    def side(value, text):
        return [RequestSample(prompt_tokens=3, output_tokens=4, ttft_s=0.1, e2e_s=1.0, output_text=f"{text} {i}",
                              output_token_ids=[i, 1, 2, 3], target_logprob=value + 0.01 * (i % 3)) for i in range(n)]

    spec, vanilla = side(spec_logprob, "spec text"), side(-1.2, "vanilla text")
    return run(temperature, lossless_check=check_lossless(spec, vanilla)).model_copy(
        update={"spec": run().spec.model_copy(update={"samples": spec}),
                "vanilla": run().vanilla.model_copy(update={"samples": vanilla})})


def test_lossless_judges_greedy_runs_by_match_and_sampled_runs_by_equivalence():
    measured = result(run(0.0), _checked(0.8, spec_logprob=-1.2))
    verdicts = judge(parse_gate("lossless", (), {}), measured)
    assert [(v.run, v.outcome) for v in verdicts] == [("cfg T=0", "pass"), ("cfg T=0.8", "pass")]
    sampled = verdicts[1]
    assert sampled.measured == pytest.approx(0.0) and sampled.threshold == 0.1 and sampled.level == 0.99
    broken = judge(parse_gate("lossless", (), {}), result(_checked(0.8, spec_logprob=-4.1)))[0]
    assert broken.outcome == "fail" and broken.measured == pytest.approx(-2.9)
    assert "not lossless: spec - vanilla -2.900 nats/token" in broken.message
    assert "spec outputs score -4.09 vs vanilla -1.19 nats/token" in broken.message
    assert broken.message.count("spec:    'spec text") == 3 and "vanilla: 'vanilla text" in broken.message


def test_a_sampled_run_without_a_check_or_with_too_few_requests_is_inconclusive_saying_so():
    unchecked = judge(parse_gate("lossless", (), {}), result(run(0.8)))[0]
    assert unchecked.outcome == "inconclusive" and "not measured" in unchecked.message
    few = judge(parse_gate("lossless", (), {}), result(_checked(0.8, -4.1, n=5)))[0]
    assert few.outcome == "inconclusive" and "the check judges from 8 pairs on" in few.message


def test_a_shown_difference_is_not_lossless_even_when_p_sits_above_a_looser_alpha():
    """Finding 1: the demo's broken sampler, -2.19 nats/token over 8 pairs with a 95% interval
    clear of 0 but p = 0.0125 >= 0.01, was printed and gated as `lossless`. With one alpha for test
    and interval it is inconclusive (its 0.99 interval reaches past 0), never lossless."""
    from pytest_specdecode.measure.lossless import check_lossless
    from pytest_specdecode.results import RequestSample

    gaps = [-0.2, -0.4, -4.8, -0.3, -5.9, -0.5, -4.1, -1.3]  # spec - vanilla per pair, 16 tokens each
    spec = [RequestSample(prompt_tokens=3, output_tokens=16, ttft_s=0.1, e2e_s=1.0, output_token_ids=[i] * 16,
                          target_logprob=-1.31 + g) for i, g in enumerate(gaps)]
    vanilla = [s.model_copy(update={"target_logprob": -1.31, "output_token_ids": [99] * 16}) for s in spec]
    check = check_lossless(spec, vanilla)
    assert 0.01 < check.p_value < 0.05 and check.verdict == "inconclusive"
    assert check.mean_difference_ci[1] > 0  # the interval at the test's own level reaches past 0
    assert "about" not in check.summary()  # the estimate lies past the margin: no pair count would prove it lossless
    assert "more pairs would show it" in check.summary()
    assert check_lossless(spec * 3, vanilla * 3).verdict == "not lossless"


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


def test_assertion_helpers_fail_an_inconclusive_verdict_and_report_every_verdict():
    """Finding 7: the helpers judged by point only, ignored the inconclusive policy and never
    reached a report. A one-window run cannot resolve a speedup: the helper fails by default, passes
    with a warning under --spec-inconclusive=warn, and its verdicts reach the test's sink."""
    one_window = result(run(spec_duration=1.0, windows=1))
    with pytest.raises(GateFailure, match="inconclusive: measured 1.800, threshold 1.5: 1 window"):
        assert_min_speedup(one_window, 1.5)
    seen = []
    bound = one_window.bound_to(lambda verdicts: seen.extend(verdicts) or "warn")
    with pytest.warns(UserWarning, match="inconclusive"):
        verdicts = assert_min_speedup(bound, 1.5)
    assert [v.outcome for v in verdicts] == ["inconclusive"] and seen == verdicts


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
    with pytest.raises(GateFailure, match=r"not lossless: spec - vanilla -2.900 nats/token"):
        assert_lossless(result(_checked(0.8, spec_logprob=-4.1)), temperature=0.8)
    with pytest.raises(GateFailure, match="not measured"):
        assert_lossless(result(run(0.8)), temperature=0.8)


def test_a_p99_gate_is_not_judged_below_the_configs_minimum_requests():
    """Finding 2: the P99 gate judged at any n (one outlier decides a P99 of a dozen requests)."""
    few = result(run(spec_e2e=2.0, n=3))  # 9 requests a side
    verdict, = judge(parse_gate("max_p99_regression", (0.10,), {}), few)
    assert verdict.outcome == "inconclusive"
    assert "9 requests a side, fewer than [run] min_p99_requests = 20" in verdict.message
    lowered = result(run(spec_e2e=2.0, n=3, min_p99_requests=5))
    assert judge(parse_gate("max_p99_regression", (0.10,), {}), lowered)[0].outcome == "fail"


def test_a_timed_gate_on_one_window_is_inconclusive_whatever_its_point():
    """Finding 3: a 0.30x speedup against min_speedup(1.3) at repeats = 1 was inconclusive and the
    test passed. It is still inconclusive (one window cannot show it), and inconclusive now fails
    by default; with three windows the same collapse is a fail."""
    from pytest_specdecode.gates.policy import failures

    slow = judge(parse_gate("min_speedup", (1.3,), {}), result(run(spec_duration=2 / 0.3, windows=1)))
    assert slow[0].outcome == "inconclusive" and slow[0].measured == pytest.approx(0.27)
    assert failures("fail", slow) == [slow[0].message] and "repeats >= 3" in slow[0].message
    assert judge(parse_gate("min_speedup", (1.3,), {}), result(run(spec_duration=2 / 0.3)))[0].outcome == "fail"


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
    from pytest_specdecode.gates.kinds import KINDS
    from pytest_specdecode.gates.markers import GATE_MARKERS, MARKER_HELP

    assert set(KINDS) == set(GATE_MARKERS) == set(MARKER_HELP)
    assert all(kind.help.startswith(name) for name, kind in KINDS.items())


def test_a_verdict_survives_the_trip_through_plain_values_and_names_its_run_by_condition():
    from pytest_specdecode.results import Condition, Verdict

    measured = result(run(0.0), run(0.8))
    verdict = judge(parse_gate("min_speedup", (1.1,), {"metric": "tpot"}), measured, "t")[1]
    assert Verdict.model_validate(verdict.model_dump(mode="json")) == verdict
    assert verdict.of("cfg", Condition(temperature=0.8)) and not verdict.of("cfg", Condition(temperature=0.0))
    assert Verdict(test="t", gate="no_regression(vs x)", run="cfg", threshold=0.05, measured=None, passed=True).condition is None


def test_more_windows_are_asked_for_only_where_they_can_resolve_a_verdict():
    """Greedy windows repeat the same outputs: acceptance and output matching at T=0 learn nothing
    from another window, a timed figure or a sampled one does; a verdict with no figure never."""
    from pytest_specdecode.gates.kinds import more_windows_help

    measured = result(run(0.0, windows=1), run(0.8, windows=1))
    speedup = judge(parse_gate("min_speedup", (1.5,), {}), measured)
    acceptance = judge(parse_gate("min_acceptance", (0.5,), {}), measured)
    missing = judge(parse_gate("min_acceptance", (0.5,), {"position": 7}), measured)
    assert [more_windows_help(parse_gate("min_speedup", (1.5,), {}), v) for v in speedup] == [True, True]
    assert [more_windows_help(parse_gate("min_acceptance", (0.5,), {}), v) for v in acceptance] == [False, True]
    assert not any(more_windows_help(parse_gate("min_acceptance", (0.5,), {"position": 7}), v) for v in missing)


SYNTHETIC = """
[model]
name = "org/target"

[speculative]
method = "ngram"
num_speculative_tokens = 3
rejection_sample_method = "synthetic"
synthetic_acceptance_length = 2.5
"""


def test_a_lossless_gate_on_a_lossy_acceptance_method_is_a_usage_error_before_any_engine(pytester):
    pytester.makefile(".toml", synthetic=SYNTHETIC)
    pytester.makepyfile("import pytest\n\n@pytest.mark.lossless()\ndef test_same(spec_run):\n    raise AssertionError('measured')\n")
    outcome = pytester.runpytest("-p", "no:cacheprovider", "--spec-config=synthetic.toml")
    assert outcome.ret == pytest.ExitCode.USAGE_ERROR
    assert "rejection_sample_method = 'synthetic' accepts drafts at a set rate" in outcome.stderr.str()
    pytester.makepyfile("import pytest\n\n@pytest.mark.min_acceptance(0.5)\ndef test_rate(spec_run):\n    pass\n")
    assert pytester.runpytest("-p", "no:cacheprovider", "--spec-config=synthetic.toml", "--collect-only").ret == 0
