"""A target built with random weights (`load_format = "dummy"`) on real vLLM CPU engines: step
costs measured, acceptance never judged, and the decision turned into what real weights would need."""

import json

RANDOM = """
[model]
name = "builtin:smollm2-135m"
load_format = "dummy"
max_model_len = 512
gpu_memory_utilization = 0.1
seed = 0

[speculative]
method = "ngram"
num_speculative_tokens = 2
prompt_lookup_min = 2
prompt_lookup_max = 3

[workload]
prompts = "builtin:copy"
num_prompts = 4
max_tokens = 16
ignore_eos = true
temperatures = [0.0]

[run]
warmup = 1
repeats = 1
"""

GATES = """
import pytest


@pytest.mark.min_acceptance(0.01)
def test_acceptance(spec_run):
    pass
"""


def test_random_weights_are_measured_for_step_costs_and_never_judged_on_acceptance(pytester, shared_engines):
    config = pytester.path / "random.toml"
    config.write_text(RANDOM)
    report = pytester.path / "random.json"
    pytester.makepyfile(test_random=GATES)
    result = pytester.runpytest(f"--spec-config={config}", f"--spec-report={report}", plugins=[shared_engines])
    result.assert_outcomes(failed=1)  # inconclusive fails its test by default, whatever acceptance was drawn
    result.stdout.fnmatch_lines(["*not meaningful with random weights (load_format = \"dummy\")*"])
    data = json.loads(report.read_text())
    [run] = data["runs"]
    assert run["random_weights"] and "random_weights" in {w["code"] for w in run["warnings"]}
    # the step cost stands: vLLM's step counts and the windows' time
    assert run["step_cost_ratio"] > 0 and all(w["engine_steps"] > 0 for w in run["spec"]["windows"])
    [gate] = data["gates"]
    assert gate["outcome"] == "inconclusive"
    statements = data["decision"]["random"]
    assert not any(s["advice"] in ("use", "leave off") for s in statements if s["where"] == "T=0")
    assert any("real weights pay above" in s["text"] or "would not pay" in s["text"] for s in statements)
