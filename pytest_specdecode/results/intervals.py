"""A run's intervals, at the level its verdicts are judged at: from the spread between measured
windows where there are enough of them, else from the requests within them (a bootstrap that
cannot see window-to-window noise, so timed verdicts do not rest on it).

This is where the result model meets the pure maths of `uncertainty`: each function here picks the
numbers a figure is computed from (window rates, per-request TPOTs, latency values per request) and
hands them over. Each interval is of the figure exactly as `run.RunResult` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .distribution import Distribution
from .uncertainty import (
    DEFAULT_RESAMPLING,
    MIN_WINDOWS,
    Interval,
    LatencyGroups,
    Resampling,
    Statistic,
    bootstrap_interval,
    log_ratio_interval,
    pooled_ratio_interval,
)
from .figures import EngineFigures, LatencyMetric, RequestSample


def windows_resolve(spec: EngineFigures, vanilla: EngineFigures) -> bool:
    """Whether the timed intervals rest on the spread between windows, the only spread that
    covers a shared runner's window-to-window noise."""
    return min(len(spec.windows), len(vanilla.windows)) >= MIN_WINDOWS


def interval_basis(spec: EngineFigures, vanilla: EngineFigures, pairing: str | None) -> str:
    """What the timed intervals (speedup, TPOT speedup, P99 regression) are computed from;
    `pairing` is `RunResult.pairing`'s reason the windows are not paired, None when they are."""
    n_spec, n_vanilla = len(spec.windows), len(vanilla.windows)
    if not windows_resolve(spec, vanilla):
        return (
            f"requests within {n_spec} spec / {n_vanilla} vanilla window(s): window-to-window noise not covered, "
            f"so timed verdicts are inconclusive; [run] repeats >= {MIN_WINDOWS} resolves them"
        )
    starts = "engine-start noise not covered (one start a side)"
    if pairing is None:
        return f"{n_spec} ABBA window pairs (paired t on the pooled ratio's window contributions); {starts}"
    return f"{n_spec} spec vs {n_vanilla} vanilla windows, unpaired: {pairing} (Welch); {starts}"


def speedup_ci(spec: EngineFigures, vanilla: EngineFigures, paired: bool, level: float) -> list[float] | None:
    """Spec tokens/s over vanilla tokens/s, pooled over each side's windows (tokens over time)."""
    if windows_resolve(spec, vanilla):
        return _bounds(pooled_ratio_interval(_tokens_and_time(spec), _tokens_and_time(vanilla), paired, level))
    return _bounds(speedup_interval(spec, vanilla, Resampling(level=level)))


def step_cost_ratio_ci(spec: EngineFigures, vanilla: EngineFigures, paired: bool, level: float) -> list[float] | None:
    """Spec time per engine step over vanilla's, pooled over each side's windows (time over steps);
    None unless every window counted its steps, or with too few windows (`pooled_ratio_interval`)."""
    sides = [([w.duration_s for w in f.windows], [w.engine_steps for w in f.windows]) for f in (spec, vanilla)]
    if any(None in steps for _, steps in sides):
        return None
    return _bounds(pooled_ratio_interval(sides[0], sides[1], paired, level))


def tpot_speedup_ci(spec: EngineFigures, vanilla: EngineFigures, paired: bool, level: float) -> list[float] | None:
    """Vanilla mean TPOT over spec mean TPOT, each mean over all of a side's requests: per window,
    requests with a TPOT over the sum of their TPOTs, pooled as for the throughput speedup."""
    if windows_resolve(spec, vanilla):
        return _bounds(pooled_ratio_interval(_tpot_sums(spec), _tpot_sums(vanilla), paired, level))
    return _bounds(tpot_speedup_interval(spec, vanilla, Resampling(level=level)))


def p99_regression_ci(
    spec: EngineFigures, vanilla: EngineFigures, metric: LatencyMetric, paired: bool, level: float
) -> list[float] | None:
    """Spec P99 / vanilla P99 - 1; per window, each window's own P99 (the typical per-window ratio:
    a tail pooled over windows has no per-window decomposition to linearise)."""
    if windows_resolve(spec, vanilla):
        found = log_ratio_interval(
            _per_window(spec, metric, _p99), _per_window(vanilla, metric, _p99), paired, level
        )
        return None if found is None else [found.low - 1.0, found.high - 1.0]
    return _bounds(p99_regression_interval(spec, vanilla, metric, Resampling(level=level)))


def acceptance_rate_ci(
    point: float | None, spec: EngineFigures, level: float, position: int | None = None
) -> list[float] | None:
    """Counters are not timed, so requests are the unit. Clipped to [0, 1], which a rate cannot
    leave (a few requests can spread a bootstrap past it)."""
    found = _bounds(acceptance_interval(point, spec, Resampling(level=level), position))
    return None if found is None else [max(0.0, found[0]), min(1.0, found[1])]


