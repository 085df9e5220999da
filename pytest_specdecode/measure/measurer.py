"""Config -> engines -> workload -> one `ConfigResult`: the measured comparison.

Order matters for honesty and for memory: each engine is warmed up first (excluded from every
figure), its spec counters are read before and after the measured window (so only the window
counts), and each side measures all temperatures while it is the engine in hand, so a pool of one
live engine needs only one start per side.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Protocol

from ..config.models import resolve_model
from ..config.sequential import next_look
from ..config.spec import SpecConfig
from ..config.workload import WARMUP_PROMPT, Prompt, RenderedPrompts, check_lengths, load_prompts, local_tokenizer, render
from ..engines.base import Engine, EngineSpec, EngineStartError, Sampling
from ..engines.metrics import EngineCounters
from ..engines.pool import EnginePool
from ..results import ConfigResult, EngineFigures, LosslessCheck, RunResult, Verdict, Window
from ..results.figures import TargetCounters
from .divergence import score_divergences
from .lossless import check_lossless, not_measured
from .plan import Recipe, Step, conditions, plan_windows, window_order
from .state import ConfigMeasurement, draft_memory
from .vanilla import BaselineCache, VanillaSource

Progress = Callable[[str], None]


class Undecided(Protocol):
    """What sequential sampling asks of a gate (`gates.kinds.Gate` is one), so measuring needs no
    gate kind: the verdicts on a result that more windows of their condition could resolve."""

    def undecided(self, result: ConfigResult) -> list[Verdict]: ...


class MeasurementInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM in the middle of a config, carrying the conditions it had finished.

    A KeyboardInterrupt still (the session must stop), so code that does not know it sees an
    interrupt; the session keeps `partial` so the report shows what was measured before it.
    """

    def __init__(self, interrupt: KeyboardInterrupt, partial: ConfigResult, total: int) -> None:
        super().__init__(*interrupt.args)  # what the user sees stays the signal's own message
        self.partial = partial
        self.total = total


@dataclass(frozen=True)
class Endpoints:
    """Already running servers to measure instead of starting engines (`--spec-endpoint`)."""

    spec: str
    vanilla: str | None = None
    #: Each side's /metrics pages (replicas behind a gateway); empty: the endpoint's own /metrics.
    spec_metrics: tuple[str, ...] = ()
    vanilla_metrics: tuple[str, ...] = ()


def engine_specs(config: SpecConfig, defaults: dict, endpoints: Endpoints | None = None,
                 log_dir: str | None = None) -> tuple[EngineSpec, EngineSpec | None]:
    """The speculative engine and its vanilla twin (same target, same engine arguments).

    Against an endpoint without a vanilla endpoint there is no twin to start: None.
    """
    engine_args = {**defaults, **config.model.engine_args()}
    speculative = config.speculative.vllm_dict()
    if endpoints is not None:
        # the tokenizer that renders prompts still loads here, so builtin: names resolve as usual
        spec = EngineSpec(
            resolve_model(config.model.name), engine_args, speculative, "endpoint", endpoints.spec,
            request_timeout_s=config.run.request_timeout_s, api_key_env=config.run.api_key_env,
            metrics_urls=endpoints.spec_metrics or tuple(config.run.metrics_urls),
        )
        if not endpoints.vanilla:
            return spec, None
        vanilla_metrics = endpoints.vanilla_metrics or tuple(config.run.baseline_metrics_urls)
        return spec, replace(spec.vanilla_twin(endpoints.vanilla), metrics_urls=vanilla_metrics)
    if "model" in speculative:
        speculative["model"] = resolve_model(speculative["model"])
    spec = EngineSpec(
        resolve_model(config.model.name), engine_args, speculative, config.run.mode,
        start_timeout_s=config.run.server_start_timeout_s, request_timeout_s=config.run.request_timeout_s,
        log_dir=log_dir,
    )
    return spec, spec.vanilla_twin()


