"""Cross-test state: which configs were loaded and measured, and what every gate said.

Engines and measurements live in one process-wide `SharedMeasurer`, reference-counted by pytest
sessions: a pytester session run in-process inside another borrows the outer session's engines and
measurements instead of starting its own, and the engines stop when the outermost session ends,
on Ctrl-C, or at interpreter exit.
"""

from __future__ import annotations

import atexit
import hashlib
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .baseline import BaselineError, BaselineStore
from .config import ConfigError, GatesSection, SpecConfig, load_config
from .device_lock import device_key, device_lock
from .engines.base import Engine, EngineSpec, EngineStartError
from .engines.pool import DEFAULT_FACTORIES, EngineFactory, EnginePool
from .history import Comparison, HistoryStore, compare_runs
from .measure import MeasurementInterrupted, Measurer, Progress, engine_specs
from .options import DEFAULT_BASELINE_DIR, Options
from .results import ConfigResult, EngineFigures, Verdict
from .vanilla import BaselineCache


class SharedMeasurer:
    def __init__(self) -> None:
        self.measurer: Measurer | None = None
        self._users = 0
        self._results: dict[str, ConfigResult] = {}
        atexit.register(self.close)

    def acquire(self, factories: dict[str, EngineFactory], max_live: int, progress: Progress) -> Measurer:
        if self.measurer is None:
            self.measurer = Measurer(EnginePool(factories, max_live), progress=progress)
        self._users += 1
        return self.measurer

    @contextmanager
    def held(self) -> Iterator[None]:
        """Keep engines and measurements alive across the sessions run inside this block."""
        self._users += 1
        try:
            yield
        finally:
            self.release()

    def stop_engines(self) -> None:
        """Stop the running engines but keep what they measured (they restart when needed)."""
        if self.measurer is not None:
            self.measurer.pool.close_all()

    def forget(self) -> None:
        """Stop the engines and drop every measurement: the next session starts as a new process would."""
        self.stop_engines()
        self._results.clear()
        if self.measurer is not None:
            self.measurer.forget()

    def release(self) -> None:
        self._users -= 1
        if self._users <= 0:
            self.close()

    def close(self) -> None:
        measurer, self.measurer, self._users = self.measurer, None, 0
        self._results.clear()
        if measurer is not None:
            measurer.pool.close_all()

    def result(self, config: SpecConfig, measure: Callable[[], ConfigResult], how: str = "") -> ConfigResult:
        """Identical configs (wherever their files live) measured the same way (`how`: e.g. which
        endpoints) are measured once per process."""
        key = _content_key(config) + how
        if key not in self._results:
            self._results[key] = measure()
        cached = self._results[key]
        renamed = {"config": str(config.path), "config_name": config.name}
        return cached.model_copy(
            update={**renamed, "runs": [run.model_copy(update=renamed) for run in cached.runs]}
        )


def _content_key(config: SpecConfig) -> str:
    text = config.model_dump_json(exclude={"path", "gates"})
    prompts = Path(config.workload.prompts)
    if not config.workload.prompts.startswith("builtin:") and prompts.is_file():
        text += hashlib.sha256(prompts.read_bytes()).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()


SHARED = SharedMeasurer()



class _FreshBaselines:
    """A baseline store seen through the session's options: too old or refreshing means "none"."""

    def __init__(self, store: BaselineStore, max_age_s: float, refresh: bool) -> None:
        self._store, self._max_age_s, self._refresh = store, max_age_s, refresh

    def identity(self, side: EngineSpec) -> dict:
        return self._store.identity(side)

    def load(self, fingerprint: str) -> tuple[EngineFigures, float] | None:
        found = None if self._refresh else self._store.load(fingerprint)
        return found if found is not None and found[1] <= self._max_age_s else None

    def save(self, fingerprint: str, figures: EngineFigures, meta: dict) -> Path:
        return self._store.save(fingerprint, figures, meta)


#: More draft tokens per step than any published method uses with profit (EAGLE trees stop at ~8).
SANE_MAX_K = 16


class LargeK(UserWarning):
    """A num_speculative_tokens so large that it is more likely a typo than a tuning choice."""


