"""Where a run's vanilla figures come from: this process's memo, a stored baseline, or a measurement.

`VanillaSource` owns the one fingerprint of "the vanilla figures this run needs". Everything that
shapes them goes in (`baseline.identity` lists it), so two runs share vanilla figures only when
nothing that could change them differs; the memo and the store use the same key.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Protocol

from ..config.spec import SpecConfig
from ..config.workload import Prompt
from ..engines.base import EngineSpec
from ..results import BaselineInfo, EngineFigures, RunWarning
from ..results.schema import SCHEMA_VERSION
from .baseline import BaselineError, BaselineStore, fingerprint
from .plan import Recipe


class BaselineCache(Protocol):
    """Stored vanilla figures keyed by fingerprint (see baseline.BaselineStore)."""

    def identity(self, side: EngineSpec) -> dict: ...

    def load(self, fingerprint: str) -> tuple[EngineFigures, float] | None: ...

    def save(self, fingerprint: str, figures: EngineFigures, meta: dict) -> object: ...


class FreshBaselines:
    """A baseline store seen through the session's options: too old or refreshing means "none"."""

    def __init__(self, store: BaselineStore, max_age_s: float, refresh: bool) -> None:
        self._store, self._max_age_s, self._refresh = store, max_age_s, refresh

    def identity(self, side: EngineSpec) -> dict:
        return self._store.identity(side)

    def load(self, fingerprint: str) -> tuple[EngineFigures, float] | None:
        found = None if self._refresh else self._store.load(fingerprint)
        return found if found is not None and found[1] <= self._max_age_s else None

    def save(self, fingerprint: str, figures: EngineFigures, meta: dict) -> Path:
        return self._store.save(fingerprint, figures, meta)


class VanillaSource:
    """Vanilla figures already known for a fingerprint, and the place new ones are kept."""

    def __init__(self, baselines: BaselineCache | None = None) -> None:
        self.baselines = baselines
        self._memo: dict[str, tuple[EngineFigures, float]] = {}  # figures, and when they were kept

    def fingerprint(self, side: EngineSpec, prompts: list[Prompt], config: SpecConfig, condition: Recipe) -> str:
        """Everything that shapes one condition's vanilla figures; with a store, the machine (or the
        endpoint's server) and the model's content too."""
        parts = {
            # not the URL: an endpoint is identified by what its server reports (baseline.identity)
            "engine": replace(side, url=None).key,
            "prompts": [asdict(p) for p in prompts],
            "chat_template": config.workload.chat_template,
            # a plain batch's key as before mixes existed, so stored baselines stay valid
            "sampling": {k: v for k, v in asdict(condition.sampling).items() if k != "mix" or v},
            "load": asdict(condition.load) if condition.load else None,
            "repeats": config.run.repeats,
            "warmup": config.run.warmup,
            "schema": SCHEMA_VERSION,
        }
        if self.baselines is not None:
            parts["identity"] = self.baselines.identity(side)
        return fingerprint(parts)

    def known(self, key: str) -> tuple[EngineFigures, BaselineInfo] | None:
        """Figures measured earlier in this process (for another config: "memo", never paired with
        this config's spec windows), else a stored baseline, else None."""
        if key in self._memo:
            figures, kept_at = self._memo[key]
            return figures, BaselineInfo(source="memo", fingerprint=key, age_s=time.time() - kept_at)
        stored = self.baselines.load(key) if self.baselines is not None else None
        if stored is None:
            return None
        figures, age_s = stored
        return figures.model_copy(update={"source": "cached"}), BaselineInfo(source="cached", fingerprint=key, age_s=age_s)

    def remember(self, key: str, figures: EngineFigures, new: bool, meta: dict) -> RunWarning | None:
        """Keep vanilla figures (with their scores) for later configs, and store fresh ones; a store
        that cannot be written (read-only, full) is a warning on the run, never a lost measurement."""
        self._memo[key] = figures.model_copy(update={"source": "measured"}), time.time()
        if not new or self.baselines is None:
            return None
        try:
            self.baselines.save(key, figures, meta)
        except (OSError, BaselineError) as exc:
            reason = f"{exc.strerror} ({exc.filename})" if isinstance(exc, OSError) and exc.strerror else str(exc)
            return RunWarning(code="baseline_not_stored", message=f"vanilla baseline not stored: {reason}")
        return None
