"""Gates: thresholds on a measured comparison, from markers or from assertion helpers.

Like pytest's `skipping.py`: each marker is parsed by a small pure function into a frozen `Gate`
(a user's mistake becomes a `GateUsageError` naming the marker), and `judge` turns a gate and a
result into `Verdict`s. What each marker means is its row of `KINDS`. The markers and the
`assert_*` helpers (`assertions`) share this one implementation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from .config import GatesSection
from .explain import explain, explain_greedy, explain_lossless
from .markers import MARKER_HELP
from .results import LATENCY_METRICS, ConfigResult, RunResult, SpeedupMetric, Verdict

SPEEDUP_METRICS = ("throughput", "tpot")
ACCEPTANCE_PERCENTILES = (10, 50, 90)
_RUN_SELECTORS = frozenset({"temperature", "concurrency", "request_rate"})


class GateUsageError(ValueError):
    """A marker or helper called with arguments that cannot be a gate."""


class NoThreshold(GateUsageError):
    """A gate without a threshold of its own and no config to take one from: with no config at all
    the test is skipped (it measures nothing), with a config it is the user's mistake."""


@dataclass(frozen=True)
class Gate:
    """One marker or helper call, parsed: frozen, so a gate read at collection is the gate judged."""

    kind: str
    threshold: float
    temperature: float | None = None
    position: int | None = None
    percentile: int | None = None
    metric: str | None = None
    concurrency: int | None = None
    request_rate: float | None = None
    alpha: float | None = None

    @property
    def label(self) -> str:
        extras = [f"{name}={value}" for name, value in asdict(self).items() if name not in ("kind", "threshold") and value is not None]
        return f"{self.kind}({', '.join([f'{self.threshold:g}', *extras])})"


#: A gate's 95% interval as the result model holds it, and what it was computed from.
FoundInterval = tuple[list[float] | None, str | None]


@dataclass(frozen=True)
class GateKind:
    """Everything one gate marker means, in one place: adding a kind is adding a row to `KINDS`."""

    name: str
    options: frozenset[str]
    default: Callable[[GatesSection | None], float | None]  # the threshold the config's [gates] gives
    in_range: Callable[[float], bool]
    range_text: str  # what `in_range` asks, for the usage error
    measured: Callable[[Gate, RunResult], float | None]  # the one figure compared with the threshold
    at_most: bool = False  # the threshold is a ceiling (a regression), not a floor
    interval: Callable[[Gate, RunResult], FoundInterval] | None = None
    timed: bool = False  # confident verdicts need the spread between windows
    metrics: tuple[str, ...] = ()  # choices of `metric`, the first the default
    threshold_keyword: str | None = None  # the threshold may be passed by this name too
    p_value_when_sampled: bool = False  # at T>0 the figure is a p-value, judged against `alpha`
    check_runs: Callable[[Gate, list[RunResult]], None] | None = None  # marker errors only the runs reveal

    @property
    def help(self) -> str:
        return MARKER_HELP[self.name]


def _acceptance(gate: Gate, run: RunResult) -> float | None:
    if gate.percentile is not None:
        return getattr(run.per_request_acceptance, f"p{gate.percentile}")
    if gate.position is not None:
        positions = run.per_position_acceptance
        return positions[gate.position] if gate.position < len(positions) else None
    return run.acceptance_rate


def _acceptance_interval(gate: Gate, run: RunResult) -> FoundInterval:
    """Per-position and per-request-percentile acceptance have none: the former are counter
    shares, the latter already describe the spread."""
    if gate.position is not None or gate.percentile is not None:
        return None, None
    return run.acceptance_rate_ci, "requests (bootstrap, centred on vLLM's counters)"


def _speedup_metric(gate: Gate) -> SpeedupMetric:
    return "tpot" if gate.metric == "tpot" else "throughput"


def _speedup(gate: Gate, run: RunResult) -> float | None:
    return run.speedup_of(_speedup_metric(gate))


def _speedup_interval(gate: Gate, run: RunResult) -> FoundInterval:
    return run.speedup_ci_of(_speedup_metric(gate)), run.interval_basis


def _p99_regression(gate: Gate, run: RunResult) -> float | None:
    return run.p99_regression[gate.metric or "e2e"]


def _p99_regression_interval(gate: Gate, run: RunResult) -> FoundInterval:
    return run.p99_regression_ci.get(gate.metric or "e2e"), run.interval_basis


def _lossless(gate: Gate, run: RunResult) -> float | None:
    """Greedy: the share of outputs equal to vanilla's. Sampled: the distribution test's p-value,
    only when the test could decide (enough pairs, both sides scored)."""
    if run.temperature == 0:
        return run.outputs_match
    check = run.lossless_check
    return check.p_value if check is not None and check.verdict(gate.alpha) in ("lossless", "not lossless") else None


