"""One config at one temperature and load level: the speculative side against vanilla.

Every comparison figure (acceptance, speedups, P99 regressions, their intervals) is derived here and
read by every report and gate; none is computed anywhere else.
"""

from __future__ import annotations

import math
from functools import cached_property
from typing import Any, Literal

from pydantic import Field, computed_field

from ..config.sequential import ALPHA, MIN_P99_REQUESTS
from . import intervals
from .distribution import Distribution, ratio
from .figures import LATENCY_METRICS, EngineFigures, SpecCounters
from .outputs import Divergence, LosslessCheck
from .schema import Model

SpeedupMetric = Literal["throughput", "tpot"]


class Condition(Model, frozen=True):
    """What one run was measured under: a temperature and, in server mode, one load level. Reports
    and verdicts match runs by it, never by a label string."""

    temperature: float
    concurrency: int | None = None
    request_rate: float | None = None
    k: int | None = Field(default=None, exclude_if=lambda k: k is None,
                          description="the draft length, in a K sweep only (absent otherwise)")
    mix: str | None = Field(default=None, exclude_if=lambda mix: mix is None,
                            description="a mixed-temperature batch's temperatures and shares (absent otherwise)")
    bucket: float | None = Field(default=None, exclude_if=lambda bucket: bucket is None,
                                 description="in a mixed batch, the requests of this one temperature")

    @property
    def label(self) -> str:
        load = ""
        if self.concurrency is not None:
            load = f" c={self.concurrency}"
        elif self.request_rate is not None:
            load = f" rate={self.request_rate:g}"
        temperature = self.mix if self.mix is not None else f"{self.temperature:g}"
        bucket = f" bucket T={self.bucket:g}" if self.bucket is not None else ""
        return f"T={temperature}{bucket}{load}" + (f" K={self.k}" if self.k is not None else "")


class RunWarning(Model):
    """A named reason to read a run's figures with care; the figures stay, the reader is told."""

    code: str
    message: str


#: What `LosslessCheck.statistic` says today; a stored check that says otherwise was judged by an earlier test.
class DraftMemory(Model):
    """What a draft model takes per token and in all, from the two models' config.json (bf16): the
    parts of the KV capacity the spec engine loses that arithmetic can name."""

    target_kv_bytes_per_token: int
    draft_kv_bytes_per_token: int
    draft_weight_bytes: int


class KvCapacitySplit(Model):
    """The KV capacity lost (1 - spec tokens / vanilla tokens), in fractions of vanilla's tokens."""

    draft_kv_per_token: float = Field(description="each token also holds the draft's K and V: "
                                      "1 - target / (target + draft) KV bytes per token")
    draft_weights: float = Field(description="the draft's weights out of vanilla's KV bytes, at that per-token cost")
    other: float = Field(description="the rest: the draft's CUDA graphs and activations, block rounding")


class BaselineInfo(Model):
    """Where a run's vanilla figures came from: measured for this config in its own windows, reused
    from an earlier config of this process (memo), or a stored baseline (cached). Only "measured"
    windows are paired with spec's."""

    source: Literal["measured", "memo", "cached"]
    fingerprint: str
    age_s: float = Field(description="seconds since the vanilla windows were measured")


#: RunResult's intervals, computed once per object: a bootstrap of ITL P99s takes half a second.
CACHED_INTERVALS = ("speedup_ci", "tpot_speedup_ci", "p99_regression_ci", "acceptance_rate_ci", "step_cost_ratio_ci")


