"""What one engine side measured: its requests, its windows and vLLM's speculation counters.

The per-side figures (throughput, latency distributions) are derived here; comparing two sides is
`run`'s job, their intervals `intervals`'.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Literal

from pydantic import Field, computed_field

from .distribution import Distribution, ratio
from .schema import Model

LatencyMetric = Literal["e2e", "tpot", "ttft", "itl"]
LATENCY_METRICS: tuple[LatencyMetric, ...] = ("e2e", "tpot", "ttft", "itl")


class RequestSpecDecode(Model):
    """vLLM's own count of one request's speculation (`--per-request-spec-decode-metrics`)."""

    verify_steps: int
    accepted_tokens: int
    draft_tokens: int

    @computed_field
    @property
    def acceptance_length(self) -> float | None:
        """Tokens per verify step, as vLLM counted them: 1 + accepted drafts per step."""
        return None if not self.verify_steps else 1.0 + self.accepted_tokens / self.verify_steps


class RequestSample(Model):
    """One measured request, as timed by the client side of the engine."""

    prompt_tokens: int
    output_tokens: int
    ttft_s: float | None
    e2e_s: float
    itl_s: list[float] = Field(default_factory=list, description="gaps between streamed chunks")
    chunk_tokens: list[int] = Field(default_factory=list, description="tokens per engine step")
    output_token_ids: list[int] = Field(default_factory=list, description="kept for lossless checks against baselines")
    output_text: str = Field(default="", description="shown beside vanilla's when a lossless check fails")
    server_mean_itl_ms: float | None = Field(
        default=None, description="the server's own mean inter-token latency for this request "
        "(`--enable-per-request-metrics`): a check on the client's timing"
    )
    vllm_spec_decode: RequestSpecDecode | None = Field(
        default=None, description="vLLM's own per-request speculation counts, where the engine offers them; "
        "preferred to the chunk-based `acceptance_length`"
    )
    repeat: int = 0
    seed: int | None = Field(default=None, description="this request's own sampling seed (workload seed + index)")
    temperature: float | None = Field(default=None, description="the temperature it was sampled at (a mixed "
                                      "batch's buckets are read from it)")
    scheduled_ttft_s: float | None = Field(
        default=None,
        description="at paced load levels: first token measured from the scheduled send time, so a "
        "client that sent late does not hide the wait (coordinated omission)",
    )
    target_logprob: float | None = Field(
        default=None, description="mean log-probability per output token under the target model (the vanilla engine)"
    )

    @computed_field
    @property
    def tpot_s(self) -> float | None:
        """Time per output token after the first: the decode speed a user feels."""
        if self.ttft_s is None or self.output_tokens < 2:
            return None
        return (self.e2e_s - self.ttft_s) / (self.output_tokens - 1)

    @computed_field
    @property
    def acceptance_length(self) -> float | None:
        """Tokens per decode step; 1.0 means nothing was ever accepted.

        The first chunk is the prefill token. The last is cut short by max_tokens or EOS, so counted
        it would read as a rejection and pull short requests down; both are left out.
        """
        steps = self.chunk_tokens[1:-1]
        return sum(steps) / len(steps) if steps else None


class SpecCounters(Model):
    """vLLM's `spec_decode_*` counters, as the delta over the measured window."""

    num_drafts: int = 0
    num_draft_tokens: int = 0
    num_accepted_tokens: int = 0
    accepted_per_position: list[int] = Field(default_factory=list)

    def __add__(self, other: SpecCounters) -> SpecCounters:
        return self._combine(other, operator.add)

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted over drafted tokens: vLLM's draft acceptance rate."""
        return ratio(self.num_accepted_tokens, self.num_draft_tokens)

    @property
    def mean_acceptance_length(self) -> float | None:
        """Tokens per verify step: the bonus token plus the accepted drafts per draft."""
        per_draft = ratio(self.num_accepted_tokens, self.num_drafts)
        return None if per_draft is None else 1.0 + per_draft

    def minus(self, earlier: SpecCounters) -> SpecCounters:
        return self._combine(earlier, operator.sub)

    def _combine(self, other: SpecCounters, op: Callable[[int, int], int]) -> SpecCounters:
        positions = max(len(self.accepted_per_position), len(other.accepted_per_position))
        mine = self.accepted_per_position + [0] * (positions - len(self.accepted_per_position))
        theirs = other.accepted_per_position + [0] * (positions - len(other.accepted_per_position))
        return SpecCounters(
            num_drafts=op(self.num_drafts, other.num_drafts),
            num_draft_tokens=op(self.num_draft_tokens, other.num_draft_tokens),
            num_accepted_tokens=op(self.num_accepted_tokens, other.num_accepted_tokens),
            accepted_per_position=[op(a, b) for a, b in zip(mine, theirs)],
        )


class TargetCounters(Model):
    """One /metrics target's counter deltas over a window: a replica behind a gateway."""

    url: str
    counters: SpecCounters
    generation_tokens: int | None = None


