"""Small result objects for unit tests of gates and reports."""

from pytest_specdecode.results import ConfigResult, EngineFigures, RequestSample, RunResult, SpecCounters, Window


def figures(tokens_per_request: int = 10, e2e_s: float = 1.0, n: int = 4, duration_s: float = 2.0, chunk: int = 1,
            windows: int = 3):
    """`windows` identical windows of `n` requests each (so timed intervals exist, of zero width)."""
    steps = [1] + [chunk] * ((tokens_per_request - 1) // chunk)
    samples = [
        RequestSample(prompt_tokens=5, output_tokens=sum(steps), ttft_s=0.1, e2e_s=e2e_s * (1 + i / 100),
                      itl_s=[0.05] * (len(steps) - 1), chunk_tokens=steps, repeat=w)
        for w in range(windows) for i in range(n)
    ]
    measured = [Window(duration_s=duration_s / windows, output_tokens=n * sum(steps), prefix_cache_reset=True)
                for _ in range(windows)]
    return EngineFigures(samples=samples, duration_s=duration_s, windows=measured)


def run(temperature=0.0, accepted=(40, 20, 5), drafts=50, k=3, spec_duration=1.0, spec_e2e=1.0, invalid=None, n=8,
        windows=3, **extra):
    counters = SpecCounters(num_drafts=drafts, num_draft_tokens=drafts * k, num_accepted_tokens=sum(accepted),
                            accepted_per_position=list(accepted))
    return RunResult(
        config="/c/cfg.toml", config_name="cfg", model="m", method="ngram", num_speculative_tokens=k,
        workload="builtin:copy", temperature=temperature, counters=counters,
        spec=figures(duration_s=spec_duration, e2e_s=spec_e2e, chunk=2, n=n, windows=windows),
        vanilla=figures(n=n, windows=windows),
        outputs_match=1.0 if temperature == 0 else None, invalid_reason=invalid, **extra,
    )


def result(*runs):
    return ConfigResult(config="/c/cfg.toml", config_name="cfg", runs=list(runs))
