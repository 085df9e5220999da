import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pytest_specdecode.engines.base import EngineSpec, EngineStartError, Sampling
from pytest_specdecode.engines.server import (
    EndpointEngine,
    ServerEngine,
    completion_body,
    engine_flags,
    last_meaningful_line,
    serve_args,
)
from pytest_specdecode.engines.metrics import parse_kv_cache_tokens, parse_spec_counters
from pytest_specdecode.load import LoadLevel

# What vLLM 0.32's /metrics shows for a speculative engine (prometheus_client exposition format:
# counters as `_total` plus `_created` gauges, the per-position counter labelled by `position`).
METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 0.0
# HELP vllm:spec_decode_num_drafts_total Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_total counter
vllm:spec_decode_num_drafts_total{engine="0",model_name="m"} 40.0
# HELP vllm:spec_decode_num_drafts_created Number of spec decoding drafts.
# TYPE vllm:spec_decode_num_drafts_created gauge
vllm:spec_decode_num_drafts_created{engine="0",model_name="m"} 1.7954586186855738e+09
# HELP vllm:spec_decode_num_draft_tokens_total Number of draft tokens.
# TYPE vllm:spec_decode_num_draft_tokens_total counter
vllm:spec_decode_num_draft_tokens_total{engine="0",model_name="m"} 120.0
# HELP vllm:spec_decode_num_draft_tokens_created Number of draft tokens.
# TYPE vllm:spec_decode_num_draft_tokens_created gauge
vllm:spec_decode_num_draft_tokens_created{engine="0",model_name="m"} 1.7954586186855738e+09
# HELP vllm:spec_decode_num_accepted_tokens_total Number of accepted tokens.
# TYPE vllm:spec_decode_num_accepted_tokens_total counter
vllm:spec_decode_num_accepted_tokens_total{engine="0",model_name="m"} 60.0
# HELP vllm:spec_decode_num_accepted_tokens_created Number of accepted tokens.
# TYPE vllm:spec_decode_num_accepted_tokens_created gauge
vllm:spec_decode_num_accepted_tokens_created{engine="0",model_name="m"} 1.7954586186855738e+09
# HELP vllm:spec_decode_num_accepted_tokens_per_pos_total Accepted tokens per draft position.
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_total counter
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="0"} 30.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="2"} 10.0
vllm:spec_decode_num_accepted_tokens_per_pos_total{engine="0",model_name="m",position="1"} 20.0
# HELP vllm:spec_decode_num_accepted_tokens_per_pos_created Accepted tokens per draft position.
# TYPE vllm:spec_decode_num_accepted_tokens_per_pos_created gauge
vllm:spec_decode_num_accepted_tokens_per_pos_created{engine="0",model_name="m",position="0"} 1.79545861868e+09
# HELP vllm:cache_config_info Information of the LLMEngine CacheConfig
# TYPE vllm:cache_config_info gauge
vllm:cache_config_info{block_size="16",cache_dtype="auto",engine="0",num_gpu_blocks="2048"} 1.0
"""

VANILLA_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="m"} 0.0
"""

SPEC = EngineSpec("org/fake-model", {"max_model_len": 256}, {"method": "ngram", "num_speculative_tokens": 3}, "server")
GREEDY = Sampling(temperature=0.0, max_tokens=10, seed=5, ignore_eos=True)


