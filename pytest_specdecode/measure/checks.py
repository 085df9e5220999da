"""What makes a run's figures invalid or weaker than they look: pure checks over measured windows.

An invalid run (a counter that went down, accepted > drafted, an engine that generated tokens no
client received, speculation that never ran) gets `invalid_reason` and is never judged; a valid run
with a weakness (a short window, too few requests for a P99, a busy client, unequal output lengths,
a warm prefix cache) keeps its figures and carries a named `RunWarning`.
"""

from __future__ import annotations

from typing import Any

from ..config.spec import RunSection
from ..engines.base import EngineSpec
from ..results import EngineFigures, RequestSample, RunWarning, SpecCounters, Window

#: Mean output lengths further apart than this make a throughput comparison one of unequal work.
LENGTH_TOLERANCE = 0.05
#: A client whose event loop ran this late, or that used this share of a core, set the pace itself.
CLIENT_LAG_LIMIT_MS = 50.0
CLIENT_CPU_LIMIT = 0.8


def outputs_match(spec: list[RequestSample], vanilla: list[RequestSample]) -> float | None:
    """Share of greedy requests whose token ids equal vanilla's; None ("not measured") when either
    side lacks the ids of a request that produced tokens: absent ids prove neither match nor mismatch."""
    if not spec or len(spec) != len(vanilla):
        return None
    if any(s.output_tokens and not s.output_token_ids for s in spec + vanilla):
        return None
    same = sum(a.output_token_ids == b.output_token_ids for a, b in zip(spec, vanilla))
    return same / len(spec)


def invalid_reason(
    counters: SpecCounters, spec: EngineFigures, vanilla: EngineFigures, min_mean_output_tokens: float
) -> str | None:
    """Why a run's figures cannot mean anything, or None when they can."""
    problem = counter_problem(counters)
    if problem is not None:
        return problem
    if counters.num_drafts == 0:
        return "no drafts were proposed in the measured window (speculation never ran)"
    for name, side in (("speculative", spec), ("vanilla", vanilla)):
        mean_tokens = side.output_tokens / max(side.num_requests, 1)
        if mean_tokens < min_mean_output_tokens:
            return (
                f"{name} outputs average {mean_tokens:.1f} tokens (< {min_mean_output_tokens:g}): "
                "check the chat template and max_tokens"
            )
        for window in side.windows:
            for target in window.targets:  # a replica behind a gateway: named, so the bad one stands out
                problem = counter_problem(target.counters)
                if problem is None and target.generation_tokens is not None and target.generation_tokens < 0:
                    problem = "its generated-token counter went down (the replica restarted?)"
                if problem is not None:
                    return f"{name} metrics target {target.url}: {problem}"
            engine_count = window.engine_generation_tokens
            if engine_count is not None and engine_count != window.output_tokens:
                return (
                    f"{name} engine generated {engine_count} tokens in a window where the client received "
                    f"{window.output_tokens}: other traffic on the engine, or it restarted"
                )
    return None


def counter_problem(counters: SpecCounters) -> str | None:
    """Counter deltas that no real window produces: a restarted engine or a foreign counter."""
    values = [counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens, *counters.accepted_per_position]
    if any(value < 0 for value in values):
        return "a spec-decode counter went down during the window (the engine restarted?)"
    if counters.num_accepted_tokens > counters.num_draft_tokens:
        return (
            f"{counters.num_accepted_tokens} accepted of {counters.num_draft_tokens} drafted tokens: "
            "the counters do not describe one engine"
        )
    if counters.accepted_per_position and sum(counters.accepted_per_position) != counters.num_accepted_tokens:
        return "per-position accepted tokens do not add up to the accepted total"
    return None


def run_warnings(spec: EngineFigures, vanilla: EngineFigures, run: RunSection) -> list[RunWarning]:
    """What makes a valid run's figures weaker than they look, each with its name and remedy."""
    found = _side_warnings("spec", spec, run) + _side_warnings("vanilla", vanilla, run)
    ratio_ = _length_ratio(spec, vanilla)
    if ratio_ is not None and abs(ratio_ - 1) > LENGTH_TOLERANCE:
        found.append(RunWarning(
            code="unequal_lengths",
            message=f"spec outputs are {ratio_:.2f}x vanilla's length: throughput speedup compares unequal work; "
            "tpot_speedup is per token",
        ))
    return found


RANDOM_WEIGHTS_WARNING = RunWarning(
    code="random_weights",
    message='load_format = "dummy": random weights, so acceptance, per-position acceptance and lossless figures '
    "are noise (gates on them are inconclusive); step costs, KV capacity, TPOT and the speedup at this acceptance "
    "are real",
)


