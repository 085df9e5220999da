"""The spec-config TOML: what to start, what to run, and which thresholds apply by default.

Everything here is checked before any engine starts, so that a typo costs a second, not the
minutes of an engine start. Errors are `ConfigError`s whose message names the file and the key.
"""

from __future__ import annotations

import hashlib
import math
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .shapes import RANDOM_WEIGHTS_LOAD_FORMAT, is_shaped
from .sequential import LOSSLESS_MARGIN, MIN_P99_REQUESTS, MIN_WINDOWS, interval_level

#: A draft that takes more than this share of the KV cache is past the field's rule of thumb (a
#: draft within ~15 % of the memory left after the target's weights): `[gates] max_kv_capacity_loss`.
KV_CAPACITY_LOSS_LIMIT = 0.15

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

#: Methods whose proposals come from a second set of weights, which the config must name.
DRAFT_METHODS = frozenset({"draft_model", "eagle", "eagle3", "medusa", "mlp_speculator"})

BUILTIN_PROMPT_SETS = ("copy", "chat", "code", "mixed", "long")


class ConfigError(Exception):
    """A user's mistake in a config file: shown as one line, never with a traceback."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(BaseModel):
    """The target model and the engine arguments handed to `vllm.LLM` / `vllm serve` unchanged.

    Keys other than `name` are engine arguments; they are checked against the installed vLLM's
    `EngineArgs` when an engine is about to start (`engines.validate_engine_args`), because the set
    of valid arguments belongs to the user's vLLM, not to us.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)
    dtype: str | None = None
    max_model_len: int | None = Field(default=None, ge=1)
    tensor_parallel_size: int | None = Field(default=None, ge=1)
    gpu_memory_utilization: float | None = Field(default=None, gt=0, le=1)
    enforce_eager: bool | None = None
    seed: int | None = None

    def engine_args(self) -> dict[str, Any]:
        """Every engine argument the user set, without `name` (which becomes `model`)."""
        return self.model_dump(exclude_none=True, exclude={"name"})


class SpeculativeSection(BaseModel):
    """Maps one-to-one onto vLLM's `speculative_config` dict; extra keys pass through."""

    model_config = ConfigDict(extra="allow", frozen=True)

    method: str | None = None
    model: str | None = None
    num_speculative_tokens: int | list[int] = Field(
        description="draft tokens per step; a list is a K sweep: one spec engine per K, all against one vanilla"
    )
    prompt_lookup_min: int | None = Field(default=None, ge=1)
    prompt_lookup_max: int | None = Field(default=None, ge=1)
    draft_tensor_parallel_size: int | None = Field(default=None, ge=1)

    @field_validator("num_speculative_tokens", mode="before")
    @classmethod
    def _check_k(cls, value: Any) -> int | list[int]:
        """Checked before the union sees it, so a bad value gets one plain message, not one per member."""
        def integer(k: Any) -> bool:
            return isinstance(k, int) and not isinstance(k, bool)

        if not (integer(value) or (isinstance(value, list) and all(integer(k) for k in value))):
            raise ValueError(f"Input should be an integer (a list of integers for a K sweep), got {value!r}")
        if not isinstance(value, list):
            if value < 1:
                raise ValueError("Input should be greater than or equal to 1")
            return value
        if not value or any(k < 1 for k in value):
            raise ValueError(f"a K sweep needs one or more K, each >= 1, got {value}")
        if len(set(value)) != len(value):
            raise ValueError(f"a K appears twice in the sweep {value}")
        return sorted(value)

    @property
    def k_values(self) -> list[int]:
        """Every K to measure: one, or a sweep's."""
        k = self.num_speculative_tokens
        return list(k) if isinstance(k, list) else [k]

    @model_validator(mode="after")
    def _check_consistency(self) -> SpeculativeSection:
        if self.method is None and self.model is None:
            raise ValueError("set 'method' (e.g. \"ngram\") or a draft 'model'")
        if self.method in DRAFT_METHODS and not self.model:
            raise ValueError(f"method {self.method!r} needs a draft 'model'")
        if (
            self.prompt_lookup_min is not None
            and self.prompt_lookup_max is not None
            and self.prompt_lookup_min > self.prompt_lookup_max
        ):
            raise ValueError(
                f"prompt_lookup_min ({self.prompt_lookup_min}) > prompt_lookup_max ({self.prompt_lookup_max})"
            )
        return self

    @property
    def label(self) -> str:
        return self.method or "draft_model"

    def vllm_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class MixShare(_Section):
    """One temperature of a mixed batch and its share of the requests."""

    temperature: float = Field(ge=0)
    share: float = Field(gt=0, le=1)


