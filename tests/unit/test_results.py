"""The arithmetic of the result model: one place for every figure."""

import math

import pytest

from pytest_specdecode.config.spec import GatesSection
from pytest_specdecode.results import RequestSample, SpecCounters
from pytest_specdecode.results.distribution import Distribution

from .builders import result, run


def test_acceptance_figures_from_counters():
    r = run(accepted=(40, 20, 5), drafts=50, k=3)
    assert r.acceptance_rate == pytest.approx(65 / 150)
    assert r.mean_acceptance_length == pytest.approx(1 + 65 / 50)
    assert r.per_position_acceptance == pytest.approx([0.8, 0.4, 0.1])


def test_no_drafts_means_no_acceptance_figures():
    r = run(accepted=(0, 0, 0), drafts=0)
    assert r.acceptance_rate is None and r.mean_acceptance_length is None and r.per_position_acceptance == []


def test_counter_deltas_pad_positions():
    later = SpecCounters(num_drafts=10, num_draft_tokens=30, num_accepted_tokens=12, accepted_per_position=[6, 4, 2])
    earlier = SpecCounters(num_drafts=4, num_draft_tokens=12, num_accepted_tokens=5, accepted_per_position=[3, 2])
    delta = later.minus(earlier)
    assert (delta.num_drafts, delta.num_draft_tokens, delta.num_accepted_tokens) == (6, 18, 7)
    assert delta.accepted_per_position == [3, 2, 2]


def test_request_sample_tpot_and_acceptance_length():
    sample = RequestSample(prompt_tokens=3, output_tokens=9, ttft_s=0.5, e2e_s=2.1, chunk_tokens=[1, 4, 4])
    assert sample.tpot_s == pytest.approx((2.1 - 0.5) / 8)
    assert sample.acceptance_length == 4.0
    assert RequestSample(prompt_tokens=1, output_tokens=1, ttft_s=0.1, e2e_s=0.1).tpot_s is None


def test_speedup_is_a_ratio_of_throughputs():
    r = run(spec_duration=0.5)
    assert r.speedup == pytest.approx(r.spec.tokens_per_s / r.vanilla.tokens_per_s)
    assert r.speedup == pytest.approx((9 / 0.5) / (10 / 2.0))  # spec: 9 tokens in 0.5 s; vanilla: 10 in 2 s


def test_per_request_acceptance_is_per_draft_step():
    r = run(k=3)
    # builders: spec chunks are [1, 2, 2, 2, 2]: every step accepts 1 of 3 drafts
    assert r.per_request_acceptance.p50 == pytest.approx(1 / 3)


def test_distribution_percentiles_and_empty():
    d = Distribution.of(list(range(1, 101)))
    assert d.p50 == pytest.approx(50.5) and d.p99 == pytest.approx(99.01) and d.count == 100
    assert Distribution.of([]).p99 is None


def test_p99_regression_per_metric():
    r = run(spec_e2e=1.5)
    assert r.p99_regression["e2e"] == pytest.approx(0.5)
    assert set(r.p99_regression) == {"e2e", "tpot", "ttft", "itl"}


def test_acceptance_length_drops_the_prefill_chunk_and_the_cut_last_one():
    # the last step is cut short by max_tokens or EOS: counted, it would read as a rejection
    sample = RequestSample(prompt_tokens=3, output_tokens=8, ttft_s=0.5, e2e_s=2.1, chunk_tokens=[1, 3, 3, 1])
    assert sample.acceptance_length == 3.0
    assert RequestSample(prompt_tokens=3, output_tokens=4, ttft_s=0.5, e2e_s=2.1, chunk_tokens=[1, 3]).acceptance_length is None


def test_per_request_acceptance_above_one_is_counted_not_clipped():
    merged = RequestSample(prompt_tokens=5, output_tokens=15, ttft_s=0.1, e2e_s=1.0, chunk_tokens=[1, 6, 6, 2])
    r = run(k=3)
    r = r.model_copy(update={"spec": r.spec.model_copy(update={"samples": [*r.spec.samples, merged]})})
    assert max(r.per_request_acceptance_values()) == pytest.approx(5 / 3)
    dumped = r.model_dump()
    assert (dumped["per_request_acceptance_over_one"], dumped["per_request_acceptance_k"]) == (1, 3)
    assert run().per_request_acceptance_over_one == 0


def test_throughput_speedup_is_not_defined_at_a_paced_request_rate():
    # a paced window lasts as long as its arrivals, whichever engine serves them
    assert run(request_rate=4.0, spec_duration=0.5).speedup is None
    assert run(request_rate=4.0, spec_e2e=0.5).tpot_speedup == pytest.approx(2.0, rel=0.01)  # 0.8 / (0.5 - 0.1)
    assert run(request_rate=math.inf, spec_duration=0.5).speedup == pytest.approx(3.6)
    assert run(concurrency=4, spec_duration=0.5).speedup == pytest.approx(3.6)


