"""Which GPUs each xdist worker's engines run on: disjoint blocks sized by the engine's world, one-line
errors when the runner has too few, and nothing that initialises CUDA."""

import subprocess
import sys

import pytest

from pytest_specdecode.engines import placement
from pytest_specdecode.engines.placement import (assign_gpus, count_gpus, gpus_needed, visible_devices,
                                                 worker_visible_devices)


def test_gpus_needed_is_the_engines_world_size():
    """TP x PP; a draft runs inside the target's world (TP=1 on its first GPU), adding none."""
    assert gpus_needed(1) == 1
    assert gpus_needed(2, draft_tensor_parallel_size=1) == 2
    assert gpus_needed(2, draft_tensor_parallel_size=2) == 2
    assert gpus_needed(2, pipeline_parallel_size=2) == 4


def test_a_draft_tp_other_than_1_or_the_targets_is_refused():
    """vLLM accepts those two only; a larger one would need ranks the engine doesn't have."""
    with pytest.raises(ValueError, match=r"^draft_tensor_parallel_size \(4\) must be 1 or the target's "
                                         r"tensor_parallel_size \(2\)$"):
        gpus_needed(2, draft_tensor_parallel_size=4)


def test_a_parallel_size_below_one_is_refused():
    with pytest.raises(ValueError) as raised:
        gpus_needed(0)
    assert str(raised.value) == "tensor_parallel_size (0) and pipeline_parallel_size (1) must be >= 1"


def test_workers_take_disjoint_blocks():
    """Worker i takes GPUs [i*needed, (i+1)*needed): a TP=2 config takes two GPUs."""
    assert [assign_gpus(f"gw{i}", 4, 4, 1) for i in range(4)] == [(0,), (1,), (2,), (3,)]
    assert [assign_gpus(f"gw{i}", 2, 4, 2) for i in range(2)] == [(0, 1), (2, 3)]
    assert assign_gpus("gw1", 2, 8, 2) == (2, 3)  # spare GPUs stay unused


def test_outside_xdist_the_session_takes_the_first_gpus():
    assert assign_gpus(None, 1, 4, 2) == (0, 1)
    assert assign_gpus("master", 1, 4, 1) == (0,)


def test_too_many_workers_say_how_many_would_do():
    """4 workers x 2 GPUs on a 4-GPU runner: the message names the -n that fits."""
    with pytest.raises(ValueError) as raised:
        assign_gpus("gw0", 4, 4, 2)
    assert str(raised.value) == "4 workers x 2 GPUs each need 8 GPUs; this runner shows 4: run with -n 2"


def test_a_config_larger_than_the_runner_is_refused():
    """With or without xdist: no worker count makes a TP=4 config fit two GPUs."""
    for worker in ("gw0", None):
        with pytest.raises(ValueError) as raised:
            assign_gpus(worker, 1, 2, 4)
        assert str(raised.value) == "a config needs 4 GPUs (tensor x pipeline parallel size); this runner shows 2"


def test_an_unknown_worker_id_is_refused():
    with pytest.raises(ValueError) as raised:
        assign_gpus("gw2", 2, 4, 1)
    assert str(raised.value) == "xdist worker id 'gw2' is not one of gw0..gw1"


def test_visible_devices_index_into_a_list_the_user_set():
    """A runner handed GPUs 4-7 (or their UUIDs): worker blocks count inside that list."""
    assert visible_devices({}, (2, 3)) == "2,3"
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "4,5,6,7"}, (2, 3)) == "6,7"
    assert visible_devices({"CUDA_VISIBLE_DEVICES": "GPU-aa, GPU-bb"}, (1,)) == "GPU-bb"
    with pytest.raises(ValueError) as raised:
        visible_devices({"CUDA_VISIBLE_DEVICES": "4,5"}, (2, 3))
    assert str(raised.value) == "GPU 3 is not in CUDA_VISIBLE_DEVICES=4,5"


def xdist(worker: str, count: int, **extra: str) -> dict[str, str]:
    return {"PYTEST_XDIST_WORKER": worker, "PYTEST_XDIST_WORKER_COUNT": str(count), **extra}


def test_each_worker_gets_its_own_visible_devices():
    """`pytest -n 2` on a 4-GPU runner with a TP=2 config: "0,1" and "2,3", which the device lock
    turns into two distinct locks."""
    assert worker_visible_devices(2, xdist("gw0", 2), gpu_count=4) == "0,1"
    assert worker_visible_devices(2, xdist("gw1", 2), gpu_count=4) == "2,3"


