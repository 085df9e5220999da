"""Config -> engines -> workload -> one `ConfigResult`: the measured comparison.

Order matters for honesty and for memory: each engine is warmed up first (excluded from every
figure), its spec counters are read before and after the measured window (so only the window
counts), and each side measures all temperatures while it is the engine in hand, so a pool of one
live engine needs only one start per side.
"""

from __future__ import annotations

import hashlib
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from .checks import invalid_reason, outputs_match, run_warnings, speedup_basis
from .config import SpecConfig
from .engines.base import Engine, EngineSpec, EngineStartError, Sampling
from .engines.metrics import EngineCounters
from .engines.pool import EnginePool
from .lossless import DEFAULT_ALPHA, check_lossless, not_measured
from .models import resolve_model
from .plan import Cell, cells, plan_windows
from .results import BaselineInfo, ConfigResult, EngineFigures, LosslessCheck, RunResult, SpecCounters, Window
from .vanilla import BaselineCache, VanillaSource
from .workload import WARMUP_PROMPT, Prompt, check_lengths, load_prompts, local_tokenizer, render

Progress = Callable[[str], None]


class MeasurementInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM in the middle of a config, carrying the conditions it had finished.

    A KeyboardInterrupt still (the session must stop), so code that does not know it sees an
    interrupt; the session keeps `partial` so the report shows what was measured before it.
    """

    def __init__(self, interrupt: KeyboardInterrupt, partial: ConfigResult, total: int) -> None:
        super().__init__(*interrupt.args)  # what the user sees stays the signal's own message
        self.partial = partial
        self.total = total


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
        spec = EngineSpec(
            resolve_model(config.model.name), engine_args, speculative, "endpoint", endpoints.spec,
            request_timeout_s=config.run.request_timeout_s, api_key_env=config.run.api_key_env,
        )
        return spec, spec.vanilla_twin(endpoints.vanilla) if endpoints.vanilla else None
    if "model" in speculative:
        speculative["model"] = resolve_model(speculative["model"])
    spec = EngineSpec(
        resolve_model(config.model.name), engine_args, speculative, config.run.mode,
        start_timeout_s=config.run.server_start_timeout_s, request_timeout_s=config.run.request_timeout_s,
    )
    return spec, spec.vanilla_twin()


class Measurer:
    """Measures configs on a pool's engines. A config measured before by this measurer (same
    content, wherever its file lives) is not measured again; a vanilla side seen before is reused,
    and one stored in `baselines` (same fingerprint) is reused without starting its engine.

    A session makes its own unless a `pytest_specdecode_measurer` hook returns one to share.
    """

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
        self.vanilla = VanillaSource(baselines)
        self.endpoints: Endpoints | None = None
        self._warmed: weakref.WeakSet = weakref.WeakSet()
        self._measured: dict[str, ConfigResult] = {}
        #: where this process's time went, for the report's session breakdown
        self.seconds: dict[str, float] = {"engine_start": 0.0, "warmup": 0.0, "measurement": 0.0, "scoring": 0.0}

    def measure(self, config: SpecConfig) -> ConfigResult:
        """The comparison for `config`, measured on first request (per content and endpoints)."""
        key = _content_key(config) + repr(self.endpoints)
        if key not in self._measured:
            self._measured[key] = self._measure(config)
        measured = self._measured[key]
        named = {"config": str(config.path), "config_name": config.name}
        return measured.model_copy(update={**named, "runs": [run.model_copy(update=named) for run in measured.runs]})

    def _measure(self, config: SpecConfig) -> ConfigResult:
        starts_before = len(self.pool.starts)
        spec_side, vanilla_side = engine_specs(config, self.defaults, self.endpoints)
        prompts = load_prompts(config.workload)
        conditions = cells(config)
        rendered = _Rendered(prompts, config.workload.chat_template)
        tokenizer = local_tokenizer(spec_side.model, spec_side.engine_args)
        if tokenizer is not None:
            texts = render(prompts, tokenizer, config.workload.chat_template)
            check_lengths(texts, tokenizer, spec_side.engine_args.get("max_model_len"), str(config.path))
        fingerprints = {
            cell: self.vanilla.fingerprint(vanilla_side or spec_side.vanilla_twin(), prompts, config, cell) for cell in conditions
        }
        vanilla: dict[Cell, EngineFigures] = {}
        baseline_of: dict[Cell, BaselineInfo] = {}
        for cell in conditions:
            known = self.vanilla.known(fingerprints[cell])
            if known is not None:
                vanilla[cell], baseline_of[cell] = known
            elif vanilla_side is None:
                raise EngineStartError(
                    f"no vanilla figures for {config.name} {cell.label}: give --spec-baseline-endpoint, "
                    "or measure a baseline once with a vanilla engine (--spec-baseline-dir)"
                )
        to_measure = {cell for cell in conditions if cell not in vanilla}
        windows: dict[tuple[str, Cell], list[tuple[EngineFigures, EngineCounters]]] = {}
        plan = plan_windows(conditions, config.run.repeats, self.pool.max_live >= 2, to_measure)
        try:
            for step in plan:
                side = spec_side if step.role == "spec" else vanilla_side
                assert side is not None
                windows.setdefault((step.role, step.cell), []).append(
                    self._measure_side(side, config, rendered, step.cell, step.repeat)
                )
        except KeyboardInterrupt as interrupt:
            planned = {(step.role, step.cell) for step in plan}
            counts = {key: sum(1 for step in plan if (step.role, step.cell) == key) for key in planned}
            finished = [
                cell for cell in conditions
                if all(len(windows.get(key, [])) == counts[key] for key in planned if key[1] == cell)
            ]
            # no lossless scoring here: it needs the engines the interrupt is stopping
            partial = self._assemble(config, finished, windows, to_measure, vanilla, baseline_of, fingerprints,
                                     spec_side, vanilla_side, rendered, starts_before, lossless=False)
            raise MeasurementInterrupted(interrupt, partial, len(conditions)) from interrupt
        return self._assemble(config, conditions, windows, to_measure, vanilla, baseline_of, fingerprints,
                              spec_side, vanilla_side, rendered, starts_before, lossless=True)

    def _assemble(
        self, config: SpecConfig, conditions: list[Cell], windows: dict, to_measure: set[Cell],
        vanilla: dict[Cell, EngineFigures], baseline_of: dict[Cell, BaselineInfo], fingerprints: dict,
        spec_side: EngineSpec, vanilla_side: EngineSpec | None, rendered: _Rendered, starts_before: int,
        lossless: bool,
    ) -> ConfigResult:
        """The measured windows of `conditions` combined into runs, each judged and remembered."""
        for cell in to_measure & set(conditions):
            vanilla[cell] = _combine([figures for figures, _ in windows[("vanilla", cell)]])
            baseline_of[cell] = BaselineInfo(source="measured", fingerprint=fingerprints[cell], age_s=0.0)
        runs = []
        for cell in conditions:
            spec_windows = windows[("spec", cell)]
            spec = _combine([figures for figures, _ in spec_windows])
            counters = sum((c.spec for _, c in spec_windows), SpecCounters())
            check = None
            if cell.sampling.temperature > 0 and config.run.lossless_check:
                if lossless:
                    spec, vanilla[cell], check = self._lossless(config, vanilla_side, rendered, spec, vanilla[cell])
                else:
                    check = not_measured("the session was interrupted before the outputs were scored")
            meta = {"config": str(config.path), "cell": cell.label}
            not_stored = self.vanilla.remember(fingerprints[cell], vanilla[cell], cell in to_measure, meta)
            run = self._run_result(config, cell, counters, spec, vanilla[cell], baseline_of[cell], spec_side, check)
            if not_stored is not None:  # what was measured stays, and is judged; the store is the user's to fix
                run = run.model_copy(update={"warnings": [*run.warnings, not_stored]})
            runs.append(run)
        keys = {spec_side.key, vanilla_side.key if vanilla_side else None}
        return ConfigResult(
            config=str(config.path),
            config_name=config.name,
            runs=runs,
            p99_regression_tolerance=config.gates.p99_regression_tolerance,
            # the starts this measurement caused: an engine shared with an earlier config is not billed twice
            engine_start_s={role: seconds for key, role, seconds in self.pool.starts[starts_before:] if key in keys},
        )

    def _lossless(
        self, config: SpecConfig, vanilla_side: EngineSpec | None, rendered: _Rendered, spec: EngineFigures,
        vanilla: EngineFigures,
    ) -> tuple[EngineFigures, EngineFigures, LosslessCheck]:
        """Score both sides' sampled outputs under the target (the vanilla engine), then compare."""
        if vanilla_side is None:
            return spec, vanilla, not_measured("no vanilla engine to score outputs with (endpoint without a baseline endpoint)")
        if any(not s.output_token_ids for s in spec.samples + vanilla.samples if s.output_tokens):
            return spec, vanilla, not_measured("output token ids are missing on one side (a baseline that predates them?)")
        engine = self._engine(vanilla_side, config)
        text = rendered.for_engine(engine)
        scored = []
        with self._timed("scoring"):
            for figures in (spec, vanilla):
                samples = figures.samples
                if all(s.target_logprob is not None or not s.output_tokens for s in samples):
                    scored.append(figures)
                    continue
                prompts = [text[i % len(text)] for i in range(len(samples))]
                scores = engine.score(prompts, [s.output_token_ids for s in samples])
                samples = [s.model_copy(update={"target_logprob": v}) for s, v in zip(samples, scores)]
                scored.append(figures.model_copy(update={"samples": samples}))
        spec, vanilla = scored
        return spec, vanilla, check_lossless(spec.samples, vanilla.samples, config.gates.lossless_alpha or DEFAULT_ALPHA)

    def _engine(self, side: EngineSpec, config: SpecConfig) -> Engine:
        starting = not self.pool.is_live(side)
        if starting:
            self.progress(f"{config.name}: starting {side.role} engine ({side.model})")
        started = time.perf_counter()
        with self._timed("engine_start"):
            engine = self.pool.get(side)
        if starting:
            self.progress(f"{config.name}: {side.role} engine started in {time.perf_counter() - started:.1f} s")
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
    ) -> tuple[EngineFigures, EngineCounters]:
        engine = self._engine(side, config)
        prompts = rendered.for_engine(engine)
        suffix = f", repeat {repeat + 1}/{config.run.repeats}" if config.run.repeats > 1 else ""
        self.progress(f"{config.name}: {side.role} {cell.label} ({len(prompts)} prompts{suffix})")
        reset = engine.reset_prefix_cache()
        # each repeat draws new samples: request i of repeat r has seed base + r * n + i, on both sides
        sampling = replace(cell.sampling, seed=cell.sampling.seed + repeat * len(prompts))
        started_at = time.time()
        with self._timed("measurement"):
            before = engine.counters()
            generated = engine.generate(prompts, sampling, cell.load)
            counters = engine.counters().minus(before)
        samples = [sample.model_copy(update={"repeat": repeat}) for sample in generated.samples]
        client = generated.client
        window = Window(
            duration_s=generated.duration_s,
            output_tokens=sum(s.output_tokens for s in samples),
            started_at=started_at,
            engine_generation_tokens=counters.generation_tokens,
            prefix_cache_reset=reset,
            client_cpu_s=client.cpu_s if client else None,
            client_lag_ms=client.lag_ms if client else None,
        )
        self.progress(f"{config.name}: {side.role} {cell.label}: {window.output_tokens} tokens in {window.duration_s:.1f} s")
        figures = EngineFigures(
            samples=samples, duration_s=generated.duration_s, kv_cache_tokens=engine.kv_cache_tokens(), windows=[window]
        )
        return figures, counters

    @staticmethod
    def _run_result(
        config: SpecConfig,
        cell: Cell,
        counters: SpecCounters,
        spec: EngineFigures,
        vanilla: EngineFigures,
        baseline: BaselineInfo,
        spec_side: EngineSpec,
        check: LosslessCheck | None,
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
            outputs_match=outputs_match(spec.samples, vanilla.samples) if sampling.temperature == 0 else None,
            invalid_reason=invalid_reason(counters, spec, vanilla, config.run.min_valid_output_tokens),
            baseline=baseline,
            warnings=run_warnings(spec, vanilla, config.run),
            speedup_basis=speedup_basis(spec, vanilla),
            lossless_check=check,
            engine_args=dict(spec_side.engine_args),
            speculative_config=dict(spec_side.speculative_config or {}),
        )


