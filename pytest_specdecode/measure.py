"""Config -> engines -> workload -> one `ConfigResult`: the measured comparison.

Order matters for honesty and for memory: each engine is warmed up first (excluded from every
figure), its spec counters are read before and after the measured window (so only the window
counts), and each side measures all temperatures while it is the engine in hand, so a pool of one
live engine needs only one start per side.
"""

from __future__ import annotations

import hashlib
import json
import weakref
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Protocol
from dataclasses import asdict, dataclass, replace

from .config import SpecConfig
from .engines.base import Engine, EngineSpec, EngineStartError, Sampling
from .engines.pool import EnginePool
from .load import LoadLevel, levels
from .models import resolve_model
from .results import BaselineInfo, ConfigResult, EngineFigures, RequestSample, RunResult, SpecCounters
from .workload import WARMUP_PROMPT, Prompt, load_prompts, render

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Endpoints:
    """Already running servers to measure instead of starting engines (`--spec-endpoint`)."""

    spec: str
    vanilla: str | None = None


def engine_specs(config: SpecConfig, defaults: dict, endpoints: Endpoints | None = None) -> tuple[EngineSpec, EngineSpec | None]:
    """The speculative engine and its vanilla twin (same target, same engine arguments).

    Against an endpoint without a vanilla endpoint there is no twin to start: None.
    """
    engine_args = {**defaults, **config.model.engine_args()}
    speculative = config.speculative.vllm_dict()
    if endpoints is not None:
        # the tokenizer that renders prompts still loads here, so builtin: names resolve as usual
        spec = EngineSpec(resolve_model(config.model.name), engine_args, speculative, "endpoint", endpoints.spec)
        return spec, spec.vanilla_twin(endpoints.vanilla) if endpoints.vanilla else None
    if "model" in speculative:
        speculative["model"] = resolve_model(speculative["model"])
    spec = EngineSpec(
        resolve_model(config.model.name), engine_args, speculative, config.run.mode,
        start_timeout_s=config.run.server_start_timeout_s,
    )
    return spec, spec.vanilla_twin()


@dataclass(frozen=True)
class Cell:
    """One run's conditions: a temperature and, in server mode, a load level."""

    sampling: Sampling
    load: LoadLevel | None = None

    @property
    def label(self) -> str:
        return f"T={self.sampling.temperature:g}" + (f" {self.load.label}" if self.load else "")