class Measurer:
    """Measures configs on a pool's engines. A config measured before by this measurer (same
    content, wherever its file lives) is not measured again; a vanilla side seen before is reused,
    and one stored in `baselines` (same fingerprint) is reused without starting its engine.

    A session makes its own unless a `pytest_specdecode_measurer` hook returns one to share.
    """

    def __init__(
        self,
        pool: EnginePool,
        defaults: dict | None = None,
        progress: Progress = lambda _: None,
        baselines: BaselineCache | None = None,
    ) -> None:
        self.pool = pool
        self.defaults = defaults or {}
        self.progress = progress
        self.vanilla = VanillaSource(baselines)
        self.endpoints: Endpoints | None = None
        #: where engines of ours keep their logs (the session's `--spec-log-dir`, by default <rootdir>/.specdecode/logs);
        #: None (a measurer used on its own): a temporary folder, removed after a clean stop
        self.log_dir: str | None = None
        self._warmed: weakref.WeakSet = weakref.WeakSet()
        self._measured: dict[str, ConfigResult] = {}
        #: where this process's time went, for the report's session breakdown
        self.seconds: dict[str, float] = {"engine_start": 0.0, "engine_stop": 0.0, "warmup": 0.0, "measurement": 0.0,
                                          "scoring": 0.0}

    def measure(self, config: SpecConfig, gates: Sequence[Undecided] = ()) -> ConfigResult:
        """The comparison for `config`, measured on first request (per content and endpoints).

        `gates`: the gates the session's tests put on this config; while one of them is
        inconclusive on a condition, that condition gets more windows (sequential sampling, up to
        `[run] max_repeats`)."""
        key = config.content_key() + repr(self.endpoints)
        if key not in self._measured:
            self._measured[key] = self._measure(config, gates) if not config.k_sweep else self._sweep(config, gates)
        measured = self._measured[key]
        named = {"config": str(config.path), "config_name": config.name}
        return measured.model_copy(update={**named, "runs": [run.model_copy(update=named) for run in measured.runs]})

    def _measure(self, config: SpecConfig, gates: Sequence[Undecided]) -> ConfigResult:
        """Every planned window, then the runs; then more windows for the conditions a gate cannot
        yet decide, look after look; an interrupt still yields the conditions it finished."""
        state = self._prepare(config)
        both_fit = self.pool.max_live >= 2
        state.order = window_order(both_fit)
        plan = plan_windows(state.conditions, config.run.repeats, both_fit, state.to_measure)
        try:
            self._run_plan(state, plan)
            runs = self._runs(state, state.conditions, lossless=True)
            while looks := self._next_looks(state, runs, gates):
                for target, todo in looks.items():
                    extra = plan_windows(todo, target, both_fit, state.to_measure & set(todo), state.measured_windows(todo[0]))
                    plan += extra
                    self._run_plan(state, extra)
                runs = self._runs(state, state.conditions, lossless=True)
        except KeyboardInterrupt as interrupt:
            # no lossless scoring here: it needs the engines the interrupt is stopping
            partial = self._assemble(state, self._runs(state, state.finished(plan), lossless=False))
            raise MeasurementInterrupted(interrupt, partial, len(state.conditions)) from interrupt
        return self._assemble(state, self._with_divergences(state, runs))

    def _sweep(self, config: SpecConfig, gates: Sequence[Undecided]) -> ConfigResult:
        """A K sweep: each K measured as a config of its own (its own spec engine, the vanilla side
        measured once and reused), their runs one result with K in each run's condition."""
        done: list[ConfigResult] = []
        try:
            for variant in config.variants():
                self.progress(f"{config.name}: K={variant.speculative.num_speculative_tokens} of the sweep "
                              f"{config.speculative.k_values}")
                done.append(self._measure(variant, gates))
        except MeasurementInterrupted as interrupted:
            interrupted.partial = _swept([*done, interrupted.partial])
            raise
        return _swept(done)

    def _run_plan(self, state: ConfigMeasurement, plan: list[Step]) -> None:
        for step in plan:
            window = self._measure_side(state, step)
            state.windows.setdefault((step.role, step.condition), []).append(window)

    def _next_looks(
        self, state: ConfigMeasurement, runs: list[RunResult], gates: Sequence[Undecided]
    ) -> dict[int, list[Recipe]]:
        """The conditions a gate left inconclusive where more windows could resolve it
        (`Undecided`), grouped by the window count of their next look; none once
        their budget is spent."""
        if not gates:
            return {}
        result = self._assemble(state, runs)
        run_conditions = {run.condition: condition for run, condition in zip(runs, state.conditions)}
        unresolved: dict[Recipe, list[str]] = {}
        for gate in gates:
            for verdict in gate.undecided(result):
                whole = verdict.condition.model_copy(update={"bucket": None})  # a bucket is measured with its batch
                unresolved.setdefault(run_conditions[whole], []).append(verdict.gate)
        run, looks = state.config.run, {}
        for condition, labels in unresolved.items():
            measured = state.measured_windows(condition)
            target = next_look(measured, run.repeats, run.window_budget)
            if target is not None:
                self.progress(f"{state.config.name}: {condition.label}: {', '.join(labels)} inconclusive after "
                              f"{measured} windows; measuring up to {target} (max_repeats {run.window_budget})")
                looks.setdefault(target, []).append(condition)
        return looks

    def _prepare(self, config: SpecConfig) -> ConfigMeasurement:
        """A config's sides, conditions and fingerprints, its prompts checked against the model's
        length before any engine starts, and the vanilla figures already known."""
        starts_before = len(self.pool.starts)
        spec_side, vanilla_side = engine_specs(config, self.defaults, self.endpoints, self.log_dir)
        prompts = load_prompts(config.workload)
        planned = conditions(config)
        tokenizer = local_tokenizer(spec_side.model, spec_side.engine_args)
        texts = None
        if tokenizer is not None:  # rendered once, here, and sent as rendered
            texts = render(prompts, tokenizer, config.workload.chat_template)
            check_lengths(texts, tokenizer, spec_side.engine_args.get("max_model_len"), str(config.path))
        twin = vanilla_side or spec_side.vanilla_twin()
        fingerprints = {condition: self.vanilla.fingerprint(twin, prompts, config, condition) for condition in planned}
        state = ConfigMeasurement(
            config, spec_side, vanilla_side, RenderedPrompts(prompts, config.workload.chat_template, texts), planned,
            fingerprints, starts_before, draft_memory=draft_memory(spec_side),
        )
        for condition in planned:
            known = self.vanilla.known(fingerprints[condition])
            if known is not None:
                state.vanilla[condition], state.baseline_of[condition] = known
            elif vanilla_side is None:
                raise EngineStartError(
                    f"no vanilla figures for {config.name} {condition.label}: give --spec-baseline-endpoint, "
                    "or measure a baseline once with a vanilla engine (--spec-baseline-dir)"
                )
        state.to_measure = {condition for condition in planned if condition not in state.vanilla}
        self._say_what_a_stored_baseline_still_starts(state)
        return state

    def _say_what_a_stored_baseline_still_starts(self, state: ConfigMeasurement) -> None:
        """A stored baseline spares the vanilla engine only where nothing else needs it: at T>0 the
        lossless check scores spec's outputs under the target, which takes that engine. Said before
        anything starts, so a session that still pays for the start is not a surprise."""
        cached = [c for c in state.conditions if (info := state.baseline_of.get(c)) is not None and info.source == "cached"]
        if not cached or state.vanilla_side is None:
            return
        sampled = [c.label for c in cached if c.sampling.temperature > 0]
        if sampled and state.config.run.lossless_check and not state.to_measure:
            still = (f"the vanilla engine still starts, to score spec's outputs at {', '.join(sampled)} under the target "
                     "(the lossless check: [run] lossless_check = false skips it)")
        elif state.to_measure:
            still = "the vanilla engine starts for the conditions the store lacks"
        else:
            still = "no vanilla engine starts"
        self.progress(f"{state.config.name}: vanilla figures of {len(cached)} of {len(state.conditions)} conditions from "
                      f"stored baselines; {still}")

    def _runs(self, state: ConfigMeasurement, finished: list[Recipe], lossless: bool) -> list[RunResult]:
        """The measured windows of the `finished` conditions combined into runs, their vanilla sides remembered."""
        state.keep_measured_vanilla(finished)
        return [self._run(state, condition, lossless) for condition in finished]

    def _assemble(self, state: ConfigMeasurement, runs: list[RunResult]) -> ConfigResult:
        config, keys = state.config, {state.spec_side.key, state.vanilla_side.key if state.vanilla_side else None}
        return ConfigResult(
            config=str(config.path),
            config_name=config.name,
            runs=runs,
            p99_regression_tolerance=config.gates.p99_regression_tolerance,
            kv_capacity_loss_limit=config.gates.max_kv_capacity_loss,
            # the starts this measurement caused: an engine shared with an earlier config is not billed twice
            engine_start_s={
                role: seconds for key, role, seconds in self.pool.starts[state.starts_before:] if key in keys
            },
            engine_start_phases={
                role: self.pool.start_phases[index]
                for index, (key, role, _) in enumerate(self.pool.starts) if index >= state.starts_before
                and key in keys and index in self.pool.start_phases
            },
        )

    def _run(self, state: ConfigMeasurement, condition: Recipe, lossless: bool) -> RunResult:
        """One condition's run: its spec windows combined, its T>0 outputs scored, its vanilla side kept."""
        spec, counters = state.spec(condition)
        check = None
        if condition.sampling.temperature > 0 and state.config.run.lossless_check:
            if lossless:
                spec, state.vanilla[condition], check = self._lossless(state, spec, state.vanilla[condition])
            else:
                check = not_measured("the session was interrupted before the outputs were scored")
        # "cell" is the stored baseline files' name for the condition
        meta = {"config": str(state.config.path), "cell": condition.label}
        fingerprint = state.fingerprints[condition]
        new = condition in state.to_measure
        not_stored = self.vanilla.remember(fingerprint, state.vanilla[condition], new, meta)
        run = state.run_result(condition, counters, spec, check)
        if not_stored is not None:  # what was measured stays, and is judged; the store is the user's to fix
            run = run.model_copy(update={"warnings": [*run.warnings, not_stored]})
        return run

    def _lossless(
        self, state: ConfigMeasurement, spec: EngineFigures, vanilla: EngineFigures
    ) -> tuple[EngineFigures, EngineFigures, LosslessCheck]:
        """Score both sides' sampled outputs under the target (the vanilla engine), then compare."""
        if state.vanilla_side is None:
            return spec, vanilla, not_measured("no vanilla engine to score outputs with (endpoint without a baseline endpoint)")
        if any(not s.output_token_ids for s in spec.samples + vanilla.samples if s.output_tokens):
            return spec, vanilla, not_measured("output token ids are missing on one side (a baseline that predates them?)")
        engine = self._engine(state.vanilla_side, state.config)
        text = state.rendered.for_engine(engine)
        scored = []
        with self._timed("scoring"):
            for figures in (spec, vanilla):
                samples = figures.samples
                if all(s.target_logprob is not None or not s.output_tokens for s in samples):
                    scored.append(figures)
                    continue
                prompts = [text[i % len(text)] for i in range(len(samples))]
                scores = engine.score(prompts, [s.output_token_ids for s in samples])
                samples = [s.model_copy(update={"target_logprob": v}) for s, v in zip(samples, scores)]
                scored.append(figures.model_copy(update={"samples": samples}))
        spec, vanilla = scored
        alpha = 1 - state.config.run.interval_level
        return spec, vanilla, check_lossless(spec.samples, vanilla.samples, alpha, state.config.gates.lossless_margin)

    def _with_divergences(self, state: ConfigMeasurement, runs: list[RunResult]) -> list[RunResult]:
        """Greedy runs whose outputs differ, scored where they part by the vanilla engine. After
        every run is built: the T>0 check has then brought the vanilla engine back if a spec engine
        had stopped it. Never starts it for this alone (a stored baseline's whole point)."""
        side = state.vanilla_side
        if not state.config.run.lossless_check or side is None or not self.pool.is_live(side):
            return runs
        engine = self.pool.get(side)
        prompts = state.rendered.for_engine(engine)
        scored = []
        for run in runs:
            if run.outputs_match is not None and run.outputs_match < 1:
                with self._timed("scoring"):
                    divergences = score_divergences(engine, prompts, run.spec.samples, run.vanilla.samples)
                run = run.model_copy(update={"divergences": divergences})
            scored.append(run)
        return scored

    def _engine(self, side: EngineSpec, config: SpecConfig) -> Engine:
        starting = not self.pool.is_live(side)
        if starting:
            self.progress(f"{config.name}: starting {side.role} engine ({side.model})")
        with self._timed("engine_stop"):
            self.pool.make_room(side)
        started = time.perf_counter()
        with self._timed("engine_start"):
            engine = self.pool.get(side)
        if starting:
            self.progress(f"{config.name}: {side.role} engine started in {time.perf_counter() - started:.1f} s")
        if engine not in self._warmed and config.run.warmup:
            warmup = render([Prompt(text=WARMUP_PROMPT)] * config.run.warmup, engine.tokenizer(), config.workload.chat_template)
            with self._timed("warmup"):
                engine.generate(warmup, Sampling(0.0, config.workload.max_tokens, seed=config.workload.seed))
            self._warmed.add(engine)
        return engine

    @contextmanager
    def _timed(self, phase: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] += time.perf_counter() - started

    def _measure_side(self, state: ConfigMeasurement, step: Step) -> tuple[EngineFigures, EngineCounters]:
        """One planned window: prefix cache emptied, counters read around the requests alone."""
        config, condition, side = state.config, step.condition, state.side(step.role)
        engine = self._engine(side, config)
        if step.role == "spec" and state.resolved is None:
            state.resolved = engine.resolved_config()
        prompts = state.rendered.for_engine(engine)
        suffix = f", window {step.repeat + 1}" if config.run.window_budget > 1 else ""
        self.progress(f"{config.name}: {side.role} {condition.label} ({len(prompts)} prompts{suffix})")
        reset = engine.reset_prefix_cache()
        # each repeat draws new samples: request i of repeat r has seed base + r * n + i, on both sides
        sampling = replace(condition.sampling, seed=condition.sampling.seed + step.repeat * len(prompts))
        started_at = time.time()
        with self._timed("measurement"), gc_paused(config.run.pause_gc):
            before = engine.counters()
            generated = engine.generate(prompts, sampling, condition.load)
            counters = engine.counters().minus(before)
        samples = [sample.model_copy(update={"repeat": step.repeat}) for sample in generated.samples]
        client = generated.client
        window = Window(
            duration_s=generated.duration_s,
            output_tokens=sum(s.output_tokens for s in samples),
            started_at=started_at,
            engine_generation_tokens=counters.generation_tokens,
            engine_steps=counters.engine_steps,
            targets=[TargetCounters(url=url, counters=target.spec, generation_tokens=target.generation_tokens)
                     for url, target in counters.targets],
            prefix_cache_reset=reset,
            client_cpu_s=client.cpu_s if client else None,
            client_lag_ms=client.lag_ms if client else None,
            repeat=step.repeat,
            sequence=sum(len(windows) for windows in state.windows.values()),
            engine_start=self.pool.start_index(side),
        )
        self.progress(f"{config.name}: {side.role} {condition.label}: {window.output_tokens} tokens in {window.duration_s:.1f} s")
        figures = EngineFigures(
            samples=samples, duration_s=generated.duration_s, kv_cache_tokens=engine.kv_cache_tokens(), windows=[window]
        )
        return figures, counters


@contextmanager
def gc_paused(pause: bool = True) -> Iterator[None]:
    """Python's cyclic collector off for a window, after a collection: in a pytest process the heap
    holds the session's objects, and a full collection landing mid-window stalls the client loop that
    drives the engine (offline: its steps) for the length of the walk. Back on, as it was, after."""
    import gc

    if not pause or not gc.isenabled():
        yield
        return
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _swept(results: list[ConfigResult]) -> ConfigResult:
    """The K variants' results as one: every run marked as one K of a sweep, engine starts by K."""
    runs = [run.model_copy(update={"k_swept": True}) for result in results for run in result.runs]
    starts = {f"{role} K={run_k}": seconds for result in results
              for run_k in {run.num_speculative_tokens for run in result.runs}
              for role, seconds in result.engine_start_s.items()}
    return results[0].model_copy(update={"runs": runs, "engine_start_s": starts})
