"""What the measurement code needs from an engine, whichever way it is reached (in-process or HTTP)."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ..config.load import LoadLevel
from ..results import RequestSample

if TYPE_CHECKING:
    from .metrics import EngineCounters


@dataclass(frozen=True)
class Sampling:
    temperature: float
    max_tokens: int
    top_p: float = 1.0
    seed: int = 0
    ignore_eos: bool = False
    #: A mixed-temperature batch: request i samples at mix[i % len(mix)] (`temperature` is the
    #: highest of them); empty, every request samples at `temperature`.
    mix: tuple[float, ...] = ()

    def request_temperature(self, index: int) -> float:
        return self.mix[index % len(self.mix)] if self.mix else self.temperature

    def request_seed(self, index: int) -> int:
        """Request `index`'s own seed: one seed for all would make copies of a prompt identical
        samples at T>0. Both sides use the same seeds, so request i is alike on both."""
        return self.seed + index


@dataclass(frozen=True)
class ClientStats:
    """How busy the measuring client was during a window (server mode only)."""

    cpu_s: float
    lag_ms: float


class Generated(NamedTuple):
    """One window's requests, its wall time, and (server mode) how the client kept up."""

    samples: list[RequestSample]
    duration_s: float
    client: ClientStats | None = None


@dataclass(frozen=True)
class EngineSpec:
    """Everything that decides which engine runs: two equal specs share one engine."""

    model: str
    engine_args: dict[str, Any] = field(default_factory=dict)
    speculative_config: dict[str, Any] | None = None
    mode: str = "offline"
    url: str | None = None
    start_timeout_s: float = field(default=600.0, compare=False)
    request_timeout_s: float = field(default=300.0, compare=False)
    api_key_env: str | None = field(default=None, compare=False)
    #: An endpoint's /metrics pages when it is several replicas behind a gateway (empty: its own).
    metrics_urls: tuple[str, ...] = ()
    #: Where an engine of ours keeps its log (`--spec-log-dir`); None: a temporary folder,
    #: removed after a clean stop.
    log_dir: str | None = field(default=None, compare=False)

    @property
    def key(self) -> str:
        identity = {"model": self.model, "args": self.engine_args, "spec": self.speculative_config, "mode": self.mode,
                    "url": self.url}
        if self.metrics_urls:  # only then: every stored baseline's key stays what it was
            identity["metrics"] = list(self.metrics_urls)
        payload = json.dumps(
            identity,
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

    def generate(self, prompts: list[str], sampling: Sampling, load: LoadLevel | None = None) -> Generated:
        """Per-request samples and the wall time of the whole batch (offline: all prompts at once)."""
        ...

    def counters(self) -> EngineCounters:
        """This engine's own counters now (never another engine's)."""
        ...

    def reset_prefix_cache(self) -> bool:
        """Empty the prefix cache so a window never reuses an earlier window's prefills; False
        when the engine does not allow it."""
        ...

    def score(self, prompts: list[str], outputs: list[list[int]]) -> list[float | None]:
        """Mean log-probability per token of each output after its prompt, under this engine's model."""
        ...

    def kv_cache_tokens(self) -> int | None: ...

    def resolved_config(self) -> dict[str, Any] | None:
        """The speculative and parallel settings the engine resolved (`vllm_info.resolved`), or
        None where it cannot say (a server over HTTP)."""
        ...

    def tokenizer(self) -> Any: ...

    def close(self) -> None: ...


def mean_logprob(prompt_logprobs: list[Any] | None, output: list[int]) -> float | None:
    """The mean log-probability of the output's tokens, the last len(output) positions of a prompt
    scored with `prompt_logprobs` (a dict per position, keyed by token id)."""
    if not prompt_logprobs or len(prompt_logprobs) < len(output):
        return None
    positions = prompt_logprobs[-len(output):]
    values = []
    for token, position in zip(output, positions):
        entry = position.get(token) if position else None
        if entry is None:
            return None
        values.append(float(getattr(entry, "logprob", entry)))
    return sum(values) / len(values)


def auth_headers(spec: EngineSpec) -> dict[str, str]:
    """`Authorization` for a running endpoint whose key lives in the environment variable the config
    names ([run] api_key_env); read when needed, never stored in a result or report."""
    if spec.url is None or spec.api_key_env is None:
        return {}
    key = os.environ.get(spec.api_key_env)
    if not key:
        raise EngineStartError(
            f"{spec.role} endpoint {spec.url}: environment variable {spec.api_key_env} ([run] api_key_env) is not set"
        )
    return {"Authorization": f"Bearer {key}"}


class EngineStartError(RuntimeError):
    """An engine did not come up; the message carries vLLM's reason (shown as a test error)."""
