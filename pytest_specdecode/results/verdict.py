"""A gate's judgement of one run: what the report, JUnit properties and xdist's controller carry."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .run import Condition
from .schema import Model


class Verdict(Model, frozen=True):
    """One gate on one run. `run` is the run's label, for people; `config_name` and `condition` say
    which run it is, for code (a config-level verdict, such as a comparison with a saved run, has
    no condition)."""

    test: str
    gate: str
    run: str
    threshold: float
    measured: float | None
    passed: bool
    message: str = Field(default="", description="why it missed; kept out of the JSON report, which has the figures")
    outcome: Literal["pass", "fail", "inconclusive"] = Field(
        default="pass", description="pass or fail: the interval lies wholly on one side of the threshold; inconclusive: it "
        "straddles it, or there is no interval to decide with"
    )
    interval: tuple[float, float] | None = None
    level: float | None = Field(default=None, description="the interval's confidence level: 1 - alpha over the looks")
    n: int | None = Field(default=None, description="how many units the interval rests on (windows, pairs, requests)")
    interval_basis: str | None = Field(default=None, description="what the interval was computed from")
    config_name: str | None = None
    condition: Condition | None = None

    def of(self, config_name: str, condition: Condition) -> bool:
        """Whether this verdict judged the run of that config under that condition."""
        return self.config_name == config_name and self.condition == condition
