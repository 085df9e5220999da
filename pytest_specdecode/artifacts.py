"""What a finished session leaves behind: saved runs, the JSON report, plots and the GitHub step
summary. Written also after failures or Ctrl-C, with what was measured."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .baseline import BaselineError

from .options import Options
from .plots import PlotsUnavailable, plots_note, write_plots
from .regression import save_runs
from .report import markdown, write_json
from .results import ConfigResult, Verdict

Complain = Callable[[str], None]


def write_artifacts(
    options: Options,
    results: list[ConfigResult],
    verdicts: list[Verdict],
    errors: dict[str, str],
    timing: dict[str, float],
    plots_dir: Path | None,
    complain: Complain,
) -> None:
    """A problem writing one artifact is said (`complain`) and the others are still written."""
    try:
        save_runs(options, results)
    except BaselineError as exc:
        complain(str(exc))
    if options.report is not None:  # always: a CI artifact step needs it most when nothing was measured
        write_json(options.report, results, verdicts, timing, errors)
    plots = _plots(results, plots_dir, complain)
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    text = markdown(results, verdicts, errors)
    if text and plots:
        text += "\n" + plots_note(plots)
    if summary_file and text:
        with open(summary_file, "a", encoding="utf-8") as handle:
            handle.write(text)


def _plots(results: list[ConfigResult], folder: Path | None, complain: Complain) -> list[Path]:
    if folder is None or not results:
        return []
    try:
        return write_plots(results, folder)
    except PlotsUnavailable as exc:
        complain(str(exc))
        return []
