"""The speedup taken apart (tokens per engine step over the cost of a step) and the decision a
config's figures support, each statement with its evidence."""

import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pytest_specdecode.engines.metrics import parse_counters
from pytest_specdecode.gates.kinds import GateUsageError, judge, parse_gate
from pytest_specdecode.results import Window, rank
from pytest_specdecode.results.decision import decide

from .builders import result, run


def with_steps(figures, steps_per_window):
    """The same figures with each window's engine step count."""
    windows = [w.model_copy(update={"engine_steps": steps}) for w, steps in zip(figures.windows, steps_per_window)]
    return figures.model_copy(update={"windows": windows})


def decomposed(spec_steps=(40, 40, 40), vanilla_steps=(60, 60, 60), **kw):
    measured = run(**kw)
    return measured.model_copy(update={"spec": with_steps(measured.spec, spec_steps),
                                       "vanilla": with_steps(measured.vanilla, vanilla_steps)})


def test_engine_steps_are_the_count_of_vllms_tokens_per_step_histogram():
    registry = CollectorRegistry()
    histogram = Histogram("vllm:iteration_tokens_total", "tokens per engine step", ["engine"], registry=registry)
    for tokens in (512, 8, 8, 9):
        histogram.labels(engine="0").observe(tokens)
    assert parse_counters(generate_latest(registry).decode()).engine_steps == 4


def test_a_page_without_the_histogram_has_no_step_count():
    registry = CollectorRegistry()
    assert parse_counters(generate_latest(registry).decode()).engine_steps is None


def test_step_cost_is_time_per_step_and_gain_over_cost_is_the_speedup():
    # spec: 1 s over 120 steps; vanilla: 2 s over 180 steps
    measured = decomposed()
    assert measured.step_cost_ratio == pytest.approx((1.0 / 120) / (2.0 / 180))
    spec_tokens, vanilla_tokens = measured.spec.output_tokens, measured.vanilla.output_tokens
    assert measured.tokens_per_step_gain == pytest.approx((spec_tokens / 120) / (vanilla_tokens / 180))
    assert measured.tokens_per_step_gain / measured.step_cost_ratio == pytest.approx(measured.speedup)
    assert measured.expected_speedup == pytest.approx(measured.mean_acceptance_length / measured.step_cost_ratio)
    assert measured.step_cost_ratio_ci == pytest.approx([measured.step_cost_ratio] * 2)  # identical windows


def test_a_window_without_a_step_count_leaves_the_decomposition_out():
    measured = decomposed(spec_steps=(40, None, 40))
    assert measured.step_cost_ratio is None and measured.step_cost_ratio_ci is None and measured.expected_speedup is None


def test_a_resolved_speedup_is_use_and_a_resolved_slowdown_is_leave_off():
    fast = decomposed(spec_duration=1.0)  # identical windows: a zero-width interval at 2x
    slow = decomposed(spec_duration=4.0)
    assert [(s.advice, s.text.split(":")[0]) for s in decide([fast], [], 0.05, 0.15) if s.advice != "why"][:1] == \
        [("use", "pays")]
    assert any(s.advice == "leave off" and s.text.startswith("slower than vanilla") for s in decide([slow], [], 0.05, 0.15))


def test_the_why_names_the_step_cost_when_it_eats_the_acceptance():
    slow = decomposed(spec_duration=4.0)
    why = next(s for s in decide([slow], [], 0.05, 0.15) if s.advice == "why" and s.where)
    assert "each step costs" in why.text and "most is lost to the step cost" in why.text


def test_a_straddling_speedup_is_unresolved():
    noisy = run(spec_duration=1.0)
    windows = [Window(duration_s=d, output_tokens=w.output_tokens, prefix_cache_reset=True)
               for d, w in zip((0.2, 0.5, 0.3), noisy.spec.windows)]  # 2x, 0.8x, 1.33x
    noisy = noisy.model_copy(update={"spec": noisy.spec.model_copy(update={"windows": windows, "duration_s": 1.0})})
    speed = next(s for s in decide([noisy], [], 0.05, 0.15) if "speedup" in s.text)
    assert speed.advice == "unresolved" and "straddles 1x" in speed.text


