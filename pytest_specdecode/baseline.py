"""Stored vanilla baselines and named run history, as plain JSON files a person can read and diff.

A vanilla engine costs a start and a full workload, yet its figures change only when something that
shapes them changes; a baseline keyed by a fingerprint of all of those lets later sessions skip it.
The danger is reusing figures that no longer describe the vanilla engine, so every file is checked
(kind, schema version, fingerprint against its name, figures against the model) and anything off is
a `BaselineError` naming the file: a stale or foreign file is never quietly reused.

Named runs keep whole `ConfigResult`s so that a run can be compared with an earlier one
(`compare_runs`), which catches slow drifts that a fixed threshold lets through.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from .engines.base import EngineSpec, auth_headers
from . import __version__
from .engines.vllm_info import environment as installed_environment
from .engines.vllm_info import server_identity
from .results import ConfigResult, EngineFigures, Environment, RunResult
from .schema import SCHEMA_VERSION, Model, write_document

BASELINE_KIND = "specdecode-baseline"
RUN_KIND = "specdecode-run"

#: Small files whose content changes what a local model computes: the architecture, the generation
#: defaults vLLM applies to sampling parameters a request leaves unset, and the chat template.
MODEL_CONTENT_FILES = (
    "config.json", "generation_config.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
    "tokenizer.json", "tokenizer.model", "special_tokens_map.json", "vocab.json", "merges.txt", "added_tokens.json",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")

_FINGERPRINT = re.compile(r"[0-9a-f]{16,64}")
_RUN_NAME = re.compile(r"[A-Za-z0-9._-]+")
#: Slack for comparing differences of floats against a drop limit, so 0.80 -> 0.75 is not > 0.05.
_EPSILON = 1e-9

Validated = TypeVar("Validated", bound=BaseModel)


class BaselineError(ValueError):
    """A stored file that cannot be used, or a name that cannot be stored; the message names the file."""


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


class RunFile(Model):
    """A named run: a whole `ConfigResult`, kept to compare a later run with."""

    schema_version: int = SCHEMA_VERSION
    kind: str = RUN_KIND
    name: str
    created_at: float
    result: ConfigResult


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
        if _older_schema(path):
            return None  # fields it lacks would read as empty, never as "not measured": measure again
        document = _read(path, BASELINE_KIND)
        if document.get("fingerprint") != fp:
            raise BaselineError(f"{path}: fingerprint {document.get('fingerprint')!r} does not match the file name")
        figures = _validate(path, EngineFigures, document.get("figures"), "figures")
        age = max(0.0, time.time() - document["created_at"])
        return figures.model_copy(update={"source": "cached"}), age

    def save(self, fp: str, figures: EngineFigures, meta: dict[str, Any]) -> Path:
        document = BaselineFile(fingerprint=fp, created_at=time.time(), meta=meta, figures=figures)
        return write_document(self.path(fp), document)


class HistoryStore:
    """Named `ConfigResult`s under `root/runs`, one JSON file per name."""

    def __init__(self, root: Path) -> None:
        self.folder = Path(root) / "runs"

    def path(self, name: str) -> Path:
        if not _RUN_NAME.fullmatch(name):
            raise BaselineError(f"{self.folder}: run name {name!r} may hold only letters, digits, '.', '_' and '-'")
        return self.folder / f"{name}.json"

    def save(self, name: str, result: ConfigResult) -> Path:
        return write_document(self.path(name), RunFile(name=name, created_at=time.time(), result=result))

    def load(self, name: str) -> ConfigResult:
        path = self.path(name)
        if not path.exists():
            raise BaselineError(f"{path}: no stored run named {name!r}")
        return _load_run(path)[1]

    def latest(self, suffix: str = "", environment: Environment | None = None) -> tuple[str, ConfigResult] | None:
        """The most recently saved run whose name ends with `suffix` (measured on the same machine
        as `environment`, when given); a broken file in the folder is an error, not skipped, since
        skipping it would silently compare against an older run."""
        if not self.folder.is_dir():
            return None
        stored = [(_load_run(path), path.stem) for path in self.folder.glob(f"*{suffix}.json")]
        if environment is not None:
            stored = [item for item in stored if same_machine(environment, item[0][1].environment)]
        if not stored:
            return None
        (_, result), name = max(stored, key=lambda item: (item[0][0], item[1]))
        return name, result


def _load_run(path: Path) -> tuple[float, ConfigResult]:
    document = _read(path, RUN_KIND)
    if document.get("name") != path.stem:
        raise BaselineError(f"{path}: run name {document.get('name')!r} does not match the file name")
    return document["created_at"], _validate(path, ConfigResult, document.get("result"), "result")


@dataclass(frozen=True)
class Comparison:
    """A run against a stored one: drops beyond the limits (`drops`), drops whose interval does not
    clear the limit (`unsure`), or why the two cannot be compared at all (`not_comparable`)."""

    drops: list[str] = field(default_factory=list)
    unsure: list[str] = field(default_factory=list)
    not_comparable: str | None = None

    @property
    def outcome(self) -> str:
        if self.drops:
            return "fail"
        return "inconclusive" if self.unsure or self.not_comparable else "pass"

    @property
    def messages(self) -> list[str]:
        return self.drops + self.unsure + ([self.not_comparable] if self.not_comparable else [])


def same_machine(current: Environment, previous: Environment) -> bool:
    """Stored runs are keyed by environment, as pytest-benchmark keys them by machine: a speedup
    measured on another device or vLLM says nothing about a drop on this one."""
    return (current.device, current.vllm, current.torch) == (previous.device, previous.vllm, previous.torch)


def compare_runs(
    current: ConfigResult, previous: ConfigResult, max_acceptance_drop: float, max_speedup_drop: float
) -> Comparison:
    """Each run against the previous run at the same config, temperature and load.

    A drop is a regression only when the current run's 95% interval lies wholly past the limit
    (acceptance more than `max_acceptance_drop` points below, speedup more than the fraction
    `max_speedup_drop` below the stored figure); a point drop past the limit whose interval
    reaches back is `unsure`. Runs from another machine are not compared."""
    if not same_machine(current.environment, previous.environment):
        was, now = previous.environment, current.environment
        return Comparison(not_comparable=(
            f"{current.config_name}: the stored run was measured on {was.device} (vLLM {was.vllm}), this one on "
            f"{now.device} (vLLM {now.vllm}): not compared"
        ))
    earlier = {_run_key(run): run for run in previous.runs}
    drops: list[str] = []
    unsure: list[str] = []
    for run in current.runs:
        before = earlier.get(_run_key(run))
        if before is not None:
            _regressions(run, before, max_acceptance_drop, max_speedup_drop, drops, unsure)
    return Comparison(drops, unsure)


def _run_key(run: RunResult) -> tuple[str, float, int | None, float | None]:
    return run.config_name, round(run.temperature, 9), run.concurrency, run.request_rate


def _regressions(
    run: RunResult, before: RunResult, max_acceptance_drop: float, max_speedup_drop: float,
    drops: list[str], unsure: list[str],
) -> None:
    if not run.valid:
        drops.append(f"{run.label}: invalid run, not compared with the previous one: {run.invalid_reason}")
        return
    if not before.valid:
        unsure.append(f"{run.label}: previous run was invalid ({before.invalid_reason}), nothing to compare with")
        return
    old, new, ci = before.acceptance_rate, run.acceptance_rate, run.acceptance_rate_ci
    if old is not None and new is not None and old - new > max_acceptance_drop + _EPSILON:
        limit = old - max_acceptance_drop
        text = f"acceptance at {run.label} fell from {old:.2f} to {new:.2f} ({new - old:+.2f} > {max_acceptance_drop:g})"
        _judge(text, ci, limit, drops, unsure)
    old, new, ci = before.speedup, run.speedup, run.speedup_ci
    if old and new is not None and (old - new) / old > max_speedup_drop + _EPSILON:
        limit = old * (1 - max_speedup_drop)
        text = (f"speedup at {run.label} fell from {old:.2f}x to {new:.2f}x "
                f"({(new - old) / old:+.1%} > {max_speedup_drop * 100:g}%)")
        _judge(text, ci, limit, drops, unsure)


def _judge(text: str, interval: list[float] | None, limit: float, drops: list[str], unsure: list[str]) -> None:
    """A drop whose whole interval is below the limit is a regression; one whose interval reaches it is not sure."""
    if interval is None or interval[1] < limit:
        drops.append(text + ("" if interval is None else f", 95% interval up to {interval[1]:.2f} < {limit:.2f}"))
    else:
        unsure.append(text + f", but its 95% interval reaches {interval[1]:.2f} >= {limit:.2f}: not sure")


def _older_schema(path: Path) -> bool:
    """Whether the file is a well-formed document written by an older schema version."""
    try:
        version = json.loads(path.read_text(encoding="utf-8")).get("schema_version")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        return False  # _read names the problem
    return isinstance(version, int) and not isinstance(version, bool) and version < SCHEMA_VERSION


def _read(path: Path, kind: str) -> dict[str, Any]:
    """The file's JSON document, checked for kind, schema version and creation time."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BaselineError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BaselineError(f"{path}: not JSON ({exc})") from None
    if not isinstance(document, dict):
        raise BaselineError(f"{path}: not a {kind} file (top level is {type(document).__name__}, not an object)")
    if document.get("kind") != kind:
        raise BaselineError(f"{path}: kind is {document.get('kind')!r}, expected {kind!r}")
    if document.get("schema_version") != SCHEMA_VERSION:
        raise BaselineError(
            f"{path}: schema_version {document.get('schema_version')!r}, this version reads {SCHEMA_VERSION}"
        )
    created_at = document.get("created_at")
    if isinstance(created_at, bool) or not isinstance(created_at, (int, float)):
        raise BaselineError(f"{path}: created_at {created_at!r} is not a unix time")
    return document


def _validate(path: Path, model: type[Validated], data: Any, what: str) -> Validated:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "(top level)"
        raise BaselineError(f"{path}: {what} do not validate: {where}: {problem['msg']}") from None
