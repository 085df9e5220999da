"""Where a session's engines come from: its own pool, stopped when the session ends, or the
measurer a `pytest_specdecode_measurer` hook returns, which outlives the session."""

import json
import time

import pytest

from pytest_specdecode.engines.pool import DEFAULT_FACTORIES, EnginePool
from pytest_specdecode.measure.measurer import Measurer

from .fakes import FakeFactory

CONFIG = '[model]\nname = "org/m"\n[speculative]\nmethod = "ngram"\nnum_speculative_tokens = 3\n'
USES_AN_ENGINE = "def test_a(spec_engine):\n    assert spec_engine.spec.model == 'org/m'\n"
#: --spec-endpoint: the engines are endpoint clients, so no vLLM is needed to make their specs
ARGS = ("-p", "no:cacheprovider", "--spec-config=c.toml", "--spec-endpoint=http://127.0.0.1:9")


class ScriptedEngines:
    """Scripted engines in place of one mode's real ones (the endpoint client by default), for every
    session this plugin is given to."""

    def __init__(self, mode: str = "endpoint") -> None:
        self.mode = mode
        self.factory = FakeFactory()

    @pytest.fixture(autouse=True, scope="session")
    def _scripted_engines(self):
        with pytest.MonkeyPatch.context() as patch:
            patch.setitem(DEFAULT_FACTORIES, self.mode, self.factory)
            yield


class SharedMeasurer(ScriptedEngines):
    def __init__(self) -> None:
        super().__init__()
        self.measurer = Measurer(EnginePool({"endpoint": self.factory}))

    def pytest_specdecode_measurer(self, config):
        return self.measurer


@pytest.fixture
def session_files(pytester):
    pytester.makefile(".toml", c=CONFIG)
    pytester.makepyfile(USES_AN_ENGINE)


def test_without_the_hook_a_session_stops_the_engines_it_started(pytester, session_files):
    scripted = ScriptedEngines()
    pytester.runpytest(*ARGS, plugins=[scripted]).assert_outcomes(passed=1)
    [engine] = scripted.factory.engines
    assert engine.closed


def test_a_hooks_measurer_serves_every_session_and_its_engines_outlive_them(pytester, session_files):
    shared = SharedMeasurer()
    for _ in range(2):
        pytester.runpytest(*ARGS, plugins=[shared]).assert_outcomes(passed=1)
    [engine] = shared.factory.engines  # started once, for both sessions
    assert not engine.closed


def test_a_shared_measurers_time_is_reported_per_session(pytester, session_files):
    """Was: the second session reported the first one's engine start as its own, and a negative
    `other` (the phases summed over every session the measurer had served)."""
    shared = SharedMeasurer()
    shared.measurer.seconds["engine_start"] = 500.0  # what earlier sessions spent
    pytester.runpytest(*ARGS, "--spec-report=r.json", plugins=[shared]).assert_outcomes(passed=1)
    timing = json.loads((pytester.path / "r.json").read_text())["timing_s"]
    assert 0 <= timing["engine_start"] < timing["session"] < 500
    assert timing["other"] >= 0


HELPER_AND_RUNTIME_MARKER = """
import pytest
from pytest_specdecode import assert_min_speedup

def test_helper(spec_run):
    assert_min_speedup(spec_run, 1.5)

def test_marker_added_while_running(request, spec_run):
    request.applymarker(pytest.mark.min_speedup(3.0))
"""


class ScriptedWithoutVllm(ScriptedEngines):
    """Also the environment a measured result records, read without importing vLLM: a second
    in-process import of vLLM (pytester restores sys.modules between runs) re-registers its torch
    types and fails."""

    @pytest.fixture(autouse=True, scope="session")
    def _no_vllm_import(self):
        from pytest_specdecode.engines import vllm_info
        from pytest_specdecode.results import Environment

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(vllm_info, "environment", lambda: Environment(device="scripted"))
            yield


