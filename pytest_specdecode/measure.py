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
from collections.abc import Callable
from dataclasses import asdict

from .config import SpecConfig
from .engines.base import Engine, EngineSpec, Sampling
from .engines.pool import EnginePool
from .models import resolve_model
from .results import ConfigResult, EngineFigures, RequestSample, RunResult, SpecCounters
from .workload import WARMUP_PROMPT, Prompt, load_prompts, render

Progress = Callable[[str], None]


def engine_specs(config: SpecConfig, defaults: dict) -> tuple[EngineSpec, EngineSpec]:
    """The speculative engine and its vanilla twin (same target, same engine arguments)."""
    engine_args = {**defaults, **config.model.engine_args()}
    speculative = config.speculative.vllm_dict()
    if "model" in speculative:
        speculative["model"] = resolve_model(speculative["model"])
    spec = EngineSpec(resolve_model(config.model.name), engine_args, speculative, config.run.mode)
    return spec, spec.vanilla_twin()


class Measurer:
    """Measures configs on a pool's engines; a vanilla side seen before in this process is reused."""

    def __init__(self, pool: EnginePool, defaults: dict | None = None, progress: Progress = lambda _: None) -> None:
        self.pool = pool
        self.defaults = defaults or {}
        self.progress = progress
        self._vanilla_memo: dict[str, EngineFigures] = {}
        self._warmed: weakref.WeakSet = weakref.WeakSet()

    def measure(self, config: SpecConfig) -> ConfigResult:
        spec_side, vanilla_side = engine_specs(config, self.defaults)
        prompts = load_prompts(config.workload)
        samplings = [
            Sampling(t, config.workload.max_tokens, config.workload.top_p, config.workload.seed, config.workload.ignore_eos)
            for t in config.workload.temperatures
        ]
        rendered: list[str] | None = None
        vanilla: dict[float, EngineFigures] = {}
        # vanilla first, so that the spec engine is the one left running for `spec_engine` tests
        for sampling in samplings:
            key = _memo_key(vanilla_side, prompts, config.workload.chat_template, sampling)
            if key not in self._vanilla_memo:
                engine = self._engine(vanilla_side, config)
                rendered = rendered or render(prompts, engine.tokenizer(), config.workload.chat_template)
                self.progress(f"{config.name}: vanilla T={sampling.temperature:g} ({len(rendered)} prompts)")
                self._vanilla_memo[key], _ = self._measure_side(engine, rendered, sampling)
            vanilla[sampling.temperature] = self._vanilla_memo[key]
        engine = self._engine(spec_side, config)
        rendered = rendered or render(prompts, engine.tokenizer(), config.workload.chat_template)
        runs = []
        for sampling in samplings:
            self.progress(f"{config.name}: speculative T={sampling.temperature:g} ({len(rendered)} prompts)")
            spec_figures, counters = self._measure_side(engine, rendered, sampling)
            runs.append(
                self._run_result(config, spec_side, sampling, counters, spec_figures, vanilla[sampling.temperature])
            )
        return ConfigResult(
            config=str(config.path),
            config_name=config.name,
            runs=runs,
            engine_start_s={role: seconds for key, role, seconds in self.pool.starts if key in (spec_side.key, vanilla_side.key)},
        )

    def _engine(self, side: EngineSpec, config: SpecConfig) -> Engine:
        if not self.pool.is_live(side):
            self.progress(f"{config.name}: starting {side.role} engine ({side.model})")
        engine = self.pool.get(side)
        if engine not in self._warmed and config.run.warmup:
            warmup = render([Prompt(text=WARMUP_PROMPT)] * config.run.warmup, engine.tokenizer(), config.workload.chat_template)
            engine.generate(warmup, Sampling(0.0, config.workload.max_tokens, seed=config.workload.seed))
            self._warmed.add(engine)
        return engine

    @staticmethod
    def _measure_side(engine: Engine, prompts: list[str], sampling: Sampling) -> tuple[EngineFigures, SpecCounters]:
        before = engine.spec_counters()
        samples, duration = engine.generate(prompts, sampling)
        counters = engine.spec_counters().minus(before)
        return EngineFigures(samples=samples, duration_s=duration, kv_cache_tokens=engine.kv_cache_tokens()), counters

    @staticmethod
    def _run_result(
        config: SpecConfig,
        side: EngineSpec,
        sampling: Sampling,
        counters: SpecCounters,
        spec: EngineFigures,
        vanilla: EngineFigures,
    ) -> RunResult:
        return RunResult(
            config=str(config.path),
            config_name=config.name,
            mode=config.run.mode,
            model=config.model.name,
            method=config.speculative.label,
            num_speculative_tokens=config.speculative.num_speculative_tokens,
            workload=config.workload.prompts if config.workload.prompts.startswith("builtin:") else config.workload.prompts.rsplit("/", 1)[-1],
            temperature=sampling.temperature,
            counters=counters,
            spec=spec,
            vanilla=vanilla,
            outputs_match=_outputs_match(spec.samples, vanilla.samples) if sampling.temperature == 0 else None,
            invalid_reason=invalid_reason(counters, spec, vanilla, config.run.min_valid_output_tokens),
        )


def _memo_key(side: EngineSpec, prompts: list[Prompt], chat_template: bool, sampling: Sampling) -> str:
    payload = json.dumps([side.key, [asdict(p) for p in prompts], chat_template, asdict(sampling)], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


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
