"""The sections rendered from `--spec-report` files, the reports of pytest sessions on a GPU or
this CPU: every run, every gate's verdict, where the session's time went."""

from __future__ import annotations

import json

from _markdown import RESULTS, first_landing, fmt, load, table

LOSSLESS_INTRO = """## Lossless at T>0 on the H100 (this landing's code, CUDA graphs)

`benchmarks/gpu/test_h100_gates.py` gates `lossless(alpha=0.01)` at T=0 and T=0.8 on vLLM 0.26.0,
64 copy prompts x 2 repeats (128 request pairs per temperature), offline, `--spec-max-engines=2`.
What they say, read together:

- ngram K=5 and the self-draft both pass at alpha 0.01, but only just (p = 0.016 and 0.024), and
  in the same direction: spec outputs are 13-17% longer than vanilla's and the target finds them
  less likely (-1.08 and -1.09 vs -0.91 nats per token; both share one vanilla baseline). With more
  requests this could turn into a `not lossless`; it is reported, not explained away.
- The same ngram config with every answer cut at exactly 128 tokens (`ignore_eos`, third table)
  shows no difference at all: -1.107 vs -1.091, p = 0.67. So what differs is where the spec engine
  stops, not the tokens it samples: a lead for vLLM's EOS handling under speculation at T>0, which
  this check can flag but not diagnose.
- Server mode (fourth table) scores through the server's `/v1/completions` with `prompt_logprobs`
  and reads the same figures as offline at c=1 (-1.079 vs -0.911, p = 0.016: per-request seeds make
  the samples identical in both modes), and -1.085 vs -0.909 (p = 0.013) at c=8.
- **Judged again with today's test** (log-likelihood per output token, weighted by tokens; a
  lossless cell marked "earlier test" was judged per request): the server-mode report keeps its
  scored samples, so `tables.py` judges its cells again: p = 0.33 at c=1 and 0.12 at c=8 (the
  earlier test's p in brackets). The near-alarms above came from weighting a short answer like a
  long one; the offline reports kept no samples to judge again.
- All T=0 runs match vanilla exactly (match 1.00); the self-draft accepts 1.00 at T=0 and 0.47 at
  T=0.8 (vLLM drafts greedily, so an identical draft is accepted with the sampled token's probability).
- Windows are still short offline (0.4-2 s, flagged `short_window`): the copy answers end by themselves
  after 25-60 tokens (see "Sizing a workload" in reading-the-numbers.md).
"""


#: The H200 server-mode gate session (title, file, the command that wrote it), rendered beside the
#: EAGLE-3 head it gated by `_script_sections.h200_server_section`.
SERVER_GATES = (
    "H200, CUDA graphs, server mode (`vllm serve`): EAGLE-3 at c=1 and c=16, n-gram at c=1 and c=8",
    "h200-server-gates-eagle3-ngram.json",
    "SESSION_LIMIT_S=540 bash benchmarks/gpu_session.sh server-gates eagle3 ngram; "
    "python benchmarks/trim_report.py benchmarks/results/h200-server-gates-eagle3-ngram.json",
)


def lossless_cell(run: dict) -> str:
    """T=0: the share of outputs equal to vanilla's; T>0: today's check's verdict, judged again from
    the run's own scored samples (alpha 0.01, margin 0.1: `sequential`), so a cell never shows a
    verdict today's code would not give. Where the report did not keep the scores, the stored p is
    shown and marked as not judged again."""
    from pytest_specdecode.measure.lossless import check_lossless
    from pytest_specdecode.results import LosslessCheck, RequestSample

    if run["temperature"] == 0 or not run.get("lossless_check"):
        return fmt(run["outputs_match"], ".2f")
    sides = [[RequestSample.model_validate(s) for s in run[side].get("samples", [])] for side in ("spec", "vanilla")]
    if not sides[0] or not all(s.target_logprob is not None for side in sides for s in side if s.output_tokens):
        stored = LosslessCheck.model_validate(run["lossless_check"])
        return f"not judged again (scores not kept){_p(stored)}"
    today = check_lossless(*sides)
    return f"{today.verdict}{_p(today)}"


def _p(check) -> str:
    return f" (p={check.p_value:.2g})" if check.p_value is not None else ""


