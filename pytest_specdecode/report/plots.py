"""PNG plots of a session's results, for a person tuning a config rather than for the gates: where
acceptance decays along the draft, where speculation stops paying under load, and how acceptance
spreads over requests.

matplotlib is an optional extra (`pytest-specdecode[plots]`), so it is imported only when plots are
asked for. As in report.py, every figure is read from the result model.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ..results import BREAK_EVEN_METRIC, LOAD_AXES, ConfigResult, LoadAxis, RunResult
from ..results.distribution import Distribution

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

INSTALL_HINT = "pip install 'pytest-specdecode[plots]'"
CUT_K_BELOW = 0.5  # vLLM's tuning rule: shorten K to where per-position acceptance falls below 50%
HISTOGRAM_BINS = 20
DPI = 100
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")

AXIS_TITLES = {"concurrency": "concurrency (requests in flight)", "request_rate": "request rate (requests/s)"}
AXIS_UNITS = {"concurrency": "c", "request_rate": "rate"}
SPEEDUP_LABELS = {"throughput": "speedup (spec / vanilla tokens/s)", "tpot": "TPOT speedup (vanilla / spec mean TPOT)"}


class PlotsUnavailable(RuntimeError):
    """matplotlib is missing: plots are an optional extra, so say how to get them."""


def write_plots(results: list[ConfigResult], folder: Path) -> list[Path]:
    """Write each config's plots that have data into `folder` and return their paths.

    Files are named `<config>-<kind>.png` so that a CI artifact keeps the same names run after run.
    Invalid runs are left out: their figures would mislead.
    """
    pyplot = _pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for result in results:
        runs = sorted((run for run in result.runs if run.valid), key=_order)
        for path in (
            _per_position_plot(pyplot, result, runs, folder),
            _load_plot(pyplot, result, runs, folder),
            _acceptance_histogram(pyplot, result, runs, folder),
        ):
            if path is not None:
                written.append(path)
    return written


def plots_note(paths: list[Path]) -> str:
    """The step summary's plots section. A job page renders only what is in the summary itself and
    cannot show a file on the runner, so image links to local paths would be broken images: name the
    files instead, and where they go (the folder to upload as an artifact)."""
    if not paths:
        return ""
    folders = sorted({path.parent.as_posix() for path in paths})
    lines = [
        "**Plots**", "",
        f"Written on the runner to {', '.join(f'`{folder}`' for folder in folders)}: upload that folder as a job "
        "artifact (e.g. `actions/upload-artifact`) to see them; a step summary cannot show runner files.", "",
    ]
    return "\n".join(lines + [f"- `{path.name}`" for path in paths]) + "\n"


def _pyplot() -> ModuleType:
    """pyplot on the Agg backend: plots are written from test sessions, often with no display."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as pyplot
    except ImportError as missing:
        raise PlotsUnavailable(f"plots need matplotlib: {INSTALL_HINT}") from missing
    return pyplot


@contextmanager
def _figure(
    pyplot: ModuleType, path: Path, title: str, nrows: int = 1, ncols: int = 1, **options: object
) -> Iterator[tuple[Figure, np.ndarray]]:
    """A figure that is saved to `path` when drawing succeeds and closed either way, so that a
    session plotting many configs does not accumulate figures in pyplot's registry."""
    figure, axes = pyplot.subplots(nrows, ncols, squeeze=False, **options)
    try:
        figure.suptitle(title)
        yield figure, axes
        figure.savefig(path, dpi=DPI, bbox_inches="tight")
    finally:
        pyplot.close(figure)


