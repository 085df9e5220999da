"""Where greedy outputs part from vanilla's, and whether the target itself was torn there.

A T=0 mismatch is either a defect (a verifier that accepts a token the target would not pick) or a
near-tie that batch-dependent numerics broke the other way: vLLM's kernels are not batch-invariant,
so verifying K+1 positions at once, or in a batch of another size, can flip two tokens the target
scores within rounding of each other. One prefill per side under the vanilla engine tells them
apart: at the first differing token, how much more likely the target finds vanilla's token than
the spec engine's. A defect shows as a gap of nats; a near-tie as one within rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .results import Divergence, RequestSample

#: Gaps at most this wide (nats, in either direction) are near-ties. A gap in log-probability is
#: the gap in logits, and bf16 logits come in steps of 0.125 between 16 and 32 and of 0.25 between
#: 32 and 64: two tokens one rounding apart can swap places when the batch changes the arithmetic.
NEAR_TIE_NATS = 0.25


class Scorer(Protocol):
    def score(self, prompts: list[str], outputs: list[list[int]]) -> list[float | None]: ...


def first_differences(spec: Sequence[RequestSample], vanilla: Sequence[RequestSample]) -> list[tuple[int, int]]:
    """(request, token position) where each differing pair of greedy outputs first parts."""
    found = []
    for request, (a, b) in enumerate(zip(spec, vanilla)):
        ids_a, ids_b = a.output_token_ids, b.output_token_ids
        if ids_a == ids_b:
            continue
        position = next((i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y), min(len(ids_a), len(ids_b)))
        found.append((request, position))
    return found


def score_divergences(
    engine: Scorer, prompts: Sequence[str], spec: Sequence[RequestSample], vanilla: Sequence[RequestSample]
) -> list[Divergence]:
    """Each differing request's first difference, scored by the target (the vanilla engine): the
    shared prefix plus each side's token, so the two mean log-probabilities differ only by that token."""
    differences = first_differences(spec, vanilla)
    # a request where one output is a prefix of the other has no second token to score
    both = [(r, p) for r, p in differences if p < min(len(spec[r].output_token_ids), len(vanilla[r].output_token_ids))]
    prompts_twice = [prompts[r % len(prompts)] for r, _ in both] * 2
    outputs = [side[r].output_token_ids[: p + 1] for side in (vanilla, spec) for r, p in both]
    scores = engine.score(prompts_twice, outputs) if both else []
    gaps: dict[int, float | None] = {}
    for k, (request, position) in enumerate(both):
        vanilla_mean, spec_mean = scores[k], scores[k + len(both)]
        if vanilla_mean is not None and spec_mean is not None:  # means over position + 1 tokens
            gaps[request] = (vanilla_mean - spec_mean) * (position + 1)
    return [
        Divergence(request=r, position=p, vanilla_token_gap_nats=gaps.get(r), near_tie_nats=NEAR_TIE_NATS)
        for r, p in differences
    ]


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
             f"(vanilla engine) scores the two tokens within {NEAR_TIE_NATS:g} nats in {len(ties)} "
             "(near-ties: batch-dependent numerics, not the verifier)"]
    if apart:
        widest = ", ".join(f"request {d.request} at token {d.position}: {d.vanilla_token_gap_nats:+.2f}" for d in apart[:3])
        lines.append(f"  and by more in {len(apart)}, gaps a verifier that keeps the target's greedy choice should not "
                     f"leave (widest first, vanilla's token minus spec's: {widest})")
    if ended:
        lines.append(f"  {ended} not scored (one output is a prefix of the other, or scoring was not possible)")
    return lines
