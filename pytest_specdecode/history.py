"""Named runs kept as plain JSON, and a run compared with an earlier one on the same machine.

A fixed threshold lets a slow drift through: acceptance 0.74 one month and 0.58 the next both pass
`min_acceptance(0.5)`. Keeping whole `ConfigResult`s under a name lets a later session compare
each run with the same config, temperature and load measured before (`compare_runs`), as
pytest-benchmark's `--benchmark-compare` does; a drop counts only when its interval clears the limit.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from .results import ConfigResult, Environment, RunResult
from .schema import SCHEMA_VERSION, BaselineError, Model, read_document, validated, write_document

RUN_KIND = "specdecode-run"
_RUN_NAME = re.compile(r"[A-Za-z0-9._-]+")
#: Slack for comparing differences of floats against a drop limit, so 0.80 -> 0.75 is not > 0.05.
_EPSILON = 1e-9


class RunFile(Model):
    """A named run: a whole `ConfigResult`, kept to compare a later run with."""

    schema_version: int = SCHEMA_VERSION
    kind: str = RUN_KIND
    name: str
    created_at: float
    result: ConfigResult


class HistoryStore:
    """Named `ConfigResult`s under `root/runs`, one JSON file per name."""

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

    def latest(self, suffix: str = "", environment: Environment | None = None) -> tuple[str, ConfigResult] | None:
        """The most recently saved run whose name ends with `suffix` (measured on the same machine
        as `environment`, when given); a broken file in the folder is an error, not skipped, since
        skipping it would silently compare against an older run."""
        if not self.folder.is_dir():
            return None
        stored = [(_load_run(path), path.stem) for path in self.folder.glob(f"*{suffix}.json")]
        if environment is not None:
            stored = [item for item in stored if same_machine(environment, item[0][1].environment)]
        if not stored:
            return None
        (_, result), name = max(stored, key=lambda item: (item[0][0], item[1]))
        return name, result


def _load_run(path: Path) -> tuple[float, ConfigResult]:
    document = read_document(path, RUN_KIND)
    if document.get("name") != path.stem:
        raise BaselineError(f"{path}: run name {document.get('name')!r} does not match the file name")
    return document["created_at"], validated(path, ConfigResult, document.get("result"), "result")


@dataclass(frozen=True)
class Comparison:
    """A run against a stored one: drops beyond the limits (`drops`), drops whose interval does not
    clear the limit (`unsure`), or why the two cannot be compared at all (`not_comparable`)."""

    drops: list[str] = field(default_factory=list)
    unsure: list[str] = field(default_factory=list)
    not_comparable: str | None = None

    @property
    def outcome(self) -> str:
        if self.drops:
            return "fail"
        return "inconclusive" if self.unsure or self.not_comparable else "pass"

    @property
    def messages(self) -> list[str]:
        return self.drops + self.unsure + ([self.not_comparable] if self.not_comparable else [])


def same_machine(current: Environment, previous: Environment) -> bool:
    """Stored runs are keyed by environment, as pytest-benchmark keys them by machine: a speedup
    measured on another device or vLLM says nothing about a drop on this one."""
    return (current.device, current.vllm, current.torch) == (previous.device, previous.vllm, previous.torch)


def compare_runs(
    current: ConfigResult, previous: ConfigResult, max_acceptance_drop: float, max_speedup_drop: float
) -> Comparison:
    """Each run against the previous run at the same config, temperature and load.

    A drop is a regression only when the current run's 95% interval lies wholly past the limit
    (acceptance more than `max_acceptance_drop` points below, speedup more than the fraction
    `max_speedup_drop` below the stored figure); a point drop past the limit whose interval
    reaches back is `unsure`. Runs from another machine are not compared."""
    if not same_machine(current.environment, previous.environment):
        was, now = previous.environment, current.environment
        return Comparison(not_comparable=(
            f"{current.config_name}: the stored run was measured on {was.device} (vLLM {was.vllm}), this one on "
            f"{now.device} (vLLM {now.vllm}): not compared"
        ))
    earlier = {_run_key(run): run for run in previous.runs}
    drops: list[str] = []
    unsure: list[str] = []
    for run in current.runs:
        before = earlier.get(_run_key(run))
        if before is not None:
            _regressions(run, before, max_acceptance_drop, max_speedup_drop, drops, unsure)
    return Comparison(drops, unsure)


def _run_key(run: RunResult) -> tuple[str, float, int | None, float | None]:
    return run.config_name, round(run.temperature, 9), run.concurrency, run.request_rate


def _regressions(
    run: RunResult, before: RunResult, max_acceptance_drop: float, max_speedup_drop: float,
    drops: list[str], unsure: list[str],
) -> None:
    if not run.valid:
        drops.append(f"{run.label}: invalid run, not compared with the previous one: {run.invalid_reason}")
        return
    if not before.valid:
        unsure.append(f"{run.label}: previous run was invalid ({before.invalid_reason}), nothing to compare with")
        return
    old, new, ci = before.acceptance_rate, run.acceptance_rate, run.acceptance_rate_ci
    if old is not None and new is not None and old - new > max_acceptance_drop + _EPSILON:
        limit = old - max_acceptance_drop
        text = f"acceptance at {run.label} fell from {old:.2f} to {new:.2f} ({new - old:+.2f} > {max_acceptance_drop:g})"
        _judge(text, ci, limit, drops, unsure)
    old, new, ci = before.speedup, run.speedup, run.speedup_ci
    if old and new is not None and (old - new) / old > max_speedup_drop + _EPSILON:
        limit = old * (1 - max_speedup_drop)
        text = (f"speedup at {run.label} fell from {old:.2f}x to {new:.2f}x "
                f"({(new - old) / old:+.1%} > {max_speedup_drop * 100:g}%)")
        _judge(text, ci, limit, drops, unsure)


def _judge(text: str, interval: list[float] | None, limit: float, drops: list[str], unsure: list[str]) -> None:
    """A drop whose whole interval is below the limit is a regression; one whose interval reaches it is not sure."""
    if interval is None or interval[1] < limit:
        drops.append(text + ("" if interval is None else f", 95% interval up to {interval[1]:.2f} < {limit:.2f}"))
    else:
        unsure.append(text + f", but its 95% interval reaches {interval[1]:.2f} >= {limit:.2f}: not sure")
