"""The summary table: one row per run, the same in the terminal and the step summary."""

from __future__ import annotations

from collections.abc import Iterable

from ..results import ConfigResult, RunResult, Verdict


def fmt(value: float | None, spec: str = ".3f", suffix: str = "") -> str:
    """A figure, or "-" where it was not measured."""
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
    """Only a shown speedup is marked: at a paced rate there is none, whatever the lengths. Read from
    the run's `unequal_lengths` warning (the check that words `speedup_basis`), never from its text."""
    return run.speedup is not None and any(warning.code == "unequal_lengths" for warning in run.warnings)


def _speedup(run: RunResult) -> str:
    return fmt(run.speedup, ".2f", "x") + (UNEQUAL_MARK if _unequal_speedup(run) else "")


def _lossless(run: RunResult) -> str:
    """T=0 is checked token for token (a share; with near-ties counted as equal, what the gate reads,
    where that differs); T>0 as a distribution: the check's verdict, short
    (`LosslessCheck.summary` is the long form)."""
    if run.temperature == 0:
        exact, gated = run.outputs_match, run.outputs_match_up_to_ties
        if exact is None or gated is None:
            return "-"
        return f"match {exact:.2f}" + (f" ({gated:.2f} with ties)" if gated != exact else "")
    check = run.lossless_check
    if check is None:
        return "not measured"
    verdict = check.verdict
    if verdict == "lossless":
        return f"lossless +-{check.margin:g}"
    if verdict == "not lossless":
        return f"NOT LOSSLESS p={check.p_value:.2g}"
    if verdict == "inconclusive":
        return f"inconclusive ({check.n_pairs} pairs)"
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
                    fmt(run.acceptance_rate),
                    fmt(run.mean_acceptance_length, ".2f"),
                    _positions(run),
                    _speedup(run),
                    f"{fmt(run.spec.tpot_ms.p50, '.1f')} vs {fmt(run.vanilla.tpot_ms.p50, '.1f')}",
                    f"{fmt(run.spec.e2e_ms.p50, '.0f')}/{fmt(run.spec.e2e_ms.p99, '.0f')}",
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


def any_unequal(results: Iterable[ConfigResult]) -> bool:
    return any(run.valid and _unequal_speedup(run) for result in results for run in result.runs)