def test_helper_verdicts_reach_the_reports_and_a_marker_added_at_run_time_is_judged(pytester):
    """Finding 7: the `assert_*` helpers' verdicts never reached any report, and a marker added
    with `request.applymarker` was measured but never judged (the test passed). Scripted engines:
    spec 2x vanilla's speed in three identical windows, so every interval is decisive."""
    pytester.makefile(".toml", c=CONFIG)
    pytester.makepyfile(test_gates=HELPER_AND_RUNTIME_MARKER)
    result = pytester.runpytest(*ARGS, "--spec-baseline-endpoint=http://127.0.0.1:10", "--spec-report=r.json",
                                "--junitxml=j.xml", plugins=[ScriptedWithoutVllm()])
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["*min_speedup(3, metric=throughput) at c T=0: measured 2.000 (0.99* interval "
                                 "2.000..2.000), below threshold 3*"])
    gates = {(g["test"].split("::")[-1], g["gate"], g["outcome"]) for g in json.loads((pytester.path / "r.json").read_text())["gates"]}
    assert gates == {("test_helper[c]", "min_speedup(1.5, metric=throughput)", "pass"),
                     ("test_marker_added_while_running[c]", "min_speedup(3, metric=throughput)", "fail")}
    assert 'name="specdecode:min_speedup(1.5, metric=throughput)@c T=0"' in (pytester.path / "j.xml").read_text()


class OfflineFakes:
    """Scripted offline engines through the hook: placement happens before the first engine."""

    def __init__(self) -> None:
        self.factory = FakeFactory()
        self.measurer = Measurer(EnginePool({"offline": self.factory}))

    def pytest_specdecode_measurer(self, config):
        return self.measurer


PINNED = "import os\n\ndef test_a(spec_engine):\n    assert os.environ['CUDA_VISIBLE_DEVICES'] == {!r}\n"


@pytest.mark.parametrize(("tp", "worker", "visible"), [(2, "gw1", "6,7"), (1, "gw1", "5")])
def test_an_xdist_worker_runs_its_engines_on_its_own_block_of_gpus(pytester, monkeypatch, tp, worker, visible):
    """`pytest -n 2` on a 4-GPU runner: worker gw1 takes the second block, as large as a config's
    tensor-parallel size, of the GPUs the runner shows (here 4..7 of 8, of which it was given 4)."""
    monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    pytester.makefile(".toml", c=CONFIG.replace('name = "org/m"', f'name = "org/m"\ntensor_parallel_size = {tp}'))
    pytester.makepyfile(PINNED.format(visible))
    result = pytester.runpytest("-p", "no:cacheprovider", "--spec-config=c.toml", plugins=[OfflineFakes()])
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*this worker's engines run on GPU {visible} (CUDA_VISIBLE_DEVICES)"])


def test_more_workers_than_gpu_blocks_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "4")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")
    pytester.makefile(".toml", c=CONFIG.replace('name = "org/m"', 'name = "org/m"\ntensor_parallel_size = 2'))
    pytester.makepyfile(PINNED.format("0,1"))
    result = pytester.runpytest("-p", "no:cacheprovider", "--spec-config=c.toml", plugins=[OfflineFakes()])
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*4 workers x 2 GPUs each need 8 GPUs; this runner shows 4: run with -n 2*"])


@pytest.mark.parametrize(("utilization", "order"), [(0.2, "abba"), (None, "blocks")])
def test_two_engines_run_at_once_by_default_where_the_config_leaves_room(pytester, utilization, order):
    """Was one engine at a time whatever the config asked: `make demo` ran every spec window before
    every vanilla one, unpaired, and started the vanilla engine twice for its two configs."""
    share = "" if utilization is None else f"\ngpu_memory_utilization = {utilization}"
    pytester.makefile(".toml", c=CONFIG.replace('name = "org/m"', f'name = "org/m"{share}'))
    pytester.makepyfile("def test_a(spec_run):\n    pass\n")
    scripted = ScriptedEngines("offline")
    pytester.runpytest("-p", "no:cacheprovider", "--spec-config=c.toml", "--spec-report=r.json",
                       plugins=[scripted]).assert_outcomes(passed=1)
    runs = json.loads((pytester.path / "r.json").read_text())["runs"]
    assert {run["window_order"] for run in runs} == {order}


def test_checking_configs_against_vllm_is_its_own_phase(pytester, session_files, monkeypatch):
    """Was part of `other`: the first check imports vLLM (5-25 s), which a bare script pays inside
    `vllm.LLM`; a session that looked slow for it said nothing of why."""
    from pytest_specdecode.engines import vllm_info

    monkeypatch.setattr(vllm_info, "validate_against_vllm", lambda config: time.sleep(1.5))
    monkeypatch.setattr(vllm_info, "engine_defaults", dict)
    pytester.runpytest("-p", "no:cacheprovider", "--spec-config=c.toml", "--spec-report=r.json",
                       plugins=[ScriptedEngines("offline")]).assert_outcomes(passed=1)
    timing = json.loads((pytester.path / "r.json").read_text())["timing_s"]
    assert timing["config_check"] >= 1.5 > timing["other"] >= 0