class FakeOpenAI(ThreadingHTTPServer):
    """A stand-in for vLLM's server: streams `chunks` tokens per SSE event with cumulative usage."""

    daemon_threads = True

    def __init__(self, port=0):
        super().__init__(("127.0.0.1", port), _Handler)
        self.chunks = [1, 3, 2, 4]
        self.first_delay = 0.15
        self.gap = 0.06
        self.metrics = METRICS
        self.bodies: list[dict] = []
        self.authorizations: list[str | None] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def _reply(self, status, body, content_type="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        self.server.authorizations.append(self.headers.get("Authorization"))
        if self.path == "/v1/models":
            self._reply(200, json.dumps({"object": "list", "data": [{"id": "served-name", "object": "model"}]}))
        elif self.path == "/metrics":
            self._reply(200, self.server.metrics, "text/plain; version=0.0.4")
        elif self.path == "/health":
            self._reply(200, "")
        else:
            self._reply(404, '{"detail": "Not Found"}')

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.authorizations.append(self.headers.get("Authorization"))
        with server.lock:
            server.bodies.append(body)
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
        try:
            if body["prompt"] == "bad":
                self._reply(400, '{"error": {"message": "prompt too long", "code": 400}}')
                return
            self._stream(body, int(body["prompt"].removeprefix("p")))
        finally:
            with server.lock:
                server.in_flight -= 1

    def _event(self, payload):
        self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
        self.wfile.flush()

    def _stream(self, body, base_id):
        server = self.server
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        time.sleep(server.first_delay)
        done = 0
        for position, count in enumerate(server.chunks):
            if position:
                time.sleep(server.gap)
            ids = [base_id * 100 + done + i for i in range(count)]
            done += count
            choice = {"index": 0, "text": "x" * count, "token_ids": ids, "finish_reason": None}
            usage = {"prompt_tokens": 7, "completion_tokens": done, "total_tokens": 7 + done}
            self._event({"id": "cmpl-1", "object": "text_completion", "model": body["model"], "choices": [choice], "usage": usage})
        usage = {"prompt_tokens": 7, "completion_tokens": done, "total_tokens": 7 + done}
        self._event({"id": "cmpl-1", "object": "text_completion", "model": body["model"], "choices": [], "usage": usage})
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def fake_server():
    server = FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_engine_args_become_flags():
    flags = engine_flags(
        {
            "enforce_eager": True,
            "enable_prefix_caching": False,
            "disable_log_stats": False,
            "max_model_len": 1024,
            "gpu_memory_utilization": 0.3,
            "hf_overrides": {"rope_theta": 1e6},
            "allowed_origins": ["a", "b"],
            "quantization": None,
        },
        defaults={"enforce_eager": False, "enable_prefix_caching": None, "disable_log_stats": False},
    )
    assert flags == [
        "--enforce-eager",
        "--no-enable-prefix-caching",
        "--max-model-len", "1024",
        "--gpu-memory-utilization", "0.3",
        "--hf-overrides", '{"rope_theta": 1000000.0}',
        "--allowed-origins", "a", "b",
    ]


def test_serve_args_name_the_model_address_and_speculative_config():
    args = serve_args(SPEC, "127.0.0.1", 8123)
    assert args[:6] == ["--model", "org/fake-model", "--host", "127.0.0.1", "--port", "8123"]
    assert args[6:8] == ["--max-model-len", "256"]
    assert args[8] == "--speculative-config"
    assert json.loads(args[9]) == {"method": "ngram", "num_speculative_tokens": 3}
    assert "--speculative-config" not in serve_args(SPEC.vanilla_twin(), "127.0.0.1", 8123)


def test_completion_body_asks_for_cumulative_usage_on_every_chunk():
    body = completion_body("m", "hello", GREEDY)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True, "continuous_usage_stats": True}
    assert (body["max_tokens"], body["temperature"], body["seed"], body["ignore_eos"]) == (10, 0.0, 5, True)


def test_spec_counters_from_metrics_text():
    counters = parse_spec_counters(METRICS)
    assert (counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens) == (40, 120, 60)
    assert counters.accepted_per_position == [30, 20, 10]


def test_spec_counters_sum_over_engines():
    lines = []
    for line in METRICS.splitlines():
        lines.append(line)
        if line.startswith("vllm:spec_decode"):
            lines.append(line.replace('engine="0"', 'engine="1"'))
    two_engines = "\n".join(lines)
    counters = parse_spec_counters(two_engines)
    assert (counters.num_drafts, counters.num_draft_tokens, counters.num_accepted_tokens) == (80, 240, 120)
    assert counters.accepted_per_position == [60, 40, 20]


