"""A running OpenAI-compatible vLLM server, measured over HTTP the way a user's client sees it.

Each request is one streaming `/v1/completions` call (`completions.completion_body`), sent and read
with aiohttp, the client `vllm bench serve` uses: against a server whose chunk times are known
(`benchmarks/client_timing.py`, docs/benchmarks.md), httpx's client added 1.7-3.3x bench serve's
delay to every first token (+24 ms against +7 ms at 16 in flight on the 2-core runner) and read TPOT
up to 9 % short at 64; aiohttp's reads both as bench serve's does (within 1 % of each other). The
one-off calls (models, metrics, scoring) stay on httpx. Both, and transformers, are imported only
when used.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..config.load import LoadLevel, arrival_offsets, run_requests
from .base import ClientStats, EngineSpec, EngineStartError, Generated, Sampling, auth_headers, mean_logprob
from .completions import Stream, completion_body, prompt_logprobs
from .metrics import EngineCounters, parse_counters, parse_kv_cache_tokens
from .vllm_info import resolved_from_json


async def _loop_lag(period_s: float = 0.01) -> float:
    """The worst lateness of a periodic wake-up until cancelled: how far behind the event loop
    (sends, reads, timestamps) fell while the client measured."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    try:
        while True:
            expected = loop.time() + period_s
            await asyncio.sleep(period_s)
            worst = max(worst, loop.time() - expected)
    except asyncio.CancelledError:
        return worst


def _http_error(method: str, url: str, status: int, body: str) -> RuntimeError:
    first = (body.strip().splitlines() or [""])[0]
    return RuntimeError(f"{method} {url} returned HTTP {status}: {first[:300]}")


class EndpointError(EngineStartError):
    """A server that cannot be measured: unreachable, refusing, answering garbage, slow or gone.
    One line naming the side, the URL and the cause; the session remembers it for the config."""