class Measurer:
    """Measures configs on a pool's engines; a vanilla side seen before in this process is reused,
    and one stored in `baselines` (same fingerprint) is reused without starting its engine."""

    def __init__(
        self,
        pool: EnginePool,
        defaults: dict | None = None,
        progress: Progress = lambda _: None,
        baselines: BaselineCache | None = None,
    ) -> None:
        self.pool = pool
        self.defaults = defaults or {}
        self.progress = progress
        self.baselines = baselines
        self.endpoints: Endpoints | None = None
        self._vanilla_memo: dict[str, EngineFigures] = {}
        self._warmed: weakref.WeakSet = weakref.WeakSet()
        #: where this process's time went, for the report's session breakdown
        self.seconds: dict[str, float] = {"engine_start": 0.0, "warmup": 0.0, "measurement": 0.0}

    def forget(self) -> None:
        """Drop vanilla figures measured in this process, so the next measurement looks further."""
        self._vanilla_memo.clear()

    def measure(self, config: SpecConfig) -> ConfigResult:
        starts_before = len(self.pool.starts)
        spec_side, vanilla_side = engine_specs(config, self.defaults, self.endpoints)
        prompts = load_prompts(config.workload)
        cells = _cells(config)
        rendered = _Rendered(prompts, config.workload.chat_template)
        repeats = config.run.repeats
        vanilla: dict[Cell, EngineFigures] = {}
        spec: dict[Cell, list[tuple[EngineFigures, SpecCounters]]] = {cell: [] for cell in cells}
        baseline_of: dict[Cell, BaselineInfo] = {}
        for cell in cells:
            fingerprint = self._vanilla_fingerprint(vanilla_side or spec_side.vanilla_twin(), prompts, config, cell)
            cached = self._known_vanilla(fingerprint)
            if cached is not None:
                vanilla[cell], baseline_of[cell] = cached
                continue
            if vanilla_side is None:
                raise EngineStartError(
                    f"no vanilla figures for {config.name} {cell.label}: give --spec-baseline-endpoint, "
                    "or measure a baseline once with a vanilla engine (--spec-baseline-dir)"
                )
            vanilla_runs = []
            for repeat in range(repeats):
                # interleaved (A B A B) when both engines fit, so drift hits both sides alike
                vanilla_runs.append(self._measure_side(vanilla_side, config, rendered, cell, repeat)[0])
                if self.pool.max_live >= 2:
                    spec[cell].append(self._measure_side(spec_side, config, rendered, cell, repeat))
            vanilla[cell] = _combine(vanilla_runs)
            self._vanilla_memo[fingerprint] = vanilla[cell]
            baseline_of[cell] = BaselineInfo(source="measured", fingerprint=fingerprint, age_s=0.0)
            if self.baselines is not None:
                self.baselines.save(fingerprint, vanilla[cell], {"config": str(config.path), "cell": cell.label})
        runs = []
        for cell in cells:
            for repeat in range(len(spec[cell]), repeats):
                spec[cell].append(self._measure_side(spec_side, config, rendered, cell, repeat))
            figures = _combine([f for f, _ in spec[cell]])
            counters = sum((c for _, c in spec[cell]), SpecCounters())
            runs.append(self._run_result(config, cell, counters, figures, vanilla[cell], baseline_of[cell]))
        keys = {spec_side.key, vanilla_side.key if vanilla_side else None}
        return ConfigResult(
            config=str(config.path),
            config_name=config.name,
            runs=runs,
            # the starts this measurement caused: an engine shared with an earlier config is not billed twice
            engine_start_s={role: seconds for key, role, seconds in self.pool.starts[starts_before:] if key in keys},
        )

    def _known_vanilla(self, fingerprint: str) -> tuple[EngineFigures, BaselineInfo] | None:
        if fingerprint in self._vanilla_memo:
            return self._vanilla_memo[fingerprint], BaselineInfo(source="measured", fingerprint=fingerprint, age_s=0.0)
        stored = self.baselines.load(fingerprint) if self.baselines is not None else None
        if stored is None:
            return None
        figures, age_s = stored
        figures = figures.model_copy(update={"source": "cached"})
        return figures, BaselineInfo(source="cached", fingerprint=fingerprint, age_s=age_s)

    def _vanilla_fingerprint(self, side: EngineSpec, prompts: list[Prompt], config: SpecConfig, cell: Cell) -> str:
        """Everything that shapes vanilla figures; with a baseline store, the machine and vLLM too."""
        parts = {
            # not the URL: a vanilla server measured at one address is the same baseline at another
            "engine": replace(side, url=None).key,
            "prompts": [asdict(p) for p in prompts],
            "chat_template": config.workload.chat_template,
            "sampling": asdict(cell.sampling),
            "load": asdict(cell.load) if cell.load else None,
            "repeats": config.run.repeats,
            "warmup": config.run.warmup,
        }
        if self.baselines is not None:
            parts.update(self.baselines.identity(side))
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def _engine(self, side: EngineSpec, config: SpecConfig) -> Engine:
        if not self.pool.is_live(side):
            self.progress(f"{config.name}: starting {side.role} engine ({side.model})")
        with self._timed("engine_start"):
            engine = self.pool.get(side)
        if engine not in self._warmed and config.run.warmup:
            warmup = render([Prompt(text=WARMUP_PROMPT)] * config.run.warmup, engine.tokenizer(), config.workload.chat_template)
            with self._timed("warmup"):
                engine.generate(warmup, Sampling(0.0, config.workload.max_tokens, seed=config.workload.seed))
            self._warmed.add(engine)
        return engine

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started

    def _measure_side(
        self, side: EngineSpec, config: SpecConfig, rendered: _Rendered, cell: Cell, repeat: int
    ) -> tuple[EngineFigures, SpecCounters]:
        engine = self._engine(side, config)
        prompts = rendered.for_engine(engine)
        suffix = f", repeat {repeat + 1}/{config.run.repeats}" if config.run.repeats > 1 else ""
        self.progress(f"{config.name}: {side.role} {cell.label} ({len(prompts)} prompts{suffix})")
        with self._timed("measurement"):
            before = engine.spec_counters()
            samples, duration = engine.generate(prompts, cell.sampling, cell.load)
            counters = engine.spec_counters().minus(before)
        samples = [sample.model_copy(update={"repeat": repeat}) for sample in samples]
        return EngineFigures(samples=samples, duration_s=duration, kv_cache_tokens=engine.kv_cache_tokens()), counters

    @staticmethod
    def _run_result(
        config: SpecConfig,
        cell: Cell,
        counters: SpecCounters,
        spec: EngineFigures,
        vanilla: EngineFigures,
        baseline: BaselineInfo,
    ) -> RunResult:
        sampling = cell.sampling
        return RunResult(
            config=str(config.path),
            config_name=config.name,
            mode=config.run.mode,
            model=config.model.name,
            method=config.speculative.label,
            num_speculative_tokens=config.speculative.num_speculative_tokens,
            workload=config.workload.prompts if config.workload.prompts.startswith("builtin:") else config.workload.prompts.rsplit("/", 1)[-1],
            temperature=sampling.temperature,
            concurrency=cell.load.concurrency if cell.load else None,
            request_rate=cell.load.request_rate if cell.load else None,
            counters=counters,
            spec=spec,
            vanilla=vanilla,
            outputs_match=_outputs_match(spec.samples, vanilla.samples) if sampling.temperature == 0 else None,
            invalid_reason=invalid_reason(counters, spec, vanilla, config.run.min_valid_output_tokens),
            baseline=baseline,
        )


