"""Named runs and comparisons with them: files checked like baselines, drops judged by their intervals."""

import json
from types import SimpleNamespace

import pytest

from pytest_specdecode import history
from pytest_specdecode.baseline import BaselineStore
from pytest_specdecode.history import HistoryStore, compare_runs
from pytest_specdecode.results import ConfigResult, Environment, RunResult, SpecCounters
from pytest_specdecode.schema import BaselineError

from .test_baseline import FP, figures, one_line_naming


def run(acceptance: float = 0.74, speedup: float = 1.5, temperature: float = 0.8, invalid_reason: str | None = None,
        **load) -> RunResult:
    return RunResult(
        config="configs/cpu-ngram.toml", config_name="cpu-ngram", model="m", method="ngram", num_speculative_tokens=3,
        workload="builtin:mixed", temperature=temperature,
        counters=SpecCounters(num_drafts=100, num_draft_tokens=300, num_accepted_tokens=round(acceptance * 300),
                              accepted_per_position=[90, 80, 52]),
        spec=figures(duration_s=2.0 / speedup), vanilla=figures(), invalid_reason=invalid_reason, **load,
    )


def result(*runs: RunResult) -> ConfigResult:
    return ConfigResult(config="configs/cpu-ngram.toml", config_name="cpu-ngram", runs=list(runs))


def test_history_round_trip_keeps_an_infinite_request_rate(tmp_path):
    store = HistoryStore(tmp_path)
    stored = result(run(), run(temperature=0.0, request_rate=float("inf")))
    path = store.save("nightly-2024.06.01_a", stored)
    assert path == tmp_path / "runs" / "nightly-2024.06.01_a.json"
    assert "Infinity" in path.read_text()
    json.loads(path.read_text(), parse_constant=lambda constant: pytest.fail(f"non-standard JSON {constant}"))
    assert store.load("nightly-2024.06.01_a") == stored


@pytest.mark.parametrize("name", ["a/b", "../up", "", "with space", "naïve"])
def test_history_names_are_validated(tmp_path, name):
    with pytest.raises(BaselineError, match="run name"):
        HistoryStore(tmp_path).save(name, result(run()))


def test_history_load_of_an_unknown_name_names_the_file(tmp_path):
    with pytest.raises(BaselineError) as excinfo:
        HistoryStore(tmp_path).load("never-saved")
    one_line_naming(tmp_path / "runs" / "never-saved.json", excinfo)


def test_history_latest_is_the_newest_by_creation_time(tmp_path, monkeypatch):
    store = HistoryStore(tmp_path)
    assert store.latest() is None
    monkeypatch.setattr(history, "time", SimpleNamespace(time=lambda: 2000.0))
    store.save("a-newer", result(run(acceptance=0.6)))
    monkeypatch.setattr(history, "time", SimpleNamespace(time=lambda: 1000.0))
    store.save("z-older", result(run(acceptance=0.7)))
    name, latest = store.latest()
    assert name == "a-newer"
    assert latest.runs[0].acceptance_rate == pytest.approx(0.6)


def test_history_refuses_foreign_and_renamed_files(tmp_path):
    store = HistoryStore(tmp_path)
    path = store.save("first", result(run()))
    renamed = path.with_name("second.json")
    renamed.write_text(path.read_text())
    with pytest.raises(BaselineError) as excinfo:
        store.load("second")
    assert "does not match the file name" in one_line_naming(renamed, excinfo)
    baseline_file = BaselineStore(tmp_path).save(FP, figures(), {})
    path.write_text(baseline_file.read_text())
    with pytest.raises(BaselineError) as excinfo:
        store.load("first")
    assert "kind is 'specdecode-baseline'" in one_line_naming(path, excinfo)


def test_history_latest_does_not_skip_a_broken_file(tmp_path):
    store = HistoryStore(tmp_path)
    store.save("good", result(run()))
    broken = store.folder / "broken.json"
    broken.write_text("{")
    with pytest.raises(BaselineError) as excinfo:
        store.latest()
    one_line_naming(broken, excinfo)