def _speedup_defined(gate: Gate, runs: list[RunResult]) -> None:
    """A throughput gate on a paced level would judge a speedup of about 1 whatever the engines do
    (`RunResult.speedup`), so it is the marker that is wrong, not the config."""
    if gate.metric != "throughput":
        return
    paced = next((run.request_rate for run in runs if run.request_rate is not None and math.isfinite(run.request_rate)), None)
    if paced is not None:
        raise GateUsageError(
            f"{gate.label}: throughput speedup is not defined at rate={paced:g} (a paced window's length is set "
            "by the arrivals); use metric='tpot' or a concurrency level"
        )


def _unit_interval(x: float) -> bool:
    return 0 <= x <= 1


KINDS: dict[str, GateKind] = {kind.name: kind for kind in (
    GateKind(
        name="min_acceptance", options=_RUN_SELECTORS | {"position", "percentile"},
        default=lambda d: d.min_acceptance if d else None, in_range=_unit_interval, range_text="within [0, 1]",
        measured=_acceptance, interval=_acceptance_interval,
    ),
    GateKind(
        name="min_speedup", options=_RUN_SELECTORS | {"metric"},
        default=lambda d: d.min_speedup if d else None, in_range=lambda x: x > 0, range_text="> 0",
        measured=_speedup, interval=_speedup_interval, timed=True, metrics=SPEEDUP_METRICS,
        check_runs=_speedup_defined,
    ),
    GateKind(
        name="max_p99_regression", options=_RUN_SELECTORS | {"metric"},
        default=lambda d: d.max_p99_regression if d else None, in_range=lambda x: x >= 0,
        range_text=">= 0 (0.10 allows 10% slower)", measured=_p99_regression, at_most=True,
        interval=_p99_regression_interval, timed=True, metrics=LATENCY_METRICS,
    ),
    GateKind(
        name="lossless", options=_RUN_SELECTORS | {"alpha"},
        default=lambda d: (d.lossless_min_match if d else None) or 1.0, in_range=_unit_interval,
        range_text="within [0, 1]", measured=_lossless, threshold_keyword="min_match", p_value_when_sampled=True,
    ),
)}


def parse_gate(kind_name: str, args: tuple, kwargs: dict[str, Any], defaults: GatesSection | None = None) -> Gate:
    """A marker's arguments as a Gate; the threshold may come from the config's [gates]."""
    kind = KINDS[kind_name]
    kwargs = dict(kwargs)
    if kind.threshold_keyword in kwargs:
        args = (kwargs.pop(kind.threshold_keyword), *args)
    if len(args) > 1:
        raise GateUsageError(f"{kind.name}: takes one positional threshold, got {len(args)}; {kind.help}")
    threshold = args[0] if args else kind.default(defaults)
    if threshold is None:
        raise NoThreshold(f"{kind.name}: no threshold given and none in the config's [gates]; {kind.help}")
    unknown = set(kwargs) - kind.options
    if unknown:
        raise GateUsageError(f"{kind.name}: unexpected argument {sorted(unknown)[0]!r}; {kind.help}")
    options = _checked_options(kind, kwargs)
    if "alpha" in kind.options:
        options["alpha"] = _number(kind.name, "alpha", kwargs.get("alpha", (defaults and defaults.lossless_alpha) or 0.01))
        if not 0 < options["alpha"] < 1:
            raise GateUsageError(f"{kind.name}: alpha is a false-alarm rate within (0, 1), got {options['alpha']:g}")
    gate = Gate(kind=kind.name, threshold=_number(kind.name, "threshold", threshold), **options)
    if not kind.in_range(gate.threshold):
        raise GateUsageError(f"{kind.name}: threshold must be {kind.range_text}, got {gate.threshold:g}")
    return gate


