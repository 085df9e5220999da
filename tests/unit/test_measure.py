"""The measurement pipeline on scripted engines: warmup excluded, counters as deltas, twins shared."""

import threading
import time
from pathlib import Path

import pytest

from pytest_specdecode.config.spec import parse_config
from pytest_specdecode.engines.base import EngineStartError
from pytest_specdecode.engines.pool import EnginePool
from pytest_specdecode.measure.measurer import MeasurementInterrupted, Measurer

from .fakes import FakeEngine, FakeFactory


def make_config(name="ngram", run=None, **workload):
    raw = {
        "model": {"name": "target", "seed": 0},
        "speculative": {"method": "ngram", "num_speculative_tokens": 3},
        "workload": {"prompts": "builtin:chat", "num_prompts": 4, "max_tokens": 8, **workload},
        "run": {"warmup": 2, "repeats": 1, **(run or {})},  # one window unless a test asks for more
    }
    return parse_config(raw, Path(f"/configs/{name}.toml"))


def test_warmup_is_excluded_and_counters_are_deltas():
    factory = FakeFactory()
    result = Measurer(EnginePool({"offline": factory})).measure(make_config())
    vanilla, spec = factory.engines
    assert [n for n, _ in spec.calls] == [2, 4, 4]  # warmup once, then one batch per temperature
    for run in result.runs:
        assert run.spec.num_requests == 4
        # 4 requests x 3 draft steps each; the warmup's 2 x 3 steps are not in the delta
        assert run.num_drafts == 12 and run.num_draft_tokens == 36 and run.num_accepted_tokens == 12
        assert run.acceptance_rate == pytest.approx(1 / 3)
        assert run.mean_acceptance_length == pytest.approx(2.0)
        assert run.per_position_acceptance == [1.0, 0.0, 0.0]
        assert run.speedup == pytest.approx(2.0)
        assert run.kv_cache_ratio == pytest.approx(1000 / 1200)
    assert result.runs[0].outputs_match == 1.0 and result.runs[1].outputs_match is None


def test_vanilla_twin_is_measured_once_for_configs_that_share_it():
    factory = FakeFactory()
    measurer = Measurer(EnginePool({"offline": factory}))
    measurer.measure(make_config("a"))
    measurer.measure(make_config("b").model_copy(update={"speculative": make_config().speculative.model_copy(update={"num_speculative_tokens": 2})}))
    vanilla_engines = [e for e in factory.engines if not e.spec.speculative_config]
    measured = [n for engine in vanilla_engines for n, sampling in engine.calls if sampling.max_tokens == 8 and n == 4]
    assert len(measured) == 2  # one window per temperature, for both configs
    # the sampled (T=0.8) vanilla outputs are scored once, each config's spec outputs once; with one
    # live engine, b's scoring restarts the vanilla engine (that costs a start, not a measurement)
    assert [n for engine in vanilla_engines for n in engine.scored] == [4, 4, 4]


def test_a_config_measured_before_is_not_measured_again_wherever_its_file_lives():
    factory = FakeFactory()
    measurer = Measurer(EnginePool({"offline": factory}))
    first = measurer.measure(make_config("a"))
    calls = sum(len(engine.calls) for engine in factory.engines)
    again = measurer.measure(make_config("b"))
    assert sum(len(engine.calls) for engine in factory.engines) == calls
    assert again.config_name == "b" and {run.config_name for run in again.runs} == {"b"}
    assert [run.speedup for run in again.runs] == [run.speedup for run in first.runs]


def test_pool_keeps_max_live_engines_and_remembers_failed_starts():
    factory = FakeFactory(fail_for="broken")
    pool = EnginePool({"offline": factory}, max_live=1)
    measurer = Measurer(pool)
    measurer.measure(make_config())
    vanilla, spec = factory.engines
    assert vanilla.closed and not spec.closed
    broken = make_config().model_copy(update={"model": make_config().model.model_copy(update={"name": "broken"})})
    for _ in range(2):
        with pytest.raises(EngineStartError, match="model not found"):
            measurer.measure(broken)
    assert len(factory.engines) == 2  # the failure was remembered, not retried
    pool.close_all()
    assert spec.closed


def test_one_token_outputs_make_a_run_invalid():
    factory = FakeFactory(tokens=1)
    result = Measurer(EnginePool({"offline": factory})).measure(make_config())
    assert not result.runs[0].valid
    assert "no drafts" in result.runs[0].invalid_reason


