"""What the measurement code needs from an engine, whichever way it is reached (in-process or HTTP)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from ..load import LoadLevel
from ..results import RequestSample, SpecCounters


@dataclass(frozen=True)
class Sampling:
    temperature: float
    max_tokens: int
    top_p: float = 1.0
    seed: int = 0
    ignore_eos: bool = False


@dataclass(frozen=True)
class EngineSpec:
    """Everything that decides which engine runs: two equal specs share one engine."""

    model: str
    engine_args: dict[str, Any] = field(default_factory=dict)
    speculative_config: dict[str, Any] | None = None
    mode: str = "offline"
    url: str | None = None
    start_timeout_s: float = field(default=600.0, compare=False)

    @property
    def key(self) -> str:
        payload = json.dumps(
            {"model": self.model, "args": self.engine_args, "spec": self.speculative_config, "mode": self.mode,
             "url": self.url},
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    @property
    def role(self) -> str:
        return "spec" if self.speculative_config else "vanilla"

    def vanilla_twin(self, url: str | None = None) -> EngineSpec:
        """Same target and engine arguments, no speculation (at `url` when measuring an endpoint)."""
        return replace(self, speculative_config=None, url=url)


class Engine(Protocol):
    spec: EngineSpec
    start_s: float

    def generate(
        self, prompts: list[str], sampling: Sampling, load: LoadLevel | None = None
    ) -> tuple[list[RequestSample], float]:
        """Per-request samples and the wall time of the whole batch (offline: all prompts at once)."""
        ...

    def spec_counters(self) -> SpecCounters: ...

    def kv_cache_tokens(self) -> int | None: ...

    def tokenizer(self) -> Any: ...

    def close(self) -> None: ...


class EngineStartError(RuntimeError):
    """An engine did not come up; the message carries vLLM's reason (shown as a test error)."""