class BaselineCache(Protocol):
    """Stored vanilla figures keyed by fingerprint (see baseline.BaselineStore)."""

    def identity(self, side: EngineSpec) -> dict: ...

    def load(self, fingerprint: str) -> tuple[EngineFigures, float] | None: ...

    def save(self, fingerprint: str, figures: EngineFigures, meta: dict) -> object: ...


class _Rendered:
    """The prompts as text, rendered once with the first engine's tokenizer (all share the target's)."""

    def __init__(self, prompts: list[Prompt], chat_template: bool) -> None:
        self._prompts, self._chat_template = prompts, chat_template
        self._text: list[str] | None = None

    def for_engine(self, engine: Engine) -> list[str]:
        if self._text is None:
            self._text = render(self._prompts, engine.tokenizer(), self._chat_template)
        return self._text


def _cells(config: SpecConfig) -> list[Cell]:
    workload = config.workload
    samplings = [
        Sampling(t, workload.max_tokens, workload.top_p, workload.seed, workload.ignore_eos) for t in workload.temperatures
    ]
    if config.run.mode == "offline":
        return [Cell(sampling) for sampling in samplings]
    loads = levels(workload.concurrency, workload.request_rate, workload.burstiness)
    return [Cell(sampling, load) for sampling in samplings for load in loads]


def _combine(repeats: list[EngineFigures]) -> EngineFigures:
    """R repeats as one side: all samples (tagged with their repeat), the windows' total time."""
    if len(repeats) == 1:
        return repeats[0]
    return EngineFigures(
        samples=[sample for figures in repeats for sample in figures.samples],
        duration_s=sum(figures.duration_s for figures in repeats),
        kv_cache_tokens=repeats[-1].kv_cache_tokens,
    )


def _outputs_match(spec: list[RequestSample], vanilla: list[RequestSample]) -> float | None:
    if not spec or len(spec) != len(vanilla):
        return None
    same = sum(a.output_token_ids == b.output_token_ids for a, b in zip(spec, vanilla))
    return same / len(spec)


def invalid_reason(
    counters: SpecCounters, spec: EngineFigures, vanilla: EngineFigures, min_mean_output_tokens: float
) -> str | None:
    """Why a run's figures cannot mean anything, or None when they can."""
    if counters.num_drafts == 0:
        return "no drafts were proposed in the measured window (speculation never ran)"
    for name, side in (("speculative", spec), ("vanilla", vanilla)):
        mean_tokens = side.output_tokens / max(side.num_requests, 1)
        if mean_tokens < min_mean_output_tokens:
            return (
                f"{name} outputs average {mean_tokens:.1f} tokens (< {min_mean_output_tokens:g}): "
                "check the chat template and max_tokens"
            )
    return None
