"""What a test report carries: the test's measured result and verdicts, and its config's failure
(path: reason) if it had one, attached where it was run and read back where reports are merged
(xdist's controller gets reports as plain data)."""

from __future__ import annotations

from typing import Any

from .results import ConfigResult, Verdict

Carried = tuple["ConfigResult | None", "list[Verdict]", "dict[str, str]"]


def to_data(carried: Carried) -> dict[str, Any]:
    result, verdicts, failed = carried
    return {
        "result": result.model_dump(mode="json") if result is not None else None,
        "verdicts": [v.model_dump(mode="json") for v in verdicts],
        "failed_configs": dict(failed),
    }


def from_data(data: dict[str, Any]) -> Carried:
    result = ConfigResult.model_validate(data["result"]) if data["result"] else None
    verdicts = [Verdict.model_validate(v) for v in data["verdicts"]]
    return result, verdicts, dict(data["failed_configs"])
