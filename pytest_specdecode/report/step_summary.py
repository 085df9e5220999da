"""The Markdown step summary (`$GITHUB_STEP_SUMMARY`): the table and sections a CI job page shows."""

from __future__ import annotations

from ..results import ConfigResult, Verdict
from .sections import failure_lines, sections
from .table import COLUMNS, UNEQUAL_MARK, UNEQUAL_NOTE, any_unequal, fmt, outcome_counts, table_rows


def markdown(results: list[ConfigResult], verdicts: list[Verdict], failures: dict[str, str] | None = None) -> str:
    failed_configs = failure_lines(failures or {})
    rows = table_rows(results, verdicts)
    if not rows and not failed_configs:
        return ""
    if not rows:
        return "## Speculative decoding gates\n\n**No config measured**\n\n" + "".join(f"- {line}\n" for line in failed_configs)
    lines = ["## Speculative decoding gates", "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(cell.replace("|", "/").replace("*", "\\*") for cell in row) + " |" for row in rows]
    if any_unequal(results):
        lines += ["", f"\\{UNEQUAL_MARK} {UNEQUAL_NOTE}"]
    shown = [(title, section) for _, title, section in sections(results, whole=True)]
    shown.append(("Configs that failed or were interrupted", failed_configs))
    missed = [v for v in verdicts if not v.passed]
    if missed:
        shown.append(("Missed or inconclusive gates", [
            f"{v.outcome}: `{v.test}`: {v.gate} at {v.run}: measured {fmt(v.measured)}" for v in missed
        ]))
    for title, section in shown:
        if section:
            lines += ["", f"**{title}**", ""] + [f"- {line}" for line in section]
    if verdicts:
        lines += ["", f"Gates: {outcome_counts(verdicts)}"]
    return "\n".join(lines) + "\n"
