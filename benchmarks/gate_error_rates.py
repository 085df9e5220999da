"""How often does a gate lie? Each gate kind's false-fail and detection rates on simulated runs.

    python benchmarks/gate_error_rates.py --trials 200 --out benchmarks/results/gate-error-rates.json
    python benchmarks/gate_error_rates.py --trials 100 --repeats 3 --max-repeats 8 --quick
    python benchmarks/gate_error_rates.py --markdown benchmarks/results/gate-error-rates.json

Every trial simulates one condition of a shipped example config (`gate_sim.py`: window, request
and engine-start noise fitted to the reports in benchmarks/results), judges it with the plugin's
own verdict code (`gates.judge` on a `RunResult`, intervals at `sequential.interval_level`), and,
while the verdict is inconclusive, measures more window pairs up to the next look
(`sequential.next_look`), as the plugin's sequential sampling does. A row counts how often the
final verdict was fail, pass or inconclusive at one true value of the figure.

`truth_vs_threshold` is the true value's signed distance from the threshold, positive on the
passing side: a fraction of the threshold for min_speedup and min_acceptance, the gate's own
units for max_p99_regression (a true regression of 0 against 0.10 is +0.10) and for lossless at
T>0 (margin - |true shift|, nats/token). Rows with a positive distance measure false fails; rows
with a negative one, detection. `aa` marks rows where spec and vanilla do not differ at all
(P99 regression 0, log-probability shift 0). No engine runs: it measures the verdict arithmetic
against the noise model, not vLLM.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import emit  # noqa: E402
from gate_sim import SETTINGS, Noise, SimulatedCondition, fit  # noqa: E402

from pytest_specdecode.config import sequential  # noqa: E402
from pytest_specdecode.measure import lossless  # noqa: E402
from pytest_specdecode.gates.kinds import Gate, judge  # noqa: E402
from pytest_specdecode.gates.history import compare_runs  # noqa: E402
from pytest_specdecode.results import ConfigResult  # noqa: E402

MARGIN = sequential.LOSSLESS_MARGIN
MISSES = (0.05, 0.10, 0.20)
SAFE = (0.20, 0.10, 0.05)


@dataclass(frozen=True)
class Case:
    """One row: a gate on one config at one truth."""

    gate: Gate
    config: str
    truth_vs_threshold: float
    temperature: float
    spec_scale: float = 1.0
    acceptance: float | None = None
    delta: float | None = None
    aa: bool = False
    compare_drop: float | None = None  # --spec-compare: the true fraction of speedup lost since the stored run

    @property
    def key(self) -> bool:
        """The rows the goal is read at: the passing truth nearest the threshold, A/A, a 20 % miss."""
        return self.aa or round(self.truth_vs_threshold, 6) in (0.05, -0.20) or (
            self.gate.kind == "lossless" and self.truth_vs_threshold < -1)


#: The gates each shipped example carries (min_speedup 0.4 on cpu-ngram: examples/test_gates.py);
#: timed gates at eagle.toml's thresholds on the GPU server regime, and a P99 gate on cpu-ngram, show
#: those regimes.
GATES: dict[str, list[Gate]] = {
    "eagle": [Gate("min_speedup", 1.3, metric="throughput"), Gate("max_p99_regression", 0.10, metric="e2e"),
              Gate("min_acceptance", 0.5), Gate("lossless", 1.0, temperature=0.8)],
    "gpu-ngram c=1": [Gate("min_speedup", 1.3, metric="throughput"), Gate("max_p99_regression", 0.10, metric="e2e"),
                      Gate("min_acceptance", 0.5), Gate("lossless", 1.0, temperature=0.8)],
    "cpu-ngram": [Gate("min_speedup", 0.4, metric="throughput"), Gate("max_p99_regression", 0.10, metric="e2e"),
                  Gate("min_acceptance", 0.3), Gate("lossless", 1.0, temperature=0.8)],
}
for _gates in GATES.values():  # --spec-compare's speedup check, max_speedup_drop 0.10, a true speedup of 1.3
    _gates.append(Gate("compare", 0.10))


def cases(config: str) -> list[Case]:
    found = []
    for gate in GATES[config]:
        t = gate.threshold
        if gate.kind == "min_speedup":
            found += [Case(gate, config, d, 0.0, spec_scale=1 / (t * (1 + d))) for d in (*SAFE, *(-m for m in MISSES))]
        elif gate.kind == "min_acceptance":
            found += [Case(gate, config, d, 0.8, acceptance=t * (1 + d)) for d in (*SAFE, *(-m for m in MISSES))]
        elif gate.kind == "max_p99_regression":
            found += [Case(gate, config, d, 0.0, spec_scale=1 + t - d, aa=abs(t - d) < 1e-12)
                      for d in (t + 0.10, t, 0.05, *(-m for m in MISSES))]
        elif gate.kind == "compare":  # threshold: [gates] max_speedup_drop
            found += [Case(gate, config, round(t - drop, 6), 0.0, spec_scale=1 / 1.3, compare_drop=drop, aa=drop == 0)
                      for drop in (0.0, 0.05, 0.15, 0.20, 0.30)]
        elif gate.kind == "lossless":
            found += [Case(gate, config, round(MARGIN - abs(shift), 6), 0.8, delta=shift, aa=shift == 0)
                      for shift in (0.0, -0.05, -0.1, -0.5, -2.0)]
    return found


def _compared(result: ConfigResult, stored: ConfigResult | None) -> str:
    """The speedup check of --spec-compare: this run against the stored one."""
    checks = [c for c in compare_runs(result, stored, 1.0, 0.10).checks if "speedup" in c.figure]
    return checks[0].outcome if checks else "inconclusive"


def verdict(case: Case, condition: SimulatedCondition, level: float, stored: ConfigResult | None = None) -> str:
    """The plugin's verdict on the condition as measured so far."""
    run = condition.run_result(case.temperature, level)
    if case.delta is not None:
        check = lossless.check_lossless(run.spec.samples, run.vanilla.samples, 1 - level, MARGIN)
        run = run.model_copy(update={"lossless_check": check})
    result = ConfigResult(config=run.config, config_name=run.config_name, runs=[run])
    if case.compare_drop is not None:
        return _compared(result, stored)
    return judge(case.gate, result)[0].outcome


