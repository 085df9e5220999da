"""What the plugin costs a pytest run that does not use it: `pytest --help` and a one-test run,
with the plugin and with `-p no:specdecode`, alternating, reporting the median difference.

    python benchmarks/startup.py --rounds 20 --out benchmarks/results/cpu-startup.json
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import emit

COMMANDS = {"help": ["--help"], "trivial run": ["-q", "-p", "no:cacheprovider", "test_trivial.py"]}


def timed(args: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", *args], cwd=cwd, check=False, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        cwd = Path(folder)
        (cwd / "test_trivial.py").write_text("def test_trivial():\n    assert True\n")
        for name, command in COMMANDS.items():
            with_plugin, without = [], []
            for _ in range(args.rounds):  # alternating, so drift of the machine hits both alike
                with_plugin.append(timed(command, cwd))
                without.append(timed([*command, "-p", "no:specdecode"], cwd))
            differences = [a - b for a, b in zip(with_plugin, without)]
            rows.append({
                "command": f"pytest {' '.join(command)}",
                "rounds": args.rounds,
                "with_plugin_median_s": statistics.median(with_plugin),
                "without_plugin_median_s": statistics.median(without),
                "median_difference_ms": statistics.median(differences) * 1e3,
            })
    emit({"python": sys.version.split()[0], "rows": rows}, args.out)


if __name__ == "__main__":
    main()
