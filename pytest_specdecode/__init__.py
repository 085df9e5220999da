"""pytest-specdecode: gate speculative-decoding configs on real vLLM engines.

Public API: the assertion helpers (which the gate markers use too), the result model that the
`spec_run` fixture yields, and config loading. Loaded on first use (PEP 562): the plugin module is
imported in every pytest run, and importing this package must not pull pydantic or numpy then.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "ConfigError": "config.spec",
    "SpecConfig": "config.spec",
    "load_config": "config.spec",
    "GateFailure": "gates.assertions",
    "assert_lossless": "gates.assertions",
    "assert_max_p99_regression": "gates.assertions",
    "assert_min_acceptance": "gates.assertions",
    "assert_min_speedup": "gates.assertions",
    "ConfigResult": "results",
    "RunResult": "results",
    "Verdict": "results",
    "Sampling": "engines.base",
    "InconclusiveGate": "gates.policy",
}

__all__ = sorted([*_EXPORTS, "__version__"])


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("pytest-specdecode")
        except PackageNotFoundError:  # a source checkout that was never installed
            return "0+unknown"
    if name in _EXPORTS:
        return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
