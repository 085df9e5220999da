"""One pytest session's specdecode state, registered as a plugin by `plugin.pytest_configure`: its
methods are the hooks that need that state (reports from this process or xdist's workers, the
session's end, the summary).

It is registered in every pytest run, so at module level it imports only the standard library
and pytest; configs, engines and reports load when a test first needs them. Engines come from the
measurer a `pytest_specdecode_measurer` hook returns (see hookspec.py), or from one the session
makes and stops when it ends.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .options import Options

if TYPE_CHECKING:
    from .config.spec import SpecConfig
    from .engines.base import Engine
    from .gates.kinds import Gate
    from .measure.measurer import Measurer
    from .results import ConfigResult, Verdict

#: The attribute on a TestReport that carries the test's result and verdicts (see transport.py).
REPORT_ATTR = "specdecode"

#: More draft tokens per step than any published method uses with profit (EAGLE trees stop at ~8).
SANE_MAX_K = 16


class LargeK(UserWarning):
    """A num_speculative_tokens so large that it is more likely a typo than a tuning choice."""


class SpecSession:
    """Configs loaded, results measured (here or by xdist workers), verdicts and failures."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config = config
        self.options = options
        self.started = time.perf_counter()
        self.results: dict[str, ConfigResult] = {}
        self.verdicts: list[Verdict] = []
        self.errors: dict[str, str] = {}
        self._configs: dict[Path, Any] = {}  # a SpecConfig, or the ConfigError loading it raised
        self._measurer: Measurer | None = None
        self._owns_measurer = False
        self._seconds_before: dict[str, float] = {}
        #: what this session spends outside its measurer: checking configs against vLLM (the first check
        #: imports vLLM: 5-25 s, which a bare script pays inside `vllm.LLM`) and stopping engines at the end
        self._own_seconds = {"config_check": 0.0, "engine_stop": 0.0}
        #: every gate marker collected, per config path: what sequential sampling measures until resolved
        self.gates_by_config: dict[Path, list[Gate]] = {}

    def progress(self, line: str) -> None:
        """Written past pytest's capture: engines start and measure inside a test's setup, where a
        captured line would show only after a half-hour gate had finished (and only if it failed).
        Without a terminal reporter (`-p no:terminal`) the run was asked to be quiet: nothing is written."""
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        with capture.global_and_fixture_disabled() if capture is not None else nullcontext():
            reporter.write_line(f"[specdecode +{time.perf_counter() - self.started:.1f}s] {line}")
            reporter.flush()  # a CI log is a pipe, block-buffered: without this the line shows at the end

    def timing(self) -> dict[str, float]:
        """The session's wall time split into checking configs against vLLM (importing it), engine starts
        and stops, warmup, measurement, scoring and the rest (pytest, model conversion, the plugin
        itself), as seen by this process."""
        total = time.perf_counter() - self.started
        phases = {}
        if self._measurer is not None:  # a hook's measurer counts every session it served: this one's share
            phases = {phase: s - self._seconds_before.get(phase, 0.0) for phase, s in self._measurer.seconds.items()}
        for phase, seconds in self._own_seconds.items():
            phases[phase] = phases.get(phase, 0.0) + seconds
        return {"session": total, **phases, "other": total - sum(phases.values())}

    def config_for(self, path: Path) -> SpecConfig:
        """The validated config at `path`, loaded once (a broken one raises its ConfigError each time,
        and is a failed config of the session from its first load: the reports list it with its reason)."""
        from .config.spec import ConfigError, load_config

        path = path.resolve()
        if path not in self._configs:
            try:
                self._configs[path] = self._load(load_config(path))
            except ConfigError as exc:
                self._configs[path] = exc
                self.errors[str(path)] = str(exc).removeprefix(f"{path}: ")  # keyed by the path: said once
        loaded = self._configs[path]
        if isinstance(loaded, ConfigError):
            raise loaded
        return loaded

    def _load(self, config: SpecConfig) -> SpecConfig:
        if self.options.mode:
            config = config.model_copy(update={"run": config.run.model_copy(update={"mode": self.options.mode})})
        k = max(config.speculative.k_values)
        if k > SANE_MAX_K:
            warnings.warn(LargeK(
                f"{config.path}: [speculative] num_speculative_tokens = {k}: beyond {SANE_MAX_K} drafts per step "
                "the last positions are almost never accepted (per-position acceptance shows where to cut)"
            ), stacklevel=3)
        return config

    def measurer(self) -> Measurer:
        """A hook's measurer, else one of the session's own, set up for this session's options."""
        if self._measurer is None:
            self._place_worker()
            measurer = self.config.hook.pytest_specdecode_measurer(config=self.config)
            self._owns_measurer = measurer is None
            if measurer is None:
                from .engines.pool import DEFAULT_FACTORIES, EnginePool, engines_that_fit
                from .measure.measurer import Measurer

                loaded = [config for config in self._configs.values() if not isinstance(config, Exception)]
                max_live = self.options.max_engines or engines_that_fit(
                    config.model.gpu_memory_utilization for config in loaded)
                measurer = Measurer(EnginePool(dict(DEFAULT_FACTORIES), max_live))
            measurer.progress = self.progress
            measurer.endpoints = self.options.endpoints
            measurer.log_dir = self.options.log_dir
            measurer.vanilla.baselines = self._baselines()
            if self.options.endpoints is None:
                from .engines import vllm_info

                measurer.defaults = vllm_info.engine_defaults()
            self._seconds_before = dict(measurer.seconds)
            self._measurer = measurer
        return self._measurer

    def _place_worker(self) -> None:
        """An xdist worker's engines on GPUs of their own (`engines/placement.py`), set before its
        first engine starts: every worker takes a block as large as the largest config collected needs,
        so a TP=2 config gets two GPUs and no two workers share one (their device locks then differ)."""
        from .engines.placement import VISIBLE_DEVICES_ENV, gpus_needed, worker_visible_devices

        loaded = [config for config in self._configs.values() if not isinstance(config, Exception)]
        if self.options.endpoints is not None or not loaded:
            return
        try:
            visible = worker_visible_devices(max(gpus_needed(**config.parallel_sizes) for config in loaded))
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
        if visible is not None:
            os.environ[VISIBLE_DEVICES_ENV] = visible
            self.progress(f"this worker's engines run on GPU {visible} ({VISIBLE_DEVICES_ENV})")

    def _baselines(self) -> Any:
        if self.options.baseline_dir is None:
            return None
        from .measure.baseline import BaselineStore
        from .measure.vanilla import FreshBaselines

        return FreshBaselines(
            BaselineStore(self.options.baseline_dir), self.options.baseline_max_age_s, self.options.refresh_baseline
        )

    def result_for(self, path: Path) -> ConfigResult:
        """The measured comparison for a config, measured on first request; a failure is remembered."""
        from .measure.baseline import BaselineError
        from .config.spec import ConfigError
        from .engines.base import EngineStartError
        from .measure.measurer import MeasurementInterrupted

        config = self.config_for(path)
        key = str(config.path)
        if key in self.errors:
            raise EngineStartError(self.errors[key])
        if key not in self.results:
            try:
                self.results[key] = self._measure(config)
            except (EngineStartError, ConfigError, BaselineError) as exc:
                self.errors[key] = str(exc).removeprefix(f"{key}: ")  # a ConfigError names the file too
                raise
            except MeasurementInterrupted as interrupt:  # Ctrl-C or SIGTERM: keep what was finished
                self.errors[key] = "interrupted before its measurement finished"
                if interrupt.partial.runs:
                    self.results[key] = interrupt.partial
                    kept = f"{len(interrupt.partial.runs)} of {interrupt.total}"
                    self.errors[key] += f": the report keeps the {kept} conditions it had measured"
                raise
            except KeyboardInterrupt:  # an interrupt before any window: the report says which config it cut short
                self.errors[key] = "interrupted before its measurement finished"
                raise
        return self.results[key]

    def engine_for(self, path: Path, role: str) -> Engine:
        from .engines.base import EngineStartError
        from .measure.measurer import engine_specs

        config = self.config_for(path)
        self._validate(config)
        spec, vanilla = engine_specs(config, self.measurer().defaults, self.options.endpoints, self.options.log_dir)
        side = spec if role == "spec" else vanilla
        if side is None:
            raise EngineStartError("no vanilla engine: --spec-endpoint was given without --spec-baseline-endpoint")
        return self.measurer().pool.get(side)

    def _measure(self, config: SpecConfig) -> ConfigResult:
        from .measure.device_lock import device_key, device_lock
        from .engines import vllm_info

        self._validate(config)
        measurer = self.measurer()
        with device_lock(device_key(self.options.endpoint), self.progress):
            result = measurer.measure(config, self.gates_by_config.get(config.path.resolve(), []))
        return result.model_copy(update={"environment": vllm_info.environment()})

    def _validate(self, config: SpecConfig) -> None:
        """Engine arguments are checked against the local vLLM, unless it is a remote server's."""
        if self.options.endpoints is None:
            started = time.perf_counter()
            try:
                from .engines import vllm_info

                vllm_info.validate_against_vllm(config)
            finally:
                self._own_seconds["config_check"] += time.perf_counter() - started

    def close(self) -> None:
        """Stop the engines this session started; a hook's measurer is its owner's to stop."""
        if self._measurer is not None and self._owns_measurer:
            started = time.perf_counter()
            self._measurer.pool.close_all()
            self._own_seconds["engine_stop"] += time.perf_counter() - started

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """What a test report carried (from this process or an xdist worker)."""
        carried = getattr(report, REPORT_ATTR, None)
        if carried is None:
            return
        result, verdicts, failed = carried
        if result is not None:
            self.results.setdefault(result.config, result)
        self.verdicts.extend(verdicts)
        for path, reason in failed.items():
            self.errors.setdefault(path, reason)

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> Iterator[None]:
        """Reports are written by the controller only, also after failures or Ctrl-C, ahead of
        pytest-benchmark's own wrapper (which saves its JSON before any plain hook runs) and of the
        terminal summary (so vLLM's shutdown lines come before it). A session that measured nothing
        writes its --spec-report all the same (saying so), and nothing else. A SIGTERM or Ctrl-C
        from here on is noted, not raised, until the reports and the summary are out; the session
        then exits as interrupted."""
        from . import interrupts

        with interrupts.deferred() as received:
            self.close()
            used = self._configs or self.results or self.errors
            if not hasattr(session.config, "workerinput") and (used or self.options.report is not None):
                self._write_artifacts()
            result = yield
        if received:
            session.exitstatus = pytest.ExitCode.INTERRUPTED
            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"[specdecode] {' and '.join(received)} while the reports were written: "
                                    "they are complete; exiting as interrupted", red=True)
        return result

    def _write_artifacts(self) -> None:
        from .report.artifacts import write_artifacts

        results = list(self.results.values())
        if results:
            from .report.benchmark_export import add_to_benchmark_session

            add_to_benchmark_session(self.config, results)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        write_artifacts(
            results, self.verdicts, self.errors, self.timing(), report=self.options.report,
            history=self.options.history, save_as=self.options.save, plots_dir=self.config.getoption("--spec-plots"),
            complain=lambda problem: reporter.write_line(f"[specdecode] {problem}", red=True) if reporter else None,
        )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not (self.results or self.errors):
            return
        from .report import failure_lines, terminal_lines

        lines = terminal_lines(list(self.results.values()), self.verdicts)
        lines += [f"failed {line}" for line in failure_lines(self.errors)]
        if lines:
            terminalreporter.write_sep("=", "speculative decoding")
            for line in lines:
                terminalreporter.write_line(line)

    def pytest_unconfigure(self) -> None:
        self.close()
