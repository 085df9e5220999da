"""Is speculation lossless at T>0? A paired test on what the target model thinks of each output.

Speculative decoding with rejection sampling must sample from exactly the target's distribution.
At T=0 that is checkable token for token; at T>0 two correct engines produce different text, so
the check compares distributions instead. Every output of both sides is scored by the target
model (the vanilla engine's `prompt_logprobs`: mean log-probability per output token). Request i
of both sides shares its prompt and seed, so the unit is the pair, and the statistic is the
mean of the per-pair differences, spec - vanilla:

- valid whatever the scoring function: under "lossless", spec and vanilla outputs of request i
  have the same distribution, so any function of them has the same mean on both sides;
- a paired t-test on those differences needs only that (not independence between the two
  outputs of a pair, which a shared seed may break, nor symmetry, which a signed-rank test needs);
  pairs are independent of each other (different prompt or seed), and the mean of a few dozen
  differences is close to normal; the A/A benchmark measures how often it false-alarms;
- powerful against the failures that matter: a sampler or verifier that lets through tokens the
  target would rarely pick lowers their log-probability, request after request.

It cannot see a bias smaller than its interval: the interval on the mean difference says how small
a shift N requests can resolve (docs/reading-the-numbers.md sizes N).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from .results import LosslessCheck, RequestSample

#: Below this many pairs the t approximation and the power are too poor to say anything.
MIN_PAIRS = 8
DEFAULT_ALPHA = 0.01


def not_measured(reason: str) -> LosslessCheck:
    return LosslessCheck(n_pairs=0, distinct_samples=0, min_pairs=MIN_PAIRS, not_measured=reason)


def check_lossless(
    spec: Sequence[RequestSample], vanilla: Sequence[RequestSample], alpha: float = DEFAULT_ALPHA
) -> LosslessCheck:
    """The paired test over requests that both sides scored; "not measured" when a score is missing."""
    if len(spec) != len(vanilla):
        return not_measured(f"{len(spec)} spec vs {len(vanilla)} vanilla requests: nothing to pair")
    pairs = [
        (a, b) for a, b in zip(spec, vanilla) if a.output_tokens and b.output_tokens
    ]
    missing = sum(a.target_logprob is None or b.target_logprob is None for a, b in pairs)
    if missing:
        return not_measured(f"{missing} of {len(pairs)} request pairs have no target log-probability")
    differences = [a.target_logprob - b.target_logprob for a, b in pairs]  # type: ignore[operator]
    distinct = len({(tuple(a.output_token_ids), tuple(b.output_token_ids)) for a, b in pairs})
    n = len(differences)
    result = LosslessCheck(
        n_pairs=n,
        distinct_samples=distinct,
        spec_mean_logprob=_mean([a.target_logprob for a, _ in pairs]),
        vanilla_mean_logprob=_mean([b.target_logprob for _, b in pairs]),
        mean_difference=_mean(differences),
        min_pairs=MIN_PAIRS,
        alpha=alpha,
    )
    if n < 2:
        return result
    p_value, interval = paired_t(differences)
    return result.model_copy(update={"p_value": p_value, "mean_difference_ci": interval})


def paired_t(differences: Sequence[float], level: float = 0.95) -> tuple[float, list[float]]:
    """Two-sided p-value that the mean difference is 0, and the interval around it."""
    from scipy import stats

    n = len(differences)
    mean = sum(differences) / n
    sd = math.sqrt(sum((d - mean) ** 2 for d in differences) / (n - 1))
    if sd == 0:  # every pair identical: no evidence of a difference, and no spread to scale by
        return (1.0 if mean == 0 else 0.0), [mean, mean]
    se = sd / math.sqrt(n)
    t = mean / se
    p_value = float(2 * stats.t.sf(abs(t), n - 1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * se
    return p_value, [mean - half, mean + half]


def _mean(values: Sequence[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
