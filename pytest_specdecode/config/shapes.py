"""Production-shaped models without weights: `builtin:llama-3.1-8b-shape` and friends.

Users gate 8B-70B targets, and no hub is reachable from many runners. vLLM's `load_format =
"dummy"` builds a model from its config.json alone, with random weights: every step costs what the
real model's would (same layers, heads, KV per token), while what the model *says* is noise, so
acceptance, per-position acceptance and lossless figures mean nothing there. The shapes are the
published Hugging Face configs' (layers, widths, heads); the vocabulary is SmolLM2's (49,152
tokens), whose tokenizer the folder borrows, so the embedding and LM head are smaller than the
real 128,256-token ones (about 0.6 B parameters fewer at 8B).
"""

from __future__ import annotations

from typing import Any

#: name -> the Llama config fields that give the shape (the rest are common to all, in `config_json`).
SHAPED_MODELS: dict[str, dict[str, Any]] = {
    "llama-3.1-8b-shape": {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                           "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False},
    "llama-3.2-1b-shape": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                           "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": True},
    "llama-3-70b-shape": {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
                          "num_attention_heads": 64, "num_key_value_heads": 8, "tie_word_embeddings": False},
}

#: The engine argument that builds a model from its config with random weights.
RANDOM_WEIGHTS_LOAD_FORMAT = "dummy"

#: SmolLM2's vocabulary and special tokens: the tokenizer a shaped model borrows.
_TOKENIZER_FIELDS = {"vocab_size": 49152, "bos_token_id": 1, "eos_token_id": 2}


def is_shaped(name: str | None, prefix: str = "builtin:") -> bool:
    return bool(name) and name.startswith(prefix) and name.removeprefix(prefix) in SHAPED_MODELS


def config_json(short: str) -> dict[str, Any]:
    """A Llama config.json of the named shape, bf16, with SmolLM2's vocabulary."""
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "bfloat16",
        "hidden_act": "silu", "rms_norm_eps": 1e-5, "rope_theta": 500000.0, "max_position_embeddings": 8192,
        "attention_bias": False, "mlp_bias": False, "initializer_range": 0.02,
        **_TOKENIZER_FIELDS, **SHAPED_MODELS[short],
    }
