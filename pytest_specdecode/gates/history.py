"""Named runs kept as plain JSON, and a run compared with an earlier one on the same machine.

A fixed threshold lets a slow drift through: acceptance 0.74 one month and 0.58 the next both pass
`min_acceptance(0.5)`. Keeping whole `ConfigResult`s under a name lets a later session compare
each run with the same config, mode, temperature and load measured before (`compare_runs`), as
pytest-benchmark's `--benchmark-compare` does.

Both runs are noisy, so the comparison is a two-sample one: the drop (acceptance points, or the
fraction of speedup lost) gets an interval at level 1 - `sequential.ALPHA` from both runs' data,
and it fails only when the whole interval lies past the limit, passes only when the whole interval
lies within it, and is inconclusive otherwise, or when there is nothing to compare with (no
stored run, another machine, a condition the stored run lacks, too few windows). It never passes
on nothing.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..config.sequential import ALPHA
from ..results import Condition, ConfigResult, EngineFigures, Environment, RunResult
from ..results.schema import SCHEMA_VERSION, BaselineError, Model, read_document, validated, write_document
from ..results.uncertainty import MIN_WINDOWS

RUN_KIND = "specdecode-run"
_RUN_NAME = re.compile(r"[A-Za-z0-9._-]+")
#: Slack for comparing differences of floats against a drop limit, so 0.80 -> 0.75 is not > 0.05.
_EPSILON = 1e-9

Outcome = Literal["pass", "fail", "inconclusive"]
_ORDER: dict[str, int] = {"fail": 0, "inconclusive": 1, "pass": 2}


class RunFile(Model):
    """A named run: a whole `ConfigResult`, kept to compare a later run with."""

    schema_version: int = SCHEMA_VERSION
    kind: str = RUN_KIND
    name: str
    created_at: float
    result: ConfigResult


class HistoryStore:
    """Named `ConfigResult`s under `root/runs`, one JSON file per name.

    `--spec-save NAME` stores each config as `NAME.<config>.json`. A config name may hold dots, so
    the file name alone does not say which config it holds (`run.x.ngram.json` is run `run.x` of
    config `ngram`, or run `run` of config `x.ngram`): every lookup by config reads the
    `config_name` the file records and keeps only exact matches."""

    def __init__(self, root: Path) -> None:
        self.folder = Path(root) / "runs"

    def path(self, name: str) -> Path:
        if not _RUN_NAME.fullmatch(name):
            raise BaselineError(f"{self.folder}: run name {name!r} may hold only letters, digits, '.', '_' and '-'")
        return self.folder / f"{name}.json"

    def save(self, name: str, result: ConfigResult) -> Path:
        return write_document(self.path(name), RunFile(name=name, created_at=time.time(), result=result))

    def load(self, name: str) -> ConfigResult:
        path = self.path(name)
        if not path.exists():
            raise BaselineError(f"{path}: no stored run named {name!r}")
        return _load_run(path)[1]

    def load_config(self, run: str, config_name: str) -> ConfigResult | None:
        """Run `run`'s result for exactly this config (`run.<config>.json` recording this config
        name), or None when the run holds no such config."""
        path = self.path(f"{run}.{config_name}")
        if not path.exists():
            return None
        result = _load_run(path)[1]
        return result if result.config_name == config_name else None

    def has_run(self, run: str) -> bool:
        """Whether `--spec-save run` stored anything: a file `run.<config>.json` for the config it
        records (a file whose config cannot be read counts: loading it will say what is wrong)."""
        if not self.folder.is_dir():
            return False
        for path in self.folder.glob(f"{_glob(run)}.*.json"):
            config_name = _stored_config_name(path)
            if config_name is None or path.stem == f"{run}.{config_name}":
                return True
        return False

    def latest(
        self, config_name: str | None = None, environment: Environment | None = None
    ) -> tuple[str, ConfigResult] | None:
        """The most recently saved run of exactly `config_name` (any config when None), measured on
        the same machine as `environment` when given; its file name (without .json) and result.
        A broken file in the folder is an error, not skipped, since skipping it would silently
        compare against an older run."""
        if not self.folder.is_dir():
            return None
        pattern = "*.json" if config_name is None else f"*.{_glob(config_name)}.json"
        stored = [(_load_run(path), path.stem) for path in self.folder.glob(pattern)]
        if config_name is not None:
            stored = [item for item in stored if item[0][1].config_name == config_name]
        if environment is not None:
            stored = [item for item in stored if same_machine(environment, item[0][1].environment)]
        if not stored:
            return None
        (_, result), name = max(stored, key=lambda item: (item[0][0], item[1]))
        return name, result


def _glob(name: str) -> str:
    """A run or config name as a literal glob: names hold no glob characters, but say so."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def _stored_config_name(path: Path) -> str | None:
    """The config name a run file records, read without validating the rest (None when unreadable)."""
    try:
        name = json.loads(path.read_text(encoding="utf-8"))["result"]["config_name"]
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        return None
    return name if isinstance(name, str) else None


