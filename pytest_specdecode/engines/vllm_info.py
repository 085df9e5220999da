"""Facts about the installed vLLM: its version, its platform, and which arguments it accepts.

Imported only when an engine is about to start, so `pytest --help` never pays for vLLM.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from ..config.spec import ConfigError, SpecConfig
from ..results import Environment

#: Engine defaults on a machine without a GPU, unless the config sets the key: a CUDA-graph
#: compile costs ~90 s on CPU, and on CPU the memory fraction is a share of system RAM.
CPU_ENGINE_DEFAULTS: dict[str, Any] = {"enforce_eager": True, "gpu_memory_utilization": 0.3}


@cache
def is_cpu_platform() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_cpu())


def engine_defaults() -> dict[str, Any]:
    return dict(CPU_ENGINE_DEFAULTS) if is_cpu_platform() else {}


@cache
def _engine_arg_fields() -> tuple[dataclasses.Field, ...]:
    from vllm.engine.arg_utils import EngineArgs

    return dataclasses.fields(EngineArgs)


def engine_arg_names() -> frozenset[str]:
    return frozenset(f.name for f in _engine_arg_fields())


def engine_arg_defaults() -> dict[str, Any]:
    """vLLM's own defaults for its engine arguments: they decide how a False bool is spelled as a
    `vllm serve` flag. Only keys that `validate_against_vllm` let through are ever looked up."""
    return {f.name: f.default for f in _engine_arg_fields() if f.default is not dataclasses.MISSING}


@cache
def frontend_arg_names() -> frozenset[str]:
    """The API server's own options (`vllm serve` flags that are not engine arguments)."""
    try:
        from vllm.entrypoints.launchers.cli_args import FrontendArgs
    except ImportError:  # an older vLLM keeps them elsewhere: none of the newer ones are asked for
        return frozenset()
    return frozenset(getattr(FrontendArgs, "__dataclass_fields__", {}))


@cache
def _speculative_keys() -> frozenset[str] | None:
    try:
        from vllm.config import SpeculativeConfig
    except ImportError:
        return None
    fields = getattr(SpeculativeConfig, "__dataclass_fields__", None) or getattr(SpeculativeConfig, "model_fields", None)
    return frozenset(fields) if fields else None


def validate_against_vllm(config: SpecConfig) -> None:
    """Unknown engine or speculative keys, named in the words of the user's own vLLM version."""
    known_args = engine_arg_names()
    for key in config.model.engine_args():
        if key not in known_args:
            raise ConfigError(f"{config.path}: [model] {key}: not an engine argument of vLLM {vllm_version()}")
    known_spec = _speculative_keys()
    if known_spec is None:
        return
    for key in config.speculative.vllm_dict():
        if key not in known_spec:
            raise ConfigError(
                f"{config.path}: [speculative] {key}: not a SpeculativeConfig field of vLLM {vllm_version()}"
            )


def vllm_version() -> str | None:
    try:
        import vllm
    except ImportError:
        return None
    return getattr(vllm, "__version__", None)


def environment() -> Environment:
    """The software and device the engines run on, read without initialising CUDA here: a CUDA
    context in the pytest process makes vLLM fall back to `spawn`, ~20 s more per engine start."""
    try:
        import torch

        torch_version, cuda = torch.__version__, torch.version.cuda
    except ImportError:
        torch_version, cuda = None, None
    return Environment(
        vllm=vllm_version(), torch=torch_version, cuda=cuda, device=device_name(), python=platform.python_version()
    )


@cache
def device_name() -> str:
    """GPUs as `nvidia-smi` names them (count, name, driver), else the CPU model and core count."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            listed = subprocess.run(
                [smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=True,
            ).stdout.strip().splitlines()
        except (OSError, subprocess.SubprocessError):
            listed = []
        if listed:
            name, _, driver = listed[0].partition(",")
            return f"{len(listed)}x {name.strip()} (driver {driver.strip()})"
    return f"cpu: {_cpu_model()} ({os.cpu_count()} cores)"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def server_identity(url: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """What a running server says it is: `/version` and, per served model, its id, root and
    context length. Keys an endpoint's baseline by the server, not by the machine running pytest."""
    import httpx

    from .base import EngineStartError

    try:
        version = httpx.get(f"{url}/version", timeout=10.0, headers=headers).json().get("version")
        models = httpx.get(f"{url}/v1/models", timeout=10.0, headers=headers).json().get("data", [])
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise EngineStartError(f"endpoint {url}: cannot read its identity (/version, /v1/models): {exc}") from None
    served = [{key: model.get(key) for key in ("id", "root", "max_model_len")} for model in models if isinstance(model, dict)]
    return {"version": version, "models": sorted(served, key=lambda m: str(m["id"]))}


#: The speculative settings worth reading back: what decides the drafts and their verification.
RESOLVED_SPECULATIVE = ("method", "num_speculative_tokens", "draft_tensor_parallel_size", "prompt_lookup_min",
                        "prompt_lookup_max", "rejection_sample_method", "draft_sample_method")
RESOLVED_PARALLEL = ("tensor_parallel_size", "pipeline_parallel_size", "data_parallel_size")


def resolved(vllm_config: Any) -> dict[str, Any]:
    """What vLLM made of the engine's arguments: a config can ask for a setting the installed vLLM
    accepts and then ignores or overrides (a draft tensor-parallel size, a method renamed), and
    only the resolved config says what ran."""
    def section(name: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
        found = getattr(vllm_config, name, None)
        return None if found is None else {key: getattr(found, key) for key in keys if hasattr(found, key)}

    return _picked(section("speculative_config", RESOLVED_SPECULATIVE), section("parallel_config", RESOLVED_PARALLEL))


def resolved_from_json(vllm_config: dict[str, Any]) -> dict[str, Any]:
    """`resolved` from a server's `GET /server_info?config_format=json` (vLLM's dev-mode route,
    which the plugin's own servers enable): the same settings, read from the config vLLM serialised."""
    return _picked(vllm_config.get("speculative_config"), vllm_config.get("parallel_config"))


def _picked(speculative: dict[str, Any] | None, parallel: dict[str, Any] | None) -> dict[str, Any]:
    def plain(found: dict[str, Any] | None, names: tuple[str, ...]) -> dict[str, Any]:
        found = found or {}
        return {name: found[name] if isinstance(found[name], (str, int, float, bool, type(None))) else str(found[name])
                for name in names if name in found}

    return {
        "speculative": None if speculative is None else plain(speculative, RESOLVED_SPECULATIVE),
        "parallel": plain(parallel, RESOLVED_PARALLEL),
    }
