"""What a streamed `/v1/completions` request asks for and what its SSE chunks say.

Continuous usage stats make every chunk carry the cumulative completion-token count, so the delta
per chunk is the 1 + accepted drafts of the engine step behind it, even when text is held back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..results import RequestSample
from ..results.figures import RequestSpecDecode
from .base import Sampling


@dataclass
class Stream:
    """What one streamed request has shown so far, in `time.perf_counter()` seconds."""

    sent: float
    scheduled: float | None = None
    seed: int | None = None
    temperature: float | None = None
    done: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    #: vLLM's own per-request metrics from the closing usage chunk, where the server was started with
    #: `--per-request-spec-decode-metrics` / `--enable-per-request-metrics`
    server_metrics: dict[str, Any] = field(default_factory=dict)

    def add(self, payload: dict[str, Any], now: float) -> None:
        choices = payload.get("choices") or []
        usage = payload.get("usage") or {}
        self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
        if not choices:  # the closing usage-only chunk
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
            self.server_metrics = payload.get("metrics") or {}
            return
        ids = choices[0].get("token_ids") or []
        self.token_ids += ids
        self.text += choices[0].get("text") or ""
        cumulative = usage.get("completion_tokens", self.completion_tokens + len(ids))
        new_tokens = cumulative - self.completion_tokens
        self.completion_tokens = cumulative
        if new_tokens > 0:
            self.chunk_times.append(now)
            self.chunk_tokens.append(new_tokens)

    def sample(self) -> RequestSample:
        times = self.chunk_times
        return RequestSample(
            prompt_tokens=self.prompt_tokens,
            output_tokens=self.completion_tokens,
            ttft_s=(times[0] - self.sent) if times else None,
            e2e_s=self.done - self.sent,
            itl_s=[later - earlier for earlier, later in zip(times, times[1:])],
            chunk_tokens=self.chunk_tokens,
            output_token_ids=self.token_ids,
            output_text=self.text,
            seed=self.seed,
            temperature=self.temperature,
            vllm_spec_decode=_spec_decode(self.server_metrics.get("speculative_decoding")),
            server_mean_itl_ms=self.server_metrics.get("mean_itl_ms"),
            scheduled_ttft_s=(times[0] - self.scheduled) if times and self.scheduled is not None else None,
        )


def completion_body(model: str, prompt: str, sampling: Sampling, index: int = 0) -> dict[str, Any]:
    """The request: continuous usage makes per-chunk token counts exact even when text is held back."""
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.request_temperature(index),
        "top_p": sampling.top_p,
        "seed": sampling.request_seed(index),
        "ignore_eos": sampling.ignore_eos,
        "return_token_ids": True,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }


def prompt_logprobs(payload: dict[str, Any]) -> list[dict[int, float] | None] | None:
    """The per-position `prompt_logprobs` of a completion response, keyed by token id."""
    choices = payload.get("choices") or [{}]
    positions = choices[0].get("prompt_logprobs") or payload.get("prompt_logprobs")
    if positions is None:
        return None
    return [
        None if entry is None else {int(token): float(v["logprob"] if isinstance(v, dict) else v) for token, v in entry.items()}
        for entry in positions
    ]


def _spec_decode(metrics: dict[str, Any] | None) -> RequestSpecDecode | None:
    """vLLM's `metrics.speculative_decoding` of one streamed request, as the offline engine records it."""
    if not metrics or "num_spec_steps" not in metrics:
        return None
    return RequestSpecDecode(verify_steps=metrics["num_spec_steps"], accepted_tokens=metrics["num_accepted_draft_tokens"],
                             draft_tokens=metrics["num_draft_tokens"])
