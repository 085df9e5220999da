"""What measuring one config accumulates, and the runs it becomes: no engine in here.

`Measurer` (measurer.py) drives the engines and fills a `ConfigMeasurement` window by window; what
is pure about turning those windows into judged `RunResult`s lives here, beside the state it reads,
so an interrupt half-way through and a finished config are assembled from the same object.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..config.spec import SpecConfig
from ..config.workload import RenderedPrompts
from ..engines.base import EngineSpec
from ..engines.metrics import EngineCounters
from ..results import BaselineInfo, EngineFigures, LosslessCheck, RunResult, SpecCounters
from ..results.run import DraftMemory
from .checks import RANDOM_WEIGHTS_WARNING, config_warnings, invalid_reason, outputs_match, run_warnings, speedup_basis
from .plan import Recipe, Step, mix_label


@dataclass
class ConfigMeasurement:
    """One config in measurement: its two sides, its conditions and their vanilla fingerprints,
    the vanilla figures known or measured per condition, and every window measured so far."""

    config: SpecConfig
    spec_side: EngineSpec
    vanilla_side: EngineSpec | None
    rendered: RenderedPrompts
    conditions: list[Recipe]
    fingerprints: dict[Recipe, str]
    #: the pool's starts before this config: those after it were caused by it
    starts_before: int
    #: `plan.window_order`: abba with both engines live, else blocks
    order: str = "abba"
    vanilla: dict[Recipe, EngineFigures] = field(default_factory=dict)
    baseline_of: dict[Recipe, BaselineInfo] = field(default_factory=dict)
    #: the conditions whose vanilla side is measured here (not known from the memo or a store)
    to_measure: set[Recipe] = field(default_factory=set)
    windows: dict[tuple[str, Recipe], list[tuple[EngineFigures, EngineCounters]]] = field(default_factory=dict)
    #: what the spec engine resolved of its arguments (`Engine.resolved_config`), once it ran
    resolved: dict[str, Any] | None = None
    #: a draft model's memory shape (`draft_memory`), read once from the config.json files
    draft_memory: DraftMemory | None = None

    def side(self, role: str) -> EngineSpec:
        """The engine a plan step of `role` runs on."""
        side = self.spec_side if role == "spec" else self.vanilla_side
        assert side is not None  # the plan has vanilla steps only where a vanilla side exists
        return side

    def finished(self, plan: list[Step]) -> list[Recipe]:
        """The conditions whose every planned window was measured: what an interrupt keeps."""
        planned = Counter((step.role, step.condition) for step in plan)
        return [
            condition for condition in self.conditions
            if all(len(self.windows.get(key, [])) == n for key, n in planned.items() if key[1] == condition)
        ]

    def keep_measured_vanilla(self, finished: list[Recipe]) -> None:
        """The vanilla windows measured here, combined per condition, become that condition's vanilla side."""
        for condition in self.to_measure & set(finished):
            self.vanilla[condition] = EngineFigures.combined([f for f, _ in self.windows[("vanilla", condition)]])
            self.baseline_of[condition] = BaselineInfo(
                source="measured", fingerprint=self.fingerprints[condition], age_s=0.0
            )

    def measured_windows(self, condition: Recipe) -> int:
        """Spec windows measured so far for a condition: where its next sequential look starts."""
        return len(self.windows.get(("spec", condition), []))

    def spec(self, condition: Recipe) -> tuple[EngineFigures, SpecCounters]:
        """The spec side of a condition, its repeats combined, and its counters summed over them."""
        windows = self.windows[("spec", condition)]
        return EngineFigures.combined([f for f, _ in windows]), sum((c.spec for _, c in windows), SpecCounters())

    def run_result(
        self, condition: Recipe, counters: SpecCounters, spec: EngineFigures, check: LosslessCheck | None
    ) -> RunResult:
        """The run as reported: the config's identity, both sides, and what the checks make of them."""
        config, vanilla, sampling = self.config, self.vanilla[condition], condition.sampling
        prompts = config.workload.prompts
        return RunResult(
            config=str(config.path),
            config_name=config.name,
            mode=config.run.mode,
            model=config.model.name,
            method=config.speculative.label,
            num_speculative_tokens=config.speculative.num_speculative_tokens,
            workload=prompts if prompts.startswith("builtin:") else prompts.rsplit("/", 1)[-1],
            temperature=sampling.temperature,
            temperature_mix=mix_label(sampling) if sampling.mix else None,
            concurrency=condition.load.concurrency if condition.load else None,
            request_rate=condition.load.request_rate if condition.load else None,
            counters=counters,
            spec=spec,
            vanilla=vanilla,
            outputs_match=outputs_match(spec.samples, vanilla.samples) if sampling.temperature == 0 else None,
            invalid_reason=invalid_reason(counters, spec, vanilla, config.run.min_valid_output_tokens),
            random_weights=config.random_weights,
            draft_memory=self.draft_memory,
            baseline=self.baseline_of[condition],
            warnings=run_warnings(spec, vanilla, config.run) + config_warnings(self.spec_side, self.resolved)
            + ([RANDOM_WEIGHTS_WARNING] if config.random_weights else []),
            speedup_basis=speedup_basis(spec, vanilla),
            lossless_check=check,
            interval_level=config.run.interval_level,
            window_order=self.order,
            min_p99_requests=config.run.min_p99_requests,
            engine_args=dict(self.spec_side.engine_args),
            resolved_config=self.resolved,
            speculative_config=dict(self.spec_side.speculative_config or {}),
        )


def draft_memory(side: EngineSpec) -> DraftMemory | None:
    """A draft model's KV bytes per token and weights beside the target's, where both are local
    Llama-style folders (a `builtin:` model, a path); None for n-gram, EAGLE heads and hub ids."""
    from ..config.memory import kv_bytes_per_token, local_model_config, weight_bytes

    speculative = side.speculative_config or {}
    if speculative.get("method") != "draft_model" or not speculative.get("model"):
        return None
    target, draft = local_model_config(side.model), local_model_config(str(speculative["model"]))
    if target is None or draft is None:
        return None
    return DraftMemory(target_kv_bytes_per_token=kv_bytes_per_token(target),
                       draft_kv_bytes_per_token=kv_bytes_per_token(draft), draft_weight_bytes=weight_bytes(draft))