class RunResult(Model):
    """One config at one temperature (and, in server mode, one load level): spec vs vanilla."""

    config: str
    config_name: str
    mode: Literal["offline", "server"] = "offline"
    model: str
    method: str
    num_speculative_tokens: int
    workload: str
    temperature: float = Field(description="the run's temperature; a mixed batch's highest")
    temperature_mix: str | None = Field(default=None, description="a mixed-temperature batch: its temperatures "
                                        "and shares (`temperature_buckets` splits its requests)")
    bucket: float | None = Field(default=None, description="a view of a mixed batch: only the requests sampled at this "
                                 "temperature (their latencies and per-request acceptance; counters stay the batch's)")
    concurrency: int | None = None
    request_rate: float | None = None
    counters: SpecCounters
    spec: EngineFigures
    vanilla: EngineFigures
    outputs_match: float | None = Field(
        default=None, description="greedy runs only: share of requests whose tokens equal vanilla's"
    )
    invalid_reason: str | None = None
    draft_memory: DraftMemory | None = Field(default=None, description="a draft model's KV bytes per token and "
                                             "weights, from the config.json files (None for n-gram, EAGLE heads, hub ids)")
    random_weights: bool = Field(default=False, description="the models were built with load_format = 'dummy': "
                                 "acceptance, per-position and lossless figures are noise and never gated")
    baseline: BaselineInfo | None = None
    warnings: list[RunWarning] = Field(default_factory=list)
    speedup_basis: str | None = Field(default=None, description="what the throughput speedup compares")
    lossless_check: LosslessCheck | None = Field(default=None, description="sampled runs only")
    divergences: list[Divergence] | None = Field(
        default=None, description="greedy runs: where each request that differs from vanilla first parts; "
        "None when not looked at (outputs match, or no live vanilla engine to score with)"
    )
    interval_level: float = Field(
        default=1 - ALPHA, description="the confidence level of every interval of this run: 1 - alpha over the "
        "config's sequential looks"
    )
    window_order: Literal["abba", "blocks"] = Field(
        default="abba", description="how the plan ordered the windows: abba (both engines live, spec and vanilla "
        "alternate per repeat) or blocks (every spec window, then every vanilla window)"
    )
    min_p99_requests: int = Field(
        default=MIN_P99_REQUESTS, description="[run] min_p99_requests: fewer requests a side and no P99 is judged"
    )
    k_swept: bool = Field(default=False, description="one K of a sweep: K is part of the run's condition")
    engine_args: dict[str, Any] = Field(default_factory=dict, description="what both engines were started with")
    resolved_config: dict[str, Any] | None = Field(
        default=None, description="what the spec engine resolved of its arguments (speculative and parallel "
        "settings, read back from vLLM); None where it cannot say (a deployment not in vLLM's dev mode)"
    )
    speculative_config: dict[str, Any] = Field(default_factory=dict)

    @computed_field
    @property
    def valid(self) -> bool:
        return self.invalid_reason is None

    @computed_field(description="greedy runs only: share of requests whose tokens equal vanilla's or first part "
                    "at a near-tie of the target's; what `lossless` gates at T=0")
    @property
    def outputs_match_up_to_ties(self) -> float | None:
        """Exact equality counts a near-tie the batch's arithmetic broke the other way as a defect,
        so a correct engine fails it at random (vLLM's kernels are not batch-invariant); a verifier
        that keeps a token the target would not pick still parts at a gap of nats and still counts."""
        if self.outputs_match is None or not self.divergences:
            return self.outputs_match
        ties = sum(d.near_tie for d in self.divergences)
        return self.outputs_match + ties / self.spec.num_requests

    @computed_field
    @property
    def num_drafts(self) -> int:
        return self.counters.num_drafts

    @computed_field
    @property
    def num_draft_tokens(self) -> int:
        return self.counters.num_draft_tokens

    @computed_field
    @property
    def num_accepted_tokens(self) -> int:
        return self.counters.num_accepted_tokens

    @computed_field
    @property
    def acceptance_rate(self) -> float | None:
        return self.counters.acceptance_rate

    @computed_field
    @property
    def mean_acceptance_length(self) -> float | None:
        return self.counters.mean_acceptance_length

    @computed_field
    @property
    def per_position_acceptance(self) -> list[float]:
        if not self.counters.num_drafts:
            return []
        return [accepted / self.counters.num_drafts for accepted in self.counters.accepted_per_position]

    @computed_field
    @property
    def per_request_source(self) -> Literal["vllm", "chunks"]:
        """Where per-request acceptance comes from: vLLM's own per-request counts when every spec
        request carries them (`--per-request-spec-decode-metrics`), else the streamed chunks' estimate."""
        samples = self.spec.samples
        return "vllm" if samples and all(s.vllm_spec_decode is not None for s in samples) else "chunks"

    def _request_lengths(self) -> list[float]:
        if self.per_request_source == "vllm":
            return [s.vllm_spec_decode.acceptance_length for s in self.spec.samples
                    if s.vllm_spec_decode is not None and s.vllm_spec_decode.acceptance_length is not None]
        return [s.acceptance_length for s in self.spec.samples if s.acceptance_length is not None]

    @computed_field
    @property
    def per_request_acceptance_length(self) -> Distribution:
        return Distribution.of(self._request_lengths())

    @computed_field
    @property
    def per_request_estimate_gap(self) -> Distribution:
        """Per request, the chunk-based acceptance length minus vLLM's own (where both exist): how far
        the estimate an older vLLM or a server without the flag leaves the plugin with is off."""
        return Distribution.of([
            s.acceptance_length - s.vllm_spec_decode.acceptance_length for s in self.spec.samples
            if s.acceptance_length is not None and s.vllm_spec_decode is not None
            and s.vllm_spec_decode.acceptance_length is not None
        ])

    def per_request_acceptance_values(self) -> list[float]:
        """Each request's acceptance rate, (acceptance length - 1) / K: the spread behind the mean.

        Not clipped at 1: a value above 1 means stream chunks merged engine steps, and is counted
        in `per_request_acceptance_over_one` rather than hidden.
        """
        return [(length - 1) / self.num_speculative_tokens for length in self._request_lengths()]

    @computed_field
    @property
    def per_request_acceptance(self) -> Distribution:
        return Distribution.of(self.per_request_acceptance_values())

    def position_acceptance_ci(self, position: int) -> list[float] | None:
        """Interval of one draft position's acceptance, from how it varies across requests."""
        positions = self.per_position_acceptance
        point = positions[position] if position < len(positions) else None
        return intervals.acceptance_rate_ci(point, self.spec, self.interval_level, position)

    def per_request_acceptance_ci(self, percentile: int) -> list[float] | None:
        """Interval of one percentile of per-request acceptance, from resampling the requests."""
        return intervals.percentile_ci(self.per_request_acceptance_values(), percentile, self.interval_level)

    @computed_field
    @property
    def per_request_acceptance_k(self) -> int:
        """The K that per-request acceptance divides by, so a reader can check a value against it."""
        return self.num_speculative_tokens

    @computed_field
    @property
    def per_request_acceptance_over_one(self) -> int:
        """Requests whose per-request acceptance exceeds 1: more tokens per chunk than K + 1, which
        only merged stream chunks (several engine steps in one) can give."""
        return sum(value > 1 for value in self.per_request_acceptance_values())

    @computed_field
    @property
    def speedup(self) -> float | None:
        """Throughput speedup; None at a finite request rate. A paced window lasts from the first
        arrival to the last response, set by the arrivals whichever engine serves them, so twice as
        fast decoding reads about 1.1x there: `tpot_speedup` is the figure for those levels."""
        if self.request_rate is not None and math.isfinite(self.request_rate):
            return None
        return ratio(self.spec.tokens_per_s, self.vanilla.tokens_per_s)

    @computed_field
    @property
    def tpot_speedup(self) -> float | None:
        return ratio(self.vanilla.tpot_ms.mean, self.spec.tpot_ms.mean)

    def speedup_of(self, metric: SpeedupMetric) -> float | None:
        """`speedup` or `tpot_speedup`, by the name gates and break-even use."""
        return self.speedup if metric == "throughput" else self.tpot_speedup

    def speedup_ci_of(self, metric: SpeedupMetric) -> list[float] | None:
        """`speedup_ci` or `tpot_speedup_ci`, by the same names."""
        return self.speedup_ci if metric == "throughput" else self.tpot_speedup_ci

    @computed_field
    @property
    def p99_regression(self) -> dict[str, float | None]:
        """Per latency metric: spec P99 / vanilla P99 - 1 (0.18 means 18% slower at the tail)."""
        regressions = {}
        for metric in LATENCY_METRICS:
            spec_p99 = self.spec.latency(metric).p99
            vanilla_p99 = self.vanilla.latency(metric).p99
            change = ratio(spec_p99, vanilla_p99)
            regressions[metric] = None if change is None else change - 1.0
        return regressions

    def model_copy(self, *, update: dict[str, Any] | None = None, deep: bool = False) -> RunResult:
        """A copy whose intervals are computed afresh: they are cached, and an update may change their data."""
        copied = super().model_copy(update=update, deep=deep)
        for name in CACHED_INTERVALS:
            copied.__dict__.pop(name, None)
        return copied

    @computed_field
    @property
    def pairing(self) -> str | None:
        """Why the windows are not paired, or None when they are: spec window r and vanilla window r
        were measured side by side (ABBA) in this config's own windows."""
        if self.baseline is not None and self.baseline.source != "measured":
            return f"vanilla reused ({self.baseline.source})"
        if self.window_order != "abba":
            return "windows in blocks (one engine at a time)"
        if [w.repeat for w in self.spec.windows] != [w.repeat for w in self.vanilla.windows]:
            return "unequal window counts"  # or repeats that do not match up
        return None

    @property
    def _paired(self) -> bool:
        return self.pairing is None

    @computed_field
    @property
    def p99_judged(self) -> bool:
        """Whether both sides have enough requests for a P99 that is not just the slowest request."""
        return min(self.spec.num_requests, self.vanilla.num_requests) >= self.min_p99_requests

    @computed_field
    @property
    def windows_resolve(self) -> bool:
        """Whether the timed intervals rest on the spread between windows, the only spread that
        covers a shared runner's window-to-window noise; confident timed verdicts need it."""
        return intervals.windows_resolve(self.spec, self.vanilla)

    @computed_field
    @property
    def interval_basis(self) -> str:
        """What the timed intervals (speedup, TPOT speedup, P99 regression) are computed from."""
        return intervals.interval_basis(self.spec, self.vanilla, self.pairing)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def speedup_ci(self) -> list[float] | None:
        """Interval of `speedup`; none at a paced request rate, where there is no speedup."""
        if self.speedup is None:
            return None
        return intervals.speedup_ci(self.spec, self.vanilla, self._paired, self.interval_level)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def tpot_speedup_ci(self) -> list[float] | None:
        """Interval of `tpot_speedup` (vanilla TPOT over spec TPOT)."""
        if self.tpot_speedup is None:
            return None
        return intervals.tpot_speedup_ci(self.spec, self.vanilla, self._paired, self.interval_level)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def p99_regression_ci(self) -> dict[str, list[float] | None]:
        """Per latency metric, the interval of `p99_regression`."""
        return {
            metric: None if self.p99_regression[metric] is None
            else intervals.p99_regression_ci(self.spec, self.vanilla, metric, self._paired, self.interval_level)
            for metric in LATENCY_METRICS
        }

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def acceptance_rate_ci(self) -> list[float] | None:
        """Interval of `acceptance_rate`, from how it varies across requests."""
        return intervals.acceptance_rate_ci(self.acceptance_rate, self.spec, self.interval_level)

    @computed_field
    @property
    def tokens_per_step_gain(self) -> float | None:
        """Output tokens per forward pass, spec over vanilla: what speculation gains per step (about
        the mean acceptance length when every request drafts every step and batches stay as full)."""
        return ratio(self.spec.tokens_per_step, self.vanilla.tokens_per_step)

    @computed_field
    @property
    def step_cost_ratio(self) -> float | None:
        """Wall time of a speculative forward step (draft passes plus a K+1-token verify) over a
        vanilla step's, from vLLM's step counts: with `tokens_per_step_gain` it makes the speedup,
        speedup = gain / cost, so a speedup short of its acceptance says which side lost it."""
        return ratio(self.spec.ms_per_step, self.vanilla.ms_per_step)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def step_cost_ratio_ci(self) -> list[float] | None:
        """Interval of `step_cost_ratio`, pooled over windows as the speedup's is."""
        if self.step_cost_ratio is None:
            return None
        return intervals.step_cost_ratio_ci(self.spec, self.vanilla, self._paired, self.interval_level)

    @computed_field
    @property
    def expected_speedup(self) -> float | None:
        """What the acceptance alone predicts at the measured step cost: mean acceptance length
        (1 + the per-position acceptances, K positions) over `step_cost_ratio`, the seed's
        effective tokens over (1 + overhead). Above the measured speedup when steps without a
        draft, or emptier batches, cost speculation tokens per step."""
        return ratio(self.mean_acceptance_length, self.step_cost_ratio)

    @computed_field
    @property
    def replicas(self) -> list[ReplicaFigures]:
        """With several /metrics targets, each replica's share of the spec side: one bad replica
        (an old image, a missing draft) stands out where the sum would hide it."""
        totals: dict[str, ReplicaFigures] = {}
        for window in self.spec.windows:
            for target in window.targets:
                found = totals.get(target.url) or ReplicaFigures(url=target.url, counters=SpecCounters(), generation_tokens=0)
                tokens = None if found.generation_tokens is None or target.generation_tokens is None else \
                    found.generation_tokens + target.generation_tokens
                totals[target.url] = ReplicaFigures(url=target.url, counters=found.counters + target.counters,
                                                    generation_tokens=tokens)
        return list(totals.values())

    def bucket_view(self, temperature: float) -> RunResult:
        """The requests of one temperature of a mixed batch, on both sides, as a run: the batch's
        windows and counters stay, so only per-request figures (latencies, per-request acceptance)
        describe the bucket."""
        def only(figures: EngineFigures) -> EngineFigures:
            kept = [s for s in figures.samples if s.temperature is not None and abs(s.temperature - temperature) < 1e-9]
            return figures.model_copy(update={"samples": kept})

        return self.model_copy(update={"spec": only(self.spec), "vanilla": only(self.vanilla), "bucket": temperature})

    @computed_field
    @property
    def temperature_buckets(self) -> list[TemperatureBucket]:
        """A mixed batch, temperature by temperature: P50 can improve while P99 regresses."""
        if self.temperature_mix is None:
            return []
        temperatures = sorted({s.temperature for s in self.spec.samples if s.temperature is not None})
        return [TemperatureBucket.of(self.bucket_view(t)) for t in temperatures]

    @computed_field
    @property
    def kv_cache_ratio(self) -> float | None:
        """Spec engine's KV-cache capacity over vanilla's: below 1 when a draft's weights eat it."""
        return ratio(self.spec.kv_cache_tokens, self.vanilla.kv_cache_tokens)

    @computed_field
    @property
    def kv_capacity_split(self) -> KvCapacitySplit | None:
        """Where the KV capacity went: vLLM gives the KV cache what memory is left after weights
        (so the draft's weights come out of it), and then a token costs the target's and the draft's
        K and V, which shrinks every token's share more than the weights do for a draft of any size."""
        ratio_ = self.kv_cache_ratio
        memory = self.draft_memory
        if ratio_ is None or memory is None or not self.vanilla.kv_cache_tokens:
            return None
        share = memory.target_kv_bytes_per_token / (memory.target_kv_bytes_per_token + memory.draft_kv_bytes_per_token)
        vanilla_bytes = self.vanilla.kv_cache_tokens * memory.target_kv_bytes_per_token
        weights = memory.draft_weight_bytes / vanilla_bytes * share
        return KvCapacitySplit(draft_kv_per_token=1 - share, draft_weights=weights,
                               other=(1 - ratio_) - (1 - share) - weights)

    @property
    def condition(self) -> Condition:
        return Condition(temperature=self.temperature, concurrency=self.concurrency, request_rate=self.request_rate,
                         k=self.num_speculative_tokens if self.k_swept else None, mix=self.temperature_mix,
                         bucket=self.bucket)

    @property
    def label(self) -> str:
        return f"{self.config_name} {self.condition.label}"


