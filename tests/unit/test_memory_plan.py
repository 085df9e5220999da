"""The memory arithmetic checked against published figures: Meta's parameter counts, the KV cache
per token of Llama-3.1-8B, and the seed article's 70B + 8B case on 2xH100 and 2xH200."""

import pytest

from pytest_specdecode.config.memory import GIB, kv_bytes_per_token, parameter_count, plan_memory, weight_bytes

LLAMA_3_70B = {"hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80, "num_attention_heads": 64,
               "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
LLAMA_3_1_8B = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": False}
LLAMA_3_2_1B = {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                "num_key_value_heads": 8, "vocab_size": 128256, "tie_word_embeddings": True}
#: What nvidia-smi shows for the cards sold as "80 GB" and "141 GB" (the H200's also seen in this workplace).
H100_GIB = 81559 / 1024
H200_GIB = 143771 / 1024


def test_parameter_counts_match_the_published_models():
    """70,553,706,496 and 8,030,261,248 are the counts Meta publishes; the 1B ties its LM head to the
    embedding (1,235,814,400), which is counted once."""
    assert parameter_count(LLAMA_3_70B) == 70_553_706_496
    assert parameter_count(LLAMA_3_1_8B) == 8_030_261_248
    assert parameter_count(LLAMA_3_2_1B) == 1_235_814_400


def test_bf16_weights_are_two_bytes_a_parameter():
    """~141 GB for the 70B and ~16 GB for the 8B: the article's "~140GB" and "~16GB"."""
    assert weight_bytes(LLAMA_3_70B) / 1e9 == pytest.approx(141.1, abs=0.05)
    assert weight_bytes(LLAMA_3_1_8B) / 1e9 == pytest.approx(16.06, abs=0.005)


def test_kv_cache_per_token():
    """Llama-3.1-8B in bf16: 2 (K, V) x 32 layers x 8 KV heads x 128 x 2 bytes = 128 KiB a token;
    at TP=2 each GPU holds half the heads, and with more ranks than KV heads each keeps one."""
    assert kv_bytes_per_token(LLAMA_3_1_8B) == 131072
    assert kv_bytes_per_token(LLAMA_3_1_8B, tensor_parallel_size=2) == 65536
    assert kv_bytes_per_token(LLAMA_3_1_8B, tensor_parallel_size=16) == 131072 // 8


def test_an_explicit_head_dim_wins_over_hidden_over_heads():
    """Some configs (Gemma, Qwen3) set head_dim apart from hidden_size / num_attention_heads."""
    assert kv_bytes_per_token({**LLAMA_3_1_8B, "head_dim": 256}) == 2 * kv_bytes_per_token(LLAMA_3_1_8B)


def test_the_articles_case_in_its_own_units():
    """Read as the article reads the cards (80 and 141 decimal GB each), 70B + 8B is ~157 GB of
    weights: 2.8 GB left on 2x80 GB, which the TP=1 draft overflows on the first GPU, and ~125 GB
    left on 2x141 GB (the article's "~126GB")."""
    h100 = plan_memory(LLAMA_3_70B, LLAMA_3_1_8B, gpus=2, gpu_memory_gib=80e9 / GIB, draft_tensor_parallel_size=1)
    h200 = plan_memory(LLAMA_3_70B, LLAMA_3_1_8B, gpus=2, gpu_memory_gib=141e9 / GIB, draft_tensor_parallel_size=1)
    assert h100.weight_bytes / 1e9 == pytest.approx(157.2, abs=0.05)
    assert h100.left_before_utilization / 1e9 == pytest.approx(2.8, abs=0.05)
    assert not h100.fits and h100.kv_tokens == 0
    assert h200.left_before_utilization / 1e9 == pytest.approx(124.8, abs=0.05)
    assert h200.fits


def test_a_tp1_draft_binds_on_the_first_gpu():
    """On real H100s (79.65 GiB each) at the article's 0.92, half the 70B plus the whole 8B is
    80.7 GiB on GPU 0: no KV cache at all, though the two cards together have 13.9 GB to spare."""
    plan = plan_memory(LLAMA_3_70B, LLAMA_3_1_8B, gpus=2, gpu_memory_gib=H100_GIB, gpu_memory_utilization=0.92,
                       draft_tensor_parallel_size=1)
    assert plan.weights_per_gpu / GIB == pytest.approx(80.67, abs=0.01)
    assert plan.left_before_utilization / 1e9 == pytest.approx(13.9, abs=0.05)
    assert plan.kv_bytes_per_gpu < 0 and not plan.fits


def test_the_draft_costs_kv_tokens_one_for_one_and_more():
    """On 2xH200 the draft's weights come out of the KV budget and its own KV cache makes each
    token dearer: 416k tokens without it, 177k with a TP=1 draft, 262k with a TP=2 one."""
    def tokens(draft, draft_tp=None):
        return plan_memory(LLAMA_3_70B, draft, gpus=2, gpu_memory_gib=H200_GIB, gpu_memory_utilization=0.92,
                           draft_tensor_parallel_size=draft_tp).kv_tokens

    assert tokens(None) == 415_897
    assert tokens(LLAMA_3_1_8B, 1) == 176_595
    assert tokens(LLAMA_3_1_8B) == tokens(LLAMA_3_1_8B, 2) == 262_060


def test_per_token_kv_adds_the_drafts_share_on_the_busiest_gpu():
    """Target at TP=2 (4 of 8 KV heads a GPU: 160 KiB) plus a TP=1 draft's whole 128 KiB."""
    plan = plan_memory(LLAMA_3_70B, LLAMA_3_1_8B, gpus=2, gpu_memory_gib=H200_GIB, draft_tensor_parallel_size=1)
    assert plan.kv_bytes_per_token == 163840 + 131072
