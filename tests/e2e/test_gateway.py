"""A deployment of several replicas behind a gateway, measured as users reach it: two real
`vllm serve` replicas (n-gram) behind Debian's nginx (round-robin), a vanilla server beside them,
and the plugin reading each replica's /metrics. What the plugin sums must be what the replicas
themselves counted."""

import shutil
import socket
import time
from pathlib import Path

import psutil
import pytest

from pytest_specdecode.engines.base import EngineSpec
from pytest_specdecode.engines.metrics import parse_counters
from pytest_specdecode.engines.processes import Children
from pytest_specdecode.engines.serve import HOST, free_port
from pytest_specdecode.engines.server import ServerEngine
from pytest_specdecode.config.models import resolve_model

NGINX = shutil.which("nginx") or (shutil.which("nginx", path="/usr/sbin:/sbin"))
ENGINE_ARGS = {"max_model_len": 1024, "gpu_memory_utilization": 0.1, "seed": 0}
NGRAM = {"method": "ngram", "num_speculative_tokens": 3, "prompt_lookup_min": 2, "prompt_lookup_max": 4}

CONFIG = """
[model]
name = "builtin:smollm2-135m"
max_model_len = 1024
gpu_memory_utilization = 0.1
seed = 0

[speculative]
method = "ngram"
num_speculative_tokens = 3
prompt_lookup_min = 2
prompt_lookup_max = 4

[workload]
prompts = "builtin:copy"
num_prompts = 8
max_tokens = 24
temperatures = [0.0]

[run]
warmup = 0  # every request the replicas count is one the windows measured
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{}}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    upstream replicas {{
        server {first};
        server {second};
    }}
    server {{
        listen {host}:{port};
        location / {{
            proxy_pass http://replicas;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
        }}
    }}
}}
"""


def wait_for_port(port: int, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex((HOST, port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nginx did not listen on {port}")


def replica_counters(urls):
    import httpx

    return {url: parse_counters(httpx.get(url, timeout=30, trust_env=False).text) for url in urls}


@pytest.mark.timeout(600)  # three `vllm serve` starts: an engine test's limit, though it shares no engines
@pytest.mark.skipif(NGINX is None, reason="nginx is not installed (Debian: apt-get install nginx; `make setup` does)")
def test_two_replicas_behind_nginx_are_summed_as_the_replicas_counted(pytester, tmp_path):
    model = resolve_model("builtin:smollm2-135m")
    servers, nginx = [], None
    try:
        for speculative in (NGRAM, NGRAM, None):  # two spec replicas, then the vanilla server
            servers.append(ServerEngine(EngineSpec(model, dict(ENGINE_ARGS), speculative, "server"), 600.0))
        first, second, vanilla = servers
        port = free_port()
        conf = tmp_path / "nginx.conf"
        conf.write_text(NGINX_CONF.format(dir=tmp_path, host=HOST, port=port, first=first.base_url.split("//")[1],
                                          second=second.base_url.split("//")[1]))
        nginx = psutil.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "error.log")])
        wait_for_port(port)
        metrics = [f"{server.base_url}/metrics" for server in (first, second)]
        before = replica_counters(metrics)

        config = pytester.path / "gateway.toml"
        config.write_text(CONFIG)
        pytester.makepyfile(test_gateway="def test_measured(spec_run):\n    assert spec_run.runs\n")
        report = pytester.path / "gateway.json"
        result = pytester.runpytest(
            f"--spec-config={config}", f"--spec-endpoint=http://{HOST}:{port}", f"--spec-baseline-endpoint={vanilla.base_url}",
            *(f"--spec-metrics-url={url}" for url in metrics), f"--spec-report={report}", "--spec-inconclusive=warn",
        )
        result.assert_outcomes(passed=1)
        after = replica_counters(metrics)
    finally:
        if nginx is not None:
            Children([nginx]).stop()
        for server in servers:
            server.close()

    import json

    [run] = json.loads(report.read_text())["runs"]
    assert run["valid"], run["invalid_reason"]
    own = {url: after[url].minus(before[url]) for url in metrics}
    # the summed acceptance is the sum of what each replica counted itself
    assert run["counters"]["num_drafts"] == sum(c.spec.num_drafts for c in own.values())
    assert run["counters"]["num_accepted_tokens"] == sum(c.spec.num_accepted_tokens for c in own.values())
    # and the client's tokens are the replicas' generated tokens: no request went elsewhere or was counted twice
    client_tokens = sum(window["output_tokens"] for window in run["spec"]["windows"])
    assert client_tokens == sum(c.generation_tokens for c in own.values())
    # round-robin reached both, and the report shows each replica's share
    replicas = {r["url"]: r for r in run["replicas"]}
    assert set(replicas) == set(metrics)
    assert all(replicas[url]["counters"]["num_drafts"] == own[url].spec.num_drafts > 0 for url in metrics)
    result.stdout.fnmatch_lines([f"replicas gateway T=0: {metrics[0]} acceptance * drafts, * tokens); {metrics[1]} *"])
