"""The arithmetic of the result model: one place for every figure."""

import pytest

from pytest_specdecode.results import RequestSample, SpecCounters
from pytest_specdecode.stats import Distribution

from .builders import run


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
