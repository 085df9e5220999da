"""Named runs and comparisons with them: files checked like baselines, drops judged by a two-sample
interval over both runs' data, and nothing ever passing for want of a stored run."""

import json
import re
from types import SimpleNamespace

import numpy as np
import pytest

from pytest_specdecode.gates import history
from pytest_specdecode.measure.baseline import BaselineStore
from pytest_specdecode.config.spec import GatesSection
from pytest_specdecode.gates.history import HistoryStore, compare_runs
from pytest_specdecode.options import Options
from pytest_specdecode.gates.compare import CompareTarget, check_compare_target, regression_verdict
from pytest_specdecode.results import (
    BaselineInfo, ConfigResult, EngineFigures, Environment, RequestSample, RunResult, SpecCounters, Window,
)
from pytest_specdecode.results.schema import BaselineError
from pytest_specdecode.config.sequential import ALPHA

from .simulate import simulated_run
from .test_baseline import FP, figures, one_line_naming

LIMITS = (0.05, 0.10)  # max_acceptance_drop (points), max_speedup_drop (fraction): the config's defaults
HERE = Environment(vllm="0.11.0", torch="2.8.0", device="1x NVIDIA H100 (driver 580)")


def run(acceptance: float = 0.74, speedup: float = 1.5, temperature: float = 0.8, invalid_reason: str | None = None,
        windows: int = 3, noise: float = 0.01, requests: int = 16, steps: int = 32, seed: int = 0,
        config_name: str = "cpu-ngram", mode: str = "offline", **load) -> RunResult:
    """A run measured in `windows` window pairs: each request's decode steps accept Binomial(3,
    acceptance) draft tokens (the counters add them up), each window runs at its side's rate times
    1 + noise * N(0, 1)."""
    rng = np.random.default_rng(seed)
    spec_samples, vanilla_samples, spec_windows, vanilla_windows = [], [], [], []
    for window in range(windows):
        chunks = [[1] + [1 + int(a) for a in rng.binomial(3, acceptance, steps)] for _ in range(requests)]
        tokens = sum(map(sum, chunks))
        for side, rate, samples, found in (("spec", 100.0 * speedup, spec_samples, spec_windows),
                                           ("vanilla", 100.0, vanilla_samples, vanilla_windows)):
            duration = tokens / (rate * (1 + noise * rng.standard_normal()))
            found.append(Window(duration_s=duration, output_tokens=tokens, prefix_cache_reset=True))
            samples += [RequestSample(prompt_tokens=5, output_tokens=sum(c), ttft_s=0.01, e2e_s=duration,
                                      chunk_tokens=c if side == "spec" else [], repeat=window) for c in chunks]
    decode_steps = [step for sample in spec_samples for step in sample.chunk_tokens[1:]]
    counters = SpecCounters(num_drafts=len(decode_steps), num_draft_tokens=3 * len(decode_steps),
                            num_accepted_tokens=sum(decode_steps) - len(decode_steps))
    side = lambda samples, found: EngineFigures(samples=samples, duration_s=sum(w.duration_s for w in found), windows=found)  # noqa: E731
    return RunResult(
        config=f"configs/{config_name}.toml", config_name=config_name, mode=mode, model="m", method="ngram",
        num_speculative_tokens=3, workload="builtin:mixed", temperature=temperature, counters=counters,
        spec=side(spec_samples, spec_windows), vanilla=side(vanilla_samples, vanilla_windows),
        invalid_reason=invalid_reason, baseline=BaselineInfo(source="measured", fingerprint=FP, age_s=0.0), **load,
    )


def result(*runs: RunResult, environment: Environment = HERE) -> ConfigResult:
    name = runs[0].config_name if runs else "cpu-ngram"
    return ConfigResult(config=f"configs/{name}.toml", config_name=name, runs=list(runs), environment=environment)


