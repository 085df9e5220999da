"""The measurement plan as data: which windows are measured, on which side, in which order.

Pure: (conditions, repeats, whether both engines fit, which vanilla conditions are still unknown)
in, an ordered list of `Step`s out. `Measurer` runs the list; tests read it without an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.load import LoadLevel, levels
from ..config.spec import SpecConfig
from ..engines.base import Sampling


@dataclass(frozen=True)
class Recipe:
    """How one run is measured: the sampling and, in server mode, a load level.

    The full recipe (seed, max_tokens, burstiness), because it is what the engines are given and
    what a vanilla fingerprint hashes; a report keys the measured run by the part of it a reader
    selects by, temperature and load (`results.Condition`).
    """

    sampling: Sampling
    load: LoadLevel | None = None

    @property
    def label(self) -> str:
        temperature = mix_label(self.sampling) if self.sampling.mix else f"{self.sampling.temperature:g}"
        return f"T={temperature}" + (f" {self.load.label}" if self.load else "")


def mix_label(sampling: Sampling) -> str:
    """A mixed batch's temperatures and shares, as `results.Condition` labels it."""
    shares = {t: sampling.mix.count(t) / len(sampling.mix) for t in sorted(set(sampling.mix))}
    return "mix(" + ", ".join(f"{t:g}:{share:.0%}" for t, share in shares.items()) + ")"


@dataclass(frozen=True)
class Step:
    """One measured window of the plan: which side, under which condition, which repeat."""

    role: str  # "spec" or "vanilla"
    condition: Recipe
    repeat: int


def plan_windows(
    conditions: list[Recipe], repeats: int, both_fit: bool, vanilla_conditions: set[Recipe], first: int = 0
) -> list[Step]:
    """The order of the measured windows, as data: repeats `first` to `repeats` - 1 (a sequential
    look adds windows to those already measured).

    Both engines live at once: per condition and repeat, spec and vanilla alternate as ABBA, so a
    linear drift of the machine hits both sides alike. One engine at a time: every spec window
    first, then every vanilla window, so each engine starts once; the vanilla engine, last, stays
    live to score the sampled outputs of both sides (the lossless check). `vanilla_conditions`: the
    conditions whose vanilla side still has to be measured (others come from the memo or a stored
    baseline).
    """
    steps: list[Step] = []
    if both_fit:
        for condition in conditions:
            for repeat in range(first, repeats):
                pair = [Step("spec", condition, repeat)]
                if condition in vanilla_conditions:
                    vanilla = Step("vanilla", condition, repeat)
                    pair = [vanilla, *pair] if repeat % 2 == 0 else [*pair, vanilla]
                steps += pair
        return steps
    steps = [Step("spec", condition, repeat) for condition in conditions for repeat in range(first, repeats)]
    return steps + [
        Step("vanilla", condition, repeat)
        for condition in conditions if condition in vanilla_conditions for repeat in range(first, repeats)
    ]


def window_order(both_fit: bool) -> str:
    """How `plan_windows` orders the windows, as the result model records it."""
    return "abba" if both_fit else "blocks"


def conditions(config: SpecConfig) -> list[Recipe]:
    """Every condition a config is measured under: temperatures, times load levels in server mode."""
    workload = config.workload
    samplings = [
        Sampling(t, workload.max_tokens, workload.top_p, workload.seed, workload.ignore_eos) for t in workload.temperatures
    ]
    if workload.temperature_mix:  # one more run: every temperature of the mix in one batch
        pattern = workload.mix_pattern()
        samplings.append(Sampling(max(pattern), workload.max_tokens, workload.top_p, workload.seed, workload.ignore_eos,
                                  mix=pattern))
    if config.run.mode == "offline":
        return [Recipe(sampling) for sampling in samplings]
    loads = levels(workload.concurrency, workload.request_rate, workload.burstiness)
    return [Recipe(sampling, load) for sampling in samplings for load in loads]
