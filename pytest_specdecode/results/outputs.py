"""What a run's outputs say about losslessness: the distribution check of sampled runs, and where
greedy outputs part from vanilla's (`divergence.py` finds and scores those)."""

from __future__ import annotations

from pydantic import Field, computed_field

from ..schema import Model

LOSSLESS_STATISTIC = (
    "target log-probability per output token, spec - vanilla; paired t-test on the requests' linearised contributions"
)


class LosslessCheck(Model):
    """Sampled runs (T>0): are the speculative outputs drawn from vanilla's distribution?

    Each request's output, on both sides, is scored by the target model; each side's figure is its
    log-probability per output token over all its tokens. Request i of both sides shares prompt and
    seed, so the difference is tested over pairs (see docs/reading-the-numbers.md).
    """

    statistic: str = LOSSLESS_STATISTIC
    n_pairs: int
    distinct_samples: int = Field(description="distinct (spec, vanilla) output pairs among the pairs")
    spec_mean_logprob: float | None = None
    vanilla_mean_logprob: float | None = None
    mean_difference: float | None = Field(default=None, description="spec - vanilla, log-probability per output token")
    mean_difference_ci: list[float] | None = Field(default=None, description="95% interval of mean_difference")
    p_value: float | None = None
    min_pairs: int = Field(description="pairs needed before any p-value can fall below alpha")
    alpha: float = 0.01
    not_measured: str | None = Field(default=None, description="why there is no verdict, when there is none")

    def verdict(self, alpha: float | None = None) -> str:
        """`lossless`, `not lossless`, `not enough requests` or `not measured` at false-alarm rate alpha."""
        alpha = self.alpha if alpha is None else alpha
        if self.not_measured is not None:
            return "not measured"
        if self.p_value is None or self.n_pairs < self.min_pairs:
            return "not enough requests"
        return "not lossless" if self.p_value < alpha else "lossless"


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
