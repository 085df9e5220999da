"""The sections rendered from the JSON the benchmark scripts beside this one write: the plugin
against a bare vLLM script, `vllm bench serve` and itself, and the EAGLE-3 head trained for it."""

from __future__ import annotations

from _markdown import PENDING, first_landing, fmt, load, table

EAGLE3_NOTE = """Held-out accuracy is speculators' conditional accuracy on 200 answers kept out of training
(position k counted where positions before it were right), teacher-forced on the target's own
answers: an upper estimate of acceptance, not acceptance. Training prompts are synthesised
(`benchmarks/gpu/eagle3/prompts.py`, 2000 prompts answered at T=0 and T=0.8: 730k answer tokens,
91 s with vLLM); the plugin's `builtin:` workloads share no text with them. Device time of the
session: 174 s to install vLLM and generate the data, 265 s to train (41 s of it the first,
compiling step), 406 s for the offline gate session, 419 s for the server one and the fidelity run.

What the plugin measured through the head (`examples/gpu-eagle3.toml`, K=3, `builtin:mixed`, 64
prompts) is the acceptance in the table below: 0.323 at T=0, the same in both clients at both
concurrency levels, so a mean acceptance length of 1.97 tokens per step. The figure the issue
asked for, first-position acceptance >= 0.5, was not captured: the offline session of all four GPU
configs (EAGLE-3, n-gram, self-draft, the 8-layer draft; 8 gates, 6 passed and 2 failed) ended with
the SIGTERM its time limit sent while the report was being written, and that SIGTERM lost the report
(a bug this landing fixes: a signal during report writing no longer interrupts it). If the three
positions kept the training's ratios, 0.323 overall means about 0.55 at the first; that is an
estimate, not a measurement. The server session was stopped by the same limit during its third
cell and kept none of the two it had finished (also fixed: finished cells are kept).
"""
EAGLE3_FIDELITY_NOTE = """At concurrency 1 the plugin's TPOT is 3.4% below `vllm bench serve`'s (goal: within 3%). At
concurrency 16 it is 63% above it, with the same acceptance and the same token counts: on an H200
a 135M model decodes a step in about 2 ms, so 16 streams deliver ~8000 SSE chunks/s, and the
plugin's Python client, which parses each chunk, likely falls behind and stretches every request's
decode time (the harness records no client lag; the plugin's own server windows flag it as
`client_bound`). Not resolved in this session: on a model whose steps take 10 ms or more the load
on the client is five times lower, but until this is measured again, read the plugin's TPOT at high
concurrency on a tiny model as an upper bound.
"""
ENGINE_START_NOTE = """The first landing's plugin start cost about 20 s more than vLLM's own, because reading the
device name initialised CUDA in the pytest process and vLLM fell back to `spawn`; the device name
now comes from `nvidia-smi` and that penalty is gone. What remains, about 3.5 s (1.07x over two
rounds each), is above the 1.05 goal and not yet attributed (candidates: the stat loggers the
plugin turns on with `disable_log_stats=False`, the config check that imports vLLM's argument
classes, the child-process scan around the start); two rounds do not separate it from noise
either (bare starts spread 48.1-53.0 s).
"""


def overhead_section(name: str, command: str) -> list[str]:
    data = load(name)
    if data is None:
        return []
    return [
        f"### Plugin overhead vs a bare `vllm.LLM` script ({data['environment'].get('device')})", "", f"`{command}`", "",
        *first_landing(name), "| round | bare tokens/s | plugin tokens/s |", "|---|---|---|",
        *[f"| {i + 1} | {b:.1f} | {p:.1f} |" for i, (b, p) in enumerate(zip(data["bare_tokens_per_s"], data["plugin_tokens_per_s"]))],
        "", f"Median plugin / bare: **{data['plugin_over_bare_median']:.4f}** ({len(data['bare_tokens_per_s'])} alternating rounds, "
        f"{data['prompts']} prompts x {data['max_tokens']} tokens, T={data['temperature']:g}). The bare script alone "
        f"spread {min(data['bare_tokens_per_s']):.1f}-{max(data['bare_tokens_per_s']):.1f} tokens/s between rounds: "
        "a difference smaller than that spread is not resolved by this run, so the 1% target is neither shown "
        "nor refuted here; a longer workload (more prompts and tokens per round) is the next measurement.", "",
    ]


