import time

import pytest

from pytest_specdecode.engines.base import EngineSpec, EngineStartError
from pytest_specdecode.engines.completions import completion_body
from pytest_specdecode.engines.endpoint import EndpointEngine, EndpointError
from pytest_specdecode.engines.serve import free_port
from pytest_specdecode.config.load import LoadLevel
from tests.unit.fake_openai import GREEDY, SPEC


def test_completion_body_asks_for_cumulative_usage_on_every_chunk():
    body = completion_body("m", "hello", GREEDY)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert (body["max_tokens"], body["temperature"], body["seed"], body["ignore_eos"]) == (10, 0.0, 5, True)


def test_streaming_timings_and_chunk_tokens(fake_server):
    engine = EndpointEngine(SPEC, fake_server.url)
    samples, duration, client = engine.generate(["p1", "p2"], GREEDY)
    assert [body["model"] for body in fake_server.bodies] == ["served-name", "served-name"]
    assert fake_server.bodies[0]["return_token_ids"] is True
    for index, sample in enumerate(samples, start=1):
        assert sample.prompt_tokens == 7
        assert sample.output_tokens == 10
        assert sample.chunk_tokens == [1, 3, 2, 4]
        assert sample.output_token_ids == [index * 100 + i for i in range(10)]
        assert 0.14 <= sample.ttft_s < sample.e2e_s
        assert len(sample.itl_s) == 3
        assert all(gap >= 0.05 for gap in sample.itl_s)
        assert sample.e2e_s >= sample.ttft_s + sum(sample.itl_s) - 1e-6
        assert sample.acceptance_length == pytest.approx(2.5)  # the last chunk, cut by max_tokens, is dropped
    assert max(s.e2e_s for s in samples) <= duration < 5
    assert sorted(body["seed"] for body in fake_server.bodies) == [GREEDY.seed, GREEDY.seed + 1]  # one per request
    assert [s.seed for s in samples] == [GREEDY.seed, GREEDY.seed + 1]
    assert client.cpu_s >= 0 and 0 <= client.lag_ms < 1000


def test_paced_requests_time_first_tokens_from_their_schedule_too(fake_server):
    """Coordinated omission: a late send must not hide the wait a user scheduled then would see."""
    engine = EndpointEngine(SPEC, fake_server.url)
    samples, _, _ = engine.generate(["p1", "p2", "p3"], GREEDY, LoadLevel(request_rate=50.0))
    assert all(s.scheduled_ttft_s is not None and s.scheduled_ttft_s >= s.ttft_s - 1e-3 for s in samples)
    unpaced, _, _ = engine.generate(["p1"], GREEDY)
    assert unpaced[0].scheduled_ttft_s is None


def test_an_endpoint_without_the_dev_reset_route_reports_no_reset(fake_server):
    assert EndpointEngine(SPEC, fake_server.url).reset_prefix_cache() is False


def test_load_level_caps_requests_in_flight(fake_server):
    fake_server.first_delay, fake_server.gap = 0.05, 0.01
    engine = EndpointEngine(SPEC, fake_server.url)
    samples, _, _ = engine.generate([f"p{i}" for i in range(6)], GREEDY, LoadLevel(concurrency=2))
    assert fake_server.max_in_flight == 2
    assert [s.output_token_ids[0] for s in samples] == [i * 100 for i in range(6)]


def test_endpoint_reads_counters_and_cache_size(fake_server):
    engine = EndpointEngine(SPEC, fake_server.url)
    assert engine.counters().spec.num_accepted_tokens == 60
    assert engine.kv_cache_tokens() == 2048 * 16
    assert engine.start_s == 0.0
    engine.close()


def test_http_error_names_status_and_body(fake_server):
    engine = EndpointEngine(SPEC, fake_server.url)
    with pytest.raises(RuntimeError, match=r"HTTP 400: .*prompt too long"):
        engine.generate(["p1", "bad"], GREEDY)


