from pathlib import Path

import pytest

CONFIGS = Path(__file__).parent / "configs"


@pytest.fixture
def ngram_toml() -> Path:
    return CONFIGS / "ngram.toml"


@pytest.fixture
def draft_toml() -> Path:
    return CONFIGS / "draft.toml"


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.engine)


@pytest.fixture
def server_toml() -> Path:
    return CONFIGS / "server.toml"


@pytest.fixture
def tiny_toml(pytester, ngram_toml) -> Path:
    """The n-gram config cut to two short greedy requests: for tests about engines, not numbers."""
    tiny = pytester.path / "tiny.toml"
    tiny.write_text(
        ngram_toml.read_text()
        .replace("num_prompts = 4", "num_prompts = 2")
        .replace("max_tokens = 32", "max_tokens = 12")
        .replace("temperatures = [0.0, 0.8]", "temperatures = [0.0]")
    )
    return tiny
