"""How often the T>0 lossless check cries wolf: an A/A test on one vanilla engine.

Both sides of every trial are the same vanilla engine, so "same distribution" is true by
construction and every "not lossless" is a false alarm. The engine generates R rounds of the same
n prompts at temperature T, each round with its own seed base (far enough apart that no two
requests of different rounds share a seed); every output is scored by the engine itself (as the
gate scores both sides with the vanilla engine); then each pair of rounds is one trial of
`check_lossless`. The observed false-alarm rate at alpha 0.01 and 0.05 is reported next to the
nominal one, with an exact (Clopper-Pearson) binomial 95% interval. The JSON names the statistic
and keeps each request's (target log-probability, tokens) of every round under `scored`, so a
changed statistic can be judged again without an engine.

All R(R-1)/2 pairs of rounds are used, and they overlap: each round takes part in R-1 trials, so
trials are correlated and the all-pairs interval, which assumes independent trials, is too narrow.
The floor(R/2) disjoint pairs (rounds 0-1, 2-3, ...) are independent; their rate and interval are
reported beside it. Unlike the gate's pairs, an A/A pair shares its prompt but not its seed; the
test needs neither (docs/reading-the-numbers.md, "Lossless at T>0").

    python benchmarks/lossless_false_alarm.py examples/gpu-ngram.toml --rounds 50 --temperature 0.8 --out FILE.json
    python benchmarks/lossless_false_alarm.py examples/cpu-ngram.toml --rounds 16 --prompts 16 --max-tokens 32 --out FILE.json
    python benchmarks/lossless_false_alarm.py FILE.json --rejudge --out FILE.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import emit

from pytest_specdecode.config.spec import load_config
from pytest_specdecode.engines import vllm_info
from pytest_specdecode.engines.base import Sampling
from pytest_specdecode.engines.offline import OfflineEngine
from pytest_specdecode.measure.lossless import check_lossless
from pytest_specdecode.measure.measurer import engine_specs
from pytest_specdecode.results import LOSSLESS_STATISTIC, LosslessCheck, RequestSample
from pytest_specdecode.config.workload import load_prompts, render

ALPHAS = (0.01, 0.05)
RESAMPLED_TRIALS = 2000
#: Seed bases of consecutive rounds lie this far apart; request i of a round uses base + i.
SEED_STRIDE = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--rounds", type=int, default=10, help="R: rounds of the workload (R >= 2)")
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--prompts", type=int, help="override [workload] num_prompts")
    parser.add_argument("--max-tokens", type=int, help="override [workload] max_tokens")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--rejudge", action="store_true",
                        help="CONFIG is an earlier --out file: judge its scores again with today's statistic, no engine")
    args = parser.parse_args()
    if args.rejudge:
        emit(rejudged(json.loads(args.config.read_text())), args.out)
        return
    if args.rounds < 2 or args.temperature <= 0:
        parser.error("need --rounds >= 2 and --temperature > 0 (at T=0 every round is the same text)")

    config = load_config(args.config)
    overrides = {"num_prompts": args.prompts, "max_tokens": args.max_tokens}
    workload = config.workload.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    if workload.num_prompts >= SEED_STRIDE:
        parser.error(f"at most {SEED_STRIDE - 1} prompts, or seeds of two rounds would collide")
    _, vanilla_side = engine_specs(config, vllm_info.engine_defaults())
    assert vanilla_side is not None  # only endpoints lack a vanilla twin
    engine = OfflineEngine(vanilla_side)
    try:
        prompts = render(load_prompts(workload), engine.tokenizer(), workload.chat_template)
        rounds = [
            scored_round(engine, prompts, Sampling(
                args.temperature, workload.max_tokens, workload.top_p, workload.seed + r * SEED_STRIDE,
                workload.ignore_eos,
            ), f"round {r + 1}/{args.rounds}")
            for r in range(args.rounds)
        ]
    finally:
        engine.close()

    result = {
        "config": str(args.config),
        "environment": vllm_info.environment().model_dump(),
        "engine_args": dict(vanilla_side.engine_args),
        "prompts": len(prompts),
        "max_tokens": workload.max_tokens,
        "temperature": args.temperature,
        "rounds": args.rounds,
        "seed_bases": [workload.seed + r * SEED_STRIDE for r in range(args.rounds)],
        "mean_output_tokens": statistics.fmean(s.output_tokens for samples in rounds for s in samples),
        **judged(rounds),
    }
    emit(result, args.out)


def judged(rounds: list[list[RequestSample]]) -> dict[str, Any]:
    """Every trial's verdict over the scored rounds, three ways of forming the trials."""
    count = len(rounds)
    all_pairs = list(itertools.combinations(range(count), 2))
    disjoint = [(a, a + 1) for a in range(0, count - 1, 2)]
    trials = {pair: check_lossless(rounds[pair[0]], rounds[pair[1]]) for pair in all_pairs}
    return {
        "n_pairs": sorted({check.n_pairs for check in trials.values()}),
        "statistic": LOSSLESS_STATISTIC,
        "per_pair_sd_median": _median([_contribution_sd(trials[pair]) for pair in all_pairs]),
        "all_pairs": false_alarms([trials[pair] for pair in all_pairs]),
        "disjoint_pairs": false_alarms([trials[pair] for pair in disjoint]),
        "resampled": false_alarms(resampled_trials(rounds)),
        "p_values": {f"{a}-{b}": trials[(a, b)].p_value for a, b in all_pairs},
        "scored": [[[s.target_logprob, s.output_tokens] for s in samples] for samples in rounds],
        "note": (
            f"all_pairs: the {len(all_pairs)} pairs of {count} rounds overlap (each round is in "
            f"{count - 1} trials), so its trials are correlated and its binomial interval, which "
            f"assumes independent trials, is too narrow; disjoint_pairs: the {len(disjoint)} pairs that share "
            f"no round, independent, with an honest but wide interval; resampled: {RESAMPLED_TRIALS} trials, "
            "each pairing request i of two rounds drawn for that request alone (the rounds' empirical "
            "distribution under the null), a calibration with many trials that an atypical round cannot dominate; "
            "its interval covers the resampling, not which rounds happened to be drawn"
        ),
    }


