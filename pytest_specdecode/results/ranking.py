"""Configs (and the Ks of a sweep) ranked against each other, condition by condition.

A team choosing between EAGLE-3, n-gram and a draft model, or between K=3 and K=5, needs each
against the others, not each against vanilla alone. Runs are comparable when they share the target,
the workload, the mode and the condition; their speedups are ranked, and each neighbour pair gets
the ratio of their speedups with an interval. A winner is called only where that interval lies
wholly above 1; otherwise the ranking says the top two are not told apart.
"""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import Field

from .run import RunResult, SpeedupMetric
from .schema import Model
from .uncertainty import ratio_of_estimates


class Entry(Model):
    name: str = Field(description="config name, with K in a sweep")
    speedup: float
    speedup_ci: list[float] | None = None


class Pair(Model):
    """Neighbours in the ranking: how much faster the higher one is, and whether that is shown."""

    better: str
    worse: str
    ratio: float
    interval: list[float] | None = None
    resolved: bool = Field(description="the whole interval lies above 1")


class Ranking(Model):
    condition: str = Field(description="temperature and load level (K is the entries')")
    model: str
    workload: str
    metric: SpeedupMetric = Field(description="throughput, or TPOT at paced request rates")
    level: float
    entries: list[Entry] = Field(description="fastest first")
    pairs: list[Pair]
    winner: str | None = Field(description="the fastest, only when it beats the second by its interval")

    @property
    def summary(self) -> str:
        first, *rest = self.pairs
        head = (f"{first.better} beats {first.worse} by {first.ratio:.2f}x ({_span(first.interval)})" if first.resolved
                else f"{first.better} and {first.worse} are not told apart ({first.ratio:.2f}x, {_span(first.interval)})")
        return "; ".join([head, *(f"then {pair.worse} ({pair.ratio:.2f}x below {pair.better}, "
                                  f"{_span(pair.interval)})" for pair in rest)])


def _span(interval: list[float] | None) -> str:
    return "no interval" if interval is None else f"{interval[0]:.2f}-{interval[1]:.2f}"


def entry_name(run: RunResult) -> str:
    return run.config_name + (f" K={run.num_speculative_tokens}" if run.k_swept else "")


def rank(runs: Iterable[RunResult]) -> list[Ranking]:
    """A ranking for every condition two or more comparable valid runs share."""
    groups: dict[tuple, list[RunResult]] = {}
    for run in runs:
        if not run.valid:
            continue
        metric: SpeedupMetric = "throughput" if run.speedup is not None else "tpot"
        if run.speedup_of(metric) is None:
            continue
        key = (run.model, run.workload, run.mode, run.temperature, run.concurrency, run.request_rate, metric)
        groups.setdefault(key, []).append(run)
    return [_ranking(group, key[-1]) for key, group in groups.items() if len(group) >= 2]


def _ranking(runs: list[RunResult], metric: SpeedupMetric) -> Ranking:
    ordered = sorted(runs, key=lambda run: -(run.speedup_of(metric) or 0.0))
    level = min(run.interval_level for run in ordered)
    pairs = []
    for better, worse in zip(ordered, ordered[1:]):
        a, b = better.speedup_of(metric), worse.speedup_of(metric)
        a_ci, b_ci = better.speedup_ci_of(metric), worse.speedup_ci_of(metric)
        found = None if a_ci is None or b_ci is None else ratio_of_estimates(a, a_ci, b, b_ci, level)
        interval = None if found is None else [found.low, found.high]
        pairs.append(Pair(better=entry_name(better), worse=entry_name(worse), ratio=a / b, interval=interval,
                          resolved=interval is not None and interval[0] > 1))
    first = ordered[0]
    condition = first.condition.model_copy(update={"k": None}).label
    return Ranking(
        condition=condition, model=first.model, workload=first.workload, metric=metric, level=level,
        entries=[Entry(name=entry_name(run), speedup=run.speedup_of(metric), speedup_ci=run.speedup_ci_of(metric))
                 for run in ordered],
        pairs=pairs, winner=pairs[0].better if pairs[0].resolved else None,
    )
