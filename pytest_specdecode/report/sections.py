"""The sections below the table: where vanilla came from, intervals, lossless checks, warnings,
break-even, notes and engines. The terminal and the step summary show the same sections in the
same order (`sections`); only their framing differs."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from ..results import SWEEP_NOISE, BaselineInfo, BreakEven, ConfigResult, RunWarning, rank
from .table import fmt


def sections(results: list[ConfigResult], whole: bool) -> list[tuple[str, str, list[str]]]:
    """(terminal prefix, step-summary title, lines) of every section, in the order both show them.
    `whole`: warnings with their remedies (the step summary) or their first clause (the terminal)."""
    return [
        ("vanilla", "Vanilla", vanilla_lines(results)),
        ("intervals", "Intervals", interval_lines(results)),
        ("scheduled", "TTFT from the scheduled send (paced levels)", scheduled_ttft_lines(results)),
        ("lossless", "Lossless check (T>0)", lossless_lines(results)),
        ("warnings", "Warnings", warning_lines(results, whole)),
        ("break-even", "Break-even", break_even_lines(results)),
        ("note", "Notes", acceptance_notes(results)),
        ("engines", "Engines", engine_lines(results)),
        ("memory", "KV-cache capacity", memory_lines(results)),
        ("starts", "Engine starts", start_lines(results)),
        ("buckets", "Mixed-temperature batches, by temperature", bucket_lines(results)),
        ("replicas", "Replicas (several /metrics targets)", replica_lines(results)),
        ("ranking", "Ranking", ranking_lines(results)),
        ("decision", "Decision", decision_lines(results)),
    ]


def bucket_lines(results: Iterable[ConfigResult]) -> list[str]:
    """A mixed batch's requests temperature by temperature, against the same requests on vanilla:
    the aggregate's P50 can improve while one bucket's P99 regresses."""
    lines = []
    for run in (run for result in results for run in result.runs if run.temperature_buckets):
        for b in run.temperature_buckets:
            acceptance = " / ".join(fmt(v, ".2f") for v in (b.acceptance.p10, b.acceptance.p50, b.acceptance.p90))
            lines.append(
                f"{run.label} T={b.temperature:g} ({b.requests} requests): acceptance p10/p50/p90 {acceptance}; "
                f"E2E p50 {fmt(b.spec_e2e_ms.p50, '.0f')} vs {fmt(b.vanilla_e2e_ms.p50, '.0f')} ms, "
                f"p99 {fmt(b.spec_e2e_ms.p99, '.0f')} vs {fmt(b.vanilla_e2e_ms.p99, '.0f')} ms "
                f"({fmt(b.e2e_p99_regression, '+.0%')}), spec vs vanilla"
            )
    return lines


def replica_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Each replica's acceptance and generated tokens, where a run read several /metrics targets."""
    return [
        f"{run.label}: " + "; ".join(
            f"{r.url} acceptance {fmt(r.acceptance_rate)} ({r.counters.num_drafts} drafts, {r.generation_tokens} tokens)"
            for r in run.replicas
        )
        for result in results for run in result.runs if run.replicas
    ]


def ranking_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Configs and Ks sharing a target, workload and condition, against each other."""
    return [f"{ranking.condition} ({ranking.metric} speedup, level {ranking.level:.3g}): {ranking.summary}"
            for ranking in rank(run for result in results for run in result.runs)]


def decision_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Each config's decision (`ConfigResult.decision`): what to do where, and why, with the evidence."""
    return [
        f"{result.config_name}{' ' + statement.where if statement.where else ''}: {statement.advice}: {statement.text}"
        for result in results for statement in result.decision
    ]


def scheduled_ttft_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Paced levels: TTFT as users waited for it, from the scheduled send time, beside TTFT from
    the actual send; far apart, the client sent late (coordinated omission) and the latter hides it."""
    lines = []
    for run in (run for result in results for run in result.runs if run.spec.scheduled_ttft_ms.count):
        spec, vanilla = run.spec, run.vanilla
        lines.append(
            f"{run.label}: TTFT p99 from schedule {fmt(spec.scheduled_ttft_ms.p99, '.0f')} vs "
            f"{fmt(vanilla.scheduled_ttft_ms.p99, '.0f')} ms (from send {fmt(spec.ttft_ms.p99, '.0f')} vs "
            f"{fmt(vanilla.ttft_ms.p99, '.0f')} ms), spec vs vanilla"
        )
    return lines


def interval_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Every run's intervals, at the level its verdicts read them, and what they rest on: a figure
    read without its interval looks more certain than it is."""
    lines = []
    for run in (run for result in results for run in result.runs if run.valid):
        parts = [
            ("acceptance", run.acceptance_rate_ci, ".3f"),
            ("speedup", run.speedup_ci, ".2f"),
            ("TPOT speedup", run.tpot_speedup_ci, ".2f"),
            ("E2E P99 regression", run.p99_regression_ci.get("e2e"), "+.2f"),
            ("step cost", run.step_cost_ratio_ci, ".2f"),
        ]
        shown = [f"{name} {ci[0]:{spec}}..{ci[1]:{spec}}" for name, ci, spec in parts if ci is not None]
        if shown:
            lines.append(f"{run.label} at {run.interval_level:.3g}: " + ", ".join(shown) + f" [{run.interval_basis}]")
    return lines


