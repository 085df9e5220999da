"""The one result model. The summary table, the JSON report, JUnit properties, pytest-benchmark's
JSON and every gate read these objects; each figure is derived here and nowhere else.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, Field, computed_field

from .stats import Distribution, ratio
from .uncertainty import (
    MIN_WINDOWS,
    Interval,
    acceptance_interval,
    log_ratio_interval,
    p99_regression_interval,
    speedup_interval,
    tpot_speedup_interval,
)

#: One version for every file we write (report, baselines, runs); 2 added windows, warnings,
#: per-request seeds and target log-probabilities.
SCHEMA_VERSION = 2

LatencyMetric = Literal["e2e", "tpot", "ttft", "itl"]
LATENCY_METRICS: tuple[LatencyMetric, ...] = ("e2e", "tpot", "ttft", "itl")
SpeedupMetric = Literal["throughput", "tpot"]
LoadAxis = Literal["concurrency", "request_rate"]
LOAD_AXES: tuple[LoadAxis, ...] = ("concurrency", "request_rate")
#: The speedup break-even reads on each load axis: throughput speedup is not defined at paced rates.
BREAK_EVEN_METRIC: dict[LoadAxis, SpeedupMetric] = {"concurrency": "throughput", "request_rate": "tpot"}
#: With fewer requests a side, a P99 is an interpolation towards the single slowest request: one
#: outlier decides it, so break-even does not read a tail from it.
MIN_P99_REQUESTS = 20
#: A rise in speedup from one level to the next smaller than this is taken as noise (a level of a
#: few dozen requests moves a speedup by several percent), not as a non-monotone sweep.
SWEEP_NOISE = 0.05


class RequestSample(BaseModel):
    """One measured request, as timed by the client side of the engine."""

    prompt_tokens: int
    output_tokens: int
    ttft_s: float | None
    e2e_s: float
    itl_s: list[float] = Field(default_factory=list, description="gaps between streamed chunks")
    chunk_tokens: list[int] = Field(default_factory=list, description="tokens per engine step")
    output_token_ids: list[int] = Field(default_factory=list, description="kept for lossless checks against baselines")
    output_text: str = Field(default="", description="shown beside vanilla's when a lossless check fails")
    repeat: int = 0
    seed: int | None = Field(default=None, description="this request's own sampling seed (workload seed + index)")
    scheduled_ttft_s: float | None = Field(
        default=None,
        description="at paced load levels: first token measured from the scheduled send time, so a "
        "client that sent late does not hide the wait (coordinated omission)",
    )
    target_logprob: float | None = Field(
        default=None, description="mean log-probability per output token under the target model (the vanilla engine)"
    )

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
        """Tokens per decode step; 1.0 means nothing was ever accepted.

        The first chunk is the prefill token. The last is cut short by max_tokens or EOS, so counted
        it would read as a rejection and pull short requests down; both are left out.
        """
        steps = self.chunk_tokens[1:-1]
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


class Window(BaseModel):
    """One measured window of one side: what the engine's counters and the client saw in it."""

    duration_s: float
    output_tokens: int
    started_at: float | None = Field(default=None, description="unix time the window began (windows of two "
                                     "processes on one device never overlap: device_lock)")
    engine_generation_tokens: int | None = Field(
        default=None, description="the engine's own vllm:generation_tokens delta over the window"
    )
    prefix_cache_reset: bool = Field(description="whether the engine's prefix cache was emptied before the window")
    client_cpu_s: float | None = Field(default=None, description="server mode: CPU time of the measuring client")
    client_lag_ms: float | None = Field(
        default=None, description="server mode: worst event-loop lag of the measuring client (late sends and reads)"
    )


