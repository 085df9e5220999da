"""Numbers that must be right, not just present, on real vLLM CPU engines."""

import json

SELF_DRAFT = """
[model]
name = "builtin:smollm2-135m"
max_model_len = 1024
gpu_memory_utilization = 0.2
seed = 0

[speculative]
method = "draft_model"
model = "builtin:smollm2-135m"
num_speculative_tokens = 2

[workload]
prompts = "builtin:copy"
num_prompts = 4
max_tokens = 24
temperatures = [0.0]

[run]
warmup = 1
"""


def test_the_model_as_its_own_draft_accepts_everything_and_requests_add_up_to_the_counters(pytester):
    """An identical draft at T=0 must be accepted (>= 0.99); each request's accepted tokens, read from
    its stream of steps, must sum to vLLM's counter (a draft model drafts at every step)."""
    config = pytester.path / "self-draft.toml"
    config.write_text(SELF_DRAFT)
    report = pytester.path / "self.json"
    pytester.makepyfile("import pytest\n\n@pytest.mark.min_acceptance(0.99)\n@pytest.mark.lossless\ndef test_self(spec_run):\n    pass\n")
    result = pytester.runpytest(f"--spec-config={config}", f"--spec-report={report}")
    result.assert_outcomes(passed=1)
    run = json.loads(report.read_text())["runs"][0]
    assert run["acceptance_rate"] >= 0.99 and run["outputs_match"] == 1.0
    per_request = [sum(chunk - 1 for chunk in s["chunk_tokens"][1:]) for s in run["spec"]["samples"]]
    assert sum(per_request) == run["num_accepted_tokens"]


def test_two_live_offline_engines_each_read_their_own_counters(pytester, tiny_toml, engines_stopped):
    """vLLM's Prometheus registry is process-global and each new engine replaces the last one's
    metrics: a spec engine measured after the vanilla engine started must still see its drafts."""
    pytester.makepyfile(
        """
        import pytest

        def test_1_spec_engine_first(spec_engine):
            pass

        def test_2_then_the_vanilla_engine(vanilla_engine):
            pass

        @pytest.mark.min_acceptance(0.3)
        def test_3_measure_with_both_live(spec_run):
            assert spec_run.runs[0].valid, spec_run.runs[0].invalid_reason
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--spec-config={tiny_toml}", "--spec-max-engines=2",
                                           timeout=900)
    result.assert_outcomes(passed=3)
