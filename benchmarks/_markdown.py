"""What every section of docs/benchmarks.md shares: where the result files are, how a missing one
reads, which files the first landing's code wrote, and the Markdown primitives."""

from __future__ import annotations

import json
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"

#: Files written by the first landing's code, and what the current code and configs would change in them.
FIRST_LANDING = {
    "h100-offline.json": "throughput, TPOT and speedups (CUDA graphs, 64-prompt windows), every T=0.8 "
    "output (per-request seeds), and the engine starts (no `spawn`)",
    "h100-server-draft.json": "throughput, TPOT, TTFT (prefix cache reset per window) and speedups, every "
    "T=0.8 output (per-request seeds), and the engine starts. Its T=0 \"outputs match\" of 0.00 is an "
    "artefact: the cached vanilla side kept no token ids, which that code counted as mismatches; "
    "baselines now keep them, and missing ids read \"not measured\"",
    "h100-server-ngram-self-draft.json": "throughput, TPOT, TTFT (prefix cache reset per window) and "
    "speedups, every T=0.8 output (per-request seeds), and the engine starts",
    "h100-overhead.json": "the absolute tokens/s (CUDA graphs); the ratio is unresolved anyway (see below)",
    "h100-vs-bench-serve.json": "the absolute TPOT of both clients (CUDA graphs)",
    "h100-baseline-cache.json": "both session times (engine starts without `spawn`, with CUDA-graph capture)",
}
PENDING = "Results: pending the H100 session."


def load(name: str) -> dict | None:
    path = RESULTS / name
    return json.loads(path.read_text()) if path.is_file() else None


def anchor(title: str) -> str:
    """The fragment GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    kept = "".join(c for c in title.lower() if c.isalnum() or c in " -_")
    return kept.replace(" ", "-")


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "-" if value is None else format(value, spec)


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table: the header, its rule, one line per row."""
    return [f"| {' | '.join(header)} |", "|" + "---|" * len(header), *(f"| {' | '.join(row)} |" for row in rows)]


def first_landing(name: str) -> list[str]:
    changed = FIRST_LANDING.get(name)
    return [] if changed is None else [f"*First landing*: the current code would change {changed}.", ""]
