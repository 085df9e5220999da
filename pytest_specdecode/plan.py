"""The measurement plan as data: which windows are measured, on which side, in which order.

Pure: (cells, repeats, whether both engines fit, which vanilla cells are still unknown) in, an
ordered list of `Step`s out. `Measurer` runs the list; tests read it without an engine.
"""

from __future__ import annotations

from dataclasses import dataclass

from .config import SpecConfig
from .engines.base import Sampling
from .load import LoadLevel, levels


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


def cells(config: SpecConfig) -> list[Cell]:
    """Every condition a config is measured under: temperatures, times load levels in server mode."""
    workload = config.workload
    samplings = [
        Sampling(t, workload.max_tokens, workload.top_p, workload.seed, workload.ignore_eos) for t in workload.temperatures
    ]
    if config.run.mode == "offline":
        return [Cell(sampling) for sampling in samplings]
    loads = levels(workload.concurrency, workload.request_rate, workload.burstiness)
    return [Cell(sampling, load) for sampling in samplings for load in loads]