def test_placement_does_not_apply_without_xdist_gpus_or_consent():
    """No xdist worker, a CPU runner, `SPECDECODE_NO_PLACEMENT=1`, or an empty CUDA_VISIBLE_DEVICES
    (no GPU visible): None, and the environment is left as it is."""
    assert worker_visible_devices(1, {}, gpu_count=4) is None
    assert worker_visible_devices(1, xdist("gw0", 2), gpu_count=0) is None
    assert worker_visible_devices(1, xdist("gw0", 2, SPECDECODE_NO_PLACEMENT="1"), gpu_count=4) is None
    assert worker_visible_devices(1, xdist("gw0", 2, CUDA_VISIBLE_DEVICES="")) is None


def test_a_user_set_list_is_the_gpu_count(monkeypatch):
    """With CUDA_VISIBLE_DEVICES set, its length is what there is to share; nvidia-smi, which lists
    every GPU of the machine, is not asked."""
    monkeypatch.setattr(placement, "count_gpus", lambda: pytest.fail("nvidia-smi was asked"))
    assert worker_visible_devices(1, xdist("gw1", 2, CUDA_VISIBLE_DEVICES="4,5")) == "5"
    with pytest.raises(ValueError, match="this runner shows 2: run with -n 1$"):
        worker_visible_devices(2, xdist("gw0", 2, CUDA_VISIBLE_DEVICES="4,5"))


def test_gpus_are_counted_with_nvidia_smi(monkeypatch):
    """One index a line; the query never goes through torch.cuda (see test_no_cuda.py)."""
    def run(command, **kwargs):
        assert command == ("nvidia-smi", "--query-gpu=index", "--format=csv,noheader")
        return subprocess.CompletedProcess(command, 0, stdout="0\n1\n2\n3\n", stderr="")

    monkeypatch.setattr(subprocess, "run", run)
    assert count_gpus() == 4
    assert worker_visible_devices(1, xdist("gw3", 4)) == "3"


@pytest.mark.parametrize("outcome", [FileNotFoundError("nvidia-smi"), subprocess.TimeoutExpired("nvidia-smi", 30),
                                     subprocess.CompletedProcess((), 9, stdout="", stderr="NVIDIA-SMI has failed")])
def test_no_nvidia_smi_or_no_driver_means_no_gpu(monkeypatch, outcome):
    """A CPU runner (no nvidia-smi) or a broken driver counts 0, so placement steps aside."""
    def run(command, **kwargs):
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    monkeypatch.setattr(subprocess, "run", run)
    assert count_gpus() == 0
    assert worker_visible_devices(1, xdist("gw0", 2)) is None


def test_importing_it_loads_nothing_beyond_the_standard_library():
    """No torch (which could initialise CUDA), no pydantic: the plugin can call it before any engine starts."""
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys; before = set(sys.modules); import pytest_specdecode.engines.placement; "
         "print(sorted({name.split('.')[0] for name in set(sys.modules) - before} - set(sys.stdlib_module_names)))"],
        capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "['pytest_specdecode']"


def test_a_tensor_parallel_target_and_its_draft_tp_reach_vllm_as_written(tmp_path):
    """The 70B + 8B case's arguments, offline (`vllm.LLM` kwargs) and served (`vllm serve` flags):
    the target's TP as an engine argument, the draft's inside the speculative config, and the
    vanilla twin with the same TP and no draft."""
    import json

    from pytest_specdecode.config.spec import parse_config
    from pytest_specdecode.engines.serve import serve_args
    from pytest_specdecode.measure.measurer import engine_specs

    config = parse_config({"model": {"name": "meta-llama/Llama-3.1-70B-Instruct", "tensor_parallel_size": 2},
                           "speculative": {"method": "draft_model", "model": "meta-llama/Llama-3.1-8B-Instruct",
                                           "num_speculative_tokens": 5, "draft_tensor_parallel_size": 2}},
                          tmp_path / "seventy.toml")
    assert config.parallel_sizes == {"tensor_parallel_size": 2, "pipeline_parallel_size": 1,
                                     "draft_tensor_parallel_size": 2}
    spec, vanilla = engine_specs(config, {})
    assert spec.engine_args["tensor_parallel_size"] == 2 and spec.speculative_config["draft_tensor_parallel_size"] == 2
    assert vanilla.engine_args["tensor_parallel_size"] == 2 and not vanilla.speculative_config
    flags = serve_args(spec, "127.0.0.1", 8000, defaults={})
    assert flags[flags.index("--tensor-parallel-size") + 1] == "2"
    assert json.loads(flags[flags.index("--speculative-config") + 1])["draft_tensor_parallel_size"] == 2