class EngineFigures(BaseModel):
    """What one engine (spec or vanilla) did on one run."""

    samples: list[RequestSample]
    duration_s: float = Field(description="wall time of the measured windows, warmup excluded")
    kv_cache_tokens: int | None = None
    source: Literal["measured", "cached"] = "measured"
    windows: list[Window] = Field(default_factory=list, description="one per repeat")

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
    def scheduled_ttft_ms(self) -> Distribution:
        """Paced load levels: TTFT from each request's scheduled send time, so a client that sent
        late does not hide the wait (coordinated omission); empty at concurrency levels."""
        return Distribution.of([s.scheduled_ttft_s * 1e3 for s in self.samples if s.scheduled_ttft_s is not None])

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


class RunWarning(BaseModel):
    """A named reason to read a run's figures with care; the figures stay, the reader is told."""

    code: str
    message: str


class LosslessCheck(BaseModel):
    """Sampled runs (T>0): are the speculative outputs drawn from vanilla's distribution?

    Each request's output, on both sides, is scored by the target model (mean log-probability per
    token); request i of both sides shares prompt and seed, so the pairs' differences are compared
    with a paired t-test (see docs/reading-the-numbers.md).
    """

    statistic: str = "paired t-test, per-request mean target log-probability per token"
    n_pairs: int
    distinct_samples: int = Field(description="distinct (spec, vanilla) output pairs among the pairs")
    spec_mean_logprob: float | None = None
    vanilla_mean_logprob: float | None = None
    mean_difference: float | None = Field(default=None, description="spec - vanilla, per token, averaged over pairs")
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


class BaselineInfo(BaseModel):
    """Where a run's vanilla figures came from: measured in this session, or a stored baseline."""

    source: Literal["measured", "cached"]
    fingerprint: str
    age_s: float


#: RunResult's intervals, computed once per object: a bootstrap of ITL P99s takes half a second.
CACHED_INTERVALS = ("speedup_ci", "tpot_speedup_ci", "p99_regression_ci", "acceptance_rate_ci")


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
    warnings: list[RunWarning] = Field(default_factory=list)
    speedup_basis: str | None = Field(default=None, description="what the throughput speedup compares")
    lossless_check: LosslessCheck | None = Field(default=None, description="sampled runs only")
    engine_args: dict[str, Any] = Field(default_factory=dict, description="what both engines were started with")
    speculative_config: dict[str, Any] = Field(default_factory=dict)

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
        """Each request's acceptance rate, (acceptance length - 1) / K: the spread behind the mean.

        Not clipped at 1: a value above 1 means stream chunks merged engine steps, and is counted
        in `per_request_acceptance_over_one` rather than hidden.
        """
        k = self.num_speculative_tokens
        return [(s.acceptance_length - 1) / k for s in self.spec.samples if s.acceptance_length is not None]

    @computed_field
    @property
    def per_request_acceptance(self) -> Distribution:
        return Distribution.of(self.per_request_acceptance_values())

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

    @property
    def _paired(self) -> bool:
        """Vanilla windows measured in this session, one per spec window: pair r is spec r with vanilla r."""
        return (self.baseline is None or self.baseline.source == "measured") and len(self.spec.windows) == len(
            self.vanilla.windows
        )

    @computed_field
    @property
    def windows_resolve(self) -> bool:
        """Whether the timed intervals rest on the spread between windows, the only spread that
        covers a shared runner's window-to-window noise; confident timed verdicts need it."""
        return min(len(self.spec.windows), len(self.vanilla.windows)) >= MIN_WINDOWS

    @computed_field
    @property
    def interval_basis(self) -> str:
        """What the timed intervals (speedup, TPOT speedup, P99 regression) are computed from."""
        spec, vanilla = len(self.spec.windows), len(self.vanilla.windows)
        if self.windows_resolve and self._paired:
            return f"{spec} window pairs (t interval over per-pair log ratios)"
        if self.windows_resolve:
            return f"{spec} spec vs {vanilla} stored vanilla windows, unpaired (Welch interval on log values)"
        return (
            f"requests within {spec} spec / {vanilla} vanilla window(s): window-to-window noise not covered; "
            f"confident verdicts need [run] repeats >= {MIN_WINDOWS}"
        )

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def speedup_ci(self) -> list[float] | None:
        """95% interval of `speedup`; none at a paced request rate, where there is no speedup."""
        if self.speedup is None:
            return None
        if self.windows_resolve:
            found = log_ratio_interval(_window_rates(self.spec), _window_rates(self.vanilla), self._paired)
        else:
            found = speedup_interval(self.spec, self.vanilla)
        return _bounds(found)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def tpot_speedup_ci(self) -> list[float] | None:
        """95% interval of `tpot_speedup` (vanilla TPOT over spec TPOT)."""
        if self.tpot_speedup is None:
            return None
        if self.windows_resolve:
            found = log_ratio_interval(
                _per_window(self.vanilla, "tpot", _mean), _per_window(self.spec, "tpot", _mean), self._paired
            )
        else:
            found = tpot_speedup_interval(self.spec, self.vanilla)
        return _bounds(found)

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def p99_regression_ci(self) -> dict[str, list[float] | None]:
        """Per latency metric, the 95% interval of `p99_regression`."""
        intervals: dict[str, list[float] | None] = {}
        for metric in LATENCY_METRICS:
            if self.p99_regression[metric] is None:
                intervals[metric] = None
            elif self.windows_resolve:
                found = log_ratio_interval(
                    _per_window(self.spec, metric, _p99), _per_window(self.vanilla, metric, _p99), self._paired
                )
                intervals[metric] = None if found is None else [found.low - 1.0, found.high - 1.0]
            else:
                intervals[metric] = _bounds(p99_regression_interval(self.spec, self.vanilla, metric))
        return intervals

    @computed_field  # type: ignore[prop-decorator]
    @cached_property
    def acceptance_rate_ci(self) -> list[float] | None:
        """95% interval of `acceptance_rate`: counters are not timed, so requests are the unit. Clipped
        to [0, 1], which a rate cannot leave (a few requests can spread a bootstrap past it)."""
        found = _bounds(acceptance_interval(self))
        return None if found is None else [max(0.0, found[0]), min(1.0, found[1])]

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
    cuda: str | None = Field(default=None, description="the CUDA version torch was built with (read without initialising CUDA)")
    device: str | None = None
    python: str | None = None


