"""The sections rendered from the JSON the benchmark scripts beside this one write: the plugin
against a bare vLLM script, `vllm bench serve` and itself, and the EAGLE-3 head trained for it."""

from __future__ import annotations

import math
import statistics

from _gate_sections import SERVER_GATES, gate_section
from _markdown import PENDING, first_landing, fmt, load, table

EAGLE3_NOTE = """Held-out accuracy is speculators' conditional accuracy on 200 answers kept out of training
(position k counted where positions before it were right), teacher-forced on the target's own
answers: an upper estimate of acceptance, not acceptance. Training prompts are synthesised
(`benchmarks/gpu/eagle3/prompts.py`, 2000 prompts answered at T=0 and T=0.8: 727k answer tokens,
84 s with vLLM); the plugin's `builtin:` workloads share no text with them. This head learned for
2.5 minutes (`EAGLE3_MINUTES=2.5`); an earlier session's 3-minute head read 0.675 / 0.713 / 0.738.

Device time of this session (one H200 held 1625 s): 44 s to start the machine and send four of the
five staged parts; 600 s for the fifth part, `setup.sh`, the data and a first training try, which
ran past the 10-minute call limit (the recipe now trains in a call of its own); 203 s to train
again; 393 s for the offline gate session below; 348 s for the two fidelity checks after it. What
the budget left no room for is listed at the end of this section.

The head through the plugin, offline with CUDA graphs (`examples/gpu-eagle3.toml`, K=3,
`builtin:mixed`, 64 prompts x 2 repeats): the issue's figure next, then the session's table. A counter ratio
has no interval in the report; the binomial one given with it is narrower than the truth, since drafts
within an answer are not independent. Where it straddles 0.5 the head meets the bar in this run,
not by a margin another run would surely keep: a head trained longer or on more data is what would
clear it. The gate `min_acceptance(0.5, position=0)` passed for EAGLE-3, n-gram and the self-draft
and failed for the 8-layer draft, as it should.
"""
EAGLE3_FIDELITY_NOTE = """**What the two fidelity checks show.** Against `vllm bench serve` the acceptance agrees
(0.00 points apart at c=1, 0.29 at c=16: the same counters, and at c=16 slightly different
batches). TPOT does not resolve to the 3% goal either way: on one server, back to back, each
client's own two rounds differ by 12-13% at c=1 and 36-42% at c=16, far more than the clients
differ from each other (median ratio 1.058 and 0.928). An earlier session's single round read the
plugin 63% above `vllm bench serve` at c=16 and blamed the plugin's client; the rounds above refute
that: the plugin's event loop never fell more than 2.9 ms behind (`lag_ms`) while the server's own
pace moved by a third between rounds. A 135M model decodes a step in about 2 ms here, so a window at
c=16 lasts 1.2-1.8 s and scheduling noise on the server dominates; more rounds, or a model whose
steps take longer, are what would resolve 3%.

Against a bare `vllm.LLM` script on the same engine, the plugin's median over four alternating
rounds of 64 x 1024 tokens is 0.989 of the bare throughput, but the rounds range from 0.76 to 1.05
and the bare script alone spread 14.4k-18.1k tokens/s: the goal (>= 0.97) is neither shown nor
refuted by this run.

**Not measured in this session** (its 30 device minutes were spent): the same configs in server
mode with CUDA graphs (the earlier server session was cut off by its time limit before it kept a
cell), and the A/A false-alarm run under today's lossless statistic. The offline session above does
judge losslessness at T=0.8 with today's statistic for all four methods: none alarms (p = 0.33-0.67).
A later H200 session measured EAGLE-3 and n-gram in server mode (the section above, with a head trained
anew) and the A/A run on the H200 (under *Side by side*); the H100's A/A run is still the earlier
statistic's.
"""
H200_GATES_NOTE = """With CUDA graphs the trade-offs are not eager mode's. Offline, 64 prompts at once on a 135M
model, only EAGLE-3 breaks even at T=0 (1.03x, interval 0.92-1.15); n-gram K=5 runs at 0.66x
though it accepts 0.83 of its drafts, the self-draft at 0.25x and the 8-layer draft at 0.17x. A
vanilla decode step costs so little here that K extra verify positions and a draft pass cost more
than the accepted tokens save; the first landing's eager-mode table read n-gram at 1.19x. Every
window is flagged `short_window` (0.65-2.6 s at T=0): read speedups as unresolved to a few
percent, not as exact. Losslessness at T=0.8 is judged by today's statistic (log-likelihood per
output token): no method alarms, and all T=0 outputs match vanilla's.
"""
H200_SERVER_NOTE = """**The head gated here is not the offline section's.** Every file lives in the machine's `/tmp`,
so this session (a second H200, same day, same vLLM) made a head again from the same recipe: the
data came out alike (4000 answers, 728k answer tokens, 87 s), but the planned training call
(`EAGLE3_MINUTES=2.5 bash benchmarks/gpu_session.sh eagle3-train`) learned its 2.5 minutes (1241
steps, the log in `h200-server-eagle3-train-try1.log`) and then neither printed the held-out line
nor saved the head before the call's 400 s limit; no error reached the log's filter, and the cause
is not diagnosed (the earlier session's identical call finished in 203 s). To leave room for the
gates, the head was trained once more with `train.py` called directly, for 1.5 minutes and with 1%
of the answers held out (`--minutes 1.5 --held-out 0.01`, so 40 held-out answers): a shorter-trained
head than the offline one, measured on a smaller held-out set (table above; the offline head read
0.680 / 0.711 / 0.743 on 200 answers).

Device time of this session (one H200, 1373 s held): 42 s to start the machine and send four parts;
174 s for the fifth part, `setup.sh` and the data; 407 s for the training call that saved nothing
and 7 s to see that it had not; 143 s to train the head gated here; 494 s for the server gate session; 105 s for the H200 A/A
false-alarm run (under *Side by side*).
"""
H200_SERVER_GATES_NOTE = """What the server session shows, read with its limits (two windows a cell, so window-to-window
noise is not in the intervals; c=16 and c=8 windows last 0.7-2.3 s and are flagged `short_window`):

- EAGLE-3 misses the bar with this head: first-position acceptance 0.476 at c=1 and 0.471 at c=16,
  below 0.5, where the offline session's head read 0.504. Two things changed at once (a shorter-trained
  head, server mode), so this run does not say which one cost the three points; the gate fails at
  both levels. At T=0 it pays at
  c=1 (1.14x, 1.05-1.23) and breaks even at c=16 (0.97x, 0.90-1.04); at T=0.8 it loses at c=1
  (0.91x) and reads 1.28x at c=16, a non-monotone sweep on 1.3 s windows.
- EAGLE-3 at T=0, c=16 matches vanilla's output on 114 of 128 requests (0.891), just under the 0.9
  that `lossless` asks for at T=0, so that gate fails; c=1 matches 1.00, n-gram 1.00 at c=1 and
  c=8, and every T=0 cell of the offline session matched. vLLM's kernels are not batch-invariant:
  verifying a draft in a batch of 16 can flip a near-tie that vanilla's batch resolves the other way.
  This run cannot tell that from a defect; the same cell with more repeats, or a look at where the
  outputs first differ, is what would.
- n-gram K=5, one request or eight at a time, pays at T=0 (1.32x and 1.18x, where offline, 64 prompts
  at once, it read 0.66x) but raises the E2E P99 by 104% and 77%; at T=0.8 it loses (0.64x, 0.57x).
- No T=0.8 cell alarms (p = 0.18-0.37).
"""
ENGINE_START_NOTE = """The first landing's plugin start cost about 20 s more than vLLM's own, because reading the
device name initialised CUDA in the pytest process and vLLM fell back to `spawn`; the device name
now comes from `nvidia-smi` and that penalty is gone. What remains, about 3.5 s (1.07x over two
rounds each), is above the 1.05 goal and not yet attributed (candidates: the stat loggers the
plugin turns on with `disable_log_stats=False`, the config check that imports vLLM's argument
classes, the child-process scan around the start); two rounds do not separate it from noise
either (bare starts spread 48.1-53.0 s).
"""


