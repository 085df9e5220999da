"""Gates that hold on a production-shaped target with random weights (`load_format = "dummy"`).

    SPECDECODE_MODEL_DIR=/tmp/models pytest --spec-config=examples/gpu-8b-draft.toml examples/gpu/

(A folder of its own: `pytest examples/test_gates.py` with a CPU config, as `make demo` runs, does
not collect these; with real weights the last test would fail, as it should.)

Random weights make real step costs and memory, and noise for text: gate what the draft costs
(its KV capacity, how much a speculative step costs against a vanilla one) and leave acceptance and
losslessness to a run on real weights. A `min_acceptance` here would read inconclusive, with the
reason, and fail its test (unless `--spec-inconclusive=warn`). The terminal's decision section
says above what per-token acceptance real weights would pay for the measured step cost.
"""

import pytest

from pytest_specdecode import GateFailure, assert_min_acceptance


# A 1B draft beside an 8B target costs more than its weights: its own KV cache per token (16
# layers x 8 KV heads x 64 dims, a quarter of the 8B's 32 x 8 x 128) shrinks every token's share,
# so 1 - 1/1.25 = 20 % of the tokens go before the ~2 GB of weights take theirs. An H200 at
# gpu_memory_utilization = 0.42 measured 26-27 % (benchmarks/results/h200-8b-draft*.json): a
# config that lost more would be carrying a larger draft, or a draft KV layout that grew.
@pytest.mark.max_kv_capacity_loss(0.30)
def test_the_draft_leaves_the_target_its_kv_cache(spec_run):
    pass


def test_acceptance_is_not_judged_on_random_weights(spec_run):
    """The plugin refuses to judge noise: an acceptance gate any real draft should pass is
    inconclusive here, never a pass."""
    with pytest.raises(GateFailure, match="not meaningful with random weights"):
        assert_min_acceptance(spec_run, 0.01, temperature=0.0)
