"""Why a gate missed: the failure message a user reads in place of a bare number.

A missed threshold alone says nothing about what to change, so the message carries the measured
value and its interval, the per-position table and vLLM's tuning advice. Kept apart from `kinds`,
which decides pass or fail: these functions only describe a run and know no gate kind.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..results import Divergence, RunResult


def explain(
    label: str, threshold: float, run: RunResult, value: float | None, relation: str,
    interval: tuple[float, float] | None = None, basis: str | None = None, resolve: str | None = None,
) -> str:
    """What was measured, against what (`relation`: "below", "above", "inconclusive against"), and
    what the tuning rules suggest; for an inconclusive verdict, what would resolve it."""
    lines = [_headline(label, threshold, run, value, relation, interval)]
    if not run.valid or value is None:
        return lines[0]
    if basis:
        lines.append(f"  interval from {basis}")
    if resolve:
        lines.append(f"  to resolve: {resolve}")
    lines.append(per_position_table(run))
    lines.extend(advice(run))
    return "\n".join(line for line in lines if line)


def explain_unresolved(label: str, threshold: float, run: RunResult, value: float | None, reason: str) -> str:
    """A verdict with nothing to decide by: the figure (if any), and why it is not judged."""
    if not run.valid:
        return _headline(label, threshold, run, value, "")
    figure = "" if value is None else f"measured {value:.3f}, "
    return f"{label} at {run.label}: inconclusive: {figure}threshold {threshold:g}: {reason}"


def _headline(label: str, threshold: float, run: RunResult, value: float | None, relation: str,
              interval: tuple[float, float] | None = None) -> str:
    """The first line of every gate message: the figure, or why there is none."""
    if not run.valid:
        return f"{label} at {run.label}: inconclusive: invalid measurement: {run.invalid_reason}"
    if value is None:
        return f"{label} at {run.label}: inconclusive: not measured (no samples for this figure)"
    spread = f" ({run.interval_level:.3g} interval {interval[0]:.3f}..{interval[1]:.3f})" if interval else ""
    return f"{label} at {run.label}: measured {value:.3f}{spread}, {relation} threshold {threshold:g}"


def explain_greedy(label: str, threshold: float, run: RunResult, value: float | None) -> str:
    """A greedy run's output match below the bar (near-ties count as matches), and where the
    differing outputs part: at a near-tie of the target's, or not (`divergence`). Acceptance and its advice are about speed, not
    about this, so they are left out."""
    headline = _headline(label, threshold, run, value, "below")
    if not run.valid or value is None:
        return headline
    if run.divergences is None:
        return (f"{headline}\n  where the outputs part was not scored: no vanilla engine was up to score them "
                "(its side came from a stored baseline or an earlier config, [run] lossless_check is off, or the "
                "session was interrupted)")
    counted = (f"  measured: the share equal to vanilla's token for token ({run.outputs_match:.3f}) or parting at a "
               "near-tie, which counts as equal")
    return "\n".join([headline, counted, *describe(run.divergences, run.spec.num_requests)])


def explain_lossless(label: str, run: RunResult) -> str:
    """A sampled run's distribution check (`LosslessCheck.summary`), and for one that is not
    lossless, both likelihoods and the outputs that differ most, side by side."""
    if not run.valid:
        return f"{label} at {run.label}: inconclusive: invalid measurement: {run.invalid_reason}"
    check = run.lossless_check
    if check is None:
        return f"{label} at {run.label}: inconclusive: not measured ([run] lossless_check is off)"
    headline = f"{label} at {run.label}: {check.summary()}"
    if check.verdict != "not lossless":
        return headline
    lines = [
        headline,
        f"  spec outputs score {check.spec_mean_logprob:.2f} vs vanilla {check.vanilla_mean_logprob:.2f} nats/token "
        f"under the target ({check.distinct_samples} distinct pairs): the speculative engine does not sample from the "
        "target's distribution: suspect its sampler or verifier, not the draft",
    ]
    pairs = sorted(zip(run.spec.samples, run.vanilla.samples),
                   key=lambda pair: (pair[0].target_logprob or 0.0) - (pair[1].target_logprob or 0.0))
    for spec_sample, vanilla_sample in pairs[:3]:
        lines.append(f"  spec:    {_snippet(spec_sample.output_text)}")
        lines.append(f"  vanilla: {_snippet(vanilla_sample.output_text)}")
    return "\n".join(lines)


def _snippet(text: str, width: int = 100) -> str:
    flat = " ".join(text.split())
    return repr(flat if len(flat) <= width else flat[: width - 1] + "…")


def per_position_table(run: RunResult) -> str:
    """Acceptance at each draft position: where it falls off says which K to try."""
    positions = run.per_position_acceptance
    if not positions:
        return ""
    head = "  position:   " + " ".join(f"{i:>5d}" for i in range(len(positions)))
    body = "  acceptance: " + " ".join(f"{p:>5.2f}" for p in positions)
    speedup = "" if run.speedup is None else f", speedup {run.speedup:.2f}x"  # None at a paced request rate
    summary = (
        f"  acceptance rate {run.acceptance_rate:.3f}, mean acceptance length {run.mean_acceptance_length:.2f}{speedup}"
        if run.acceptance_rate is not None and run.mean_acceptance_length is not None
        else ""
    )
    return "\n".join(line for line in (head, body, summary) if line)


def advice(run: RunResult) -> list[str]:
    """The tuning rules of vLLM's speculation-metrics guide, applied to this run (none for random
    weights: their acceptance says nothing about the draft)."""
    tips: list[str] = []
    if run.random_weights:
        return tips
    rate = run.acceptance_rate
    k = run.num_speculative_tokens
    cut = next((i for i, p in enumerate(run.per_position_acceptance) if p < 0.5), None)
    if rate is not None and rate < 0.5:
        tips.append(f"  advice: acceptance < 50%: lower num_speculative_tokens (now {k}) or try another method")
    if cut is not None and cut < k:
        tips.append(
            f"  advice: per-position acceptance falls below 0.5 at position {cut}: "
            f"num_speculative_tokens = {max(cut, 1)} would stop drafting tokens that are mostly rejected"
        )
    if rate is not None and rate > 0.8:
        tips.append(f"  advice: acceptance > 80%: a larger num_speculative_tokens (now {k}) may gain more")
    if run.temperature > 0:
        tips.append(f"  note: sampling at T={run.temperature:g} lowers acceptance; compare with the T=0 run")
    return tips


def describe(divergences: Sequence[Divergence], requests: int) -> list[str]:
    """Lines for a failed T=0 check: how many of the `requests` differ, how many of those part at a
    near-tie, and the widest other gaps."""
    if not divergences:
        return []
    ties = [d for d in divergences if d.near_tie]
    apart = sorted((d for d in divergences if d.vanilla_token_gap_nats is not None and not d.near_tie),
                   key=lambda d: -abs(d.vanilla_token_gap_nats or 0.0))
    ended = len(divergences) - len(ties) - len(apart)
    differ = "differs" if len(divergences) == 1 else "differ"
    lines = [f"  {len(divergences)} of {requests} requests {differ} from vanilla; at the first differing token the target "
             f"(vanilla engine) scores the two tokens within {divergences[0].near_tie_nats:g} nats in {len(ties)} "
             "(near-ties: batch-dependent numerics, not the verifier)"]
    if apart:
        widest = ", ".join(f"{d.where}: {d.vanilla_token_gap_nats:+.2f}" for d in apart[:3])
        lines.append(f"  and by more in {len(apart)}, gaps a verifier that keeps the target's greedy choice should not "
                     f"leave (widest first, vanilla's token minus spec's: {widest})")
    if ended:
        lines.append(f"  {ended} not scored (one output is a prefix of the other, or scoring was not possible)")
    return lines