def test_a_tokenizer_that_cannot_load_is_a_one_line_start_error(tmp_path):
    engine = EndpointEngine(EngineSpec(str(tmp_path / "no-such-model"), mode="endpoint", url="http://127.0.0.1:9"), "http://127.0.0.1:9")
    with pytest.raises(EngineStartError, match="cannot load the tokenizer") as caught:
        engine.tokenizer()
    assert "\n" not in str(caught.value)


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_closed_port_is_one_line_naming_the_side_and_url():
    """Was 305 lines ending in httpx.ConnectError, with no URL and no side."""
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EndpointError) as excinfo:
        EndpointEngine(SPEC, url).counters()
    message = _one_line(excinfo)
    assert message.startswith(f"spec endpoint {url}: GET /metrics: cannot connect")
    with pytest.raises(EngineStartError):  # what the session remembers for the config
        EndpointEngine(SPEC.vanilla_twin(url), url).generate(["p1"], GREEDY)


def test_garbage_and_refusals_are_one_line_causes(fake_server):
    """Was a raw UnicodeDecodeError for garbage; an HTTP 401 or 400 names status and first line."""
    fake_server.metrics = "vllm:spec_decode_num_drafts_total{engine=\"0\"} not-a-number\n"
    with pytest.raises(EndpointError) as excinfo:
        EndpointEngine(SPEC, fake_server.url).counters()
    assert f"spec endpoint {fake_server.url}: GET /metrics: " in _one_line(excinfo)
    with pytest.raises(EndpointError) as excinfo:
        EndpointEngine(SPEC, fake_server.url).generate(["p1", "bad"], GREEDY)
    assert "streaming completions: POST" in _one_line(excinfo) and "HTTP 400" in str(excinfo.value)
    with pytest.raises(EndpointError) as excinfo:
        EndpointEngine(SPEC, fake_server.url)._get("/nowhere")
    assert "HTTP 404" in _one_line(excinfo)


def test_a_server_that_accepts_and_never_answers_costs_the_request_timeout_once():
    """Was a hard-coded 600 s per test; now [run] request_timeout_s, and one line saying so."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    try:
        started = time.monotonic()
        with pytest.raises(EndpointError) as excinfo:
            EndpointEngine(SPEC, url, request_timeout_s=0.5).counters()
        assert time.monotonic() - started < 10
        assert "GET /metrics: no answer within the request timeout" in _one_line(excinfo)
    finally:
        listener.close()


def test_an_endpoint_key_comes_from_the_named_variable_and_goes_with_every_request(fake_server, monkeypatch):
    """Was impossible: --spec-endpoint could not send an API key."""
    from dataclasses import replace

    spec = replace(SPEC, mode="endpoint", url=fake_server.url, api_key_env="CANARY_KEY")
    with pytest.raises(EngineStartError, match=r"spec endpoint .*: environment variable CANARY_KEY \(\[run\] api_key_env\) is not set"):
        EndpointEngine(spec, fake_server.url)
    monkeypatch.setenv("CANARY_KEY", "s3cret")
    engine = EndpointEngine(spec, fake_server.url)
    engine.generate(["p1"], GREEDY)
    engine.counters()
    assert fake_server.authorizations and set(fake_server.authorizations) == {"Bearer s3cret"}
    assert "s3cret" not in repr(spec)


def _raw_server(pieces: list[tuple[bytes, float]]):
    """A server answering `GET /v1/models` and then one streamed completion written in the given
    pieces, each after its pause: what TCP may hand a client, an event cut anywhere."""
    import json
    import socket
    import threading

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)

    def serve() -> None:
        for _ in range(2):
            connection, _ = listener.accept()
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, _, body = request.partition(b"\r\n\r\n")
                length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                                   if line.lower().startswith(b"content-length")), b"0"))
                while len(body) < length:
                    body += connection.recv(65536)
                if head.startswith(b"GET"):
                    models = json.dumps({"data": [{"id": "org/fake-model"}]}).encode()
                    connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: "
                                       + str(len(models)).encode() + b"\r\n\r\n" + models)
                    continue
                connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
                for piece, pause in pieces:
                    time.sleep(pause)
                    connection.sendall(piece)

    threading.Thread(target=serve, daemon=True).start()
    return listener, f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_events_cut_across_reads_and_longer_than_a_read_buffer_are_read_whole():
    """The stream is split into lines here (aiohttp's line reader stops at 64 KiB, which a first chunk
    carrying a long prompt's token ids can pass): an event cut mid-JSON is timed when its end came."""
    import json

    def event(tokens: int, done: int, text: str = "x") -> bytes:
        choice = {"index": 0, "text": text, "token_ids": list(range(tokens)), "finish_reason": None}
        usage = {"prompt_tokens": 7, "completion_tokens": done, "total_tokens": 7 + done}
        return f"data: {json.dumps({'choices': [choice], 'usage': usage})}\n\n".encode()

    first, second = event(1, 1, "y" * 100_000), event(3, 4)
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 4}}\n\ndata: [DONE]\n\n'
    listener, url = _raw_server([(first, 0.0), (second[:20], 0.1), (second[20:] + usage, 0.2)])
    try:
        samples, _, _ = EndpointEngine(SPEC, url).generate(["p1"], GREEDY)
    finally:
        listener.close()
    (sample,) = samples
    assert sample.chunk_tokens == [1, 3] and sample.output_tokens == 4
    assert len(sample.output_text) == 100_001
    assert sample.itl_s[0] >= 0.29  # the second event counts from its end, not from its first bytes