def vanilla_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Per config, where vanilla's figures came from: a stored baseline is only as good as its age
    and fingerprint, so both are shown. One word when every run agrees, so a session that measured
    everything costs one short line."""
    lines = []
    for result in results:
        sources = [(run.condition.label, _vanilla_source(run.baseline)) for run in result.runs]
        if len({source for _, source in sources}) == 1:
            lines.append(f"{result.config_name}: {sources[0][1]}")
        elif sources:
            lines.append(f"{result.config_name}: " + "; ".join(f"{cell} {source}" for cell, source in sources))
    return lines


def _vanilla_source(baseline: BaselineInfo | None) -> str:
    if baseline is None:
        return "not recorded"
    if baseline.source == "measured":
        return "measured"
    if baseline.source == "memo":
        return f"reused from an earlier config of this session, measured {_age(baseline.age_s)} ago (unpaired)"
    return f"cached {_age(baseline.age_s)} ago ({baseline.fingerprint[:6]})"


def _age(seconds: float) -> str:
    """Whole units, rounded down, so "3 d" never overstates how fresh a baseline is."""
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds)} s"


def lossless_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Sampled runs: what the lossless verdict rests on. A p-value alone hides a check over few
    distinct outputs, and the two likelihoods say which side drifted."""
    lines = []
    for run in (run for result in results for run in result.runs if run.temperature > 0):
        check = run.lossless_check
        if check is None:
            lines.append(f"{run.label}: not measured ([run] lossless_check is off)")
        elif check.verdict == "not measured":
            lines.append(f"{run.label}: {check.summary()}")
        else:
            lines.append(
                f"{run.label}: {check.summary()}; {check.distinct_samples} distinct pairs; target log-prob/token "
                f"spec {fmt(check.spec_mean_logprob)} vs vanilla {fmt(check.vanilla_mean_logprob)}"
            )
    return lines


def warning_lines(results: Iterable[ConfigResult], whole: bool) -> list[str]:
    """One line per run that has warnings. The terminal keeps each message's first clause (what
    was seen); the remedy after it is in the step summary and the JSON report."""
    return [
        f"{run.label}: " + ", ".join(f"{warning.code} ({_warning_text(warning, whole)})" for warning in run.warnings)
        for result in results
        for run in result.runs
        if run.warnings
    ]


def _warning_text(warning: RunWarning, whole: bool) -> str:
    head, colon, _ = warning.message.partition(": ")
    return warning.message if whole or not colon else f"{head}: ..."


def engine_lines(results: Iterable[ConfigResult]) -> list[str]:
    """How each config's engines ran, so an eager run is never read as a CUDA-graph run; configs
    whose runs recorded nothing (results from before these fields) are left out."""
    lines = []
    for result in results:
        seen: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for run in result.runs:
            started = (run.engine_args, run.speculative_config)
            if (run.engine_args or run.speculative_config) and started not in seen:
                seen.append(started)
        for engine_args, speculative in seen:
            eager = "" if "enforce_eager" in engine_args else "; enforce_eager unset: CUDA graphs (vLLM's default)"
            lines.append(f"{result.config_name}: engine {_compact(engine_args)} speculative {_compact(speculative)}{eager}")
    return lines


#: How a start's phases read, in the order vLLM runs them.
PHASE_NAMES = {"import_s": "importing vLLM", "weights_s": "weights", "engine_init_s": "vLLM init", "compile_s": "of which torch.compile",
               "graph_capture_s": "and CUDA graphs", "other_s": "the rest (processes, imports, a server's API)"}