def simple(acceptance: float = 0.74, temperature: float = 0.8, **load) -> RunResult:
    """A run without windows, as the store tests need it (they never judge it)."""
    return RunResult(
        config="configs/cpu-ngram.toml", config_name="cpu-ngram", model="m", method="ngram", num_speculative_tokens=3,
        workload="builtin:mixed", temperature=temperature,
        counters=SpecCounters(num_drafts=100, num_draft_tokens=300, num_accepted_tokens=round(acceptance * 300)),
        spec=figures(duration_s=1.0), vanilla=figures(), **load,
    )


def by_figure(comparison, figure: str):
    [check] = [check for check in comparison.checks if check.figure == figure]
    return check


# -- the store ------------------------------------------------------------------------------------


def test_history_round_trip_keeps_an_infinite_request_rate(tmp_path):
    store = HistoryStore(tmp_path)
    stored = result(simple(), simple(temperature=0.0, request_rate=float("inf")))
    path = store.save("nightly-2024.06.01_a", stored)
    assert path == tmp_path / "runs" / "nightly-2024.06.01_a.json"
    assert "Infinity" in path.read_text()
    json.loads(path.read_text(), parse_constant=lambda constant: pytest.fail(f"non-standard JSON {constant}"))
    assert store.load("nightly-2024.06.01_a") == stored


@pytest.mark.parametrize("name", ["a/b", "../up", "", "with space", "naïve"])
def test_history_names_are_validated(tmp_path, name):
    with pytest.raises(BaselineError, match="run name"):
        HistoryStore(tmp_path).save(name, result(simple()))


def test_history_load_of_an_unknown_name_names_the_file(tmp_path):
    with pytest.raises(BaselineError) as excinfo:
        HistoryStore(tmp_path).load("never-saved")
    one_line_naming(tmp_path / "runs" / "never-saved.json", excinfo)


def test_history_latest_is_the_newest_by_creation_time(tmp_path, monkeypatch):
    store = HistoryStore(tmp_path)
    assert store.latest() is None
    monkeypatch.setattr(history, "time", SimpleNamespace(time=lambda: 2000.0))
    store.save("a-newer.cpu-ngram", result(simple(acceptance=0.6)))
    monkeypatch.setattr(history, "time", SimpleNamespace(time=lambda: 1000.0))
    store.save("z-older.cpu-ngram", result(simple(acceptance=0.7)))
    name, latest = store.latest("cpu-ngram")
    assert name == "a-newer.cpu-ngram"
    assert latest.runs[0].acceptance_rate == pytest.approx(0.6)


def test_history_refuses_foreign_and_renamed_files(tmp_path):
    store = HistoryStore(tmp_path)
    path = store.save("first", result(simple()))
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
    store.save("good.cpu-ngram", result(simple()))
    broken = store.folder / "broken.cpu-ngram.json"
    broken.write_text("{")
    with pytest.raises(BaselineError) as excinfo:
        store.latest("cpu-ngram")
    one_line_naming(broken, excinfo)


def test_latest_and_named_runs_match_the_config_exactly(tmp_path, monkeypatch):
    """Was a glob `*.ngram.json`: config `ngram`'s latest picked config `x.ngram`'s newer file
    `run.x.ngram.json`, and compared two different configs."""
    store = HistoryStore(tmp_path)
    ngram = result(simple(acceptance=0.7)).model_copy(update={"config_name": "ngram"})
    dotted = result(simple(acceptance=0.3)).model_copy(update={"config_name": "x.ngram"})
    monkeypatch.setattr(history, "time", SimpleNamespace(time=lambda: 1000.0))
    store.save("old.ngram", ngram)
    monkeypatch.setattr(history, "time", SimpleNamespace(time=lambda: 2000.0))
    store.save("run.x.ngram", dotted)  # --spec-save run, config x.ngram
    name, found = store.latest("ngram")
    assert (name, found.config_name) == ("old.ngram", "ngram")
    assert store.latest("x.ngram")[0] == "run.x.ngram"
    # the same file read as run `run.x` of config `ngram` is another config's: no match
    assert store.load_config("run.x", "ngram") is None
    assert store.load_config("run", "x.ngram").config_name == "x.ngram"
    assert store.has_run("run") and not store.has_run("run.x")