def _load_run(path: Path) -> tuple[float, ConfigResult]:
    document = read_document(path, RUN_KIND)
    if document.get("name") != path.stem:
        raise BaselineError(f"{path}: run name {document.get('name')!r} does not match the file name")
    return document["created_at"], validated(path, ConfigResult, document.get("result"), "result")


@dataclass(frozen=True)
class Check:
    """One figure of one run against the stored run's: `drop` is in points (acceptance) or a
    fraction of the stored figure (speedup), `interval` is the drop's, `limit` the most it may be."""

    figure: str
    label: str
    outcome: Outcome
    message: str
    limit: float
    level: float
    condition: Condition | None = None
    current: float | None = None
    previous: float | None = None
    drop: float | None = None
    interval: tuple[float, float] | None = None
    n: int | None = None
    basis: str | None = None


@dataclass(frozen=True)
class Comparison:
    """A run against a stored one: one `Check` per figure and condition, or why the two cannot be
    compared at all (`not_comparable`). Fails when a check fails; passes only when there is at
    least one check and every one passes; inconclusive otherwise."""

    checks: list[Check] = field(default_factory=list)
    not_comparable: str | None = None

    @property
    def outcome(self) -> Outcome:
        if any(check.outcome == "fail" for check in self.checks):
            return "fail"
        if self.not_comparable or not self.checks or any(check.outcome == "inconclusive" for check in self.checks):
            return "inconclusive"
        return "pass"

    @property
    def decisive(self) -> Check | None:
        """The check that decides the outcome (the first failing one, else the first inconclusive one)."""
        return min(self.checks, key=lambda check: _ORDER[check.outcome], default=None)

    @property
    def messages(self) -> list[str]:
        """Failures first, then the inconclusive, then the passes: every check says its figures."""
        ordered = sorted(self.checks, key=lambda check: _ORDER[check.outcome])
        return ([self.not_comparable] if self.not_comparable else []) + [check.message for check in ordered]


def nothing_stored(what: str) -> Comparison:
    """No stored run to compare with: inconclusive, never a pass."""
    return Comparison(not_comparable=f"inconclusive: no stored run matches {what}: nothing compared")


def same_machine(current: Environment, previous: Environment) -> bool:
    """Stored runs are keyed by environment, as pytest-benchmark keys them by machine: a speedup
    measured on another device or vLLM says nothing about a drop on this one."""
    return (current.device, current.vllm, current.torch) == (previous.device, previous.vllm, previous.torch)