def start_lines(results: Iterable[ConfigResult]) -> list[str]:
    """Each start vLLM's log explained: a slow one says where its time went."""
    lines = []
    for result in results:
        for role, phases in result.engine_start_phases.items():
            total = result.engine_start_s.get(role)
            parts = ", ".join(f"{PHASE_NAMES.get(name, name)} {seconds:.1f} s" for name, seconds in phases.items())
            lines.append(f"{result.config_name}: {role} engine started in {total:.1f} s: {parts}" if total is not None
                         else f"{result.config_name}: {role} engine: {parts}")
    return lines


def memory_lines(results: Iterable[ConfigResult]) -> list[str]:
    """What speculation costs in KV-cache tokens, once per config (vLLM allocates it per engine,
    not per run), and where it went when the draft's config.json says."""
    lines = []
    for result in results:
        run = next((r for r in result.runs if r.kv_cache_ratio is not None), None)
        if run is None:
            continue
        line = (f"{result.config_name}: {run.spec.kv_cache_tokens:,} tokens vs vanilla's {run.vanilla.kv_cache_tokens:,}"
                f" ({run.kv_cache_ratio - 1:+.1%})")
        split = run.kv_capacity_split
        if split is not None:
            line += (f": the draft's own KV per token {split.draft_kv_per_token:.1%}, its weights "
                     f"{split.draft_weights:.1%}, the rest (its CUDA graphs, activations) {split.other:.1%}")
        lines.append(line)
    return lines


def _compact(value: Any) -> str:
    """JSON's words (true, null) without its quotes: short enough for one terminal line."""
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key}: {_compact(item)}" for key, item in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_compact(item) for item in value) + "]"
    if isinstance(value, bool) or value is None:
        return json.dumps(value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def break_even_lines(results: Iterable[ConfigResult]) -> list[str]:
    return [
        f"{result.config_name} T={point.temperature:g}: {_paying(point)}; {_tail(point)}"
        for result in results
        for point in result.break_even
    ]


def _unit(point: BreakEven) -> str:
    return "c" if point.axis == "concurrency" else "rate"


def _paying(point: BreakEven) -> str:
    """The first level where speculation stops paying, and whether the sweep pays again after it."""
    unit, last, first = _unit(point), point.last_level_paying_before_it, point.first_level_not_paying
    name = "speedup" if point.metric == "throughput" else "TPOT speedup"
    if first is None and last is None:
        return f"no level has a {name}"
    if first is None:
        text = f"speculation pays at every level, up to {unit}={last:g}" + ("" if name == "speedup" else f" ({name})")
    else:
        interval = f", interval {point.speedup_ci[0]:.2f}-{point.speedup_ci[1]:.2f}" if point.speedup_ci else ""
        figure = f"({name} {point.speedup_at_first_level_not_paying:.2f}x{interval})"
        text = (
            f"speculation stops paying at {unit}={first:g} {figure}, pays up to {unit}={last:g}"
            if last is not None
            else f"speculation does not pay even at {unit}={first:g} {figure}"
        )
    if point.pays_again_at:
        text += "; non-monotone sweep: pays again at " + ", ".join(f"{unit}={level:g}" for level in point.pays_again_at)
    elif not point.monotone:
        text += f"; non-monotone sweep: {name} rises by more than {SWEEP_NOISE:.0%} from one level to the next"
    return text


def _tail(point: BreakEven) -> str:
    unit, tolerance = _unit(point), f"{point.p99_tolerance * 100:g}%"
    parts = []
    if point.first_level_p99_regresses is not None:
        parts.append(f"E2E P99 regresses (> {tolerance}) from {unit}={point.first_level_p99_regresses:g}")
    elif not point.p99_not_judged:
        parts.append(f"E2E P99 within {tolerance} of vanilla's at every level")
    if point.p99_not_judged:
        levels = ", ".join(f"{unit}={level:g}" for level in point.p99_not_judged)
        parts.append(f"E2E P99 not judged at {levels} (fewer than [run] min_p99_requests requests a side)")
    return "; ".join(parts)


def acceptance_notes(results: Iterable[ConfigResult]) -> list[str]:
    """Runs with per-request acceptance above 1, which only merged stream chunks can give: said, not clipped."""
    return [
        f"{run.label}: {run.per_request_acceptance_over_one} of {run.per_request_acceptance.count} requests read "
        f"per-request acceptance above 1 (K={run.per_request_acceptance_k}): their stream chunks merged engine "
        "steps, so per-request figures read high"
        for result in results
        for run in result.runs
        if run.per_request_acceptance_over_one
    ]


def failure_lines(failures: dict[str, str]) -> list[str]:
    """Configs with no result: a failed start or an interrupted measurement, with the reason."""
    return [f"{config}: {reason}" for config, reason in failures.items()]
