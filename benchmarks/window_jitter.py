"""Why the plugin's offline windows spread more than a bare `LLM.generate`'s, on one engine.

An independent H200 check (8B shape, CUDA graphs) saw the plugin's spec windows spread 40x more
than a bare script's on the same engine (0.654-0.743 s vs 0.682-0.684 s). The plugin's window
differs from the bare call in four ways, each a variant here, interleaved round by round on one
engine so drift hits all alike:

- `bare`: `LLM.generate` (FINAL_ONLY outputs), back to back, the prefix cache left warm;
- `loop`: the plugin's own step loop (`OfflineEngine.generate`: DELTA outputs, a timestamp a step);
- `loop+reset`: the same after `reset_prefix_cache`, as every plugin window starts;
- `loop+reset+gc`: the same with the collector paused (`[run] pause_gc`, the plugin's default).

`--ballast N` keeps N small container objects alive first, as a pytest session's heap holds its
collected tests, reports and results: a full collection walks them all, and the bare script's
heap is small. The figure per variant is each round's window time; its spread is the coefficient
of variation (stdev / mean) and the range.

    python benchmarks/window_jitter.py examples/gpu-8b-draft.toml --rounds 6 --ballast 2000000 --out jitter.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import emit

from pytest_specdecode.config.spec import load_config
from pytest_specdecode.config.workload import load_prompts, render
from pytest_specdecode.engines import vllm_info
from pytest_specdecode.engines.base import Sampling
from pytest_specdecode.engines.offline import OfflineEngine
from pytest_specdecode.measure.measurer import engine_specs, gc_paused


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--ballast", type=int, default=0, help="small objects kept alive, like a pytest heap")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    ballast = [{"i": i} for i in range(args.ballast)]  # tracked containers: what a gen-2 collection walks
    config = load_config(args.config)
    spec_side, _ = engine_specs(config, vllm_info.engine_defaults())
    engine = OfflineEngine(spec_side)
    try:
        from vllm import SamplingParams

        workload = config.workload
        prompts = render(load_prompts(workload), engine.tokenizer(), workload.chat_template)
        sampling = Sampling(0.0, workload.max_tokens, workload.top_p, workload.seed, workload.ignore_eos)
        params = SamplingParams(temperature=0.0, max_tokens=workload.max_tokens, ignore_eos=workload.ignore_eos)

        def bare() -> float:
            started = time.perf_counter()
            engine.llm.generate(prompts, params, use_tqdm=False)
            return time.perf_counter() - started

        def loop(reset: bool = False, pause: bool = False) -> float:
            if reset:
                engine.reset_prefix_cache()
            with gc_paused(pause):
                return engine.generate(prompts, sampling).duration_s

        variants = {"bare": bare, "loop": loop, "loop+reset": lambda: loop(reset=True),
                    "loop+reset+gc": lambda: loop(reset=True, pause=True)}
        for run in variants.values():  # one untimed round each: one-time costs are no variant's
            run()
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                times[name].append(run())
    finally:
        engine.close()
    summary = {name: {"mean_s": statistics.fmean(values), "cv": statistics.stdev(values) / statistics.fmean(values),
                      "min_s": min(values), "max_s": max(values)} for name, values in times.items()}
    emit({"config": str(args.config), "environment": vllm_info.environment().model_dump(), "prompts": len(prompts),
          "max_tokens": config.workload.max_tokens, "ignore_eos": config.workload.ignore_eos, "ballast": len(ballast),
          "engine_args": spec_side.engine_args, "speculative_config": spec_side.speculative_config,
          "rounds": args.rounds, "window_s": times, "summary": summary,
          "loop_over_bare": paired_ratio(times["loop+reset+gc"], times["bare"])}, args.out)


def paired_ratio(plugin: list[float], bare: list[float]) -> dict[str, float | list[float]]:
    """The plugin's window time over the bare script's, round by round (each round ran both back to
    back on one engine), with a 95 % t interval on the log ratios: how well the two agree, resolved."""
    import numpy as np
    from scipy import stats

    logs = np.log(np.asarray(plugin) / np.asarray(bare))
    half = stats.t.ppf(0.975, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
    return {"ratios": [float(r) for r in np.exp(logs)], "geomean": float(np.exp(logs.mean())),
            "interval_95": [float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))]}


if __name__ == "__main__":
    main()
