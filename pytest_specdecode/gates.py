"""Gates: thresholds on a measured comparison, from markers or from assertion helpers.

Like pytest's `skipping.py`: each marker is parsed by a small pure function into a frozen `Gate`
(a user's mistake becomes a `GateUsageError` naming the marker), and `judge` turns a gate and a
result into `Verdict`s. The markers and the `assert_*` helpers share this one implementation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from .config import GatesSection
from .markers import GATE_MARKERS, MARKER_HELP
from .results import LATENCY_METRICS, ConfigResult, RunResult

SPEEDUP_METRICS = ("throughput", "tpot")
#: Gates on timed figures: their confident verdicts need the spread between windows.
TIMED_GATES = frozenset({"min_speedup", "max_p99_regression"})
ACCEPTANCE_PERCENTILES = (10, 50, 90)
_RUN_SELECTORS = frozenset({"temperature", "concurrency", "request_rate"})
OPTIONS = {
    "min_acceptance": _RUN_SELECTORS | {"position", "percentile"},
    "min_speedup": _RUN_SELECTORS | {"metric"},
    "max_p99_regression": _RUN_SELECTORS | {"metric"},
    "lossless": _RUN_SELECTORS | {"alpha"},
}

class GateUsageError(ValueError):
    """A marker or helper called with arguments that cannot be a gate."""


class NoThreshold(GateUsageError):
    """A gate without a threshold of its own and no config to take one from: with no config at all
    the test is skipped (it measures nothing), with a config it is the user's mistake."""


class GateFailure(AssertionError):
    """A gate missed: the message holds the measured value, the threshold and advice."""


@dataclass(frozen=True)
class Gate:
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


@dataclass(frozen=True)
class Verdict:
    test: str
    gate: str
    run: str
    threshold: float
    measured: float | None
    passed: bool
    message: str = field(default="", compare=False)
    outcome: str = "pass"  # "pass", "fail", or (confident verdicts only) "inconclusive"
    interval: tuple[float, float] | None = None
    interval_basis: str | None = field(default=None, compare=False)  # confident verdicts: what decided them

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_gate(kind: str, args: tuple, kwargs: dict[str, Any], defaults: GatesSection | None = None) -> Gate:
    """A marker's arguments as a Gate; the threshold may come from the config's [gates]."""
    default = {
        "min_acceptance": defaults and defaults.min_acceptance,
        "min_speedup": defaults and defaults.min_speedup,
        "max_p99_regression": defaults and defaults.max_p99_regression,
        "lossless": (defaults and defaults.lossless_min_match) or 1.0,
    }[kind]
    kwargs = dict(kwargs)
    if kind == "lossless" and "min_match" in kwargs:
        args = (kwargs.pop("min_match"), *args)
    if len(args) > 1:
        raise GateUsageError(f"{kind}: takes one positional threshold, got {len(args)}; {MARKER_HELP[kind]}")
    threshold = args[0] if args else default
    if threshold is None:
        raise NoThreshold(f"{kind}: no threshold given and none in the config's [gates]; {MARKER_HELP[kind]}")
    unknown = set(kwargs) - OPTIONS[kind]
    if unknown:
        raise GateUsageError(f"{kind}: unexpected argument {sorted(unknown)[0]!r}; {MARKER_HELP[kind]}")
    options = _checked_options(kind, kwargs)
    if kind == "lossless":
        options["alpha"] = _number(kind, "alpha", kwargs.get("alpha", (defaults and defaults.lossless_alpha) or 0.01))
        if not 0 < options["alpha"] < 1:
            raise GateUsageError(f"{kind}: alpha is a false-alarm rate within (0, 1), got {options['alpha']:g}")
    gate = Gate(kind=kind, threshold=_number(kind, "threshold", threshold), **options)
    _check_range(gate)
    return gate