# -- two-sample comparisons ------------------------------------------------------------------------


@pytest.mark.parametrize("repeats", [1, 3])
def test_unchanged_runs_do_not_fail(repeats):
    """Was judged on the current run's interval alone, against the stored point: with one window
    per run, pairs of unchanged runs failed (window noise in the stored figure counts for nothing)."""
    outcomes = [
        compare_runs(result(simulated_run(2 * seed, repeats, 0.10)), result(simulated_run(2 * seed + 1, repeats, 0.10)),
                     *LIMITS).outcome
        for seed in range(60)
    ]
    assert "fail" not in outcomes
    if repeats == 1:
        assert set(outcomes) == {"inconclusive"}  # and never a pass without the spread between windows


def test_an_acceptance_drop_beyond_the_limit_fails_with_both_values_the_interval_and_the_limit():
    comparison = compare_runs(result(run(acceptance=0.58, seed=1)), result(run(acceptance=0.74)), *LIMITS,
                              previous_name="nightly.cpu-ngram")
    assert comparison.outcome == "fail"
    check = by_figure(comparison, "acceptance")
    assert check.outcome == "fail" and check.limit == 0.05 and check.level == pytest.approx(1 - ALPHA)
    assert check.drop == pytest.approx(check.previous - check.current)
    assert 0.05 < check.interval[0] < check.drop < check.interval[1]
    assert check.n == 16  # prompts, paired: the same 16 prompts in both runs, each over its 3 windows
    assert re.match(
        r"acceptance at cpu-ngram T=0.8: 0.7\d\d in nightly.cpu-ngram, 0.5\d\d now, drop \+0.1\d\d points "
        r"\(99% interval \+0.\d\d\d to \+0.\d\d\d from 16 prompts paired .*\); limit 0.05 points: fail", check.message,
    )


def test_an_unchanged_greedy_config_compares_exactly_on_acceptance():
    """The CPU demo's real A/A: the same 16 prompts, the same greedy outputs, acceptance 0.907 both
    times, read "drop +0.000 (99 % interval -0.326 to +0.326 from 48 + 48 requests)": the runs
    were compared as two samples of requests. Paired by prompt, an unchanged greedy config passes."""
    same = run(acceptance=0.74)
    check = by_figure(compare_runs(result(same), result(same), *LIMITS), "acceptance")
    assert check.outcome == "pass" and check.interval == (0.0, 0.0)


@pytest.mark.parametrize("vanilla", ["measured", "cached"])
def test_a_speedup_drop_beyond_the_limit_fails_on_both_runs_windows(vanilla):
    """Window pairs (log spec / vanilla per pair), or against a stored vanilla each side's own spread."""
    stored = BaselineInfo(source=vanilla, fingerprint=FP, age_s=0.0)
    current, previous = run(speedup=1.10, seed=1), run(speedup=1.42)
    current, previous = (r.model_copy(update={"baseline": stored}) for r in (current, previous))
    comparison = compare_runs(result(current), result(previous), *LIMITS, previous_name="nightly.cpu-ngram")
    check = by_figure(comparison, "speedup")
    assert comparison.outcome == "fail" and check.outcome == "fail"
    assert check.drop == pytest.approx(1 - check.current / check.previous)
    assert 0.10 < check.interval[0] < check.interval[1] and check.n == 6
    assert re.match(r"speedup at cpu-ngram T=0.8: 1.4\dx in nightly.cpu-ngram, 1.1\dx now, drop \+2\d.\d% "
                    r"\(99% interval \+\d+.\d% to \+\d+.\d% from 3 \+ 3 windows .*\); limit 10%: fail", check.message)


