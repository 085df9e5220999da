import json
import os
import re
import sys
import time

import psutil
import pytest

from pytest_specdecode.engines.base import EngineStartError
from pytest_specdecode.engines.endpoint import EndpointError
from pytest_specdecode.engines.serve import engine_flags, last_meaningful_line, serve_args
from pytest_specdecode.engines.server import ServerEngine
from tests.unit.fake_openai import GREEDY, SPEC


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


def _alive(pid: int) -> bool:
    """Whether the process still runs (a zombie, reaped or not, does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
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


def test_start_timeout_kills_the_group(tmp_path):
    hanging = "import time; print('INFO still loading', flush=True); time.sleep(60)"
    began = time.perf_counter()
    with pytest.raises(EngineStartError, match=r"not healthy after 3 s: INFO still loading \(server log: "):
        ServerEngine(SPEC, start_timeout_s=3, launch_command=[sys.executable, "-c", hanging], log_dir=tmp_path)
    assert time.perf_counter() - began < 25


# A fake `vllm serve`: serves the fake OpenAI API on the --port it is given, until SIGTERM.
FAKE_SERVE = (
    "import sys\n"
    "sys.path.insert(0, {root!r})\n"
    "from tests.unit.fake_openai import FakeOpenAI\n"
    "FakeOpenAI(int(sys.argv[sys.argv.index('--port') + 1])).serve_forever()\n"
)


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


def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_a_server_of_ours_that_died_names_its_exit_signal_and_log(tmp_path):
    """Was RemoteProtocolError, and the next test retried the dead server."""
    import signal as signals

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    command = [sys.executable, "-c", FAKE_SERVE.format(root=root)]
    engine = ServerEngine(SPEC, start_timeout_s=60, launch_command=command, log_dir=tmp_path)
    try:
        os.kill(engine.pid, signals.SIGKILL)
        engine.server.process.wait(timeout=10)
        with pytest.raises(EndpointError) as excinfo:
            engine.counters()
        message = _one_line(excinfo)
        assert "cannot connect" in message
        assert f"(vllm serve killed by SIGKILL; log: {engine.log_path})" in message
    finally:
        engine.close()


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
        failed.server.process.wait(timeout=10)
        with pytest.raises(EngineStartError, match="log: "):
            failed.counters()
    finally:
        failed.close()
    assert failed.log_path.exists()
    import shutil

    shutil.rmtree(failed.log_path.parent)


def test_a_server_interrupted_while_it_starts_is_killed_without_the_full_grace(tmp_path):
    """A `timeout 30` run took 25 s to exit: vLLM finishes loading before it looks at a SIGTERM,
    and the stop waited the whole 20 s grace for it."""
    import signal as signals
    import threading

    deaf = ("import os, signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('pid', os.getpid(), flush=True); time.sleep(60)")
    threading.Timer(3.0, os.kill, (os.getpid(), signals.SIGINT)).start()
    began = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        ServerEngine(SPEC, start_timeout_s=60, launch_command=[sys.executable, "-c", deaf], log_dir=tmp_path)
    assert time.monotonic() - began < 14
    server = int(re.search(r"pid (\d+)", next(tmp_path.glob("*.log")).read_text()).group(1))
    assert not _alive(server)