def test_progress_lines_name_config_and_step():
    lines = []
    Measurer(EnginePool({"offline": FakeFactory()}), progress=lines.append).measure(make_config())
    assert lines[0] == "ngram: starting spec engine (target)"
    assert lines[1].startswith("ngram: spec engine started in ") and lines[1].endswith(" s")
    assert any(line.startswith("ngram: spec T=0.8") for line in lines)


def test_repeats_interleave_spec_and_vanilla_when_both_fit():
    order = []
    factory = FakeFactory()
    measurer = Measurer(EnginePool({"offline": factory}, max_live=2), progress=order.append)
    result = measurer.measure(make_config(run={"repeats": 3}, temperatures=[0.0]))
    sides = [line.split()[1] for line in order if line.endswith(")") and " T=0 " in line]
    assert sides == ["vanilla", "spec", "spec", "vanilla", "vanilla", "spec"]  # ABBA: linear drift cancels
    run = result.runs[0]
    assert run.spec.num_requests == 12 and {s.repeat for s in run.spec.samples} == {0, 1, 2}
    assert run.num_drafts == 36 and run.spec.duration_s == 3.0
    # each repeat samples anew: request i of repeat r has seed r * n + i, the same on both sides
    assert sorted(s.seed for s in run.spec.samples if s.repeat == 1) == [4, 5, 6, 7]
    assert [s.seed for s in run.spec.samples] == [s.seed for s in run.vanilla.samples]


def test_repeats_run_in_blocks_when_only_one_engine_fits():
    order = []
    Measurer(EnginePool({"offline": FakeFactory()}, max_live=1), progress=order.append).measure(
        make_config(run={"repeats": 2}, temperatures=[0.0])
    )
    sides = [line.split()[1] for line in order if line.endswith(")") and " T=0 " in line]
    assert sides == ["spec", "spec", "vanilla", "vanilla"]  # vanilla last: it scores both sides


def test_server_mode_measures_every_load_level():
    factory = FakeFactory()
    config = make_config(run={"mode": "server"}, temperatures=[0.0], concurrency=[1, 4], request_rate=[2.0])
    result = Measurer(EnginePool({"server": factory})).measure(config)
    assert [(r.concurrency, r.request_rate) for r in result.runs] == [(1, None), (4, None), (None, 2.0)]
    assert [r.label for r in result.runs] == ["ngram T=0 c=1", "ngram T=0 c=4", "ngram T=0 rate=2"]
    assert all(r.mode == "server" for r in result.runs)


def test_an_interrupt_keeps_the_conditions_whose_windows_had_all_finished():
    factory = FakeFactory()

    def interrupted_at_the_sampled_condition(spec):
        engine = factory(spec)
        generate = engine.generate

        def generate_until_sampled(prompts, sampling, load=None):
            if sampling.temperature > 0 and sampling.max_tokens == 8:  # the warmup runs at T=0
                raise KeyboardInterrupt("received SIGTERM")
            return generate(prompts, sampling, load)

        engine.generate = generate_until_sampled
        return engine

    measurer = Measurer(EnginePool({"offline": interrupted_at_the_sampled_condition}, max_live=2))
    with pytest.raises(MeasurementInterrupted) as caught:
        measurer.measure(make_config())
    assert isinstance(caught.value, KeyboardInterrupt) and caught.value.total == 2
    assert str(caught.value) == "received SIGTERM"  # what pytest prints is still the signal's message
    (greedy,) = caught.value.partial.runs
    assert greedy.temperature == 0.0 and greedy.num_drafts == 12 and greedy.outputs_match == 1.0


def test_an_inconclusive_gate_gets_more_windows_for_its_condition_only_up_to_the_budget():
    """Sample until resolved: one window cannot decide a speedup gate; the next look (3 windows of a
    budget of 4) can, so T=0 stops there, and T=0.8, which no gate reads, keeps its one window."""
    from pytest_specdecode.gates.kinds import parse_gate

    said = []
    measurer = Measurer(EnginePool({"offline": FakeFactory()}, max_live=2), progress=said.append)
    gate = parse_gate("min_speedup", (1.5,), {"temperature": 0.0})
    result = measurer.measure(make_config(run={"repeats": 1, "max_repeats": 4}), [gate])
    greedy, sampled = result.runs
    assert (len(greedy.spec.windows), len(greedy.vanilla.windows), len(sampled.spec.windows)) == (3, 3, 1)
    assert greedy.window_order == "abba" and greedy.pairing is None
    assert greedy.interval_level == pytest.approx(1 - 0.01 / 3)  # alpha spent over the looks 1, 3 and 4
    assert any("min_speedup(1.5, temperature=0.0, metric=throughput) inconclusive after 1 windows; measuring up "
               "to 3 (max_repeats 4)" in line for line in said)
    assert {s.repeat for s in greedy.spec.samples} == {0, 1, 2}


