"""vLLM's Prometheus counters, read the same way in both modes: from a `/metrics` page.

Offline engines render their own collectors to the same text format (`collectors_text`), so one
parser serves `vllm.LLM` and `vllm serve` alike. prometheus_client is imported only when used.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..results import SpecCounters

SPEC_COUNTER_NAMES = {
    "vllm:spec_decode_num_drafts": "num_drafts",
    "vllm:spec_decode_num_draft_tokens": "num_draft_tokens",
    "vllm:spec_decode_num_accepted_tokens": "num_accepted_tokens",
}
PER_POSITION_NAME = "vllm:spec_decode_num_accepted_tokens_per_pos"
GENERATION_TOKENS_NAME = "vllm:generation_tokens"
#: The count of vLLM's tokens-per-engine-step histogram: one observation per engine step, so the
#: number of forward passes (prefill and decode, a draft-and-verify step counting once).
ENGINE_STEPS_NAME = "vllm:iteration_tokens_total_count"
CACHE_INFO_NAME = "vllm:cache_config_info"


@dataclass(frozen=True)
class EngineCounters:
    """What one engine's counters said at one moment: speculation and generated tokens."""

    spec: SpecCounters
    generation_tokens: int | None
    engine_steps: int | None = None
    #: With several /metrics targets (replicas behind a gateway): each target's own, by URL; the
    #: fields above are their sums.
    targets: tuple[tuple[str, EngineCounters], ...] = ()

    def minus(self, earlier: EngineCounters) -> EngineCounters:
        tokens = _delta(self.generation_tokens, earlier.generation_tokens)
        before = dict(earlier.targets)
        targets = tuple((url, now.minus(before[url])) for url, now in self.targets if url in before)
        return EngineCounters(self.spec.minus(earlier.spec), tokens, _delta(self.engine_steps, earlier.engine_steps),
                              targets)

    @classmethod
    def summed(cls, targets: list[tuple[str, EngineCounters]]) -> EngineCounters:
        """Several targets' counters as one engine's: sums, each target kept by its URL."""
        def total(values: list[int | None]) -> int | None:
            return None if None in values else sum(values)  # type: ignore[arg-type]

        spec = sum((counters.spec for _, counters in targets), SpecCounters())
        return cls(spec, total([c.generation_tokens for _, c in targets]), total([c.engine_steps for _, c in targets]),
                   tuple(targets))


def _delta(now: int | None, before: int | None) -> int | None:
    return None if now is None or before is None else now - before


def parse_counters(text: str) -> EngineCounters:
    """Spec-decode counters, generated tokens and engine steps from a /metrics page, summed over engines."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, int] = dict.fromkeys(SPEC_COUNTER_NAMES.values(), 0)
    by_position: dict[int, int] = {}
    generation: int | None = None
    steps: int | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == ENGINE_STEPS_NAME:
                steps = (steps or 0) + int(sample.value)
            if not sample.name.endswith("_total"):
                continue
            name = sample.name.removesuffix("_total")
            if name in SPEC_COUNTER_NAMES:
                totals[SPEC_COUNTER_NAMES[name]] += int(sample.value)
            elif name == PER_POSITION_NAME:
                position = int(sample.labels["position"])
                by_position[position] = by_position.get(position, 0) + int(sample.value)
            elif name == GENERATION_TOKENS_NAME:
                generation = (generation or 0) + int(sample.value)
    per_position = [by_position.get(p, 0) for p in range(max(by_position) + 1)] if by_position else []
    return EngineCounters(SpecCounters(**totals, accepted_per_position=per_position), generation, steps)


def parse_kv_cache_tokens(text: str) -> int | None:
    """KV-cache capacity in tokens from the `cache_config_info` labels, or None if not published."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        if family.name != CACHE_INFO_NAME:
            continue
        for sample in family.samples:
            blocks, size = sample.labels.get("num_gpu_blocks", ""), sample.labels.get("block_size", "")
            if blocks.isdigit() and size.isdigit():
                return int(blocks) * int(size)
    return None


def vllm_collectors() -> list[Any]:
    """The vLLM collectors now registered in prometheus_client's process-global registry.

    Each new in-process engine unregisters the previous engine's collectors and registers its own
    (vLLM's `unregister_vllm_metrics`, which walks the same registry table), so `LLM.get_metrics()`
    of an older engine reads the newest engine's counters. Taken right after an engine starts,
    this list is that engine's own, and stays counting after it leaves the global registry.
    """
    from prometheus_client import REGISTRY

    return [c for c in list(REGISTRY._collector_to_names) if str(getattr(c, "_name", "")).startswith("vllm:")]


def collectors_text(collectors: Iterable[Any]) -> str:
    """The collectors rendered as a /metrics page, for `parse_counters`."""
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry).decode()