def test_a_stream_that_stalls_costs_the_request_timeout_once_in_one_line():
    """The stream's own client (aiohttp) names a stall as the one-off calls' client (httpx) does."""
    listener, url = _raw_server([(b"", 5.0)])
    try:
        started = time.monotonic()
        with pytest.raises(EndpointError) as excinfo:
            EndpointEngine(SPEC, url, request_timeout_s=0.5).generate(["p1"], GREEDY)
        assert time.monotonic() - started < 4
        assert "streaming completions: no answer within the request timeout" in _one_line(excinfo)
    finally:
        listener.close()


def test_a_body_that_ends_without_its_last_newline_keeps_its_last_event():
    usage = b'data: {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}'
    first = b'data: {"choices": [{"index": 0, "text": "abc", "token_ids": [1, 2, 3]}], "usage": {"completion_tokens": 3}}\n\n'
    listener, url = _raw_server([(first + usage, 0.0)])
    try:
        samples, _, _ = EndpointEngine(SPEC, url).generate(["p1"], GREEDY)
    finally:
        listener.close()
    assert samples[0].output_tokens == 3 and samples[0].prompt_tokens == 7


def test_a_netrc_entry_does_not_add_a_login_to_the_stream(fake_server, tmp_path, monkeypatch):
    """aiohttp's trust_env reads ~/.netrc: with an endpoint key every stream failed ("Cannot combine
    AUTHORIZATION header with AUTH argument"), without one it sent a Basic login unasked."""
    from dataclasses import replace

    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    monkeypatch.setenv("CANARY_KEY", "s3cret")
    spec = replace(SPEC, mode="endpoint", url=fake_server.url, api_key_env="CANARY_KEY")
    EndpointEngine(spec, fake_server.url).generate(["p1"], GREEDY)
    EndpointEngine(SPEC, fake_server.url).generate(["p2"], GREEDY)
    # each engine: GET /v1/models, then the streamed POST
    assert fake_server.authorizations == ["Bearer s3cret", "Bearer s3cret", None, None]


def test_a_proxy_comes_from_the_environment_unless_the_host_is_exempt(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://proxy.example:3128")
    monkeypatch.setenv("no_proxy", "exempt.example")
    engine = EndpointEngine(SPEC, "http://far.example:8000")
    assert engine._proxy("http://far.example:8000/v1/completions") == "http://proxy.example:3128"
    assert engine._proxy("http://exempt.example:8000/v1/completions") is None
    assert EndpointEngine(SPEC, "http://far.example:8000", trust_env=False)._proxy("http://far.example/") is None
