"""The production-shaped session: an 8B-shaped target with a 1B-shaped draft, random weights, on
an H200 (offline and through `vllm serve`), and why the plugin's windows spread as they do."""

from __future__ import annotations

import statistics

from _markdown import fmt, load, table

from pytest_specdecode.config.memory import kv_bytes_per_token, weight_bytes
from pytest_specdecode.config.shapes import config_json
from pytest_specdecode.results import RunResult
from pytest_specdecode.results.decision import break_even_acceptance
from pytest_specdecode.results.run import DraftMemory

SHAPE_TITLE = "8B-shaped target, 1B-shaped draft, random weights (H200, CUDA graphs)"
SHAPE_FILES = ("h200-8b-draft.json", "h200-8b-draft-server.json")

SHAPE_NOTE = """Random weights (`load_format = "dummy"`): acceptance is 0.000 at every level, as it should be
for two unrelated random models, and every acceptance gate read inconclusive with its reason; what
stands is the step cost. A speculative step (three 1B draft passes and a 4-token 8B verify) cost
2.3-3.3x a vanilla step, so real weights would need a per-token acceptance of 0.63-0.88 at K=3 to
pay. For scale: vLLM's CI pins Llama-3.1-8B's trained EAGLE-3 head at 0.73 / 0.52 / 0.36 per
position, 2.61 tokens a step; a draft that good at this step cost would pay at c=64 (2.28x) and not
at c=1 (3.33x). The intervals are wide (three windows a side, and the spec engine's own windows
spread: below)."""

JITTER_NOTE = """**Window spread, plugin vs a bare script on one engine.** `benchmarks/window_jitter.py` runs four
variants round by round on the same spec engine (`examples/gpu-8b-draft.toml`, 32 prompts x 512
tokens, a 2-million-object heap ballast like a pytest session's): bare `LLM.generate`, the plugin's
step loop, the loop after a prefix-cache reset (as every window starts) and the loop with the
collector paused (`[run] pause_gc`, now the default). On this engine the bare script spread the
most: the spec engine itself varies by a quarter from round to round at T=0 (the session's windows
took 513 engine steps each, the same work every time), and the plugin's loop did not add to it. The plugin's own session windows on that config spread
{session_cv} (spec) and {vanilla_cv} (vanilla), within 2x of the bare script's {bare_cv}: the
target the issue set is met here. The 40x gap an earlier check saw (n-gram, 0.654-0.743 s against
0.682-0.684 s) was not reproduced: that n-gram run was not repeated (the device was not lent again
in this session), so its cause stays open; pausing the collector showed no effect on this engine."""


def _memory() -> DraftMemory:
    target, draft = config_json("llama-3.1-8b-shape"), config_json("llama-3.2-1b-shape")
    return DraftMemory(target_kv_bytes_per_token=kv_bytes_per_token(target),
                       draft_kv_bytes_per_token=kv_bytes_per_token(draft), draft_weight_bytes=weight_bytes(draft))


def _interval(ci: list[float] | tuple[float, float] | None) -> str:
    return "-" if ci is None else f"{ci[0]:.2f}-{ci[1]:.2f}"


def _cv(values: list[float]) -> float:
    return statistics.stdev(values) / statistics.fmean(values)


def production_shape_section() -> list[str]:
    reports = [load(name) for name in SHAPE_FILES]
    jitter = load("h200-window-jitter.json")
    if None in reports or jitter is None:
        return []
    rows, memory = [], _memory()
    for name, report in zip(SHAPE_FILES, reports):
        for raw in report["runs"]:
            run = RunResult.model_validate(raw).model_copy(update={"draft_memory": memory})
            needed = break_even_acceptance(run.step_cost_ratio, run.num_speculative_tokens)
            split = run.kv_capacity_split
            rows.append([
                f"`{name}`", run.condition.label, fmt(run.acceptance_rate), f"{run.speedup:.2f}x ({_interval(run.speedup_ci)})",
                f"{run.step_cost_ratio:.2f}x ({_interval(run.step_cost_ratio_ci)})", fmt(needed, ".2f"),
                f"{run.spec.tpot_ms.p50:.1f} vs {run.vanilla.tpot_ms.p50:.1f}",
                f"{1 - run.kv_cache_ratio:.1%} = {split.draft_kv_per_token:.1%} + {split.draft_weights:.1%} + {split.other:.1%}",
            ])
    offline = reports[0]["runs"][0]
    spec_windows = [w["duration_s"] for w in offline["spec"]["windows"]]
    vanilla_windows = [w["duration_s"] for w in offline["vanilla"]["windows"]]
    timing = reports[0]["timing_s"]
    jitter_rows = [[variant, f"{s['mean_s']:.2f}", f"{s['cv']:.3f}", f"{s['min_s']:.2f}-{s['max_s']:.2f}"]
                   for variant, s in jitter["summary"].items()]
    jitter_rows.append(["plugin session, spec windows", f"{statistics.fmean(spec_windows):.2f}",
                        f"{_cv(spec_windows):.3f}", f"{min(spec_windows):.2f}-{max(spec_windows):.2f}"])
    return [
        f"## {SHAPE_TITLE}", "",
        "`bash benchmarks/gpu_session.sh jitter`, `shape` and `shape-server` (files `h200-window-jitter.json`, "
        "`h200-8b-draft.json`, `h200-8b-draft-server.json` and their `.log`); `examples/gpu-8b-draft.toml` "
        "(offline, 32 prompts x 512 tokens) and `gpu-8b-draft-server.toml` (48 x 64 at c = 1, 16, 64), "
        "`examples/gpu/test_production_shape.py`, 3 windows a side, T=0.", "",
        *table(["report", "run", "acceptance", "speedup (0.99)", "step cost (0.99)", "pays above acceptance",
                "TPOT p50 ms spec vs vanilla", "KV capacity lost = draft KV/token + weights + rest"], rows), "",
        SHAPE_NOTE, "",
        f"The offline session took {timing['session']:.0f} s: engine starts {timing['engine_start']:.0f} s (vanilla "
        f"{reports[0]['engine_start_s']['gpu-8b-draft']['vanilla']:.0f} s, spec "
        f"{reports[0]['engine_start_s']['gpu-8b-draft']['spec']:.0f} s on a warm compile cache), warmup "
        f"{timing['warmup']:.0f} s, measurement {timing['measurement']:.0f} s and {timing['other']:.0f} s else "
        "(pytest, model folders, the report).", "",
        *table(["variant (one spec engine, 6 rounds)", "mean s", "CV", "range s"], jitter_rows), "",
        JITTER_NOTE.format(session_cv=f"{_cv(spec_windows):.3f}", vanilla_cv=f"{_cv(vanilla_windows):.3f}",
                           bare_cv=f"{jitter['summary']['bare']['cv']:.3f}"), "",
    ]
