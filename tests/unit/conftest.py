"""pytester drops the modules an in-process session imported when that session ends, and torch
cannot be imported twice in one process (a second import of its C extension fails or segfaults).
Unit tests that run in-process sessions (test_failed_configs: the report names the environment,
which imports torch) would leave torch half-gone for a later test of the same xdist worker that
imports it (test_no_cuda): imported here, before any snapshot, it stays, with the vLLM modules the
unit tests reach (tests/e2e/conftest.py does the same for the engines)."""

import threading

import pytest

try:
    import torch  # noqa: F401
    # the argument classes `vllm_info` reads (which server flags the installed vLLM has): vLLM's
    # modules register torch types and fail when imported a second time
    import vllm.engine.arg_utils  # noqa: F401
    import vllm.entrypoints.launchers.cli_args  # noqa: F401
except ImportError:  # a checkout without the engines' dependencies: the tests that need them skip
    pass

from tests.unit.fake_openai import FakeOpenAI


@pytest.fixture
def fake_server():
    server = FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