def _cause(exc: BaseException) -> str:
    """What went wrong, in words a CI log reader acts on, without the client library's traceback."""
    import aiohttp
    import httpx

    # aiohttp's timeouts are asyncio.TimeoutErrors (the built-in TimeoutError from Python 3.11 on)
    if isinstance(exc, (httpx.TimeoutException, asyncio.TimeoutError, TimeoutError)):
        return f"no answer within the request timeout ({type(exc).__name__})"
    if isinstance(exc, (httpx.ConnectError, aiohttp.ClientConnectorError)):
        return f"cannot connect ({exc or 'connection refused'})"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, aiohttp.ClientPayloadError,
                        aiohttp.ClientConnectionError)):
        return f"the connection broke mid-answer ({exc or type(exc).__name__})"
    if isinstance(exc, (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError)):
        return f"the answer is not what a vLLM server sends ({type(exc).__name__}: {str(exc)[:200]})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class EndpointEngine:
    """A server measured over HTTP, never started or stopped here (ServerEngine does that for its own)."""

    start_s = 0.0

    def __init__(
        self,
        spec: EngineSpec,
        base_url: str,
        request_timeout_s: float = 600.0,
        trust_env: bool = True,
        why_gone: Callable[[], str] = lambda: "",
        metrics_urls: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self.base_url = base_url.rstrip("/")
        self.request_timeout_s = request_timeout_s
        self._trust_env = trust_env
        self._model_name: str | None = None
        self._tokenizer: Any = None
        self._headers = auth_headers(spec)
        # what the owner of the server (ServerEngine) can add to a failure: a server we do not own cannot say
        self._why_gone = why_gone
        # behind a gateway, the endpoint's own /metrics is one replica's (or the gateway's): each
        # replica's page is read and summed instead
        self.metrics_urls = metrics_urls

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Every way a request can fail, as one `EndpointError` line naming side, URL and cause."""
        import aiohttp
        import httpx

        try:
            yield
        except EngineStartError:
            raise
        except (httpx.HTTPError, aiohttp.ClientError, OSError, ValueError, KeyError, TypeError, AttributeError,
                RuntimeError) as exc:
            raise EndpointError(
                f"{self.spec.role} endpoint {self.base_url}: {what}: {_cause(exc)}{self._why_gone()}"
            ) from None

    def generate(self, prompts: list[str], sampling: Sampling, load: LoadLevel | None = None) -> Generated:
        """Send the prompts on the load level's schedule; samples, first-send-to-last-finish time,
        and how busy this client was (a client that falls behind sets the pace, not the server)."""
        model = self.served_model()
        cpu_before = time.process_time()
        with self._calling("streaming completions"):
            streams, lag_s = asyncio.run(self._stream_all(model, prompts, sampling, load or LoadLevel()))
        client = ClientStats(cpu_s=time.process_time() - cpu_before, lag_ms=lag_s * 1e3)
        if not streams:
            return Generated([], 0.0, client)
        duration = max(s.done for s in streams) - min(s.sent for s in streams)
        return Generated([s.sample() for s in streams], duration, client)

    async def _stream_all(
        self, model: str, prompts: list[str], sampling: Sampling, load: LoadLevel
    ) -> tuple[list[Stream], float]:
        import aiohttp

        # No connection limit (0): a cap here would be a hidden concurrency limit on top of the load
        # level's. The request timeout bounds connecting and each wait for the next chunk, not a stream.
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.request_timeout_s, sock_read=self.request_timeout_s)
        offsets = arrival_offsets(len(prompts), load, sampling.seed)
        monitor = asyncio.ensure_future(_loop_lag())
        # trust_env stays off: aiohttp's would also read ~/.netrc, adding a Basic login beside (or in
        # conflict with) the endpoint's key; proxies are read from the environment as httpx reads them
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0), timeout=timeout, headers=self._headers,
        ) as session:
            url = f"{self.base_url}/v1/completions"
            proxy = self._proxy(url)  # once a window: reading the environment is no request's time
            started = time.perf_counter()

            async def send(index: int) -> Stream:
                body = completion_body(model, prompts[index], sampling, index)
                scheduled = started + offsets[index] if load.paced else None
                return await self._stream_one(session, url, proxy, body, scheduled)

            try:
                streams = await run_requests(send, len(prompts), load, sampling.seed)
            finally:
                monitor.cancel()
                lag = await asyncio.gather(monitor, return_exceptions=True)
        worst = lag[0] if isinstance(lag[0], float) else 0.0
        return streams, worst

    async def _stream_one(self, session: Any, url: str, proxy: str | None, body: dict[str, Any],
                          scheduled: float | None = None) -> Stream:
        """One request, each SSE line timed when the bytes carrying it arrived. Lines are split here,
        not by aiohttp's line reader, whose 64 KiB line limit a first chunk with a long prompt's token
        ids can pass."""
        stream = Stream(sent=time.perf_counter(), scheduled=scheduled, seed=body.get("seed"), temperature=body.get("temperature"))
        async with session.post(url, json=body, proxy=proxy) as response:
            if response.status != 200:
                raise _http_error("POST", url, response.status, (await response.read()).decode(errors="replace"))
            pending = b""
            async for data in response.content.iter_any():
                now = time.perf_counter()
                *lines, pending = (pending + data).split(b"\n")
                if not self._take(stream, lines, now):
                    break
            else:  # the body ended without [DONE]: its last line may lack its newline
                self._take(stream, [pending], time.perf_counter())
            stream.done = time.perf_counter()
        return stream

    def _proxy(self, url: str) -> str | None:
        """The proxy the environment names for this URL (`*_proxy`, `all_proxy`, `no_proxy`), where
        the environment is trusted; None: straight there."""
        import urllib.request
        from urllib.parse import urlsplit

        if not self._trust_env:
            return None
        parts = urlsplit(url)
        if urllib.request.proxy_bypass(parts.hostname or ""):
            return None
        proxies = urllib.request.getproxies()
        return proxies.get(parts.scheme) or proxies.get("all")

    def _take(self, stream: Stream, lines: list[bytes], now: float) -> bool:
        """Add a read's `data:` events to the stream; False once `[DONE]` came."""
        for line in lines:
            if not line.startswith(b"data:"):
                continue
            data = line[len(b"data:") :].strip()
            if data == b"[DONE]":
                return False
            payload = json.loads(data)
            if "error" in payload:
                raise RuntimeError(f"{self.base_url}/v1/completions streamed an error: {payload['error']}")
            stream.add(payload, now)
        return True

    def _get(self, path: str) -> Any:
        """GET a path of the endpoint, or an absolute URL (a replica's /metrics)."""
        import httpx

        url = path if "://" in path else f"{self.base_url}{path}"
        with self._calling(f"GET {url if '://' in path else path}"):
            response = httpx.get(url, timeout=self.request_timeout_s, trust_env=self._trust_env, headers=self._headers)
            if response.status_code != 200:
                raise _http_error("GET", url, response.status_code, response.text)
            return response

    def served_model(self) -> str:
        """The name to put in requests: the spec's model if served under it, else the first served."""
        if self._model_name is None:
            response = self._get("/v1/models")
            with self._calling("GET /v1/models"):
                served = [entry["id"] for entry in response.json().get("data", [])]
                if not served:
                    raise RuntimeError("it lists no model")
            self._model_name = self.spec.model if self.spec.model in served else served[0]
        return self._model_name

    def counters(self) -> EngineCounters:
        """The endpoint's counters; with several /metrics targets, their sum, each target kept."""
        if not self.metrics_urls:
            response = self._get("/metrics")
            with self._calling("GET /metrics"):
                return parse_counters(response.text)
        targets = []
        for url in self.metrics_urls:
            response = self._get(url)
            with self._calling(f"GET {url}"):
                targets.append((url, parse_counters(response.text)))
        return EngineCounters.summed(targets)

    def reset_prefix_cache(self) -> bool:
        """vLLM serves `POST /reset_prefix_cache` only in dev mode (`VLLM_SERVER_DEV_MODE=1`, which
        our own servers set); a deployment without it answers 404, and the run records that."""
        import httpx

        try:
            response = httpx.post(
                f"{self.base_url}/reset_prefix_cache", timeout=30.0, trust_env=self._trust_env, headers=self._headers
            )
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def score(self, prompts: list[str], outputs: list[list[int]]) -> list[float | None]:
        """prompt + output as token ids to `/v1/completions` with `prompt_logprobs`: one prefill each."""
        import httpx

        tokenizer = self.tokenizer()
        model = self.served_model()
        scores: list[float | None] = [None] * len(outputs)
        with self._calling("scoring outputs"), httpx.Client(
            base_url=self.base_url, timeout=self.request_timeout_s, trust_env=self._trust_env, headers=self._headers
        ) as client:
            for i, (prompt, output) in enumerate(zip(prompts, outputs)):
                if not output:
                    continue
                ids = tokenizer.encode(prompt, add_special_tokens=False) + list(output)
                body = {"model": model, "prompt": ids, "max_tokens": 1, "temperature": 0.0, "prompt_logprobs": 0}
                response = client.post("/v1/completions", json=body)
                if response.status_code != 200:
                    raise _http_error("POST", f"{self.base_url}/v1/completions", response.status_code, response.text)
                scores[i] = mean_logprob(prompt_logprobs(response.json()), output)
        return scores

    def kv_cache_tokens(self) -> int | None:
        """KV-cache capacity in tokens; over several replicas, their sum (what the deployment holds)."""
        capacities = []
        for url in self.metrics_urls or ("/metrics",):
            response = self._get(url)
            with self._calling(f"GET {url}"):
                capacities.append(parse_kv_cache_tokens(response.text))
        return None if None in capacities else sum(capacities)

    def resolved_config(self) -> dict[str, Any] | None:
        """From vLLM's dev-mode `GET /server_info` (the plugin's own servers enable it); None where
        the server does not publish it: a production deployment rarely runs in dev mode."""
        import httpx

        try:
            response = httpx.get(f"{self.base_url}/server_info", params={"config_format": "json"}, timeout=30.0,
                                 trust_env=self._trust_env, headers=self._headers)
        except httpx.TransportError:
            return None
        if response.status_code != 200:
            return None
        found = response.json().get("vllm_config")
        return resolved_from_json(found) if isinstance(found, dict) else None

    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            args = self.spec.engine_args
            name = args.get("tokenizer") or self.spec.model
            try:
                self._tokenizer = AutoTokenizer.from_pretrained(
                    name,
                    revision=args.get("tokenizer_revision"),
                    trust_remote_code=bool(args.get("trust_remote_code", False)),
                )
            except (OSError, ValueError) as exc:  # a bad name or an unreachable hub: the user's to fix
                first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise EngineStartError(f"cannot load the tokenizer {name!r} to render prompts: {first_line}") from None
        return self._tokenizer

    def close(self) -> None:
        """Nothing to stop: the server belongs to whoever started it."""
