"""`--spec-save NAME` and `--spec-compare [NAME]`: a session's results stored by name, and what fell
since a stored run, as one more verdict of each gated test."""

from __future__ import annotations

from pathlib import Path

from .baseline import BaselineError
from .config import GatesSection
from .history import HistoryStore, compare_runs
from .options import DEFAULT_BASELINE_DIR, Options
from .results import ConfigResult, Verdict


def history(options: Options) -> HistoryStore:
    return HistoryStore(options.history_dir or options.baseline_dir or Path(DEFAULT_BASELINE_DIR))


def save_runs(options: Options, results: list[ConfigResult]) -> list[Path]:
    """Each config's result as NAME.<config>.json; nothing without --spec-save."""
    if not options.save:
        return []
    return [history(options).save(f"{options.save}.{result.config_name}", result) for result in results]


def check_compare_target(options: Options) -> None:
    """The saved run to compare with must exist before any engine starts, not at the first gate."""
    name = options.compare
    if name and name != "latest":
        folder = history(options).folder
        if not any(folder.glob(f"{name}.*.json")):
            raise BaselineError(f"{folder}: no saved run named {name!r} (--spec-save {name} stores one)")


def regression_verdict(options: Options, test: str, result: ConfigResult, defaults: GatesSection) -> Verdict:
    """What fell since the stored run (by default the latest from this machine), as a verdict."""
    store = history(options)
    if options.compare == "latest":
        found = store.latest(f".{result.config_name}", result.environment)
        if found is None:
            raise BaselineError(
                f"{store.folder}: no stored run for {result.config_name} from this machine "
                f"({result.environment.device}, vLLM {result.environment.vllm}) to compare with"
            )
        name, previous = found
    else:
        name = f"{options.compare}.{result.config_name}"
        previous = store.load(name)
    comparison = compare_runs(result, previous, defaults.max_acceptance_drop, defaults.max_speedup_drop)
    outcome = comparison.outcome
    return Verdict(
        test=test, gate=f"no_regression(vs {name})", run=result.config_name, threshold=defaults.max_acceptance_drop,
        measured=None, passed=outcome == "pass", message="\n".join(comparison.messages), outcome=outcome,
    )
