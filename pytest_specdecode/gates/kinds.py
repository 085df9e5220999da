"""Gates: thresholds on a measured comparison, from markers or from assertion helpers.

Like pytest's `skipping.py`: each marker is parsed by a small pure function into a frozen `Gate`
(a user's mistake becomes a `GateUsageError` naming the marker), and `judge` turns a gate and a
result into `Verdict`s. What each marker means is its row of `KINDS`. The markers and the
`assert_*` helpers (`assertions`) share this one implementation.

Every verdict has three outcomes: "pass" when the figure's interval (at the run's
`interval_level`) lies wholly on the passing side of the threshold, "fail" when wholly on the
failing side, "inconclusive" otherwise, and also when there is no interval to decide with (too few
windows, too few requests for a P99, an invalid run). Only greedy output matching is judged by its
point: it counts equal outputs exactly, with no sampling spread to bound.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from ..config.sequential import ALPHA, MIN_WINDOWS
from ..config.spec import GatesSection
from ..results import LATENCY_METRICS, LOSSLESS_STATISTIC, ConfigResult, RunResult, SpeedupMetric, Verdict
from .explain import explain, explain_greedy, explain_lossless, explain_unresolved
from .markers import MARKER_HELP

SPEEDUP_METRICS = ("throughput", "tpot")
ACCEPTANCE_PERCENTILES = (10, 50, 90)
_RUN_SELECTORS = frozenset({"temperature", "concurrency", "request_rate", "k", "bucket"})


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
    k: int | None = None  # in a K sweep, one draft length
    bucket: float | None = None  # in a mixed-temperature batch, one temperature's requests

    @property
    def label(self) -> str:
        extras = [f"{name}={value}" for name, value in asdict(self).items() if name not in ("kind", "threshold") and value is not None]
        return f"{self.kind}({', '.join([f'{self.threshold:g}', *extras])})"

    def undecided(self, result: ConfigResult) -> list[Verdict]:
        """Its inconclusive verdicts on `result` that more windows of their condition could resolve
        (`more_windows_help`): what sequential sampling measures on for. None for a gate that
        cannot be judged as written: the test that carries it reports that."""
        try:
            verdicts = judge(self, result)
        except GateUsageError:
            return []
        return [verdict for verdict in verdicts if verdict.outcome == "inconclusive" and more_windows_help(self, verdict)]


#: A gate's interval as the result model holds it, what it was computed from, and how many units.
FoundInterval = tuple[list[float] | None, str | None, int | None]


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
    timed: bool = False  # its interval needs the spread between windows
    metrics: tuple[str, ...] = ()  # choices of `metric`, the first the default
    threshold_keyword: str | None = None  # the threshold may be passed by this name too
    outputs: bool = False  # lossless: T=0 counts equal outputs, T>0 reads the run's LosslessCheck
    says: bool = False  # judges what the model says (acceptance, outputs): noise with random weights
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
    """Every acceptance figure's interval comes from resampling the requests (the unit whose
    drafts share a prompt), scaled onto vLLM's counters where the figure is a counter share."""
    prompts = run.spec.num_prompts
    if gate.position is not None:
        return run.position_acceptance_ci(gate.position), f"{prompts} prompts (bootstrap, centred on vLLM's counters)", prompts
    if gate.percentile is not None:
        return (run.per_request_acceptance_ci(gate.percentile), "requests (bootstrap of the percentile)",
                run.per_request_acceptance.count)
    return run.acceptance_rate_ci, f"{prompts} prompts (bootstrap, centred on vLLM's counters)", prompts


def _speedup_metric(gate: Gate) -> SpeedupMetric:
    return "tpot" if gate.metric == "tpot" else "throughput"


def _speedup(gate: Gate, run: RunResult) -> float | None:
    return run.speedup_of(_speedup_metric(gate))


def _speedup_interval(gate: Gate, run: RunResult) -> FoundInterval:
    return run.speedup_ci_of(_speedup_metric(gate)), run.interval_basis, len(run.spec.windows)


