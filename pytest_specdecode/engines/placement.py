"""Which GPUs an xdist worker's engines run on: `pytest -n N` on an N-GPU runner measures N configs
at once, each worker pinned to a block of its own through `CUDA_VISIBLE_DEVICES`.

The block is as large as the engine's world (a TP=2 config takes two GPUs), and the blocks are
disjoint, so two workers never time their windows on the same GPU; `measure/device_lock.py` keys its
lock on `CUDA_VISIBLE_DEVICES`, so pinned workers hold distinct locks and measure in parallel, while
an unpinned worker still waits for the whole machine.

Nothing here may initialise CUDA: the pytest process must not, before vLLM starts an engine, or
every start falls back to `spawn` (`tests/unit/test_no_cuda.py`). GPUs are counted with `nvidia-smi`.
Standard library only, so the plugin can call it before anything heavy is imported.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Mapping, Sequence

VISIBLE_DEVICES_ENV = "CUDA_VISIBLE_DEVICES"
WORKER_ENV = "PYTEST_XDIST_WORKER"
WORKER_COUNT_ENV = "PYTEST_XDIST_WORKER_COUNT"
#: Set to 1 by a user who pins GPUs some other way (a runner per GPU, a wrapper script).
OPT_OUT_ENV = "SPECDECODE_NO_PLACEMENT"

#: Lists the GPUs through the driver alone; `torch.cuda` would initialise CUDA in this process.
GPU_QUERY = ("nvidia-smi", "--query-gpu=index", "--format=csv,noheader")
GPU_QUERY_TIMEOUT_S = 30


def gpus_needed(tensor_parallel_size: int, pipeline_parallel_size: int = 1,
                draft_tensor_parallel_size: int | None = None) -> int:
    """The engine's world size: one GPU per rank. A draft model runs inside the target's world
    (on its first rank at TP=1, on every rank at the target's TP), so it adds no GPU; vLLM accepts
    only those two draft sizes, and one larger than the target's would need ranks that don't exist."""
    if tensor_parallel_size < 1 or pipeline_parallel_size < 1:
        raise ValueError(f"tensor_parallel_size ({tensor_parallel_size}) and pipeline_parallel_size "
                         f"({pipeline_parallel_size}) must be >= 1")
    if draft_tensor_parallel_size not in (None, 1, tensor_parallel_size):
        raise ValueError(f"draft_tensor_parallel_size ({draft_tensor_parallel_size}) must be 1 or the target's "
                         f"tensor_parallel_size ({tensor_parallel_size})")
    return tensor_parallel_size * pipeline_parallel_size


def assign_gpus(worker_id: str | None, worker_count: int, gpu_count: int, needed: int) -> tuple[int, ...]:
    """Worker `gw<i>` takes GPUs [i*needed, (i+1)*needed): disjoint blocks, whichever configs land
    on which worker. Outside xdist (`None` or "master") the session takes the first `needed`."""
    if needed > gpu_count:
        raise ValueError(f"a config needs {needed} GPUs (tensor x pipeline parallel size); "
                         f"this runner shows {gpu_count}")
    if worker_id in (None, "master"):
        return tuple(range(needed))
    match = re.fullmatch(r"gw(\d+)", worker_id)
    if match is None or int(match.group(1)) >= worker_count:
        raise ValueError(f"xdist worker id {worker_id!r} is not one of gw0..gw{worker_count - 1}")
    if worker_count * needed > gpu_count:
        raise ValueError(f"{worker_count} workers x {needed} GPUs each need {worker_count * needed} GPUs; "
                         f"this runner shows {gpu_count}: run with -n {gpu_count // needed}")
    first = int(match.group(1)) * needed
    return tuple(range(first, first + needed))


def visible_devices(env: Mapping[str, str], assigned: Sequence[int]) -> str:
    """The `CUDA_VISIBLE_DEVICES` value for `assigned`. A list the user already set (a runner
    handed a slice of a bigger machine) is what the indexes count in: "4,5,6,7" and GPUs (0, 1)
    give "4,5". Entries are kept as written, so GPU UUIDs work too."""
    shown = _visible_list(env)
    if shown is None:
        return ",".join(str(index) for index in assigned)
    if assigned and max(assigned) >= len(shown):
        raise ValueError(f"GPU {max(assigned)} is not in {VISIBLE_DEVICES_ENV}={env[VISIBLE_DEVICES_ENV]}")
    return ",".join(shown[index] for index in assigned)


def count_gpus() -> int:
    """The GPUs the driver lists; 0 without `nvidia-smi` or without a working driver (a CPU runner)."""
    try:
        listed = subprocess.run(GPU_QUERY, capture_output=True, text=True, timeout=GPU_QUERY_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return 0
    if listed.returncode != 0:
        return 0
    return sum(1 for line in listed.stdout.splitlines() if line.strip())


def worker_visible_devices(needed: int, env: Mapping[str, str] = os.environ,
                           gpu_count: int | None = None) -> str | None:
    """The `CUDA_VISIBLE_DEVICES` this xdist worker should run its engines under, or None when
    placement does not apply: not an xdist worker, `SPECDECODE_NO_PLACEMENT=1`, or no GPU.

    Call site: in the xdist worker, before any engine starts (session start), with `needed` the
    most GPUs any of the session's configs needs (`gpus_needed`): every worker takes a block of
    that size, so blocks stay disjoint; then set `os.environ["CUDA_VISIBLE_DEVICES"]` to the
    value. A config needing fewer GPUs runs on the first of its worker's block.

    `gpu_count` defaults to the length of a `CUDA_VISIBLE_DEVICES` the user set, else to what
    `nvidia-smi` lists (counted only when placement applies).
    """
    if WORKER_ENV not in env or env.get(OPT_OUT_ENV, "").strip() == "1":
        return None
    if gpu_count is None:
        shown = _visible_list(env)
        gpu_count = count_gpus() if shown is None else len(shown)
    if gpu_count == 0:
        return None
    assigned = assign_gpus(env[WORKER_ENV], int(env.get(WORKER_COUNT_ENV, "1")), gpu_count, needed)
    return visible_devices(env, assigned)


def _visible_list(env: Mapping[str, str]) -> list[str] | None:
    """The entries of a `CUDA_VISIBLE_DEVICES` the user set (empty: no GPU visible), None if unset."""
    if VISIBLE_DEVICES_ENV not in env:
        return None
    return [entry.strip() for entry in env[VISIBLE_DEVICES_ENV].split(",") if entry.strip()]
