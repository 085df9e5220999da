"""The assertion helpers: a gate inside a test body, for figures a marker cannot reach (a run
picked by hand, a threshold computed in the test). They parse and judge exactly as the markers do,
their verdicts reach the test's reports, and an inconclusive one is handled by --spec-inconclusive."""

from __future__ import annotations

from typing import Any

from ..results import ConfigResult, Verdict
from .kinds import Gate, judge, parse_gate
from .policy import failures


class GateFailure(AssertionError):
    """A gate missed or could not be resolved: the message holds the measured value, its interval,
    the threshold and advice."""


def check(gate: Gate, result: ConfigResult, test: str = "") -> list[Verdict]:
    """Judge, hand the verdicts to the test's report, then raise `GateFailure` listing every run
    that failed (and every inconclusive one, unless --spec-inconclusive=warn)."""
    __tracebackhide__ = True
    verdicts = judge(gate, result, test)
    missed = failures(result.record(verdicts), verdicts)
    if missed:
        raise GateFailure("\n".join(missed))
    return verdicts


def _helper(kind: str, result: ConfigResult, threshold: float | None, **options: Any) -> list[Verdict]:
    __tracebackhide__ = True
    args = () if threshold is None else (threshold,)
    return check(parse_gate(kind, args, {k: v for k, v in options.items() if v is not None}), result)


def assert_min_acceptance(result: ConfigResult, threshold: float, *, temperature: float | None = None,
                          position: int | None = None, percentile: int | None = None,
                          concurrency: int | None = None, request_rate: float | None = None) -> list[Verdict]:
    """Fail the test when acceptance is below `threshold` in any matching run."""
    __tracebackhide__ = True
    return _helper("min_acceptance", result, threshold, temperature=temperature, position=position,
                   percentile=percentile, concurrency=concurrency, request_rate=request_rate)


def assert_min_speedup(result: ConfigResult, threshold: float, *, metric: str = "throughput",
                       temperature: float | None = None, concurrency: int | None = None,
                       request_rate: float | None = None) -> list[Verdict]:
    """Fail the test when spec is not `threshold` times faster than vanilla in any matching run."""
    __tracebackhide__ = True
    return _helper("min_speedup", result, threshold, metric=metric, temperature=temperature,
                   concurrency=concurrency, request_rate=request_rate)


def assert_max_p99_regression(result: ConfigResult, threshold: float, *, metric: str = "e2e",
                              temperature: float | None = None, concurrency: int | None = None,
                              request_rate: float | None = None) -> list[Verdict]:
    """Fail the test when spec's P99 latency is more than `threshold` (a fraction) above vanilla's."""
    __tracebackhide__ = True
    return _helper("max_p99_regression", result, threshold, metric=metric, temperature=temperature,
                   concurrency=concurrency, request_rate=request_rate)


def assert_lossless(result: ConfigResult, min_match: float = 1.0, *, temperature: float | None = None) -> list[Verdict]:
    """Fail the test when speculation changed the outputs: at T=0 fewer than `min_match` of them equal
    vanilla's token for token; at T>0 the distribution check shows a difference (or cannot show the
    outputs within [gates] lossless_margin of vanilla's)."""
    __tracebackhide__ = True
    return _helper("lossless", result, min_match, temperature=temperature)