@dataclass
class SpecSession:
    """One pytest session's view: its configs, its results (also those reported by xdist workers)."""

    options: Options
    progress: Progress = lambda _: None
    factories: dict[str, EngineFactory] = field(default_factory=lambda: dict(DEFAULT_FACTORIES))
    results: dict[str, ConfigResult] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    _configs: dict[Path, SpecConfig | ConfigError] = field(default_factory=dict)
    _measurer: Measurer | None = None
    started: float = field(default_factory=time.perf_counter)  # the plugin passes pytest's configure time

    def timing(self) -> dict[str, float]:
        """The session's wall time split into engine starts, warmup, measurement and the rest
        (pytest, imports, model conversion, the plugin itself), as seen by this process."""
        total = time.perf_counter() - self.started
        phases = dict(self._measurer.seconds) if self._measurer is not None else {}
        return {"session": total, **phases, "other": total - sum(phases.values())}

    def config_for(self, path: Path) -> SpecConfig:
        path = path.resolve()
        if path not in self._configs:
            try:
                config = load_config(path)
                if self.options.mode:
                    config = config.model_copy(update={"run": config.run.model_copy(update={"mode": self.options.mode})})
                self._configs[path] = config
                k = config.speculative.num_speculative_tokens
                if k > SANE_MAX_K:
                    warnings.warn(LargeK(
                        f"{path}: [speculative] num_speculative_tokens = {k}: beyond {SANE_MAX_K} drafts per step "
                        "the last positions are almost never accepted (per-position acceptance shows where to cut)"
                    ), stacklevel=2)
            except ConfigError as exc:
                self._configs[path] = exc
        loaded = self._configs[path]
        if isinstance(loaded, ConfigError):
            raise loaded
        return loaded

    def measurer(self) -> Measurer:
        if self._measurer is None:
            self._measurer = SHARED.acquire(self.factories, self.options.max_engines, self.progress)
            self._measurer.endpoints = self.options.endpoints
            self._measurer.vanilla.baselines = self._baselines()
            if self.options.endpoints is None:
                from .engines import vllm_info

                self._measurer.defaults = vllm_info.engine_defaults()
        return self._measurer

    def _baselines(self) -> BaselineCache | None:
        if self.options.baseline_dir is None:
            return None
        return _FreshBaselines(
            BaselineStore(self.options.baseline_dir), self.options.baseline_max_age_s, self.options.refresh_baseline
        )

    def history(self) -> HistoryStore:
        return HistoryStore(self.options.history_dir or self.options.baseline_dir or Path(DEFAULT_BASELINE_DIR))

    def save_history(self) -> list[Path]:
        """`--spec-save NAME`: each config's result as NAME.<config>.json."""
        if not self.options.save:
            return []
        return [self.history().save(f"{self.options.save}.{r.config_name}", r) for r in self.results.values()]

    def check_compare_target(self) -> None:
        """`--spec-compare NAME`: the saved run must exist before any engine starts, not at the first gate."""
        name = self.options.compare
        if name and name != "latest":
            history = self.history()
            if not any(history.folder.glob(f"{name}.*.json")):
                raise BaselineError(f"{history.folder}: no saved run named {name!r} (--spec-save {name} stores one)")

    def regressions(self, result: ConfigResult, defaults: GatesSection) -> tuple[str, Comparison]:
        """`--spec-compare`: what fell since the stored run (by default the latest from this machine)."""
        history = self.history()
        if self.options.compare == "latest":
            found = history.latest(f".{result.config_name}", result.environment)
            if found is None:
                raise BaselineError(
                    f"{history.folder}: no stored run for {result.config_name} from this machine "
                    f"({result.environment.device}, vLLM {result.environment.vllm}) to compare with"
                )
            name, previous = found
        else:
            name = f"{self.options.compare}.{result.config_name}"
            previous = history.load(name)
        return name, compare_runs(result, previous, defaults.max_acceptance_drop, defaults.max_speedup_drop)

    def result_for(self, path: Path) -> ConfigResult:
        """The measured comparison for a config, measured on first request."""
        config = self.config_for(path)
        key = str(config.path)
        if key in self.errors:
            raise EngineStartError(self.errors[key])
        if key not in self.results:
            try:
                self.results[key] = self._measure(config)
            except (EngineStartError, ConfigError, BaselineError) as exc:
                self.errors[key] = str(exc)
                raise
            except MeasurementInterrupted as interrupt:  # Ctrl-C or SIGTERM: keep what was finished
                self.errors[key] = "interrupted before its measurement finished"
                if interrupt.partial.runs:
                    self.results[key] = interrupt.partial
                    self.errors[key] += f": the report keeps the {len(interrupt.partial.runs)} of {interrupt.total} conditions it had measured"
                raise
            except KeyboardInterrupt:  # an interrupt before any window: the report says which config it cut short
                self.errors[key] = "interrupted before its measurement finished"
                raise
        return self.results[key]

    def engine_for(self, path: Path, role: str) -> Engine:
        config = self.config_for(path)
        self._validate(config)
        spec, vanilla = engine_specs(config, self.measurer().defaults, self.options.endpoints)
        side = spec if role == "spec" else vanilla
        if side is None:
            raise EngineStartError("no vanilla engine: --spec-endpoint was given without --spec-baseline-endpoint")
        return self.measurer().pool.get(side)

    def _measure(self, config: SpecConfig) -> ConfigResult:
        self._validate(config)
        measurer = self.measurer()
        measurer.progress = self.progress  # the shared measurer reports to the session asking now

        def measure() -> ConfigResult:
            with device_lock(device_key(self.options.endpoint), self.progress):
                return measurer.measure(config)

        result = SHARED.result(config, measure, repr(self.options.endpoints))
        from .engines import vllm_info

        return result.model_copy(update={"environment": vllm_info.environment()})

    def _validate(self, config: SpecConfig) -> None:
        """Engine arguments are checked against the local vLLM, unless it is a remote server's."""
        if self.options.endpoints is None:
            from .engines import vllm_info

            vllm_info.validate_against_vllm(config)

    def record(self, result: ConfigResult | None, verdicts: list[Verdict]) -> None:
        """What a test report carried (from this process or an xdist worker)."""
        if result is not None:
            self.results.setdefault(result.config, result)
        self.verdicts.extend(verdicts)

    def close(self) -> None:
        if self._measurer is not None:
            self._measurer = None
            SHARED.release()
