"""The one fingerprint: what production keys vanilla figures by, changed by anything that shapes them."""

from dataclasses import replace
from pathlib import Path

import pytest

from pytest_specdecode.measure.baseline import BaselineStore
from pytest_specdecode.config.spec import parse_config
from pytest_specdecode.engines.base import EngineSpec, Sampling
from pytest_specdecode.config.load import LoadLevel
from pytest_specdecode.measure.plan import Recipe as Condition
from pytest_specdecode.results import EngineFigures, Environment
from pytest_specdecode.measure.vanilla import VanillaSource
from pytest_specdecode.config.workload import Prompt

SIDE = EngineSpec("org/model", {"dtype": "bfloat16", "max_model_len": 2048}, None, "offline")
PROMPTS = [Prompt(text="hello"), Prompt(text="world")]
CONDITION = Condition(Sampling(temperature=0.8, max_tokens=64))


def config(**run):
    raw = {"model": {"name": "org/model"}, "speculative": {"method": "ngram", "num_speculative_tokens": 3},
           "workload": {"prompts": "builtin:chat", "num_prompts": 2, "max_tokens": 64}, "run": run}
    return parse_config(raw, Path("/c/a.toml"))


def environment(device="NVIDIA H100", vllm="0.11.0", torch="2.8.0"):
    return lambda: Environment(vllm=vllm, torch=torch, device=device, python="3.11")


def key(tmp_path, side=SIDE, prompts=PROMPTS, cfg=None, condition=CONDITION, env=None):
    import os

    from pytest_specdecode.measure.baseline import vllm_settings

    store = BaselineStore(tmp_path, env or environment(), settings=lambda: vllm_settings(os.environ))
    return VanillaSource(store).fingerprint(side, prompts, cfg or config(), condition)


@pytest.mark.parametrize(
    "change",
    [
        {"side": EngineSpec("org/other", SIDE.engine_args, None, "offline")},
        {"side": replace(SIDE, engine_args={"dtype": "float16", "max_model_len": 2048})},
        {"side": replace(SIDE, mode="server")},
        {"prompts": [Prompt(text="hello"), Prompt(text="world!")]},
        {"condition": Condition(Sampling(temperature=0.0, max_tokens=64))},
        {"condition": Condition(Sampling(temperature=0.8, max_tokens=65))},
        {"condition": Condition(Sampling(temperature=0.8, max_tokens=64, seed=1))},
        {"condition": Condition(CONDITION.sampling, LoadLevel(concurrency=4))},
        {"condition": Condition(CONDITION.sampling, LoadLevel(request_rate=2.0, burstiness=0.5))},
        {"cfg": config(repeats=5)},
        {"cfg": config(warmup=0)},
        {"env": environment(vllm="0.11.1")},
        {"env": environment(torch="2.9.0")},
        {"env": environment(device="1x NVIDIA H200 (driver 580)")},
        {"env": environment(device="cpu: AMD EPYC 9654 (2 cores)")},
    ],
)
def test_the_fingerprint_changes_when_anything_that_shapes_vanilla_changes(tmp_path, change):
    assert key(tmp_path, **change) != key(tmp_path)


def test_vllm_settings_and_a_local_models_files_change_the_fingerprint(tmp_path, monkeypatch):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}"}')
    local = EngineSpec(str(folder))
    before = key(tmp_path, side=local)
    (folder / "tokenizer_config.json").write_text('{"chat_template": "{{ messages }}\\n"}')
    assert key(tmp_path, side=local) != before
    changed = key(tmp_path, side=local)
    monkeypatch.setenv("VLLM_USE_V2_SAMPLER", "1")
    assert key(tmp_path, side=local) != changed


def test_without_a_store_the_memo_serves_this_process_and_a_store_is_written_once(tmp_path):
    saved = []

    class Store:
        def identity(self, side):
            return {"device": "x"}

        def load(self, fingerprint):
            return None

        def save(self, fingerprint, figures, meta):
            saved.append(fingerprint)

    source = VanillaSource(Store())
    fp = source.fingerprint(SIDE, PROMPTS, config(), CONDITION)
    assert source.known(fp) is None
    figures = EngineFigures(samples=[], duration_s=1.0)
    source.remember(fp, figures, new=True, meta={})
    found, info = source.known(fp)
    # finding 5: it was "measured", age 0, and paired with the next config's spec windows
    assert info.source == "memo" and 0 <= info.age_s < 60 and saved == [fp]
    source.remember(fp, figures, new=False, meta={})
    assert saved == [fp]


def test_a_baseline_store_that_cannot_be_written_is_a_warning_and_the_run_is_still_judged(tmp_path):
    """Was a raw OSError after vanilla had been measured, and the gate was never judged."""
    from pytest_specdecode.engines.pool import EnginePool
    from pytest_specdecode.measure.measurer import Measurer

    from .fakes import FakeFactory

    (tmp_path / "baselines").write_text("a file where the baselines folder should be")
    measurer = Measurer(EnginePool({"offline": FakeFactory()}), baselines=BaselineStore(tmp_path, environment()))
    result = measurer.measure(config())
    [run] = [r for r in result.runs if r.temperature == 0.0]
    assert run.valid and run.speedup is not None
    [warning] = [w for w in run.warnings if w.code == "baseline_not_stored"]
    assert warning.message.startswith("vanilla baseline not stored: File exists")
    assert str(tmp_path / "baselines") in warning.message


def test_a_stored_baseline_says_at_the_start_what_it_still_starts(tmp_path):
    """A second session on a stored baseline saved only 10 % of its wall time at the default
    temperatures, silently: the T>0 lossless check starts the vanilla engine to score spec's
    outputs. Now it says so before anything starts, and how to skip it."""
    from pytest_specdecode.engines.pool import EnginePool
    from pytest_specdecode.measure.measurer import Measurer

    from .fakes import FakeFactory

    def session(**run) -> list[str]:
        said: list[str] = []
        store = BaselineStore(tmp_path, environment())
        Measurer(EnginePool({"offline": FakeFactory()}), progress=said.append, baselines=store).measure(config(**run))
        return [line for line in said if "stored baselines" in line]

    assert session() == []  # the first session measures and stores
    [line] = session()
    assert "vanilla figures of 2 of 2 conditions from stored baselines; the vanilla engine still starts, to score " \
           "spec's outputs at T=0.8 under the target" in line and "lossless_check = false skips it" in line
    [line] = session(lossless_check=False)
    assert line.endswith("no vanilla engine starts")
