import threading

import pytest

from tests.unit.fake_openai import FakeOpenAI


@pytest.fixture
def fake_server():
    server = FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