def compare_runs(
    current: ConfigResult, previous: ConfigResult, max_acceptance_drop: float, max_speedup_drop: float,
    previous_name: str = "the stored run", alpha: float = ALPHA,
) -> Comparison:
    """Each run against the previous run at the same config, mode, temperature and load.

    Per matched run, two checks at level 1 - alpha (`_acceptance_check`, `_speedup_check`): a
    check fails when the whole interval of the drop lies past the limit (acceptance more than
    `max_acceptance_drop` points below, speedup more than the fraction `max_speedup_drop` below
    the stored figure), passes when the whole interval lies within it, else is inconclusive. A
    run with no stored match is inconclusive ("no stored run matches ..."); runs from another
    machine are not compared (inconclusive)."""
    if not same_machine(current.environment, previous.environment):
        was, now = previous.environment, current.environment
        return Comparison(not_comparable=(
            f"inconclusive: {current.config_name}: {previous_name} was measured on {was.device} (vLLM {was.vllm}), "
            f"this one on {now.device} (vLLM {now.vllm}): not compared"
        ))
    earlier = {_run_key(run): run for run in previous.runs}
    level = 1.0 - alpha
    checks: list[Check] = []
    for run in current.runs:
        before = earlier.get(_run_key(run))
        if before is None:
            checks.append(Check(
                figure="run", label=run.label, outcome="inconclusive", limit=max_acceptance_drop, level=level,
                condition=run.condition,
                message=f"inconclusive: no stored run matches {run.label} ({run.mode}) in {previous_name} "
                        f"(it holds {_labels(previous)}): not compared",
            ))
        elif not run.valid:
            checks.append(Check(
                figure="run", label=run.label, outcome="fail", limit=max_acceptance_drop, level=level,
                condition=run.condition,
                message=f"{run.label}: invalid run, not compared with {previous_name}: {run.invalid_reason}",
            ))
        elif not before.valid:
            checks.append(Check(
                figure="run", label=run.label, outcome="inconclusive", limit=max_acceptance_drop, level=level,
                condition=run.condition,
                message=f"inconclusive: {run.label}: the run in {previous_name} was invalid "
                        f"({before.invalid_reason}), nothing to compare with",
            ))
        else:
            checks.append(_acceptance_check(run, before, max_acceptance_drop, previous_name, level))
            speedup = _speedup_check(run, before, max_speedup_drop, previous_name, level)
            if speedup is not None:
                checks.append(speedup)
    return Comparison(checks)


def _labels(result: ConfigResult) -> str:
    return ", ".join(f"{run.label} ({run.mode})" for run in result.runs) or "no runs"


def _run_key(run: RunResult) -> tuple[str, str, float, int | None, float | None]:
    return run.config_name, run.mode, round(run.temperature, 9), run.concurrency, run.request_rate


# -- the two-sample intervals -------------------------------------------------------------------


@dataclass(frozen=True)
class _Estimate:
    """One run's estimate, the variance of the estimate as parts (variance, degrees of freedom)
    for Welch-Satterthwaite, and how many units it rests on."""

    value: float
    parts: tuple[tuple[float, int], ...]
    n: int


def _welch(difference: float, current: _Estimate, previous: _Estimate, level: float) -> tuple[float, float]:
    """A t interval for `difference` of two independent estimates, degrees of freedom by
    Welch-Satterthwaite over every variance part; a point when neither run varies at all."""
    from scipy import stats

    parts = current.parts + previous.parts
    variance = sum(v for v, _ in parts)
    if variance <= 0:
        return difference, difference
    df = variance**2 / sum(v**2 / d for v, d in parts if d > 0 and v > 0)
    half = float(stats.t.ppf(0.5 + level / 2, df)) * math.sqrt(variance)
    return difference - half, difference + half


def _verdict(low: float, high: float, limit: float) -> Outcome:
    """Fail when the whole interval of the drop is past the limit, pass when all of it is within."""
    if low > limit + _EPSILON:
        return "fail"
    return "pass" if high <= limit + _EPSILON else "inconclusive"


_SAYS = {
    "fail": "fail, the whole interval is past the limit",
    "pass": "pass, the whole interval is within the limit",
    "inconclusive": "inconclusive, the interval straddles the limit",
}


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _contributions(run: RunResult) -> list[float] | None:
    """Each prompt's linearised contribution to the run's acceptance, all its windows' requests
    together (`results.intervals.accepted_steps_by_prompt`: at T=0 the windows repeat the same
    outputs, so a prompt is the unit, not a request): the spread of accepted tokens per decode step
    over prompts (a ratio of sums, R = sum(a_i) / sum(s_i); prompt i contributes
    (a_i - R s_i) / mean(s)), scaled onto vLLM's counter figure as the run's own interval is."""
    from ..results.intervals import accepted_steps_by_prompt

    accepted, steps = accepted_steps_by_prompt(run.spec.samples)
    if steps.size < 2 or run.acceptance_rate is None or accepted.sum() <= 0:
        return None
    ratio = accepted.sum() / steps.sum()
    return [float(c) for c in (accepted - ratio * steps) / steps.mean() * run.acceptance_rate / ratio]


