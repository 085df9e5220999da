from pytest_specdecode.engines.metrics import parse_counters, parse_kv_cache_tokens
from tests.unit.fake_openai import METRICS, VANILLA_METRICS


def test_spec_counters_from_metrics_text():
    counters = parse_counters(METRICS).spec
    assert (counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens) == (40, 120, 60)
    assert counters.accepted_per_position == [30, 20, 10]


def test_spec_counters_sum_over_engines():
    lines = []
    for line in METRICS.splitlines():
        lines.append(line)
        if line.startswith("vllm:spec_decode"):
            lines.append(line.replace('engine="0"', 'engine="1"'))
    two_engines = "\n".join(lines)
    counters = parse_counters(two_engines).spec
    assert (counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens) == (80, 240, 120)
    assert counters.accepted_per_position == [60, 40, 20]


def test_vanilla_metrics_give_zero_counters_and_no_cache_size():
    counters = parse_counters(VANILLA_METRICS).spec
    assert (counters.num_drafts, counters.num_draft_tokens, counters.accepted_per_position) == (0, 0, [])
    assert parse_kv_cache_tokens(VANILLA_METRICS) is None


def test_kv_cache_tokens_from_cache_config_info():
    assert parse_kv_cache_tokens(METRICS) == 2048 * 16
    assert parse_kv_cache_tokens(METRICS.replace('num_gpu_blocks="2048"', 'num_gpu_blocks="None"')) is None