def trial(case: Case, seed: int, noise: Noise, repeats: int, max_repeats: int, num_prompts: int | None) -> tuple[str, int]:
    """Sequential sampling as the plugin runs it: judge after `repeats` windows, then at each look."""
    level = sequential.interval_level(repeats, max_repeats)
    condition = SimulatedCondition(seed, SETTINGS[case.config], noise, case.spec_scale, case.acceptance, case.delta,
                                   num_prompts)
    stored = None
    if case.compare_drop is not None:  # the stored run: same config, its own engine starts, `repeats` windows
        before = SimulatedCondition(seed + 1_000_003, SETTINGS[case.config], noise, 1 / 1.3, num_prompts=num_prompts)
        before.extend(repeats)
        run = before.run_result(case.temperature, level)
        stored = ConfigResult(config=run.config, config_name=run.config_name, runs=[run])
        condition = SimulatedCondition(seed, SETTINGS[case.config], noise, 1 / (1.3 * (1 - case.compare_drop)),
                                       num_prompts=num_prompts)
    windows = repeats
    while True:
        condition.extend(windows)
        outcome = verdict(case, condition, level, stored)
        following = sequential.next_look(windows, repeats, max_repeats)
        if outcome != "inconclusive" or following is None:
            return outcome, windows
        windows = following


