"""The one result model. The summary table, the JSON report, JUnit properties, pytest-benchmark's
JSON and every gate read these objects; each figure is derived here and nowhere else.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, Field, computed_field

from .stats import Distribution, ratio

SCHEMA_VERSION = 1

LatencyMetric = Literal["e2e", "tpot", "ttft", "itl"]
LATENCY_METRICS: tuple[LatencyMetric, ...] = ("e2e", "tpot", "ttft", "itl")


class RequestSample(BaseModel):
    """One measured request, as timed by the client side of the engine."""

    prompt_tokens: int
    output_tokens: int
    ttft_s: float | None
    e2e_s: float
    itl_s: list[float] = Field(default_factory=list, description="gaps between streamed chunks")
    chunk_tokens: list[int] = Field(default_factory=list, description="tokens per engine step")
    output_token_ids: list[int] = Field(default_factory=list, description="kept for lossless checks against baselines")
    repeat: int = 0

    @computed_field
    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: the decode speed a user feels."""
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @computed_field
    @property
    def acceptance_length(self) -> float | None:
        """Tokens per decode step after the first chunk; 1.0 means nothing was ever accepted."""
        steps = self.chunk_tokens[1:]
        return sum(steps) / len(steps) if steps else None


class SpecCounters(BaseModel):
    """vLLM's `spec_decode_*` counters, as the delta over the measured window."""

    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: list[int] = Field(default_factory=list)

    def __add__(self, other: SpecCounters) -> SpecCounters:
        return self._combine(other, operator.add)

    def minus(self, earlier: SpecCounters) -> SpecCounters:
        return self._combine(earlier, operator.sub)

    def _combine(self, other: SpecCounters, op: Callable[[int, int], int]) -> SpecCounters:
        positions = max(len(self.accepted_per_position), len(other.accepted_per_position))
        mine = self.accepted_per_position + [0] * (positions - len(self.accepted_per_position))
        theirs = other.accepted_per_position + [0] * (positions - len(other.accepted_per_position))
        return SpecCounters(
            num_drafts=op(self.num_drafts, other.num_drafts),
            num_draft_tokens=op(self.num_draft_tokens, other.num_draft_tokens),
            num_accepted_tokens=op(self.num_accepted_tokens, other.num_accepted_tokens),
            accepted_per_position=[op(a, b) for a, b in zip(mine, theirs)],
        )


class EngineFigures(BaseModel):
    """What one engine (spec or vanilla) did on one run."""

    samples: list[RequestSample]
    duration_s: float = Field(description="wall time of the measured window, warmup excluded")
    kv_cache_tokens: int | None = None
    source: Literal["measured", "cached"] = "measured"

    @computed_field
    @property
    def num_requests(self) -> int:
        return len(self.samples)

    @computed_field
    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.samples)

    @computed_field
    @property
    def tokens_per_s(self) -> float | None:
        return ratio(self.output_tokens, self.duration_s)

    @computed_field
    @property
    def ttft_ms(self) -> Distribution:
        return Distribution.of([s.ttft_s * 1e3 for s in self.samples if s.ttft_s is not None])

    @computed_field
    @property
    def tpot_ms(self) -> Distribution:
        return Distribution.of([s.tpot_s * 1e3 for s in self.samples if s.tpot_s is not None])

    @computed_field
    @property
    def e2e_ms(self) -> Distribution:
        return Distribution.of([s.e2e_s * 1e3 for s in self.samples])

    @computed_field
    @property
    def itl_ms(self) -> Distribution:
        return Distribution.of([gap * 1e3 for s in self.samples for gap in s.itl_s])

    def latency(self, metric: LatencyMetric) -> Distribution:
        return getattr(self, f"{metric}_ms")


class BaselineInfo(BaseModel):
    """Where a run's vanilla figures came from: measured in this session, or a stored baseline."""

    source: Literal["measured", "cached"]
    fingerprint: str
    age_s: float


