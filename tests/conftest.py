"""Fixtures for the whole suite, and the engines that in-process pytester sessions share.

Each pytester session is a pytest session of its own; left alone, the plugin starts its own engines
in each (about 40 s apiece on a CPU runner) and stops them at its end. `SharedEngines` implements
the plugin's `pytest_specdecode_measurer` hook instead, and a test hands it to the sessions it
runs: `pytester.runpytest(..., plugins=[shared_engines])`.
"""

import os

import pytest

from pytest_specdecode.engines.pool import DEFAULT_FACTORIES, EnginePool
from pytest_specdecode.measure.measurer import Measurer
from pytest_specdecode.config.models import MODEL_DIR_ENV, model_cache_dir

# pytester points HOME at each test's tmp dir: keep one model cache for every inner session
os.environ.setdefault(MODEL_DIR_ENV, str(model_cache_dir()))
# vLLM's own log handler would hold the stdout of whichever pytester session imported it first;
# through the root logger, its lines land in each test's captured log instead
os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")

pytest_plugins = ["pytester"]

#: Each test's own limit (pytest-timeout): the slowest engine test takes ~3.5 min on 2 cores, the
#: slowest other test seconds; a hang costs minutes, not CI's 90.
ENGINE_TIMEOUT_S = 600
TIMEOUT_S = 120


def is_engine_test(item: pytest.Item) -> bool:
    """A test that uses the shared engines, or stops them to start engines of its own."""
    return "shared_engines" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Engine tests are marked `engine`; every test gets its own time limit."""
    for item in items:
        engine = is_engine_test(item)
        if engine:
            item.add_marker(pytest.mark.engine)
        item.add_marker(pytest.mark.timeout(ENGINE_TIMEOUT_S if engine else TIMEOUT_S))


class SharedEngines:
    """One pool of real engines, and what was measured on them, for every session it is handed to.

    The pool keeps at least two engines up (more if a session asks with `--spec-max-engines`), so
    one config's vanilla engine is still up for the next config of the same target: each start
    saved is ~30 s of a CPU runner. With two up, a session measures spec and vanilla interleaved.
    """

    #: Engines kept up between sessions, whatever a session's `--spec-max-engines`.
    KEEP_LIVE = 2

    def __init__(self) -> None:
        self.pool = EnginePool(dict(DEFAULT_FACTORIES))
        self.measurer = Measurer(self.pool)

    def pytest_specdecode_measurer(self, config: pytest.Config) -> Measurer:
        self.pool.max_live = max(self.KEEP_LIVE, config.getoption("--spec-max-engines") or 1)
        return self.measurer

    def forget(self) -> None:
        """Keep the engines, drop what was measured: the next session measures as a new CI job would."""
        self.measurer = Measurer(self.pool)

    def stop(self) -> None:
        """Stop the engines (they start again when a session needs them)."""
        self.pool.close_all()


@pytest.fixture(scope="session")
def shared_engines():
    engines = SharedEngines()
    yield engines
    engines.stop()


@pytest.fixture
def engines_stopped(shared_engines: SharedEngines) -> None:
    """For tests that start their own pytest process: free the CPU and RAM the shared engines hold."""
    shared_engines.stop()
