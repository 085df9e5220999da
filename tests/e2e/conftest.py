"""Real pytest sessions (pytester) on real vLLM CPU engines.

pytester drops the modules an in-process session imported when that session ends. torch cannot be
imported twice in one process, and the shared engines (tests/conftest.py) go on using the modules
of vLLM and of this plugin that started them: imported here, before any pytester snapshot is
taken, they are in every snapshot and survive every session.
"""

from pathlib import Path

import pytest
import torch  # noqa: F401
import vllm.entrypoints.llm  # noqa: F401

import pytest_specdecode.artifacts  # noqa: F401
import pytest_specdecode.engines.offline  # noqa: F401
import pytest_specdecode.engines.server  # noqa: F401
import pytest_specdecode.engines.vllm_info  # noqa: F401
import pytest_specdecode.transport  # noqa: F401
import pytest_specdecode.verdicts  # noqa: F401

CONFIGS = Path(__file__).parent / "configs"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the shared engines, or stops them to start engines of its own, is an engine test."""
    for item in items:
        if "shared_engines" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.engine)


@pytest.fixture
def ngram_toml() -> Path:
    return CONFIGS / "ngram.toml"


@pytest.fixture
def draft_toml() -> Path:
    return CONFIGS / "draft.toml"


@pytest.fixture
def server_toml() -> Path:
    return CONFIGS / "server.toml"


@pytest.fixture
def tiny_toml(pytester: pytest.Pytester, ngram_toml: Path) -> Path:
    """The n-gram config cut to two short greedy requests: for tests about engines, not numbers."""
    tiny = pytester.path / "tiny.toml"
    tiny.write_text(
        ngram_toml.read_text()
        .replace("num_prompts = 4", "num_prompts = 2")
        .replace("max_tokens = 32", "max_tokens = 12")
        .replace("temperatures = [0.0, 0.8]", "temperatures = [0.0]")
    )
    return tiny
