"""What a stored vanilla baseline saves: a whole gate session, timed without and with it.

Run 1 measures vanilla and stores the baseline (`--spec-refresh-baseline`); run 2 finds it by
fingerprint and never starts the vanilla engine. Each run is a fresh pytest process, as in CI.

    python benchmarks/baseline_cache.py examples/cpu-ngram.toml --out benchmarks/results/baseline-cache-cpu.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit

GATE = Path(__file__).resolve().parent.parent / "examples" / "test_gates.py"


def gate_session(config: Path, baseline_dir: Path, report: Path, *extra: str) -> float:
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(GATE), "-k", "test_acceptance_gate",
        f"--spec-config={config}", f"--spec-baseline-dir={baseline_dir}", f"--spec-report={report}", *extra,
    ]
    started = time.perf_counter()
    subprocess.run(command, check=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--out", type=Path)
    args, pytest_args = parser.parse_known_args()  # the rest goes to pytest, e.g. -p pytest_specdecode.plugin
    args.pytest_args = [arg for arg in pytest_args if arg != "--"]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        cold = gate_session(args.config, folder, folder / "cold.json", "--spec-refresh-baseline", *args.pytest_args)
        warm = gate_session(args.config, folder, folder / "warm.json", *args.pytest_args)
        reports = {name: json.loads((folder / f"{name}.json").read_text()) for name in ("cold", "warm")}
    result = {
        "config": str(args.config),
        "cold_session_s": cold,
        "warm_session_s": warm,
        "warm_over_cold": warm / cold,
        "vanilla_source": {name: sorted({run["baseline"]["source"] for run in report["runs"]}) for name, report in reports.items()},
        "engine_starts": {name: report["engine_start_s"] for name, report in reports.items()},
        "timing_s": {name: report["timing_s"] for name, report in reports.items()},
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