def acceptance_interval(
    run: RunResult, before: RunResult, drop: float, level: float
) -> tuple[float, float, int, str] | None:
    """The drop's interval, its units and what it rests on. Both runs measure the same prompts, so
    the comparison is paired by prompt where their prompt counts agree: a t interval over the
    per-prompt differences of contributions (at T=0 an unchanged config repeats its greedy outputs,
    and the difference is exactly 0). Otherwise Welch over both runs' prompts. The linearised
    variance rather than both runs' stored intervals in quadrature: those are bootstrap intervals,
    possibly skewed, at another level."""
    from scipy import stats

    c_now, c_then = _contributions(run), _contributions(before)
    if c_now is None or c_then is None:
        return None
    if len(c_now) != len(c_then):
        low, high = _welch(drop, _spread(c_now), _spread(c_then), level)
        return low, high, len(c_now), f"{len(c_now)} + {len(c_then)} prompts, unpaired (Welch t, scaled to vLLM's counters)"
    differences = [b - a for a, b in zip(c_now, c_then)]
    se = math.sqrt(_variance(differences) / len(differences))
    half = float(stats.t.ppf(0.5 + level / 2, len(differences) - 1)) * se if se else 0.0
    basis = f"{len(differences)} prompts paired (t on per-prompt differences, scaled to vLLM's counters)"
    return drop - half, drop + half, len(differences), basis


def _spread(contributions: list[float]) -> _Estimate:
    """A run's acceptance variance from its prompts' contributions, as `_welch` takes it."""
    n = len(contributions)
    return _Estimate(0.0, ((_variance(contributions) / n, n - 1),), n)


def _acceptance_check(run: RunResult, before: RunResult, limit: float, previous_name: str, level: float) -> Check:
    head = f"acceptance at {run.label}"
    base = dict(figure="acceptance", label=run.label, limit=limit, level=level, condition=run.condition,
                current=run.acceptance_rate, previous=before.acceptance_rate)
    if run.acceptance_rate is None or before.acceptance_rate is None:
        return Check(outcome="inconclusive", **base, message=f"inconclusive: {head}: no acceptance rate in "
                     f"{'this run' if run.acceptance_rate is None else previous_name} (no drafts counted)")
    drop = before.acceptance_rate - run.acceptance_rate
    figures = (f"{head}: {before.acceptance_rate:.3f} in {previous_name}, {run.acceptance_rate:.3f} now, "
               f"drop {drop:+.3f} points")
    found = acceptance_interval(run, before, drop, level)
    if found is None:
        return Check(outcome="inconclusive", drop=drop, **base, message=(
            f"inconclusive: {figures}, no interval (a run with fewer than 2 prompts with streamed steps to "
            f"spread it over); limit {limit:g} points"
        ))
    low, high, n, basis = found
    outcome = _verdict(low, high, limit)
    return Check(outcome=outcome, drop=drop, interval=(low, high), n=n, basis=basis, **base, message=(
        f"{figures} ({_percent(level)} interval {low:+.3f} to {high:+.3f} from {basis}); "
        f"limit {limit:g} points: {_SAYS[outcome]}"
    ))


def speedup_estimate(run: RunResult, metric: Literal["throughput", "tpot"]) -> _Estimate | int:
    """The run's mean log speedup over its windows and that mean's variance, or the number of
    windows it has when that is fewer than `MIN_WINDOWS` a side.

    Throughput: a window's rate is its output tokens over its duration; TPOT: the inverse of its
    requests' mean TPOT. Window pairs measured side by side (vanilla measured in this session, one
    window per spec window) give one log(spec / vanilla) per pair, each pair carrying both levels of
    noise; against a stored vanilla baseline the sides are unpaired and each side's spread is its
    own part of the variance (when both runs read one baseline, its part is counted twice:
    conservative)."""
    spec, vanilla = _window_values(run.spec, metric), _window_values(run.vanilla, metric)
    fewest = min(len(spec), len(vanilla))
    if fewest < MIN_WINDOWS:
        return fewest
    if run.pairing is None and len(spec) == len(vanilla):
        logs = [math.log(s) - math.log(v) for s, v in zip(spec, vanilla)]
        return _Estimate(sum(logs) / len(logs), ((_variance(logs) / len(logs), len(logs) - 1),), len(logs))
    log_spec, log_vanilla = [math.log(s) for s in spec], [math.log(v) for v in vanilla]
    return _Estimate(
        sum(log_spec) / len(log_spec) - sum(log_vanilla) / len(log_vanilla),
        ((_variance(log_spec) / len(spec), len(spec) - 1), (_variance(log_vanilla) / len(vanilla), len(vanilla) - 1)),
        len(spec),
    )