def test_vanilla_metrics_give_zero_counters_and_no_cache_size():
    counters = parse_spec_counters(VANILLA_METRICS)
    assert (counters.num_drafts, counters.num_draft_tokens, counters.accepted_per_position) == (0, 0, [])
    assert parse_kv_cache_tokens(VANILLA_METRICS) is None


def test_kv_cache_tokens_from_cache_config_info():
    assert parse_kv_cache_tokens(METRICS) == 2048 * 16
    assert parse_kv_cache_tokens(METRICS.replace('num_gpu_blocks="2048"', 'num_gpu_blocks="None"')) is None


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


def test_last_meaningful_line_skips_vllm_pointer_lines(tmp_path):
    log = tmp_path / "server.log"
    log.write_text(
        "INFO 01-01 loading\n"
        "(EngineCore_DP0 pid=12) ERROR 01-01 ValueError: max_model_len 9000 exceeds the model's 8192\n"
        "Traceback (most recent call last):\n"
        "RuntimeError: Engine core initialization failed. See root cause above. Failed core proc(s): {}\n"
        "/usr/lib/python3.11/multiprocessing/resource_tracker.py:254: leaked semaphore objects\n\n"
    )
    assert last_meaningful_line(log) == (
        "(EngineCore_DP0 pid=12) ERROR 01-01 ValueError: max_model_len 9000 exceeds the model's 8192"
    )
    log.write_text("INFO loading weights\n\n")
    assert last_meaningful_line(log) == "INFO loading weights"


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except FileNotFoundError:
        return False


# Exits at once, after leaving a child in its process group, like a crashed API process would.
CRASHING_SERVER = (
    "import subprocess, sys\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print('child', child.pid, flush=True)\n"
    "print('ValueError: unrecognized arguments: ' + ' '.join(sys.argv[1:]), flush=True)\n"
    "print('', flush=True)\n"
    "sys.exit(2)\n"
)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="checks processes through /proc")
def test_start_failure_raises_with_the_log_line_and_leaves_nothing_behind(tmp_path):
    with pytest.raises(EngineStartError) as caught:
        ServerEngine(SPEC, start_timeout_s=30, launch_command=[sys.executable, "-c", CRASHING_SERVER], log_dir=tmp_path)
    message = str(caught.value)
    assert "\n" not in message
    assert "exited with code 2" in message
    assert "ValueError: unrecognized arguments: --model org/fake-model" in message
    log_path = next(tmp_path.glob("*.log"))
    assert str(log_path) in message
    child = int(re.search(r"child (\d+)", log_path.read_text()).group(1))
    assert not _alive(child)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="checks processes through /proc")
def test_start_timeout_kills_the_group(tmp_path):
    hanging = "import time; print('INFO still loading', flush=True); time.sleep(60)"
    began = time.perf_counter()
    with pytest.raises(EngineStartError, match=r"not healthy after 1 s: INFO still loading \(server log: "):
        ServerEngine(SPEC, start_timeout_s=1, launch_command=[sys.executable, "-c", hanging], log_dir=tmp_path)
    assert time.perf_counter() - began < 25


