"""The T>0 distribution check's logic; real engines (a broken sampler, an A/A pair) are in tests/e2e."""

import pytest

from pytest_specdecode.lossless import MIN_PAIRS, check_lossless, paired_t
from pytest_specdecode.results import RequestSample


def scored(logprobs, ids=None):
    return [
        RequestSample(prompt_tokens=3, output_tokens=4, ttft_s=0.1, e2e_s=1.0, target_logprob=value,
                      output_token_ids=list(ids[i]) if ids else [i, i + 1, i + 2, i + 3])
        for i, value in enumerate(logprobs)
    ]


def test_outputs_the_target_finds_far_less_likely_are_not_lossless():
    vanilla = scored([-1.2 + 0.05 * (i % 5) for i in range(16)])
    spec = scored([-4.1 + 0.1 * (i % 4) for i in range(16)])
    check = check_lossless(spec, vanilla)
    assert check.verdict() == "not lossless" and check.p_value < 1e-6
    assert check.mean_difference == pytest.approx(check.spec_mean_logprob - check.vanilla_mean_logprob)
    low, high = check.mean_difference_ci
    assert low < check.mean_difference < high < 0


def test_a_difference_within_the_noise_is_lossless_and_the_threshold_is_the_callers():
    vanilla = scored([-1.0, -1.5, -0.8, -1.2, -1.1, -1.4, -0.9, -1.3, -1.0, -1.2])
    spec = scored([-1.1, -1.3, -0.9, -1.2, -1.0, -1.5, -0.8, -1.3, -1.1, -1.1])
    check = check_lossless(spec, vanilla)
    assert check.verdict() == "lossless"
    assert check.verdict(alpha=0.999) == "not lossless"  # alpha is the false-alarm rate the gate accepts


def test_too_few_pairs_is_its_own_verdict():
    check = check_lossless(scored([-5.0] * (MIN_PAIRS - 1)), scored([-1.0] * (MIN_PAIRS - 1)))
    assert check.verdict() == "not enough requests"


def test_a_missing_score_is_not_measured_never_a_verdict():
    spec = scored([-1.0] * 10)
    vanilla = scored([-1.0] * 9 + [None])
    check = check_lossless(spec, vanilla)
    assert check.verdict() == "not measured" and "1 of 10" in check.not_measured


def test_identical_pairs_are_no_evidence_and_distinct_samples_are_counted():
    same = scored([-1.0] * 10, ids=[(1, 2, 3, 4)] * 10)
    check = check_lossless(same, same)
    assert check.p_value == 1.0 and check.verdict() == "lossless"
    assert check.distinct_samples == 1


def test_paired_t_matches_scipy():
    from scipy import stats

    differences = [0.3, -0.1, 0.4, 0.2, 0.0, 0.5, -0.2, 0.1]
    p_value, (low, high) = paired_t(differences)
    assert p_value == pytest.approx(stats.ttest_1samp(differences, 0.0).pvalue)
    assert low < sum(differences) / len(differences) < high
