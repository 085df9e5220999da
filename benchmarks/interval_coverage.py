"""How often the reported intervals cover the truth, and what engine-start noise costs them.

    python benchmarks/interval_coverage.py --trials 400 --out benchmarks/results/interval-coverage.json

Each trial simulates one condition of a shipped example (`gate_sim.py`, the same noise model as
`gate_error_rates.py`): request, prompt and window noise fitted to the stored reports (window
noise set to 5 % here), spec and vanilla in ABBA window pairs, each side on one engine start whose
speed is off by `engine_cv` (uniform). It counts how often the interval the report prints at a
single look's level (`RunResult.speedup_ci`, and on identical sides `p99_regression_ci`) covers the
config's true speedup (1.3) and a P99 regression of 0. The windows' spread cannot see the engine
starts (one a side), so with start noise the coverage falls below nominal, and more windows do not
help: that is the cost `docs/reading-the-numbers.md` states. No engine runs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import emit  # noqa: E402
from gate_sim import SETTINGS, Noise, SimulatedCondition, fit  # noqa: E402

from pytest_specdecode.config.sequential import ALPHA  # noqa: E402

TRUE_SPEEDUP = 1.3
WINDOW_CV = 0.05
LEVEL = 1 - ALPHA  # one look: repeats = max_repeats


def _covers(interval: list[float] | None, truth: float) -> bool:
    return interval is not None and interval[0] <= truth <= interval[1]


def row(noise: Noise, config: str, engine_cv: float, windows: int, trials: int) -> dict:
    noise = Noise(**{**noise.__dict__, "engine_cv": engine_cv})
    speedup = p99 = 0
    for seed in range(trials):
        faster = SimulatedCondition(seed, SETTINGS[config], noise, 1 / TRUE_SPEEDUP)
        faster.extend(windows)
        same = SimulatedCondition(100_000 + seed, SETTINGS[config], noise, 1.0)
        same.extend(windows)
        speedup += _covers(faster.run_result(0.0, LEVEL).speedup_ci, TRUE_SPEEDUP)
        p99 += _covers(same.run_result(0.0, LEVEL).p99_regression_ci["e2e"], 0.0)
    return {"config": config, "engine_cv": engine_cv, "windows": windows, "trials": trials,
            "speedup_coverage": speedup / trials, "p99_coverage": p99 / trials}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=400)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    fitted = fit()
    noise = Noise(**{**fitted.__dict__, "regimes": {k: replace(r, window_cv=WINDOW_CV) for k, r in fitted.regimes.items()}})
    rows = [row(noise, config, engine_cv, windows, args.trials)
            for config in ("eagle", "cpu-ngram") for engine_cv in (0.0, 0.05) for windows in (3, 6, 12)]
    emit({"nominal": LEVEL, "true_speedup": TRUE_SPEEDUP, "window_cv": WINDOW_CV, "rows": rows}, args.out)


if __name__ == "__main__":
    main()