#: Headings the first screen links to.
BASELINE_TITLE = "A stored baseline vs measuring vanilla"
ENGINE_START_TITLE = "Engine start: plugin vs a bare `vllm.LLM`"
STARTUP_TITLE = "What the plugin costs a run that does not use it (this CPU runner)"
COVERAGE_TITLE = "Interval coverage, and what engine-start noise costs (simulated, no engine)"


def overhead_ratios(data: dict) -> list[float]:
    """Plugin / bare tokens/s of each round (older files kept only the tokens/s)."""
    return data.get("plugin_over_bare") or [p / b for p, b in zip(data["plugin_tokens_per_s"], data["bare_tokens_per_s"])]


def overhead_title(data: dict) -> str:
    return f"Plugin overhead vs a bare `vllm.LLM` script ({data['environment'].get('device')})"


def bench_serve_title(data: dict) -> str:
    return f"Plugin vs `vllm bench serve` ({data['environment'].get('device')})"


def overhead_section(name: str, command: str) -> list[str]:
    data = load(name)
    if data is None:
        return []
    bare, plugin = data["bare_tokens_per_s"], data["plugin_tokens_per_s"]
    ratios = overhead_ratios(data)
    length = f"{data['max_tokens']} tokens{' (EOS ignored)' if data.get('ignore_eos') else ''}"
    if min(ratios) >= 0.97:
        verdict = "every round is at least 0.97 of the bare script."
    else:
        verdict = (f"the rounds range {min(ratios):.3f}-{max(ratios):.3f} and the bare script alone spread "
                   f"{min(bare):.0f}-{max(bare):.0f} tokens/s, so a 3% difference is neither shown nor refuted by this run.")
    return [
        f"### {overhead_title(data)}", "", f"`{command}`", "",
        *first_landing(name),
        *table(["round", "bare tokens/s", "plugin tokens/s", "plugin / bare"],
               [[str(i + 1), f"{b:.1f}", f"{p:.1f}", f"{r:.3f}"] for i, (b, p, r) in enumerate(zip(bare, plugin, ratios))]),
        "", f"Median plugin / bare: **{data['plugin_over_bare_median']:.4f}** ({len(bare)} alternating rounds, "
        f"{data['prompts']} prompts x {length}, T={data['temperature']:g}): {verdict}", "",
    ]


