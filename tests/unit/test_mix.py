"""A mixed-temperature batch: requests at several temperatures interleaved in one load, reported
and gated temperature by temperature against the same requests on vanilla."""

from pathlib import Path

import pytest

from pytest_specdecode.config.spec import ConfigError, parse_config
from pytest_specdecode.engines.pool import EnginePool
from pytest_specdecode.gates.kinds import GateUsageError, judge, parse_gate
from pytest_specdecode.measure.measurer import Measurer
from pytest_specdecode.measure.plan import conditions

from .fakes import FakeFactory

MIX = [{"temperature": 1.0, "share": 0.4}, {"temperature": 0.1, "share": 0.6}]


def config(mix=MIX, num_prompts=10):
    raw = {"model": {"name": "target"}, "speculative": {"method": "ngram", "num_speculative_tokens": 3},
           "workload": {"prompts": "builtin:chat", "num_prompts": num_prompts, "max_tokens": 8, "temperatures": [0.0],
                        "temperature_mix": mix},
           "run": {"warmup": 0, "repeats": 1}}
    return parse_config(raw, Path("/c/mixed.toml"))


def test_the_mix_is_interleaved_at_its_shares():
    pattern = config().workload.mix_pattern()
    assert pattern.count(0.1) == 6 and pattern.count(1.0) == 4
    assert pattern[:5] == (0.1, 1.0, 0.1, 1.0, 0.1)  # every stretch of the batch is mixed


@pytest.mark.parametrize(("mix", "message"), [
    ([{"temperature": 0.1, "share": 1.0}], "two or more distinct temperatures"),
    ([{"temperature": 0.1, "share": 0.5}, {"temperature": 0.1, "share": 0.5}], "two or more distinct temperatures"),
    ([{"temperature": 0.1, "share": 0.5}, {"temperature": 1.0, "share": 0.4}], "the shares must sum to 1, got 0.9"),
])
def test_a_bad_mix_is_a_config_error(mix, message):
    with pytest.raises(ConfigError, match=message):
        config(mix)


def test_the_mix_is_one_more_run_whose_requests_sample_at_their_own_temperature():
    factory = FakeFactory()
    result = Measurer(EnginePool({"offline": factory})).measure(config())
    plain, mixed = result.runs
    assert plain.condition.label == "T=0" and mixed.condition.label == "T=mix(0.1:60%, 1:40%)"
    assert [s.temperature for s in mixed.spec.samples] == list(conditions(config())[1].sampling.mix)
    assert [b.temperature for b in mixed.temperature_buckets] == [0.1, 1.0]
    assert [b.requests for b in mixed.temperature_buckets] == [6, 4]
    assert result.select(temperature=1.0) == []  # a mix is no one temperature's run
    [bucket] = judge(parse_gate("max_p99_regression", (0.5,), {"bucket": 1.0}), result)
    assert bucket.run == "mixed T=mix(0.1:60%, 1:40%) bucket T=1"


def test_a_bucket_gate_reads_only_per_request_figures():
    with pytest.raises(GateUsageError, match="only per-request figures"):
        parse_gate("min_speedup", (1.0,), {"bucket": 1.0})
    with pytest.raises(GateUsageError, match="only per-request figures"):
        parse_gate("min_acceptance", (0.5,), {"bucket": 1.0})
    assert parse_gate("min_acceptance", (0.5,), {"bucket": 1.0, "percentile": 50}).bucket == 1.0


def test_an_undecided_bucket_gate_measures_more_windows_of_its_batch():
    """Was a KeyError: the bucket's verdict names the bucket, the plan knows only the batch."""
    gate = parse_gate("max_p99_regression", (0.5,), {"bucket": 1.0})  # 4 requests a window: P99 not judged yet
    mixed = config()
    mixed = mixed.model_copy(update={"run": mixed.run.model_copy(update={"max_repeats": 3})})
    result = Measurer(EnginePool({"offline": FakeFactory()})).measure(mixed, [gate])
    assert len(result.runs[1].spec.windows) == 3
