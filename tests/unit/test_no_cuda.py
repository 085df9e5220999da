"""Nothing in the pytest process may initialise CUDA before an engine starts: vLLM would then fall
back to `spawn` and every engine start would cost ~20 s more (seen on the H100: 44.5 s vs 21.0 s)."""

from pathlib import Path

import pytest

from pytest_specdecode.measure.baseline import BaselineStore
from pytest_specdecode.config.spec import parse_config
from pytest_specdecode.measure.device_lock import device_key
from pytest_specdecode.engines import vllm_info
from pytest_specdecode.engines.pool import EnginePool
from pytest_specdecode.measure.measurer import Measurer

from .fakes import FakeFactory

CUDA_ENTRY_POINTS = ("init", "is_available", "device_count", "current_device", "get_device_name",
                     "get_device_properties", "mem_get_info", "get_device_capability")


@pytest.fixture
def cuda_forbidden(monkeypatch):
    torch = pytest.importorskip("torch")

    def forbidden(*args, **kwargs):
        raise AssertionError("CUDA was touched in the pytest process before an engine started")

    for name in CUDA_ENTRY_POINTS:
        monkeypatch.setattr(torch.cuda, name, forbidden)
    monkeypatch.setattr(vllm_info, "vllm_version", lambda: "0.0-test")  # importing vLLM is not the point here
    vllm_info.device_name.cache_clear()
    yield
    vllm_info.device_name.cache_clear()


def test_environment_fingerprint_and_device_lock_never_touch_cuda(cuda_forbidden, tmp_path):
    environment = vllm_info.environment()
    assert environment.device
    raw = {"model": {"name": "target"}, "speculative": {"method": "ngram", "num_speculative_tokens": 3},
           "workload": {"prompts": "builtin:chat", "num_prompts": 2, "max_tokens": 8}}
    measurer = Measurer(EnginePool({"offline": FakeFactory()}), baselines=BaselineStore(tmp_path))
    result = measurer.measure(parse_config(raw, Path("/c/a.toml")))
    assert result.runs[0].baseline.source == "measured"
    assert device_key() in ("cpu", "gpu-all") or device_key().startswith("gpu-")