def test_a_pass_needs_the_whole_interval_within_the_limit():
    """Was a pass whenever the point drop was within the limit, however noisy either run."""
    steady = compare_runs(result(run(acceptance=0.75, speedup=1.45, windows=6, seed=1)),
                          result(run(acceptance=0.75, windows=6)), *LIMITS)
    assert steady.outcome == "pass"
    assert all(check.interval[1] <= check.limit for check in steady.checks)
    noisy = compare_runs(result(run(speedup=1.5, noise=0.15, seed=1)), result(run(speedup=1.5, noise=0.15)), *LIMITS)
    check = by_figure(noisy, "speedup")
    assert noisy.outcome == "inconclusive" and check.outcome == "inconclusive"
    assert check.interval[0] < check.limit < check.interval[1]
    assert "the interval straddles the limit" in check.message and "windows a run" in check.message


def test_fewer_than_three_windows_is_inconclusive_and_says_what_would_resolve_it():
    """Was judged on a request bootstrap of the current run alone: 1.42x -> 1.10x with one window failed."""
    comparison = compare_runs(result(run(speedup=1.10, windows=1)), result(run(speedup=1.42, windows=2)), *LIMITS)
    check = by_figure(comparison, "speedup")
    assert check.outcome == "inconclusive" and check.interval is None and comparison.outcome == "inconclusive"
    assert "no interval (1 window(s) now, 2 in the stored run; both runs need >= 3 windows a side, " \
           "[run] repeats >= 3" in check.message


def test_a_condition_the_stored_run_lacks_is_inconclusive_never_a_pass():
    """Was a silent pass: an offline run compared in server mode matched no stored run, so nothing
    was compared, and a 1.3x -> 0.5x speedup read `pass`."""
    offline = result(run(speedup=1.3, temperature=0.0))
    server = result(run(speedup=0.5, temperature=0.0, mode="server", concurrency=4))
    comparison = compare_runs(server, offline, *LIMITS, previous_name="nightly.cpu-ngram")
    assert comparison.outcome == "inconclusive"
    [check] = comparison.checks
    assert check.message == ("inconclusive: no stored run matches cpu-ngram T=0 c=4 (server) in nightly.cpu-ngram "
                             "(it holds cpu-ngram T=0 (offline)): not compared")


def test_compare_runs_matches_by_temperature_and_load():
    previous = result(run(acceptance=0.9, temperature=0.0), run(acceptance=0.9, concurrency=4))
    current = result(run(acceptance=0.5, temperature=0.0, concurrency=8), run(acceptance=0.5, concurrency=4))
    comparison = compare_runs(current, previous, *LIMITS)
    assert comparison.outcome == "fail"
    outcomes = {(check.label, check.figure): check.outcome for check in comparison.checks}
    assert outcomes[("cpu-ngram T=0.8 c=4", "acceptance")] == "fail"
    assert outcomes[("cpu-ngram T=0 c=8", "run")] == "inconclusive"


def test_runs_from_another_machine_are_not_compared_and_latest_looks_for_this_one(tmp_path):
    there = HERE.model_copy(update={"device": "1x NVIDIA A10G (driver 535)"})
    current = result(run(acceptance=0.58))
    elsewhere = result(run(acceptance=0.74), environment=there)
    comparison = compare_runs(current, elsewhere, *LIMITS)
    assert comparison.outcome == "inconclusive" and comparison.checks == []
    assert "measured on 1x NVIDIA A10G (driver 535) (vLLM 0.11.0), this one on 1x NVIDIA H100" in comparison.not_comparable
    store = HistoryStore(tmp_path)
    store.save("a.cpu-ngram", elsewhere)
    assert store.latest("cpu-ngram", HERE) is None
    store.save("b.cpu-ngram", current)
    assert store.latest("cpu-ngram", HERE)[0] == "b.cpu-ngram"


