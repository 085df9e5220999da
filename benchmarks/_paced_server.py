"""A stand-in for `vllm serve`'s streaming `/v1/completions` whose timing is known exactly.

Served the way vLLM serves it (FastAPI on uvicorn, SSE events `data: {...}`), each request's first
chunk leaves `--ttft-ms` after the request arrived and one chunk of `--tokens-per-step` tokens every
`--step-ms` after that, until `max_tokens`; then the usage-only chunk and `[DONE]`, as vLLM ends a
stream with `include_usage`. Chunks carry `usage` only when the request asked for
`continuous_usage_stats`, and `token_ids` only for `return_token_ids`, as vLLM does. Every send is
timed with `time.perf_counter()` (CLOCK_MONOTONIC: the same clock in the client's process), and
`GET /timings` hands the times over (and forgets them), so a client's timestamps can be set against
the moments the chunks left.

    python _paced_server.py --port 8765 --step-ms 8 --tokens-per-step 4 --ttft-ms 12
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

MODEL = "paced"


def build_app(step_s: float, tokens_per_step: int, ttft_s: float) -> FastAPI:
    app = FastAPI()
    timings: list[dict[str, Any]] = []

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": MODEL, "object": "model"}]}

    @app.get("/timings")
    async def take_timings() -> list[dict[str, Any]]:
        taken = list(timings)
        timings.clear()
        return taken

    @app.post("/v1/completions")
    async def completions(request: Request) -> StreamingResponse:
        arrived = time.perf_counter()
        body = await request.json()
        options = body.get("stream_options") or {}
        continuous, ids = bool(options.get("continuous_usage_stats")), bool(body.get("return_token_ids"))
        max_tokens = int(body["max_tokens"])
        record: dict[str, Any] = {"arrived": arrived, "token_sends": [], "tokens": [], "done": None}
        timings.append(record)

        def event(payload: dict[str, Any]) -> str:
            return f"data: {json.dumps(payload)}\n\n"

        async def stream():
            sent, due = 0, arrived + ttft_s
            while sent < max_tokens:
                await asyncio.sleep(max(0.0, due - time.perf_counter()))
                n = 1 if sent == 0 else min(tokens_per_step, max_tokens - sent)
                sent += n
                choice: dict[str, Any] = {"index": 0, "text": "ab" * n, "logprobs": None,
                                          "finish_reason": "length" if sent == max_tokens else None}
                if ids:
                    choice["token_ids"] = list(range(n))
                payload: dict[str, Any] = {"id": "cmpl-paced", "object": "text_completion", "created": 0, "model": MODEL,
                                           "choices": [choice]}
                if continuous:
                    payload["usage"] = {"prompt_tokens": 8, "completion_tokens": sent, "total_tokens": 8 + sent}
                record["token_sends"].append(time.perf_counter())
                record["tokens"].append(n)
                yield event(payload)
                due += step_s
            yield event({"id": "cmpl-paced", "object": "text_completion", "created": 0, "model": MODEL, "choices": [],
                         "usage": {"prompt_tokens": 8, "completion_tokens": sent, "total_tokens": 8 + sent}})
            record["done"] = time.perf_counter()
            yield "data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--step-ms", type=float, default=8.0)
    parser.add_argument("--tokens-per-step", type=int, default=4)
    parser.add_argument("--ttft-ms", type=float, default=12.0)
    args = parser.parse_args()
    app = build_app(args.step_ms / 1e3, args.tokens_per_step, args.ttft_ms / 1e3)
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