def _p99_regression(gate: Gate, run: RunResult) -> float | None:
    return run.p99_regression[gate.metric or "e2e"]


def _p99_regression_interval(gate: Gate, run: RunResult) -> FoundInterval:
    return run.p99_regression_ci.get(gate.metric or "e2e"), run.interval_basis, len(run.spec.windows)


def _lossless(gate: Gate, run: RunResult) -> float | None:
    """Greedy: the share of outputs equal to vanilla's or parting at a near-tie. Sampled: spec -
    vanilla target log-likelihood per token, which the check judges against its margin."""
    if run.temperature == 0:
        return run.outputs_match_up_to_ties
    check = run.lossless_check
    return None if check is None else check.mean_difference


def _kv_capacity_loss(gate: Gate, run: RunResult) -> float | None:
    return None if run.kv_cache_ratio is None else 1.0 - run.kv_cache_ratio


def _exact_interval(gate: Gate, run: RunResult) -> FoundInterval:
    """A figure vLLM allocates rather than samples: its interval is the point."""
    value = KINDS[gate.kind].measured(gate, run)
    return (None if value is None else [value, value]), "vLLM's KV-cache block allocation (a count: no sampling noise)", 1


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


RANDOM_WEIGHTS_REASON = ('not meaningful with random weights (load_format = "dummy"): what the models say is noise; '
                         "gate it on real weights")