def test_compare_runs_reports_invalid_runs():
    invalid = run(invalid_reason="no drafts were proposed")
    failed = compare_runs(result(invalid), result(run()), *LIMITS)
    assert failed.outcome == "fail"
    assert failed.messages == ["cpu-ngram T=0.8: invalid run, not compared with the stored run: no drafts were proposed"]
    unsure = compare_runs(result(run()), result(invalid), *LIMITS)
    assert unsure.outcome == "inconclusive"
    assert unsure.messages == [
        "inconclusive: cpu-ngram T=0.8: the run in the stored run was invalid (no drafts were proposed), nothing to compare with"
    ]


def test_an_empty_comparison_is_inconclusive():
    assert compare_runs(result(), result(run()), *LIMITS).outcome == "inconclusive"


# -- the verdict -----------------------------------------------------------------------------------


def options(tmp_path, compare="latest") -> CompareTarget:
    return Options(history_dir=tmp_path, compare=compare).compare_target


def test_latest_with_no_stored_run_is_an_inconclusive_verdict(tmp_path):
    """Was a BaselineError, failing the test as if it were the user's mistake."""
    verdict = regression_verdict(options(tmp_path), "t", result(run()), GatesSection())
    assert verdict.outcome == "inconclusive" and not verdict.passed
    assert verdict.message.startswith("inconclusive: no stored run matches config 'cpu-ngram' on this machine")


def test_a_named_run_without_this_config_is_inconclusive_and_an_unknown_name_an_error(tmp_path):
    HistoryStore(tmp_path).save("nightly.other", result(run(config_name="other")))
    check_compare_target(options(tmp_path, "nightly"))
    verdict = regression_verdict(options(tmp_path, "nightly"), "t", result(run()), GatesSection())
    assert verdict.outcome == "inconclusive"
    assert "no stored run matches config 'cpu-ngram' in saved run 'nightly'" in verdict.message
    with pytest.raises(BaselineError, match="no saved run named 'never'"):
        check_compare_target(options(tmp_path, "never"))


def test_a_named_run_is_found_by_its_exact_name_not_a_prefix(tmp_path):
    """Was a glob `nightly.*.json`, which run `nightly.2` (file nightly.2.cpu-ngram.json) matched."""
    HistoryStore(tmp_path).save("nightly.2.cpu-ngram", result(run()))
    with pytest.raises(BaselineError, match="no saved run named 'nightly'"):
        check_compare_target(options(tmp_path, "nightly"))
    check_compare_target(options(tmp_path, "nightly.2"))


def test_the_verdict_carries_the_deciding_drop_its_interval_level_n_and_limit(tmp_path):
    HistoryStore(tmp_path).save("nightly.cpu-ngram", result(run(speedup=1.42)))
    verdict = regression_verdict(options(tmp_path, "nightly"), "t", result(run(speedup=1.10, seed=1)), GatesSection())
    assert (verdict.outcome, verdict.passed, verdict.gate) == ("fail", False, "no_regression(vs nightly.cpu-ngram)")
    assert verdict.threshold == 0.10 and verdict.level == pytest.approx(1 - ALPHA) and verdict.n == 6
    assert verdict.interval[0] > 0.10 and verdict.measured == pytest.approx(1 - 1.10 / 1.42, abs=0.03)
    assert verdict.interval_basis.startswith("speedup drop (fraction of speedup lost): 3 + 3 windows")
    lines = verdict.message.splitlines()
    assert lines[0].startswith("speedup at cpu-ngram T=0.8: 1.4") and "limit 10%: fail" in lines[0]
    assert lines[1].startswith("acceptance at cpu-ngram T=0.8") and "limit 0.05 points: pass" in lines[1]


def test_the_latest_stored_run_of_this_config_passes_when_nothing_moved(tmp_path):
    HistoryStore(tmp_path).save("nightly.cpu-ngram", result(run()))
    verdict = regression_verdict(options(tmp_path), "t", result(run(seed=1)), GatesSection())
    assert verdict.outcome == "pass" and verdict.passed
    assert verdict.gate == "no_regression(vs nightly.cpu-ngram)"
