import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_specdecode import __version__
from pytest_specdecode.measure import baseline
from pytest_specdecode.measure.baseline import BaselineError, BaselineStore, fingerprint, model_identity
from pytest_specdecode.engines.base import EngineSpec
from pytest_specdecode.results import EngineFigures, Environment, RequestSample
from pytest_specdecode.results.schema import SCHEMA_VERSION

FP = "a" * 64


def figures(tokens: int = 20, duration_s: float = 2.0) -> EngineFigures:
    samples = [
        RequestSample(prompt_tokens=5, output_tokens=tokens, ttft_s=0.1, e2e_s=1.0, itl_s=[0.1, 0.2],
                      chunk_tokens=[1, 3, 2], repeat=repeat)
        for repeat in (0, 1)
    ]
    return EngineFigures(samples=samples, duration_s=duration_s, kv_cache_tokens=1000)


def installed() -> Environment:
    return Environment(vllm="0.11.0", torch="2.8.0", device="NVIDIA H100", python="3.11")


VANILLA = EngineSpec("org/model", {"dtype": "bfloat16", "max_model_len": 2048}, None, "offline")


def one_line_naming(path: Path, excinfo: pytest.ExceptionInfo) -> str:
    message = str(excinfo.value)
    assert str(path) in message
    assert "\n" not in message
    return message


def test_fingerprint_ignores_key_order_and_is_hex():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert baseline._FINGERPRINT.fullmatch(fingerprint({}))


def test_identity_covers_harness_model_content_software_device_and_vllm_settings(tmp_path):
    # an environment of its own: engines started earlier in this process set VLLM_* variables
    environ = {"VLLM_ATTENTION_BACKEND": "FLASH_ATTN", "VLLM_LOGGING_LEVEL": "DEBUG", "VLLM_API_KEY": "secret",
               "PATH": "/usr/bin"}
    current = lambda: baseline.vllm_settings(environ)  # noqa: E731
    assert BaselineStore(tmp_path, installed, settings=current).identity(VANILLA) == {
        "harness": __version__, "model": {"id": "org/model", "snapshot": None}, "vllm": "0.11.0", "torch": "2.8.0",
        "cuda": None, "device": "NVIDIA H100", "vllm_settings": {"VLLM_ATTENTION_BACKEND": "FLASH_ATTN"},
    }


def test_an_endpoint_is_identified_by_its_server_never_by_this_machine(tmp_path):
    servers = {"http://a:8000": {"version": "0.26.0", "models": [{"id": "m", "root": "/m", "max_model_len": 2048}]},
               "http://b:8000": {"version": "0.27.0", "models": [{"id": "m", "root": "/m", "max_model_len": 2048}]}}

    def no_local_machine():
        raise AssertionError("the local environment was read for an endpoint")

    store = BaselineStore(tmp_path, no_local_machine, endpoint_identity=lambda url, headers: servers[url])
    a, b = (EngineSpec("org/model", url=url) for url in servers)
    assert store.identity(a) == {"harness": __version__, "server": servers["http://a:8000"]}
    assert store.identity(a) != store.identity(b)