# A fake `vllm serve`: serves the fake OpenAI API on the --port it is given, until SIGTERM.
FAKE_SERVE = (
    "import sys\n"
    "sys.path.insert(0, {root!r})\n"
    "from tests.unit.test_server_engine import FakeOpenAI\n"
    "FakeOpenAI(int(sys.argv[sys.argv.index('--port') + 1])).serve_forever()\n"
)


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="checks processes through /proc")
def test_server_engine_measures_what_it_started_and_stops_it(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [sys.executable, "-c", FAKE_SERVE.format(root=root)]
    engine = ServerEngine(SPEC, start_timeout_s=60, launch_command=command, log_dir=tmp_path)
    try:
        assert engine.start_s > 0
        assert engine.base_url.startswith("http://127.0.0.1:")
        samples, _, _ = engine.generate(["p3"], GREEDY)
        assert samples[0].chunk_tokens == [1, 3, 2, 4]
        assert engine.counters().spec.num_drafts == 40
    finally:
        engine.close()
    assert not _alive(engine.pid)
    engine.close()


def test_a_tokenizer_that_cannot_load_is_a_one_line_start_error(tmp_path):
    from pytest_specdecode.engines.base import EngineSpec, EngineStartError
    from pytest_specdecode.engines.server import EndpointEngine

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
    from pytest_specdecode.engines.server import EndpointError, free_port

    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(EndpointError) as excinfo:
        EndpointEngine(SPEC, url).counters()
    message = _one_line(excinfo)
    assert message.startswith(f"spec endpoint {url}: GET /metrics: cannot connect")
    with pytest.raises(EngineStartError):  # what the session remembers for the config
        EndpointEngine(SPEC.vanilla_twin(url), url).generate(["p1"], GREEDY)


def test_garbage_and_refusals_are_one_line_causes(fake_server):
    """Was a raw UnicodeDecodeError for garbage; an HTTP 401 or 400 names status and first line."""
    from pytest_specdecode.engines.server import EndpointError

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


def test_a_server_of_ours_that_died_names_its_exit_signal_and_log(tmp_path):
    """Was RemoteProtocolError, and the next test retried the dead server."""
    import signal as signals

    from pytest_specdecode.engines.server import EndpointError

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [sys.executable, "-c", FAKE_SERVE.format(root=root)]
    engine = ServerEngine(SPEC, start_timeout_s=60, launch_command=command, log_dir=tmp_path)
    try:
        os.kill(engine.pid, signals.SIGKILL)
        engine._process.wait(timeout=10)
        with pytest.raises(EndpointError) as excinfo:
            engine.counters()
        message = _one_line(excinfo)
        assert "cannot connect" in message
        assert f"(vllm serve killed by SIGKILL; log: {engine.log_path})" in message
    finally:
        engine.close()


def test_a_server_that_accepts_and_never_answers_costs_the_request_timeout_once():
    """Was a hard-coded 600 s per test; now [run] request_timeout_s, and one line saying so."""
    import socket

    from pytest_specdecode.engines.server import EndpointError

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


def test_our_own_server_never_inherits_a_vllm_api_key(tmp_path, monkeypatch):
    """Was: VLLM_API_KEY in the environment made our own vllm serve refuse our own client."""
    monkeypatch.setenv("VLLM_API_KEY", "meant-for-another-server")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    probe = "import os, sys; open(sys.argv[1], 'w').write(str('VLLM_API_KEY' in os.environ)); " + FAKE_SERVE.format(root=root)
    seen = tmp_path / "seen"
    command = [sys.executable, "-c", probe, str(seen)]
    engine = ServerEngine(SPEC, start_timeout_s=60, launch_command=command, log_dir=tmp_path)
    try:
        assert seen.read_text() == "False"
        assert engine.counters().spec.num_drafts == 40
    finally:
        engine.close()


def test_a_clean_servers_log_is_removed_and_a_failed_ones_kept():
    """Logs were never cleaned up; a failure's log must stay, since the error names it."""
    import signal as signals

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [sys.executable, "-c", FAKE_SERVE.format(root=root)]
    clean = ServerEngine(SPEC, start_timeout_s=60, launch_command=command)
    assert clean.log_path.exists()
    clean.close()
    assert not clean.log_path.parent.exists()
    failed = ServerEngine(SPEC, start_timeout_s=60, launch_command=command)
    try:
        os.kill(failed.pid, signals.SIGKILL)
        failed._process.wait(timeout=10)
        with pytest.raises(EngineStartError, match="log: "):
            failed.counters()
    finally:
        failed.close()
    assert failed.log_path.exists()
    import shutil

    shutil.rmtree(failed.log_path.parent)
