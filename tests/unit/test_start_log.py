"""An in-process engine's log: what its spawned and forked processes write lands in its file, for
as long as they live, and this process's own output, logging and environment are left as they were;
and its stop, which gives those processes time to exit."""

import logging
import multiprocessing
import os
import subprocess
import sys
import time

import pytest

from pytest_specdecode.engines.start_log import EngineLog, engine_output_to, start_phases

SPAWNED = ("import os, sys, time\n"
           "print('spawned child, logging at', os.environ['VLLM_LOGGING_LEVEL'], flush=True)\n"
           "time.sleep(0.5)\n"
           "print('spawned child, later', file=sys.stderr, flush=True)\n")


def _forked() -> None:
    logging.getLogger("vllm.worker").info("forked child: Loading weights took 1.50 seconds")


def test_spawned_and_forked_engine_processes_log_into_the_engine_s_file(tmp_path, monkeypatch):
    """Was: an offline engine's own lines went to the pytest process's output (its capture), so an
    offline start could not be taken apart (only `vllm.LLM(...)` as a whole)."""
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "WARNING")
    log = tmp_path / "engine.log"
    with engine_output_to(log):
        spawned = subprocess.Popen([sys.executable, "-c", SPAWNED])
        forked = multiprocessing.get_context("fork").Process(target=_forked)
        forked.start()
        forked.join(30)
    assert os.environ["VLLM_LOGGING_LEVEL"] == "WARNING"
    assert not any(isinstance(h, logging.FileHandler) for h in logging.getLogger("vllm").handlers)
    spawned.wait(30)
    time.sleep(0.1)
    text = log.read_text()
    assert "spawned child, logging at INFO" in text and "spawned child, later" in text  # outlived the block
    assert "forked child: Loading weights took 1.50 seconds" in text
    assert start_phases(log, 10.0)["weights_s"] == 1.5


def test_a_line_written_twice_counts_once_and_a_draft_s_own_load_adds(tmp_path):
    log = tmp_path / "engine.log"
    log.write_text("(Worker pid=1) Loading weights took 2.00 seconds\n"
                   "2026 Worker INFO vllm: Loading weights took 2.00 seconds\n"  # the same line via our handler
                   "(Worker pid=1) Loading weights took 0.50 seconds\n")  # the draft's
    assert start_phases(log, 10.0)["weights_s"] == 2.5


class _Core:
    def __init__(self, takes_timeout: bool) -> None:
        self.calls: list[dict] = []
        if takes_timeout:
            self.shutdown = lambda timeout=None: self.calls.append({"timeout": timeout})
        else:  # vLLM 0.26's MPClient.shutdown
            self.shutdown = lambda: self.calls.append({})


@pytest.mark.parametrize("takes_timeout", [True, False])
def test_an_offline_engine_stop_gives_its_core_time_to_exit(tmp_path, takes_timeout):
    """Was vLLM's default 5 s, after which it SIGKILLs a core still tearing down (two engines stopped
    at once on two cores were: "force killing remaining process" ended the session's output)."""
    from types import SimpleNamespace

    from pytest_specdecode.engines.offline import STOP_GRACE_S, OfflineEngine
    from pytest_specdecode.engines.processes import Children

    core = _Core(takes_timeout)
    engine = object.__new__(OfflineEngine)
    engine._llm = SimpleNamespace(llm_engine=SimpleNamespace(engine_core=core))
    engine._processes, engine.log = Children(), EngineLog(tmp_path, "offline", "spec", "key")
    engine.close()
    assert core.calls == [{"timeout": STOP_GRACE_S} if takes_timeout else {}]