def _per_position_plot(pyplot: ModuleType, result: ConfigResult, runs: list[RunResult], folder: Path) -> Path | None:
    """Acceptance per draft position: the curve that says how long K is worth making."""
    drawn = [run for run in runs if run.per_position_acceptance]
    if not drawn:
        return None
    path = _path(folder, result, "per-position")
    colours, loads = _colours(drawn), _load_styles(drawn)
    with _figure(pyplot, path, _title(result, runs, "per-position acceptance"), figsize=(7, 4.5)) as (_, axes):
        ax: Axes = axes[0][0]
        for run in drawn:
            shares = run.per_position_acceptance
            linestyle, marker = loads[_load(run)]
            label, colour = _series_label(run), colours[run.temperature]
            ax.plot(range(len(shares)), shares, color=colour, linestyle=linestyle, marker=marker, label=label)
        ax.axhline(CUT_K_BELOW, color="gray", linestyle="--", linewidth=2, label="cut K here")
        ax.set_xticks(range(max(len(run.per_position_acceptance) for run in drawn)))
        ax.set_ylim(0, 1)
        ax.set_xlabel("draft position (0-based)")
        ax.set_ylabel("accepted / drafts")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return path


def _load_plot(pyplot: ModuleType, result: ConfigResult, runs: list[RunResult], folder: Path) -> Path | None:
    """Speedup and E2E P99 along each load sweep: where speculation stops paying, and where the
    tail gets worse, which is what vLLM's per-batch-size speculation limits are set from."""
    axes_swept = [axis for axis in LOAD_AXES if len(_levels(runs, axis)) >= 2]
    if not axes_swept:
        return None
    path = _path(folder, result, "load")
    title = _title(result, runs, "speculation under load")
    size = (6.5 * len(axes_swept), 8)
    with _figure(pyplot, path, title, 2, len(axes_swept), sharex="col", figsize=size) as (_, axes):
        for column, axis in enumerate(axes_swept):
            _draw_sweep(result, runs, axis, axes[0][column], axes[1][column])
    return path


def _draw_sweep(result: ConfigResult, runs: list[RunResult], axis: LoadAxis, speedup_ax: Axes, p99_ax: Axes) -> None:
    """One load axis: speedup on top (the one break-even reads there), spec vs vanilla E2E P99 below,
    one colour per temperature."""
    colours = _colours(runs)
    metric = BREAK_EVEN_METRIC[axis]
    for temperature, colour in colours.items():
        at_temperature = [run for run in runs if run.temperature == temperature]
        points = [(level, run) for run in at_temperature if (level := _level(run, axis)) is not None]
        if not points:
            continue
        x, sweep = [level for level, _ in points], [run for _, run in points]
        name = f"T={temperature:g}"
        speedup_ax.plot(x, [_nan(run.speedup_of(metric)) for run in sweep], marker="o", color=colour, label=name)
        spec_p99 = [_nan(run.spec.e2e_ms.p99) for run in sweep]
        vanilla_p99 = [_nan(run.vanilla.e2e_ms.p99) for run in sweep]
        p99_ax.plot(x, spec_p99, marker="o", color=colour, label=f"spec {name}")
        p99_ax.plot(x, vanilla_p99, marker="s", linestyle="--", color=colour, label=f"vanilla {name}")
    speedup_ax.axhline(1.0, color="gray", linestyle="--", label="speedup 1.0")
    _mark_break_even(result, axis, colours, speedup_ax, p99_ax)
    levels = sorted(_levels(runs, axis))
    for ax, ylabel in ((speedup_ax, SPEEDUP_LABELS[metric]), (p99_ax, "E2E P99 (ms)")):
        ax.set_xscale("log")
        ax.set_xticks(levels, [f"{level:g}" for level in levels])
        ax.minorticks_off()
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    speedup_ax.set_title(AXIS_TITLES[axis], fontsize="medium")
    p99_ax.set_xlabel(AXIS_TITLES[axis])


def _mark_break_even(
    result: ConfigResult, axis: LoadAxis, colours: dict[float, str], speedup_ax: Axes, p99_ax: Axes
) -> None:
    """Dotted verticals at the first level that does not pay and the first whose P99 regresses."""
    unit = AXIS_UNITS[axis]
    for point in result.break_even:
        if point.axis != axis or point.temperature not in colours:
            continue
        marks = (
            (speedup_ax, point.first_level_not_paying, "stops paying at"),
            (p99_ax, point.first_level_p99_regresses, "P99 worse from"),
        )
        for ax, level, what in marks:
            if level is not None and math.isfinite(level):
                label = f"T={point.temperature:g} {what} {unit}={level:g}"
                ax.axvline(level, color=colours[point.temperature], linestyle=":", label=label)