def bench_serve_section(name: str, command: str) -> list[str]:
    data = load(name)
    if data is None:
        return []
    # older files hold one level (concurrency 1) at the top; newer ones a list of levels
    levels = data.get("levels") or [{"concurrency": 1, **data}]
    rows = []
    for level in levels:
        plugin, bench = level["plugin"], level["vllm_bench_serve"]
        for client, figures in (("pytest-specdecode", plugin), ("vllm bench serve", bench)):
            rows.append([str(level["concurrency"]), client, f"{figures['acceptance_rate']:.4f}",
                         f"{figures['mean_tpot_ms']:.3f}", str(figures["output_tokens"])])
    differences = "; ".join(
        f"c={level['concurrency']}: acceptance {level['acceptance_difference_points']:.2f} points apart, "
        f"TPOT ratio plugin / bench {level['tpot_ratio']:.3f}"
        for level in levels
    )
    return [
        f"### Plugin vs `vllm bench serve` ({data['environment'].get('device')})", "", f"`{command}`", "",
        *first_landing(name),
        *table(["concurrency", "client", "acceptance", "mean TPOT ms", "output tokens"], rows),
        "", f"{differences} ({data['prompts']} prompts, T={data['temperature']:g}).", "",
    ]


def eagle3_section() -> list[str]:
    """The EAGLE-3 head: how it was trained, and what the H200 session measured with it."""
    train = load("eagle3-train.json")
    if train is None:
        return []
    held = train["held_out"]
    rows = [[
        str(train["train_samples"]), str(train["val_samples"]), str(train["train_steps"]), str(train["epochs"]),
        f"{train.get('first_step_s', 0):.0f}", f"{train['seconds']:.0f}", f"{held['loss']:.2f}",
        " / ".join(f"{a:.3f}" for a in held["acc"]),
    ]]
    out = [
        "## EAGLE-3 for SmolLM2-135M, trained here (H200, CUDA graphs)", "",
        "`bash benchmarks/gpu_session.sh eagle3-data && EAGLE3_MINUTES=3 bash benchmarks/gpu_session.sh eagle3-train`"
        " (recipe and device-call plan: `benchmarks/gpu/eagle3/README.md`)", "",
        *table(["train answers", "held-out answers", "steps", "epochs", "first step s", "total s", "held-out loss",
                "held-out accuracy per position"], rows),
        "", EAGLE3_NOTE,
    ]
    return out + bench_serve_section(
        "h200-vs-bench-serve-eagle3.json", "bash benchmarks/gpu_session.sh bench-serve eagle3"
    ) + [EAGLE3_FIDELITY_NOTE]


def baseline_section(name: str, command: str) -> list[str]:
    data = load(name)
    if data is None:
        return []
    return [
        "### A stored baseline vs measuring vanilla", "", f"`{command}`", "",
        *first_landing(name), "| session | wall s | vanilla figures |", "|---|---|---|",
        f"| without baseline (`--spec-refresh-baseline`) | {data['cold_session_s']:.1f} | {', '.join(data['vanilla_source']['cold'])} |",
        f"| with the stored baseline | {data['warm_session_s']:.1f} | {', '.join(data['vanilla_source']['warm'])} |",
        "", f"With the baseline the session takes **{data['warm_over_cold']:.2f}x** the time.", "",
    ]


def false_alarm_section(runs: list[tuple[str, str]]) -> list[str]:
    """The A/A check of the T>0 lossless test: both sides one vanilla engine, so every alarm is false.

    `runs` is (JSON file, command) per machine. A file judged with another statistic than today's
    says so: its rates describe a check the plugin no longer runs.
    """
    lines = [
        "### Lossless check at T>0: false alarms on an A/A workload", "",
        "One vanilla engine generates R rounds of the same prompts, each round with its own seeds, and "
        "scores every output; every pair of rounds is one trial of the test that `lossless` "
        "runs at T>0. Both sides are the same engine, so each \"not lossless\" is a false alarm, and "
        "the observed rate should match alpha. The R(R-1)/2 pairs overlap (each round is in R-1 "
        "trials), so the all-pairs interval, which assumes independent trials, is too narrow; the "
        "floor(R/2) disjoint pairs are independent, with an honest but wide interval. Resampled trials "
        "pair request i of two rounds drawn for request i alone, thousands of times: the false-alarm rate "
        "under the rounds' own distribution, which a few atypical rounds cannot decide (its interval "
        "covers the resampling, not which rounds were drawn). A file that keeps its scores is judged again "
        "with `--rejudge`.", "",
    ]
    for name, command in runs:
        lines += [f"`{command}`", ""]
        data = load(name)
        lines += [PENDING, ""] if data is None else _false_alarm_rates(data)
    return lines