def _number(kind: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise GateUsageError(f"{kind}: {name} must be a number, got {value!r}")
    return float(value)


def _checked_options(kind: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if kwargs.get("temperature") is not None:
        options["temperature"] = _number(kind, "temperature", kwargs["temperature"])
        if options["temperature"] < 0:
            raise GateUsageError(f"{kind}: temperature must be >= 0")
    if kwargs.get("position") is not None:
        position = kwargs["position"]
        if not isinstance(position, int) or isinstance(position, bool) or position < 0:
            raise GateUsageError(f"{kind}: position is a 0-based draft position (int >= 0), got {position!r}")
        options["position"] = position
    if kwargs.get("percentile") is not None:
        if kwargs["percentile"] not in ACCEPTANCE_PERCENTILES:
            raise GateUsageError(f"{kind}: percentile must be one of {ACCEPTANCE_PERCENTILES}, got {kwargs['percentile']!r}")
        options["percentile"] = int(kwargs["percentile"])
    if "metric" in kwargs:
        choices = SPEEDUP_METRICS if kind == "min_speedup" else LATENCY_METRICS
        if kwargs["metric"] not in choices:
            raise GateUsageError(f"{kind}: metric must be one of {', '.join(choices)}, got {kwargs['metric']!r}")
        options["metric"] = kwargs["metric"]
    elif kind in ("min_speedup", "max_p99_regression"):
        options["metric"] = "throughput" if kind == "min_speedup" else "e2e"
    if kwargs.get("concurrency") is not None:
        options["concurrency"] = int(_number(kind, "concurrency", kwargs["concurrency"]))
    if kwargs.get("request_rate") is not None:
        options["request_rate"] = _number(kind, "request_rate", kwargs["request_rate"])
    return options


def _check_range(gate: Gate) -> None:
    x = gate.threshold
    if gate.kind in ("min_acceptance", "lossless") and not 0 <= x <= 1:
        raise GateUsageError(f"{gate.kind}: threshold must be within [0, 1], got {x:g}")
    if gate.kind == "min_speedup" and not x > 0:
        raise GateUsageError(f"{gate.kind}: threshold must be > 0, got {x:g}")
    if gate.kind == "max_p99_regression" and not x >= 0:
        raise GateUsageError(f"{gate.kind}: threshold must be >= 0 (0.10 allows 10% slower), got {x:g}")


def measured_value(gate: Gate, run: RunResult) -> float | None:
    """The one figure a gate compares against its threshold."""
    if gate.kind == "min_acceptance":
        if gate.percentile is not None:
            return run.per_request_acceptance.percentile(f"p{gate.percentile}")
        if gate.position is not None:
            positions = run.per_position_acceptance
            return positions[gate.position] if gate.position < len(positions) else None
        return run.acceptance_rate
    if gate.kind == "min_speedup":
        return run.speedup_of("tpot" if gate.metric == "tpot" else "throughput")
    if gate.kind == "max_p99_regression":
        return run.p99_regression[gate.metric or "e2e"]
    if run.temperature > 0:
        check = run.lossless_check
        return check.p_value if check is not None and check.verdict(gate.alpha) in ("lossless", "not lossless") else None
    return run.outputs_match


def passes(gate: Gate, value: float, run: RunResult | None = None) -> bool:
    if gate.kind == "lossless" and run is not None and run.temperature > 0:
        return value >= (gate.alpha or 0.01)  # the p-value: "same distribution" is not rejected
    return value <= gate.threshold if gate.kind == "max_p99_regression" else value >= gate.threshold


def judge(gate: Gate, result: ConfigResult, test: str = "", confident: bool = False) -> list[Verdict]:
    """One verdict per run the gate applies to; a gate that matches no run is a usage error.

    `confident`: where an interval exists for the gate's figure, the verdict is the
    interval's (fail only when all of it misses the threshold, "inconclusive" when it straddles).
    """
    runs = result.select(gate.temperature, gate.concurrency, gate.request_rate)
    if not runs:
        raise GateUsageError(f"{gate.label}: no measured run matches (runs: {', '.join(r.label for r in result.runs)})")
    _check_speedup_defined(gate, runs)
    return [_verdict(gate, run, test, confident) for run in runs]


def _check_speedup_defined(gate: Gate, runs: list[RunResult]) -> None:
    """A throughput gate on a paced level would judge a speedup of about 1 whatever the engines do
    (`RunResult.speedup`), so it is the marker that is wrong, not the config."""
    if gate.kind != "min_speedup" or gate.metric != "throughput":
        return
    rates = [run.request_rate for run in runs if run.request_rate is not None]
    paced = next((rate for rate in rates if math.isfinite(rate)), None)
    if paced is not None:
        raise GateUsageError(
            f"{gate.label}: throughput speedup is not defined at rate={paced:g} (a paced window's length is set "
            "by the arrivals); use metric='tpot' or a concurrency level"
        )


def _verdict(gate: Gate, run: RunResult, test: str, confident: bool) -> Verdict:
    value = measured_value(gate, run) if run.valid else None
    outcome = "pass" if value is not None and passes(gate, value, run) else "fail"
    interval, basis = gate_interval(gate, run) if confident and run.valid else (None, None)
    if interval is not None:
        outcome = confident_outcome(gate, interval)
        if not run.windows_resolve and gate.kind in TIMED_GATES:
            outcome = "inconclusive"  # within-window spread only: window-to-window noise could flip it
    message = "" if outcome == "pass" else explain(gate, run, value, interval, outcome, basis)
    return Verdict(test, gate.label, run.label, gate.threshold, value, outcome == "pass", message, outcome, interval,
                   basis if interval is not None else None)


def gate_interval(gate: Gate, run: RunResult) -> tuple[tuple[float, float] | None, str | None]:
    """The 95% interval around the figure `measured_value` reads, and what it was computed from.

    Per-position and per-request-percentile acceptance and the lossless checks have none here: the
    former are counter shares or already describe the spread, the latter have their own test.
    """
    found: list[float] | None = None
    basis: str | None = run.interval_basis
    if gate.kind == "min_speedup":
        found = run.tpot_speedup_ci if gate.metric == "tpot" else run.speedup_ci
    elif gate.kind == "max_p99_regression":
        found = run.p99_regression_ci.get(gate.metric or "e2e")
    elif gate.kind == "min_acceptance" and gate.position is None and gate.percentile is None:
        found, basis = run.acceptance_rate_ci, "requests (bootstrap, centred on vLLM's counters)"
    return (None, None) if found is None else ((found[0], found[1]), basis)


def confident_outcome(gate: Gate, interval: tuple[float, float]) -> str:
    """Pass or fail only when the whole interval is on one side of the threshold."""
    low, high = interval
    if gate.kind == "max_p99_regression":
        return "pass" if high <= gate.threshold else "fail" if low > gate.threshold else "inconclusive"
    return "pass" if low >= gate.threshold else "fail" if high < gate.threshold else "inconclusive"


def explain(
    gate: Gate, run: RunResult, value: float | None, interval: tuple[float, float] | None = None,
    outcome: str = "fail", basis: str | None = None,
) -> str:
    """The failure message: what was measured, against what, and what the tuning rules suggest."""
    if not run.valid:
        return f"{gate.label} at {run.label}: invalid measurement: {run.invalid_reason}"
    if gate.kind == "lossless" and run.temperature > 0:
        return explain_lossless(gate, run)
    if value is None:
        return f"{gate.label} at {run.label}: not measured (no samples for this figure)"
    relation = "above" if gate.kind == "max_p99_regression" else "below"
    if outcome == "inconclusive":
        relation = "inconclusive against"
    spread = f" (95% interval {interval[0]:.3f}..{interval[1]:.3f})" if interval else ""
    lines = [f"{gate.label} at {run.label}: measured {value:.3f}{spread}, {relation} threshold {gate.threshold:g}"]
    if basis:
        lines.append(f"  interval from {basis}")
    lines.append(per_position_table(run))
    lines.extend(advice(run))
    return "\n".join(line for line in lines if line)


def explain_lossless(gate: Gate, run: RunResult) -> str:
    """A sampled run's distribution check: both sides' likelihoods, the test, and outputs side by side."""
    check = run.lossless_check
    if check is None:
        return f"{gate.label} at {run.label}: not measured ([run] lossless_check is off)"
    verdict = check.verdict(gate.alpha)
    if verdict == "not measured":
        return f"{gate.label} at {run.label}: not measured: {check.not_measured}"
    if verdict == "not enough requests":
        return (f"{gate.label} at {run.label}: not enough requests: {check.n_pairs} pairs, the check needs at "
                f"least {check.min_pairs} (raise num_prompts)")
    low, high = check.mean_difference_ci or (float("nan"), float("nan"))
    lines = [
        f"{gate.label} at {run.label}: not lossless at T={run.temperature:g}: spec outputs have mean "
        f"log-likelihood {check.spec_mean_logprob:.2f} vs vanilla {check.vanilla_mean_logprob:.2f} per token "
        f"(p = {check.p_value:.2g} < alpha {gate.alpha:g}, {check.n_pairs} requests each, {check.distinct_samples} "
        f"distinct pairs; difference {check.mean_difference:+.2f}, 95% interval {low:+.2f}..{high:+.2f})",
        "  the speculative engine does not sample from the target's distribution: suspect its sampler or verifier, "
        "not the draft",
    ]
    pairs = sorted(zip(run.spec.samples, run.vanilla.samples),
                   key=lambda pair: (pair[0].target_logprob or 0.0) - (pair[1].target_logprob or 0.0))
    for spec_sample, vanilla_sample in pairs[:3]:
        lines.append(f"  spec:    {_snippet(spec_sample.output_text)}")
        lines.append(f"  vanilla: {_snippet(vanilla_sample.output_text)}")
    return "\n".join(lines)


def _snippet(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[: width - 1] + "…")


def per_position_table(run: RunResult) -> str:
    positions = run.per_position_acceptance
    if not positions:
        return ""
    head = "  position:   " + " ".join(f"{i:>5d}" for i in range(len(positions)))
    body = "  acceptance: " + " ".join(f"{p:>5.2f}" for p in positions)
    speedup = "" if run.speedup is None else f", speedup {run.speedup:.2f}x"  # None at a paced request rate
    summary = (
        f"  acceptance rate {run.acceptance_rate:.3f}, mean acceptance length {run.mean_acceptance_length:.2f}{speedup}"
        if run.acceptance_rate is not None and run.mean_acceptance_length is not None
        else ""
    )
    return "\n".join(line for line in (head, body, summary) if line)


def advice(run: RunResult) -> list[str]:
    """The tuning rules of vLLM's speculation-metrics guide, applied to this run."""
    tips = []
    rate = run.acceptance_rate
    k = run.num_speculative_tokens
    cut = next((i for i, p in enumerate(run.per_position_acceptance) if p < 0.5), None)
    if rate is not None and rate < 0.5:
        tips.append(f"  advice: acceptance < 50%: lower num_speculative_tokens (now {k}) or try another method")
    if cut is not None and cut < k:
        tips.append(
            f"  advice: per-position acceptance falls below 0.5 at position {cut}: "
            f"num_speculative_tokens = {max(cut, 1)} would stop drafting tokens that are mostly rejected"
        )
    if rate is not None and rate > 0.8:
        tips.append(f"  advice: acceptance > 80%: a larger num_speculative_tokens (now {k}) may gain more")
    if run.temperature > 0:
        tips.append(f"  note: sampling at T={run.temperature:g} lowers acceptance; compare with the T=0 run")
    return tips


def check(gate: Gate, result: ConfigResult, test: str = "") -> list[Verdict]:
    """Judge, then raise `GateFailure` listing every missed run."""
    __tracebackhide__ = True
    verdicts = judge(gate, result, test)
    missed = [v.message for v in verdicts if v.outcome == "fail"]
    if missed:
        raise GateFailure("\n".join(missed))
    return verdicts


def _helper(kind: str, result: ConfigResult, threshold: float | None, **options: Any) -> list[Verdict]:
    __tracebackhide__ = True
    args = () if threshold is None else (threshold,)
    return check(parse_gate(kind, args, {k: v for k, v in options.items() if v is not None}), result)


def assert_min_acceptance(result: ConfigResult, threshold: float, *, temperature: float | None = None,
                          position: int | None = None, percentile: int | None = None,
                          concurrency: int | None = None, request_rate: float | None = None) -> list[Verdict]:
    """Fail the test when acceptance is below `threshold` in any matching run."""
    __tracebackhide__ = True
    return _helper("min_acceptance", result, threshold, temperature=temperature, position=position,
                   percentile=percentile, concurrency=concurrency, request_rate=request_rate)


def assert_min_speedup(result: ConfigResult, threshold: float, *, metric: str = "throughput",
                       temperature: float | None = None, concurrency: int | None = None,
                       request_rate: float | None = None) -> list[Verdict]:
    """Fail the test when spec is not `threshold` times faster than vanilla in any matching run."""
    __tracebackhide__ = True
    return _helper("min_speedup", result, threshold, metric=metric, temperature=temperature,
                   concurrency=concurrency, request_rate=request_rate)


def assert_max_p99_regression(result: ConfigResult, threshold: float, *, metric: str = "e2e",
                              temperature: float | None = None, concurrency: int | None = None,
                              request_rate: float | None = None) -> list[Verdict]:
    """Fail the test when spec's P99 latency is more than `threshold` (a fraction) above vanilla's."""
    __tracebackhide__ = True
    return _helper("max_p99_regression", result, threshold, metric=metric, temperature=temperature,
                   concurrency=concurrency, request_rate=request_rate)


def assert_lossless(result: ConfigResult, min_match: float = 1.0, *, alpha: float = 0.01,
                    temperature: float | None = None) -> list[Verdict]:
    """Fail the test when speculation changed the outputs: at T=0 fewer than `min_match` of them equal
    vanilla's token for token; at T>0 the distribution check rejects at false-alarm rate `alpha`."""
    __tracebackhide__ = True
    return _helper("lossless", result, min_match, alpha=alpha, temperature=temperature)


def gates_from_marks(marks: Iterable[Any], defaults: GatesSection | None) -> list[Gate]:
    """Every gate marker on an item (closest first, as pytest's iter_markers yields them)."""
    return [parse_gate(mark.name, tuple(mark.args), dict(mark.kwargs), defaults) for mark in marks if mark.name in GATE_MARKERS]
