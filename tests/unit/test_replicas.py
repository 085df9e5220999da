"""An endpoint that is several replicas behind a gateway: each replica's /metrics read, their
counters summed, each replica checked on its own and reported on its own."""

import threading

import pytest

from pytest_specdecode.engines.endpoint import EndpointEngine
from pytest_specdecode.engines.metrics import parse_counters
from pytest_specdecode.measure.checks import invalid_reason
from pytest_specdecode.results.figures import TargetCounters
from tests.unit.fake_openai import METRICS, SPEC, FakeOpenAI

from .builders import run


@pytest.fixture
def replicas():
    servers = [FakeOpenAI(), FakeOpenAI()]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    yield servers
    for server in servers:
        server.shutdown()
        server.server_close()


def with_targets(measured, *per_window):
    """The run's spec windows, each with the given targets (url, counters, generation tokens)."""
    windows = [w.model_copy(update={"targets": [TargetCounters(url=u, counters=c, generation_tokens=t) for u, c, t in targets]})
               for w, targets in zip(measured.spec.windows, per_window)]
    return measured.spec.model_copy(update={"windows": windows})


def scaled(text: str, factor: float) -> str:
    """The fake's page with every spec-decode counter multiplied (a replica that saw more traffic)."""
    lines = []
    for line in text.splitlines():
        if line.startswith("vllm:spec_decode") and "_total" in line:
            name, value = line.rsplit(" ", 1)
            line = f"{name} {float(value) * factor}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def test_counters_are_summed_over_the_replicas_and_each_is_kept(replicas):
    replicas[1].metrics = scaled(METRICS, 2)
    urls = tuple(f"{server.url}/metrics" for server in replicas)
    engine = EndpointEngine(SPEC, replicas[0].url, metrics_urls=urls)  # the gateway's URL in real use
    counters = engine.counters()
    assert counters.spec.num_drafts == 40 + 80 and counters.spec.num_accepted_tokens == 60 + 120
    assert [url for url, _ in counters.targets] == list(urls)
    assert engine.kv_cache_tokens() == 2 * 2048 * 16  # the deployment's capacity: both replicas'
    later = EndpointEngine(SPEC, replicas[0].url, metrics_urls=urls)
    replicas[0].metrics = scaled(METRICS, 1.5)
    delta = later.counters().minus(counters)
    assert dict((url, c.spec.num_drafts) for url, c in delta.targets) == {urls[0]: 20, urls[1]: 0}
    assert delta.spec.num_drafts == 20


def test_a_replica_that_restarted_invalidates_the_run_by_name():
    measured = run()
    restarted = parse_counters(METRICS).spec.minus(parse_counters(scaled(METRICS, 2)).spec)  # counters went down
    fine = parse_counters(METRICS).spec
    spec = with_targets(measured, *[[("http://a:8000/metrics", fine, 10), ("http://b:8000/metrics", restarted if i == 1 else fine, 10)]
                                    for i in range(len(measured.spec.windows))])
    reason = invalid_reason(measured.counters, spec, measured.vanilla, 3.0)
    assert reason == "speculative metrics target http://b:8000/metrics: a spec-decode counter went down during the " \
                     "window (the engine restarted?)"


def test_each_replicas_acceptance_is_reported_so_a_bad_one_stands_out():
    measured = run()
    good, bad = parse_counters(METRICS).spec, parse_counters(scaled(METRICS, 1)).spec.model_copy(
        update={"num_accepted_tokens": 6, "accepted_per_position": [6, 0, 0]})
    windows = len(measured.spec.windows)
    spec = with_targets(measured, *[[("http://a/metrics", good, 10), ("http://b/metrics", bad, 10)]] * windows)
    replicas = {r.url: r for r in measured.model_copy(update={"spec": spec}).replicas}
    assert replicas["http://a/metrics"].acceptance_rate == pytest.approx(0.5)
    assert replicas["http://b/metrics"].acceptance_rate == pytest.approx(0.05)
    assert replicas["http://a/metrics"].generation_tokens == 10 * windows
