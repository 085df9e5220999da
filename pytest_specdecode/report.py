"""Showing results: the terminal table, the JSON report and the Markdown step summary.

Every figure is read from the result model; nothing is computed here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .gates import Verdict
from .results import SCHEMA_VERSION, ConfigResult, RunResult


def _fmt(value: float | None, spec: str = ".3f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def _positions(run: RunResult) -> str:
    return " ".join(f"{p:.2f}" for p in run.per_position_acceptance) or "-"


COLUMNS = ("run", "accept", "mean len", "per-position", "speedup", "TPOT p50 ms", "E2E p50/p99 ms", "gates")


def table_rows(results: Iterable[ConfigResult], verdicts: list[Verdict]) -> list[tuple[str, ...]]:
    rows = []
    for result in results:
        for run in result.runs:
            mine = [v for v in verdicts if v.run == run.label]
            gates = f"{sum(v.passed for v in mine)}/{len(mine)} passed" if mine else "-"
            if not run.valid:
                rows.append((run.label, "INVALID", "-", run.invalid_reason or "", "-", "-", "-", gates))
                continue
            rows.append(
                (
                    run.label,
                    _fmt(run.acceptance_rate),
                    _fmt(run.mean_acceptance_length, ".2f"),
                    _positions(run),
                    _fmt(run.speedup, ".2f", "x"),
                    f"{_fmt(run.spec.tpot_ms.p50, '.1f')} vs {_fmt(run.vanilla.tpot_ms.p50, '.1f')}",
                    f"{_fmt(run.spec.e2e_ms.p50, '.0f')}/{_fmt(run.spec.e2e_ms.p99, '.0f')}",
                    gates,
                )
            )
    return rows


def terminal_lines(results: list[ConfigResult], verdicts: list[Verdict]) -> list[str]:
    rows = table_rows(results, verdicts)
    if not rows:
        return []
    widths = [max(len(str(row[i])) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [COLUMNS, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines += [f"break-even {line}" for line in break_even_lines(results)]
    for verdict in verdicts:
        if not verdict.passed:
            lines.append(f"{verdict.outcome.upper()} {verdict.test}: {verdict.gate} at {verdict.run}: measured {_fmt(verdict.measured)}")
    lines.append("TPOT column: speculative vs vanilla. E2E column: speculative.")
    return lines


def break_even_lines(results: Iterable[ConfigResult]) -> list[str]:
    lines = []
    for result in results:
        for point in result.break_even:
            unit = "c" if point.axis == "concurrency" else "rate"
            paying = "never" if point.highest_level_with_speedup is None else f"up to {unit}={point.highest_level_with_speedup:g}"
            tail = (
                "never" if point.first_level_p99_regresses is None else f"from {unit}={point.first_level_p99_regresses:g}"
            )
            lines.append(f"{result.config_name} T={point.temperature:g}: speedup >= 1 {paying}; E2E P99 regresses {tail}")
    return lines


def report_dict(
    results: list[ConfigResult], verdicts: list[Verdict], timing: dict[str, float] | None = None
) -> dict[str, Any]:
    environment = next((r.environment.model_dump() for r in results), {})
    without_ids = {"samples": {"__all__": {"output_token_ids"}}}  # tokens belong in baselines, not reports
    runs = [
        run.model_dump(mode="json", exclude={"spec": without_ids, "vanilla": without_ids})
        for result in results
        for run in result.runs
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "environment": environment,
        "runs": runs,
        "engine_start_s": {r.config_name: r.engine_start_s for r in results},
        "break_even": {r.config_name: [point.model_dump() for point in r.break_even] for r in results},
        "gates": [
            {k: v for k, v in verdict.as_dict().items() if k != "message"} for verdict in verdicts
        ],
        "timing_s": timing or {},
    }


def write_json(
    path: Path, results: list[ConfigResult], verdicts: list[Verdict], timing: dict[str, float] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report_dict(results, verdicts, timing), indent=2))


def markdown(results: list[ConfigResult], verdicts: list[Verdict]) -> str:
    rows = table_rows(results, verdicts)
    if not rows:
        return ""
    lines = ["## Speculative decoding gates", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in rows]
    even = break_even_lines(results)
    if even:
        lines += ["", "**Break-even**", ""] + [f"- {line}" for line in even]
    failed = [v for v in verdicts if not v.passed]
    if failed:
        lines += ["", "**Missed or inconclusive gates**", ""]
        lines += [f"- {v.outcome}: `{v.test}`: {v.gate} at {v.run}: measured {_fmt(v.measured)}" for v in failed]
    return "\n".join(lines) + "\n"