class RunResult(BaseModel):
    """One config at one temperature (and, in server mode, one load level): spec vs vanilla."""

    config: str
    config_name: str
    mode: Literal["offline", "server"] = "offline"
    model: str
    method: str
    num_speculative_tokens: int
    workload: str
    temperature: float
    concurrency: int | None = None
    request_rate: float | None = None
    counters: SpecCounters
    spec: EngineFigures
    vanilla: EngineFigures
    outputs_match: float | None = Field(
        default=None, description="greedy runs only: share of requests whose tokens equal vanilla's"
    )
    invalid_reason: str | None = None
    baseline: BaselineInfo | None = None

    @computed_field
    @property
    def valid(self) -> bool:
        return self.invalid_reason is None

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
        return ratio(self.counters.num_accepted_tokens, self.counters.num_draft_tokens)

    @computed_field
    @property
    def mean_acceptance_length(self) -> float | None:
        accepted_per_draft = ratio(self.counters.num_accepted_tokens, self.counters.num_drafts)
        return None if accepted_per_draft is None else 1.0 + accepted_per_draft

    @computed_field
    @property
    def per_position_acceptance(self) -> list[float]:
        if not self.counters.num_drafts:
            return []
        return [accepted / self.counters.num_drafts for accepted in self.counters.accepted_per_position]

    @computed_field
    @property
    def per_request_acceptance_length(self) -> Distribution:
        return Distribution.of([s.acceptance_length for s in self.spec.samples if s.acceptance_length is not None])

    def per_request_acceptance_values(self) -> list[float]:
        """Each request's acceptance rate, (acceptance length - 1) / K: the spread behind the mean."""
        k = self.num_speculative_tokens
        return [(s.acceptance_length - 1) / k for s in self.spec.samples if s.acceptance_length is not None]

    @computed_field
    @property
    def per_request_acceptance(self) -> Distribution:
        return Distribution.of(self.per_request_acceptance_values())

    @computed_field
    @property
    def speedup(self) -> float | None:
        return ratio(self.spec.tokens_per_s, self.vanilla.tokens_per_s)

    @computed_field
    @property
    def tpot_speedup(self) -> float | None:
        return ratio(self.vanilla.tpot_ms.mean, self.spec.tpot_ms.mean)

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

    @computed_field
    @property
    def kv_cache_ratio(self) -> float | None:
        """Spec engine's KV-cache capacity over vanilla's: below 1 when a draft's weights eat it."""
        return ratio(self.spec.kv_cache_tokens, self.vanilla.kv_cache_tokens)

    @property
    def label(self) -> str:
        load = ""
        if self.concurrency is not None:
            load = f" c={self.concurrency}"
        elif self.request_rate is not None:
            load = f" rate={self.request_rate:g}"
        return f"{self.config_name} T={self.temperature:g}{load}"


class Environment(BaseModel):
    vllm: str | None = None
    torch: str | None = None
    device: str | None = None
    python: str | None = None


class BreakEven(BaseModel):
    """Where speculation stops paying along one load sweep at one temperature."""

    temperature: float
    axis: Literal["concurrency", "request_rate"]
    highest_level_with_speedup: float | None = Field(description="highest level whose speedup is >= 1")
    first_level_p99_regresses: float | None = Field(description="lowest level whose E2E P99 is above vanilla's")


class ConfigResult(BaseModel):
    """Everything measured for one config in a session: what the `spec_run` fixture yields."""

    config: str
    config_name: str
    runs: list[RunResult]
    environment: Environment = Environment()
    engine_start_s: dict[str, float] = Field(default_factory=dict)

    @computed_field
    @property
    def break_even(self) -> list[BreakEven]:
        """Per temperature and load axis: the load beyond which speculation should be switched off
        (vLLM's `num_speculative_tokens_per_batch_size`, `disable_by_batch_size` in older builds)."""
        points = []
        for temperature in sorted({run.temperature for run in self.runs}):
            for axis in ("concurrency", "request_rate"):
                sweep = sorted(
                    (getattr(run, axis), run)
                    for run in self.runs
                    if run.temperature == temperature and getattr(run, axis) is not None and run.valid
                )
                if len(sweep) < 2:
                    continue
                paying = [level for level, run in sweep if run.speedup is not None and run.speedup >= 1]
                regressing = [level for level, run in sweep if (run.p99_regression["e2e"] or 0) > 0]
                points.append(
                    BreakEven(
                        temperature=temperature,
                        axis=axis,
                        highest_level_with_speedup=max(paying) if paying else None,
                        first_level_p99_regresses=min(regressing) if regressing else None,
                    )
                )
        return points

    def select(
        self, temperature: float | None = None, concurrency: int | None = None, request_rate: float | None = None
    ) -> list[RunResult]:
        """The runs at that temperature / load level (all of them where an argument is None)."""
        return [
            run
            for run in self.runs
            if (temperature is None or abs(run.temperature - temperature) < 1e-9)
            and (concurrency is None or run.concurrency == concurrency)
            and (request_rate is None or run.request_rate == request_rate)
        ]

    def run(self, temperature: float | None = None, **load: int | float | None) -> RunResult:
        """The single run a figure is read from; the lowest temperature and load by default."""
        chosen = self.select(temperature, **load)
        if not chosen:
            raise LookupError(f"{self.config_name}: no run at temperature={temperature} {load or ''}".strip())
        return chosen[0]

    @property
    def acceptance_rate(self) -> float | None:
        return self.run().acceptance_rate

    @property
    def mean_acceptance_length(self) -> float | None:
        return self.run().mean_acceptance_length

    @property
    def per_position_acceptance(self) -> list[float]:
        return self.run().per_position_acceptance

    @property
    def speedup(self) -> float | None:
        return self.run().speedup

    @property
    def outputs_match(self) -> float | None:
        return self.run().outputs_match
