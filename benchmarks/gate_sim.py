"""Simulated runs for judging the gates: a noise model fitted to the windows kept in benchmarks/results.

Three levels of timing noise, none of them log-normal (so not the intervals' own model):

- engine start: every engine start runs at its own speed for the whole session, a factor uniform
  on 1 +- engine_cv * sqrt(3) (standard deviation `engine_cv`) per side. No stored session repeats
  one config on one build, so this is an assumption (5 %), not a fit; the windows cannot see it.
- window: each measured window runs at its own speed, a gamma factor with mean 1 and CV
  `window_cv`, fitted per regime to the spread of tokens/s between the windows of one side.
- request: each request's time per token is a prompt factor (gamma, `prompt_cv`, the same prompt
  in every window) times a jitter (gamma, `request_cv`, new in every window), both fitted on the
  server c=1 T=0 runs, where the same prompts run one at a time in two windows.

Output lengths are drawn from the stored requests of the matching workload. Acceptance: each
prompt has its own rate (beta around the truth, between-prompt dispersion fitted), each window's
draw of it its own (beta, within-prompt dispersion fitted), accepted tokens per step binomial.
Lossless at T>0: each request of each window is a draw of two of the stored A/A rounds of one
prompt (`*-lossless-false-alarm.json`, one vanilla engine, every output scored), the spec draw
shifted by `delta` nats/token: the real spread of the scores, not a fitted shape.

Windows are generated one ABBA pair at a time from one RNG stream, so a simulated condition can
be extended by sequential sampling exactly as the plugin extends a real one.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from pytest_specdecode.results import BaselineInfo, EngineFigures, RequestSample, RunResult, SpecCounters, Window

RESULTS = Path(__file__).resolve().parent / "results"
ENGINE_CV = 0.05  # assumed (see the module docstring)
BASE_TPOT_S = 0.004
TTFT_TOKENS = 4.0  # a request's TTFT as this many of its own decode steps


# --------------------------------------------------------------------------------------------- fit


@dataclass(frozen=True)
class Regime:
    """Timing noise of one kind of window (GPU offline batches, GPU server, CPU)."""

    name: str
    window_cv: float
    window_cv_sides: int  # independent within-side spreads pooled into window_cv
    sources: list[str]


@dataclass(frozen=True)
class Noise:
    regimes: dict[str, Regime]
    request_cv: float
    prompt_cv: float
    engine_cv: float
    acceptance_between: float  # between-prompt variance of acceptance over a(1 - a)
    acceptance_within: float  # a prompt's window-to-window variance beyond binomial, over a(1 - a)
    window_pair_correlation: float  # of the log rates of spec and vanilla windows of one pair (not simulated)
    tokens: dict[str, list[int]] = field(repr=False)
    scored: dict[str, list[list[list[float]]]] = field(repr=False)  # rounds x prompts x (logprob, tokens)
    sources: dict[str, list[str]] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        """The fitted parameters as JSON, without the pools."""
        out = {k: v for k, v in asdict(self).items() if k not in ("tokens", "scored")}
        out["tokens"] = {k: {"requests": len(v), "mean": float(np.mean(v)), "p99": float(np.percentile(v, 99))}
                         for k, v in self.tokens.items()}
        out["scored"] = {k: {"rounds": len(v), "prompts": len(v[0]), "per_pair_sd": _pair_sd(v)}
                         for k, v in self.scored.items()}
        return out


def _pair_sd(rounds: list[list[list[float]]]) -> float:
    """sd over prompts of the A/A difference of two rounds' per-request log-probabilities, averaged over round pairs."""
    a = np.array(rounds)[:, :, 0]
    diffs = [np.std(a[i] - a[i + 1], ddof=1) for i in range(0, len(a) - 1, 2)]
    return float(np.mean(diffs))