def row(case: Case, trials: int, noise: Noise, repeats: int, max_repeats: int, num_prompts: int | None,
        seed: int) -> dict[str, Any]:
    counts = {"pass": 0, "fail": 0, "inconclusive": 0}
    windows = 0
    for i in range(trials):
        outcome, used = trial(case, seed + i, noise, repeats, max_repeats, num_prompts)
        counts[outcome] += 1
        windows += used
    return {
        "gate": "compare(max_speedup_drop=0.1)" if case.gate.kind == "compare" else case.gate.label, "config": case.config, "truth_vs_threshold": case.truth_vs_threshold,
        "fail_rate": counts["fail"] / trials, "pass_rate": counts["pass"] / trials,
        "inconclusive_rate": counts["inconclusive"] / trials, "trials": trials, "aa": case.aa,
        "mean_windows": windows / trials,
    }


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as docs/benchmarks.md's table "How often does a gate lie?"."""
    lines = [
        "| Gate | Config | Truth vs threshold | Fail | Pass | Inconclusive | Mean windows |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        distance = r["truth_vs_threshold"]
        kind = r["gate"].split("(")[0]
        truth = f"{distance:+.2f} nats/token" if kind == "lossless" else f"{distance:+.2f}" if kind == "max_p99_regression" \
            else f"{distance:+.0%}"
        truth += " (A/A)" if r["aa"] else ""
        wrong = "fail" if distance > 0 else "pass"
        cells = {k: f"{r[f'{k}_rate']:.1%}" for k in ("fail", "pass", "inconclusive")}
        cells[wrong] = f"**{cells[wrong]}**"  # the wrong answer
        lines.append(f"| `{r['gate']}` | {r['config']} | {truth} | {cells['fail']} | {cells['pass']} | "
                     f"{cells['inconclusive']} | {r['mean_windows']:.1f} |")
    return "\n".join(lines)


def _product_state() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "pytest_specdecode"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
        return f"{head}{' + uncommitted changes to pytest_specdecode/' if dirty else ''}"
    except OSError:
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3, help="[run] repeats: windows a side before the first look")
    parser.add_argument("--max-repeats", type=int, default=None, help="[run] max_repeats (default twice --repeats)")
    parser.add_argument("--num-prompts", type=int, default=None, help="instead of each config's num_prompts")
    parser.add_argument("--engine-cv", type=float, default=None, help="engine-start noise instead of the assumed 5%%")
    parser.add_argument("--window-cv", type=float, default=None, help="window noise (CV) of every regime instead of the fit")
    parser.add_argument("--configs", nargs="*", default=list(GATES), choices=list(GATES))
    parser.add_argument("--gates", nargs="*", default=None, help="only these gate kinds")
    parser.add_argument("--quick", action="store_true", help="only the rows the goal is read at (+5%%, A/A, -20%%)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--markdown", type=Path, nargs="?", const=Path("-"), default=None,
                        help="print the table (of FILE when given, else of this run's rows)")
    args = parser.parse_args()
    if args.markdown is not None and args.markdown != Path("-"):
        data = json.loads(args.markdown.read_text())
        print(markdown(data["rows"] if isinstance(data, dict) else data))
        return
    max_repeats = args.max_repeats if args.max_repeats is not None else 2 * args.repeats
    noise = fit()
    if args.engine_cv is not None:
        noise = Noise(**{**noise.__dict__, "engine_cv": args.engine_cv})
    if args.window_cv is not None:
        regimes = {k: replace(r, window_cv=args.window_cv) for k, r in noise.regimes.items()}
        noise = Noise(**{**noise.__dict__, "regimes": regimes})
    started = time.perf_counter()
    rows = []
    for config in args.configs:
        for case in cases(config):
            if (args.gates and case.gate.kind not in args.gates) or (args.quick and not case.key):
                continue
            rows.append(row(case, args.trials, noise, args.repeats, max_repeats, args.num_prompts, args.seed))
            print(f"{rows[-1]['gate']:40s} {config:14s} {case.truth_vs_threshold:+.2f}: fail {rows[-1]['fail_rate']:.3f} "
                  f"pass {rows[-1]['pass_rate']:.3f} inconclusive {rows[-1]['inconclusive_rate']:.3f} "
                  f"windows {rows[-1]['mean_windows']:.1f}", file=sys.stderr, flush=True)
    result = {
        "product": _product_state(),
        "settings": {
            "repeats": args.repeats, "max_repeats": max_repeats,
            "looks": sequential.looks(args.repeats, max_repeats),
            "interval_level": sequential.interval_level(args.repeats, max_repeats),
            "lossless_margin": MARGIN, "num_prompts": args.num_prompts or {k: SETTINGS[k].num_prompts for k in args.configs},
            "seconds": round(time.perf_counter() - started, 1),
        },
        "noise": noise.summary(),
        "rows": rows,
    }
    if args.markdown is not None:
        print(markdown(rows))
    emit(result, args.out)


if __name__ == "__main__":
    main()
