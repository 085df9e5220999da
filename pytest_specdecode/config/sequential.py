"""How much evidence a verdict needs: one false-alarm rate for every gate, spent over the looks of
sequential sampling.

A gate passes or fails only when its interval lies wholly on one side of its threshold; anything
else is "inconclusive". When a verdict is inconclusive after `[run] repeats` windows, the plugin
measures more windows for that condition, up to `[run] max_repeats`, and judges again. Each look
at the data is one more chance of a false alarm, so the overall rate `ALPHA` is split evenly over
the looks planned (Bonferroni: the crudest alpha-spending rule, valid whatever the looks' data
share): every interval of a config is drawn at level 1 - ALPHA / looks, whether or not the later
looks are needed, so a verdict taken at the first look is as strict as one taken at the last.
Standard library only: the config and the plan read it.
"""

from __future__ import annotations

#: The one false-alarm rate of every gate: a pass or fail is wrong at most this often (two-sided,
#: so a wrong "fail" at most half of it). The A/A lossless runs show why not 0.05: a correct sampler
#: would fail one CI run in twenty.
ALPHA = 0.01
#: Fewer windows a side than this give no usable between-window spread: a t interval with one
#: degree of freedom is a dozen standard errors wide, and with one window there is no spread at all.
MIN_WINDOWS = 3
#: With fewer requests a side, a P99 is an interpolation towards the single slowest request: one
#: outlier decides it, so no P99 gate or break-even statement reads it (`[run] min_p99_requests`).
MIN_P99_REQUESTS = 20
#: Lossless at T>0: how far apart, in nats per token of target log-likelihood, spec and vanilla
#: outputs may score and still be called lossless (docs/reading-the-numbers.md argues the value).
LOSSLESS_MARGIN = 0.1


def looks(repeats: int, max_repeats: int) -> list[int]:
    """The window counts at which a condition's verdicts are taken: after `repeats`, half-way to
    `max_repeats`, then at `max_repeats` (fewer where they coincide)."""
    top = max(repeats, max_repeats)
    return sorted({repeats, (repeats + top + 1) // 2, top})


def interval_level(repeats: int, max_repeats: int, alpha: float = ALPHA) -> float:
    """The confidence level of every interval a config's verdicts read: alpha spent evenly over its looks."""
    return 1.0 - alpha / len(looks(repeats, max_repeats))


def next_look(measured: int, repeats: int, max_repeats: int) -> int | None:
    """How many windows the next look needs, or None when the budget is spent."""
    return next((n for n in looks(repeats, max_repeats) if n > measured), None)
