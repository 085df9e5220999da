"""Confidence intervals for timed and counted figures: pure maths on numbers, knowing nothing of gates.

A figure from a few dozen requests moves by several percent between identical runs, and a shared CI
runner adds more: each measured window has its own clocks, neighbours and thermal state. So the
unit of evidence for a timed figure (speedup, TPOT speedup, P99 regression) is the *window*, and
with spec and vanilla measured in interleaved windows (ABBA), the window *pair*:

- `log_ratio_interval`: with at least `MIN_WINDOWS` pairs, a t interval over the per-pair log
  ratios (spec window r over vanilla window r). Each pair's ratio already carries its windows'
  request-to-request spread, so the spread between pairs holds both levels of noise (Kalibera &
  Jones: take the variance at the highest level that was repeated). Logs make a ratio's interval
  symmetric in "2x faster" and "2x slower". Against a stored vanilla baseline the windows are not
  paired: a Welch interval on the two sides' log values, each side's spread its own.
- With fewer windows there is no between-window spread to measure. The request bootstrap below
  still describes the within-window spread, but it cannot see window-to-window noise (it covered
  the truth 32-70 % of the time at 5-10 % window noise: docs/benchmarks.md), so a verdict may not
  rest on it: `gates` reports such a verdict as inconclusive.

The request bootstrap resamples requests with `scipy.stats.bootstrap` and a freshly seeded
`numpy.random.Generator`, so a report is reproducible. Repeats are resampled within each repeat
(stratified); spec and vanilla are resampled independently, since the vanilla side may be a stored
baseline.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

if TYPE_CHECKING:
    from .results import EngineFigures, LatencyMetric, RequestSample, RunResult

#: Fewer windows a side than this give no usable between-window spread: a t interval with one
#: degree of freedom is a dozen standard errors wide, and with one window there is no spread at all.
MIN_WINDOWS = 3
#: Index arrays of shape (..., n), one per side, to the statistic of shape (...): scipy calls it
#: vectorized, a few thousand resamples in one call, which costs milliseconds instead of seconds.
Statistic = Callable[..., np.ndarray]


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    level: float = 0.95


@dataclass(frozen=True)
class Resampling:
    """How intervals are drawn; BCa corrects the skew of ratio statistics, percentile is the fallback."""

    level: float = 0.95
    n_resamples: int = 2000
    seed: int = 0
    method: Literal["BCa", "percentile"] = "BCa"


DEFAULT_RESAMPLING = Resampling()


def log_ratio_interval(
    spec: Sequence[float], vanilla: Sequence[float], paired: bool, level: float = 0.95
) -> Interval | None:
    """An interval for spec / vanilla from per-window values, or None with fewer than `MIN_WINDOWS`.

    Paired: a t interval over log(spec[i] / vanilla[i]), the windows of one pair measured side by
    side. Unpaired (a stored vanilla side): Welch's interval on the difference of mean logs.
    The result is the typical (geometric-mean) ratio's interval.
    """
    from scipy import stats

    s, v = np.asarray(spec, dtype=float), np.asarray(vanilla, dtype=float)
    if min(s.size, v.size) < MIN_WINDOWS or np.any(s <= 0) or np.any(v <= 0) or not (np.all(np.isfinite(s)) and np.all(np.isfinite(v))):
        return None
    if paired:
        if s.size != v.size:
            return None
        differences = np.log(s) - np.log(v)
        centre, se, df = differences.mean(), differences.std(ddof=1) / math.sqrt(s.size), s.size - 1
    else:
        var_s, var_v = np.log(s).var(ddof=1) / s.size, np.log(v).var(ddof=1) / v.size
        centre, se = np.log(s).mean() - np.log(v).mean(), math.sqrt(var_s + var_v)
        df = (var_s + var_v) ** 2 / (var_s**2 / (s.size - 1) + var_v**2 / (v.size - 1)) if se > 0 else 1.0
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return Interval(float(math.exp(centre - half)), float(math.exp(centre + half)), level)


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
    return _interval([_repeats(spec.samples), _repeats(vanilla.samples)], statistic, resampling)


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

    return _interval([spec_repeats, vanilla_repeats], statistic, resampling)


def p99_regression_interval(
    spec: EngineFigures, vanilla: EngineFigures, metric: LatencyMetric, resampling: Resampling = DEFAULT_RESAMPLING
) -> Interval | None:
    """Spec P99 / vanilla P99 - 1 for one latency metric, as `RunResult.p99_regression` reads it.

    For ITL the unit resampled is still the request, carrying all its gaps: gaps of one request
    share its prompt and batch, so resampling gaps one by one would understate the spread.
    """
    spec_units, spec_repeats = _latency_units(spec.samples, metric)
    vanilla_units, vanilla_repeats = _latency_units(vanilla.samples, metric)

    def statistic(spec_idx: np.ndarray, vanilla_idx: np.ndarray) -> np.ndarray:
        return spec_units.p99(spec_idx) / vanilla_units.p99(vanilla_idx) - 1.0

    return _interval([spec_repeats, vanilla_repeats], statistic, resampling)


def acceptance_interval(run: RunResult, resampling: Resampling = DEFAULT_RESAMPLING) -> Interval | None:
    """The spread of vLLM's counter-based acceptance rate, from how it varies across requests.

    Per request we only see tokens per step (streamed chunks), not how many tokens were drafted:
    methods such as n-gram propose nothing on some steps, so chunk sizes alone would understate
    acceptance. The interval therefore resamples requests for the *relative* change of accepted
    tokens per step (a ratio of sums, every step weighed alike) and scales the counter-based point
    estimate by it: centred on `RunResult.acceptance_rate`, as wide as the requests disagree.
    """
    point = run.acceptance_rate
    stepped = [s for s in run.spec.samples if len(s.chunk_tokens) > 1]
    if point is None or not stepped:
        return None
    accepted = np.array([sum(s.chunk_tokens[1:]) - len(s.chunk_tokens[1:]) for s in stepped], dtype=float)
    steps = np.array([len(s.chunk_tokens[1:]) for s in stepped], dtype=float)
    overall = accepted.sum() / steps.sum()
    if overall == 0:
        return None

    def statistic(idx: np.ndarray) -> np.ndarray:
        return point * (accepted[idx].sum(axis=-1) / steps[idx].sum(axis=-1)) / overall

    return _interval([_repeats(stepped)], statistic, resampling)


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


class _Units:
    """Latency values grouped by request: one value per request, or several (ITL gaps)."""

    def __init__(self, groups: Sequence[Sequence[float]]) -> None:
        self.values = np.array([v for group in groups for v in group], dtype=float)
        self.lengths = np.array([len(group) for group in groups])
        self.starts = np.cumsum(self.lengths) - self.lengths

    def p99(self, idx: np.ndarray) -> np.ndarray:
        """P99 of the values of the requests in each row of `idx`, as `Distribution.of` takes it."""
        if np.all(self.lengths == 1):
            return np.percentile(self.values[idx], 99, axis=-1)
        rows = idx.reshape(-1, idx.shape[-1])
        return np.array([np.percentile(self._gather(row), 99) for row in rows]).reshape(idx.shape[:-1])

    def _gather(self, idx: np.ndarray) -> np.ndarray:
        """Every value of the requests `idx` (a 1-d array), without a Python loop over requests."""
        lengths = self.lengths[idx]
        ends = np.cumsum(lengths)
        shift = np.repeat(self.starts[idx] - (ends - lengths), lengths)
        return self.values[shift + np.arange(ends[-1])]


def _latency_units(samples: Sequence[RequestSample], metric: LatencyMetric) -> tuple[_Units, list[int]]:
    """Per request with at least one value of the metric: its values (several for ITL) and repeat."""
    if metric == "itl":
        kept = [s for s in samples if s.itl_s]
        return _Units([s.itl_s for s in kept]), _repeats(kept)
    values, repeats = _per_request(samples, lambda s: getattr(s, f"{metric}_s"))
    return _Units([[v] for v in values]), repeats


def _repeats(samples: Sequence[RequestSample]) -> list[int]:
    return [s.repeat for s in samples]


def _strata(repeats: Sequence[int]) -> list[np.ndarray]:
    """Indices grouped by repeat; one group of all when some repeat is too small to resample."""
    labels = np.asarray(repeats)
    groups = [np.flatnonzero(labels == r) for r in np.unique(labels)]
    return groups if all(g.size >= 2 for g in groups) else [np.arange(labels.size)]


def _interval(sides: Sequence[Sequence[int]], statistic: Statistic, resampling: Resampling) -> Interval | None:
    """Bootstrap `statistic(*indices_per_side)` with each side's repeats as separate strata."""
    if any(len(repeats) < 2 for repeats in sides):
        return None
    strata = [_strata(repeats) for repeats in sides]
    edges = np.cumsum([0] + [len(side) for side in strata])

    def joined(*resampled: np.ndarray, axis: int = -1) -> np.ndarray:
        batch = np.broadcast_shapes(*(group.shape[:-1] for group in resampled))
        groups = [np.broadcast_to(group, batch + group.shape[-1:]) for group in resampled]
        return statistic(*(np.concatenate(groups[a:b], axis=axis) for a, b in zip(edges[:-1], edges[1:])))

    data = tuple(group for side in strata for group in side)
    low, high = _bounds(data, joined, resampling)
    if not (np.isfinite(low) and np.isfinite(high)):
        return None
    return Interval(low, high, resampling.level)


def _bounds(data: tuple[np.ndarray, ...], statistic: Statistic, resampling: Resampling) -> tuple[float, float]:
    """BCa where it can be computed; on degenerate data (all resamples alike) it is NaN, so percentile."""
    from scipy.stats import DegenerateDataWarning  # scipy.stats costs ~1 s to import: only when used

    if resampling.method == "BCa":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DegenerateDataWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            low, high = _run_bootstrap(data, statistic, resampling, "BCa")
        if np.isfinite(low) and np.isfinite(high):
            return low, high
    return _run_bootstrap(data, statistic, resampling, "percentile")


def _run_bootstrap(
    data: tuple[np.ndarray, ...], statistic: Statistic, resampling: Resampling, method: str
) -> tuple[float, float]:
    from scipy.stats import bootstrap

    result = bootstrap(
        data,
        statistic,
        n_resamples=resampling.n_resamples,
        vectorized=True,
        confidence_level=resampling.level,
        method=method,
        random_state=np.random.default_rng(resampling.seed),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
