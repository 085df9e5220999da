"""Everything measured for one config in a session, and the machine it was measured on."""

from __future__ import annotations

import operator
from collections.abc import Callable

from pydantic import Field, PrivateAttr, computed_field

from .break_even import LOAD_AXES, BreakEven, break_even
from ..config.spec import KV_CAPACITY_LOSS_LIMIT
from .decision import Statement, decide
from .run import RunResult
from .schema import Model
from .verdict import Verdict

#: Takes an assertion helper's verdicts to the test's report; returns the --spec-inconclusive policy.
VerdictSink = Callable[[list[Verdict]], str]


class Environment(Model):
    """The software and device a config was measured on: runs from another machine are never compared."""

    vllm: str | None = None
    torch: str | None = None
    cuda: str | None = Field(default=None, description="the CUDA version torch was built with (read without initialising CUDA)")
    device: str | None = None
    python: str | None = None


class ConfigResult(Model):
    """Everything measured for one config in a session: what the `spec_run` fixture yields."""

    config: str
    config_name: str
    runs: list[RunResult]
    environment: Environment = Environment()
    engine_start_s: dict[str, float] = Field(default_factory=dict)
    engine_start_phases: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="per role, where a start went, from the engine's log: weights_s, engine_init_s "
        "(compile_s and graph_capture_s inside it) and other_s; offline also import_s (importing vLLM), and only "
        "engine_init_s (`vllm.LLM(...)` whole) where the log says nothing"
    )
    p99_regression_tolerance: float = Field(
        default=0.05, ge=0, description="the config's [gates] p99_regression_tolerance (same default), for break_even"
    )
    kv_capacity_loss_limit: float = Field(
        default=KV_CAPACITY_LOSS_LIMIT, ge=0, le=1,
        description="the share of vanilla's KV cache a draft may take before the decision says leave it off "
        "([gates] max_kv_capacity_loss, else the rule of thumb)",
    )

    _sink: VerdictSink | None = PrivateAttr(default=None)

    def bound_to(self, sink: VerdictSink) -> ConfigResult:
        """This result as one test sees it: the `assert_*` helpers' verdicts go to `sink` (the
        test's report) and are judged under the policy it returns."""
        bound = self.model_copy()
        bound._sink = sink
        return bound

    def record(self, verdicts: list[Verdict]) -> str:
        """Hand an assertion helper's verdicts to the test's report; the inconclusive policy.
        A result built by hand (no session) fails what it cannot resolve, the safe default."""
        return "fail" if self._sink is None else self._sink(verdicts)

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

    @computed_field
    @property
    def decision(self) -> list[Statement]:
        """Where speculation pays and where to leave it off, and why, each statement with its evidence."""
        return decide(self.runs, self.break_even, self.p99_regression_tolerance, self.kv_capacity_loss_limit)

    def select(
        self, temperature: float | None = None, concurrency: int | None = None, request_rate: float | None = None,
        k: int | None = None,
    ) -> list[RunResult]:
        """The runs at that temperature / load level / draft length (all of them where an argument is
        None; a mixed-temperature batch is no one temperature's run)."""
        return [
            run
            for run in self.runs
            if (temperature is None or (run.temperature_mix is None and abs(run.temperature - temperature) < 1e-9))
            and (concurrency is None or run.concurrency == concurrency)
            and (request_rate is None or run.request_rate == request_rate)
            and (k is None or run.num_speculative_tokens == k)
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

