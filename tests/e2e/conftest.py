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