def _window_values(figures: EngineFigures, metric: str) -> list[float]:
    if metric == "throughput":
        values = [w.output_tokens / w.duration_s for w in figures.windows if w.duration_s > 0]
    else:
        per_window: dict[int, list[float]] = {}
        for sample in figures.samples:
            if sample.tpot_s is not None:
                per_window.setdefault(sample.repeat, []).append(sample.tpot_s)
        values = [len(tpots) / sum(tpots) for _, tpots in sorted(per_window.items()) if sum(tpots) > 0]
    return [value for value in values if value > 0 and math.isfinite(value)]


def _speedup_check(run: RunResult, before: RunResult, limit: float, previous_name: str, level: float) -> Check | None:
    """The ratio of the two runs' speedups, as the fraction lost: its interval is Welch's t on the
    difference of the runs' mean log speedups over windows (the point is the drop of the figures
    the report shows). Throughput speedup, or TPOT speedup at paced request rates where there is no
    throughput speedup; None when neither run has either."""
    metric: Literal["throughput", "tpot"] = "throughput"
    if run.speedup is None or before.speedup is None:
        metric = "tpot"
    new, old = run.speedup_of(metric), before.speedup_of(metric)
    name = "speedup" if metric == "throughput" else "TPOT speedup"
    head = f"{name} at {run.label}"
    base = dict(figure=name, label=run.label, limit=limit, level=level, condition=run.condition, current=new,
                previous=old)
    if new is None and old is None:
        return None
    if new is None or old is None or old <= 0:
        return Check(outcome="inconclusive", **base, message=f"inconclusive: {head}: none in "
                     f"{'this run' if new is None else previous_name}: not compared")
    drop = 1.0 - new / old
    figures = f"{head}: {old:.2f}x in {previous_name}, {new:.2f}x now, drop {drop:+.1%}"
    now, then = speedup_estimate(run, metric), speedup_estimate(before, metric)
    if not isinstance(now, _Estimate) or not isinstance(then, _Estimate):
        have_now, have_then = (found if isinstance(found, int) else found.n for found in (now, then))
        counts = f"{have_now} window(s) now, {have_then} in {previous_name}"
        return Check(outcome="inconclusive", drop=drop, n=None, **base, message=(
            f"inconclusive: {figures}, no interval ({counts}; both runs need >= {MIN_WINDOWS} windows a side, "
            f"[run] repeats >= {MIN_WINDOWS}, for the spread between windows); limit {_percent(limit)}"
        ))
    low_log, high_log = _welch(now.value - then.value, now, then, level)
    low, high = 1.0 - math.exp(high_log), 1.0 - math.exp(low_log)
    outcome = _verdict(low, high, limit)
    basis = f"{now.n} + {then.n} windows (Welch t on the runs' mean log speedups)"
    return Check(outcome=outcome, drop=drop, interval=(low, high), n=now.n + then.n, basis=basis, **base, message=(
        f"{figures} ({_percent(level)} interval {low:+.1%} to {high:+.1%} from {basis}); "
        f"limit {_percent(limit)}: {_SAYS[outcome]}"
        + _more_windows(outcome, now, then, low, high, limit)
    ))


def _more_windows(outcome: str, now: _Estimate, then: _Estimate, low: float, high: float, limit: float) -> str:
    """For a straddling interval: about how many windows a run would clear the limit, if the spread held."""
    if outcome != "inconclusive":
        return ""
    centre, half = (low + high) / 2, (high - low) / 2
    gap = abs(centre - limit)
    if gap <= 0 or half <= 0:
        return ""
    needed = math.ceil(max(now.n, then.n) * (half / gap) ** 2)
    if needed >= 1000:
        return ""
    return f" (about {needed} windows a run, [run] repeats, would resolve it if the spread holds)"


def _variance(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / (len(values) - 1)
