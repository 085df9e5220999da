"""An in-process `vllm.LLM`, driven one engine step at a time.

The step loop is the one `LLM.generate` runs internally; driving it ourselves lets us timestamp
every step, which gives per-request TTFT/TPOT/E2E and the tokens each step produced (1 + accepted
drafts) at no extra cost. vLLM is imported here and only here (for this mode).
"""

from __future__ import annotations

import gc
import inspect
import itertools
import time
from typing import Any

from ..config.load import LoadLevel
from ..results import RequestSample
from ..results.figures import RequestSpecDecode
from .base import EngineSpec, EngineStartError, Generated, Sampling, mean_logprob
from .metrics import EngineCounters, collectors_text, parse_counters, vllm_collectors
from .processes import start_in_thread
from .start_log import EngineLog, engine_output_to, start_phases

#: How long an engine core may take to exit after it is asked to stop, before vLLM kills it.
STOP_GRACE_S = 60.0


class OfflineEngine:
    def __init__(self, spec: EngineSpec) -> None:
        self.spec = spec
        started = time.perf_counter()
        try:
            from vllm import LLM
        except ImportError as exc:
            raise EngineStartError(
                f"vLLM is not importable ({exc}); install 'pytest-specdecode[vllm]' or '[cpu]'"
            ) from None
        args = dict(spec.engine_args)
        if spec.speculative_config:
            args["speculative_config"] = dict(spec.speculative_config)
            args.update(per_request_spec_metrics_args(args))
        imported = time.perf_counter()
        self.log = EngineLog(spec.log_dir, "offline", spec.role, spec.key)
        self.log_path = self.log.path
        try:
            with engine_output_to(self.log_path):
                self._llm, self._processes = start_in_thread(
                    lambda: LLM(model=spec.model, disable_log_stats=False, **args))
        except Exception as exc:  # vLLM raises many types; all mean "this engine did not start"
            gc.collect()
            raise EngineStartError(f"{start_failure(exc)} (engine log: {self.log_path})") from exc
        self._collectors = vllm_collectors()  # this engine's own: a later engine replaces the global ones
        self.start_s = time.perf_counter() - started
        # importing vLLM (the first engine of a process pays it), then `vllm.LLM(...)` as its log tells
        # it (weights, vLLM init with torch.compile and graphs); as a whole where the log cannot
        init_s = self.start_s - (imported - started)
        self.start_phases = {"import_s": imported - started,
                             **(start_phases(self.log_path, init_s) or {"engine_init_s": init_s})}
        self._request_ids = itertools.count()

    def generate(self, prompts: list[str], sampling: Sampling, load: LoadLevel | None = None) -> Generated:
        """All prompts at once, as `LLM.generate` would: offline mode has no load levels."""
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        engine = self._llm.llm_engine
        params = [
            SamplingParams(
                temperature=sampling.request_temperature(index),
                top_p=sampling.top_p,
                max_tokens=sampling.max_tokens,
                seed=sampling.request_seed(index),
                ignore_eos=sampling.ignore_eos,
                # only the new tokens of each step: cumulative outputs would rebuild every request's
                # token list (and text) at every step, a cost `LLM.generate` (FINAL_ONLY) never pays
                output_kind=RequestOutputKind.DELTA,
            )
            for index in range(len(prompts))
        ]
        started = time.perf_counter()
        request_ids = [f"specdecode-{next(self._request_ids)}" for _ in prompts]
        for request_id, prompt, request_params in zip(request_ids, prompts, params):
            engine.add_request(request_id, prompt, request_params)
        prompt_tokens: dict[str, int] = {}
        token_ids: dict[str, list[int]] = {rid: [] for rid in request_ids}
        step_times: dict[str, list[float]] = {rid: [] for rid in request_ids}
        chunks: dict[str, list[int]] = {rid: [] for rid in request_ids}
        texts: dict[str, list[str]] = {rid: [] for rid in request_ids}
        finished_at: dict[str, float] = {}
        vllm_metrics: dict[str, RequestSpecDecode | None] = {}
        while engine.has_unfinished_requests():
            outputs = engine.step()
            now = time.perf_counter()
            for output in outputs:
                rid = output.request_id
                if rid not in token_ids:
                    continue
                new_tokens = output.outputs[0].token_ids
                texts[rid].append(output.outputs[0].text)
                if new_tokens:
                    step_times[rid].append(now)
                    chunks[rid].append(len(new_tokens))
                    token_ids[rid].extend(new_tokens)
                if output.prompt_token_ids:
                    prompt_tokens[rid] = len(output.prompt_token_ids)
                if output.finished:
                    finished_at[rid] = now
                    vllm_metrics[rid] = request_spec_decode(getattr(output.outputs[0], "spec_decode_metrics", None))
        duration = time.perf_counter() - started
        samples = [  # in the prompts' order
            RequestSample(
                prompt_tokens=prompt_tokens.get(rid, 0),
                output_tokens=len(token_ids[rid]),
                ttft_s=(step_times[rid][0] - started) if step_times[rid] else None,
                e2e_s=finished_at.get(rid, duration + started) - started,
                itl_s=[later - earlier for earlier, later in zip(step_times[rid], step_times[rid][1:])],
                chunk_tokens=chunks[rid],
                output_token_ids=token_ids[rid],
                output_text="".join(texts[rid]),
                vllm_spec_decode=vllm_metrics.get(rid),
                seed=sampling.request_seed(index),
                temperature=sampling.request_temperature(index),
            )
            for index, rid in enumerate(request_ids)
        ]
        return Generated(samples, duration)

    @property
    def llm(self) -> Any:
        """The `vllm.LLM` itself, for code that drives vLLM's own API on the engine the plugin measures
        (`benchmarks/overhead.py` times bare `LLM.generate` against the plugin on one engine)."""
        return self._llm

    def counters(self) -> EngineCounters:
        return parse_counters(collectors_text(self._collectors))

    def reset_prefix_cache(self) -> bool:
        return bool(self._llm.reset_prefix_cache())

    def score(self, prompts: list[str], outputs: list[list[int]]) -> list[float | None]:
        """One prefill per output over prompt + output (`prompt_logprobs`): what the model thinks
        of every sampled token, with no sampling of its own."""
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        tokenizer = self.tokenizer()
        prompt_ids = [tokenizer.encode(prompt, add_special_tokens=False) for prompt in prompts]
        wanted = [i for i, output in enumerate(outputs) if output]
        requests = [TokensPrompt(prompt_token_ids=prompt_ids[i] + outputs[i]) for i in wanted]
        params = SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0)
        scores: list[float | None] = [None] * len(outputs)
        for i, result in zip(wanted, self._llm.generate(requests, params, use_tqdm=False)):
            scores[i] = mean_logprob(result.prompt_logprobs, outputs[i])
        return scores

    def resolved_config(self) -> dict[str, Any] | None:
        from .vllm_info import resolved

        return resolved(self._llm.llm_engine.vllm_config)

    def kv_cache_tokens(self) -> int | None:
        cache = self._llm.llm_engine.vllm_config.cache_config
        if not cache.num_gpu_blocks:
            return None
        return int(cache.num_gpu_blocks) * int(cache.block_size)

    def tokenizer(self) -> Any:
        return self._llm.get_tokenizer()

    def close(self) -> None:
        """Stop the engine-core and worker processes now, whatever vLLM's own shutdown does."""
        llm = self.__dict__.pop("_llm", None)
        if llm is None:
            return
        try:
            shutdown = getattr(llm, "shutdown", None) or getattr(llm.llm_engine.engine_core, "shutdown", None)
            if shutdown is not None:
                # vLLM force-kills an engine core still tearing down after 5 s (two stopping at once on
                # a small machine, a GPU freeing its memory: "force killing remaining process" at the
                # end of a session): it gets a longer grace, and returns as soon as the core has exited
                grace = {"timeout": STOP_GRACE_S} if "timeout" in inspect.signature(shutdown).parameters else {}
                shutdown(**grace)
        finally:
            del llm
            gc.collect()
            self._processes.stop()
            self.log.discard()


