"""Summary statistics of per-request samples; numpy does the arithmetic."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .schema import Model


class Distribution(Model):
    """Percentiles of one per-request quantity; None everywhere when there were no samples."""

    count: int = 0
    mean: float | None = None
    p10: float | None = None
    p50: float | None = None
    p90: float | None = None
    p99: float | None = None

    @classmethod
    def of(cls, samples: Sequence[float]) -> Distribution:
        values = np.asarray([s for s in samples if s is not None], dtype=float)
        if values.size == 0:
            return cls()
        p10, p50, p90, p99 = np.percentile(values, [10, 50, 90, 99])
        return cls(count=int(values.size), mean=float(values.mean()), p10=p10, p50=p50, p90=p90, p99=p99)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is zero."""
    if numerator is None or not denominator:
        return None
    return numerator / denominator