def _number(kind: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise GateUsageError(f"{kind}: {name} must be a number, got {value!r}")
    return float(value)


def _checked_options(kind: GateKind, kwargs: dict[str, Any]) -> dict[str, Any]:
    name = kind.name
    options: dict[str, Any] = {}
    if kwargs.get("temperature") is not None:
        options["temperature"] = _number(name, "temperature", kwargs["temperature"])
        if options["temperature"] < 0:
            raise GateUsageError(f"{name}: temperature must be >= 0")
    if kwargs.get("position") is not None:
        position = kwargs["position"]
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise GateUsageError(f"{name}: position is a 0-based draft position (int >= 0), got {position!r}")
        options["position"] = position
    if kwargs.get("percentile") is not None:
        if kwargs["percentile"] not in ACCEPTANCE_PERCENTILES:
            raise GateUsageError(f"{name}: percentile must be one of {ACCEPTANCE_PERCENTILES}, got {kwargs['percentile']!r}")
        options["percentile"] = int(kwargs["percentile"])
    if kind.metrics:
        options["metric"] = kwargs.get("metric", kind.metrics[0])
        if options["metric"] not in kind.metrics:
            raise GateUsageError(f"{name}: metric must be one of {', '.join(kind.metrics)}, got {options['metric']!r}")
    if kwargs.get("concurrency") is not None:
        options["concurrency"] = int(_number(name, "concurrency", kwargs["concurrency"]))
    if kwargs.get("request_rate") is not None:
        options["request_rate"] = _number(name, "request_rate", kwargs["request_rate"])
    return options


def passes(gate: Gate, value: float, run: RunResult | None = None) -> bool:
    kind = KINDS[gate.kind]
    if kind.p_value_when_sampled and run is not None and run.temperature > 0:
        return value >= (gate.alpha or 0.01)  # the p-value: "same distribution" is not rejected
    return value <= gate.threshold if kind.at_most else value >= gate.threshold


def judge(gate: Gate, result: ConfigResult, test: str = "", confident: bool = False) -> list[Verdict]:
    """One verdict per run the gate applies to; a gate that matches no run is a usage error.

    `confident`: where an interval exists for the gate's figure, the verdict is the
    interval's (fail only when all of it misses the threshold, "inconclusive" when it straddles).
    """
    runs = result.select(gate.temperature, gate.concurrency, gate.request_rate)
    if not runs:
        raise GateUsageError(f"{gate.label}: no measured run matches (runs: {', '.join(r.label for r in result.runs)})")
    check_runs = KINDS[gate.kind].check_runs
    if check_runs is not None:
        check_runs(gate, runs)
    return [_verdict(gate, run, test, confident) for run in runs]


def _verdict(gate: Gate, run: RunResult, test: str, confident: bool) -> Verdict:
    kind = KINDS[gate.kind]
    value = kind.measured(gate, run) if run.valid else None
    outcome = "pass" if value is not None and passes(gate, value, run) else "fail"
    interval, basis = gate_interval(gate, run) if confident and run.valid else (None, None)
    if interval is not None:
        outcome = confident_outcome(gate, interval)
        if not run.windows_resolve and kind.timed:
            outcome = "inconclusive"  # within-window spread only: window-to-window noise could flip it
    return Verdict(
        test=test, gate=gate.label, run=run.label, threshold=gate.threshold, measured=value, passed=outcome == "pass",
        message="" if outcome == "pass" else _message(gate, run, value, interval, outcome, basis), outcome=outcome,
        interval=interval, interval_basis=basis if interval is not None else None, config_name=run.config_name,
        condition=run.condition,
    )


def _message(gate: Gate, run: RunResult, value: float | None, interval: tuple[float, float] | None,
             outcome: str, basis: str | None) -> str:
    kind = KINDS[gate.kind]
    if kind.p_value_when_sampled:
        if run.temperature > 0:
            return explain_lossless(gate.label, gate.alpha or 0.01, run)
        return explain_greedy(gate.label, gate.threshold, run, value)
    relation = "inconclusive against" if outcome == "inconclusive" else "above" if kind.at_most else "below"
    return explain(gate.label, gate.threshold, run, value, relation, interval, basis)


def gate_interval(gate: Gate, run: RunResult) -> tuple[tuple[float, float] | None, str | None]:
    """The 95% interval around the figure the gate reads, and what it was computed from; none for
    the lossless checks, which have their own test."""
    read = KINDS[gate.kind].interval
    found, basis = read(gate, run) if read is not None else (None, None)
    return (None, None) if found is None else ((found[0], found[1]), basis)


def confident_outcome(gate: Gate, interval: tuple[float, float]) -> str:
    """Pass or fail only when the whole interval is on one side of the threshold."""
    low, high = interval
    if KINDS[gate.kind].at_most:
        return "pass" if high <= gate.threshold else "fail" if low > gate.threshold else "inconclusive"
    return "pass" if low >= gate.threshold else "fail" if high < gate.threshold else "inconclusive"


def gates_from_marks(marks: Iterable[Any], defaults: GatesSection | None) -> list[Gate]:
    """Every gate marker on an item (closest first, as pytest's iter_markers yields them)."""
    return [parse_gate(mark.name, tuple(mark.args), dict(mark.kwargs), defaults) for mark in marks if mark.name in KINDS]
