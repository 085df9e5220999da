"""`vllm serve` started by us and measured through the same HTTP client as a user's own server.

A composition: a `ServeProcess` (the server and every process it starts) and an `EndpointEngine`
(the client). The client's errors about a dead server name its exit and its log.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..config.load import LoadLevel
from .base import EngineSpec, Generated, Sampling
from .endpoint import EndpointEngine
from .metrics import EngineCounters
from .serve import HOST, ServeProcess, free_port
from .start_log import start_phases


class ServerEngine:
    """`vllm serve` in a session of its own on a free local port, measured over HTTP."""

    def __init__(
        self,
        spec: EngineSpec,
        start_timeout_s: float = 600.0,
        *,
        launch_command: Sequence[str] | None = None,
        log_dir: str | Path | None = None,
        request_timeout_s: float = 600.0,
        stop_grace_s: float = 20.0,
    ) -> None:
        started = time.perf_counter()
        self.spec = spec
        port = free_port()
        self.server = ServeProcess(spec, port, launch_command, log_dir, stop_grace_s)
        self.base_url = f"http://{HOST}:{port}"
        self.server.wait_until_healthy(self.base_url, start_timeout_s)
        # trust_env=False: a CI proxy variable must never route 127.0.0.1 traffic through a proxy
        self.client = EndpointEngine(
            spec, self.base_url, request_timeout_s, trust_env=False, why_gone=self.server.exit_note
        )
        self.start_s = time.perf_counter() - started
        self.start_phases = start_phases(self.server.log_path, self.start_s)

    @property
    def pid(self) -> int:
        """The server's process id, which is also its session id."""
        return self.server.pid

    @property
    def log_path(self) -> Path:
        return self.server.log_path

    def generate(self, prompts: list[str], sampling: Sampling, load: LoadLevel | None = None) -> Generated:
        return self.client.generate(prompts, sampling, load)

    def counters(self) -> EngineCounters:
        return self.client.counters()

    def reset_prefix_cache(self) -> bool:
        return self.client.reset_prefix_cache()

    def score(self, prompts: list[str], outputs: list[list[int]]) -> list[float | None]:
        return self.client.score(prompts, outputs)

    def kv_cache_tokens(self) -> int | None:
        return self.client.kv_cache_tokens()

    def resolved_config(self) -> dict[str, Any] | None:
        return self.client.resolved_config()  # our servers run in vLLM's dev mode, which publishes it

    def tokenizer(self) -> Any:
        return self.client.tokenizer()

    def close(self) -> None:
        """Stop the server and all it started; safe to call twice (and run again at exit)."""
        self.server.stop()
