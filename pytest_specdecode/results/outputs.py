"""What a run's outputs say about losslessness: the distribution check of sampled runs, and where
greedy outputs part from vanilla's (`divergence.py` finds and scores those)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, computed_field

from ..config.sequential import ALPHA, LOSSLESS_MARGIN
from .schema import Model

LOSSLESS_STATISTIC = (
    "target log-probability per output token, spec - vanilla; paired t-test on the requests' linearised contributions"
)


LosslessVerdict = Literal["lossless", "not lossless", "inconclusive", "not measured"]


class LosslessCheck(Model):
    """Sampled runs (T>0): are the speculative outputs drawn from vanilla's distribution?

    Each request's output, on both sides, is scored by the target model; each side's figure is its
    log-probability per output token over all its tokens. Request i of both sides shares prompt and
    seed, so the difference is tested over pairs (see docs/reading-the-numbers.md).

    An equivalence question, not a significance test alone: "lossless" needs the whole interval of
    the difference inside +-margin; "not lossless" needs it wholly beyond the margin; anything else
    is "inconclusive", with the pairs that would resolve it (and the p-value, which says whether a
    difference smaller than the margin is shown).
    """

    statistic: str = LOSSLESS_STATISTIC
    n_pairs: int
    distinct_samples: int = Field(description="distinct (spec, vanilla) output pairs among the pairs")
    spec_mean_logprob: float | None = None
    vanilla_mean_logprob: float | None = None
    mean_difference: float | None = Field(default=None, description="spec - vanilla, log-probability per output token")
    mean_difference_ci: list[float] | None = Field(
        default=None, description="interval of mean_difference at level 1 - alpha"
    )
    p_value: float | None = None
    min_pairs: int = Field(description="pairs below which the check judges nothing")
    alpha: float = Field(default=ALPHA, description="the false-alarm rate this check was judged at (its interval's level is 1 - alpha)")
    margin: float = Field(default=LOSSLESS_MARGIN, description="the equivalence margin, nats/token")
    not_measured: str | None = Field(default=None, description="why there is no verdict, when there is none")

    @computed_field
    @property
    def verdict(self) -> LosslessVerdict:
        """lossless within +-margin, not lossless (a difference beyond the margin shown), inconclusive,
        or not measured: the three-way rule of every gate, with +-margin as the threshold.

        Not "p < alpha" alone for "not lossless": a shift smaller than the margin (two engines'
        numerics, a few more long answers) is shown different once there are enough pairs, so such
        a rule fails a correct engine more often the more it measures, until the interval fits the
        margin and it passes again (`benchmarks/gate_error_rates.py` measured that: a -0.05 shift
        failed 13 % of runs at 16 windows)."""
        if self.not_measured is not None:
            return "not measured"
        if self.mean_difference_ci is None or self.n_pairs < self.min_pairs:
            return "inconclusive"
        low, high = self.mean_difference_ci
        if -self.margin <= low and high <= self.margin:
            return "lossless"
        if high < -self.margin or low > self.margin:
            return "not lossless"
        return "inconclusive"

    @computed_field
    @property
    def pairs_to_resolve(self) -> int | None:
        """Inconclusive checks: about how many pairs would bring the interval inside +-margin, if
        the difference stays what it is now; None when it could not (the point is past the margin)."""
        if self.verdict != "inconclusive":
            return None
        if self.mean_difference_ci is None or self.mean_difference is None or self.n_pairs < self.min_pairs:
            return self.min_pairs
        room = self.margin - abs(self.mean_difference)
        half = (self.mean_difference_ci[1] - self.mean_difference_ci[0]) / 2
        return max(self.n_pairs + 1, math.ceil(self.n_pairs * (half / room) ** 2)) if room > 0 else None

    def summary(self) -> str:
        """The one rendering of the check every report and gate message uses."""
        verdict = self.verdict
        if verdict == "not measured":
            return f"not measured: {self.not_measured}"
        level = f"{1 - self.alpha:.3g}"
        if self.mean_difference_ci is None or self.mean_difference is None:
            return (f"inconclusive: {self.n_pairs} pairs, the check needs at least {self.min_pairs} "
                    "(raise num_prompts or max_repeats)")
        low, high = self.mean_difference_ci
        figure = (f"spec - vanilla {self.mean_difference:+.3f} nats/token ({level} interval {low:+.3f}..{high:+.3f}, "
                  f"p = {self.p_value:.2g}, {self.n_pairs} pairs)")
        if verdict == "lossless":
            return f"lossless within +-{self.margin:g}: {figure}"
        if verdict == "not lossless":
            return f"not lossless: {figure}, beyond +-{self.margin:g}"
        if self.n_pairs < self.min_pairs:
            return f"inconclusive: {figure}; the check judges from {self.min_pairs} pairs on"
        needed = self.pairs_to_resolve
        resolve = (f"about {needed} pairs would resolve +-{self.margin:g}" if needed is not None
                   else f"the estimate lies past the margin +-{self.margin:g}; more pairs would show it")
        shown = f"; a difference is shown (p < {self.alpha:.2g}), not that it exceeds +-{self.margin:g}" if (
            self.p_value is not None and self.p_value < self.alpha) else ""
        return f"inconclusive: {figure}: resolves +-{(high - low) / 2:.2f} with {self.n_pairs} pairs, {resolve}{shown}"


class Divergence(Model):
    """One greedy request whose output differs from vanilla's: where it first parts, and how much
    more likely the target (the vanilla engine, one prefill per side) finds vanilla's token there."""

    request: int = Field(description="index into the run's samples (repeats follow each other)")
    prompt: int = Field(description="index of the request's prompt in the workload")
    repeat: int = 0
    position: int = Field(description="index of the first differing output token")
    vanilla_token_gap_nats: float | None = Field(
        default=None, description="log-probability of vanilla's token minus spec's at that position, under the target; "
        "None when one output is a prefix of the other"
    )
    near_tie_nats: float = Field(description="gaps this small either way count as near-ties")

    @computed_field
    @property
    def near_tie(self) -> bool:
        """Parted where the target itself is torn: the batch's arithmetic, not the verifier, chose."""
        gap = self.vanilla_token_gap_nats
        return gap is not None and abs(gap) <= self.near_tie_nats

    @property
    def where(self) -> str:
        """The request as a user finds it in the workload: its prompt, its repeat, the token."""
        repeat = f", repeat {self.repeat + 1}" if self.repeat else ""
        return f"prompt {self.prompt}{repeat} at token {self.position}"
