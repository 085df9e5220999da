"""The command-line options: declared, parsed by argparse `type=` callables, gathered in `Options`.

A bad value then fails pytest at start as a usage error, instead of surfacing after the engines
have run (a bad `--spec-save` name used to drop a finished session's results). Standard library
and pytest only: the plugin module imports this in every pytest run.
"""

from __future__ import annotations

import math
import re
from argparse import ArgumentTypeError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

if TYPE_CHECKING:
    from .gates.compare import CompareTarget
    from .gates.history import HistoryStore
    from .measure.measurer import Endpoints

#: Where saved runs (and, with --spec-baseline-dir, baselines) live by default, under the rootdir.
DEFAULT_BASELINE_DIR = ".specdecode"
#: under DEFAULT_BASELINE_DIR: where our servers' logs are kept by default, so a slow or odd start can be read afterwards
SERVER_LOGS = "logs"
#: What an inconclusive verdict does to its test (--spec-inconclusive), the default first.
INCONCLUSIVE_POLICIES = ("fail", "warn")
#: The names `history.HistoryStore` accepts for a saved run (a test keeps the two equal).
RUN_NAME = re.compile(r"[A-Za-z0-9._-]+")


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise ArgumentTypeError(f"must be an integer >= 1, got {value!r}")
    return number


def non_negative_hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        hours = math.nan
    if not hours >= 0:
        raise ArgumentTypeError(f"must be a number of hours >= 0, got {value!r}")
    return hours


def run_name(value: str) -> str:
    """A saved run's name, which becomes a file name in the history folder."""
    if not RUN_NAME.fullmatch(value):
        raise ArgumentTypeError(f"run name may hold only letters, digits, '.', '_' and '-', got {value!r}")
    return value


def endpoint_url(value: str) -> str:
    """A server's root URL: the engine appends `/v1/completions`, `/metrics` and `/health` itself."""
    parts = urlsplit(value)
    try:
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or parts.query or parts.fragment:
        raise ArgumentTypeError(f"must be an http(s)://host[:port] URL, got {value!r}")
    if parts.path not in ("", "/"):
        raise ArgumentTypeError(f"must be the server's root URL, without a path such as /v1, got {value!r}")
    return value


def metrics_url(value: str) -> str:
    """One `/metrics` page of a replica (or a data-parallel server): a full http(s) URL with its path."""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ArgumentTypeError(f"must be an http(s)://host[:port]/metrics URL, got {value!r}")
    return value


def config_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise ArgumentTypeError(f"no such config file: {value!r}")
    return path


def report_file(value: str) -> Path:
    """Checked now: the report is written when the session ends, after every engine has run."""
    path = Path(value)
    if path.is_dir():
        raise ArgumentTypeError(f"{value!r} is a directory, not a file to write the report to")
    return path


def output_dir(value: str) -> Path:
    path = Path(value)
    if path.exists() and not path.is_dir():
        raise ArgumentTypeError(f"{value!r} is a file, not a directory")
    return path


