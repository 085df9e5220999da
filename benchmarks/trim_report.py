"""Trim a `--spec-report` file for the repo: drop each request's per-chunk inter-token latencies
(`itl_s`) and answer text, and write it without indentation. A GPU session's full report runs to
several MiB, mostly those two; every table in docs/benchmarks.md renders the same from the trimmed
file (the lossless checks read token ids and scores, which stay).

    python benchmarks/trim_report.py benchmarks/results/h200-gates-eagle3-ngram-self-draft-draft.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

DROPPED = ("itl_s", "output_text")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reports", type=Path, nargs="+", help="rewritten in place")
    for path in parser.parse_args().reports:
        report = json.loads(path.read_text())
        for run in report.get("runs", []):
            for side in ("spec", "vanilla"):
                for sample in (run.get(side) or {}).get("samples", []):
                    for key in DROPPED:
                        sample.pop(key, None)
        path.write_text(json.dumps(report, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