class _Rendered:
    """The prompts as text, rendered once with the first engine's tokenizer (all share the target's)."""

    def __init__(self, prompts: list[Prompt], chat_template: bool) -> None:
        self._prompts, self._chat_template = prompts, chat_template
        self._text: list[str] | None = None

    def for_engine(self, engine: Engine) -> list[str]:
        if self._text is None:
            self._text = render(self._prompts, engine.tokenizer(), self._chat_template)
        return self._text


def _content_key(config: SpecConfig) -> str:
    """What makes two configs the same measurement: everything but their path and gates, and the
    prompts file's bytes."""
    text = config.model_dump_json(exclude={"path", "gates"})
    prompts = Path(config.workload.prompts)
    if not config.workload.prompts.startswith("builtin:") and prompts.is_file():
        text += hashlib.sha256(prompts.read_bytes()).hexdigest()
    return hashlib.sha256(text.encode()).hexdigest()


def _combine(repeats: list[EngineFigures]) -> EngineFigures:
    """R repeats as one side: all samples (tagged with their repeat), every window, the total time."""
    if len(repeats) == 1:
        return repeats[0]
    return EngineFigures(
        samples=[sample for figures in repeats for sample in figures.samples],
        duration_s=sum(figures.duration_s for figures in repeats),
        kv_cache_tokens=repeats[-1].kv_cache_tokens,
        windows=[window for figures in repeats for window in figures.windows],
    )


