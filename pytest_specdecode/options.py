"""Command-line option values, parsed by argparse `type=` callables.

A bad value then fails pytest at start as a usage error, instead of surfacing after the engines
have run (a bad `--spec-save` name used to drop a finished session's results). Standard library
only: the plugin module imports this in every pytest run.
"""

from __future__ import annotations

import math
import re
from argparse import ArgumentTypeError
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from .measure import Endpoints

#: Where saved runs (and, with --spec-baseline-dir, baselines) live by default, under the rootdir.
DEFAULT_BASELINE_DIR = ".specdecode"
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
    """The command-line view of a session (see plugin.pytest_addoption)."""

    configs: tuple[Path, ...] = ()
    report: Path | None = None
    mode: str | None = None
    max_engines: int = 1
    endpoint: str | None = None
    baseline_endpoint: str | None = None
    confident: bool = False
    strict: bool = False
    baseline_dir: Path | None = None  # None: vanilla is measured every session (see docs/reading-the-numbers.md)
    history_dir: Path | None = None
    refresh_baseline: bool = False
    baseline_max_age_s: float = 24 * 3600
    save: str | None = None
    compare: str | None = None

    @property
    def endpoints(self) -> Endpoints | None:
        from .measure import Endpoints

        return Endpoints(self.endpoint, self.baseline_endpoint) if self.endpoint else None
