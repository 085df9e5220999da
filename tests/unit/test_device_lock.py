"""One measurement per device at a time, across processes (the lock itself; the e2e xdist test shows it in use)."""

import multiprocessing
import time

from pytest_specdecode.measure.device_lock import device_key, device_lock


def _hold(folder, key, started, seconds):
    with device_lock(key, folder=folder):
        started.put(time.time())
        time.sleep(seconds)
        started.put(time.time())


def test_a_second_process_waits_for_the_device_and_says_so(tmp_path):
    context = multiprocessing.get_context("fork")
    spans = context.Queue()
    holder = context.Process(target=_hold, args=(tmp_path, "cpu", spans, 1.0))
    holder.start()
    first_start = spans.get(timeout=30)
    lines = []
    with device_lock("cpu", lines.append, folder=tmp_path):
        mine = time.time()
    first_end = spans.get(timeout=30)
    holder.join(timeout=30)
    assert mine >= first_end > first_start
    assert lines[0] == "waiting for device cpu: another process is measuring on it"


def test_distinct_devices_do_not_wait(tmp_path):
    lines = []
    with device_lock("gpu-0", lines.append, folder=tmp_path), device_lock("gpu-1", lines.append, folder=tmp_path):
        pass
    assert lines == []


def test_device_key_follows_pinned_gpus_and_endpoints(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert device_key() == "gpu-2_3"
    assert device_key("http://10.0.0.5:8000") == "endpoint-10.0.0.5-8000"


def test_device_key_follows_the_cores_vllm_cpu_engines_are_pinned_to(monkeypatch):
    """Was `cpu` whatever the pinning: two xdist workers on distinct cores waited for each other."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr("shutil.which", lambda name: None)
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "0-3")
    assert device_key() == "cpu-0-3"
    monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", "4,5")
    assert device_key() == "cpu-4_5"
    for unpinned in ("auto", "nobind", ""):
        monkeypatch.setenv("VLLM_CPU_OMP_THREADS_BIND", unpinned)
        assert device_key() == "cpu"
