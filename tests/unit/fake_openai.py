"""A stand-in for vLLM's OpenAI-compatible server, for unit tests of the HTTP client without vLLM."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from pytest_specdecode.engines.base import EngineSpec, Sampling

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
