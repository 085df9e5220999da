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

from .config import RunSection, SpecConfig
from .engines.base import Engine, EngineSpec, EngineStartError, Sampling
from .engines.metrics import EngineCounters
from .engines.pool import EnginePool
from .load import LoadLevel, levels
from .lossless import DEFAULT_ALPHA, check_lossless, not_measured
from .models import resolve_model
from .results import (
    SCHEMA_VERSION,
    BaselineInfo,
    ConfigResult,
    EngineFigures,
    LosslessCheck,
    RequestSample,
    RunResult,
    RunWarning,
    SpecCounters,
    Window,
)
from .workload import WARMUP_PROMPT, Prompt, load_prompts, render

Progress = Callable[[str], None]
#: Mean output lengths further apart than this make a throughput comparison one of unequal work.
LENGTH_TOLERANCE = 0.05
#: A client whose event loop ran this late, or that used this share of a core, set the pace itself.
CLIENT_LAG_LIMIT_MS = 50.0
CLIENT_CPU_LIMIT = 0.8


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


@dataclass(frozen=True)
class Step:
    """One measured window of the plan: which side, under which conditions, which repeat."""

    role: str  # "spec" or "vanilla"
    cell: Cell
    repeat: int


def plan_windows(cells: list[Cell], repeats: int, both_fit: bool, vanilla_cells: set[Cell]) -> list[Step]:
    """The order of the measured windows, as data.

    Both engines live at once: per cell and repeat, spec and vanilla alternate as ABBA, so a linear
    drift of the machine hits both sides alike. One engine at a time: every spec window first, then
    every vanilla window, so each engine starts once; the vanilla engine, last, stays live to score
    the sampled outputs of both sides (the lossless check). `vanilla_cells`: the cells whose
    vanilla side still has to be measured (others come from the memo or a stored baseline).
    """
    steps: list[Step] = []
    if both_fit:
        for cell in cells:
            for repeat in range(repeats):
                pair = [Step("spec", cell, repeat)]
                if cell in vanilla_cells:
                    pair = [Step("vanilla", cell, repeat), *pair] if repeat % 2 == 0 else [*pair, Step("vanilla", cell, repeat)]
                steps += pair
        return steps
    steps = [Step("spec", cell, repeat) for cell in cells for repeat in range(repeats)]
    return steps + [Step("vanilla", cell, repeat) for cell in cells if cell in vanilla_cells for repeat in range(repeats)]


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
        self.seconds: dict[str, float] = {"engine_start": 0.0, "warmup": 0.0, "measurement": 0.0, "scoring": 0.0}

    def forget(self) -> None:
        """Drop vanilla figures measured in this process, so the next measurement looks further."""
        self._vanilla_memo.clear()

    def measure(self, config: SpecConfig) -> ConfigResult:
        starts_before = len(self.pool.starts)
        spec_side, vanilla_side = engine_specs(config, self.defaults, self.endpoints)
        prompts = load_prompts(config.workload)
        cells = _cells(config)
        rendered = _Rendered(prompts, config.workload.chat_template)
        fingerprints = {
            cell: self._vanilla_fingerprint(vanilla_side or spec_side.vanilla_twin(), prompts, config, cell) for cell in cells
        }
        vanilla: dict[Cell, EngineFigures] = {}
        baseline_of: dict[Cell, BaselineInfo] = {}
        for cell in cells:
            known = self._known_vanilla(fingerprints[cell])
            if known is not None:
                vanilla[cell], baseline_of[cell] = known
            elif vanilla_side is None:
                raise EngineStartError(
                    f"no vanilla figures for {config.name} {cell.label}: give --spec-baseline-endpoint, "
                    "or measure a baseline once with a vanilla engine (--spec-baseline-dir)"
                )
        to_measure = {cell for cell in cells if cell not in vanilla}
        windows: dict[tuple[str, Cell], list[tuple[EngineFigures, EngineCounters]]] = {}
        plan = plan_windows(cells, config.run.repeats, self.pool.max_live >= 2, to_measure)
        for step in plan:
            side = spec_side if step.role == "spec" else vanilla_side
            assert side is not None
            windows.setdefault((step.role, step.cell), []).append(
                self._measure_side(side, config, rendered, step.cell, step.repeat)
            )
        for cell in to_measure:
            vanilla[cell] = _combine([figures for figures, _ in windows[("vanilla", cell)]])
            baseline_of[cell] = BaselineInfo(source="measured", fingerprint=fingerprints[cell], age_s=0.0)
        runs = []
        for cell in cells:
            spec_windows = windows[("spec", cell)]
            spec = _combine([figures for figures, _ in spec_windows])
            counters = sum((c.spec for _, c in spec_windows), SpecCounters())
            check = None
            if cell.sampling.temperature > 0 and config.run.lossless_check:
                spec, vanilla[cell], check = self._lossless(config, vanilla_side, rendered, spec, vanilla[cell])
            self._remember_vanilla(config, cell, fingerprints[cell], vanilla[cell], cell in to_measure)
            runs.append(
                self._run_result(config, cell, counters, spec, vanilla[cell], baseline_of[cell], spec_side, check)
            )
        keys = {spec_side.key, vanilla_side.key if vanilla_side else None}
        return ConfigResult(
            config=str(config.path),
            config_name=config.name,
            runs=runs,
            p99_regression_tolerance=config.gates.p99_regression_tolerance,
            # the starts this measurement caused: an engine shared with an earlier config is not billed twice
            engine_start_s={role: seconds for key, role, seconds in self.pool.starts[starts_before:] if key in keys},
        )

    def _remember_vanilla(self, config: SpecConfig, cell: Cell, fingerprint: str, figures: EngineFigures, new: bool) -> None:
        """Keep vanilla figures (with their scores) for later configs, and store fresh ones."""
        self._vanilla_memo[fingerprint] = figures.model_copy(update={"source": "measured"})
        if new and self.baselines is not None:
            self.baselines.save(fingerprint, figures, {"config": str(config.path), "cell": cell.label})

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
            "schema": SCHEMA_VERSION,
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
    ) -> tuple[EngineFigures, EngineCounters]:
        engine = self._engine(side, config)
        prompts = rendered.for_engine(engine)
        suffix = f", repeat {repeat + 1}/{config.run.repeats}" if config.run.repeats > 1 else ""
        self.progress(f"{config.name}: {side.role} {cell.label} ({len(prompts)} prompts{suffix})")
        reset = engine.reset_prefix_cache()
        # each repeat draws new samples: request i of repeat r has seed base + r * n + i, on both sides
        sampling = replace(cell.sampling, seed=cell.sampling.seed + repeat * len(prompts))
        with self._timed("measurement"):
            before = engine.counters()
            generated = engine.generate(prompts, sampling, cell.load)
            counters = engine.counters().minus(before)
        samples = [sample.model_copy(update={"repeat": repeat}) for sample in generated.samples]
        client = generated.client
        window = Window(
            duration_s=generated.duration_s,
            output_tokens=sum(s.output_tokens for s in samples),
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
            outputs_match=_outputs_match(spec.samples, vanilla.samples) if sampling.temperature == 0 else None,
            invalid_reason=invalid_reason(counters, spec, vanilla, config.run.min_valid_output_tokens),
            baseline=baseline,
            warnings=run_warnings(spec, vanilla, config.run),
            speedup_basis=speedup_basis(spec, vanilla),
            lossless_check=check,
            engine_args=dict(spec_side.engine_args),
            speculative_config=dict(spec_side.speculative_config or {}),
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
    """R repeats as one side: all samples (tagged with their repeat), every window, the total time."""
    if len(repeats) == 1:
        return repeats[0]
    return EngineFigures(
        samples=[sample for figures in repeats for sample in figures.samples],
        duration_s=sum(figures.duration_s for figures in repeats),
        kv_cache_tokens=repeats[-1].kv_cache_tokens,
        windows=[window for figures in repeats for window in figures.windows],
    )


def _outputs_match(spec: list[RequestSample], vanilla: list[RequestSample]) -> float | None:
    """Share of greedy requests whose token ids equal vanilla's; None ("not measured") when either
    side lacks the ids of a request that produced tokens: absent ids prove neither match nor mismatch."""
    if not spec or len(spec) != len(vanilla):
        return None
    if any(s.output_tokens and not s.output_token_ids for s in spec + vanilla):
        return None
    same = sum(a.output_token_ids == b.output_token_ids for a, b in zip(spec, vanilla))
    return same / len(spec)


def invalid_reason(
    counters: SpecCounters, spec: EngineFigures, vanilla: EngineFigures, min_mean_output_tokens: float
) -> str | None:
    """Why a run's figures cannot mean anything, or None when they can."""
    problem = counter_problem(counters)
    if problem is not None:
        return problem
    if counters.num_drafts == 0:
        return "no drafts were proposed in the measured window (speculation never ran)"
    for name, side in (("speculative", spec), ("vanilla", vanilla)):
        mean_tokens = side.output_tokens / max(side.num_requests, 1)
        if mean_tokens < min_mean_output_tokens:
            return (
                f"{name} outputs average {mean_tokens:.1f} tokens (< {min_mean_output_tokens:g}): "
                "check the chat template and max_tokens"
            )
        for window in side.windows:
            engine_count = window.engine_generation_tokens
            if engine_count is not None and engine_count != window.output_tokens:
                return (
                    f"{name} engine generated {engine_count} tokens in a window where the client received "
                    f"{window.output_tokens}: other traffic on the engine, or it restarted"
                )
    return None


def counter_problem(counters: SpecCounters) -> str | None:
    """Counter deltas that no real window produces: a restarted engine or a foreign counter."""
    values = [counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens, *counters.accepted_per_position]
    if any(value < 0 for value in values):
        return "a spec-decode counter went down during the window (the engine restarted?)"
    if counters.num_accepted_tokens > counters.num_draft_tokens:
        return (
            f"{counters.num_accepted_tokens} accepted of {counters.num_draft_tokens} drafted tokens: "
            "the counters do not describe one engine"
        )
    if counters.accepted_per_position and sum(counters.accepted_per_position) != counters.num_accepted_tokens:
        return "per-position accepted tokens do not add up to the accepted total"
    return None


def run_warnings(spec: EngineFigures, vanilla: EngineFigures, run: RunSection) -> list[RunWarning]:
    """What makes a valid run's figures weaker than they look, each with its name and remedy."""
    found: list[RunWarning] = []
    for name, side in (("spec", spec), ("vanilla", vanilla)):
        short = [w.duration_s for w in side.windows if w.duration_s < run.min_window_s]
        if short:
            found.append(RunWarning(
                code="short_window",
                message=f"{name} window of {min(short):.2f} s < {run.min_window_s:g} s: too short to resolve a few "
                "percent of speed; raise num_prompts or max_tokens",
            ))
        if side.num_requests < run.min_p99_requests:
            found.append(RunWarning(
                code="few_requests_for_p99",
                message=f"{name} has {side.num_requests} requests (< {run.min_p99_requests}): its P99 is its maximum",
            ))
        busy = [w for w in side.windows if _client_bound(w)]
        if busy:
            worst = max(busy, key=lambda w: w.client_lag_ms or 0.0)
            found.append(RunWarning(
                code="client_bound",
                message=f"the measuring client set the pace of a {name} window (event-loop lag "
                f"{worst.client_lag_ms:.0f} ms, CPU {worst.client_cpu_s:.1f} s of {worst.duration_s:.1f} s)",
            ))
        if any(not w.prefix_cache_reset for w in side.windows):
            found.append(RunWarning(
                code="prefix_cache_warm",
                message=f"the {name} engine's prefix cache could not be reset before a window: TTFT mixes warm prefills",
            ))
    ratio_ = _length_ratio(spec, vanilla)
    if ratio_ is not None and abs(ratio_ - 1) > LENGTH_TOLERANCE:
        found.append(RunWarning(
            code="unequal_lengths",
            message=f"spec outputs are {ratio_:.2f}x vanilla's length: throughput speedup compares unequal work; "
            "tpot_speedup is per token",
        ))
    return found


def speedup_basis(spec: EngineFigures, vanilla: EngineFigures) -> str | None:
    """What the throughput speedup compares: equal or unequal output lengths, in tokens."""
    ratio_ = _length_ratio(spec, vanilla)
    if ratio_ is None:
        return None
    equal = "equal" if abs(ratio_ - 1) <= LENGTH_TOLERANCE else "unequal"
    return f"output tokens/s, {equal} lengths ({spec.output_tokens} spec vs {vanilla.output_tokens} vanilla tokens)"


def _length_ratio(spec: EngineFigures, vanilla: EngineFigures) -> float | None:
    if not spec.num_requests or not vanilla.num_requests or not vanilla.output_tokens:
        return None
    return (spec.output_tokens / spec.num_requests) / (vanilla.output_tokens / vanilla.num_requests)


def _client_bound(window: Window) -> bool:
    if window.client_lag_ms is None or window.client_cpu_s is None:
        return False
    busy_share = window.client_cpu_s / window.duration_s if window.duration_s > 0 else 0.0
    return window.client_lag_ms > CLIENT_LAG_LIMIT_MS or busy_share > CLIENT_CPU_LIMIT