def test_a_gate_that_stays_inconclusive_stops_at_the_budget_and_one_with_no_figure_takes_nothing():
    from pytest_specdecode.gates.kinds import parse_gate

    config = make_config(run={"repeats": 1, "max_repeats": 2}, temperatures=[0.0])
    speedup = Measurer(EnginePool({"offline": FakeFactory()}, max_live=1)).measure(config, [parse_gate("min_speedup", (1.5,), {})])
    run, = speedup.runs
    assert len(run.spec.windows) == 2 and run.window_order == "blocks"  # two windows: still no interval
    assert run.pairing == "windows in blocks (one engine at a time)"
    no_figure = Measurer(EnginePool({"offline": FakeFactory()}, max_live=1)).measure(
        config, [parse_gate("min_acceptance", (0.5,), {"position": 9})])  # K = 3: no position 9 to measure
    assert len(no_figure.runs[0].spec.windows) == 1



def test_windows_record_their_repeat_place_in_the_order_and_engine_start():
    """The plan's facts travel with the windows: ABBA shows as alternating sides in `sequence`."""
    factory = FakeFactory()
    result = Measurer(EnginePool({"offline": factory}, max_live=2)).measure(make_config(run={"repeats": 2}, temperatures=[0.0]))
    [run] = result.runs
    assert run.window_order == "abba"
    assert [w.repeat for w in run.spec.windows] == [w.repeat for w in run.vanilla.windows] == [0, 1]
    order = sorted([(w.sequence, side) for side in ("spec", "vanilla") for w in getattr(run, side).windows])
    assert [side for _, side in order] == ["vanilla", "spec", "spec", "vanilla"]  # ABBA
    assert {w.engine_start for w in run.spec.windows} != {w.engine_start for w in run.vanilla.windows}
    assert None not in {w.engine_start for w in run.spec.windows + run.vanilla.windows}


def test_a_k_sweep_measures_each_k_on_its_own_engine_against_one_vanilla_side():
    factory = FakeFactory()
    config = make_config(temperatures=[0.0])
    sweep = config.model_copy(update={"speculative": config.speculative.model_copy(update={"num_speculative_tokens": [1, 3]})})
    result = Measurer(EnginePool({"offline": factory})).measure(sweep)
    assert [run.condition.label for run in result.runs] == ["T=0 K=1", "T=0 K=3"]
    assert [run.num_speculative_tokens for run in result.runs] == [1, 3]
    assert [run.baseline.source for run in result.runs] == ["measured", "memo"]  # vanilla measured once
    spec_engines = [e.spec.speculative_config["num_speculative_tokens"] for e in factory.engines if e.spec.speculative_config]
    assert spec_engines == [1, 3]
    assert set(result.engine_start_s) == {"spec K=1", "vanilla K=1", "spec K=3"}
    assert [run.label for run in result.select(k=3)] == ["ngram T=0 K=3"]


def test_two_engines_by_default_only_where_every_config_leaves_room_for_them():
    from pytest_specdecode.engines.pool import engines_that_fit

    assert engines_that_fit([0.2, 0.45]) == 2
    assert engines_that_fit([0.2, None]) == 1  # vLLM's default, 0.9, leaves room for one
    assert engines_that_fit([0.5]) == 1 and engines_that_fit([]) == 1


def test_the_sessions_engines_stop_at_once():
    """Was: one after the other, each waiting ~5 s for its processes to exit. Each fake's close
    waits for the other's to start: stopped in turn, the first one's wait breaks."""
    both = threading.Barrier(2, timeout=10)
    factory = FakeFactory()
    pool = EnginePool({"offline": factory}, max_live=2)
    Measurer(pool).measure(make_config())
    for engine in factory.engines:
        engine.close = both.wait
    pool.close_all()
    assert both.n_waiting == 0 and not both.broken
    assert pool.live() == []


def test_engine_stops_are_timed_apart_from_starts(monkeypatch):
    """Was: stopping an engine to make room was billed as the next one's start (and the session's
    last stops as `other`). Each fake stop here takes 0.5 s; starts take none."""
    monkeypatch.setattr(FakeEngine, "close", lambda self: time.sleep(0.5))
    factory = FakeFactory()
    measurer = Measurer(EnginePool({"offline": factory}, max_live=1))
    measurer.measure(make_config())
    assert measurer.seconds["engine_stop"] >= 0.5 > measurer.seconds["engine_start"]
