"""Showing results: the terminal table, the JSON report and the Markdown step summary.

Every figure is read from the result model; nothing is computed here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .gates import Verdict
from .results import MIN_P99_REQUESTS, SCHEMA_VERSION, SWEEP_NOISE, BreakEven, ConfigResult, RunResult


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
    lines += [f"note {line}" for line in acceptance_notes(results)]
    for verdict in verdicts:
        if not verdict.passed:
            lines.append(f"{verdict.outcome.upper()} {verdict.test}: {verdict.gate} at {verdict.run}: measured {_fmt(verdict.measured)}")
    lines.append("TPOT column: speculative vs vanilla. E2E column: speculative.")
    return lines


def break_even_lines(results: Iterable[ConfigResult]) -> list[str]:
    return [
        f"{result.config_name} T={point.temperature:g}: {_paying(point)}; {_tail(point)}"
        for result in results
        for point in result.break_even
    ]


def _unit(point: BreakEven) -> str:
    return "c" if point.axis == "concurrency" else "rate"


def _paying(point: BreakEven) -> str:
    """The first level where speculation stops paying, and whether the sweep pays again after it."""
    unit, last, first = _unit(point), point.last_level_paying_before_it, point.first_level_not_paying
    name = "speedup" if point.metric == "throughput" else "TPOT speedup"
    if first is None and last is None:
        return f"no level has a {name}"
    if first is None:
        text = f"speculation pays at every level, up to {unit}={last:g}" + ("" if name == "speedup" else f" ({name})")
    else:
        interval = f", 95% interval {point.speedup_ci[0]:.2f}-{point.speedup_ci[1]:.2f}" if point.speedup_ci else ""
        figure = f"({name} {point.speedup_at_first_level_not_paying:.2f}x{interval})"
        text = (
            f"speculation stops paying at {unit}={first:g} {figure}, pays up to {unit}={last:g}"
            if last is not None
            else f"speculation does not pay even at {unit}={first:g} {figure}"
        )
    if point.pays_again_at:
        text += "; non-monotone sweep: pays again at " + ", ".join(f"{unit}={level:g}" for level in point.pays_again_at)
    elif not point.monotone:
        text += f"; non-monotone sweep: {name} rises by more than {SWEEP_NOISE:.0%} from one level to the next"
    return text


def _tail(point: BreakEven) -> str:
    unit, tolerance = _unit(point), f"{point.p99_tolerance * 100:g}%"
    parts = []
    if point.first_level_p99_regresses is not None:
        parts.append(f"E2E P99 regresses (> {tolerance}) from {unit}={point.first_level_p99_regresses:g}")
    elif not point.p99_not_judged:
        parts.append(f"E2E P99 within {tolerance} of vanilla's at every level")
    if point.p99_not_judged:
        levels = ", ".join(f"{unit}={level:g}" for level in point.p99_not_judged)
        parts.append(f"E2E P99 not judged at {levels} (fewer than {MIN_P99_REQUESTS} requests a side)")
    return "; ".join(parts)


def acceptance_notes(results: Iterable[ConfigResult]) -> list[str]:
    """Runs with per-request acceptance above 1, which only merged stream chunks can give: said, not clipped."""
    return [
        f"{run.label}: {run.per_request_acceptance_over_one} of {run.per_request_acceptance.count} requests read "
        f"per-request acceptance above 1 (K={run.per_request_acceptance_k}): their stream chunks merged engine "
        "steps, so per-request figures read high"
        for result in results
        for run in result.runs
        if run.per_request_acceptance_over_one
    ]


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
    notes = acceptance_notes(results)
    if notes:
        lines += ["", "**Notes**", ""] + [f"- {line}" for line in notes]
    failed = [v for v in verdicts if not v.passed]
    if failed:
        lines += ["", "**Missed or inconclusive gates**", ""]
        lines += [f"- {v.outcome}: `{v.test}`: {v.gate} at {v.run}: measured {_fmt(v.measured)}" for v in failed]
    return "\n".join(lines) + "\n"