KINDS: dict[str, GateKind] = {kind.name: kind for kind in (
    GateKind(
        name="min_acceptance", options=_RUN_SELECTORS | {"position", "percentile"},
        default=lambda d: d.min_acceptance if d else None, in_range=_unit_interval, range_text="within [0, 1]",
        measured=_acceptance, interval=_acceptance_interval, says=True,
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
        name="lossless", options=_RUN_SELECTORS,
        default=lambda d: d.lossless_min_match if d is not None and d.lossless_min_match is not None else 1.0,
        in_range=_unit_interval, range_text="within [0, 1]", measured=_lossless, threshold_keyword="min_match",
        outputs=True, says=True,
    ),
    GateKind(
        name="max_kv_capacity_loss", options=_RUN_SELECTORS,
        default=lambda d: d.max_kv_capacity_loss if d else None, in_range=_unit_interval, range_text="within [0, 1]",
        measured=_kv_capacity_loss, at_most=True, interval=_exact_interval,
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
    if "alpha" in kwargs:
        raise GateUsageError(
            f"{kind.name}: alpha is not a gate argument: every gate is judged at one false-alarm rate, "
            f"{ALPHA:g} (spent over the sequential looks), and the T>0 check's margin is [gates] lossless_margin"
        )
    unknown = set(kwargs) - kind.options
    if unknown:
        raise GateUsageError(f"{kind.name}: unexpected argument {sorted(unknown)[0]!r}; {kind.help}")
    options = _checked_options(kind, kwargs)
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
    if kwargs.get("bucket") is not None:
        per_request = kind.name == "max_p99_regression" or (kind.name == "min_acceptance" and "percentile" in options)
        if not per_request:
            raise GateUsageError(
                f"{name}: bucket= judges one temperature's requests in a mixed batch, so only per-request figures: "
                "max_p99_regression, or min_acceptance with percentile= (counters and throughput are the batch's)"
            )
        options["bucket"] = _number(name, "bucket", kwargs["bucket"])
    if kwargs.get("k") is not None:
        k = kwargs["k"]
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise GateUsageError(f"{name}: k is one num_speculative_tokens of a K sweep (int >= 1), got {k!r}")
        options["k"] = k
    return options


def judge(gate: Gate, result: ConfigResult, test: str = "") -> list[Verdict]:
    """One verdict per run the gate applies to; a gate that matches no run is a usage error."""
    runs = result.select(gate.temperature, gate.concurrency, gate.request_rate, gate.k)
    if gate.bucket is not None:
        runs = [run.bucket_view(gate.bucket) for run in runs
                if run.temperature_mix is not None and any(b.temperature == gate.bucket for b in run.temperature_buckets)]
    if not runs:
        raise GateUsageError(f"{gate.label}: no measured run matches (runs: {', '.join(r.label for r in result.runs)})")
    check_runs = KINDS[gate.kind].check_runs
    if check_runs is not None:
        check_runs(gate, runs)
    return [_verdict(gate, run, test) for run in runs]


@dataclass(frozen=True)
class _Evidence:
    """What one verdict rests on: the figure, its interval and basis, the outcome and why."""

    value: float | None
    outcome: str
    interval: tuple[float, float] | None = None
    basis: str | None = None
    n: int | None = None
    threshold: float | None = None  # where the gate's own threshold is not what was compared (T>0 lossless)
    reason: str | None = None  # why there is no interval to decide with


def _verdict(gate: Gate, run: RunResult, test: str) -> Verdict:
    evidence = _evidence(gate, run)
    threshold = gate.threshold if evidence.threshold is None else evidence.threshold
    return Verdict(
        test=test, gate=gate.label, run=run.label, threshold=threshold, measured=evidence.value,
        passed=evidence.outcome == "pass", outcome=evidence.outcome,
        message="" if evidence.outcome == "pass" else _message(gate, run, evidence),
        interval=evidence.interval, level=run.interval_level if evidence.interval is not None else None,
        n=evidence.n, interval_basis=evidence.basis, config_name=run.config_name, condition=run.condition,
    )


def _evidence(gate: Gate, run: RunResult) -> _Evidence:
    kind = KINDS[gate.kind]
    if not run.valid:
        return _Evidence(None, "inconclusive", reason=f"invalid measurement: {run.invalid_reason}")
    value = kind.measured(gate, run)
    if kind.says and run.random_weights:
        return _Evidence(value, "inconclusive", reason=RANDOM_WEIGHTS_REASON)
    if kind.outputs and run.temperature > 0:
        return _sampled_lossless(run, value)
    if value is None:
        return _Evidence(None, "inconclusive", reason="not measured (no samples for this figure)")
    if kind.outputs:  # greedy: an exact count of equal outputs, no spread to bound
        return _Evidence(value, "pass" if value >= gate.threshold else "fail", n=run.spec.num_requests)
    if kind.name == "max_p99_regression" and not run.p99_judged:
        return _Evidence(value, "inconclusive", reason=(
            f"P99 not judged: {min(run.spec.num_requests, run.vanilla.num_requests)} requests a side, fewer than "
            f"[run] min_p99_requests = {run.min_p99_requests} (its P99 would be its slowest request)"
        ))
    if kind.timed and not run.windows_resolve:
        return _Evidence(value, "inconclusive", basis=run.interval_basis, n=len(run.spec.windows), reason=(
            f"{min(len(run.spec.windows), len(run.vanilla.windows))} window(s) a side: timed verdicts need "
            f"[run] repeats >= {MIN_WINDOWS}"
        ))
    found, basis, n = kind.interval(gate, run) if kind.interval is not None else (None, None, None)
    if found is None:
        return _Evidence(value, "inconclusive", n=n, reason="no interval for this figure")
    interval = (found[0], found[1])
    return _Evidence(value, interval_outcome(gate, interval), interval, basis, n)


def _sampled_lossless(run: RunResult, value: float | None) -> _Evidence:
    check = run.lossless_check
    if check is None:
        return _Evidence(None, "inconclusive", reason="not measured ([run] lossless_check is off)")
    outcome = {"lossless": "pass", "not lossless": "fail"}.get(check.verdict, "inconclusive")
    interval = tuple(check.mean_difference_ci) if check.mean_difference_ci is not None else None
    return _Evidence(value, outcome, interval, LOSSLESS_STATISTIC, check.n_pairs, threshold=check.margin,  # type: ignore[arg-type]
                     reason=None if check.verdict != "not measured" else check.summary())


def _message(gate: Gate, run: RunResult, evidence: _Evidence) -> str:
    kind = KINDS[gate.kind]
    if kind.outputs and run.valid and not run.random_weights:
        if run.temperature > 0:
            return explain_lossless(gate.label, run)
        if evidence.value is not None:
            return explain_greedy(gate.label, gate.threshold, run, evidence.value)
    if evidence.reason is not None:
        return explain_unresolved(gate.label, gate.threshold, run, evidence.value, evidence.reason)
    relation = "inconclusive against" if evidence.outcome == "inconclusive" else "above" if kind.at_most else "below"
    return explain(gate.label, gate.threshold, run, evidence.value, relation, evidence.interval, evidence.basis,
                   _windows_to_resolve(gate, run, evidence) if evidence.outcome == "inconclusive" else None)


def _windows_to_resolve(gate: Gate, run: RunResult, evidence: _Evidence) -> str | None:
    """About how many windows (or requests) would put the interval on one side, if the figure
    stays where it is: the interval narrows as one over the square root of the units."""
    if evidence.interval is None or evidence.value is None or not evidence.n:
        return None
    low, high = evidence.interval
    centre, threshold = evidence.value, gate.threshold
    if KINDS[gate.kind].timed:  # ratios, whose intervals are symmetric in logs: speedup, and 1 + a P99 regression
        shift = 1.0 if KINDS[gate.kind].at_most else 0.0
        low, high, centre, threshold = (math.log(shift + x) for x in (low, high, centre, threshold))
    room = abs(centre - threshold)
    half = (high - low) / 2
    unit = "windows a side" if KINDS[gate.kind].timed else "prompts" if gate.percentile is None else "requests"
    if room == 0:
        return f"the figure sits on the threshold: more {unit} narrow the interval, not move it"
    needed = math.ceil(evidence.n * (half / room) ** 2)
    more = "[run] max_repeats" if KINDS[gate.kind].timed else "[workload] num_prompts"
    return f"about {needed} {unit} would resolve it at this spread ({more})"


def more_windows_help(gate: Gate, verdict: Verdict) -> bool:
    """Whether measuring more windows of its condition could resolve an inconclusive verdict. Not
    when it has no figure (invalid run, check switched off, a position not drafted), nor for a
    greedy figure over outputs: at T=0 every window repeats the same outputs, so acceptance and
    output matching learn nothing from another window (more prompts would)."""
    if verdict.measured is None or verdict.condition is None:
        return False
    greedy_outputs = gate.kind in ("min_acceptance", "lossless") and verdict.condition.temperature == 0
    return not greedy_outputs


def interval_outcome(gate: Gate, interval: tuple[float, float]) -> str:
    """Pass or fail only when the whole interval is on one side of the threshold."""
    low, high = interval
    if KINDS[gate.kind].at_most:
        return "pass" if high <= gate.threshold else "fail" if low > gate.threshold else "inconclusive"
    return "pass" if low >= gate.threshold else "fail" if high < gate.threshold else "inconclusive"


#: vLLM's rejection-sampling methods that do not keep the target's distribution: "synthetic"
#: accepts drafts at a set rate whatever the target says (a benchmarking aid). "standard" and
#: "block" (block verification) are lossless.
LOSSY_REJECTION_METHODS = frozenset({"synthetic"})


def check_gates_fit(gates: Iterable[Gate], speculative: dict[str, Any]) -> None:
    """Gates that cannot hold by construction of the config are usage errors before any engine starts."""
    method = speculative.get("rejection_sample_method")
    if method in LOSSY_REJECTION_METHODS and any(gate.kind == "lossless" for gate in gates):
        raise GateUsageError(
            f"lossless: [speculative] rejection_sample_method = {method!r} accepts drafts at a set rate whatever "
            "the target says, so its outputs are not the target's distribution; gate it without lossless, or use "
            "'standard' or 'block'"
        )


def gates_from_marks(marks: Iterable[Any], defaults: GatesSection | None) -> list[Gate]:
    """Every gate marker on an item (closest first, as pytest's iter_markers yields them)."""
    return [parse_gate(mark.name, tuple(mark.args), dict(mark.kwargs), defaults) for mark in marks if mark.name in KINDS]
