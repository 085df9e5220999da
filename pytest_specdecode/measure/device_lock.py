"""One measurement at a time per device, across processes: pytest-xdist workers, or two CI jobs on
one runner, would otherwise time their windows while the other's engine competes for the same GPU
(or CPU cores), and both would report the slowdown as the engine's.

An exclusive `flock` on a file named after the device; the lock goes with the process, so a crashed
worker never leaves it held. Workers pinned to distinct GPUs (`CUDA_VISIBLE_DEVICES`), or whose
vLLM-CPU engines are pinned to distinct cores (`VLLM_CPU_OMP_THREADS_BIND`), get distinct locks and
measure in parallel. On CPU that pins the engines' compute threads only; everything else still
shares the cores, which the docs say where they suggest it.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

LOCK_FOLDER = Path(tempfile.gettempdir()) / "pytest-specdecode-locks"


#: vLLM-CPU's own setting for the cores its engines compute on; these two values pin nothing.
CPU_BIND_ENV = "VLLM_CPU_OMP_THREADS_BIND"
UNPINNED = ("", "auto", "nobind")


def device_key(endpoint: str | None = None) -> str:
    """What a measurement runs on: an endpoint's server, the visible GPUs, or this machine's CPU
    (its pinned cores, when vLLM-CPU is told which: like GPUs, distinct cores are the user's to pick)."""
    if endpoint is not None:
        parts = urlsplit(endpoint)
        return _safe(f"endpoint-{parts.hostname}-{parts.port or ''}")
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").strip()
    if visible:
        return _safe(f"gpu-{visible}")
    if shutil.which("nvidia-smi"):
        return "gpu-all"
    cores = os.environ.get(CPU_BIND_ENV, "").strip()
    return "cpu" if cores in UNPINNED else _safe(f"cpu-{cores}")


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


@contextmanager
def device_lock(key: str, progress: Callable[[str], None] = lambda _: None, folder: Path = LOCK_FOLDER) -> Iterator[None]:
    """Hold `key`'s lock for the block; says so when it has to wait for another process."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{key}.lock", "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for device {key}: another process is measuring on it")
            waited = time.perf_counter()
            fcntl.flock(handle, fcntl.LOCK_EX)
            progress(f"device {key} is free after {time.perf_counter() - waited:.0f} s")
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