class WorkloadSection(_Section):
    prompts: str = Field(default="builtin:mixed", description="builtin:<set> or a JSONL file")
    num_prompts: int = Field(default=16, ge=1)
    max_tokens: int = Field(default=128, ge=1)
    temperatures: list[float] = Field(default_factory=lambda: [0.0, 0.8], min_length=1)
    temperature_mix: list[MixShare] = Field(
        default_factory=list, description="one more run whose requests sample at several temperatures in one batch "
        "(shares summing to 1, interleaved): e.g. [{temperature = 0.1, share = 0.6}, {temperature = 1.0, share = 0.4}]"
    )
    top_p: float = Field(default=1.0, gt=0, le=1)
    seed: int = 0
    chat_template: bool = True
    ignore_eos: bool = False
    concurrency: list[int] = Field(default_factory=list)
    request_rate: list[float] = Field(default_factory=list)
    burstiness: float = Field(default=1.0, gt=0)

    @field_validator("temperatures")
    @classmethod
    def _non_negative(cls, temps: list[float]) -> list[float]:
        for t in temps:
            if t < 0 or math.isnan(t):
                raise ValueError(f"temperature must be >= 0, got {t}")
        return sorted(set(temps))

    @field_validator("concurrency")
    @classmethod
    def _positive_concurrency(cls, levels: list[int]) -> list[int]:
        if any(c < 1 for c in levels):
            raise ValueError(f"concurrency levels must be >= 1, got {levels}")
        return levels

    @field_validator("request_rate")
    @classmethod
    def _positive_rate(cls, rates: list[float]) -> list[float]:
        if any(not r > 0 for r in rates):
            raise ValueError(f"request rates must be > 0 (inf allowed), got {rates}")
        return rates

    @field_validator("temperature_mix")
    @classmethod
    def _a_mix(cls, mix: list[MixShare]) -> list[MixShare]:
        if not mix:
            return mix
        temperatures = [share.temperature for share in mix]
        if len(mix) < 2 or len(set(temperatures)) != len(temperatures):
            raise ValueError(f"a mix needs two or more distinct temperatures, got {temperatures}")
        if abs(sum(share.share for share in mix) - 1) > 1e-6:
            raise ValueError(f"the shares must sum to 1, got {sum(share.share for share in mix):g}")
        return sorted(mix, key=lambda share: share.temperature)

    def mix_pattern(self) -> tuple[float, ...]:
        """Each request's temperature in a mixed batch of `num_prompts`: interleaved, each request
        going to the temperature furthest behind its share, so every stretch of the batch is mixed."""
        counts = dict.fromkeys((share.temperature for share in self.temperature_mix), 0)
        pattern = []
        for index in range(self.num_prompts):
            behind = max(self.temperature_mix, key=lambda s: s.share * (index + 1) - counts[s.temperature])
            counts[behind.temperature] += 1
            pattern.append(behind.temperature)
        return tuple(pattern)

    @field_validator("prompts")
    @classmethod
    def _known_builtin(cls, source: str) -> str:
        if source.startswith("builtin:") and source.removeprefix("builtin:") not in BUILTIN_PROMPT_SETS:
            raise ValueError(f"unknown built-in prompt set {source!r}; choose from {', '.join(BUILTIN_PROMPT_SETS)}")
        return source