def test_compare_runs_reports_an_acceptance_drop():
    comparison = compare_runs(result(run(acceptance=0.58)), result(run(acceptance=0.74)), 0.05, 0.10)
    assert comparison.outcome == "fail"
    [message] = comparison.drops
    assert message.startswith("acceptance at cpu-ngram T=0.8 fell from 0.74 to 0.58 (-0.16 > 0.05), 95% interval up to")


def test_compare_runs_reports_a_relative_speedup_drop():
    comparison = compare_runs(result(run(speedup=1.10)), result(run(speedup=1.42)), 0.05, 0.10)
    [message] = comparison.drops
    assert message.startswith("speedup at cpu-ngram T=0.8 fell from 1.42x to 1.10x (-22.5% > 10%)")


def test_compare_runs_allows_drops_within_the_limits():
    previous = result(run(acceptance=0.80, speedup=1.50))
    assert compare_runs(result(run(acceptance=0.75, speedup=1.35)), previous, 0.05, 0.10).outcome == "pass"
    assert compare_runs(result(run(acceptance=0.90, speedup=2.0)), previous, 0.05, 0.10).messages == []


def test_a_point_drop_whose_interval_reaches_the_limit_is_not_sure():
    """Was a failure on the point difference alone: one noisy rerun read as a regression."""
    current = run(speedup=1.20)
    noisy = current.model_copy()
    noisy.__dict__["speedup_ci"] = [0.9, 1.45]  # a wide interval, as from a short noisy window
    comparison = compare_runs(result(noisy), result(run(speedup=1.42)), 0.05, 0.10)
    assert comparison.outcome == "inconclusive" and comparison.drops == []
    assert "95% interval reaches 1.45 >= 1.28: not sure" in comparison.unsure[0]


def test_runs_from_another_machine_are_not_compared_and_latest_looks_for_this_one(tmp_path):
    here = Environment(vllm="0.11.0", torch="2.8.0", device="1x NVIDIA H100 (driver 580)")
    there = here.model_copy(update={"device": "1x NVIDIA A10G (driver 535)"})
    current = result(run(acceptance=0.58)).model_copy(update={"environment": here})
    elsewhere = result(run(acceptance=0.74)).model_copy(update={"environment": there})
    comparison = compare_runs(current, elsewhere, 0.05, 0.10)
    assert comparison.outcome == "inconclusive"
    assert "measured on 1x NVIDIA A10G (driver 535) (vLLM 0.11.0), this one on 1x NVIDIA H100" in comparison.not_comparable
    store = HistoryStore(tmp_path)
    store.save("a.cpu-ngram", elsewhere)
    assert store.latest(".cpu-ngram", here) is None
    store.save("b.cpu-ngram", current)
    assert store.latest(".cpu-ngram", here)[0] == "b.cpu-ngram"


def test_compare_runs_matches_by_temperature_and_load():
    previous = result(run(acceptance=0.9, temperature=0.0), run(acceptance=0.9, concurrency=4))
    current = result(run(acceptance=0.5, temperature=0.0, concurrency=8), run(acceptance=0.5, concurrency=4))
    [message] = compare_runs(current, previous, 0.05, 0.10).drops
    assert message.startswith("acceptance at cpu-ngram T=0.8 c=4 fell from 0.90 to 0.50 (-0.40 > 0.05)")


def test_compare_runs_reports_invalid_runs():
    invalid = run(invalid_reason="no drafts were proposed")
    assert compare_runs(result(invalid), result(run()), 0.05, 0.10).drops == [
        "cpu-ngram T=0.8: invalid run, not compared with the previous one: no drafts were proposed"
    ]
    assert compare_runs(result(run()), result(invalid), 0.05, 0.10).unsure == [
        "cpu-ngram T=0.8: previous run was invalid (no drafts were proposed), nothing to compare with"
    ]
