"""Load levels for server mode: how many requests are in flight and when each one arrives.

Speculative decoding trades spare compute for fewer decode steps, so its speedup shrinks as the
batch grows; one figure per load level shows where it stops paying. Arrivals follow
`vllm bench serve` (gamma-distributed gaps, `--burstiness` as the shape) so numbers line up with
that tool's. Pure Python plus numpy: no vLLM import.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class LoadLevel:
    """A cap on requests in flight or an arrival rate, never both (the two sweeps of `levels`);
    neither means all requests at once."""

    concurrency: int | None = None
    request_rate: float | None = None
    burstiness: float = 1.0

    def __post_init__(self) -> None:
        if self.concurrency is not None and self.request_rate is not None:
            raise ValueError("a load level is a concurrency or a request rate, not both")
        if self.concurrency is not None and self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.request_rate is not None and not self.request_rate > 0:
            raise ValueError(f"request_rate must be > 0, got {self.request_rate}")
        if not self.burstiness > 0:
            raise ValueError(f"burstiness must be > 0, got {self.burstiness}")

    @property
    def paced(self) -> bool:
        """Whether arrivals are spread out in time (a finite rate) rather than all at t=0."""
        return self.request_rate is not None and math.isfinite(self.request_rate)

    @property
    def label(self) -> str:
        if self.concurrency is not None:
            return f"c={self.concurrency}"
        if not self.paced:
            return "rate=inf"
        return f"rate={self.request_rate:g}" + (f" burstiness={self.burstiness:g}" if self.burstiness != 1.0 else "")


def levels(concurrency: list[int], request_rate: list[float], burstiness: float) -> list[LoadLevel]:
    """One level per concurrency (arrivals unpaced), then one per rate (uncapped), as two sweeps.

    Two separate sweeps rather than their product: each answers its own question (speedup vs batch
    size, speedup vs offered load) and a product multiplies the engine time for little insight.
    """
    found = [LoadLevel(concurrency=c) for c in concurrency]
    found += [LoadLevel(request_rate=r, burstiness=burstiness) for r in request_rate]
    return found or [LoadLevel()]


def arrival_offsets(n: int, level: LoadLevel, seed: int) -> list[float]:
    """Seconds from the start at which each request is sent; the first one always at 0.

    Gaps are gamma(shape=burstiness, mean=1/rate): burstiness 1 is a Poisson process, lower is
    burstier. Seeded, so spec and vanilla engines see the same schedule.
    """
    if n <= 0:
        return []
    if not level.paced:
        return [0.0] * n
    import numpy as np

    rate = float(level.request_rate)  # type: ignore[arg-type]
    gaps = np.random.default_rng(seed).gamma(shape=level.burstiness, scale=1.0 / (rate * level.burstiness), size=n - 1)
    return [0.0, *np.cumsum(gaps).tolist()]


async def run_requests(send: Callable[[int], Awaitable[T]], n: int, level: LoadLevel, seed: int) -> list[T]:
    """Call `send(i)` for i in range(n) on the level's schedule; results in request order.

    A request that arrives while `concurrency` others are in flight waits for a slot, as in
    `vllm bench serve --max-concurrency`. If one request fails, the others are cancelled.
    """
    offsets = arrival_offsets(n, level, seed)
    slots = asyncio.Semaphore(level.concurrency) if level.concurrency is not None else None
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def one(index: int) -> T:
        delay = start + offsets[index] - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        if slots is None:
            return await send(index)
        async with slots:
            return await send(index)

    tasks = [asyncio.ensure_future(one(index)) for index in range(n)]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
