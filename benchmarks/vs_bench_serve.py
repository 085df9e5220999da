"""The plugin's server-mode numbers next to `vllm bench serve`'s, on one server and one workload.

One `vllm serve` with the config's speculative settings; at each `--concurrency` level, after one
untimed pass of the workload at that level, the plugin and vLLM's own benchmark take turns
(`--rounds` each, plugin first), sending the same rendered prompts with the same sampling and the
same concurrency. Acceptance comes from the same `/metrics` counters (deltas) in both; TPOT from
each client's own stream timestamps. Each level keeps every round and the medians; the plugin's
rounds also keep how far its event loop fell behind (`lag_ms`) and its CPU time, so a client that
cannot keep up with the stream shows as such instead of as a slow server.

A third turn each round runs `vllm bench serve` with the options the plugin's requests carry and
its own do not (`plugin_options`: continuous usage stats, token ids): where the plugin reads a
slower TPOT than bench serve, this turn says whether the server serves those requests slower
(it reads like the plugin) or the plugin's client reads them slower (it reads like bench serve).

    python benchmarks/vs_bench_serve.py examples/cpu-ngram.toml --concurrency 1 4 --rounds 3 --out benchmarks/results/cpu-vs-bench-serve.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from _common import emit

from pytest_specdecode.config.spec import load_config
from pytest_specdecode.engines import vllm_info
from pytest_specdecode.engines.base import Sampling
from pytest_specdecode.engines.completions import completion_body
from pytest_specdecode.engines.server import ServerEngine
from pytest_specdecode.config.load import LoadLevel
from pytest_specdecode.measure.measurer import engine_specs
from pytest_specdecode.results import EngineFigures
from pytest_specdecode.config.workload import load_prompts, render


def plugin_figures(engine: ServerEngine, prompts: list[str], sampling: Sampling, concurrency: int) -> dict:
    before = engine.counters().spec
    samples, duration, client = engine.generate(prompts, sampling, LoadLevel(concurrency=concurrency))
    counters = engine.counters().spec.minus(before)
    figures = EngineFigures(samples=samples, duration_s=duration)
    return {
        "acceptance_rate": counters.num_accepted_tokens / counters.num_draft_tokens,
        "mean_tpot_ms": figures.tpot_ms.mean,
        "mean_ttft_ms": figures.ttft_ms.mean,
        "output_tokens": figures.output_tokens,
        "duration_s": duration,
        "lag_ms": client.lag_ms if client else None,
        "client_cpu_s": client.cpu_s if client else None,
    }


def plugin_options(sampling: Sampling) -> dict:
    """What the plugin's request asks for beyond what `vllm bench serve`'s does (per-request seeds
    left out: bench serve sends one `--seed` for all, and at T=0 a seed changes nothing)."""
    body = completion_body("model", "prompt", sampling)
    return {"return_token_ids": body["return_token_ids"], "stream_options": body["stream_options"]}


def bench_serve_figures(
    engine: ServerEngine, prompts: list[str], sampling: Sampling, folder: Path, concurrency: int,
    extra_body: dict | None = None,
) -> dict:
    from vllm.benchmarks.serve import add_cli_args, main
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    dataset = folder / "prompts.jsonl"
    dataset.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    parser = FlexibleArgumentParser()
    add_cli_args(parser)
    args = parser.parse_args([
        "--backend", "vllm", "--base-url", engine.base_url, "--model", engine.client.served_model(),
        "--tokenizer", engine.spec.model, "--dataset-name", "custom", "--dataset-path", str(dataset),
        "--skip-chat-template", "--custom-output-len", str(sampling.max_tokens), "--num-prompts", str(len(prompts)),
        "--max-concurrency", str(concurrency), "--temperature", str(sampling.temperature), "--seed", str(sampling.seed),
        "--num-warmups", "0", *(["--extra-body", json.dumps(extra_body)] if extra_body else []),
    ])
    result = main(args)
    return {
        "acceptance_rate": result["spec_decode_acceptance_rate"] / 100,
        "mean_tpot_ms": result["mean_tpot_ms"],
        "mean_ttft_ms": result["mean_ttft_ms"],
        "output_tokens": result["total_output_tokens"],
        "duration_s": result["duration"],
    }


def medians(rounds: list[dict]) -> dict:
    """Each figure's median over the rounds (None where a client does not report it)."""
    return {
        key: statistics.median(r[key] for r in rounds) if all(r.get(key) is not None for r in rounds) else None
        for key in rounds[0]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--temperature", type=float, default=0.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1])
    parser.add_argument("--rounds", type=int, default=2, help="turns of each client per level, alternating")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    config = load_config(args.config)
    config = config.model_copy(update={"run": config.run.model_copy(update={"mode": "server"})})
    spec_side, _ = engine_specs(config, vllm_info.engine_defaults())
    workload = config.workload
    sampling = Sampling(args.temperature, workload.max_tokens, workload.top_p, workload.seed, workload.ignore_eos)
    engine = ServerEngine(spec_side, config.run.server_start_timeout_s)
    try:
        prompts = render(load_prompts(workload), engine.tokenizer(), workload.chat_template)
        engine.generate(prompts[: max(config.run.warmup, 1)], sampling)
        levels = []
        for concurrency in args.concurrency:
            # one untimed pass at this level: batch shapes first seen here are no client's cost
            engine.generate(prompts, sampling, LoadLevel(concurrency=concurrency))
            plugin_rounds, bench_rounds, options_rounds = [], [], []
            options = plugin_options(sampling)
            with tempfile.TemporaryDirectory() as folder:
                for _ in range(args.rounds):
                    plugin_rounds.append(plugin_figures(engine, prompts, sampling, concurrency))
                    bench_rounds.append(bench_serve_figures(engine, prompts, sampling, Path(folder), concurrency))
                    options_rounds.append(bench_serve_figures(engine, prompts, sampling, Path(folder), concurrency,
                                                              options))
            plugin, bench, with_options = medians(plugin_rounds), medians(bench_rounds), medians(options_rounds)
            levels.append({
                "concurrency": concurrency,
                "plugin": plugin,
                "vllm_bench_serve": bench,
                "plugin_rounds": plugin_rounds,
                "vllm_bench_serve_rounds": bench_rounds,
                "vllm_bench_serve_plugin_options": with_options,
                "vllm_bench_serve_plugin_options_rounds": options_rounds,
                "acceptance_difference_points": abs(plugin["acceptance_rate"] - bench["acceptance_rate"]) * 100,
                "tpot_ratio": plugin["mean_tpot_ms"] / bench["mean_tpot_ms"],
                # bench serve sending the plugin's options over bench serve as it is: the server's share
                "options_tpot_ratio": with_options["mean_tpot_ms"] / bench["mean_tpot_ms"],
            })
    finally:
        engine.close()
    result = {
        "config": str(args.config),
        "environment": vllm_info.environment().model_dump(),
        "engine_args": spec_side.engine_args,
        "speculative_config": spec_side.speculative_config,
        "temperature": args.temperature,
        "prompts": len(prompts),
        "levels": levels,
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