def _false_alarm_rates(data: dict) -> list[str]:
    from pytest_specdecode.results import LOSSLESS_STATISTIC as today

    statistic = data.get("statistic", "paired t-test, per-request mean target log-probability per token")
    spread = "the pairs' contributions" if statistic == today else "the per-request differences"
    lines = [
        f"{data['environment'].get('device')}; {data['rounds']} rounds x {data['prompts']} prompts, at most "
        f"{data['max_tokens']} tokens (mean {data['mean_output_tokens']:.0f}), T={data['temperature']:g}; "
        f"{', '.join(str(n) for n in data['n_pairs'])} pairs per trial; median SD of {spread} "
        f"{fmt(data['per_pair_sd_median'])}. Statistic: {statistic}.", "",
    ]
    if statistic != today:
        lines += [
            f"**Measured with an earlier statistic**: these rates describe a test the plugin no longer runs "
            f"(today: {today}). The file keeps no per-request scores to judge again; re-run the command.", "",
        ]
    lines += [
        "| alpha | trials (all pairs) | observed, 95% interval | trials (disjoint) | observed, 95% interval "
        "| trials (resampled) | observed, 95% interval |",
        "|---|---|---|---|---|---|---|",
    ]
    every, disjoint, resampled = data["all_pairs"], data["disjoint_pairs"], data.get("resampled")
    for key in (k for k in every if k.startswith("alpha_")):
        drawn = f"{resampled['judged']} | {_rate(resampled[key])}" if resampled else "- | -"
        lines.append(
            f"| {every[key]['nominal']:g} | {every['judged']} | {_rate(every[key])} | {disjoint['judged']} | "
            f"{_rate(disjoint[key])} | {drawn} |"
        )
    return lines + [""]


def _rate(entry: dict) -> str:
    if entry["rate"] is None:
        return "-"
    low, high = entry["interval_95"]
    return f"{entry['rate']:.3f} ({entry['false_alarms']}), {low:.3f}-{high:.3f}"


def engine_start_section(name: str, command: str) -> list[str]:
    """Plugin engine start vs a bare `vllm.LLM(...)`, each start in a fresh process (goal: <= 1.05)."""
    lines = [
        "### Engine start: plugin vs a bare `vllm.LLM`", "", f"`{command}`", "",
        "Each start runs in a fresh process, alternating bare and plugin (ABBA) after one untimed bare "
        "start that fills the disk caches. The plugin start is what a session does up to a ready engine "
        "(config check against vLLM, `vllm_info.environment()`, `OfflineEngine`); the bare start is "
        "`vllm.LLM(...)` with the same arguments. `construct` is timed inside the process from the first "
        "vLLM or plugin import; `ready` from launching the process. Goal: plugin / bare <= 1.05.", "",
    ]
    data = load(name)
    if data is None:
        return lines + [PENDING, ""]
    median, ratio = data["median"], data["plugin_over_bare"]
    return lines + [
        f"{data['environment'].get('device')}; the {data['role']} engine of `{data['config']}`, "
        f"{data['rounds']} timed starts of each.", "",
        "| start | median construct s | median ready s |", "|---|---|---|",
        f"| bare `vllm.LLM` | {median['bare']['construct_s']:.1f} | {median['bare']['ready_s']:.1f} |",
        f"| plugin | {median['plugin']['construct_s']:.1f} | {median['plugin']['ready_s']:.1f} |",
        "", f"Plugin / bare: **{ratio['construct_s']:.3f}** (construct), **{ratio['ready_s']:.3f}** (ready).", "",
    ]