class RunSection(_Section):
    mode: Literal["offline", "server"] = "offline"
    warmup: int = Field(default=2, ge=0, description="requests sent first and excluded from every figure")
    repeats: int = Field(
        default=MIN_WINDOWS, ge=1, description="windows per side and condition before the first verdict; timed "
        f"intervals need at least {MIN_WINDOWS} (fewer: timed gates are inconclusive)"
    )
    max_repeats: int | None = Field(
        default=None, ge=1, description="sequential sampling: while a gate on a condition is inconclusive, measure "
        "more windows for it, up to this many; default twice `repeats`; equal to `repeats` turns it off"
    )
    server_start_timeout_s: float = Field(
        default=600.0, gt=0, description="how long `vllm serve` may take to answer /health (compile and graph capture)"
    )
    request_timeout_s: float = Field(
        default=300.0, gt=0, description="server and endpoint modes: the longest any one HTTP request may take; "
        "a side that times out fails its config for the rest of the session"
    )
    api_key_env: str | None = Field(
        default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="--spec-endpoint servers: the environment variable holding their API key (sent as a bearer "
        "token; the key itself is never written anywhere)",
    )
    metrics_urls: list[str] = Field(
        default_factory=list, description="--spec-endpoint behind a gateway: each spec replica's /metrics page "
        "(counters summed, each replica checked); --spec-metrics-url overrides"
    )
    baseline_metrics_urls: list[str] = Field(
        default_factory=list, description="the same for the --spec-baseline-endpoint side"
    )
    min_valid_output_tokens: float = Field(
        default=3.0, gt=0, description="a mean output shorter than this makes a run invalid"
    )
    min_window_s: float = Field(
        default=3.0, ge=0, description="a measured window shorter than this is flagged: too short to resolve 5%"
    )
    min_p99_requests: int = Field(
        default=MIN_P99_REQUESTS, ge=1, description="fewer requests per side than this: P99 figures are flagged, "
        "and P99 gates and break-even do not judge them"
    )
    lossless_check: bool = Field(
        default=True, description="at T>0, score both sides' outputs with the vanilla engine and test their distributions"
    )
    pause_gc: bool = Field(
        default=True, description="collect Python's garbage before each window and pause the collector during it (as "
        "timeit does): a collection of the pytest process's heap mid-window is the client's pause, not the engine's"
    )

    @model_validator(mode="after")
    def _budget_covers_repeats(self) -> RunSection:
        if self.max_repeats is not None and self.max_repeats < self.repeats:
            raise ValueError(f"max_repeats ({self.max_repeats}) is below repeats ({self.repeats}): it is the most "
                             "windows sequential sampling may take, repeats the first look")
        return self

    @property
    def window_budget(self) -> int:
        """The most windows a condition may take (sequential sampling)."""
        return self.max_repeats if self.max_repeats is not None else 2 * self.repeats

    @property
    def interval_level(self) -> float:
        """The level every interval of this config is drawn at: `ALPHA` spent over its looks."""
        return interval_level(self.repeats, self.window_budget)


class GatesSection(_Section):
    min_acceptance: float | None = Field(default=None, ge=0, le=1)
    min_speedup: float | None = Field(default=None, gt=0)
    max_p99_regression: float | None = Field(default=None, ge=0)
    lossless_min_match: float | None = Field(default=None, ge=0, le=1)
    lossless_margin: float = Field(
        default=LOSSLESS_MARGIN, gt=0, description="lossless at T>0: the equivalence margin, in nats/token of target "
        "log-likelihood; 'lossless' only when the whole interval of spec - vanilla lies within +-margin"
    )
    max_acceptance_drop: float = Field(default=0.05, ge=0, le=1, description="with --spec-compare: points")
    max_speedup_drop: float = Field(default=0.10, ge=0, le=1, description="with --spec-compare: fraction")
    p99_regression_tolerance: float = Field(
        default=0.05, ge=0, description="break-even: E2E P99 this fraction above vanilla's is noise, not a regression"
    )
    max_kv_capacity_loss: float = Field(
        default=KV_CAPACITY_LOSS_LIMIT, ge=0, le=1, description="the share of vanilla's KV-cache capacity a draft may "
        "take: max_kv_capacity_loss gates' default threshold, and where the decision says leave the draft off"
    )