def concurrency_sweep(*levels, n=4):
    """(concurrency, spec_duration, spec_e2e) per level; builders' speedup is 1.8 / spec_duration."""
    return result(*(run(concurrency=c, spec_duration=d, spec_e2e=e, n=n) for c, d, e in levels))


def test_break_even_is_the_first_crossing_and_flags_a_sweep_that_pays_again():
    point, = concurrency_sweep((1, 1.0, 1.0), (16, 2.5, 1.0), (32, 1.7, 1.0)).break_even  # 1.8x, 0.72x, 1.06x
    assert (point.axis, point.metric) == ("concurrency", "throughput")
    assert (point.first_level_not_paying, point.last_level_paying_before_it) == (16, 1)
    assert point.speedup_at_first_level_not_paying == pytest.approx(0.72)
    assert point.pays_again_at == [32] and not point.monotone
    low, high = point.speedup_ci
    assert low - 1e-12 <= point.speedup_at_first_level_not_paying <= high + 1e-12


def test_a_sweep_that_always_pays_or_keeps_falling_is_monotone_and_a_rising_one_is_not():
    always, = concurrency_sweep((1, 1.0, 1.0), (8, 1.2, 1.0), (32, 1.5, 1.0)).break_even
    assert (always.first_level_not_paying, always.last_level_paying_before_it) == (None, 32)
    assert always.monotone and always.pays_again_at == [] and always.speedup_ci is None
    never, = concurrency_sweep((1, 2.0, 1.0), (8, 2.5, 1.0)).break_even
    assert (never.first_level_not_paying, never.last_level_paying_before_it, never.monotone) == (1, None, True)
    rising, = concurrency_sweep((1, 1.5, 1.0), (8, 1.0, 1.0)).break_even  # 1.2x, then 1.8x
    assert not rising.monotone and rising.first_level_not_paying is None


def test_p99_break_even_needs_a_margin_and_enough_requests():
    levels = ((1, 1.0, 1.03), (8, 1.0, 1.2), (32, 1.0, 1.5))  # E2E P99 3%, 20%, 50% above vanilla
    point, = concurrency_sweep(*levels, n=7).break_even  # 3 windows of 7: 21 requests a side
    assert (point.first_level_p99_regresses, point.p99_not_judged, point.p99_tolerance) == (8, [], 0.05)
    few, = concurrency_sweep(*levels, n=6).break_even
    assert few.first_level_p99_regresses is None and few.p99_not_judged == [1, 8, 32]
    strict = concurrency_sweep(*levels, n=7).model_copy(update={"p99_regression_tolerance": 0.0})
    assert strict.break_even[0].first_level_p99_regresses == 1


def test_the_result_and_the_config_default_to_the_same_p99_tolerance():
    assert result().p99_regression_tolerance == GatesSection().p99_regression_tolerance == 0.05


def test_break_even_along_request_rate_reads_tpot_speedup():
    # tpot speedup = 0.8 / (spec_e2e - 0.1): 2.0x at rate 1, 0.8x at rate 4
    point, = result(run(request_rate=1.0, spec_e2e=0.5), run(request_rate=4.0, spec_e2e=1.1)).break_even
    assert (point.axis, point.metric, point.first_level_not_paying, point.last_level_paying_before_it) == (
        "request_rate", "tpot", 4.0, 1.0
    )
    assert point.speedup_at_first_level_not_paying == pytest.approx(0.8, rel=0.01)


def test_per_request_acceptance_prefers_vllms_own_counts_and_says_how_far_the_estimate_is():
    from pytest_specdecode.results.figures import RequestSpecDecode

    from .builders import run

    measured = run(k=3)
    assert measured.per_request_source == "chunks" and measured.per_request_estimate_gap.count == 0
    own = RequestSpecDecode(verify_steps=4, accepted_tokens=6, draft_tokens=12)  # 2.5 tokens a step
    samples = [s.model_copy(update={"vllm_spec_decode": own}) for s in measured.spec.samples]
    counted = measured.model_copy(update={"spec": measured.spec.model_copy(update={"samples": samples})})
    assert counted.per_request_source == "vllm"
    assert counted.per_request_acceptance_length.p50 == pytest.approx(2.5)
    assert counted.per_request_acceptance.p50 == pytest.approx(0.5)  # (2.5 - 1) / 3
    chunk_estimate = measured.per_request_acceptance_length.p50  # the builder's chunks of 2: 2.0
    assert counted.per_request_estimate_gap.p50 == pytest.approx(chunk_estimate - 2.5)