def test_a_hub_model_is_keyed_by_its_cached_snapshot_commit(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("abc123\n")
    assert model_identity("org/model") == {"id": "org/model", "snapshot": "abc123"}
    (refs / "main").write_text("def456\n")
    assert model_identity("org/model") == {"id": "org/model", "snapshot": "def456"}


def test_a_changed_tokenizer_file_changes_the_model_identity(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "tokenizer.json").write_text('{"model": {"vocab": {"a": 0}}}')
    before = model_identity(str(folder))
    (folder / "tokenizer.json").write_text('{"model": {"vocab": {"b": 0}}}')
    assert model_identity(str(folder)) != before


def test_fingerprint_refuses_objects_without_a_canonical_form():
    with pytest.raises(TypeError, match="object"):
        fingerprint({"x": object()})


def test_model_identity_of_a_hub_id_without_a_cached_snapshot_is_the_id(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert model_identity("org/not-a-local-folder") == {"id": "org/not-a-local-folder", "snapshot": None}


def test_model_identity_follows_config_and_weights(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"hidden_size": 64}')
    (folder / "model.safetensors").write_bytes(b"x" * 10)
    (folder / "README.md").write_text("ignored")
    first = model_identity(str(folder))
    assert [name_and_size[:2] for name_and_size in first["weights"]] == [["model.safetensors", 10]]
    (folder / "README.md").write_text("still ignored")
    assert model_identity(str(folder)) == first
    (folder / "config.json").write_text('{"hidden_size": 128}')
    second = model_identity(str(folder))
    assert second != first
    (folder / "model.safetensors").write_bytes(b"x" * 11)
    assert model_identity(str(folder)) != second


def test_model_identity_of_a_single_weight_file(tmp_path):
    gguf = tmp_path / "model.gguf"
    gguf.write_bytes(b"gguf")
    assert model_identity(str(gguf)) == {
        "path": str(gguf.resolve()), "weights": [["model.gguf", 4, int(gguf.stat().st_mtime)]]
    }


def test_baseline_round_trip(tmp_path):
    store = BaselineStore(tmp_path)
    measured = figures()
    path = store.save(FP, measured, {"model": "org/model"})
    assert path == tmp_path / "baselines" / f"{FP}.json"
    document = json.loads(path.read_text())
    assert (document["schema_version"], document["kind"], document["fingerprint"]) == (SCHEMA_VERSION, "specdecode-baseline", FP)
    assert document["meta"] == {"model": "org/model"}
    loaded, age = store.load(FP)
    assert loaded == measured.model_copy(update={"source": "cached"})
    assert 0 <= age < 60
    assert os.listdir(path.parent) == [path.name]


def test_a_shortened_fingerprint_is_a_file_name_too(tmp_path):
    store = BaselineStore(tmp_path)
    store.save(FP[:24], figures(), {})
    assert store.load(FP[:24])[0].source == "cached"


def test_missing_baseline_is_none(tmp_path):
    assert BaselineStore(tmp_path).load(FP) is None


def test_baseline_age_counts_from_creation(tmp_path, monkeypatch):
    store = BaselineStore(tmp_path)
    monkeypatch.setattr(baseline, "time", SimpleNamespace(time=lambda: 1000.0))
    store.save(FP, figures(), {})
    monkeypatch.setattr(baseline, "time", SimpleNamespace(time=lambda: 1090.0))
    assert store.load(FP)[1] == 90.0


@pytest.mark.parametrize(
    ("edit", "complaint"),
    [
        (lambda doc: "{not json", "not JSON"),
        (lambda doc: "[1, 2]", "top level is list"),
        (lambda doc: json.dumps({**doc, "kind": "specdecode-run"}), "kind is 'specdecode-run'"),
        (lambda doc: json.dumps({**doc, "schema_version": SCHEMA_VERSION + 1}), f"schema_version {SCHEMA_VERSION + 1}"),
        (lambda doc: json.dumps({**doc, "created_at": "yesterday"}), "created_at"),
        (lambda doc: json.dumps({**doc, "fingerprint": "b" * 64}), "does not match the file name"),
        (lambda doc: json.dumps({**doc, "figures": {"duration_s": 1.0}}), "figures do not validate: samples"),
    ],
)
def test_unusable_baseline_files_raise_naming_the_file(tmp_path, edit, complaint):
    store = BaselineStore(tmp_path)
    path = store.save(FP, figures(), {})
    path.write_text(edit(json.loads(path.read_text())))
    with pytest.raises(BaselineError) as excinfo:
        store.load(FP)
    assert complaint in one_line_naming(path, excinfo)


def test_a_baseline_from_an_older_schema_is_measured_again_not_read(tmp_path):
    """An old file lacks fields (token ids, windows) that would read as empty, not as unknown."""
    store = BaselineStore(tmp_path)
    path = store.save(FP, figures(), {})
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": SCHEMA_VERSION - 1}))
    assert store.load(FP) is None


def test_a_baseline_copied_under_another_fingerprint_is_refused(tmp_path):
    store = BaselineStore(tmp_path)
    original = store.save(FP, figures(), {})
    copy = original.with_name(f"{'c' * 64}.json")
    copy.write_text(original.read_text())
    with pytest.raises(BaselineError) as excinfo:
        store.load("c" * 64)
    assert "does not match" in one_line_naming(copy, excinfo)


def test_a_malformed_fingerprint_is_refused(tmp_path):
    with pytest.raises(BaselineError, match="not a fingerprint"):
        BaselineStore(tmp_path).load("../escape")


def test_vllm_settings_are_read_as_the_session_began_not_as_an_engine_left_them(tmp_path, monkeypatch):
    """Was: vLLM sets VLLM_* variables itself once an engine runs, so a session's second config (or
    a second in-process session) got another fingerprint than the same config measured first."""
    before = BaselineStore(tmp_path, installed).identity(VANILLA)
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    assert BaselineStore(tmp_path, installed).identity(VANILLA) == before
