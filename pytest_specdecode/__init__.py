"""pytest-specdecode: gate speculative-decoding configs on real vLLM engines.

Public API: the assertion helpers (which the gate markers use too), the result model that the
`spec_run` fixture yields, and config loading.
"""

from .config import ConfigError, SpecConfig, load_config
from .gates import (
    GateFailure,
    Verdict,
    assert_lossless,
    assert_max_p99_regression,
    assert_min_acceptance,
    assert_min_speedup,
)
from .results import ConfigResult, RunResult

__all__ = [
    "ConfigError",
    "ConfigResult",
    "GateFailure",
    "RunResult",
    "SpecConfig",
    "Verdict",
    "assert_lossless",
    "assert_max_p99_regression",
    "assert_min_acceptance",
    "assert_min_speedup",
    "load_config",
]