def bench_serve_section(name: str, command: str) -> list[str]:
    data = load(name)
    if data is None:
        return []
    # older files hold one level (concurrency 1) at the top; newer ones a list of levels, and the
    # newest every round of each client beside the medians
    levels = data.get("levels") or [{"concurrency": 1, **data}]
    rows = []
    for level in levels:
        clients = (("pytest-specdecode", "plugin"), ("vllm bench serve", "vllm_bench_serve"),
                   ("vllm bench serve, the plugin's request options", "vllm_bench_serve_plugin_options"))
        for client, key in clients:
            if key not in level:  # files written before the third turn
                continue
            figures, rounds = level[key], level.get(f"{key}_rounds", [])
            lag = [r["lag_ms"] for r in rounds if r.get("lag_ms") is not None]
            rows.append([str(level["concurrency"]), client, f"{figures['acceptance_rate']:.4f}",
                         f"{figures['mean_tpot_ms']:.3f}", " ".join(f"{r['mean_tpot_ms']:.2f}" for r in rounds) or "-",
                         f"{max(lag):.1f}" if lag else "-", f"{figures['output_tokens']:g}"])
    return [
        f"### {bench_serve_title(data)}", "", f"`{command}`", "",
        *first_landing(name),
        *table(["concurrency", "client", "acceptance", "mean TPOT ms", "TPOT per round ms", "client lag ms (worst)",
                "output tokens"], rows),
        "", "; ".join(_level_verdict(level) for level in levels)
        + f" ({data['prompts']} prompts, T={data['temperature']:g}).", "",
    ]


def _level_verdict(level: dict) -> str:
    """How far apart the clients are, and whether their own rounds resolve that against the 3% goal."""
    ratio = level["tpot_ratio"]
    line = (f"c={level['concurrency']}: acceptance {level['acceptance_difference_points']:.2f} points apart, "
            f"TPOT ratio plugin / bench {ratio:.3f}")
    per_client = ([r["mean_tpot_ms"] for r in level.get(f"{key}_rounds", [])] for key in ("plugin", "vllm_bench_serve"))
    spreads = [max(tpots) / min(tpots) - 1 for tpots in per_client if len(tpots) > 1]
    if "options_tpot_ratio" in level:
        line += f" (bench serve with the plugin's options / without: {level['options_tpot_ratio']:.3f})"
    if not spreads:
        return line
    if abs(ratio - 1) <= 0.03:
        return f"{line}, within 3%"
    if abs(ratio - 1) < max(spreads):
        return f"{line}, not resolved: one client's own rounds differ by up to {max(spreads):.0%}"
    return f"{line}, further apart than either client's own rounds"


