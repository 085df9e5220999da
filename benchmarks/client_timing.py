"""Which client reads a stream's timing right: the plugin's (httpx) and `vllm bench serve`'s (aiohttp)
against a server whose chunk times are known (`_paced_server.py`).

On the H200 the plugin's TPOT read 12-15 % above `vllm bench serve`'s on one 8B n-gram server at
~2 ms TPOT (one chunk of 4 tokens every ~8 ms), its TTFT 2-7 ms above. A real server cannot say
which client is right; this one records when each chunk left (the same monotonic clock as the
clients'), so each client's TPOT and TTFT are set against the truth, each by its own definition:
bench serve's TPOT ends at the last token chunk, the plugin's at `[DONE]`. Both clients get the same
prompts at the same concurrency, taking turns (which goes first alternates by round); each sends its
own request body (the plugin asks for continuous usage stats and token ids, bench serve for
neither), and the server answers each as vLLM would. The server and the clients share this
machine's cores, as on a GPU host. "TTFT excess" is the client's TTFT over the server's (request
arrived to first chunk sent): sending, connecting and reading, the client's side of a first token.

    python client_timing.py --concurrency 1 16 --rounds 3 --out results/cpu-client-timing.json
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from _common import emit

from pytest_specdecode.config.load import LoadLevel
from pytest_specdecode.engines.base import EngineSpec, Sampling
from pytest_specdecode.engines.endpoint import EndpointEngine
from pytest_specdecode.engines.serve import free_port

HERE = Path(__file__).parent


def server_truth(timings: list[dict[str, Any]]) -> dict[str, float]:
    """Mean TTFT (arrival to first chunk sent) and TPOT (first to last token chunk sent, per token
    after the first, as bench serve defines it) of what the server sent, and TPOT up to `[DONE]`."""
    ttft, tpot, tpot_done = [], [], []
    for t in timings:
        n = sum(t["tokens"])
        ttft.append(t["token_sends"][0] - t["arrived"])
        tpot.append((t["token_sends"][-1] - t["token_sends"][0]) / (n - 1))
        tpot_done.append((t["done"] - t["token_sends"][0]) / (n - 1))
    return {"ttft_ms": statistics.mean(ttft) * 1e3, "tpot_ms": statistics.mean(tpot) * 1e3,
            "tpot_to_done_ms": statistics.mean(tpot_done) * 1e3}


def plugin_client(base_url: str, prompts: list[str], max_tokens: int, concurrency: int) -> dict[str, float]:
    engine = EndpointEngine(EngineSpec(model="paced", mode="server", url=base_url), base_url, trust_env=False)
    samples, _, client = engine.generate(prompts, Sampling(0.0, max_tokens, ignore_eos=True),
                                         LoadLevel(concurrency=concurrency))
    return {"ttft_ms": statistics.mean(s.ttft_s for s in samples) * 1e3,
            "tpot_ms": statistics.mean(s.tpot_s for s in samples) * 1e3,
            "lag_ms": client.lag_ms if client else float("nan")}


def bench_serve_client(base_url: str, prompts: list[str], max_tokens: int, concurrency: int) -> dict[str, float]:
    """vLLM's own request function, session and concurrency limit as `vllm bench serve` sets them up,
    and its TPOT formula: (latency - ttft) / (output tokens - 1)."""
    import aiohttp
    from vllm.benchmarks.lib.endpoint_request_func import RequestFuncInput, async_request_openai_completions

    async def run() -> list[Any]:
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, keepalive_timeout=60,
                                         enable_cleanup_closed=True, force_close=False)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=3600)) as session:
            slots = asyncio.Semaphore(concurrency)

            async def one(prompt: str) -> Any:
                async with slots:
                    return await async_request_openai_completions(RequestFuncInput(
                        prompt=prompt, api_url=f"{base_url}/v1/completions", prompt_len=8, output_len=max_tokens,
                        model="paced", ignore_eos=True), session)

            return await asyncio.gather(*(one(p) for p in prompts))

    outputs = asyncio.run(run())
    failed = [o.error for o in outputs if not o.success]
    if failed:
        raise RuntimeError(f"bench serve's client failed: {failed[0][:300]}")
    return {"ttft_ms": statistics.mean(o.ttft for o in outputs) * 1e3,
            "tpot_ms": statistics.mean((o.latency - o.ttft) / (o.output_tokens - 1) for o in outputs) * 1e3}


CLIENTS = {"plugin": plugin_client, "vllm_bench_serve": bench_serve_client}
#: which server figure each client's TPOT is compared with: its own definition of where a request ends
TRUTH = {"plugin": "tpot_to_done_ms", "vllm_bench_serve": "tpot_ms"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--rounds", type=int, default=3, help="turns of each client per level, alternating")
    parser.add_argument("--prompts", type=int, default=64, help="requests a round: at least the highest concurrency")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--step-ms", type=float, default=8.0, help="the server's step: one chunk per request")
    parser.add_argument("--tokens-per-step", type=int, default=4)
    parser.add_argument("--ttft-ms", type=float, default=12.0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.prompts < max(args.concurrency):
        parser.error(f"--prompts {args.prompts} cannot keep {max(args.concurrency)} requests in flight")
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([sys.executable, str(HERE / "_paced_server.py"), "--port", str(port), "--step-ms",
                               str(args.step_ms), "--tokens-per-step", str(args.tokens_per_step), "--ttft-ms",
                               str(args.ttft_ms)])
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base_url}/v1/models", trust_env=False).raise_for_status()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the paced server did not come up") from None
                time.sleep(0.2)
        prompts = [f"prompt {i}" for i in range(args.prompts)]
        levels = []
        for concurrency in args.concurrency:
            for measure in CLIENTS.values():  # one untimed turn each: imports, first-call costs
                measure(base_url, prompts, args.max_tokens, concurrency)
            httpx.get(f"{base_url}/timings", trust_env=False)
            rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in CLIENTS}
            for round_index in range(args.rounds):
                order = list(CLIENTS) if round_index % 2 == 0 else list(reversed(CLIENTS))
                for name in order:
                    measured = CLIENTS[name](base_url, prompts, args.max_tokens, concurrency)
                    truth = server_truth(httpx.get(f"{base_url}/timings", trust_env=False).json())
                    rounds[name].append({"client": measured, "server": truth,
                                         "tpot_ratio": measured["tpot_ms"] / truth[TRUTH[name]],
                                         "ttft_excess_ms": measured["ttft_ms"] - truth["ttft_ms"]})
            levels.append({
                "concurrency": concurrency,
                "rounds": rounds,
                "tpot_ratio": {name: statistics.median(r["tpot_ratio"] for r in rs) for name, rs in rounds.items()},
                "ttft_excess_ms": {name: statistics.median(r["ttft_excess_ms"] for r in rs) for name, rs in rounds.items()},
            })
    finally:
        server.terminate()
        server.wait(30)
    emit({"step_ms": args.step_ms, "tokens_per_step": args.tokens_per_step, "ttft_ms": args.ttft_ms,
          "prompts": args.prompts, "max_tokens": args.max_tokens, "levels": levels}, args.out)


if __name__ == "__main__":
    main()