def runs_table(report: dict) -> list[str]:
    lines = [
        "| run | method | K | acceptance | mean acc. len | per-position | speedup | TPOT p50 spec / vanilla ms | "
        "E2E p50 / p99 spec ms | E2E p99 vanilla ms | lossless | vanilla from | warnings |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in report["runs"]:
        load_label = f" c={run['concurrency']}" if run.get("concurrency") else ""
        label = f"{run['config_name']} T={run['temperature']:g}{load_label}"
        if not run["valid"]:
            lines.append(f"| {label} | {run['method']} | {run['num_speculative_tokens']} | INVALID: {run['invalid_reason']} |" + " |" * 9)
            continue
        spec, vanilla = run["spec"], run["vanilla"]
        lines.append(
            f"| {label} | {run['method']} | {run['num_speculative_tokens']} | {fmt(run['acceptance_rate'])} | "
            f"{fmt(run['mean_acceptance_length'], '.2f')} | {' '.join(f'{p:.2f}' for p in run['per_position_acceptance'])} | "
            f"{fmt(run['speedup'], '.2f')}x | {fmt(spec['tpot_ms']['p50'], '.2f')} / {fmt(vanilla['tpot_ms']['p50'], '.2f')} | "
            f"{fmt(spec['e2e_ms']['p50'], '.0f')} / {fmt(spec['e2e_ms']['p99'], '.0f')} | {fmt(vanilla['e2e_ms']['p99'], '.0f')} | "
            f"{lossless_cell(run)} | {(run.get('baseline') or {}).get('source', '-')} | "
            f"{', '.join(dict.fromkeys(w['code'] for w in run.get('warnings', []))) or '-'} |"
        )
    return lines


def gates_table(report: dict) -> list[str]:
    """Each verdict with its interval and level; one stored before verdicts carried a level was a
    point verdict of the earlier rule, and says so (today's rule might call it inconclusive)."""
    rows = [
        [f"`{gate['test'].split('::')[-1]}`", gate["gate"], gate["run"], f"{gate['threshold']:g}", fmt(gate["measured"]),
         _interval(gate), gate["outcome"] if "level" in gate else f"{gate['outcome']} (earlier rule: point verdict)"]
        for gate in report["gates"]
    ]
    return table(["test", "gate", "run", "threshold", "measured", "interval", "verdict"], rows)


def _interval(gate: dict) -> str:
    if not gate.get("interval"):
        return "-"
    low, high = gate["interval"]
    return f"{fmt(low)}..{fmt(high)} at {gate['level']:.3g}" if gate.get("level") else f"{fmt(low)}..{fmt(high)}"


def timing_lines(report: dict) -> list[str]:
    timing = report.get("timing_s") or {}
    starts = "; ".join(
        f"{config}: " + ", ".join(f"{role} {seconds:.0f} s" for role, seconds in roles.items())
        for config, roles in report.get("engine_start_s", {}).items()
    )
    rows = [[phase, f"{seconds:.1f}"] for phase, seconds in timing.items()]
    return table(["phase", "seconds"], rows) + ["", f"Engine starts: {starts}."]


def gate_section(title: str, name: str, command: str) -> list[str]:
    report = load(name)
    if report is None:
        return []
    env = report["environment"]
    lines = [f"## {title}", "", f"`{command}`", "", f"File: `benchmarks/results/{name}`; vLLM {env.get('vllm')}, "
             f"torch {env.get('torch')}, {env.get('device')}.", "", *first_landing(name)]
    lines += runs_table(report) + [""]
    lines += break_even_lines(report)
    lines += ["", "Gate verdicts:", ""] + gates_table(report) + ["", "Where the session's wall time went:", ""]
    return lines + timing_lines(report) + [""]


def break_even_lines(report: dict) -> list[str]:
    """Recomputed from the stored runs by the plugin's own model, so that a file written before
    break-even was redefined (first crossing, P99 tolerance) reads as today's terminal summary does."""
    from pytest_specdecode.report import break_even_lines as summary_lines
    from pytest_specdecode.results import ConfigResult, RunResult

    by_config: dict[str, list[dict]] = {}
    for run in report["runs"]:
        by_config.setdefault(run["config_name"], []).append(run)
    results = [
        ConfigResult(config=runs[0]["config"], config_name=name, runs=[RunResult.model_validate(run) for run in runs])
        for name, runs in by_config.items()
    ]
    return [f"Break-even {line}." for line in summary_lines(results)]


def gate_sections() -> list[str]:
    """Every session run through pytest on the H100: offline, server, then lossless at every temperature."""
    out = gate_section("H100, offline mode (`vllm.LLM`)", "h100-offline.json", "bash benchmarks/gpu_session.sh offline")
    for path in sorted(RESULTS.glob("h100-server-*.json")):
        if path.name.startswith("h100-server-gates-"):
            continue  # a lossless-at-every-temperature session, rendered with the others below
        runs = json.loads(path.read_text())["runs"]
        configs = " ".join(dict.fromkeys(run["config_name"].removeprefix("gpu-") for run in runs))
        out += gate_section(f"H100, server mode (`vllm serve`, two load levels): {configs}", path.name,
                            f"bash benchmarks/gpu_session.sh server {configs}")
    out += [LOSSLESS_INTRO]
    gates = [
        ("ngram K=5", "h100-gates-ngram.json", "bash benchmarks/gpu_session.sh gates ngram"),
        ("the model as its own draft, K=4", "h100-gates-self-draft.json", "bash benchmarks/gpu_session.sh gates self-draft"),
        ("ngram K=5 at T=0.8, every answer exactly 128 tokens (ignore_eos)", "h100-gates-ngram-fixed-length.json",
         "python3 -m pytest -p pytest_specdecode.plugin benchmarks/gpu/test_h100_gates.py -k lossless "
         "--spec-config=benchmarks/gpu/ngram-t08-fixed-length.toml --spec-max-engines=2"),
    ]
    gates.append(("ngram K=5, server mode (`vllm serve`, c=1 and c=8; scored through `/v1/completions`)",
                  "h100-server-gates-ngram.json", "bash benchmarks/gpu_session.sh server-gates ngram"))
    for title, name, command in gates:
        out += gate_section(f"H100, CUDA graphs, lossless at every temperature: {title}", name, command)
    return out