CLIENT_TIMING_TITLE = "Which client reads the stream right: against a server with known chunk times (this CPU runner)"


def client_timing_section(name: str, before: str, command: str, before_command: str) -> list[str]:
    """Each client's TPOT and TTFT against a server that knows when its chunks left: the plugin's
    client before (httpx) and after (aiohttp), and `vllm bench serve`'s."""
    data, old = load(name), load(before)
    if data is None or old is None:
        return []
    rows = []
    for level, old_level in zip(data["levels"], old["levels"]):
        clients = (("pytest-specdecode, httpx (before)", old_level, "plugin"), ("pytest-specdecode, aiohttp", level, "plugin"),
                   ("vllm bench serve", level, "vllm_bench_serve"))
        for client, source, key in clients:
            rounds = source["rounds"][key]
            lag = [r["client"]["lag_ms"] for r in rounds if "lag_ms" in r["client"]]
            rows.append([str(level["concurrency"]), client, f"{source['tpot_ratio'][key]:.3f}",
                         " ".join(f"{r['tpot_ratio']:.3f}" for r in rounds), f"{source['ttft_excess_ms'][key]:+.1f}",
                         f"{statistics.median(lag):.1f}" if lag else "-"])
    return [
        f"### {CLIENT_TIMING_TITLE}", "",
        f"After (aiohttp) and `vllm bench serve`: `{command}`", "",
        f"Before (httpx): `{before_command}`", "",
        *table(["concurrency", "client", "TPOT read / sent (median)", "per round", "TTFT excess ms (median)",
                "event-loop lag ms (median)"], rows),
        "",
        f"`benchmarks/_paced_server.py` streams like `vllm serve` (FastAPI on uvicorn) and notes when each chunk "
        f"left: one chunk of {data['tokens_per_step']} tokens every {data['step_ms']:g} ms after a first token at "
        f"{data['ttft_ms']:g} ms, {data['max_tokens']} tokens, {data['prompts']} requests a round; the clients take "
        "turns (which goes first alternates by round) on the same 2 cores as the server, and each TPOT is set "
        "against the server's by that client's own definition (the plugin's ends at `[DONE]`, bench serve's at "
        f"the last token chunk). TTFT excess is the client's side of a first token. {_client_timing_findings(data, old)}"
        f"{_h200_gap(old)} The plugin's requests also ask for continuous usage stats and token ids, "
        "which bench serve's do not; `vs_bench_serve.py` now runs bench serve a third time each round with those "
        "options, so the next GPU run says whether the server serves them slower.", "",
    ]


def _h200_gap(before: dict) -> str:
    """The H200's plugin-vs-bench-serve gap at one request in flight, against what the httpx client
    cost here: its first-token delay over bench serve's, and both clients' TPOT against the truth."""
    h200 = load("h200-vs-bench-serve-8b-ngram-server.json")
    if h200 is None:
        return ""
    gpu, cpu = h200["levels"][0], before["levels"][0]
    ttft_gap = gpu["plugin"]["mean_ttft_ms"] - gpu["vllm_bench_serve"]["mean_ttft_ms"]
    httpx_cost = cpu["ttft_excess_ms"]["plugin"] - cpu["ttft_excess_ms"]["vllm_bench_serve"]
    worst = max(abs(ratio - 1) for ratio in cpu["tpot_ratio"].values())
    return (f" The H200's plugin-vs-bench-serve gap at c={gpu['concurrency']} (TTFT {ttft_gap:+.1f} ms, TPOT "
            f"{gpu['tpot_ratio'] - 1:+.0%}) pointed at the client: the httpx client's first-token cost over bench "
            f"serve's here, {httpx_cost:+.1f} ms at c={cpu['concurrency']}, is of the TTFT gap's size; the TPOT gap "
            f"is not the client's, as both read TPOT at c={cpu['concurrency']} within {worst:.1%} of the truth.")


