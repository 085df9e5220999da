"""Does a target and its draft fit the GPUs, and how much KV cache is left: the arithmetic behind
the seed article's 2xH100 vs 2xH200 case (a 70B bf16 target + an 8B bf16 draft, ~156 GB of
weights: "doesn't fit" on 2x80 GB, "~126 GB for KV cache" on 2x141 GB).

vLLM sizes its KV cache as GPU memory x `gpu_memory_utilization` - weights, so a draft's weights come
out of the KV cache, and its own KV cache costs more per token on top (for an 8B target with a 1B
draft the larger part: 20 of the 26 % an H200 measured). The plan works
that out per GPU, because that is where it binds: a TP=1 draft sits on the target's first GPU
alone. It counts weights and KV cache only (vLLM also reserves activations and CUDA graphs), so
the KV figures are an upper bound.

Units: the article subtracts decimal weight gigabytes from the cards' marketing sizes, which are
closer to GiB (an H200 "141 GB" shows 143,771 MiB = 150.8 GB): bytes throughout here, GiB for
cards, so the same arithmetic leaves more room than the article says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

GIB = 2**30
BF16_BYTES = 2


def parameter_count(config: Mapping[str, Any]) -> int:
    """The parameters of a Llama-style Hugging Face config.json (no biases): embedding and LM head
    (one matrix when tied), per layer the attention projections (grouped-query: K and V have
    `num_key_value_heads`), the gated MLP's three matrices and two norms, and the final norm."""
    hidden, layers = config["hidden_size"], config["num_hidden_layers"]
    q_width = config["num_attention_heads"] * _head_dim(config)
    kv_width = config["num_key_value_heads"] * _head_dim(config)
    attention = 2 * hidden * q_width + 2 * hidden * kv_width
    mlp = 3 * hidden * config["intermediate_size"]
    embeddings = config["vocab_size"] * hidden * (1 if config.get("tie_word_embeddings", False) else 2)
    return embeddings + layers * (attention + mlp + 2 * hidden) + hidden


def weight_bytes(config: Mapping[str, Any], dtype_bytes: int = BF16_BYTES) -> int:
    return parameter_count(config) * dtype_bytes


def kv_bytes_per_token(config: Mapping[str, Any], dtype_bytes: int = BF16_BYTES,
                       tensor_parallel_size: int = 1) -> int:
    """One token's K and V in every layer, on one GPU of `tensor_parallel_size`: the KV heads are
    split over the ranks, and replicated once there are more ranks than heads (as vLLM does)."""
    heads_per_gpu = max(1, config["num_key_value_heads"] // tensor_parallel_size)
    return 2 * config["num_hidden_layers"] * heads_per_gpu * _head_dim(config) * dtype_bytes


def _head_dim(config: Mapping[str, Any]) -> int:
    return config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]


@dataclass(frozen=True)
class MemoryPlan:
    """One engine's memory on its busiest GPU: the first, which holds a TP=1 draft alongside its
    share of the target. vLLM gives every rank as many KV blocks as the fullest one has room for."""

    gpus: int
    gpu_memory_bytes: int
    gpu_memory_utilization: float
    weight_bytes: int
    """Target and draft, all GPUs together: the article's "~156 GB"."""
    weights_per_gpu: int
    kv_bytes_per_token: int
    """On the busiest GPU: its share of the target's KV heads plus the draft's, when a draft runs."""

    @property
    def left_before_utilization(self) -> int:
        """All the GPUs' memory less all the weights: the article's "~126 GB for KV cache"."""
        return self.gpus * self.gpu_memory_bytes - self.weight_bytes

    @property
    def kv_bytes_per_gpu(self) -> int:
        """vLLM's KV budget on the busiest GPU; negative when the weights alone don't fit."""
        return int(self.gpu_memory_bytes * self.gpu_memory_utilization) - self.weights_per_gpu

    @property
    def kv_tokens(self) -> int:
        """Tokens of KV cache the engine can hold, over all requests in flight."""
        return max(0, self.kv_bytes_per_gpu // self.kv_bytes_per_token)

    @property
    def fits(self) -> bool:
        return self.kv_tokens > 0


def plan_memory(target: Mapping[str, Any], draft: Mapping[str, Any] | None = None, *, gpus: int,
                gpu_memory_gib: float, gpu_memory_utilization: float = 0.9,
                draft_tensor_parallel_size: int | None = None, dtype_bytes: int = BF16_BYTES) -> MemoryPlan:
    """The target split over `gpus` (its tensor-parallel size) and the draft on its own TP (vLLM's
    default: the target's), both in `dtype_bytes` per parameter and per KV element."""
    draft_tp = draft_tensor_parallel_size or gpus
    target_weights = weight_bytes(target, dtype_bytes)
    draft_weights = weight_bytes(draft, dtype_bytes) if draft else 0
    draft_kv = kv_bytes_per_token(draft, dtype_bytes, draft_tp) if draft else 0
    return MemoryPlan(
        gpus=gpus,
        gpu_memory_bytes=int(gpu_memory_gib * GIB),
        gpu_memory_utilization=gpu_memory_utilization,
        weight_bytes=target_weights + draft_weights,
        weights_per_gpu=target_weights // gpus + draft_weights // draft_tp,
        kv_bytes_per_token=kv_bytes_per_token(target, dtype_bytes, gpus) + draft_kv,
    )


def local_model_config(model: str) -> dict[str, Any] | None:
    """A local model folder's config.json, or None (a hub id, or a config this arithmetic cannot
    read: a non-Llama layout). Only the fields the arithmetic needs are required."""
    import json
    from pathlib import Path

    path = Path(model) / "config.json"
    try:
        found = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    needed = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
              "vocab_size")
    return found if isinstance(found, dict) and all(isinstance(found.get(k), int) for k in needed) else None
