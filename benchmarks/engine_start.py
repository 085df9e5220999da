"""Engine start: what a plugin session pays up to a ready engine, vs a bare `vllm.LLM(...)`.

Each start runs in a fresh subprocess, so CUDA and vLLM state are clean and a start cannot profit
from the previous one except through the disk caches both share (weights in the page cache,
vLLM's torch.compile cache): one untimed bare start fills them first. Starts alternate as
bare/plugin, then plugin/bare (ABBA), so a drift of the machine hits both alike.

- bare: `LLM(model=..., **engine args, speculative_config=...)`, as a user's own script would call
  it, with the arguments the plugin would pass (resolved here, in the parent: the child imports
  nothing but vLLM);
- plugin: what a session does before its first measurement: load and check the config against the
  installed vLLM, read the environment (`vllm_info.environment()`, which the baseline fingerprint
  needs and which must not initialise CUDA here, or vLLM falls back to `spawn`), then
  `OfflineEngine(spec)`.

Two times per start: `construct_s`, in the subprocess from just before the first vLLM or plugin
import to the ready engine; `ready_s`, from launching the subprocess to the same moment
(interpreter start and imports included). The parent reads the child's ready time from the wall
clock both share.

    python benchmarks/engine_start.py examples/gpu-ngram.toml --rounds 4 --out benchmarks/results/h100-engine-start.json
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

KINDS = ("bare", "plugin")
#: A start that takes longer than this is stuck, not slow.
START_TIMEOUT_S = 900


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--rounds", type=int, default=4, help="timed starts of each kind")
    parser.add_argument("--role", choices=("spec", "vanilla"), default="spec", help="which of the config's engines")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--arguments", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.config, args.role, args.arguments, args.result)
    else:
        parent(args)


def parent(args: argparse.Namespace) -> None:
    from _common import emit

    from pytest_specdecode.engines import vllm_info

    order = ["bare"]  # untimed: fills the disk caches both kinds share
    for round_ in range(args.rounds):
        order += list(KINDS) if round_ % 2 == 0 else list(reversed(KINDS))
    timed: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    with tempfile.TemporaryDirectory() as folder:
        arguments = Path(folder) / "bare-arguments.json"
        arguments.write_text(json.dumps(bare_arguments(args.config, args.role)))
        for index, kind in enumerate(order):
            start = launch(kind, args, Path(folder), index)
            print(f"{'warmup' if index == 0 else 'start'} {index}: {kind}: construct {start['construct_s']:.1f} s, "
                  f"ready {start['ready_s']:.1f} s", file=sys.stderr, flush=True)
            if index:
                timed[kind].append(start)
    medians = {
        kind: {key: statistics.median(start[key] for start in starts) for key in ("construct_s", "ready_s", "exit_s")}
        for kind, starts in timed.items()
    }
    result = {
        "config": str(args.config),
        "role": args.role,
        "environment": vllm_info.environment().model_dump(),
        "rounds": args.rounds,
        "starts": timed,
        "median": medians,
        "plugin_over_bare": {
            key: medians["plugin"][key] / medians["bare"][key] for key in ("construct_s", "ready_s")
        },
        "note": "one untimed bare start first (disk caches); timed starts alternate ABBA, each in a fresh process",
    }
    emit(result, args.out)


def launch(kind: str, args: argparse.Namespace, folder: Path, index: int) -> dict[str, float]:
    """One start in its own process group, killed whole once the child exits or hangs; its log kept for the error."""
    result, log = folder / f"{index}.json", folder / f"{index}.log"
    command = [sys.executable, str(Path(__file__).resolve()), str(args.config), "--role", args.role,
               "--child", kind, "--arguments", str(folder / "bare-arguments.json"), "--result", str(result)]
    launched = time.time()
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            process.wait(timeout=START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
        exited = time.time()
        try:  # whatever of the group outlived the child (a hung start, a stray engine core) would hold the GPU
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()
    if process.returncode != 0 or not result.is_file():
        tail = log.read_text(errors="replace").splitlines()[-20:]
        raise SystemExit(f"{kind} start {index} failed (exit {process.returncode}):\n" + "\n".join(tail))
    child_times = json.loads(result.read_text())
    return {
        "construct_s": child_times["construct_s"],
        "ready_s": child_times["ready_at"] - launched,
        "exit_s": exited - launched,
    }


def child(kind: str, config_path: Path, role: str, arguments_file: Path, result: Path) -> None:
    """Start one engine of `kind`, write when it was ready, stop it."""
    started = time.perf_counter()
    engine = plugin_start(config_path, role) if kind == "plugin" else bare_start(arguments_file)
    result.write_text(json.dumps({"construct_s": time.perf_counter() - started, "ready_at": time.time()}))
    stop(engine)


def plugin_start(config_path: Path, role: str) -> Any:
    """The session's path: config check against vLLM, engine defaults, environment, then the engine."""
    from pytest_specdecode.config.spec import load_config
    from pytest_specdecode.engines import vllm_info
    from pytest_specdecode.engines.offline import OfflineEngine
    from pytest_specdecode.measure.measurer import engine_specs

    config = load_config(config_path)
    vllm_info.validate_against_vllm(config)
    spec, vanilla = engine_specs(config, vllm_info.engine_defaults())
    vllm_info.environment()
    return OfflineEngine(spec if role == "spec" else vanilla)


def bare_start(arguments_file: Path) -> Any:
    """`LLM(...)` with the arguments the parent resolved, so nothing but vLLM is imported here."""
    from vllm import LLM

    return LLM(**json.loads(arguments_file.read_text()))


def bare_arguments(config_path: Path, role: str) -> dict[str, Any]:
    """What the plugin would pass to `LLM` (builtin: names resolved, CPU defaults merged), minus
    the stats logging the plugin turns on for its counters: a user's script leaves it off."""
    from pytest_specdecode.config.spec import load_config
    from pytest_specdecode.engines import vllm_info
    from pytest_specdecode.measure.measurer import engine_specs

    spec, vanilla = engine_specs(load_config(config_path), vllm_info.engine_defaults())
    side = spec if role == "spec" else vanilla
    assert side is not None  # only endpoints lack a vanilla twin
    arguments: dict[str, Any] = {"model": side.model, **side.engine_args}
    if side.speculative_config:
        arguments["speculative_config"] = dict(side.speculative_config)
    return arguments


def stop(engine: Any) -> None:
    """Shut the engine's own processes down before exiting, as the plugin does at session end."""
    close = getattr(engine, "close", None)
    if close is not None:
        close()
        return
    shutdown = getattr(engine, "shutdown", None) or getattr(engine.llm_engine.engine_core, "shutdown", None)
    if shutdown is not None:
        shutdown()


if __name__ == "__main__":
    main()
