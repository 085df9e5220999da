"""A scripted engine for unit tests of the measurement logic (real engines are in tests/e2e)."""

from pytest_specdecode.engines.base import EngineSpec, EngineStartError, Generated, Sampling
from pytest_specdecode.engines.metrics import EngineCounters
from pytest_specdecode.results import RequestSample, SpecCounters


class TemplateTokenizer:
    def apply_chat_template(self, conversation, add_generation_prompt, tokenize):
        return "".join(m["content"] for m in conversation)


class FakeEngine:
    """Every request yields `tokens` tokens in chunks of `chunk`; each chunk past the first is a draft step."""

    def __init__(self, spec: EngineSpec, tokens: int = 7, chunk: int = 2, k: int = 3, seconds: float = 1.0,
                 differ: tuple[int, ...] = (), token_logprobs: dict[int, float] | None = None):
        self.spec = spec
        # a spec engine's greedy requests whose output parts from vanilla's at token 3 (token 100 + i)
        self.differ = differ if spec.speculative_config else ()
        # what score() makes of each token id (-1.0 for any other): a target that finds some tokens likelier
        self.token_logprobs = token_logprobs or {}
        self.start_s = 0.5
        self.tokens, self.chunk, self.k, self.seconds = tokens, chunk, k, seconds
        self.calls: list[tuple[int, Sampling]] = []
        self.spec_counters = SpecCounters(accepted_per_position=[0] * k)
        self.generated_tokens = 0
        self.closed = False
        self.scored: list[int] = []
        self.resets = 0

    def generate(self, prompts, sampling, load=None):
        self.calls.append((len(prompts), sampling))
        steps = [1] + [self.chunk] * ((self.tokens - 1) // self.chunk)
        samples = [
            RequestSample(prompt_tokens=5, output_tokens=sum(steps), ttft_s=0.1, e2e_s=0.1 + 0.05 * (len(steps) - 1),
                          itl_s=[0.05] * (len(steps) - 1), chunk_tokens=steps, output_token_ids=self._ids(i, sum(steps), sampling),
                          seed=sampling.request_seed(i), temperature=sampling.request_temperature(i))
            for i, _ in enumerate(prompts)
        ]
        self.generated_tokens += sum(s.output_tokens for s in samples)
        if self.spec.speculative_config:
            drafts = len(prompts) * (len(steps) - 1)
            accepted = self.chunk - 1
            self.spec_counters = SpecCounters(
                num_drafts=self.spec_counters.num_drafts + drafts,
                num_draft_tokens=self.spec_counters.num_draft_tokens + drafts * self.k,
                num_accepted_tokens=self.spec_counters.num_accepted_tokens + drafts * accepted,
                accepted_per_position=[c + (drafts if i < accepted else 0) for i, c in enumerate(self.spec_counters.accepted_per_position)],
            )
        return Generated(samples, self.seconds)

    def _ids(self, request: int, tokens: int, sampling: Sampling) -> list[int]:
        ids = list(range(tokens))
        if request in self.differ and sampling.temperature == 0:
            ids[3:] = [100 + request] * (tokens - 3)
        return ids

    def counters(self):
        return EngineCounters(self.spec_counters, self.generated_tokens)

    def reset_prefix_cache(self):
        self.resets += 1
        return True

    def score(self, prompts, outputs):
        """Each output's mean of its tokens' log-probabilities (-1.0 for tokens not in `token_logprobs`)."""
        self.scored.append(len(outputs))
        return [sum(self.token_logprobs.get(t, -1.0) for t in output) / len(output) for output in outputs]

    def resolved_config(self):
        return None

    def kv_cache_tokens(self):
        return 1000 if self.spec.speculative_config else 1200

    def tokenizer(self):
        return TemplateTokenizer()

    def close(self):
        self.closed = True


class FakeFactory:
    def __init__(self, fail_for: str | None = None, **engine_kwargs):
        self.engines: list[FakeEngine] = []
        self.fail_for = fail_for
        self.engine_kwargs = engine_kwargs

    def __call__(self, spec):
        if self.fail_for and self.fail_for in spec.model:
            raise EngineStartError("model not found")
        kwargs = dict(self.engine_kwargs)
        if not spec.speculative_config:
            kwargs["chunk"] = 1
            kwargs["seconds"] = kwargs.get("seconds", 1.0) * 2
        engine = FakeEngine(spec, **kwargs)
        self.engines.append(engine)
        return engine
