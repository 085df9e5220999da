"""The terminal summary: the table, then each section as prefixed lines, then missed gates."""

from __future__ import annotations

from ..results import ConfigResult, Verdict
from .sections import sections
from .table import COLUMNS, TABLE_LEGEND, UNEQUAL_MARK, UNEQUAL_NOTE, any_unequal, fmt, outcome_counts, table_rows


def terminal_lines(results: list[ConfigResult], verdicts: list[Verdict]) -> list[str]:
    rows = table_rows(results, verdicts)
    if not rows:
        return []
    widths = [max(len(str(row[i])) for row in [COLUMNS, *rows]) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in [COLUMNS, *rows]]
    lines.insert(1, "  ".join("-" * width for width in widths))
    lines.append(TABLE_LEGEND)
    if any_unequal(results):
        lines.append(f"{UNEQUAL_MARK} {UNEQUAL_NOTE}")
    for prefix, _, section in sections(results, whole=False):
        lines += [f"{prefix} {line}" for line in section]
    for verdict in verdicts:
        if not verdict.passed:
            lines.append(f"{verdict.outcome.upper()} {verdict.test}: {verdict.gate} at {verdict.run}: measured {fmt(verdict.measured)}")
    if verdicts:
        lines.append(f"gates: {outcome_counts(verdicts)}")
    return lines
