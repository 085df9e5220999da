"""Simulated measurements with the two levels of noise a shared CI runner has.

Request-level: each request's time per token is gamma-distributed (skewed, ~25 % spread).
Window-level: each measured window runs at its own speed factor, uniform (not log-normal, so not
the interval's own model) with standard deviation `window_noise`, plus an optional linear drift
over the session. Windows are ordered as the plan orders them (ABBA), so drift acts as it would.
Used by the unit tests and by `benchmarks/interval_coverage.py`.
"""

from __future__ import annotations

import math

import numpy as np

from pytest_specdecode.results import BaselineInfo, EngineFigures, RequestSample, RunResult, SpecCounters, Window

TOKENS = 128
BASE_TPOT_S = 0.013


def simulated_window(rng: np.random.Generator, tpot_s: float, factor: float, repeat: int, requests: int,
                     concurrency: int) -> tuple[list[RequestSample], Window]:
    samples = []
    for _ in range(requests):
        per_token = tpot_s * factor * rng.gamma(16.0, 1 / 16.0)
        ttft = 2 * per_token
        samples.append(RequestSample(
            prompt_tokens=32, output_tokens=TOKENS, ttft_s=ttft, e2e_s=ttft + (TOKENS - 1) * per_token,
            itl_s=[per_token] * 8, chunk_tokens=[1, 2, 2, 1], repeat=repeat,
        ))
    duration = sum(s.e2e_s for s in samples) / concurrency
    return samples, Window(duration_s=duration, output_tokens=TOKENS * requests, prefix_cache_reset=True)


def simulated_run(seed: int, repeats: int, window_noise: float, true_speedup: float = 1.3, requests: int = 16,
                  concurrency: int = 4, drift: float = 0.0) -> RunResult:
    """Spec and vanilla measured in `repeats` ABBA window pairs; drift: speed change per window."""
    rng = np.random.default_rng(seed)
    sides: dict[str, tuple[list[RequestSample], list[Window]]] = {"spec": ([], []), "vanilla": ([], [])}
    slot = 0
    for repeat in range(repeats):
        order = ("vanilla", "spec") if repeat % 2 == 0 else ("spec", "vanilla")
        for role in order:
            factor = (1 + window_noise * math.sqrt(3) * rng.uniform(-1, 1)) * (1 + drift * slot)
            slot += 1
            tpot = BASE_TPOT_S / true_speedup if role == "spec" else BASE_TPOT_S
            samples, window = simulated_window(rng, tpot, factor, repeat, requests, concurrency)
            sides[role][0].extend(samples)
            sides[role][1].append(window)
    figures = {
        role: EngineFigures(samples=samples, duration_s=sum(w.duration_s for w in windows), windows=windows)
        for role, (samples, windows) in sides.items()
    }
    return RunResult(
        config="sim.toml", config_name="sim", model="m", method="ngram", num_speculative_tokens=3,
        workload="builtin:mixed", temperature=0.0,
        counters=SpecCounters(num_drafts=10, num_draft_tokens=30, num_accepted_tokens=20),
        spec=figures["spec"], vanilla=figures["vanilla"],
        baseline=BaselineInfo(source="measured", fingerprint="0" * 24, age_s=0.0),
    )


def covers(interval: list[float] | None, truth: float) -> bool:
    return interval is not None and interval[0] <= truth <= interval[1]
