"""Plugin overhead: the plugin's step loop vs a bare `LLM.generate` on the same engine and prompts.

Both paths run alternately on one engine (A B A B ...), so drift hits both alike; the figure is
output tokens/s of each, and the plugin's throughput as a fraction of the bare script's, per round
(its median and range are what the docs report). A GPU decodes a whole offline batch in about as
many steps as its longest answer, well under a second: `--max-tokens 1024 --ignore-eos` makes
each round a thousand steps long, so a percent is not lost in timer and scheduling noise.

    python benchmarks/overhead.py examples/cpu-ngram.toml --rounds 3 --out benchmarks/results/overhead-cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import emit

from pytest_specdecode.config.spec import load_config
from pytest_specdecode.engines import vllm_info
from pytest_specdecode.engines.base import Sampling
from pytest_specdecode.engines.offline import OfflineEngine
from pytest_specdecode.measure.measurer import engine_specs
from pytest_specdecode.config.workload import load_prompts, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--max-tokens", type=int, help="instead of the config's max_tokens")
    parser.add_argument("--ignore-eos", action="store_true", help="every answer runs to max_tokens")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    config = load_config(args.config)
    spec_side, _ = engine_specs(config, vllm_info.engine_defaults())
    engine = OfflineEngine(spec_side)
    try:
        from vllm import SamplingParams

        prompts = render(load_prompts(config.workload), engine.tokenizer(), config.workload.chat_template)
        workload = config.workload
        max_tokens = args.max_tokens or workload.max_tokens
        ignore_eos = args.ignore_eos or workload.ignore_eos
        sampling = Sampling(args.temperature, max_tokens, workload.top_p, workload.seed, ignore_eos)
        params = SamplingParams(temperature=sampling.temperature, top_p=sampling.top_p, max_tokens=sampling.max_tokens,
                                seed=sampling.seed, ignore_eos=sampling.ignore_eos)
        # one untimed round of each path first: one-time costs (allocations, caches) are no one's overhead
        engine.llm.generate(prompts, params, use_tqdm=False)
        engine.generate(prompts, sampling)
        bare, plugin = [], []
        for _ in range(args.rounds):
            started = time.perf_counter()
            outputs = engine.llm.generate(prompts, params, use_tqdm=False)
            elapsed = time.perf_counter() - started
            bare.append(sum(len(o.outputs[0].token_ids) for o in outputs) / elapsed)
            samples, duration, _ = engine.generate(prompts, sampling)
            plugin.append(sum(s.output_tokens for s in samples) / duration)
    finally:
        engine.close()
    ratios = [p / b for p, b in zip(plugin, bare)]
    result = {
        "config": str(args.config),
        "environment": vllm_info.environment().model_dump(),
        "prompts": len(prompts),
        "max_tokens": max_tokens,
        "ignore_eos": ignore_eos,
        "temperature": args.temperature,
        "engine_args": spec_side.engine_args,
        "speculative_config": spec_side.speculative_config,
        "bare_tokens_per_s": bare,
        "plugin_tokens_per_s": plugin,
        "plugin_over_bare": ratios,
        "plugin_over_bare_median": statistics.median(ratios),
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