def startup_section(name: str, command: str) -> list[str]:
    data = load(name)
    if data is None:
        return []
    rows = [
        [f"`{row['command']}`", str(row["rounds"]), f"{row['with_plugin_median_s']:.3f} s",
         f"{row['without_plugin_median_s']:.3f} s", f"**{row['median_difference_ms']:.0f} ms**"]
        for row in data["rows"]
    ]
    return [
        "### What the plugin costs a run that does not use it (this CPU runner)", "",
        f"`{command}`", "",
        "pytest with the plugin installed vs `-p no:specdecode`, alternating runs; the plugin module imports only "
        "the standard library and pytest, the rest loads when a test first needs a config.", "",
        *table(["command", "rounds", "with plugin (median)", "without (median)", "median difference"], rows), "",
    ]


def coverage_section(name: str, command: str) -> list[str]:
    data = load(name)
    if data is None:
        return []
    rows = [
        [f"{row['window_noise']:.0%}", str(row["repeats"]), str(row["trials"]), f"{row['requests_only_coverage']:.3f}",
         f"**{row['coverage']:.3f}**", f"{row['requests_only_p99_coverage']:.3f}", f"**{row['p99_coverage']:.3f}**"]
        for row in data["rows"]
    ]
    header = ["window noise", "repeats", "trials", "speedup: requests only", "speedup: reported", "P99: requests only",
              "P99: reported"]
    return [
        "### Interval coverage under window noise (simulated, no engine)", "",
        f"`{command}`", "",
        f"How often the nominal {data['nominal']:.0%} interval covers the truth: speedup {data['true_speedup']} "
        f"(and, on identical sides, an E2E P99 regression of 0), {data['requests_per_window']} requests a window, "
        "gamma request noise, uniform window noise. *Requests only* is the bootstrap over requests within "
        "windows that the plugin used before (and still reports below 3 repeats, where confident timed verdicts "
        "are inconclusive); *reported* is the interval in the report now: window pairs from 3 repeats on.", "",
        *table(header, rows), "",
    ]


def side_by_side_sections() -> list[str]:
    """The plugin against other tools and against itself, on the H100 and on this CPU runner."""
    out = ["## Side by side", ""]
    out += overhead_section("h100-overhead.json", "python benchmarks/overhead.py examples/gpu-ngram.toml")
    out += bench_serve_section("h100-vs-bench-serve.json", "python benchmarks/vs_bench_serve.py examples/gpu-ngram.toml")
    out += baseline_section("h100-baseline-cache.json", "python benchmarks/baseline_cache.py examples/gpu-ngram.toml")
    out += false_alarm_section([
        ("h100-lossless-false-alarm.json",
         "python benchmarks/lossless_false_alarm.py examples/gpu-ngram.toml --rounds 48 --prompts 64 --max-tokens 128 "
         "--temperature 0.8 --out benchmarks/results/h100-lossless-false-alarm.json"),
        ("cpu-lossless-false-alarm.json",
         "python benchmarks/lossless_false_alarm.py examples/cpu-ngram.toml --rounds 16 --prompts 16 --max-tokens 32 "
         "--temperature 0.8 --out benchmarks/results/cpu-lossless-false-alarm.json"),
    ])
    out += engine_start_section(
        "h100-engine-start.json",
        "python benchmarks/engine_start.py examples/gpu-ngram.toml --rounds 2 --out benchmarks/results/h100-engine-start.json",
    )
    out += [ENGINE_START_NOTE]
    out += startup_section("cpu-startup.json", "python benchmarks/startup.py --rounds 20 --out benchmarks/results/cpu-startup.json")
    out += coverage_section(
        "interval-coverage.json",
        "python benchmarks/interval_coverage.py --trials 1000 --out benchmarks/results/interval-coverage.json",
    )
    out += overhead_section("cpu-overhead.json", "python benchmarks/overhead.py examples/cpu-ngram.toml --rounds 3")
    out += bench_serve_section("cpu-vs-bench-serve.json", "python benchmarks/vs_bench_serve.py examples/cpu-ngram.toml")
    return out + baseline_section("cpu-baseline-cache.json", "python benchmarks/baseline_cache.py examples/cpu-ngram.toml")
