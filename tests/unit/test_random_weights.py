"""Production-shaped targets with random weights (`load_format = "dummy"`): their folders, the
config error without it, and figures that are noise never gated or advised on as if real."""

import json

import pytest

from pytest_specdecode.config.models import MODEL_DIR_ENV, resolve_model
from pytest_specdecode.config.shapes import SHAPED_MODELS
from pytest_specdecode.config.spec import ConfigError, parse_config
from pytest_specdecode.gates.kinds import RANDOM_WEIGHTS_REASON, judge, parse_gate
from pytest_specdecode.results.decision import break_even_acceptance, decide, tokens_per_step

from .builders import result
from .test_decision import decomposed

SHAPED = {"model": {"name": "builtin:llama-3.1-8b-shape", "load_format": "dummy"},
          "speculative": {"method": "draft_model", "model": "builtin:llama-3.2-1b-shape", "num_speculative_tokens": 3}}


def test_a_shape_is_a_config_json_and_smollm2s_tokenizer_without_weights(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    smollm2 = tmp_path / "smollm2-135m"  # an already converted SmolLM2 folder
    smollm2.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "model.safetensors"):
        (smollm2 / name).write_text("{}")
    folder = resolve_model("builtin:llama-3.1-8b-shape")
    files = sorted(p.name for p in (tmp_path / "llama-3.1-8b-shape").iterdir())
    assert folder == str(tmp_path / "llama-3.1-8b-shape")
    assert files == ["chat_template.jinja", "config.json", "tokenizer.json", "tokenizer_config.json"]
    config = json.loads((tmp_path / "llama-3.1-8b-shape" / "config.json").read_text())
    # Llama-3.1-8B's published shape, with SmolLM2's vocabulary (its tokenizer's)
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_key_value_heads"]) == (4096, 32, 8)
    assert config["intermediate_size"] == 14336 and config["vocab_size"] == 49152
    assert config["architectures"] == ["LlamaForCausalLM"]


def test_a_shape_without_random_weights_is_a_one_line_config_error(tmp_path):
    raw = {**SHAPED, "model": {"name": "builtin:llama-3.1-8b-shape"}}
    with pytest.raises(ConfigError, match='builtin:llama-3.1-8b-shape has no weights .*set \\[model\\] load_format = "dummy"'):
        parse_config(raw, tmp_path / "eight.toml")
    assert parse_config(SHAPED, tmp_path / "eight.toml").random_weights
    assert set(SHAPED_MODELS) >= {"llama-3.1-8b-shape", "llama-3.2-1b-shape", "llama-3-70b-shape"}


def random_run(**kw):
    return decomposed(**kw).model_copy(update={"random_weights": True})


def test_acceptance_and_lossless_gates_on_random_weights_are_inconclusive_and_say_why():
    """Random weights accept a few percent of drafts: `min_acceptance(0.5)` would fail (and a
    0.01 threshold pass) on noise. Speed gates still judge: step costs are real."""
    measured = random_run()
    for kind, args in (("min_acceptance", (0.01,)), ("lossless", ())):
        [verdict] = judge(parse_gate(kind, args, {}), result(measured))
        assert verdict.outcome == "inconclusive" and RANDOM_WEIGHTS_REASON in verdict.message
    [speed] = judge(parse_gate("min_speedup", (1.5,), {}), result(measured))
    assert speed.outcome == "pass"  # identical windows at 2x: a zero-width interval above 1.5
    [real] = judge(parse_gate("min_acceptance", (0.01,), {}), result(decomposed()))
    assert real.outcome == "pass"


def test_random_weights_get_step_cost_arithmetic_not_advice_on_acceptance():
    slow = random_run(spec_duration=4.0, accepted=(1, 0, 0))  # a few drafts accepted, each step costly
    statements = decide([slow], [], 0.05, 0.15)
    assert all(s.advice == "why" for s in statements if s.where)  # no use / leave off on noise
    assert not any("acceptance" in s.text and "below" in s.text for s in statements)
    [needed] = [s.text for s in statements if "real weights pay above" in s.text or "would not pay" in s.text]
    cost = slow.step_cost_ratio
    found = break_even_acceptance(cost, 3)
    assert (found is None) == ("would not pay" in needed)
    if found is not None:
        assert tokens_per_step(found, 3) == pytest.approx(cost) and f"{found:.2f} at K=3" in needed


