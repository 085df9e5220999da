"""Where speculation stops paying along a load sweep: the level beyond which to switch it off."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .run import RunResult, SpeedupMetric
from .schema import Model

LoadAxis = Literal["concurrency", "request_rate"]
LOAD_AXES: tuple[LoadAxis, ...] = ("concurrency", "request_rate")
#: The speedup break-even reads on each load axis: throughput speedup is not defined at paced rates.
BREAK_EVEN_METRIC: dict[LoadAxis, SpeedupMetric] = {"concurrency": "throughput", "request_rate": "tpot"}
#: A rise in speedup from one level to the next smaller than this is taken as noise (a level of a
#: few dozen requests moves a speedup by several percent), not as a non-monotone sweep.
SWEEP_NOISE = 0.05


class BreakEven(Model):
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
    speedup_ci: tuple[float, float] | None = Field(default=None, description="that level's interval, at its run's interval_level")
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
        default_factory=list, description="levels with fewer than [run] min_p99_requests requests on a side"
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
    judged = [(level, run) for level, run in sweep if run.p99_judged]
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
        p99_not_judged=[level for level, run in sweep if not run.p99_judged],
    )


def _speedup_interval(run: RunResult, metric: SpeedupMetric) -> tuple[float, float] | None:
    interval = run.speedup_ci_of(metric)
    return None if interval is None else (interval[0], interval[1])