#: Client TPOT within this fraction of the server's own per-request ITL is network and clock noise.
CLIENT_TIMING_TOLERANCE = 0.10


def client_server_tpot_ratio(side: EngineFigures) -> float | None:
    """Median over requests of the client's TPOT over the server's own mean ITL for the same request
    (vLLM's `--enable-per-request-metrics`); None where the server did not report it."""
    import statistics

    ratios = [s.tpot_s * 1e3 / s.server_mean_itl_ms for s in side.samples
              if s.tpot_s is not None and s.server_mean_itl_ms]
    return statistics.median(ratios) if ratios else None


def _side_warnings(name: str, side: EngineFigures, run: RunSection) -> list[RunWarning]:
    """One side's weaknesses: short windows, too few requests for a P99, a busy client, a warm cache."""
    found: list[RunWarning] = []
    short = [w.duration_s for w in side.windows if w.duration_s < run.min_window_s]
    if short:
        found.append(RunWarning(
            code="short_window",
            message=f"{name} window of {min(short):.2f} s < {run.min_window_s:g} s: too short to resolve a few "
            "percent of speed; raise num_prompts or max_tokens",
        ))
    if side.num_requests < run.min_p99_requests:
        found.append(RunWarning(
            code="few_requests_for_p99",
            message=f"{name} has {side.num_requests} requests (< {run.min_p99_requests}): its P99 is its maximum",
        ))
    busy = [w for w in side.windows if _client_bound(w)]
    if busy:
        worst = max(busy, key=lambda w: w.client_lag_ms or 0.0)
        found.append(RunWarning(
            code="client_bound",
            message=f"the measuring client set the pace of a {name} window (event-loop lag "
            f"{worst.client_lag_ms:.0f} ms, CPU {worst.client_cpu_s:.1f} s of {worst.duration_s:.1f} s)",
        ))
    timing = client_server_tpot_ratio(side)
    if timing is not None and abs(timing - 1) > CLIENT_TIMING_TOLERANCE:
        found.append(RunWarning(
            code="client_timing",
            message=f"the {name} client's TPOT is {timing - 1:+.0%} off the server's own per-request ITL (median "
            "over requests): the client's clock, or the network, moved, not the engine (see client_lag_ms)",
        ))
    if any(not w.prefix_cache_reset for w in side.windows):
        found.append(RunWarning(
            code="prefix_cache_warm",
            message=f"the {name} engine's prefix cache could not be reset before a window: TTFT mixes warm prefills",
        ))
    return found


def speedup_basis(spec: EngineFigures, vanilla: EngineFigures) -> str | None:
    """What the throughput speedup compares: equal or unequal output lengths, in tokens."""
    ratio_ = _length_ratio(spec, vanilla)
    if ratio_ is None:
        return None
    equal = "equal" if abs(ratio_ - 1) <= LENGTH_TOLERANCE else "unequal"
    return f"output tokens/s, {equal} lengths ({spec.output_tokens} spec vs {vanilla.output_tokens} vanilla tokens)"


def _length_ratio(spec: EngineFigures, vanilla: EngineFigures) -> float | None:
    if not spec.num_requests or not vanilla.num_requests or not vanilla.output_tokens:
        return None
    return (spec.output_tokens / spec.num_requests) / (vanilla.output_tokens / vanilla.num_requests)


def _client_bound(window: Window) -> bool:
    if window.client_lag_ms is None or window.client_cpu_s is None:
        return False
    busy_share = window.client_cpu_s / window.duration_s if window.duration_s > 0 else 0.0
    return window.client_lag_ms > CLIENT_LAG_LIMIT_MS or busy_share > CLIENT_CPU_LIMIT


def config_warnings(side: EngineSpec, resolved: dict[str, Any] | None) -> list[RunWarning]:
    """A setting the engine resolved otherwise than asked: vLLM can accept a key and then ignore or
    override it (a draft tensor-parallel size, a method it renames), and the run then measured
    another config than the file says."""
    if not resolved:
        return []
    asked = [("speculative", side.speculative_config or {}, resolved.get("speculative") or {}),
             ("model", side.engine_args, resolved.get("parallel") or {})]
    differ = [f"[{section}] {key} = {want!r}, the engine resolved {got[key]!r}"
              for section, wanted, got in asked for key, want in wanted.items() if key in got and got[key] != want]
    if not differ:
        return []
    return [RunWarning(code="config_not_applied", message="; ".join(differ) + ": the run measured what the engine "
                       "resolved (see resolved_config), not what the config asks")]
