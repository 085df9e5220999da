"""Stored vanilla baselines, as plain JSON files a person can read and diff.

A vanilla engine costs a start and a full workload, yet its figures change only when something that
shapes them changes; a baseline keyed by a fingerprint of all of those lets later sessions skip it.
The danger is reusing figures that no longer describe the vanilla engine, so every file is checked
(kind, schema version, fingerprint against its name, figures against the model) and anything off is
a `BaselineError` naming the file: a stale or foreign file is never quietly reused. Named runs and
their comparison are `history`'s.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .. import __version__
from ..engines.base import EngineSpec, auth_headers
from ..engines.vllm_info import environment as installed_environment
from ..engines.vllm_info import server_identity
from ..results import EngineFigures, Environment
from ..results.schema import SCHEMA_VERSION, BaselineError, Model, older_schema, read_document, validated, write_document

BASELINE_KIND = "specdecode-baseline"

#: Small files whose content changes what a local model computes: the architecture, the generation
#: defaults vLLM applies to sampling parameters a request leaves unset, and the chat template.
MODEL_CONTENT_FILES = (
    "config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
    "tokenizer.json", "tokenizer.model", "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

_FINGERPRINT = re.compile(r"[0-9a-f]{16,64}")

def fingerprint(parts: dict[str, Any]) -> str:
    """The sha256 of the canonical JSON of everything that shapes the vanilla figures.

    `vanilla.VanillaSource.fingerprint` is the one caller; it passes the engine arguments, prompts,
    sampling, load level, warmup and repeats, and with a store `BaselineStore.identity`: the
    harness, vLLM and torch versions, the device (GPU names, count and driver, or the CPU model and
    core count), `VLLM_*` settings, and the model's content; for an endpoint, the server's own
    identity instead of this machine's.
    """
    payload = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=_canonical)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _canonical(value: Any) -> Any:
    """JSON for the few non-JSON types a caller plausibly passes; anything else is an error, since
    `str()` of an arbitrary object may embed a memory address and make every fingerprint new."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"fingerprint part of type {type(value).__name__} has no canonical JSON form")


def model_identity(model: str) -> dict[str, Any]:
    """What identifies a model's content. A local folder: hashes of its config and tokenizer files
    and its weight files' names, sizes and modification times (hashing gigabytes of weights would
    cost more than the engine start it saves). A hub id: the id and the snapshot commit the local
    hub cache resolves it to, when there is one (pin a `revision` where there is not)."""
    path = Path(model)
    if not path.exists():
        return {"id": model, "snapshot": _hub_snapshot(model)}
    if path.is_file():
        stat = path.stat()
        return {"path": str(path.resolve()), "weights": [[path.name, stat.st_size, int(stat.st_mtime)]]}
    configs = {name: _file_sha256(path / name) for name in MODEL_CONTENT_FILES if (path / name).is_file()}
    weights = sorted(
        [file.relative_to(path).as_posix(), file.stat().st_size, int(file.stat().st_mtime)]
        for file in path.rglob("*")
        if file.is_file() and file.suffix in WEIGHT_SUFFIXES
    )
    return {"path": str(path.resolve()), "configs": configs, "weights": weights}


def _hub_snapshot(repo_id: str, revision: str = "main") -> str | None:
    """The commit `refs/<revision>` points at in the Hugging Face cache, read without importing it."""
    home = os.environ.get("HF_HUB_CACHE") or os.path.join(
        os.environ.get("HF_HOME", os.path.expanduser("~/.cache/huggingface")), "hub"
    )
    ref = Path(home) / f"models--{repo_id.replace('/', '--')}" / "refs" / revision
    try:
        return ref.read_text().strip() or None
    except OSError:
        return None


def vllm_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """`VLLM_*` variables that can change what an engine computes or how fast: all but logging and
    the API key (a secret, and no part of the figures)."""
    return {
        key: value for key, value in sorted(environ.items())
        if key.startswith("VLLM_") and not key.startswith(("VLLM_LOGGING", "VLLM_CONFIGURE_LOGGING")) and key != "VLLM_API_KEY"
    }


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


#: The `VLLM_*` settings as the process had them when this module loaded, before any engine ran:
#: vLLM sets some itself once an engine starts (VLLM_WORKER_MULTIPROC_METHOD, ...), which would give
#: the second config of a session another fingerprint than the same config measured first.
SETTINGS_AT_START = vllm_settings(os.environ)


class BaselineFile(Model):
    """A stored baseline: one vanilla side's figures and what they were measured under."""

    schema_version: int = SCHEMA_VERSION
    kind: str = BASELINE_KIND
    fingerprint: str
    created_at: float
    meta: dict[str, Any]
    figures: EngineFigures


class BaselineStore:
    """One JSON file per fingerprint under `root/baselines`."""

    def __init__(
        self,
        root: Path,
        environment: Callable[[], Environment] = installed_environment,
        endpoint_identity: Callable[[str, dict[str, str]], dict[str, Any]] = server_identity,
        settings: Callable[[], dict[str, str]] = lambda: SETTINGS_AT_START,
    ) -> None:
        self.folder = Path(root) / "baselines"
        self._environment = environment
        self._endpoint_identity = endpoint_identity
        self._settings = settings

    def identity(self, side: EngineSpec) -> dict[str, Any]:
        """The fingerprint parts that a baseline kept across sessions needs beyond an in-process one.

        A local engine: the harness, software, device and `VLLM_*` settings it runs with, and the
        model's content. An endpoint: what its server reports about itself, never this machine,
        which measures nothing of a remote server's speed."""
        if side.url is not None:
            return {"harness": __version__, "server": self._endpoint_identity(side.url, auth_headers(side))}
        environment = self._environment()
        return {
            "harness": __version__,
            "model": model_identity(side.model),
            "vllm": environment.vllm,
            "torch": environment.torch,
            "cuda": environment.cuda,
            "device": environment.device,
            "vllm_settings": self._settings(),
        }

    def path(self, fp: str) -> Path:
        if not _FINGERPRINT.fullmatch(fp):
            raise BaselineError(f"{self.folder}: {fp!r} is not a fingerprint (16 to 64 lowercase hex digits)")
        return self.folder / f"{fp}.json"

    def load(self, fp: str) -> tuple[EngineFigures, float] | None:
        """The stored figures, marked as cached, and their age in seconds; None when none is stored."""
        path = self.path(fp)
        if not path.exists():
            return None
        if older_schema(path):
            return None  # fields it lacks would read as empty, never as "not measured": measure again
        document = read_document(path, BASELINE_KIND)
        if document.get("fingerprint") != fp:
            raise BaselineError(f"{path}: fingerprint {document.get('fingerprint')!r} does not match the file name")
        figures = validated(path, EngineFigures, document.get("figures"), "figures")
        age = max(0.0, time.time() - document["created_at"])
        return figures.model_copy(update={"source": "cached"}), age

    def save(self, fp: str, figures: EngineFigures, meta: dict[str, Any]) -> Path:
        document = BaselineFile(fingerprint=fp, created_at=time.time(), meta=meta, figures=figures)
        return write_document(self.path(fp), document)


