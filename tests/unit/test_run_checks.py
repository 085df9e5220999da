"""What makes a run invalid or flagged: missing ids, impossible counters, short windows, a busy client."""

from pathlib import Path

from pytest_specdecode.config.spec import RunSection, parse_config
from pytest_specdecode.engines.pool import EnginePool
from pytest_specdecode.measure.checks import counter_problem, invalid_reason, outputs_match, run_warnings, speedup_basis
from pytest_specdecode.measure.measurer import Measurer
from pytest_specdecode.results import EngineFigures, RequestSample, SpecCounters, Window

from .fakes import FakeFactory

COUNTERS = SpecCounters(num_drafts=10, num_draft_tokens=30, num_accepted_tokens=12, accepted_per_position=[8, 3, 1])


def sample(ids=(1, 2, 3), tokens=None):
    return RequestSample(prompt_tokens=3, output_tokens=len(ids) if tokens is None else tokens, ttft_s=0.1, e2e_s=1.0,
                         output_token_ids=list(ids))


def side(n=4, tokens=10, duration=5.0, engine_tokens=None, lag=None, cpu=None, reset=True):
    samples = [sample(range(tokens)) for _ in range(n)]
    window = Window(duration_s=duration, output_tokens=n * tokens, prefix_cache_reset=reset,
                    engine_generation_tokens=n * tokens if engine_tokens is None else engine_tokens,
                    client_lag_ms=lag, client_cpu_s=cpu)
    return EngineFigures(samples=samples, duration_s=duration, windows=[window])


def codes(spec, vanilla, **run):
    return {w.code for w in run_warnings(spec, vanilla, RunSection(**run))}


def test_missing_token_ids_on_either_side_are_not_measured_never_a_match_or_mismatch():
    with_ids, without = [sample(), sample()], [sample((), tokens=3), sample((), tokens=3)]
    assert outputs_match(with_ids, without) is None  # was 0.0: a false "not lossless"
    assert outputs_match(without, without) is None  # was 1.0: a false "lossless"
    assert outputs_match(with_ids, [sample(), sample((1, 2, 4))]) == 0.5


def test_impossible_counter_deltas_invalidate_the_run():
    assert counter_problem(COUNTERS) is None
    restarted = COUNTERS.minus(COUNTERS.model_copy(update={"num_drafts": 20}))
    assert "went down" in counter_problem(restarted)
    foreign = COUNTERS.model_copy(update={"num_accepted_tokens": 31, "accepted_per_position": [10, 10, 11]})
    assert "31 accepted of 30 drafted" in counter_problem(foreign)
    assert "restarted" in invalid_reason(restarted, side(), side(), 3.0)


def test_engine_token_count_that_disagrees_with_the_client_invalidates_the_run():
    """Foreign traffic on an endpoint: the engine generated more than this client received."""
    assert invalid_reason(COUNTERS, side(), side(), 3.0) is None
    reason = invalid_reason(COUNTERS, side(), side(engine_tokens=55), 3.0)
    assert "vanilla engine generated 55 tokens" in reason and "received 40" in reason


def test_short_windows_few_requests_and_a_busy_client_are_flagged():
    assert codes(side(n=20), side(n=20)) == set()
    assert "short_window" in codes(side(n=20, duration=0.4), side(n=20))
    assert codes(side(n=20, duration=0.4), side(n=20), min_window_s=0.1) == set()
    assert codes(side(n=4), side(n=4)) == {"few_requests_for_p99"}
    assert "client_bound" in codes(side(n=20, lag=120.0, cpu=0.5), side(n=20))
    assert "client_bound" in codes(side(n=20, lag=5.0, cpu=4.5, duration=5.0), side(n=20))
    assert "prefix_cache_warm" in codes(side(n=20, reset=False), side(n=20))


def test_unequal_output_lengths_are_stated_and_flagged():
    """At T>0 with EOS honoured the sides stop at different lengths: say what the speedup compares."""
    equal, short = side(n=20, tokens=25), side(n=20, tokens=22)
    assert speedup_basis(equal, equal).startswith("output tokens/s, equal lengths (500 spec vs 500 vanilla")
    assert "unequal lengths (440 spec vs 500 vanilla" in speedup_basis(short, equal)
    assert "unequal_lengths" in codes(short, equal)


def test_every_window_starts_with_an_empty_prefix_cache_and_is_recorded():
    factory = FakeFactory()
    raw = {
        "model": {"name": "target", "dtype": "float32"},
        "speculative": {"method": "ngram", "num_speculative_tokens": 3},
        "workload": {"prompts": "builtin:chat", "num_prompts": 4, "max_tokens": 8, "temperatures": [0.0]},
        "run": {"repeats": 2},
    }
    result = Measurer(EnginePool({"offline": factory}, max_live=2)).measure(parse_config(raw, Path("/c/a.toml")))
    assert [engine.resets for engine in factory.engines] == [2, 2]
    run = result.runs[0]
    assert [w.prefix_cache_reset for w in run.spec.windows + run.vanilla.windows] == [True] * 4
    assert [w.engine_generation_tokens for w in run.spec.windows] == [w.output_tokens for w in run.spec.windows]
    assert run.engine_args == {"dtype": "float32"}  # the report says how the engines ran
    assert run.speculative_config["method"] == "ngram"


def test_a_setting_the_engine_resolved_otherwise_is_a_named_warning():
    from types import SimpleNamespace

    from pytest_specdecode.engines.base import EngineSpec
    from pytest_specdecode.engines.vllm_info import resolved
    from pytest_specdecode.measure.checks import config_warnings

    vllm_config = SimpleNamespace(
        speculative_config=SimpleNamespace(method="draft_model", num_speculative_tokens=4, draft_tensor_parallel_size=2),
        parallel_config=SimpleNamespace(tensor_parallel_size=2, pipeline_parallel_size=1, data_parallel_size=1),
    )
    found = resolved(vllm_config)
    assert found == {"speculative": {"method": "draft_model", "num_speculative_tokens": 4, "draft_tensor_parallel_size": 2},
                     "parallel": {"tensor_parallel_size": 2, "pipeline_parallel_size": 1, "data_parallel_size": 1}}
    side = EngineSpec("m", {"tensor_parallel_size": 2}, {"method": "draft_model", "num_speculative_tokens": 4,
                                                         "draft_tensor_parallel_size": 1})
    [warning] = config_warnings(side, found)
    assert warning.code == "config_not_applied"
    assert warning.message.startswith("[speculative] draft_tensor_parallel_size = 1, the engine resolved 2")
    assert config_warnings(side, None) == []
    assert config_warnings(EngineSpec("m", {}, {"method": "draft_model", "num_speculative_tokens": 4}), found) == []


def test_a_servers_resolved_config_is_read_from_its_server_info():
    """Was `resolved_config: null` for every server-mode run: a setting `vllm serve` ignored went
    unnoticed. vLLM's dev-mode `/server_info?config_format=json` serialises the whole config."""
    from pytest_specdecode.engines.vllm_info import resolved_from_json

    served = {"speculative_config": {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4,
                                     "target_model_config": {"model": "m"}},
              "parallel_config": {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "data_parallel_size": 2,
                                  "world_size": 1}}
    assert resolved_from_json(served) == {
        "speculative": {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_max": 4},
        "parallel": {"tensor_parallel_size": 1, "pipeline_parallel_size": 1, "data_parallel_size": 2}}
    assert resolved_from_json({"parallel_config": {"tensor_parallel_size": 1}})["speculative"] is None
