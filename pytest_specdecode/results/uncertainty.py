"""Confidence intervals as pure maths on numbers and index arrays: no result model, no gate.

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
  rest on it alone.

The request bootstrap resamples requests with `scipy.stats.bootstrap` and a freshly seeded
`numpy.random.Generator`, so a report is reproducible. Repeats are resampled within each repeat
(stratified); spec and vanilla are resampled independently, since the vanilla side may be a stored
baseline. Which numbers each figure's interval is computed from is `results.intervals`' choice.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..config.sequential import MIN_WINDOWS

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


def ratio_of_estimates(
    a: float, a_interval: Sequence[float], b: float, b_interval: Sequence[float], level: float
) -> Interval | None:
    """An interval for a / b from two positive estimates and their intervals at `level`, taken as
    independent: each interval's half-width on the log scale gives its standard error, and the two
    add in quadrature. Two speedups over one shared vanilla side are positively correlated (its noise
    cancels in the ratio), so this is wider than the truth there: a winner it calls is a winner."""
    from scipy import stats

    if min(a, b, *a_interval, *b_interval) <= 0:
        return None
    z = stats.norm.ppf(0.5 + level / 2)
    se = math.hypot(*(math.log(high / low) / (2 * z) for low, high in (a_interval, b_interval)))
    centre = math.log(a / b)
    return Interval(math.exp(centre - z * se), math.exp(centre + z * se), level)


def pooled_ratio_interval(
    spec: tuple[Sequence[float], Sequence[float]], vanilla: tuple[Sequence[float], Sequence[float]],
    paired: bool, level: float,
) -> Interval | None:
    """An interval for (sum of spec numerators / sum of spec denominators) over the same for vanilla,
    one (numerator, denominator) per window: the pooled ratio a report prints (tokens over time),
    not the typical per-window ratio, so the printed point always lies inside its own interval.

    The delta method on the log of each side's ratio of sums: window i of a side contributes
    n (a_i / sum a - b_i / sum b) to it, and the spread of those contributions over the windows is
    its standard error (the same linearisation the lossless check uses for tokens). Paired
    (windows measured side by side, ABBA): a t interval over the per-pair differences of
    contributions; unpaired (blocks, or a stored side): Welch's. None with fewer than `MIN_WINDOWS`
    windows a side.
    """
    from scipy import stats

    sides = []
    for numerators, denominators in (spec, vanilla):
        a, b = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
        if a.size < MIN_WINDOWS or a.size != b.size or a.sum() <= 0 or b.sum() <= 0:
            return None
        sides.append((a.sum() / b.sum(), a.size * (a / a.sum() - b / b.sum())))
    (spec_ratio, spec_terms), (vanilla_ratio, vanilla_terms) = sides
    centre = spec_ratio / vanilla_ratio
    if paired and spec_terms.size == vanilla_terms.size:
        differences = spec_terms - vanilla_terms
        se, df = differences.std(ddof=1) / math.sqrt(differences.size), differences.size - 1
    else:
        var_s, var_v = spec_terms.var(ddof=1) / spec_terms.size, vanilla_terms.var(ddof=1) / vanilla_terms.size
        se = math.sqrt(var_s + var_v)
        df = (var_s + var_v) ** 2 / (var_s**2 / (spec_terms.size - 1) + var_v**2 / (vanilla_terms.size - 1)) if se > 0 else 1.0
    half = float(stats.t.ppf(0.5 + level / 2, df)) * se
    return Interval(float(centre * math.exp(-half)), float(centre * math.exp(half)), level)


class LatencyGroups:
    """Latency values grouped by request: one value per request, or several (ITL gaps), so a
    bootstrap resamples requests, never the gaps of one request apart."""

    def __init__(self, groups: Sequence[Sequence[float]]) -> None:
        self.values = np.array([v for group in groups for v in group], dtype=float)
        self.lengths = np.array([len(group) for group in groups])
        self.starts = np.cumsum(self.lengths) - self.lengths

    def p99(self, idx: np.ndarray) -> np.ndarray:
        """P99 of the values of the requests in each row of `idx`, as `distribution.Distribution.of` takes it."""
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


def _strata(repeats: Sequence[int]) -> list[np.ndarray]:
    """Indices grouped by repeat; one group of all when some repeat is too small to resample."""
    labels = np.asarray(repeats)
    groups = [np.flatnonzero(labels == r) for r in np.unique(labels)]
    return groups if all(g.size >= 2 for g in groups) else [np.arange(labels.size)]


def bootstrap_interval(
    sides: Sequence[Sequence[int]], statistic: Statistic, resampling: Resampling = DEFAULT_RESAMPLING
) -> Interval | None:
    """Bootstrap `statistic(*indices_per_side)`; `sides` holds each side's repeat labels, one per
    unit, and each repeat is resampled as its own stratum."""
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