def percentile_ci(values: Sequence[float], percentile: int, level: float) -> list[float] | None:
    """A percentile of per-request values, resampling the requests."""
    data = np.asarray(values, dtype=float)

    def statistic(idx: np.ndarray) -> np.ndarray:
        return np.percentile(data[idx], percentile, axis=-1)

    return _bounds(bootstrap_interval([[0] * data.size], statistic, Resampling(level=level)))


def speedup_interval(
    spec: EngineFigures, vanilla: EngineFigures, resampling: Resampling = DEFAULT_RESAMPLING
) -> Interval | None:
    """Throughput speedup, spec tokens/s over vanilla tokens/s, as a ratio estimator per side.

    A batch's duration belongs to no single request, so a resample cannot just add up request
    times. Each request is charged a share of its side's window in proportion to its own e2e time;
    a side's throughput on a resample is then sum(tokens) / sum(charged time). On the measured
    requests the charges add up to `duration_s` exactly, so the statistic is `RunResult.speedup`.
    Equivalently it is the per-request rate sum(tokens) / sum(e2e) times the side's measured mean
    concurrency sum(e2e) / duration_s, held fixed: the spread comes from which requests were fast
    or slow per token, which is the spread between reruns of one workload. Scaling resampled token
    totals by a fixed duration instead would vary only with token counts, and give a zero-width
    interval whenever every request runs to max_tokens.
    """
    statistic = _speedup_statistic(spec, vanilla)
    if statistic is None:
        return None
    return bootstrap_interval([_repeats(spec.samples), _repeats(vanilla.samples)], statistic, resampling)


def tpot_speedup_interval(
    spec: EngineFigures, vanilla: EngineFigures, resampling: Resampling = DEFAULT_RESAMPLING
) -> Interval | None:
    """Vanilla mean TPOT over spec mean TPOT, as `RunResult.tpot_speedup` reads it."""
    spec_tpot, spec_repeats = _per_request(spec.samples, lambda s: s.tpot_s)
    vanilla_tpot, vanilla_repeats = _per_request(vanilla.samples, lambda s: s.tpot_s)
    if not spec_tpot or not vanilla_tpot:
        return None
    spec_values, vanilla_values = np.array(spec_tpot), np.array(vanilla_tpot)

    def statistic(spec_idx: np.ndarray, vanilla_idx: np.ndarray) -> np.ndarray:
        return vanilla_values[vanilla_idx].mean(axis=-1) / spec_values[spec_idx].mean(axis=-1)

    return bootstrap_interval([spec_repeats, vanilla_repeats], statistic, resampling)


def p99_regression_interval(
    spec: EngineFigures, vanilla: EngineFigures, metric: LatencyMetric, resampling: Resampling = DEFAULT_RESAMPLING
) -> Interval | None:
    """Spec P99 / vanilla P99 - 1 for one latency metric, as `RunResult.p99_regression` reads it.

    For ITL the unit resampled is still the request, carrying all its gaps: gaps of one request
    share its prompt and batch, so resampling gaps one by one would understate the spread.
    """
    spec_units, spec_repeats = _latency_groups(spec.samples, metric)
    vanilla_units, vanilla_repeats = _latency_groups(vanilla.samples, metric)

    def statistic(spec_idx: np.ndarray, vanilla_idx: np.ndarray) -> np.ndarray:
        return spec_units.p99(spec_idx) / vanilla_units.p99(vanilla_idx) - 1.0

    return bootstrap_interval([spec_repeats, vanilla_repeats], statistic, resampling)


def acceptance_interval(
    point: float | None, spec: EngineFigures, resampling: Resampling = DEFAULT_RESAMPLING, position: int | None = None
) -> Interval | None:
    """The spread of a counter-based acceptance figure `point` (the rate, or one draft position's
    share), from how it varies across requests.

    Per request we only see tokens per step (streamed chunks), not how many tokens were drafted:
    methods such as n-gram propose nothing on some steps, so chunk sizes alone would understate
    acceptance. The interval therefore resamples for the *relative* change of accepted tokens per
    step (or, at a position, of steps that accepted past it; a ratio of sums, every step weighed
    alike) and scales the counter-based point estimate by it: centred on the run's figure, as wide
    as the prompts disagree. The unit resampled is the prompt, all its windows' requests together:
    at T=0 every window repeats the same greedy outputs, so counting them as new requests would
    narrow the interval with no new information. A position no step ever accepted reads 0..0 when
    its counters say 0 too.
    """
    if point is None:
        return None
    per_prompt_accepted, per_prompt_steps = accepted_steps_by_prompt(spec.samples, position)
    if not per_prompt_steps.size:
        return None
    overall = per_prompt_accepted.sum() / per_prompt_steps.sum()
    if overall == 0:
        return Interval(0.0, 0.0, resampling.level) if point == 0 else None

    def statistic(idx: np.ndarray) -> np.ndarray:
        return point * (per_prompt_accepted[idx].sum(axis=-1) / per_prompt_steps[idx].sum(axis=-1)) / overall

    return bootstrap_interval([[0] * per_prompt_steps.size], statistic, resampling)


