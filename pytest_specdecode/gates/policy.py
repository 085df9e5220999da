"""A gated test's verdicts: its markers judged against its config's measured result, plus
`--spec-compare`'s regression verdict, and which of them fail the test."""

from __future__ import annotations

import warnings

from ..config.spec import GatesSection
from ..results import ConfigResult, Verdict
from .compare import CompareTarget, regression_verdict
from .kinds import Gate, judge


class InconclusiveGate(UserWarning):
    """A verdict whose interval straddles its threshold, with --spec-inconclusive=warn (by default it fails)."""


def verdicts_for(
    test: str, gates: list[Gate], result: ConfigResult, defaults: GatesSection, compare: CompareTarget | None
) -> list[Verdict]:
    """The markers' verdicts, and `--spec-compare`'s when given. Raises GateUsageError or
    BaselineError for a gate that cannot be judged as written."""
    verdicts = [verdict for gate in gates for verdict in judge(gate, result, test)]
    if compare is not None:
        verdicts.append(regression_verdict(compare, test, result, defaults))
    return verdicts


def failures(inconclusive: str, verdicts: list[Verdict]) -> list[str]:
    """The messages of the verdicts that fail the test under the `--spec-inconclusive` policy; an
    inconclusive verdict the policy lets through is warned about, never counted as a pass."""
    failing = {"fail", "inconclusive"} if inconclusive == "fail" else {"fail"}
    for verdict in verdicts:
        if verdict.outcome == "inconclusive" and verdict.outcome not in failing:
            warnings.warn(InconclusiveGate(verdict.message), stacklevel=2)
    return [verdict.message for verdict in verdicts if verdict.outcome in failing]
