"""Where greedy outputs part from vanilla's, and whether the target was torn there (a near-tie)."""

import pytest

from pytest_specdecode.gates.explain import describe
from pytest_specdecode.measure.divergence import NEAR_TIE_NATS, first_differences, score_divergences
from pytest_specdecode.engines.pool import EnginePool
from pytest_specdecode.gates.kinds import judge, parse_gate
from pytest_specdecode.measure.measurer import Measurer
from pytest_specdecode.results import RequestSample

from .builders import result, run
from .fakes import FakeFactory
from .test_measure import make_config


def sample(ids: list[int]) -> RequestSample:
    return RequestSample(prompt_tokens=5, output_tokens=len(ids), ttft_s=0.1, e2e_s=1.0, output_token_ids=ids)


class TokenScorer:
    """The target as a table: each token's log-probability, whatever came before it."""

    def __init__(self, logprobs: dict[int, float]) -> None:
        self.logprobs = logprobs
        self.calls: list[tuple[list[str], list[list[int]]]] = []

    def score(self, prompts, outputs):
        self.calls.append((prompts, outputs))
        return [sum(self.logprobs.get(t, -1.0) for t in output) / len(output) for output in outputs]


def test_each_differing_output_is_found_where_it_first_parts():
    spec = [sample([1, 2, 3]), sample([1, 9, 3]), sample([1, 2]), sample([5])]
    vanilla = [sample([1, 2, 3]), sample([1, 2, 3]), sample([1, 2, 3]), sample([5])]
    assert first_differences(spec, vanilla) == [(1, 1), (2, 2)]  # request 2: spec stopped early


def test_a_near_tie_and_a_wide_gap_are_told_apart_by_the_targets_own_scores():
    # two prompts, two repeats: request 0 parts at token 2 between tokens the target scores -0.70
    # and -0.75, a near-tie; request 3 (prompt 1, repeat 2) at token 1, where the target gives
    # spec's token 3 nats less than vanilla's; request 2's spec output stops early
    target = TokenScorer({7: -0.70, 8: -0.75, 20: -0.5, 21: -3.5})
    spec = [sample([1, 2, 8, 4]), sample([6]), sample([1, 2]), sample([1, 21, 5]).model_copy(update={"repeat": 1})]
    vanilla = [sample([1, 2, 7, 4]), sample([6]), sample([1, 2, 3]), sample([1, 20, 5])]
    divergences = score_divergences(target, ["p0", "p1"], spec, vanilla)
    assert [(d.request, d.prompt, d.position) for d in divergences] == [(0, 0, 2), (2, 0, 2), (3, 1, 1)]
    assert divergences[0].vanilla_token_gap_nats == pytest.approx(0.05) and divergences[0].near_tie
    assert divergences[1].vanilla_token_gap_nats is None  # one output is a prefix of the other: nothing to score
    assert divergences[2].vanilla_token_gap_nats == pytest.approx(3.0) and not divergences[2].near_tie
    # each scored request's two sides side by side: the shared prefix and that side's token, after its own prompt
    [(prompts, outputs)] = target.calls
    assert prompts == ["p0", "p0", "p1", "p1"] and outputs == [[1, 2, 7], [1, 2, 8], [1, 20], [1, 21]]
    lines = describe(divergences, 4)
    assert lines[0].endswith(f"within {NEAR_TIE_NATS:g} nats in 1 (near-ties: batch-dependent numerics, not the verifier)")
    assert "by more in 1" in lines[1] and "prompt 1, repeat 2 at token 1: +3.00" in lines[1]
    assert "1 not scored" in lines[2]


def test_a_greedy_output_that_parts_at_a_near_tie_does_not_fail_lossless():
    """Failed `lossless(1)` with `measured 0.750`: the CPU CI's self-draft run (the target as its own
    draft, so a correct engine) had 2 of 8 requests part where the target scores both tokens within
    0.25 nats, a flip of the batch's arithmetic; exact equality made the default gate flake."""
    factory = FakeFactory(differ=(2,), token_logprobs={3: -0.40, 102: -0.45})
    measurer = Measurer(EnginePool({"offline": factory}))
    greedy = measurer.measure(make_config(temperatures=[0.0])).runs[0]
    assert greedy.outputs_match == 0.75 and greedy.outputs_match_up_to_ties == 1.0
    [divergence] = greedy.divergences
    assert (divergence.request, divergence.position) == (2, 3) and divergence.near_tie
    assert divergence.vanilla_token_gap_nats == pytest.approx(0.05)
    [verdict] = judge(parse_gate("lossless", (), {}), result(greedy))
    assert verdict.passed and verdict.measured == 1.0


def test_a_greedy_lossless_gate_that_fails_says_where_the_outputs_part():
    """Was `lossless(1) at ngram T=0: measured 0.750, below threshold 1` and nothing on whether the
    differing request parted at a near-tie (batch-dependent numerics) or at a wrong token."""
    factory = FakeFactory(differ=(2,), token_logprobs={3: -0.40, 102: -3.40})
    measurer = Measurer(EnginePool({"offline": factory}))
    greedy = measurer.measure(make_config(temperatures=[0.0])).runs[0]
    [divergence] = greedy.divergences
    assert divergence.vanilla_token_gap_nats == pytest.approx(3.0) and not divergence.near_tie
    assert greedy.outputs_match_up_to_ties == 0.75
    [verdict] = judge(parse_gate("lossless", (), {}), result(greedy))
    assert not verdict.passed and verdict.measured == 0.75
    assert "1 of 4 requests differs from vanilla; at the first differing token the target (vanilla engine) scores " \
           "the two tokens within 0.25 nats in 0 (near-ties" in verdict.message
    assert "and by more in 1" in verdict.message


def test_outputs_that_match_are_not_scored():
    factory = FakeFactory()
    greedy = Measurer(EnginePool({"offline": factory})).measure(make_config(temperatures=[0.0])).runs[0]
    assert greedy.outputs_match == 1.0 and greedy.divergences is None
    assert all(engine.scored == [] for engine in factory.engines)



def test_differing_outputs_the_vanilla_engine_was_not_up_to_score_say_so():
    from_a_stored_baseline = run(0.0).model_copy(update={"outputs_match": 0.75})
    [verdict] = judge(parse_gate("lossless", (), {}), result(from_a_stored_baseline))
    assert "where the outputs part was not scored: no vanilla engine was up to score them" in verdict.message


def test_a_second_config_on_one_target_scores_its_differing_greedy_outputs_too():
    """Was `divergences: null` for every config after the first (one live engine): its vanilla side
    came from this session's memo, its spec engine had stopped the vanilla engine, and the T=0 run
    was built before the T=0.8 check brought that engine back."""
    factory = FakeFactory(differ=(1,))
    measurer = Measurer(EnginePool({"offline": factory}))
    measurer.measure(make_config("a"))
    other_k = make_config().speculative.model_copy(update={"num_speculative_tokens": 2})
    second = measurer.measure(make_config("b").model_copy(update={"speculative": other_k}))
    greedy = second.run(temperature=0.0)
    assert greedy.outputs_match == 0.75 and [d.prompt for d in greedy.divergences] == [1]