def start_failure(exc: BaseException) -> str:
    """One line that still says why: the first line of a pydantic error (vLLM validates its configs
    with pydantic) only counts the errors, so every line is kept, joined, without the docs links."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    cause = " | ".join(line for line in lines if not line.startswith("For further information visit"))
    return f"{type(exc).__name__}: {cause}"[:500] if cause else type(exc).__name__


def per_request_spec_metrics_args(args: dict[str, Any]) -> dict[str, Any]:
    """vLLM's own per-request acceptance (`--per-request-spec-decode-metrics summary`, vLLM 0.32+),
    asked for where the installed vLLM has it and the config did not set it: the chunk-based
    estimate is then only the fallback."""
    from .vllm_info import engine_arg_names

    if "per_request_spec_decode_metrics" in args or "per_request_spec_decode_metrics" not in engine_arg_names():
        return {}
    return {"per_request_spec_decode_metrics": "summary"}


def request_spec_decode(metrics: Any) -> RequestSpecDecode | None:
    """vLLM's `RequestSpecDecodeMetrics` of one finished request: its histogram of accepted draft
    tokens per verify step, and the draft tokens it proposed."""
    histogram = getattr(metrics, "histogram", None)
    if not histogram:
        return None
    return RequestSpecDecode(
        verify_steps=int(sum(histogram)), accepted_tokens=int(sum(j * count for j, count in enumerate(histogram))),
        draft_tokens=int(metrics.num_draft_tokens),
    )
