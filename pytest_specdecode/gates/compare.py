"""`--spec-save NAME` and `--spec-compare [NAME]`: a session's results stored by name, and what fell
since a stored run, as one more verdict of each gated test.

A comparison is judged as `history.compare_runs` judges it (a two-sample interval of each drop at
level 1 - `sequential.ALPHA`): it fails only when a drop's whole interval is past its limit, passes
only when every figure's whole interval is within, and is inconclusive otherwise, including when
no stored run matches the config or one of its conditions (a missing match never passes). Only a
run the user named that was never saved is a usage error (`check_compare_target`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config.spec import GatesSection
from ..results import ConfigResult, Verdict
from ..results.schema import BaselineError
from .history import Check, Comparison, HistoryStore, compare_runs, nothing_stored


@dataclass(frozen=True)
class CompareTarget:
    """`--spec-compare`'s argument and the store it reads: "latest", or a name saved with --spec-save."""

    store: HistoryStore
    name: str


def save_runs(store: HistoryStore, name: str | None, results: list[ConfigResult]) -> list[Path]:
    """Each config's result as NAME.<config>.json; nothing without a name (--spec-save)."""
    if not name:
        return []
    return [store.save(f"{name}.{result.config_name}", result) for result in results]


def check_compare_target(target: CompareTarget) -> None:
    """The saved run to compare with must exist before any engine starts, not at the first gate."""
    if target.name != "latest" and not target.store.has_run(target.name):
        raise BaselineError(f"{target.store.folder}: no saved run named {target.name!r} (--spec-save {target.name} stores one)")


def compare(target: CompareTarget, result: ConfigResult, defaults: GatesSection) -> tuple[str, Comparison]:
    """The stored run compared with (by default the latest of this config from this machine) and
    the comparison; a stored run that does not match is an inconclusive comparison, not an error."""
    store = target.store
    limits = defaults.max_acceptance_drop, defaults.max_speedup_drop
    if target.name == "latest":
        found = store.latest(result.config_name, result.environment)
        if found is None:
            env = result.environment
            return "latest", nothing_stored(
                f"config {result.config_name!r} on this machine ({env.device}, vLLM {env.vllm}) in {store.folder}"
            )
        name, previous = found
        return name, compare_runs(result, previous, *limits, previous_name=name)
    name = f"{target.name}.{result.config_name}"
    previous = store.load_config(target.name, result.config_name)
    if previous is None:
        if not store.has_run(target.name):
            raise BaselineError(f"{store.folder}: no saved run named {target.name!r}")
        return name, nothing_stored(f"config {result.config_name!r} in saved run {target.name!r} ({store.path(name)})")
    return name, compare_runs(result, previous, *limits, previous_name=name)


def regression_verdict(target: CompareTarget, test: str, result: ConfigResult, defaults: GatesSection) -> Verdict:
    """What fell since the stored run, as one verdict for the config: its outcome the worst of its
    checks, its figures (measured drop, interval, level, n, threshold) those of the check that
    decides it, its message every check's line (current and stored value, the drop, its interval
    and level, the limit)."""
    name, comparison = compare(target, result, defaults)
    return _config_verdict(test, name, comparison, result, defaults)


def _config_verdict(test: str, name: str, comparison: Comparison, result: ConfigResult, defaults: GatesSection) -> Verdict:
    decisive = comparison.decisive if comparison.not_comparable is None else None
    gate = f"no_regression(vs {name})"
    if decisive is None:
        message = "\n".join(comparison.messages) or f"inconclusive: {result.config_name}: no runs to compare with {name}"
        return Verdict(
            test=test, gate=gate, run=result.config_name, threshold=defaults.max_acceptance_drop, measured=None,
            passed=False, message=message, outcome="inconclusive", config_name=result.config_name,
        )
    outcome = comparison.outcome
    return Verdict(
        test=test, gate=gate, run=result.config_name, threshold=decisive.limit, measured=decisive.drop,
        passed=outcome == "pass", message="\n".join(comparison.messages), outcome=outcome,
        interval=decisive.interval, level=decisive.level, n=decisive.n, interval_basis=_basis(decisive),
        config_name=result.config_name,
    )


def _basis(check: Check) -> str | None:
    if check.basis is None:
        return None
    unit = "points of acceptance" if check.figure == "acceptance" else f"fraction of {check.figure} lost"
    return f"{check.figure} drop ({unit}): {check.basis}"
