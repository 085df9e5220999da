"""The one result model. The summary table, the JSON report, JUnit properties, pytest-benchmark's
JSON and every gate read these objects; each figure is derived in this package and nowhere else.

From one side's requests and windows (`figures`) to a spec-vs-vanilla run (`run`, its intervals in
`intervals`, what its outputs say of losslessness in `outputs`), a config's runs (`config_result`),
where speculation stops paying (`break_even`), configs and Ks against each other (`ranking`), what
to do about it (`decision`) and what gates made of it (`verdict`). The files
these are written to share `schema`.
"""

from .break_even import BREAK_EVEN_METRIC, LOAD_AXES, SWEEP_NOISE, BreakEven, LoadAxis, break_even
from .config_result import ConfigResult, Environment
from .figures import LATENCY_METRICS, EngineFigures, LatencyMetric, RequestSample, SpecCounters, Window
from .outputs import LOSSLESS_STATISTIC, Divergence, LosslessCheck
from .ranking import Ranking, rank
from .run import BaselineInfo, Condition, RunResult, RunWarning, SpeedupMetric
from .verdict import Verdict

__all__ = [
    "BREAK_EVEN_METRIC", "LATENCY_METRICS", "LOAD_AXES", "SWEEP_NOISE",
    "BaselineInfo", "BreakEven", "Condition", "ConfigResult", "Divergence", "EngineFigures", "Environment", "LatencyMetric", "LoadAxis",
    "LOSSLESS_STATISTIC", "LosslessCheck", "RequestSample", "RunResult", "RunWarning", "SpecCounters", "SpeedupMetric", "Verdict", "Window",
    "Ranking", "break_even", "rank",
]
