import importlib.util
import math
import re
import sys
from pathlib import Path

import pytest

from pytest_specdecode.report.plots import INSTALL_HINT, PlotsUnavailable, plots_note, write_plots
from pytest_specdecode.results import ConfigResult, EngineFigures

from .builders import figures, result, run

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason=f"plots need matplotlib: {INSTALL_HINT}"
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def sweep(temperature: float) -> list:
    """Three concurrency levels: speculation pays at c=1 and c=8, not at c=32; the tail regresses from c=8."""
    return [
        run(temperature, concurrency=1, spec_duration=1.0, spec_e2e=0.9),
        run(temperature, concurrency=8, spec_duration=1.8, spec_e2e=1.2),
        run(temperature, concurrency=32, spec_duration=2.5, spec_e2e=1.5),
    ]


def spread_run(temperature: float):
    """A run whose requests accept 0, 1/3 and 2/3 of K=3: something for the histogram to show."""
    samples = [s for chunk in (1, 2, 3) for s in figures(chunk=chunk).samples]
    return run(temperature).model_copy(update={"spec": EngineFigures(samples=samples, duration_s=1.0)})


def names(paths: list[Path]) -> list[str]:
    return [path.name for path in paths]


def assert_png(path: Path) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 5_000, path


@pytest.mark.filterwarnings("error")
@needs_matplotlib
def test_a_load_sweep_at_several_temperatures_gets_all_three_plots(tmp_path):
    measured = result(*sweep(0.0), *sweep(0.8), spread_run(0.0))
    paths = write_plots([measured], tmp_path / "plots")
    assert names(paths) == ["cfg-per-position.png", "cfg-load.png", "cfg-acceptance-histogram.png"]
    assert all(path.parent == tmp_path / "plots" for path in paths)
    for path in paths:
        assert_png(path)
    import matplotlib.pyplot

    assert matplotlib.pyplot.get_fignums() == []


@needs_matplotlib
def test_without_two_load_levels_there_is_no_load_plot(tmp_path):
    offline = result(run(0.0), run(0.8))
    one_level = result(run(0.0, concurrency=8), run(0.8, concurrency=8))
    assert names(write_plots([offline], tmp_path)) == ["cfg-per-position.png", "cfg-acceptance-histogram.png"]
    assert "cfg-load.png" not in names(write_plots([one_level], tmp_path))


@pytest.mark.filterwarnings("error")
@needs_matplotlib
def test_both_load_axes_and_an_unpaced_rate_still_make_one_load_plot(tmp_path):
    rates = [run(0.0, request_rate=rate) for rate in (1.0, 4.0, math.inf)]
    paths = write_plots([result(*sweep(0.0), *rates)], tmp_path)
    assert "cfg-load.png" in names(paths)
    assert_png(tmp_path / "cfg-load.png")


@needs_matplotlib
def test_invalid_runs_are_left_out(tmp_path):
    all_invalid = result(run(0.0, invalid="no drafts"), run(0.8, invalid="no drafts"))
    assert write_plots([all_invalid], tmp_path) == [] and list(tmp_path.iterdir()) == []
    invalid_sweep = result(run(0.0), *(run(0.0, concurrency=c, invalid="engine died") for c in (1, 8, 32)))
    assert names(write_plots([invalid_sweep], tmp_path)) == ["cfg-per-position.png", "cfg-acceptance-histogram.png"]


@needs_matplotlib
def test_file_names_are_safe_and_follow_the_config_name(tmp_path):
    measured = ConfigResult(config="/c/a b.toml", config_name="../a b:v2", runs=[run(0.0)])
    assert names(write_plots([measured], tmp_path)) == ["a_b_v2-per-position.png", "a_b_v2-acceptance-histogram.png"]


def test_histogram_pools_the_samples_behind_per_request_acceptance():
    from pytest_specdecode.report.plots import _acceptance_by_temperature
    from pytest_specdecode.results.distribution import Distribution

    measured = spread_run(0.0)
    pooled = _acceptance_by_temperature([measured, run(0.8)])
    assert list(pooled) == [0.0, 0.8]
    assert Distribution.of(pooled[0.0]) == measured.per_request_acceptance


def test_the_step_summary_names_plot_files_and_where_they_are_instead_of_broken_image_links(tmp_path):
    """Was `![...](/local/path.png)`: a job page cannot show a runner's file, so every image was broken."""
    paths = [tmp_path / "plots" / "cfg-load.png", tmp_path / "plots" / "cfg-per-position.png"]
    note = plots_note(paths)
    assert "![" not in note
    assert f"`{(tmp_path / 'plots').as_posix()}`: upload that folder as a job artifact" in note
    assert "- `cfg-load.png`\n- `cfg-per-position.png`\n" in note
    assert plots_note([]) == ""


def test_missing_matplotlib_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(PlotsUnavailable, match=re.escape(INSTALL_HINT)):
        write_plots([result(run(0.0))], tmp_path)
    assert isinstance(PlotsUnavailable("x"), RuntimeError)