class Window(Model):
    """One measured window of one side: what the engine's counters and the client saw in it."""

    duration_s: float
    output_tokens: int
    started_at: float | None = Field(default=None, description="unix time the window began (windows of two "
                                     "processes on one device never overlap: device_lock)")
    engine_generation_tokens: int | None = Field(
        default=None, description="the engine's own vllm:generation_tokens delta over the window"
    )
    engine_steps: int | None = Field(
        default=None, description="the engine's forward passes over the window (the count of vLLM's "
        "vllm:iteration_tokens_total histogram); None where the engine does not publish it"
    )
    prefix_cache_reset: bool = Field(description="whether the engine's prefix cache was emptied before the window")
    client_cpu_s: float | None = Field(default=None, description="server mode: CPU time of the measuring client")
    client_lag_ms: float | None = Field(
        default=None, description="server mode: worst event-loop lag of the measuring client (late sends and reads)"
    )
    targets: list[TargetCounters] = Field(
        default_factory=list, description="with several /metrics targets (--spec-metrics-url): each one's deltas; "
        "the window's counters are their sum"
    )
    repeat: int | None = Field(default=None, description="the plan's repeat this window measured (from 0): spec and "
                               "vanilla windows of one repeat share their requests' seeds")
    sequence: int | None = Field(default=None, description="the window's place in its config's measurement order "
                                 "(from 0, both sides counted): ABBA shows as alternating sides")
    engine_start: int | None = Field(default=None, description="which of the session's engine starts measured it "
                                     "(in start order, from 0): windows of one start share one engine process")


class EngineFigures(Model):
    """What one engine (spec or vanilla) did on one run."""

    samples: list[RequestSample]
    duration_s: float = Field(description="wall time of the measured windows, warmup excluded")
    kv_cache_tokens: int | None = None
    source: Literal["measured", "cached"] = "measured"
    windows: list[Window] = Field(default_factory=list, description="one per repeat")

    @computed_field
    @property
    def num_requests(self) -> int:
        return len(self.samples)

    @property
    def num_prompts(self) -> int:
        """Distinct prompts: every window sends the workload's prompts once."""
        per_window: dict[int, int] = {}
        for sample in self.samples:
            per_window[sample.repeat] = per_window.get(sample.repeat, 0) + 1
        return max(per_window.values(), default=0)

    @computed_field
    @property
    def output_tokens(self) -> int:
        return sum(s.output_tokens for s in self.samples)

    @computed_field
    @property
    def tokens_per_s(self) -> float | None:
        return ratio(self.output_tokens, self.duration_s)

    @computed_field
    @property
    def engine_steps(self) -> int | None:
        """Forward passes over the measured windows; None unless every window counted them."""
        steps = [window.engine_steps for window in self.windows]
        return None if not steps or None in steps else sum(steps)

    @computed_field
    @property
    def tokens_per_step(self) -> float | None:
        """Output tokens per forward pass: about the batch's size on vanilla, times the tokens each
        request gains per step on a speculative engine."""
        return ratio(self.output_tokens, self.engine_steps)

    @computed_field
    @property
    def ms_per_step(self) -> float | None:
        """Wall time per forward pass (a speculative step: draft passes plus one verify pass)."""
        seconds = ratio(self.duration_s, self.engine_steps)
        return None if seconds is None else seconds * 1e3

    @computed_field
    @property
    def ttft_ms(self) -> Distribution:
        return Distribution.of([s.ttft_s * 1e3 for s in self.samples if s.ttft_s is not None])

    @computed_field
    @property
    def tpot_ms(self) -> Distribution:
        return Distribution.of([s.tpot_s * 1e3 for s in self.samples if s.tpot_s is not None])

    @computed_field
    @property
    def scheduled_ttft_ms(self) -> Distribution:
        """Paced load levels: TTFT from each request's scheduled send time, so a client that sent
        late does not hide the wait (coordinated omission); empty at concurrency levels."""
        return Distribution.of([s.scheduled_ttft_s * 1e3 for s in self.samples if s.scheduled_ttft_s is not None])

    @computed_field
    @property
    def e2e_ms(self) -> Distribution:
        return Distribution.of([s.e2e_s * 1e3 for s in self.samples])

    @computed_field
    @property
    def itl_ms(self) -> Distribution:
        return Distribution.of([gap * 1e3 for s in self.samples for gap in s.itl_s])

    @classmethod
    def combined(cls, repeats: list[EngineFigures]) -> EngineFigures:
        """R repeats as one side: all samples (tagged with their repeat), every window, the total time."""
        if len(repeats) == 1:
            return repeats[0]
        return cls(
            samples=[sample for figures in repeats for sample in figures.samples],
            duration_s=sum(figures.duration_s for figures in repeats),
            kv_cache_tokens=repeats[-1].kv_cache_tokens,
            windows=[window for figures in repeats for window in figures.windows],
        )

    def latency(self, metric: LatencyMetric) -> Distribution:
        return getattr(self, f"{metric}_ms")