class SpecConfig(_Section):
    model: ModelSection
    speculative: SpeculativeSection
    workload: WorkloadSection = WorkloadSection()
    run: RunSection = RunSection()
    gates: GatesSection = GatesSection()
    path: Path = Path("<memory>")

    @property
    def name(self) -> str:
        return self.path.stem

    @property
    def k_sweep(self) -> bool:
        return isinstance(self.speculative.num_speculative_tokens, list)

    @property
    def parallel_sizes(self) -> dict[str, int | None]:
        """What decides how many GPUs the spec engine takes (`engines.placement.gpus_needed`)."""
        args = self.model.engine_args()
        return {"tensor_parallel_size": int(args.get("tensor_parallel_size", 1)),
                "pipeline_parallel_size": int(args.get("pipeline_parallel_size", 1)),
                "draft_tensor_parallel_size": getattr(self.speculative, "draft_tensor_parallel_size", None)}

    @property
    def random_weights(self) -> bool:
        """vLLM builds the models from their configs with random weights: step costs are real, what
        the models say is noise (a draft of random weights is loaded the target's way too)."""
        return self.model.engine_args().get("load_format") == RANDOM_WEIGHTS_LOAD_FORMAT

    @model_validator(mode="after")
    def _shaped_models_need_random_weights(self) -> SpecConfig:
        for name in (self.model.name, getattr(self.speculative, "model", None)):
            if is_shaped(name) and not self.random_weights:
                raise ValueError(f"{name} has no weights (a production shape for step costs): set [model] "
                                 f'load_format = "{RANDOM_WEIGHTS_LOAD_FORMAT}"')
        return self

    def variants(self) -> list[SpecConfig]:
        """One config per K of a sweep (the config itself when K is one number): each measures as a
        config of its own, and their vanilla side is shared (one fingerprint)."""
        if not self.k_sweep:
            return [self]
        return [self.model_copy(update={"speculative": self.speculative.model_copy(update={"num_speculative_tokens": k})})
                for k in self.speculative.k_values]

    def content_key(self) -> str:
        """What makes two configs the same measurement: everything but their path and gates, and the
        prompts file's bytes."""
        text = self.model_dump_json(exclude={"path", "gates"})
        prompts = Path(self.workload.prompts)
        if not self.workload.prompts.startswith("builtin:") and prompts.is_file():
            text += hashlib.sha256(prompts.read_bytes()).hexdigest()
        return hashlib.sha256(text.encode()).hexdigest()


def load_config(path: str | Path) -> SpecConfig:
    """Read and validate a spec-config; relative paths inside it resolve against its folder."""
    path = Path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse_config(raw, path)


def parse_config(raw: dict[str, Any], path: Path) -> SpecConfig:
    if "path" in raw:
        raise ConfigError(f"{path}: unknown top-level key 'path'")
    try:
        config = SpecConfig.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise ConfigError(f"{path}: {_describe(exc)}") from None
    return _resolve_paths(config)


def _describe(exc: ValidationError) -> str:
    """The first problem as `[section] key: message`, the form a user can grep the file for."""
    problem = exc.errors()[0]
    loc = [str(part) for part in problem["loc"]]
    if problem["type"] == "extra_forbidden":
        message = "unknown key"
    elif problem["type"] == "missing":
        message = "required key is missing"
    else:
        message = problem["msg"].removeprefix("Value error, ")
    if not loc:
        return message
    if len(loc) == 1:
        return f"[{loc[0]}]: {message}" if problem["type"] == "missing" else f"'{loc[0]}': {message}"
    where = f"[{loc[0]}] {'.'.join(loc[1:])}"
    more = f" (and {len(exc.errors()) - 1} more)" if len(exc.errors()) > 1 else ""
    return f"{where}: {message}{more}"


def _resolve_paths(config: SpecConfig) -> SpecConfig:
    base = config.path.parent

    def resolve(value: str | None, key: str) -> str | None:
        if value is None or value.startswith("builtin:"):
            return value
        candidate = base / Path(value).expanduser()
        if candidate.exists():
            return str(candidate)
        # a hub id is "name" or "org/name"; anything else names a local path, which must exist now:
        # found by vLLM, it would be sent to the hub as a repo id, after the other side had run
        if value.startswith((".", "/", "~")) or value.count("/") > 1:
            raise ConfigError(f"{config.path}: {key}: path does not exist: {candidate}")
        return value

    model = config.model.model_copy(update={"name": resolve(config.model.name, "[model] name")})
    speculative = config.speculative.model_copy(
        update={"model": resolve(config.speculative.model, "[speculative] model")}
    )
    prompts = config.workload.prompts
    if not prompts.startswith("builtin:"):
        prompt_file = base / prompts
        if not prompt_file.is_file():
            raise ConfigError(f"{config.path}: [workload] prompts: file not found: {prompt_file}")
        prompts = str(prompt_file)
    workload = config.workload.model_copy(update={"prompts": prompts})
    return config.model_copy(update={"model": model, "speculative": speculative, "workload": workload})