def _acceptance_histogram(
    pyplot: ModuleType, result: ConfigResult, runs: list[RunResult], folder: Path
) -> Path | None:
    """How acceptance spreads over requests: a good mean can hide a tail of requests that gain nothing."""
    buckets = _acceptance_by_temperature(runs)
    if not buckets:
        return None
    values = [value for bucket in buckets.values() for value in bucket]
    bins = np.linspace(min(0.0, *values), max(1.0, *values), HISTOGRAM_BINS + 1).tolist()
    path = _path(folder, result, "acceptance-histogram")
    title = _title(result, runs, "per-request acceptance")
    with _figure(pyplot, path, title, figsize=(7, 4.5)) as (_, axes):
        ax: Axes = axes[0][0]
        for temperature, bucket in buckets.items():
            ax.hist(bucket, bins=bins, histtype="step", linewidth=1.8, label=_spread_label(temperature, bucket))
        ax.set_xlabel("acceptance rate per request, (acceptance length - 1) / K")
        ax.set_ylabel("requests")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return path


def _acceptance_by_temperature(runs: list[RunResult]) -> dict[float, list[float]]:
    """Per temperature, every spec request's acceptance rate, pooled over load levels."""
    buckets: dict[float, list[float]] = defaultdict(list)
    for run in runs:
        buckets[run.temperature] += run.per_request_acceptance_values()
    return {temperature: bucket for temperature, bucket in sorted(buckets.items()) if bucket}


def _spread_label(temperature: float, bucket: list[float]) -> str:
    spread = Distribution.of(bucket)
    return (
        f"T={temperature:g} (n={spread.count}): "
        f"P10 {spread.p10:.2f} / P50 {spread.p50:.2f} / P90 {spread.p90:.2f}"
    )


def _title(result: ConfigResult, runs: list[RunResult], what: str) -> str:
    drafting = sorted({f"{run.method}, K={run.num_speculative_tokens}" for run in runs})
    return f"{result.config_name} ({'; '.join(drafting)}): {what}"


def _path(folder: Path, result: ConfigResult, kind: str) -> Path:
    """A file name any file system and artifact store accepts, the same for the same config."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", result.config_name).strip("._") or "config"
    return folder / f"{slug}-{kind}.png"


def _series_label(run: RunResult) -> str:
    """The run's label without the config name, which the title already says: `T=0.8 c=8`."""
    return run.label.removeprefix(f"{run.config_name} ")


def _colours(runs: list[RunResult]) -> dict[float, str]:
    """One colour per temperature, so a temperature's spec and vanilla lines and marks pair up."""
    temperatures = sorted({run.temperature for run in runs})
    return {temperature: f"C{index % 10}" for index, temperature in enumerate(temperatures)}


def _load_styles(runs: list[RunResult]) -> dict[tuple[float, float], tuple[str, str]]:
    """One line style and marker per load level, so that the colour can keep saying the temperature."""
    loads = sorted({_load(run) for run in runs})
    return {load: (LINE_STYLES[i % len(LINE_STYLES)], MARKERS[i % len(MARKERS)]) for i, load in enumerate(loads)}


def _load(run: RunResult) -> tuple[float, float]:
    return (run.concurrency or 0, run.request_rate or 0)


def _levels(runs: list[RunResult], axis: LoadAxis) -> set[float]:
    return {level for run in runs if (level := _level(run, axis)) is not None}


def _level(run: RunResult, axis: LoadAxis) -> float | None:
    """The run's level on `axis`; None also for an unpaced rate (inf), which a log axis cannot show."""
    level = getattr(run, axis)
    return level if level is not None and math.isfinite(level) else None


def _order(run: RunResult) -> tuple[float, tuple[float, float]]:
    return (run.temperature, _load(run))


def _nan(value: float | None) -> float:
    """None as NaN, so a missing figure leaves a gap in the line instead of failing the plot."""
    return math.nan if value is None else value