def test_low_acceptance_is_leave_off_with_its_interval():
    low = run(accepted=(5, 2, 1), drafts=50)
    statement = next(s for s in decide([low], [], 0.05, 0.15) if "acceptance" in s.text and s.advice != "why")
    assert statement.advice == "leave off" and "below 0.5" in statement.text


def test_a_draft_over_its_kv_share_is_leave_off_and_the_gate_fails_it():
    measured = run()
    measured = measured.model_copy(update={
        "spec": measured.spec.model_copy(update={"kv_cache_tokens": 7000}),
        "vanilla": measured.vanilla.model_copy(update={"kv_cache_tokens": 10000}),
    })
    kv = next(s for s in decide([measured], [], 0.05, 0.15) if "KV-cache" in s.text)
    assert kv.advice == "leave off" and "30%" in kv.text
    [failed] = judge(parse_gate("max_kv_capacity_loss", (0.15,), {}), result(measured))
    assert failed.outcome == "fail" and failed.measured == pytest.approx(0.3) and failed.interval == (pytest.approx(0.3),) * 2
    [passed] = judge(parse_gate("max_kv_capacity_loss", (0.35,), {}), result(measured))
    assert passed.outcome == "pass"


def test_every_config_result_carries_its_decision_in_the_json():
    data = result(decomposed()).model_dump(mode="json")
    assert data["decision"] and {"advice", "where", "text"} <= set(data["decision"][0])


def named(measured, name, **update):
    return measured.model_copy(update={"config_name": name, **update})


def test_configs_on_one_target_are_ranked_and_a_winner_needs_its_interval():
    fast, slow = named(run(spec_duration=0.5), "eagle"), named(run(spec_duration=1.0), "ngram")  # 4x and 2x, exact
    [ranking] = rank([slow, fast])
    assert [e.name for e in ranking.entries] == ["eagle", "ngram"] and ranking.winner == "eagle"
    assert ranking.pairs[0].ratio == pytest.approx(2.0) and ranking.pairs[0].resolved
    assert ranking.summary.startswith("eagle beats ngram by 2.00x")


def test_a_ranking_does_not_call_a_winner_its_intervals_cannot_tell_apart():
    noisy = run(spec_duration=1.0)
    windows = [w.model_copy(update={"duration_s": d}) for d, w in zip((0.2, 0.5, 0.3), noisy.spec.windows)]
    noisy = named(noisy.model_copy(update={"spec": noisy.spec.model_copy(update={"windows": windows})}), "draft")
    [ranking] = rank([noisy, named(run(spec_duration=1.05), "ngram")])
    assert ranking.winner is None and "not told apart" in ranking.summary


def test_runs_on_another_target_or_condition_are_not_ranked_together():
    other = named(run(spec_duration=0.5), "other", model="another-model")
    assert rank([named(run(), "a"), other]) == []
    assert rank([named(run(), "a"), named(run(temperature=0.8), "b")]) == []


def test_a_k_sweep_names_its_best_k_in_the_decision():
    k1 = run(spec_duration=1.0, k=1, k_swept=True)
    k3 = run(spec_duration=0.5, k=3, k_swept=True)
    best = next(s for s in decide([k1, k3], [], 0.05, 0.15) if "best K" in s.text)
    assert best.advice == "use" and best.where == "T=0" and best.text.startswith("best K = 3: cfg K=3 beats cfg K=1")


def test_a_gate_selects_one_k_of_a_sweep():
    swept = result(run(k=1, k_swept=True), run(k=3, k_swept=True))
    assert [v.run for v in judge(parse_gate("min_acceptance", (0.1,), {"k": 3}), swept)] == ["cfg T=0 K=3"]
    with pytest.raises(GateUsageError, match="k is one num_speculative_tokens"):
        parse_gate("min_acceptance", (0.1,), {"k": 0})


def test_the_why_names_tokens_per_step_when_the_batch_does_not_gain_what_acceptance_says():
    # acceptance length 2.3, but the spec engine takes as many steps as vanilla in the same time
    flat = decomposed(spec_steps=(60, 60, 60), vanilla_steps=(60, 60, 60), spec_duration=2.0)
    why = next(s for s in decide([flat], [], 0.05, 0.15) if s.advice == "why" and s.where)
    assert "most is lost in tokens per step" in why.text