class BreakEven(BaseModel):
    """Where speculation stops paying along one load sweep at one temperature.

    The first crossing, not the highest level that pays: a sweep that dips below 1 and recovers
    is noise or a scheduler effect to look into, not a range over which to keep speculation on.
    """

    temperature: float
    axis: LoadAxis
    metric: SpeedupMetric = Field(
        description="the speedup read: tpot along request_rate, where throughput speedup is not defined"
    )
    first_level_not_paying: float | None = Field(description="lowest level whose speedup is < 1; None if all pay")
    last_level_paying_before_it: float | None = Field(
        description="highest level below the first crossing (the highest level when all pay); None if none pays"
    )
    speedup_at_first_level_not_paying: float | None = None
    speedup_ci: tuple[float, float] | None = Field(default=None, description="that level's 95% interval")
    monotone: bool = Field(
        description=f"speedup never rises by more than {SWEEP_NOISE:.0%} from one level to the next, "
        "and never pays again once it stopped"
    )
    pays_again_at: list[float] = Field(default_factory=list, description="levels past the crossing that pay again")
    p99_tolerance: float = Field(description="how far above vanilla's an E2E P99 may be before it regresses")
    first_level_p99_regresses: float | None = Field(
        description="lowest judged level whose E2E P99 exceeds vanilla's by more than p99_tolerance"
    )
    p99_not_judged: list[float] = Field(
        default_factory=list, description=f"levels with fewer than {MIN_P99_REQUESTS} requests on a side"
    )