@dataclass(frozen=True)
class Options:
    """The command-line view of a session (see `add_options`)."""

    configs: tuple[Path, ...] = ()
    report: Path | None = None
    mode: str | None = None
    log_dir: str | None = None  # --spec-log-dir (default <rootdir>/.specdecode/logs): where our engines' logs are kept
    max_engines: int | None = None  # None: as many as the configs' memory settings allow (`engines_that_fit`)
    endpoint: str | None = None
    baseline_endpoint: str | None = None
    metrics_urls: tuple[str, ...] = ()
    baseline_metrics_urls: tuple[str, ...] = ()
    inconclusive: str = "fail"
    baseline_dir: Path | None = None  # None: vanilla is measured every session (see docs/reading-the-numbers.md)
    history_dir: Path | None = None
    refresh_baseline: bool = False
    baseline_max_age_s: float = 24 * 3600
    save: str | None = None
    compare: str | None = None

    @property
    def history(self) -> HistoryStore:
        """Where --spec-save stores runs and --spec-compare finds them."""
        from .gates.history import HistoryStore

        return HistoryStore(self.history_dir or self.baseline_dir or Path(DEFAULT_BASELINE_DIR))

    @property
    def compare_target(self) -> CompareTarget | None:
        from .gates.compare import CompareTarget

        return CompareTarget(self.history, self.compare) if self.compare else None

    @property
    def endpoints(self) -> Endpoints | None:
        from .measure.measurer import Endpoints

        if not self.endpoint:
            return None
        return Endpoints(self.endpoint, self.baseline_endpoint, self.metrics_urls, self.baseline_metrics_urls)


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("specdecode", "speculative-decoding gates (pytest-specdecode)")
    group.addoption("--spec-config", action="append", default=[], metavar="TOML", type=config_file,
                    help="spec-config file to measure; repeat for several (each is its own parametrization)")
    group.addoption("--spec-report", metavar="PATH", type=report_file, default=None,
                    help="write every measured run and gate verdict as JSON to PATH")
    group.addoption("--spec-mode", choices=("offline", "server"), default=None,
                    help="override every config's [run] mode")
    group.addoption("--spec-max-engines", type=positive_int, default=None, metavar="N",
                    help="engines kept running at once (default: 2 when every config sets gpu_memory_utilization "
                         "<= 0.45, so spec and vanilla both stay up and their windows interleave ABBA; else 1)")
    group.addoption("--spec-log-dir", metavar="DIR", default=None,
                    help="keep the log of every engine the plugin starts here (default: <rootdir>/.specdecode/logs, "
                         "one file per engine, replaced by the next session's start of that engine)")
    group.addoption("--spec-endpoint", metavar="URL", type=endpoint_url, default=None,
                    help="measure this running OpenAI-compatible vLLM server as the speculative side; starts nothing")
    group.addoption("--spec-baseline-endpoint", metavar="URL", type=endpoint_url, default=None,
                    help="with --spec-endpoint: the running vanilla server to compare against")
    group.addoption("--spec-metrics-url", action="append", default=[], metavar="URL", type=metrics_url,
                    help="with --spec-endpoint behind a gateway: a /metrics page of one spec replica; repeat for "
                         "each (counters are summed, each replica checked; default: the endpoint's own /metrics)")
    group.addoption("--spec-baseline-metrics-url", action="append", default=[], metavar="URL", type=metrics_url,
                    help="the same for the --spec-baseline-endpoint side")
    group.addoption("--spec-inconclusive", choices=INCONCLUSIVE_POLICIES, default="fail",
                    help="what a gate that could not be resolved either way does to its test: fail (default: a "
                         "claim not shown is not passed) or warn (the test passes with an InconclusiveGate "
                         "warning; the verdict stays 'inconclusive' in every report)")
    group.addoption("--spec-baseline-dir", metavar="DIR", type=output_dir, default=None,
                    help="reuse stored vanilla baselines from DIR (and keep saved runs there); without it vanilla "
                         "is measured every session, in windows paired with spec's (saved runs: <rootdir>/.specdecode)")
    group.addoption("--spec-refresh-baseline", action="store_true",
                    help="re-measure vanilla even when a matching stored baseline exists, and store the new one")
    group.addoption("--spec-baseline-max-age", type=non_negative_hours, default=24.0, metavar="HOURS",
                    help="with --spec-baseline-dir: a stored baseline older than this is not reused (default 24)")
    group.addoption("--spec-plots", metavar="DIR", type=output_dir, default=None,
                    help="write PNGs (per-position acceptance, speedup and P99 vs load, per-request acceptance "
                         "histogram) to DIR; needs matplotlib: pip install 'pytest-specdecode[plots]'")
    group.addoption("--spec-save", metavar="NAME", type=run_name, default=None,
                    help="store this session's results as NAME (one file per config) for --spec-compare")
    group.addoption("--spec-compare", metavar="NAME", type=run_name, nargs="?", const="latest", default=None,
                    help="fail gated tests whose acceptance or speedup fell since the stored run NAME "
                         "(default: the latest); limits from [gates] max_acceptance_drop / max_speedup_drop")


def options_from(config: pytest.Config) -> Options:
    """The parsed values as one object; options that only make sense together are checked here."""
    options = Options(
        configs=tuple(config.getoption("--spec-config")),
        report=config.getoption("--spec-report"),
        mode=config.getoption("--spec-mode"),
        max_engines=config.getoption("--spec-max-engines"),
        log_dir=config.getoption("--spec-log-dir") or str(config.rootpath / DEFAULT_BASELINE_DIR / SERVER_LOGS),
        endpoint=config.getoption("--spec-endpoint"),
        baseline_endpoint=config.getoption("--spec-baseline-endpoint"),
        metrics_urls=tuple(config.getoption("--spec-metrics-url")),
        baseline_metrics_urls=tuple(config.getoption("--spec-baseline-metrics-url")),
        inconclusive=config.getoption("--spec-inconclusive"),
        baseline_dir=config.getoption("--spec-baseline-dir"),
        history_dir=config.getoption("--spec-baseline-dir") or config.rootpath / DEFAULT_BASELINE_DIR,
        refresh_baseline=config.getoption("--spec-refresh-baseline"),
        baseline_max_age_s=config.getoption("--spec-baseline-max-age") * 3600,
        save=config.getoption("--spec-save"),
        compare=config.getoption("--spec-compare"),
    )
    if options.baseline_endpoint and not options.endpoint:
        raise pytest.UsageError("--spec-baseline-endpoint needs --spec-endpoint")
    if options.metrics_urls and not options.endpoint:
        raise pytest.UsageError("--spec-metrics-url needs --spec-endpoint (engines the plugin starts are read directly)")
    if options.baseline_metrics_urls and not options.baseline_endpoint:
        raise pytest.UsageError("--spec-baseline-metrics-url needs --spec-baseline-endpoint")
    return options
