import os

import pytest
from _pytest.pytester import SysModulesSnapshot

from pytest_specdecode.models import MODEL_DIR_ENV, model_cache_dir
from pytest_specdecode.session import SHARED

# pytester points HOME at each test's tmp dir: keep one model cache for every inner session
os.environ.setdefault(MODEL_DIR_ENV, str(model_cache_dir()))
# vLLM's own log handler would hold the stdout of whichever pytester session imported it first;
# through the root logger, its lines land in each test's captured log instead
os.environ.setdefault("VLLM_CONFIGURE_LOGGING", "0")

pytest_plugins = ["pytester"]


@pytest.fixture(scope="session", autouse=True)
def _engines_outlive_pytester_sessions():
    """In-process pytester sessions borrow one set of real engines instead of starting their own."""
    with SHARED.held():
        yield


def _is_library_module(name: str) -> bool:
    return not name.startswith(("test_", "conftest"))


@pytest.fixture
def pytester(pytester: pytest.Pytester) -> pytest.Pytester:
    """pytester, except that library modules survive each in-process run.

    pytester drops every module an inner run imported; torch cannot be imported a second time in
    one process, and the shared engines still use vLLM's modules. Test modules are still dropped.
    """
    take_snapshot = lambda: SysModulesSnapshot(preserve=_is_library_module)  # noqa: E731
    pytester._Pytester__take_sys_modules_snapshot = take_snapshot
    pytester._sys_modules_snapshot = take_snapshot()
    return pytester


@pytest.fixture
def engines_stopped() -> None:
    """For tests that start their own pytest process: free the CPU and RAM the shared engines hold."""
    SHARED.stop_engines()
