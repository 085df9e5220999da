"""Showing results: the terminal table, the JSON report and the Markdown step summary.

Every figure is read from the result model; nothing is computed here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import Field

from .results import (
    MIN_P99_REQUESTS,
    SWEEP_NOISE,
    BaselineInfo,
    BreakEven,
    ConfigResult,
    Environment,
    RunResult,
    RunWarning,
    Verdict,
)
from .schema import SCHEMA_VERSION, Model, write_document


def _fmt(value: float | None, spec: str = ".3f", suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


#: Per-position columns shown in the table; the JSON keeps every position.
SHOWN_POSITIONS = 8


def _positions(run: RunResult) -> str:
    positions = run.per_position_acceptance
    shown = " ".join(f"{p:.2f}" for p in positions[:SHOWN_POSITIONS]) or "-"
    return shown + (f" … ({len(positions)} positions)" if len(positions) > SHOWN_POSITIONS else "")


COLUMNS = ("run", "accept", "mean len", "per-position", "speedup", "TPOT p50 ms", "E2E p50/p99 ms", "lossless", "gates")
#: Marks a throughput speedup whose two sides produced different amounts of output, explained once.
UNEQUAL_MARK = "*"
UNEQUAL_NOTE = "speedup over unequal output lengths (unequal work): the TPOT column compares per token"
TABLE_LEGEND = "TPOT column: speculative vs vanilla. E2E column: speculative."


def _unequal_speedup(run: RunResult) -> bool:
    """Only a shown speedup is marked: at a paced rate there is none, whatever the lengths."""
    return run.speedup is not None and "unequal lengths" in (run.speedup_basis or "")


def _speedup(run: RunResult) -> str:
    return _fmt(run.speedup, ".2f", "x") + (UNEQUAL_MARK if _unequal_speedup(run) else "")


def _lossless(run: RunResult) -> str:
    """T=0 is checked token for token (a share); T>0 only as a distribution, so a verdict with its p."""
    if run.temperature == 0:
        return "-" if run.outputs_match is None else f"match {run.outputs_match:.2f}"
    check = run.lossless_check
    if check is None:
        return "not measured"
    verdict = check.verdict()
    if verdict == "lossless":
        return f"lossless p={check.p_value:.2g}"
    if verdict == "not lossless":
        return f"NOT LOSSLESS p={check.p_value:.2g}"
    if verdict == "not enough requests":
        return f"too few ({check.n_pairs}<{check.min_pairs})"
    return verdict


def table_rows(results: Iterable[ConfigResult], verdicts: list[Verdict]) -> list[tuple[str, ...]]:
    rows = []
    for result in results:
        for run in result.runs:
            mine = [v for v in verdicts if v.of(run.config_name, run.condition)]
            gates = outcome_counts(mine, compact=True) if mine else "-"
            if not run.valid:
                rows.append((run.label, "INVALID", "-", run.invalid_reason or "", "-", "-", "-", "-", gates))
                continue
            rows.append(
                (
                    run.label,
                    _fmt(run.acceptance_rate),
                    _fmt(run.mean_acceptance_length, ".2f"),
                    _positions(run),
                    _speedup(run),
                    f"{_fmt(run.spec.tpot_ms.p50, '.1f')} vs {_fmt(run.vanilla.tpot_ms.p50, '.1f')}",
                    f"{_fmt(run.spec.e2e_ms.p50, '.0f')}/{_fmt(run.spec.e2e_ms.p99, '.0f')}",
                    _lossless(run),
                    gates,
                )
            )
    return rows


def outcome_counts(verdicts: Iterable[Verdict], compact: bool = False) -> str:
    """"3 passed, 1 inconclusive, 1 failed" ("3/5 passed, 1 inconclusive" in a table cell): an
    inconclusive verdict is neither a pass nor a failure, so it is counted apart."""
    outcomes = [verdict.outcome for verdict in verdicts]
    passed, inconclusive = outcomes.count("pass"), outcomes.count("inconclusive")
    failed = len(outcomes) - passed - inconclusive
    if compact:
        return f"{passed}/{len(outcomes)} passed" + (f", {inconclusive} inconclusive" if inconclusive else "")
    counts = ((passed, "passed"), (inconclusive, "inconclusive"), (failed, "failed"))
    return ", ".join(f"{count} {word}" for count, word in counts if count)


def scheduled_ttft_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Paced levels: TTFT as users waited for it, from the scheduled send time, beside TTFT from
    the actual send; far apart, the client sent late (coordinated omission) and the latter hides it."""
    lines = []
    for run in (run for result in results for run in result.runs if run.spec.scheduled_ttft_ms.count):
        spec, vanilla = run.spec, run.vanilla
        lines.append(
            f"{run.label}: TTFT p99 from schedule {_fmt(spec.scheduled_ttft_ms.p99, '.0f')} vs "
            f"{_fmt(vanilla.scheduled_ttft_ms.p99, '.0f')} ms (from send {_fmt(spec.ttft_ms.p99, '.0f')} vs "
            f"{_fmt(vanilla.ttft_ms.p99, '.0f')} ms), spec vs vanilla"
        )
    return lines


