"""How far the plugin's chunk-based per-request acceptance is from vLLM's own per-request counts
(`--per-request-spec-decode-metrics`, vLLM 0.32+), read from a `--spec-report` of a session whose
engines offered both. The estimate is what a vLLM without the flag (0.26 on the GPU) or a server
not started with it leaves the plugin with.

    pytest -p no:cacheprovider --spec-config=examples/cpu-ngram.toml examples/test_gates.py --spec-report=/tmp/agree.json
    python benchmarks/per_request_agreement.py /tmp/agree.json --out benchmarks/results/cpu-per-request-agreement.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from _common import emit


def agreement(report: dict) -> dict:
    rows = []
    for run in report["runs"]:
        pairs = [(s["acceptance_length"], s["vllm_spec_decode"]["acceptance_length"]) for s in run["spec"]["samples"]
                 if s.get("acceptance_length") is not None and (s.get("vllm_spec_decode") or {}).get("acceptance_length")]
        if not pairs:
            continue
        estimate, own = np.array(pairs).T
        gap = estimate - own
        rows.append({
            "run": f"{run['config_name']} T={run['temperature']:g}", "requests": len(pairs),
            "vllm_mean": float(own.mean()), "estimate_mean": float(estimate.mean()),
            "gap_median": float(np.median(gap)), "gap_p90_abs": float(np.percentile(np.abs(gap), 90)),
            "within_0_25": float(np.mean(np.abs(gap) <= 0.25)),
        })
    return {"vllm": report["environment"].get("vllm"), "device": report["environment"].get("device"), "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("report", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    emit(agreement(json.loads(args.report.read_text())), args.out)


if __name__ == "__main__":
    main()
