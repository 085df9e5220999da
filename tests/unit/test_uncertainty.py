import warnings

import numpy as np
import pytest

from pytest_specdecode import uncertainty
from pytest_specdecode.gates import Gate, passes
from pytest_specdecode.results import LATENCY_METRICS, EngineFigures, RequestSample, RunResult, SpecCounters
from pytest_specdecode.uncertainty import (
    Interval,
    Resampling,
    acceptance_interval,
    confident_outcome,
    gate_interval,
    p99_regression_interval,
    speedup_interval,
    tpot_speedup_interval,
)

TOKENS = 128
K = 3


def noisy_side(rng: np.random.Generator, seconds_per_token: float, requests: int = 16, repeats: int = 2,
               concurrency: int = 4) -> EngineFigures:
    """Requests whose decode speed varies by ~25% around `seconds_per_token`, as on a shared machine."""
    samples = []
    for repeat in range(repeats):
        for _ in range(requests):
            gaps = seconds_per_token * rng.lognormal(0.0, 0.25) * rng.lognormal(0.0, 0.1, size=TOKENS // 4)
            ttft = 0.05 * rng.lognormal(0.0, 0.2)
            accepted = rng.integers(0, K + 1, size=gaps.size - 1)
            samples.append(RequestSample(
                prompt_tokens=32, output_tokens=TOKENS, ttft_s=ttft, e2e_s=ttft + 4 * gaps.sum(),
                itl_s=list(4 * gaps), chunk_tokens=[1, *(accepted + 1).tolist()], repeat=repeat,
            ))
    return EngineFigures(samples=samples, duration_s=sum(s.e2e_s for s in samples) / concurrency)


def make_run(spec: EngineFigures, vanilla: EngineFigures, invalid_reason: str | None = None) -> RunResult:
    return RunResult(
        config="c.toml", config_name="cpu-ngram", model="m", method="ngram", num_speculative_tokens=K,
        workload="builtin:mixed", temperature=0.8, counters=SpecCounters(num_drafts=10, num_draft_tokens=30,
        num_accepted_tokens=20), spec=spec, vanilla=vanilla, invalid_reason=invalid_reason,
    )


def noisy_run(seed: int, true_speedup: float = 1.3) -> RunResult:
    rng = np.random.default_rng(seed)
    vanilla = noisy_side(rng, 0.013)
    return make_run(noisy_side(rng, 0.013 / true_speedup), vanilla)


def steady_sample(repeat: int = 0, chunks: tuple[int, ...] = (1, 3, 3, 2)) -> RequestSample:
    return RequestSample(prompt_tokens=8, output_tokens=sum(chunks), ttft_s=0.1, e2e_s=0.4, itl_s=[0.1, 0.1, 0.1],
                         chunk_tokens=list(chunks), repeat=repeat)


def test_point_verdict_flips_across_seeds_while_confident_verdict_holds():
    gate = Gate("min_speedup", 1.3, metric="throughput")
    runs = [noisy_run(seed) for seed in range(12)]
    point = [passes(gate, run.speedup) for run in runs]
    confident = [confident_outcome(gate.kind, gate.threshold, speedup_interval(run.spec, run.vanilla)) for run in runs]

    assert True in point and False in point
    assert not {"pass", "fail"} <= set(confident)
    assert confident.count("inconclusive") >= len(runs) - 1


@pytest.mark.parametrize(("true_speedup", "expected"), [(2.0, "pass"), (1.0, "fail")])
def test_clear_difference_gives_a_stable_confident_verdict(true_speedup, expected):
    runs = [noisy_run(seed, true_speedup) for seed in range(5)]
    outcomes = {confident_outcome("min_speedup", 1.3, speedup_interval(r.spec, r.vanilla)) for r in runs}
    assert outcomes == {expected}


@pytest.mark.parametrize("seed", range(4))
def test_intervals_contain_their_point_estimates(seed):
    run = noisy_run(seed)
    checks = [(speedup_interval(run.spec, run.vanilla), run.speedup),
              (tpot_speedup_interval(run.spec, run.vanilla), run.tpot_speedup),
              (acceptance_interval(run), run.acceptance_rate)]
    checks += [(p99_regression_interval(run.spec, run.vanilla, m), run.p99_regression[m]) for m in LATENCY_METRICS]
    for interval, point in checks:
        assert interval.low <= point <= interval.high
        assert interval.level == 0.95


def test_speedup_statistic_on_all_requests_is_the_point_estimate():
    run = noisy_run(0)
    statistic = uncertainty._speedup_statistic(run.spec, run.vanilla)
    whole = statistic(np.arange(len(run.spec.samples)), np.arange(len(run.vanilla.samples)))
    assert whole == pytest.approx(run.speedup, rel=1e-12)


def test_fewer_than_two_samples_on_a_side_gives_none():
    run = noisy_run(0)
    lone = run.spec.model_copy(update={"samples": run.spec.samples[:1]})
    assert speedup_interval(lone, run.vanilla) is None
    assert speedup_interval(run.spec, lone) is None
    assert p99_regression_interval(lone, run.vanilla, "e2e") is None
    assert acceptance_interval(make_run(lone, run.vanilla)) is None
    no_gaps = [s.model_copy(update={"itl_s": []}) for s in run.vanilla.samples[1:]]
    gapless = run.vanilla.model_copy(update={"samples": run.vanilla.samples[:1] + no_gaps})
    assert p99_regression_interval(run.spec, gapless, "itl") is None


def test_identical_requests_fall_back_to_percentile_without_warnings():
    side = EngineFigures(samples=[steady_sample() for _ in range(6)], duration_s=1.2)
    run = make_run(side, side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert acceptance_interval(run) == Interval(run.acceptance_rate, run.acceptance_rate)
        assert speedup_interval(side, side) == Interval(1.0, 1.0)


def test_a_seed_reproduces_its_interval():
    run = noisy_run(3)
    first = speedup_interval(run.spec, run.vanilla, Resampling(seed=7))
    assert speedup_interval(run.spec, run.vanilla, Resampling(seed=7)) == first
    assert speedup_interval(run.spec, run.vanilla, Resampling(seed=8)) != first


def test_percentile_method_and_level_are_honoured():
    run = noisy_run(1)
    wide = speedup_interval(run.spec, run.vanilla, Resampling(level=0.99, method="percentile"))
    narrow = speedup_interval(run.spec, run.vanilla, Resampling(level=0.80, method="percentile"))
    assert wide.level == 0.99
    assert wide.low < narrow.low < narrow.high < wide.high


def test_strata_follow_repeats_unless_a_repeat_is_too_small():
    groups = uncertainty._strata([0, 0, 1, 1, 1])
    assert [g.tolist() for g in groups] == [[0, 1], [2, 3, 4]]
    assert [g.tolist() for g in uncertainty._strata([0, 0, 1])] == [[0, 1, 2]]


def test_a_repeat_of_one_request_still_gives_an_interval():
    samples = [steady_sample(0, (1, 2, 2)), steady_sample(0, (1, 3, 3)), steady_sample(1, (1, 4, 1))]
    run = make_run(EngineFigures(samples=samples, duration_s=1.0), EngineFigures(samples=samples, duration_s=1.0))
    interval = acceptance_interval(run)
    assert 0 <= interval.low <= interval.high <= 1


@pytest.mark.parametrize(
    ("kind", "threshold", "interval", "expected"),
    [
        ("min_speedup", 1.3, Interval(1.3, 1.5), "pass"),
        ("min_speedup", 1.3, Interval(1.1, 1.29), "fail"),
        ("min_speedup", 1.3, Interval(1.2, 1.4), "inconclusive"),
        ("min_acceptance", 0.5, Interval(0.6, 0.7), "pass"),
        ("min_acceptance", 0.5, Interval(0.45, 0.5), "inconclusive"),
        ("max_p99_regression", 0.1, Interval(-0.2, 0.1), "pass"),
        ("max_p99_regression", 0.1, Interval(0.11, 0.3), "fail"),
        ("max_p99_regression", 0.1, Interval(0.1, 0.3), "inconclusive"),
    ],
)
def test_confident_outcome(kind, threshold, interval, expected):
    assert confident_outcome(kind, threshold, interval) == expected


def test_confident_outcome_rejects_a_gate_without_an_interval():
    with pytest.raises(ValueError, match="lossless"):
        confident_outcome("lossless", 1.0, Interval(1.0, 1.0))


def test_gate_interval_reads_the_gated_figure():
    run = noisy_run(2)
    assert gate_interval(Gate("min_speedup", 1.3, metric="throughput"), run) == speedup_interval(run.spec, run.vanilla)
    assert gate_interval(Gate("min_speedup", 1.3, metric="tpot"), run) == tpot_speedup_interval(run.spec, run.vanilla)
    assert gate_interval(Gate("max_p99_regression", 0.1, metric="itl"), run) == p99_regression_interval(
        run.spec, run.vanilla, "itl")
    assert gate_interval(Gate("min_acceptance", 0.5), run) == acceptance_interval(run)
    assert gate_interval(Gate("min_acceptance", 0.5, position=0), run) is None
    assert gate_interval(Gate("lossless", 1.0), run) is None
    invalid = make_run(run.spec, run.vanilla, invalid_reason="no drafts")
    assert gate_interval(Gate("min_speedup", 1.3, metric="throughput"), invalid) is None


def test_acceptance_interval_is_centred_on_the_counters_not_on_chunk_sizes():
    """n-gram proposes nothing on some steps: chunks of 1 would drag a chunk-based figure down."""
    run = noisy_run(0)
    interval = acceptance_interval(run)
    assert interval.low < run.acceptance_rate < interval.high
    assert interval.high - interval.low < 0.5
