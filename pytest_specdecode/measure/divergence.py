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

from ..results import Divergence, RequestSample

#: Gaps at most this wide (nats, in either direction) count as near-ties: a rule of thumb, not a
#: bound. A gap in log-probability is the gap in logits, and bf16 logits come in steps of 0.125
#: between 16 and 32 and of 0.25 between 32 and 64: two tokens one rounding apart can swap places
#: when the batch changes the arithmetic (which can also drift more than a step across layers).
NEAR_TIE_NATS = 0.25


class Scorer(Protocol):
    """What scoring needs of an engine (the `Engine` protocol's `score`), so this module needs no engine."""

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
    # each request's two prefixes side by side, so one batch step prefills both alike
    pairs = [(prompts[r % len(prompts)], side[r].output_token_ids[: p + 1]) for r, p in both for side in (vanilla, spec)]
    scores = engine.score([prompt for prompt, _ in pairs], [output for _, output in pairs]) if pairs else []
    gaps: dict[int, float] = {}
    for (request, position), vanilla_mean, spec_mean in zip(both, scores[0::2], scores[1::2]):
        if vanilla_mean is not None and spec_mean is not None:  # means over position + 1 tokens
            gaps[request] = (vanilla_mean - spec_mean) * (position + 1)
    return [
        Divergence(request=r, prompt=r % len(prompts), repeat=spec[r].repeat, position=p,
                   vanilla_token_gap_nats=gaps.get(r), near_tie_nats=NEAR_TIE_NATS)
        for r, p in differences
    ]

