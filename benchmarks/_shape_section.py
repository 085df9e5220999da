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
in this session), so its cause stays open; pausing the collector showed no effect on this engine.
The n-gram case was run in a later session: next section."""

NGRAM_TITLE = "8B-shaped target, n-gram, random weights: the session against its floor (H200, CUDA graphs)"
NGRAM_FILES = ("h200-8b-ngram.json", "h200-8b-ngram-server.json")
FLOOR_FILES = ("h200-session-floor-8b-ngram.json", "h200-session-floor-8b-ngram-2.json")

NGRAM_NOTE = """A random 8B model's greedy output falls into a loop at once, so prompt lookup finds its next tokens
every time: acceptance reads 1.00, which no real model shows, and the 2.1x is a speedup at that
acceptance, not a verdict on n-gram (every acceptance gate read inconclusive with its reason). What
stands is the step cost: an n-gram step verifying 4 tokens cost 1.5-2.1x a vanilla step, so real
weights pay above a per-token acceptance of 0.35-0.56 at K=3, less the more requests share a step."""

FLOOR_NOTE = """**The session against its floor.** `benchmarks/session_floor.py` times a gate session (`pytest
examples/gpu/test_production_shape.py --spec-config=examples/gpu-8b-ngram.toml`, two engines at once)
and a bare script that does the same work with nothing but vLLM: `vllm.LLM` for both engines, the same
warmup, the same windows in ABBA order with the prefix cache emptied, both engines shut down. Each is
timed from process launch to exit; the first plugin run of each set is left out (in the first set it
filled vLLM's compile cache: twice the start time). Warm plugin sessions took {plugin}; the bare script
{bare}: {ratio} (median plugin run over median bare run, two sets): within the 1.15x goal. The bare
script's own spread ({bare_spread}) is two engine starts' noise, as large as the plugin's whole
overhead. Stopping both engines took {stop}, now a phase of its own: at once, and without waiting
out a grace period on the pytest process's multiprocessing resource tracker, which ignores SIGTERM
and had been stopped as if it were an engine's. `other` still
holds {other} (the earlier 8B session: 20 s, stops included): pytest, collection, the config check
against vLLM, the model folders and the results; not taken apart further yet."""

NGRAM_JITTER_NOTE = """**Window spread with n-gram** (`jitter 8b-ngram`, 32 prompts x 512 tokens, the case the earlier check
saw 40x): the bare script spread {bare_cv}, the plugin's loop {loop_cv}; the plugin session's own
windows (48 x 1536, above) {session_cv} (spec) and {vanilla_cv} (vanilla). No 40x gap at this size:
the plugin's windows spread within 2x of the bare script's. The plugin's window is
{ratio} the bare call's (paired, 95 % interval {interval}), not resolved to 3 %; most of it is the
prefix-cache reset every plugin window starts with (the bare call reuses the cached prompts: loop
{loop_s} s, loop after a reset {reset_s} s)."""

BENCH_NOTE = """**Plugin vs `vllm bench serve`** on one `vllm serve` (`CONCURRENCY="1 16" bash benchmarks/gpu_session.sh
bench-serve 8b-ngram-server`, two rounds each, plugin first): acceptance agrees exactly; the plugin's
TPOT reads {ratios} above vLLM's own client at a TPOT of ~2 ms, four tokens a chunk: not within 3 %.
The plugin's client fell {lag} behind its stream (event-loop lag), which is of that order; vLLM
0.26 on the GPU does not report the server's own per-request ITL, so the plugin's `client_timing`
check (vLLM 0.32+) could not say which client is right here."""


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
    rows = []
    for name, run in _runs(dict(zip(SHAPE_FILES, reports)), _memory()):
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


def _runs(reports: dict[str, dict], memory: DraftMemory | None = None) -> list[tuple[str, RunResult]]:
    """Each report's runs as the result model, by report file name."""
    return [(name, RunResult.model_validate(raw).model_copy(update={"draft_memory": memory}))
            for name, report in reports.items() for raw in report["runs"]]


def _wall(values: list[float]) -> str:
    return ", ".join(f"{value:.1f}" for value in values) + " s"


def ngram_shape_section() -> list[str]:
    reports = {name: load(name) for name in NGRAM_FILES}
    floors = [load(name) for name in FLOOR_FILES]
    jitter = load("h200-window-jitter-8b-ngram.json")
    bench = load("h200-vs-bench-serve-8b-ngram-server.json")
    if None in reports.values() or None in floors or jitter is None or bench is None:
        return []
    runs = _runs(reports)
    rows = []
    for name, run in runs:
        spec_w = [w.duration_s for w in run.spec.windows]
        vanilla_w = [w.duration_s for w in run.vanilla.windows]
        rows.append([
            f"`{name}`", run.condition.label, fmt(run.acceptance_rate), f"{run.speedup:.2f}x ({_interval(run.speedup_ci)})",
            f"{run.step_cost_ratio:.2f}x ({_interval(run.step_cost_ratio_ci)})",
            fmt(break_even_acceptance(run.step_cost_ratio, run.num_speculative_tokens), ".2f"),
            f"{run.spec.tpot_ms.p50:.1f} vs {run.vanilla.tpot_ms.p50:.1f}",
            f"{statistics.fmean(spec_w):.2f} / {statistics.fmean(vanilla_w):.2f}", f"{1 - run.kv_cache_ratio:.1%}",
        ])
    warm = [run for floor in floors for run in floor["runs"][1:]]
    plugin = [run["wall_s"] for run in warm if run["kind"] == "plugin"]
    bare = [run["wall_s"] for run in warm if run["kind"] == "bare"]
    floor_rows = [[f"`{name}` {index}", run["kind"] + (" (first: left out)" if index == 0 else ""), f"{run['wall_s']:.1f}",
                   *(f"{run['timing_s'][phase]:.1f}" if "timing_s" in run else "-"
                     for phase in ("engine_start", "engine_stop", "warmup", "measurement", "other"))]
                  for name, floor in zip(FLOOR_FILES, floors) for index, run in enumerate(floor["runs"])]
    stops = [run["timing_s"]["engine_stop"] for run in warm if "timing_s" in run]
    others = [run["timing_s"]["other"] for run in warm if "timing_s" in run]
    offline = runs[0][1]
    paired = jitter["loop_over_bare"]
    levels = bench["levels"]
    bench_rows = [[str(level["concurrency"]),
                   ", ".join(f"{r['mean_tpot_ms']:.2f}" for r in level["plugin_rounds"]),
                   ", ".join(f"{r['mean_tpot_ms']:.2f}" for r in level["vllm_bench_serve_rounds"]),
                   f"{level['tpot_ratio']:.3f}", f"{level['acceptance_difference_points']:+.1f}",
                   ", ".join(f"{r['lag_ms']:.1f}" for r in level["plugin_rounds"])] for level in levels]
    lags = [r["lag_ms"] for level in levels for r in level["plugin_rounds"]]
    return [
        f"## {NGRAM_TITLE}", "",
        "`bash benchmarks/gpu_session.sh jitter 8b-ngram`, `floor 8b-ngram`, `shape 8b-ngram`, `shape-server 8b-ngram` "
        "and `bench-serve 8b-ngram-server` (files `h200-window-jitter-8b-ngram.json`, `h200-session-floor-8b-ngram*.json`, "
        "`h200-8b-ngram.json`, `h200-8b-ngram-server.json`, `h200-vs-bench-serve-8b-ngram-server.json`); "
        "`examples/gpu-8b-ngram.toml` (offline, 48 prompts x 1536 tokens) and `gpu-8b-ngram-server.toml` (48 x 64 at "
        "c = 1, 16, 64), 3 windows a side, T=0.", "",
        *table(["report", "run", "acceptance", "speedup (0.99)", "step cost (0.99)", "pays above acceptance",
                "TPOT p50 ms spec vs vanilla", "window s spec / vanilla", "KV capacity lost"], rows), "",
        NGRAM_NOTE, "",
        *table(["run", "kind", "wall s", "starts", "stops", "warmup", "measurement", "other"], floor_rows), "",
        FLOOR_NOTE.format(plugin=_wall(plugin), bare=_wall(bare),
                          ratio=f"{statistics.median(plugin) / statistics.median(bare):.2f}x",
                          bare_spread=f"{min(bare):.0f}-{max(bare):.0f} s",
                          stop=f"{min(stops):.1f}-{max(stops):.1f} s", other=f"{min(others):.0f}-{max(others):.0f} s"), "",
        *table(["variant (one spec engine, 6 rounds)", "mean s", "CV", "range s"],
               [[variant, f"{s['mean_s']:.2f}", f"{s['cv']:.3f}", f"{s['min_s']:.2f}-{s['max_s']:.2f}"]
                for variant, s in jitter["summary"].items()]), "",
        NGRAM_JITTER_NOTE.format(
            bare_cv=f"{jitter['summary']['bare']['cv']:.3f}", loop_cv=f"{jitter['summary']['loop']['cv']:.3f}",
            session_cv=f"{_cv([w.duration_s for w in offline.spec.windows]):.3f}",
            vanilla_cv=f"{_cv([w.duration_s for w in offline.vanilla.windows]):.3f}",
            ratio=f"{paired['geomean']:.3f}x", interval=_interval(paired["interval_95"]),
            loop_s=f"{jitter['summary']['loop']['mean_s']:.3f}", reset_s=f"{jitter['summary']['loop+reset']['mean_s']:.3f}"), "",
        *table(["c", "plugin TPOT ms (rounds)", "bench serve TPOT ms (rounds)", "TPOT ratio", "acceptance diff (points)",
                "plugin lag ms"], bench_rows), "",
        BENCH_NOTE.format(ratios=" and ".join(f"{level['tpot_ratio'] - 1:+.0%} (c={level['concurrency']})" for level in levels),
                          lag=f"{min(lags):.1f}-{max(lags):.1f} ms"), "",
    ]
