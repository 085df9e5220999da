"""vLLM's start log: where an engine of ours keeps it, and what it says about where a start went.

A `vllm serve` of ours writes its whole output to its log. An in-process `vllm.LLM` starts an engine
core (and workers) that log for the engine's whole life, either forked, inheriting this process's
logging handlers, or spawned (vLLM's CPU build; a process that initialised CUDA), writing to the
standard output and error it inherits: `engine_output_to` gives both kinds the log file while the
engine starts, and the start's phases are read from it as from a server's log.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

#: vLLM's own log lines on where a start went, as phase name -> its wordings, the seconds in group 1:
#: the first wording found counts (GPU runners log a load both ways).
START_PHASES = {
    "weights_s": (re.compile(r"Model loading took [\d.]+ GiB (?:memory )?and ([\d.]+) seconds"),
                  re.compile(r"Loading weights took ([\d.]+) seconds")),
    "engine_init_s": (re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) s"),),
    "compile_s": (re.compile(r"torch\.compile took ([\d.]+) s in total"),),
    "graph_capture_s": (re.compile(r"Graph capturing finished in ([\d.]+) secs?"),),
}
#: vLLM's logging as an engine process of ours configures it from the environment (a server, a spawned
#: engine core): INFO, whatever this process asked of vLLM for itself, as the start phases are INFO lines
LOGGING_ENV = {"VLLM_CONFIGURE_LOGGING": "1", "VLLM_LOGGING_LEVEL": "INFO"}


def start_phases(log_path: Path, total_s: float) -> dict[str, float]:
    """A start taken apart from its log: loading weights, then vLLM's engine init (profiling, KV cache,
    torch.compile and CUDA graph capture within it), and the rest of `total_s` (a server's process,
    imports, API server and health wait; an in-process engine's forking and handshakes). A slow
    start is explained by its phases, not guessed at. Empty when the log says nothing of them."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return {}
    found = {}
    for phase, wordings in START_PHASES.items():
        for wording in wordings:
            # a draft model logs its own loading too: summed; a line written twice (a forked process's
            # own handler and ours, both into the file) counts once
            hits = {match.group(0): float(match.group(1)) for match in wording.finditer(text)}
            if hits:
                found[phase] = sum(hits.values())
                break
    if found:
        found["other_s"] = max(0.0, total_s - found.get("weights_s", 0.0) - found.get("engine_init_s", 0.0))
    return found


class EngineLog:
    """Where an engine of ours logs: in the session's folder (`log_dir`, kept), or in a temporary
    folder of its own, which `discard` removes. One file per engine, named so the next session's
    start of the same engine replaces it, with an xdist worker's own name, as two workers may start
    the same engine."""

    def __init__(self, log_dir: str | Path | None, kind: str, role: str, key: str) -> None:
        self.temporary = log_dir is None
        directory = Path(log_dir) if log_dir is not None else Path(tempfile.mkdtemp(prefix=f"specdecode-{kind}-"))
        directory.mkdir(parents=True, exist_ok=True)
        worker = f"-{os.environ['PYTEST_XDIST_WORKER']}" if os.environ.get("PYTEST_XDIST_WORKER") else ""
        self.path = directory / f"vllm-{kind}-{role}-{key}{worker}.log"

    def discard(self) -> None:
        """The temporary folder removed (an engine that stopped cleanly); a session's log stays."""
        if self.temporary:
            shutil.rmtree(self.path.parent, ignore_errors=True)


@contextmanager
def engine_output_to(log_path: Path) -> Iterator[None]:
    """What the processes an in-process engine starts meanwhile log, for as long as they live, into
    `log_path`: spawned ones through the standard output and error they inherit (and vLLM's logging
    at INFO, which they configure from the environment when they import it), forked ones through a
    file handler on vLLM's logger, which they inherit. This process's output, logging and
    environment are as they were afterwards."""
    log_path.write_bytes(b"")
    logger = logging.getLogger("vllm")
    handler = logging.FileHandler(log_path, mode="a", encoding="utf-8")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(processName)s %(levelname)s %(name)s: %(message)s"))
    level, environment = logger.level, {name: os.environ.get(name) for name in LOGGING_ENV}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with log_path.open("ab") as log:
        try:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
            os.environ.update(LOGGING_ENV)
            if not logger.isEnabledFor(logging.INFO):  # vLLM's logging turned off here (VLLM_CONFIGURE_LOGGING=0)
                logger.setLevel(logging.INFO)
            logger.addHandler(handler)
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(level)
            handler.close()
            for name, value in environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, kept in zip((1, 2), saved):
                os.dup2(kept, fd)
                os.close(kept)