def test_break_even_acceptance_is_where_expected_tokens_per_step_meet_the_step_cost():
    assert tokens_per_step(0.5, 3) == pytest.approx(1.875)
    assert break_even_acceptance(1.875, 3) == pytest.approx(0.5)
    assert break_even_acceptance(0.95, 3) == 0.0  # a step no dearer than vanilla's pays at any acceptance
    assert break_even_acceptance(4.0, 3) is None  # K + 1 = 4 tokens a step at best: never pays


def test_no_tuning_advice_from_the_acceptance_of_random_weights():
    """An H200 run's max_kv_capacity_loss message advised "acceptance < 50%: lower
    num_speculative_tokens" from random weights' 0.000; and break-even said "leave off"."""
    from pytest_specdecode.gates.explain import advice
    from pytest_specdecode.results.break_even import BreakEven

    low = dict(accepted=(1, 0, 0))
    assert any("acceptance < 50%" in tip for tip in advice(decomposed(**low)))
    assert advice(random_run(**low)) == []
    found = BreakEven(temperature=0.0, axis="concurrency", metric="throughput", first_level_not_paying=1.0,
                      last_level_paying_before_it=None, speedup_at_first_level_not_paying=0.3, speedup_ci=(0.2, 0.4),
                      monotone=True, p99_tolerance=0.05, first_level_p99_regresses=None)
    [statement] = [s for s in decide([random_run(**low)], [found], 0.05, 0.15) if "stops paying" in s.text]
    assert statement.advice == "why" and statement.text.endswith("at the acceptance of random weights")


def test_the_kv_capacity_a_draft_costs_splits_into_its_kv_per_token_its_weights_and_the_rest(tmp_path):
    """An H200 (8B shape, 1B-shaped draft) lost 26.2 % of vanilla's KV tokens; the docs said the
    draft's weights came out one for one, and the split was nowhere. Here: vanilla 351,936 tokens
    and spec 259,616 (that run's figures) with the two shapes' configs."""
    from pytest_specdecode.config.shapes import config_json
    from pytest_specdecode.engines.base import EngineSpec
    from pytest_specdecode.measure.state import draft_memory
    from pytest_specdecode.report.sections import memory_lines

    for name in ("target", "draft"):
        (tmp_path / name).mkdir()
    (tmp_path / "target" / "config.json").write_text(json.dumps(config_json("llama-3.1-8b-shape")))
    (tmp_path / "draft" / "config.json").write_text(json.dumps(config_json("llama-3.2-1b-shape")))
    side = EngineSpec(str(tmp_path / "target"), {}, {"method": "draft_model", "model": str(tmp_path / "draft")})
    memory = draft_memory(side)
    assert (memory.target_kv_bytes_per_token, memory.draft_kv_bytes_per_token) == (131072, 32768)
    assert draft_memory(EngineSpec(str(tmp_path / "target"), {}, {"method": "ngram"})) is None
    measured = decomposed()
    measured = measured.model_copy(update={
        "draft_memory": memory,
        "spec": measured.spec.model_copy(update={"kv_cache_tokens": 259616}),
        "vanilla": measured.vanilla.model_copy(update={"kv_cache_tokens": 351936})})
    split = measured.kv_capacity_split
    assert split.draft_kv_per_token == pytest.approx(0.20)  # 32 KiB beside 128 KiB a token
    assert split.draft_weights == pytest.approx(2147618816 / (351936 * 131072) * 0.8)
    assert split.draft_kv_per_token + split.draft_weights + split.other == pytest.approx(1 - 259616 / 351936)
    [line] = memory_lines([result(measured)])
    assert line == ("cfg: 259,616 tokens vs vanilla's 351,936 (-26.2%): the draft's own KV per token 20.0%, its "
                    "weights 3.7%, the rest (its CUDA graphs, activations) 2.5%")