def break_even(
    temperature: float, axis: LoadAxis, sweep: list[tuple[float, RunResult]], p99_tolerance: float
) -> BreakEven:
    """One sweep's break-even; `sweep` is (level, run) in increasing level, valid runs only."""
    metric = BREAK_EVEN_METRIC[axis]
    speedups = [(level, value, run) for level, run in sweep if (value := run.speedup_of(metric)) is not None]
    crossing = next((i for i, (_, value, _) in enumerate(speedups) if value < 1), len(speedups))
    paying, first, after = speedups[:crossing], speedups[crossing : crossing + 1], speedups[crossing + 1 :]
    pays_again = [level for level, value, _ in after if value >= 1]
    rises = any(later > earlier * (1 + SWEEP_NOISE) for (_, earlier, _), (_, later, _) in zip(speedups, speedups[1:]))
    judged = [(level, run) for level, run in sweep if _p99_judged(run)]
    regressing = [level for level, run in judged if (run.p99_regression["e2e"] or 0) > p99_tolerance]
    return BreakEven(
        temperature=temperature,
        axis=axis,
        metric=metric,
        first_level_not_paying=first[0][0] if first else None,
        last_level_paying_before_it=paying[-1][0] if paying else None,
        speedup_at_first_level_not_paying=first[0][1] if first else None,
        speedup_ci=_speedup_interval(first[0][2], metric) if first else None,
        monotone=not rises and not pays_again,
        pays_again_at=pays_again,
        p99_tolerance=p99_tolerance,
        first_level_p99_regresses=regressing[0] if regressing else None,
        p99_not_judged=[level for level, run in sweep if not _p99_judged(run)],
    )


def _p99_judged(run: RunResult) -> bool:
    return min(run.spec.e2e_ms.count, run.vanilla.e2e_ms.count) >= MIN_P99_REQUESTS


def _speedup_interval(run: RunResult, metric: SpeedupMetric) -> tuple[float, float] | None:
    interval = run.speedup_ci if metric == "throughput" else run.tpot_speedup_ci
    return None if interval is None else (interval[0], interval[1])


def _window_rates(figures: EngineFigures) -> list[float]:
    return [w.output_tokens / w.duration_s for w in figures.windows if w.duration_s > 0]


def _per_window(
    figures: EngineFigures, metric: LatencyMetric, summary: Callable[[list[float]], float | None]
) -> list[float]:
    """One summary (mean, P99) of a latency metric per window; a window is a repeat's requests."""
    values: dict[int, list[float]] = {}
    for sample in figures.samples:
        found = sample.itl_s if metric == "itl" else [getattr(sample, f"{metric}_s")]
        values.setdefault(sample.repeat, []).extend(v for v in found if v is not None)
    summaries = [summary(values[repeat]) for repeat in sorted(values)]
    return [value for value in summaries if value is not None]


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _p99(values: list[float]) -> float | None:
    return Distribution.of(values).p99


def _bounds(interval: Interval | None) -> list[float] | None:
    return None if interval is None else [interval.low, interval.high]


class ConfigResult(BaseModel):
    """Everything measured for one config in a session: what the `spec_run` fixture yields."""

    config: str
    config_name: str
    runs: list[RunResult]
    environment: Environment = Environment()
    engine_start_s: dict[str, float] = Field(default_factory=dict)
    p99_regression_tolerance: float = Field(
        default=0.05, ge=0, description="the config's [gates] p99_regression_tolerance (same default), for break_even"
    )

    @computed_field
    @property
    def break_even(self) -> list[BreakEven]:
        """Per temperature and load axis: the load beyond which speculation should be switched off
        (vLLM's `num_speculative_tokens_per_batch_size`, `disable_by_batch_size` in older builds)."""
        points = []
        for temperature in sorted({run.temperature for run in self.runs}):
            for axis in LOAD_AXES:
                at = [run for run in self.runs if run.temperature == temperature and run.valid]
                levels = [(level, run) for run in at if (level := getattr(run, axis)) is not None]
                sweep = sorted(levels, key=operator.itemgetter(0))
                if len(sweep) >= 2:
                    points.append(break_even(temperature, axis, sweep, self.p99_regression_tolerance))
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
