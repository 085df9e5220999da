"""A gate session against its floor: the same engines, warmups and windows in a bare `vllm.LLM` script.

- plugin: `pytest <test file> --spec-config=<config>` in a fresh process, two engines at once;
- bare: this file's child, in a fresh process: `vllm.LLM` for the vanilla and the spec engine (both
  live, as the session has them), the same warmup prompts on each, then as many windows per side and
  temperature as the plugin's report says it ran (ABBA, the prefix cache emptied before each, as
  every plugin window starts), `LLM.generate` on the same rendered prompts, and both engines shut
  down. Nothing else: no counters, no outputs kept, no scoring.

Each run is timed from its process's launch to its exit. Runs alternate plugin, bare, plugin, bare
...; the first plugin run also fills vLLM's compile cache (both engines' graphs), so it is reported
and left out of the ratio, which is the median plugin run over the median bare run after it. The
plugin's own `timing_s` split (starts, stops, warmup, measurement, other) comes with each run.

    python benchmarks/session_floor.py examples/gpu-8b-ngram.toml --test examples/gpu/test_production_shape.py \
        --pairs 1 --out benchmarks/results/h200-session-floor-8b-ngram.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from engine_start import bare_arguments, stop

#: A session that takes longer than this is stuck, not slow.
RUN_TIMEOUT_S = 1200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--test", type=Path, default=Path("examples/test_gates.py"), help="the gate file the session runs")
    parser.add_argument("--pairs", type=int, default=1, help="timed plugin/bare pairs after the first plugin run")
    parser.add_argument("--report-dir", type=Path, help="keep each plugin run's --spec-report here")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # the bare run's plan (JSON)
    args = parser.parse_args()
    if args.child:
        bare_session(json.loads(args.child.read_text()))
    else:
        parent(args)


def parent(args: argparse.Namespace) -> None:
    from _common import emit

    from pytest_specdecode.engines import vllm_info

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(1 + 2 * args.pairs):
            if index % 2 == 0:
                report = Path(folder) / f"plugin-{index}.json"
                wall = timed_run([sys.executable, "-m", "pytest", *plugin_args(), "-p", "no:cacheprovider", "-q", str(args.test), f"--spec-config={args.config}", "--spec-max-engines=2",
                                  f"--spec-report={report}"], Path(folder) / f"{index}.log", check=False)
                if not report.is_file():
                    failed(f"plugin run {index} wrote no report", Path(folder) / f"{index}.log")
                measured = json.loads(report.read_text())
                plan = bare_plan(args.config, measured)
                runs.append({"kind": "plugin", "wall_s": wall, "timing_s": measured["timing_s"]})
                if args.report_dir:
                    args.report_dir.mkdir(parents=True, exist_ok=True)
                    shutil.copy(report, args.report_dir / f"session-floor-{args.config.stem}-plugin-{index}.json")
            else:
                plan_file = Path(folder) / "plan.json"
                plan_file.write_text(json.dumps(plan))
                wall = timed_run([sys.executable, str(Path(__file__).resolve()), str(args.config), "--child", str(plan_file)],
                                 Path(folder) / f"{index}.log")
                runs.append({"kind": "bare", "wall_s": wall})
            print(f"run {index}: {runs[-1]['kind']} {wall:.1f} s", file=sys.stderr, flush=True)
    warm = runs[1:]
    medians = {kind: statistics.median(run["wall_s"] for run in warm if run["kind"] == kind) for kind in ("plugin", "bare")}
    emit({
        "config": str(args.config),
        "test": str(args.test),
        "environment": vllm_info.environment().model_dump(),
        "windows": plan["windows"],
        "runs": runs,
        "median_warm_s": medians,
        "plugin_over_bare": medians["plugin"] / medians["bare"],
        "note": "wall time from process launch to exit; the first plugin run fills the compile cache and is "
                "left out of the medians",
    }, args.out)


def timed_run(command: list[str], log: Path, check: bool = True) -> float:
    started = time.perf_counter()
    with log.open("wb") as sink:
        done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, timeout=RUN_TIMEOUT_S, check=False)
    wall = time.perf_counter() - started
    if check and done.returncode != 0:
        failed(f"{command[1]} failed (exit {done.returncode})", log)
    return wall


def failed(what: str, log: Path) -> None:
    tail = log.read_text(errors="replace").splitlines()[-20:]
    raise SystemExit(f"{what}:\n" + "\n".join(tail))


def plugin_args() -> list[str]:
    """The plugin by name where it is not installed (the GPU machine runs it from the working tree)."""
    installed = any(entry.value.startswith("pytest_specdecode") for entry in entry_points(group="pytest11"))
    return [] if installed else ["-p", "pytest_specdecode.plugin"]


def bare_plan(config_path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """What the bare script must do to match the plugin's session: engine arguments, prompts rendered
    as the plugin renders them (the target's local tokenizer), the warmup, and the windows the report says each side ran."""
    from pytest_specdecode.config.spec import load_config
    from pytest_specdecode.config.workload import WARMUP_PROMPT, Prompt, load_prompts, local_tokenizer, render

    config = load_config(config_path)
    workload = config.workload
    engines = {role: bare_arguments(config_path, role) for role in ("vanilla", "spec")}
    tokenizer = local_tokenizer(engines["spec"]["model"], engines["spec"])
    return {
        "engines": engines,
        "prompts": render(load_prompts(workload), tokenizer, workload.chat_template),
        "warmup": render([Prompt(text=WARMUP_PROMPT)] * config.run.warmup, tokenizer, workload.chat_template),
        "max_tokens": workload.max_tokens,
        "ignore_eos": workload.ignore_eos,
        "windows": {str(run["temperature"]): len(run["spec"]["windows"]) for run in report["runs"]},
    }


def bare_session(plan: dict[str, Any]) -> None:
    """The floor: nothing but vLLM, what a user's own script comparing the two engines would run."""
    from vllm import LLM, SamplingParams

    engines = {role: LLM(**arguments) for role, arguments in plan["engines"].items()}
    prompts, warmup = plan["prompts"], plan["warmup"]
    for engine in engines.values():
        engine.generate(warmup, SamplingParams(temperature=0.0, max_tokens=plan["max_tokens"]), use_tqdm=False)
    for temperature, windows in plan["windows"].items():
        params = SamplingParams(temperature=float(temperature), max_tokens=plan["max_tokens"],
                                ignore_eos=plan["ignore_eos"], seed=0)
        for window in range(windows):
            order = ("spec", "vanilla") if window % 2 == 0 else ("vanilla", "spec")
            for role in order:
                engines[role].reset_prefix_cache()
                engines[role].generate(prompts, params, use_tqdm=False)
    for engine in engines.values():
        stop(engine)


if __name__ == "__main__":
    main()