def _client_timing_findings(after: dict, before: dict) -> str:
    """What the rows show, computed from them: each client's TTFT excess over bench serve's in the same
    run, and the plugin's TPOT rounds at the highest concurrency, before and after."""
    def excess_ratios(data: dict) -> list[float]:
        return [level["ttft_excess_ms"]["plugin"] / level["ttft_excess_ms"]["vllm_bench_serve"] for level in data["levels"]]

    def tpot_rounds(data: dict) -> list[float]:
        return [r["tpot_ratio"] for r in data["levels"][-1]["rounds"]["plugin"]]

    top = after["levels"][-1]["concurrency"]
    old_excess, new_excess = excess_ratios(before), excess_ratios(after)
    old_tpot, new_tpot = tpot_rounds(before), tpot_rounds(after)
    return (f"The httpx client's TTFT excess was {min(old_excess):.1f}-{max(old_excess):.1f}x bench serve's in the "
            f"same run, aiohttp's {min(new_excess):.1f}-{max(new_excess):.1f}x; at c={top} httpx read TPOT at "
            f"{min(old_tpot):.3f}-{max(old_tpot):.3f} of the truth, aiohttp at {min(new_tpot):.3f}-{max(new_tpot):.3f}. "
            "The plugin now streams with aiohttp, as `vllm bench serve` does.")


def eagle3_section() -> list[str]:
    """The EAGLE-3 head: how it was trained, the H200 gate session through it, and the fidelity checks."""
    train = load("eagle3-train.json")
    if train is None:
        return []
    out = [
        "## EAGLE-3 for SmolLM2-135M, trained here (H200, CUDA graphs)", "",
        "`bash benchmarks/gpu_session.sh eagle3-data; EAGLE3_MINUTES=2.5 bash benchmarks/gpu_session.sh eagle3-train`"
        " (recipe and device-call plan: `benchmarks/gpu/eagle3/README.md`)", "",
        *train_table(train),
        "", EAGLE3_NOTE, *first_position_line("h200-gates-eagle3-ngram-self-draft-draft.json", "gpu-eagle3"),
    ]
    out += gate_section(
        "H200, CUDA graphs, offline: EAGLE-3, n-gram, the self-draft and the 8-layer draft",
        "h200-gates-eagle3-ngram-self-draft-draft.json",
        "SESSION_LIMIT_S=480 bash benchmarks/gpu_session.sh gates eagle3 ngram self-draft draft; "
        "python benchmarks/trim_report.py benchmarks/results/h200-gates-eagle3-ngram-self-draft-draft.json",
    )
    out += [H200_GATES_NOTE]
    out += bench_serve_section("h200-vs-bench-serve-eagle3.json", "bash benchmarks/gpu_session.sh bench-serve eagle3")
    out += overhead_section("h200-overhead-eagle3.json", "ROUNDS=4 bash benchmarks/gpu_session.sh overhead eagle3")
    return out + [EAGLE3_FIDELITY_NOTE]


def train_table(train: dict) -> list[str]:
    """One head's training, from the log `train.py --log` writes."""
    held = train["held_out"]
    rows = [[
        str(train["train_samples"]), str(train["val_samples"]), str(train["train_steps"]), str(train["epochs"]),
        f"{train.get('first_step_s', 0):.0f}", f"{train['seconds']:.0f}", f"{held['loss']:.2f}",
        " / ".join(f"{a:.3f}" for a in held["acc"]),
    ]]
    return table(["train answers", "held-out answers", "steps", "epochs", "first step s", "total s", "held-out loss",
                  "held-out accuracy per position"], rows)


def h200_server_section() -> list[str]:
    """The second H200 session: EAGLE-3 (a head trained in that session) and n-gram through `vllm serve`."""
    train = load("h200-server-eagle3-train.json")
    if train is None or load(SERVER_GATES[1]) is None:
        return []
    out = [
        "## EAGLE-3 and n-gram in server mode (H200, CUDA graphs, a second session)", "",
        "`bash benchmarks/gpu_session.sh eagle3-data; python3 benchmarks/gpu/eagle3/train.py --target "
        "/tmp/models/smollm2-135m --data /tmp/eagle3/data.pt --out /tmp/models/smollm2-135m-eagle3 --minutes 1.5 "
        "--held-out 0.01 --log $OUT/eagle3-train.json` (files: `h200-server-eagle3-generate.log`, "
        "`h200-server-eagle3-train.json`, `.log`)", "",
        *train_table(train), "", H200_SERVER_NOTE,
        *first_position_line(SERVER_GATES[1], "gpu-eagle3"),
    ]
    return out + gate_section(*SERVER_GATES) + [H200_SERVER_GATES_NOTE]


