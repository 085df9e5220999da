"""pytest-specdecode: gate speculative-decoding configs on real vLLM engines.

Public API: the assertion helpers (which the gate markers use too), the result model that the
`spec_run` fixture yields, and config loading.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pytest-specdecode")
except PackageNotFoundError:  # a source checkout that was never installed
    __version__ = "0+unknown"

from .config import ConfigError, SpecConfig, load_config  # noqa: E402
from .gates import (  # noqa: E402
    GateFailure,
    Verdict,
    assert_lossless,
    assert_max_p99_regression,
    assert_min_acceptance,
    assert_min_speedup,
)
from .results import ConfigResult, RunResult  # noqa: E402

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