def interval_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Every run's 95% intervals and what they rest on, in point mode too: a point figure read
    without its interval looks more certain than it is."""
    lines = []
    for run in (run for result in results for run in result.runs if run.valid):
        parts = [
            ("acceptance", run.acceptance_rate_ci, ".3f"),
            ("speedup", run.speedup_ci, ".2f"),
            ("TPOT speedup", run.tpot_speedup_ci, ".2f"),
            ("E2E P99 regression", run.p99_regression_ci.get("e2e"), "+.2f"),
        ]
        shown = [f"{name} {ci[0]:{spec}}..{ci[1]:{spec}}" for name, ci, spec in parts if ci is not None]
        if shown:
            lines.append(f"{run.label}: " + ", ".join(shown) + f" [{run.interval_basis}]")
    return lines


def terminal_lines(results: list[ConfigResult], verdicts: list[Verdict]) -> list[str]:
    rows = table_rows(results, verdicts)
    if not rows:
        return []
    widths = [max(len(str(row[i])) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [COLUMNS, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append(TABLE_LEGEND)
    if _any_unequal(results):
        lines.append(f"{UNEQUAL_MARK} {UNEQUAL_NOTE}")
    lines += [f"vanilla {line}" for line in vanilla_lines(results)]
    lines += [f"95% intervals {line}" for line in interval_lines(results)]
    lines += [f"scheduled {line}" for line in scheduled_ttft_lines(results)]
    lines += [f"lossless {line}" for line in lossless_lines(results)]
    lines += [f"warnings {line}" for line in warning_lines(results, whole=False)]
    lines += [f"break-even {line}" for line in break_even_lines(results)]
    lines += [f"note {line}" for line in acceptance_notes(results)]
    lines += [f"engines {line}" for line in engine_lines(results)]
    for verdict in verdicts:
        if not verdict.passed:
            lines.append(f"{verdict.outcome.upper()} {verdict.test}: {verdict.gate} at {verdict.run}: measured {_fmt(verdict.measured)}")
    if verdicts:
        lines.append(f"gates: {outcome_counts(verdicts)}")
    return lines


def _any_unequal(results: Iterable[ConfigResult]) -> bool:
    return any(run.valid and _unequal_speedup(run) for result in results for run in result.runs)


def vanilla_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Per config, where vanilla's figures came from: a stored baseline is only as good as its age
    and fingerprint, so both are shown. One word when every run agrees, so a session that measured
    everything costs one short line."""
    lines = []
    for result in results:
        sources = [(run.condition.label, _vanilla_source(run.baseline)) for run in result.runs]
        if len({source for _, source in sources}) == 1:
            lines.append(f"{result.config_name}: {sources[0][1]}")
        elif sources:
            lines.append(f"{result.config_name}: " + "; ".join(f"{cell} {source}" for cell, source in sources))
    return lines


def _vanilla_source(baseline: BaselineInfo | None) -> str:
    if baseline is None:
        return "not recorded"
    if baseline.source == "measured":
        return "measured"
    return f"cached {_age(baseline.age_s)} ago ({baseline.fingerprint[:6]})"


def _age(seconds: float) -> str:
    """Whole units, rounded down, so "3 d" never overstates how fresh a baseline is."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def lossless_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Sampled runs: what the lossless verdict rests on. A p-value alone hides a check over few
    distinct outputs, and the two likelihoods say which side drifted."""
    lines = []
    for run in (run for result in results for run in result.runs if run.temperature > 0):
        check = run.lossless_check
        if check is None:
            lines.append(f"{run.label}: not measured ([run] lossless_check is off)")
        elif check.not_measured is not None:
            lines.append(f"{run.label}: not measured: {check.not_measured}")
        else:
            lines.append(
                f"{run.label}: {check.n_pairs} pairs, {check.distinct_samples} distinct; target log-prob/token "
                f"spec {_fmt(check.spec_mean_logprob)} vs vanilla {_fmt(check.vanilla_mean_logprob)}; "
                f"p={_fmt(check.p_value, '.2g')}, alpha {check.alpha:g}"
            )
    return lines


def warning_lines(results: Iterable[ConfigResult], whole: bool) -> list[str]:
    """One line per run that has warnings. The terminal keeps each message's first clause (what
    was seen); the remedy after it is in the step summary and the JSON report."""
    return [
        f"{run.label}: " + ", ".join(f"{warning.code} ({_warning_text(warning, whole)})" for warning in run.warnings)
        for result in results
        for run in result.runs
        if run.warnings
    ]


def _warning_text(warning: RunWarning, whole: bool) -> str:
    head, colon, _ = warning.message.partition(": ")
    return warning.message if whole or not colon else f"{head}: ..."