def first_position_line(name: str, config: str) -> list[str]:
    """The EAGLE-3 bar (first-position acceptance >= 0.5 at T=0) read from the session's counters."""
    report = load(name)
    runs = [r for r in (report or {}).get("runs", []) if r["config_name"] == config and r["temperature"] == 0]
    if not runs:
        return []
    counters = runs[0]["counters"]
    accepted, drafts = counters["accepted_per_position"][0], counters["num_drafts"]
    rate = accepted / drafts
    half_width = 1.96 * math.sqrt(rate * (1 - rate) / drafts)
    later = " and ".join(f"{a / drafts:.3f}" for a in counters["accepted_per_position"][1:])
    return [
        f"**First-position acceptance at T=0: {rate:.3f}** ({accepted} of {drafts} drafts; binomial 95% interval "
        f"{rate - half_width:.3f}-{rate + half_width:.3f}), then {later}; {runs[0]['acceptance_rate']:.3f} overall, "
        f"a mean acceptance length of {runs[0]['mean_acceptance_length']:.2f}.", "",
    ]


def baseline_section(name: str, command: str) -> list[str]:
    data = load(name)
    if data is None:
        return []
    return [
        f"### {BASELINE_TITLE}", "", f"`{command}`", "",
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
        f"### {ENGINE_START_TITLE}", "", f"`{command}`", "",
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
        f"### {STARTUP_TITLE}", "",
        f"`{command}`", "",
        "pytest with the plugin installed vs `-p no:specdecode`, alternating runs; the plugin module imports only "
        "the standard library and pytest, the rest loads when a test first needs a config.", "",
        *table(["command", "rounds", "with plugin (median)", "without (median)", "median difference"], rows), "",
    ]


def coverage_section(name: str, command: str) -> list[str]:
    """Coverage of the printed intervals, with and without engine-start noise (`interval_coverage.py`)."""
    data = load(name)
    if data is None:
        return []
    rows = [
        [row["config"], f"{row['engine_cv']:.0%}", str(row["windows"]), str(row["trials"]),
         f"**{row['speedup_coverage']:.3f}**", f"{row['p99_coverage']:.3f}"]
        for row in data["rows"]
    ]
    header = ["config", "engine-start noise", "windows a side", "trials", "speedup covered", "P99 regression covered"]
    return [
        f"### {COVERAGE_TITLE}", "",
        f"`{command}`", "",
        f"How often the interval the report prints at level {data['nominal']:.3g} (one look) covers the truth: a "
        f"speedup of {data['true_speedup']} (the pooled ratio's interval) and, on identical sides, an E2E P99 "
        f"regression of 0; `gate_sim.py`'s noise with {data['window_cv']:.0%} window noise. Without engine-start "
        "noise the coverage is the nominal level. With 5 % per start, which one start a side cannot show, it "
        "falls, and falls further the more windows narrow the interval: the cost of the engine starts the "
        "intervals do not cover, and why `[run] max_repeats` defaults to twice `repeats`.", "",
        *table(header, rows), "",
    ]