class TemperatureBucket(Model):
    """One temperature's requests inside a mixed batch, against the same requests on vanilla."""

    temperature: float
    requests: int
    acceptance: Distribution = Field(description="per-request acceptance (P10/P50/P90 spread)")
    spec_e2e_ms: Distribution
    vanilla_e2e_ms: Distribution
    spec_tpot_ms: Distribution
    vanilla_tpot_ms: Distribution
    e2e_p99_regression: float | None

    @classmethod
    def of(cls, view: RunResult) -> TemperatureBucket:
        return cls(
            temperature=view.bucket, requests=view.spec.num_requests, acceptance=view.per_request_acceptance,
            spec_e2e_ms=view.spec.e2e_ms, vanilla_e2e_ms=view.vanilla.e2e_ms, spec_tpot_ms=view.spec.tpot_ms,
            vanilla_tpot_ms=view.vanilla.tpot_ms, e2e_p99_regression=view.p99_regression["e2e"],
        )


class ReplicaFigures(Model):
    """One /metrics target's spec-decode counters over a run's windows."""

    url: str
    counters: SpecCounters
    generation_tokens: int | None

    @computed_field
    @property
    def acceptance_rate(self) -> float | None:
        return self.counters.acceptance_rate

    @computed_field
    @property
    def mean_acceptance_length(self) -> float | None:
        return self.counters.mean_acceptance_length


RunResult.model_rebuild()  # `temperature_buckets` names TemperatureBucket, defined after it