def engine_lines(results: Iterable[ConfigResult]) -> list[str]:
    """How each config's engines ran, so an eager run is never read as a CUDA-graph run; configs
    whose runs recorded nothing (results from before these fields) are left out."""
    lines = []
    for result in results:
        seen: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for run in result.runs:
            started = (run.engine_args, run.speculative_config)
            if (run.engine_args or run.speculative_config) and started not in seen:
                seen.append(started)
        for engine_args, speculative in seen:
            eager = "" if "enforce_eager" in engine_args else "; enforce_eager unset: CUDA graphs (vLLM's default)"
            lines.append(f"{result.config_name}: engine {_compact(engine_args)} speculative {_compact(speculative)}{eager}")
    return lines


def _compact(value: Any) -> str:
    """JSON's words (true, null) without its quotes: short enough for one terminal line."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_compact(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_compact(item) for item in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


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


class Report(Model):
    """The `--spec-report` JSON: every run as the result model holds it, and what the gates made of it."""

    schema_version: int = SCHEMA_VERSION
    environment: Environment | dict = Field(default_factory=dict, description="the first config's; {} when none ran")
    runs: list[dict[str, Any]] = Field(description="each run as dumped, per-request token ids left out, "
                                       "with the lossless verdict (a method on the check, so not in the dump)")
    engine_start_s: dict[str, dict[str, float]]
    break_even: dict[str, list[BreakEven]]
    gates: list[Verdict]
    timing_s: dict[str, float] = Field(default_factory=dict)
    failed_configs: dict[str, str] = Field(default_factory=dict)


#: Per-request token ids belong in baselines, not reports; a verdict's message is the terminal's.
REPORT_EXCLUDES = {"gates": {"__all__": {"message"}}}


def report(
    results: list[ConfigResult], verdicts: list[Verdict], timing: dict[str, float] | None = None,
    failures: dict[str, str] | None = None,
) -> Report:
    return Report(
        environment=next((r.environment for r in results), {}),
        runs=[_run_dict(run) for result in results for run in result.runs],
        engine_start_s={r.config_name: r.engine_start_s for r in results},
        break_even={r.config_name: r.break_even for r in results},
        gates=verdicts,
        timing_s=timing or {},
        failed_configs=failures or {},
    )


def _run_dict(run: RunResult) -> dict[str, Any]:
    """The run as dumped (Python values: the report's one JSON policy applies when it is written)."""
    without_ids = {"samples": {"__all__": {"output_token_ids"}}}
    dumped = run.model_dump(exclude={"spec": without_ids, "vanilla": without_ids})
    if run.lossless_check is not None:
        dumped["lossless_check"]["verdict"] = run.lossless_check.verdict()
    return dumped


def write_json(
    path: Path, results: list[ConfigResult], verdicts: list[Verdict], timing: dict[str, float] | None = None,
    failures: dict[str, str] | None = None,
) -> None:
    write_document(path, report(results, verdicts, timing, failures), indent=2, exclude=REPORT_EXCLUDES)


def failure_lines(failures: dict[str, str]) -> list[str]:
    """Configs with no result: a failed start or an interrupted measurement, with the reason."""
    return [f"{config}: {reason}" for config, reason in failures.items()]


def markdown(results: list[ConfigResult], verdicts: list[Verdict], failures: dict[str, str] | None = None) -> str:
    failed_configs = failure_lines(failures or {})
    rows = table_rows(results, verdicts)
    if not rows and not failed_configs:
        return ""
    if not rows:
        return "## Speculative decoding gates\n\n**No config measured**\n\n" + "".join(f"- {line}\n" for line in failed_configs)
    lines = ["## Speculative decoding gates", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "/").replace("*", "\\*") for cell in row) + " |" for row in rows]
    if _any_unequal(results):
        lines += ["", f"\\{UNEQUAL_MARK} {UNEQUAL_NOTE}"]
    sections = (
        ("Vanilla", vanilla_lines(results)),
        ("95% intervals", interval_lines(results)),
        ("TTFT from the scheduled send (paced levels)", scheduled_ttft_lines(results)),
        ("Lossless check (T>0)", lossless_lines(results)),
        ("Warnings", warning_lines(results, whole=True)),
    )
    for title, section in sections:
        if section:
            lines += ["", f"**{title}**", ""] + [f"- {line}" for line in section]
    even = break_even_lines(results)
    if even:
        lines += ["", "**Break-even**", ""] + [f"- {line}" for line in even]
    notes = acceptance_notes(results)
    if notes:
        lines += ["", "**Notes**", ""] + [f"- {line}" for line in notes]
    engines = engine_lines(results)
    if engines:
        lines += ["", "**Engines**", ""] + [f"- {line}" for line in engines]
    if failed_configs:
        lines += ["", "**Configs that failed or were interrupted**", ""] + [f"- {line}" for line in failed_configs]
    failed = [v for v in verdicts if not v.passed]
    if failed:
        lines += ["", "**Missed or inconclusive gates**", ""]
        lines += [f"- {v.outcome}: `{v.test}`: {v.gate} at {v.run}: measured {_fmt(v.measured)}" for v in failed]
    if verdicts:
        lines += ["", f"Gates: {outcome_counts(verdicts)}"]
    return "\n".join(lines) + "\n"