def side_by_side_sections() -> list[str]:
    """The plugin against other tools and against itself, newest first: the simulated coverage and
    this CPU runner, the H200, then the H100's timings."""
    out = ["## Side by side", ""]
    out += coverage_section(
        "interval-coverage.json",
        "python benchmarks/interval_coverage.py --trials 400 --out benchmarks/results/interval-coverage.json",
    )
    out += agreement_section(
        "cpu-per-request-agreement.json",
        "pytest -p no:cacheprovider --spec-config=examples/cpu-ngram.toml examples/test_gates.py --spec-report=/tmp/agree.json; "
        "python benchmarks/per_request_agreement.py /tmp/agree.json --out benchmarks/results/cpu-per-request-agreement.json",
    )
    out += startup_section("cpu-startup.json", "python benchmarks/startup.py --rounds 20 --out benchmarks/results/cpu-startup.json")
    out += overhead_section("cpu-overhead.json", "python benchmarks/overhead.py examples/cpu-ngram.toml --rounds 3")
    out += bench_serve_section("cpu-vs-bench-serve.json", "python benchmarks/vs_bench_serve.py examples/cpu-ngram.toml "
                               "--concurrency 1 4 --rounds 3 --out benchmarks/results/cpu-vs-bench-serve.json")
    out += client_timing_section(
        "cpu-client-timing.json", "cpu-client-timing-httpx.json",
        "cd benchmarks && python client_timing.py --concurrency 1 16 64 --rounds 3 --out results/cpu-client-timing.json",
        "git worktree add /tmp/b b450a57 && cp benchmarks/client_timing.py benchmarks/_paced_server.py /tmp/b/benchmarks/ "
        "&& cd /tmp/b/benchmarks && PYTHONPATH=/tmp/b python client_timing.py --concurrency 1 16 64 --rounds 3 "
        "--out $REPO/benchmarks/results/cpu-client-timing-httpx.json",
    )
    out += baseline_section("cpu-baseline-cache.json", "python benchmarks/baseline_cache.py examples/cpu-ngram.toml")
    out += false_alarm_section([
        ("h200-lossless-false-alarm.json", "bash benchmarks/gpu_session.sh false-alarm"),
        ("cpu-lossless-false-alarm.json",
         "python benchmarks/lossless_false_alarm.py examples/cpu-ngram.toml --rounds 16 --prompts 16 --max-tokens 32 "
         "--temperature 0.8 --out benchmarks/results/cpu-lossless-false-alarm.json"),
    ])
    out += engine_start_section(
        "h100-engine-start.json",
        "python benchmarks/engine_start.py examples/gpu-ngram.toml --rounds 2 --out benchmarks/results/h100-engine-start.json",
    )
    out += [ENGINE_START_NOTE]
    out += overhead_section("h100-overhead.json", "python benchmarks/overhead.py examples/gpu-ngram.toml")
    out += bench_serve_section("h100-vs-bench-serve.json", "python benchmarks/vs_bench_serve.py examples/gpu-ngram.toml")
    return out + baseline_section("h100-baseline-cache.json", "python benchmarks/baseline_cache.py examples/gpu-ngram.toml")


def agreement_section(name: str, command: str) -> list[str]:
    """vLLM's own per-request acceptance against the plugin's chunk-based estimate."""
    data = load(name)
    if data is None:
        return []
    rows = [[row["run"], str(row["requests"]), f"{row['vllm_mean']:.2f}", f"{row['estimate_mean']:.2f}",
             f"{row['gap_median']:+.2f}", f"{row['gap_p90_abs']:.2f}", f"{row['within_0_25']:.0%}"] for row in data["rows"]]
    return [
        "### Per-request acceptance: vLLM's own counts vs the chunk estimate", "", f"`{command}`", "",
        f"vLLM {data['vllm']}, {data['device']}. Where the engine offers `--per-request-spec-decode-metrics` "
        "(vLLM 0.32+; the plugin asks for it offline) per-request acceptance comes from vLLM's counts; the "
        "estimate from streamed chunk sizes is the fallback (vLLM 0.26, servers started without the flag). "
        "Acceptance length is tokens per verify step; the gap is estimate minus vLLM's, per request.", "",
        *table(["run", "requests", "vLLM mean", "estimate mean", "median gap", "P90 abs gap", "within 0.25"], rows), "",
        "Where little is accepted the two agree to a few hundredths. Where much is, the estimate reads low: vLLM "
        "counts only the steps that verified a draft, while a stream chunk of one token is a step the n-gram "
        "lookup proposed nothing for as much as a rejected draft, and the estimate drops each request's first and "
        "last chunk. The gap is the estimate's, which is why vLLM's counts are preferred where offered.", "",
    ]


def archived_false_alarm_section() -> list[str]:
    """The H100's A/A run, whose rates describe an earlier lossless statistic."""
    return false_alarm_section([
        ("h100-lossless-false-alarm.json",
         "python benchmarks/lossless_false_alarm.py examples/gpu-ngram.toml --rounds 48 --prompts 64 --max-tokens 128 "
         "--temperature 0.8 --out benchmarks/results/h100-lossless-false-alarm.json"),
    ])