def accepted_steps_by_prompt(
    samples: Sequence[RequestSample], position: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt with streamed steps, in prompt order: accepted draft tokens (or, at a 0-based
    draft position, steps that accepted past it) and decode steps, over all its windows' requests.
    Chunk k past the first carries 1 + the drafts accepted in that step."""
    accepted: dict[int, float] = {}
    steps: dict[int, float] = {}
    for prompt, sample in prompts_of(samples):
        chunks = sample.chunk_tokens[1:]
        if chunks:
            taken = [t - 1 if position is None else int(t - 1 > position) for t in chunks]
            accepted[prompt] = accepted.get(prompt, 0.0) + sum(taken)
            steps[prompt] = steps.get(prompt, 0.0) + len(chunks)
    order = sorted(steps)
    return np.array([accepted[p] for p in order], dtype=float), np.array([steps[p] for p in order], dtype=float)


def prompts_of(samples: Sequence[RequestSample]) -> list[tuple[int, RequestSample]]:
    """Each request with the index of its prompt: requests of one window follow the prompts' order,
    and windows follow each other, so a request's prompt is its place within its window."""
    seen: dict[int, int] = {}
    placed = []
    for sample in samples:
        placed.append((seen.get(sample.repeat, 0), sample))
        seen[sample.repeat] = seen.get(sample.repeat, 0) + 1
    return placed


def _speedup_statistic(spec: EngineFigures, vanilla: EngineFigures) -> Statistic | None:
    """spec_idx, vanilla_idx -> speedup; on every request of both sides it equals `RunResult.speedup`."""
    sides = [_charged_time(spec), _charged_time(vanilla)]
    if sides[0] is None or sides[1] is None or not vanilla.output_tokens:
        return None
    (spec_tokens, spec_time), (vanilla_tokens, vanilla_time) = sides

    def statistic(spec_idx: np.ndarray, vanilla_idx: np.ndarray) -> np.ndarray:
        spec_rate = spec_tokens[spec_idx].sum(axis=-1) / spec_time[spec_idx].sum(axis=-1)
        vanilla_rate = vanilla_tokens[vanilla_idx].sum(axis=-1) / vanilla_time[vanilla_idx].sum(axis=-1)
        return spec_rate / vanilla_rate

    return statistic


def _charged_time(figures: EngineFigures) -> tuple[np.ndarray, np.ndarray] | None:
    """Per request: output tokens, and its share of the window in proportion to its e2e time."""
    e2e = np.array([s.e2e_s for s in figures.samples], dtype=float)
    if figures.duration_s <= 0 or e2e.size == 0 or e2e.sum() <= 0:
        return None
    tokens = np.array([s.output_tokens for s in figures.samples], dtype=float)
    return tokens, e2e * (figures.duration_s / e2e.sum())


def _per_request(
    samples: Sequence[RequestSample], value: Callable[[RequestSample], float | None]
) -> tuple[list[float], list[int]]:
    """The requests that have the value: their values and their repeats."""
    kept = [(v, s.repeat) for s in samples if (v := value(s)) is not None]
    return [v for v, _ in kept], [r for _, r in kept]


def _latency_groups(samples: Sequence[RequestSample], metric: LatencyMetric) -> tuple[LatencyGroups, list[int]]:
    """Per request with at least one value of the metric: its values (several for ITL) and repeat."""
    if metric == "itl":
        kept = [s for s in samples if s.itl_s]
        return LatencyGroups([s.itl_s for s in kept]), _repeats(kept)
    values, repeats = _per_request(samples, lambda s: getattr(s, f"{metric}_s"))
    return LatencyGroups([[v] for v in values]), repeats


def _repeats(samples: Sequence[RequestSample]) -> list[int]:
    return [s.repeat for s in samples]


def _tokens_and_time(figures: EngineFigures) -> tuple[list[float], list[float]]:
    """Per window: output tokens and duration, whose sums make `EngineFigures.tokens_per_s`."""
    return [w.output_tokens for w in figures.windows], [w.duration_s for w in figures.windows]


def _tpot_sums(figures: EngineFigures) -> tuple[list[float], list[float]]:
    """Per window: how many requests have a TPOT, and the sum of their TPOTs."""
    counts: dict[int, int] = {}
    sums: dict[int, float] = {}
    for sample in figures.samples:
        if sample.tpot_s is not None:
            counts[sample.repeat] = counts.get(sample.repeat, 0) + 1
            sums[sample.repeat] = sums.get(sample.repeat, 0.0) + sample.tpot_s
    return [counts[r] for r in sorted(counts)], [sums[r] for r in sorted(counts)]


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
