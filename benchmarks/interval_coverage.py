"""How often the reported 95 % intervals cover the truth, on simulated windows with runner noise.

    python benchmarks/interval_coverage.py --trials 1000 --out benchmarks/results/interval-coverage.json

Each trial simulates one run (`tests/unit/simulate.py`): 16 requests a window, gamma request noise,
uniform window noise of 0, 5 or 10 %, spec and vanilla in ABBA window pairs, 1-5 repeats. For the
speedup (true value 1.3) and, on identical sides, the E2E P99 regression (true value 0) it counts
how often the interval the report prints (`RunResult.speedup_ci`, `p99_regression_ci`) covers
the truth, next to the request-only bootstrap that the plugin used before (`requests_only`).
No engine runs: it measures the interval arithmetic, not vLLM.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _common import emit  # noqa: E402
from pytest_specdecode.results.intervals import p99_regression_interval, speedup_interval  # noqa: E402
from pytest_specdecode.uncertainty import MIN_WINDOWS  # noqa: E402
from tests.unit.simulate import covers, simulated_run  # noqa: E402

TRUE_SPEEDUP = 1.3


def _bounds(interval) -> list[float] | None:
    return None if interval is None else [interval.low, interval.high]


def row(window_noise: float, repeats: int, trials: int) -> dict:
    speedup = p99 = old_speedup = old_p99 = 0
    for seed in range(trials):
        run = simulated_run(seed, repeats, window_noise, TRUE_SPEEDUP)
        same = simulated_run(10_000 + seed, repeats, window_noise, 1.0)
        requests_only = _bounds(speedup_interval(run.spec, run.vanilla))
        requests_only_p99 = _bounds(p99_regression_interval(same.spec, same.vanilla, "e2e"))
        speedup += covers(run.speedup_ci, TRUE_SPEEDUP)
        # below MIN_WINDOWS the report's interval is the request bootstrap itself (and skipping the
        # model's field spares the ITL bootstrap it would also compute)
        p99 += covers(same.p99_regression_ci["e2e"] if same.windows_resolve else requests_only_p99, 0.0)
        old_speedup += covers(requests_only, TRUE_SPEEDUP)
        old_p99 += covers(requests_only_p99, 0.0)
    return {
        "window_noise": window_noise,
        "repeats": repeats,
        "trials": trials,
        "basis": "window pairs" if repeats >= MIN_WINDOWS else "requests only (confident verdicts inconclusive)",
        "coverage": speedup / trials,
        "p99_coverage": p99 / trials,
        "requests_only_coverage": old_speedup / trials,
        "requests_only_p99_coverage": old_p99 / trials,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = [row(noise, repeats, args.trials) for noise in (0.0, 0.05, 0.10) for repeats in range(1, 6)]
    emit({"nominal": 0.95, "true_speedup": TRUE_SPEEDUP, "requests_per_window": 16, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