def resampled_trials(rounds: list[list[RequestSample]], trials: int = RESAMPLED_TRIALS) -> list[LosslessCheck]:
    """Trials drawn from the rounds: for request i, two distinct rounds picked for i alone.

    Each round is one draw of every request's output; request i's outputs over R rounds are R
    draws of one distribution. Pairing two of them per request, independently across requests,
    makes a trial from that distribution as the gate sees it under the null, and thousands of
    trials measure the test's false-alarm rate without a few atypical rounds deciding it.
    """
    rng = random.Random(0)
    checks = []
    for _ in range(trials):
        picks = [rng.sample(range(len(rounds)), 2) for _ in rounds[0]]
        spec = [rounds[a][i] for i, (a, _) in enumerate(picks)]
        vanilla = [rounds[b][i] for i, (_, b) in enumerate(picks)]
        checks.append(check_lossless(spec, vanilla))
    return checks


def rejudged(data: dict[str, Any]) -> dict[str, Any]:
    """An earlier run's file, its verdicts recomputed from the scores it kept."""
    if "scored" not in data:
        raise SystemExit("this file keeps no per-request scores (written before they were kept): re-run the engine")
    rounds = [
        [RequestSample(prompt_tokens=0, output_tokens=tokens, ttft_s=None, e2e_s=0.0, target_logprob=logprob)
         for logprob, tokens in samples]
        for samples in data["scored"]
    ]
    return {**data, **judged(rounds)}


def scored_round(engine: OfflineEngine, prompts: list[str], sampling: Sampling, label: str) -> list[RequestSample]:
    """One round of the workload, each output scored by the engine that sampled it."""
    started = time.perf_counter()
    samples = engine.generate(prompts, sampling).samples
    scores = engine.score(prompts, [s.output_token_ids for s in samples])
    print(f"{label}: seed base {sampling.seed}, {sum(s.output_tokens for s in samples)} tokens, "
          f"{time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    return [s.model_copy(update={"target_logprob": score}) for s, score in zip(samples, scores)]


def false_alarms(checks: Sequence[LosslessCheck]) -> dict[str, Any]:
    """Per alpha: rejections among the trials that reached a verdict, with an exact 95% interval."""
    judged = [check for check in checks if check.p_value is not None and check.n_pairs >= check.min_pairs]
    rates: dict[str, Any] = {"trials": len(checks), "judged": len(judged)}
    for alpha in ALPHAS:
        alarms = sum(check.p_value is not None and check.p_value < alpha for check in judged)
        rates[f"alpha_{alpha:g}"] = {
            "nominal": alpha,
            "false_alarms": alarms,
            "rate": alarms / len(judged) if judged else None,
            "interval_95": _exact_interval(alarms, len(judged)),
        }
    return rates


def _exact_interval(successes: int, trials: int) -> list[float] | None:
    if not trials:
        return None
    from scipy.stats import binomtest

    interval = binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="exact")
    return [float(interval.low), float(interval.high)]


def _median(values: list[float | None]) -> float | None:
    kept = [value for value in values if value is not None]
    return statistics.median(kept) if kept else None


def _contribution_sd(check: LosslessCheck) -> float | None:
    """The spread of the pairs' contributions, sigma_d of the sizing formula in
    docs/reading-the-numbers.md, read back from the check's interval."""
    if check.mean_difference_ci is None or check.n_pairs < 2:
        return None
    from scipy.stats import t

    low, high = check.mean_difference_ci
    return (high - low) / 2 * check.n_pairs**0.5 / float(t.ppf(0.975, check.n_pairs - 1))


if __name__ == "__main__":
    main()
