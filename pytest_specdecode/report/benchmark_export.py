"""Measured runs as pytest-benchmark entries, so `--benchmark-json`, `--benchmark-autosave` and
`pytest-benchmark compare` work on them.

Each (run, side) becomes one benchmark whose timings are the per-request end-to-end latencies and
whose `extra_info` holds the run's speculative figures.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from ..results import ConfigResult

GROUP = "specdecode"


def benchmark_entries(results: list[ConfigResult]) -> list[Any]:
    from pytest_benchmark.stats import Metadata

    entries = []
    for result in results:
        for run in result.runs:
            for side, figures in (("spec", run.spec), ("vanilla", run.vanilla)):
                if not figures.samples:
                    continue
                name = f"specdecode[{run.label.replace(' ', '-')}-{side}]"
                extra = {
                    "side": side,
                    "tokens_per_s": figures.tokens_per_s,
                    "acceptance_rate": run.acceptance_rate,
                    "mean_acceptance_length": run.mean_acceptance_length,
                    "speedup": run.speedup,
                    "valid": run.valid,
                }
                fixture = SimpleNamespace(
                    name=name, fullname=f"{result.config}::{name}", group=GROUP, param=None, params=None,
                    extra_info=extra, cprofile_stats=None, has_error=False,
                )
                entry = Metadata(fixture, iterations=1, options={"source": figures.source})
                for sample in figures.samples:
                    entry.update(sample.e2e_s)
                entries.append(entry)
    return entries


def add_to_benchmark_session(config: Any, results: list[ConfigResult]) -> None:
    """Append our entries to pytest-benchmark's session, if that plugin is active and saving."""
    session = getattr(config, "_benchmarksession", None)
    if session is None or not (session.json or session.save or session.autosave):
        return
    session.benchmarks.extend(benchmark_entries(results))