def _runs(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    return data.get("runs", []) if isinstance(data, dict) else []


def _log_rates(side: dict) -> list[float]:
    return [math.log(w["output_tokens"] / w["duration_s"]) for w in side.get("windows", []) if w["duration_s"] > 0]


@cache
def fit(results: Path = RESULTS) -> Noise:
    """Every parameter from the stored reports (and the one assumption, ENGINE_CV)."""
    spreads: dict[str, list[tuple[float, int]]] = {"gpu-offline": [], "gpu-server": [], "cpu": []}
    sources: dict[str, set[str]] = {k: set() for k in spreads}
    pair_products, pair_s, pair_v = [], [], []
    jitter, prompt_spread, jitter_sources = [], [], set()
    between, within, acc_sources = [], [], set()
    tokens = {"mixed": [], "copy": []}
    for path in sorted(RESULTS.glob("*.json")):
        for run in _runs(path):
            regime = "cpu" if path.name.startswith("cpu") else "gpu-server" if run.get("mode") == "server" else "gpu-offline"
            seen = set()
            for role in ("spec", "vanilla"):
                side = run[role]
                key = (role, tuple(w["duration_s"] for w in side.get("windows", [])))
                rates = _log_rates(side)
                if len(rates) >= 2 and key not in seen and side.get("source") != "cached":
                    seen.add(key)
                    spreads[regime].append((float(np.var(rates, ddof=1)), len(rates) - 1))
                    sources[regime].add(path.name)
            s, v = _log_rates(run["spec"]), _log_rates(run["vanilla"])
            if len(s) == len(v) == 2 and run["vanilla"].get("source") != "cached":
                pair_products.append((s[0] - s[1]) * (v[0] - v[1]))
                pair_s.append((s[0] - s[1]) ** 2)
                pair_v.append((v[0] - v[1]) ** 2)
            workload = "mixed" if "mixed" in run.get("workload", "") else "copy"
            if run["temperature"] == 0:
                tokens[workload].extend(x["output_tokens"] for x in run["vanilla"]["samples"] if x["repeat"] == 0)
            if run["temperature"] == 0 and run.get("concurrency") == 1:
                _fit_requests(run, jitter, prompt_spread)
                jitter_sources.add(path.name)
            if run["temperature"] > 0 and run["spec"]["samples"]:
                if _fit_acceptance(run, between, within):
                    acc_sources.add(path.name)
    for path in sorted(RESULTS.glob("*overhead*.json")):
        data = json.loads(path.read_text())
        regime = "cpu" if "cpu" in data["environment"].get("device", "") else "gpu-offline"
        for name in ("bare_tokens_per_s", "plugin_tokens_per_s"):
            logs = np.log(data[name])
            spreads[regime].append((float(np.var(logs, ddof=1)), len(logs) - 1))
        sources[regime].add(path.name)
    for path in sorted(RESULTS.glob("*vs-bench-serve*.json")):
        data = json.loads(path.read_text())
        for level in data.get("levels", []):
            for name in ("plugin_rounds", "vllm_bench_serve_rounds"):
                logs = np.log([r["output_tokens"] / r["duration_s"] for r in level[name]])
                if logs.size >= 2:
                    spreads["gpu-server"].append((float(np.var(logs, ddof=1)), logs.size - 1))
                    sources["gpu-server"].add(path.name)
    regimes = {
        name: Regime(name, math.sqrt(sum(v * df for v, df in found) / sum(df for _, df in found)),
                     len(found), sorted(sources[name]))
        for name, found in spreads.items()
    }
    scored = {}
    for name, path in (("gpu", "h200-lossless-false-alarm.json"), ("cpu", "cpu-lossless-false-alarm.json")):
        scored[name] = json.loads((RESULTS / path).read_text())["scored"]
    prompt_var = max(float(np.mean(prompt_spread)) - float(np.mean(jitter)) / 2, 0.0)
    return Noise(
        regimes=regimes,
        request_cv=math.sqrt(float(np.mean(jitter))),
        prompt_cv=math.sqrt(prompt_var),
        engine_cv=ENGINE_CV,
        acceptance_between=max(float(np.mean(between)), 0.0),
        acceptance_within=max(float(np.mean(within)), 0.0),
        window_pair_correlation=float(sum(pair_products) / math.sqrt(sum(pair_s) * sum(pair_v))),
        tokens=tokens,
        scored=scored,
        sources={
            "request_cv": sorted(jitter_sources), "acceptance": sorted(acc_sources),
            "scored": ["h200-lossless-false-alarm.json (gpu)", "cpu-lossless-false-alarm.json (cpu)"],
            "engine_cv": ["assumed: no stored session repeats a config on one build and engine args"],
        },
    )


def _fit_requests(run: dict, jitter: list[float], prompt_spread: list[float]) -> None:
    """Same prompts, one at a time, two windows: a prompt's change of log TPOT between windows
    (less the windows' own change) is jitter; the spread of prompts' mean log TPOT is the prompt factor."""
    for role in ("spec", "vanilla"):
        samples = run[role]["samples"]
        by_repeat: dict[int, list[float]] = {}
        for x in samples:
            if x.get("tpot_s") and x["output_tokens"] >= 8:
                by_repeat.setdefault(x["repeat"], []).append(math.log(x["tpot_s"]))
            else:
                by_repeat.setdefault(x["repeat"], []).append(float("nan"))
        if len(by_repeat) < 2 or len(by_repeat[0]) != len(by_repeat[1]):
            continue
        a, b = np.array(by_repeat[0]), np.array(by_repeat[1])
        ok = np.isfinite(a) & np.isfinite(b)
        d = (a - b)[ok]
        jitter.append(float(np.var(d, ddof=1) / 2))
        prompt_spread.append(float(np.var((a + b)[ok] / 2, ddof=1)))


def _fit_acceptance(run: dict, between: list[float], within: list[float]) -> bool:
    """Per prompt and window: accepted over drafted from the stream's chunks (as the interval reads them)."""
    k = run["num_speculative_tokens"]
    rates: dict[int, list[tuple[float, int]]] = {}
    samples = run["spec"]["samples"]
    n = sum(1 for x in samples if x["repeat"] == 0)
    for i, x in enumerate(samples):
        steps = x["chunk_tokens"][1:]
        if steps:
            rates.setdefault(i % n, []).append(((sum(steps) - len(steps)) / (k * len(steps)), len(steps)))
    pairs = [v for v in rates.values() if len(v) == 2]
    if len(pairs) < 8:
        return False
    r = np.array([[a for a, _ in v] for v in pairs])
    steps = np.array([[s for _, s in v] for v in pairs])
    mean = float(r.mean())
    if not 0.02 < mean < 0.98:
        return False
    scale = mean * (1 - mean)
    binomial = (r * (1 - r) / (k * steps)).mean(axis=1)
    extra_within = float(np.mean((r[:, 0] - r[:, 1]) ** 2 / 2 - binomial))
    within.append(extra_within / scale)
    between.append(float((np.var(r.mean(axis=1), ddof=1) - np.mean(binomial + extra_within) / 2) / scale))
    return True


# ----------------------------------------------------------------------------------------- simulate


@dataclass(frozen=True)
class Setting:
    """What one shipped example measures: the regime of its windows and its workload."""

    name: str
    regime: str
    num_prompts: int
    concurrency: int  # server level, or the offline batch (windows last sum(e2e) / concurrency)
    workload: str  # which token pool
    max_tokens: int
    scored: str  # which A/A scores
    num_speculative_tokens: int


SETTINGS = {
    "eagle": Setting("eagle", "gpu-offline", 64, 64, "mixed", 256, "gpu", 4),
    "gpu-ngram c=1": Setting("gpu-ngram c=1", "gpu-server", 64, 1, "copy", 256, "gpu", 5),
    "cpu-ngram": Setting("cpu-ngram", "cpu", 16, 16, "copy", 48, "cpu", 3),
}


class SimulatedCondition:
    """One config at one condition, spec vs vanilla, measured window pair by window pair.

    `spec_scale`: spec's time per request over vanilla's (1 / speedup; 1 + regression for P99).
    `acceptance`: the true counter acceptance of this workload (None: no chunks drawn).
    `delta`: spec's shift of target log-probability per token (None: nothing scored).
    """

    def __init__(self, seed: int, setting: Setting, noise: Noise, spec_scale: float = 1.0,
                 acceptance: float | None = None, delta: float | None = None, num_prompts: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.setting, self.noise = setting, noise
        self.n = num_prompts or setting.num_prompts
        self.regime = noise.regimes[setting.regime]
        rng = self.rng
        pool = np.minimum(np.array(noise.tokens[setting.workload]), setting.max_tokens)
        self.tokens = rng.choice(pool, self.n)
        self.prompt_factor = _gamma(rng, noise.prompt_cv, self.n)
        engine = 1 + noise.engine_cv * math.sqrt(3) * rng.uniform(-1, 1, 2)
        self.scale = {"spec": spec_scale * engine[0], "vanilla": engine[1]}
        self.acceptance = acceptance
        if acceptance is not None:
            k = setting.num_speculative_tokens
            self.steps = np.maximum(1, np.round(self.tokens / (1 + k * acceptance))).astype(int)
            p = _beta(rng, acceptance, noise.acceptance_between, self.n)
            for _ in range(20):  # this workload's true counter acceptance is `acceptance` exactly
                p = np.clip(p * acceptance / (np.sum(p * self.steps) / self.steps.sum()), 1e-4, 1 - 1e-4)
            self.prompt_acceptance = p
        self.delta = delta
        if delta is not None:
            self.scored = np.array(noise.scored[setting.scored])  # rounds x prompts x 2
            self.score_prompt = rng.permutation(np.resize(np.arange(self.scored.shape[1]), self.n))
        self.samples: dict[str, list[RequestSample]] = {"spec": [], "vanilla": []}
        self.windows: dict[str, list[Window]] = {"spec": [], "vanilla": []}
        self.counters = SpecCounters()

    @property
    def measured(self) -> int:
        return len(self.windows["spec"])

    def extend(self, windows: int) -> None:
        """Measure window pairs until each side has `windows`: ABBA, vanilla first on even repeats."""
        while self.measured < windows:
            repeat = self.measured
            scores = self._scores() if self.delta is not None else None
            for role in (("vanilla", "spec") if repeat % 2 == 0 else ("spec", "vanilla")):
                self._window(role, repeat, scores)

    def _scores(self) -> dict[str, np.ndarray]:
        """Each request's pair of scored outputs: two distinct A/A rounds of its prompt."""
        rounds = self.scored.shape[0]
        first = self.rng.integers(0, rounds, self.n)
        second = (first + self.rng.integers(1, rounds, self.n)) % rounds
        spec = self.scored[first, self.score_prompt].copy()
        spec[:, 0] += self.delta
        return {"spec": spec, "vanilla": self.scored[second, self.score_prompt]}

    def _window(self, role: str, repeat: int, scores: dict[str, np.ndarray] | None) -> None:
        rng, n = self.rng, self.n
        factor = _gamma(rng, self.regime.window_cv, 1)[0]
        tokens = self.tokens if scores is None else scores[role][:, 1].astype(int)
        per_token = BASE_TPOT_S * self.scale[role] * factor * self.prompt_factor * _gamma(rng, self.noise.request_cv, n)
        ttft = TTFT_TOKENS * per_token
        e2e = ttft + (tokens - 1) * per_token
        chunks: list[list[int]] = [[] for _ in range(n)]
        if role == "spec" and self.acceptance is not None:
            chunks = self._chunks()
        for i in range(n):
            self.samples[role].append(RequestSample.model_construct(
                prompt_tokens=32, output_tokens=int(tokens[i]), ttft_s=float(ttft[i]), e2e_s=float(e2e[i]),
                itl_s=[], chunk_tokens=chunks[i], output_token_ids=[], output_text="", repeat=repeat, seed=None,
                scheduled_ttft_s=None, target_logprob=None if scores is None else float(scores[role][i, 0]),
            ))
        self.windows[role].append(Window.model_construct(
            duration_s=float(e2e.sum() / self.setting.concurrency), output_tokens=int(tokens.sum()),
            prefix_cache_reset=True, started_at=None, engine_generation_tokens=None, client_cpu_s=None,
            client_lag_ms=None,
        ))

    def _chunks(self) -> list[list[int]]:
        """This window's draw of every request's steps: accepted tokens per step binomial(K, p)."""
        k = self.setting.num_speculative_tokens
        p = _beta(self.rng, self.prompt_acceptance, self.noise.acceptance_within, self.n)
        accepted = self.rng.binomial(k, np.repeat(p, self.steps))
        split = np.split(accepted, np.cumsum(self.steps)[:-1])
        self.counters = self.counters + SpecCounters(
            num_drafts=int(self.steps.sum()), num_draft_tokens=int(k * self.steps.sum()),
            num_accepted_tokens=int(accepted.sum()),
        )
        return [[1, *(int(a) + 1 for a in steps)] for steps in split]

    def run_result(self, temperature: float, interval_level: float | None) -> RunResult:
        figures = {
            role: EngineFigures.model_construct(
                samples=list(self.samples[role]), windows=list(self.windows[role]), kv_cache_tokens=None,
                source="measured", duration_s=sum(w.duration_s for w in self.windows[role]),
            )
            for role in ("spec", "vanilla")
        }
        extra: dict[str, Any] = {}
        if interval_level is not None and "interval_level" in RunResult.model_fields:
            extra["interval_level"] = interval_level
        counters = self.counters if self.acceptance is not None else SpecCounters(
            num_drafts=10, num_draft_tokens=30, num_accepted_tokens=20)
        return RunResult(
            config=f"{self.setting.name}.toml", config_name=self.setting.name, model="m", method="sim",
            num_speculative_tokens=self.setting.num_speculative_tokens, workload=f"builtin:{self.setting.workload}",
            temperature=temperature, counters=counters, spec=figures["spec"], vanilla=figures["vanilla"],
            baseline=BaselineInfo(source="measured", fingerprint="0" * 24, age_s=0.0), **extra,
        )


def _gamma(rng: np.random.Generator, cv: float, size: int) -> np.ndarray:
    """Mean-1 gamma factors with coefficient of variation `cv` (skewed: slowdowns outrun speedups)."""
    if cv <= 0:
        return np.ones(size)
    shape = 1 / cv**2
    return rng.gamma(shape, 1 / shape, size)


def _beta(rng: np.random.Generator, mean: float | np.ndarray, rho: float, size: int) -> np.ndarray:
    """Beta draws with the given mean(s) and variance rho * mean * (1 - mean)."""
    mean = np.broadcast_to(np.asarray(mean, dtype=float), (size,))
    if rho <= 0:
        return mean.copy()
    total = 1 / rho - 1
    return rng.beta(np.maximum(mean * total, 1e-3), np.maximum((1 - mean) * total, 1e-3))
