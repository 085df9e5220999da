"""The `--spec-report` JSON file: every run as the result model holds it, and the gates' verdicts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field

from ..results import BreakEven, ConfigResult, Environment, Ranking, RunResult, Verdict, rank
from ..results.decision import Statement
from ..results.schema import SCHEMA_VERSION, Model, write_document


class Report(Model):
    """The `--spec-report` JSON: every run as the result model holds it, and what the gates made of it."""

    schema_version: int = SCHEMA_VERSION
    environment: Environment | dict = Field(default_factory=dict, description="the first measured config's; when "
                                            "none was measured, the installed one's (see artifacts.installed_environment)")
    runs: list[dict[str, Any]] = Field(description="each run as dumped, per-request token ids left out, "
                                       "with the lossless verdict (a method on the check, so not in the dump)")
    engine_start_s: dict[str, dict[str, float]]
    engine_start_phases: dict[str, dict[str, dict[str, float]]] = Field(
        default_factory=dict, description="per config and role, where each start went (ConfigResult.engine_start_phases)")
    break_even: dict[str, list[BreakEven]]
    decision: dict[str, list[Statement]] = Field(default_factory=dict, description="per config: where speculation "
                                                 "pays, where to leave it off, and why")
    ranking: list[Ranking] = Field(default_factory=list, description="per condition, the configs (and Ks) that "
                                   "share a target and workload, fastest first, neighbours compared")
    gates: list[Verdict]
    timing_s: dict[str, float] = Field(default_factory=dict)
    failed_configs: dict[str, str] = Field(default_factory=dict)


#: Per-request token ids belong in baselines, not reports; a verdict's message is the terminal's.
REPORT_EXCLUDES = {"gates": {"__all__": {"message"}}}


def build_report(
    results: list[ConfigResult], verdicts: list[Verdict], timing: dict[str, float] | None = None,
    failures: dict[str, str] | None = None, environment: Environment | None = None,
) -> Report:
    """`environment` stands in when no result carries one (nothing measured, or only failed configs)."""
    return Report(
        environment=next((r.environment for r in results), environment or {}),
        runs=[_run_dict(run) for result in results for run in result.runs],
        engine_start_s={r.config_name: r.engine_start_s for r in results},
        engine_start_phases={r.config_name: r.engine_start_phases for r in results if r.engine_start_phases},
        break_even={r.config_name: r.break_even for r in results},
        decision={r.config_name: r.decision for r in results},
        ranking=rank(run for result in results for run in result.runs),
        gates=verdicts,
        timing_s=timing or {},
        failed_configs=failures or {},
    )


def _run_dict(run: RunResult) -> dict[str, Any]:
    """The run as dumped (Python values: the report's one JSON policy applies when it is written)."""
    without_ids = {"samples": {"__all__": {"output_token_ids"}}}
    return run.model_dump(exclude={"spec": without_ids, "vanilla": without_ids})


def write_json(
    path: Path, results: list[ConfigResult], verdicts: list[Verdict], timing: dict[str, float] | None = None,
    failures: dict[str, str] | None = None, environment: Environment | None = None,
) -> None:
    report = build_report(results, verdicts, timing, failures, environment)
    write_document(path, report, indent=2, exclude=REPORT_EXCLUDES)
