import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest

from pytest_specdecode import __version__, baseline
from pytest_specdecode.results import SCHEMA_VERSION
from pytest_specdecode.baseline import (
    BaselineError,
    BaselineStore,
    HistoryStore,
    compare_runs,
    fingerprint,
    model_identity,
)
from pytest_specdecode.engines.base import EngineSpec
from pytest_specdecode.results import ConfigResult, EngineFigures, Environment, RequestSample, RunResult, SpecCounters

FP = "a" * 64


def figures(tokens: int = 20, duration_s: float = 2.0) -> EngineFigures:
    samples = [
        RequestSample(prompt_tokens=5, output_tokens=tokens, ttft_s=0.1, e2e_s=1.0, itl_s=[0.1, 0.2],
                      chunk_tokens=[1, 3, 2], repeat=repeat)
        for repeat in (0, 1)
    ]
    return EngineFigures(samples=samples, duration_s=duration_s, kv_cache_tokens=1000)


def run(acceptance: float = 0.74, speedup: float = 1.5, temperature: float = 0.8, invalid_reason: str | None = None,
        **load) -> RunResult:
    return RunResult(
        config="configs/cpu-ngram.toml", config_name="cpu-ngram", model="m", method="ngram", num_speculative_tokens=3,
        workload="builtin:mixed", temperature=temperature,
        counters=SpecCounters(num_drafts=100, num_draft_tokens=300, num_accepted_tokens=round(acceptance * 300),
                              accepted_per_position=[90, 80, 52]),
        spec=figures(duration_s=2.0 / speedup), vanilla=figures(), invalid_reason=invalid_reason, **load,
    )


def result(*runs: RunResult) -> ConfigResult:
    return ConfigResult(config="configs/cpu-ngram.toml", config_name="cpu-ngram", runs=list(runs))


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


def test_history_round_trip_keeps_an_infinite_request_rate(tmp_path):
    store = HistoryStore(tmp_path)
    stored = result(run(), run(temperature=0.0, request_rate=float("inf")))
    path = store.save("nightly-2024.06.01_a", stored)
    assert path == tmp_path / "runs" / "nightly-2024.06.01_a.json"
    assert "Infinity" in path.read_text()
    json.loads(path.read_text(), parse_constant=lambda constant: pytest.fail(f"non-standard JSON {constant}"))
    assert store.load("nightly-2024.06.01_a") == stored


@pytest.mark.parametrize("name", ["a/b", "../up", "", "with space", "naïve"])
def test_history_names_are_validated(tmp_path, name):
    with pytest.raises(BaselineError, match="run name"):
        HistoryStore(tmp_path).save(name, result(run()))


def test_history_load_of_an_unknown_name_names_the_file(tmp_path):
    with pytest.raises(BaselineError) as excinfo:
        HistoryStore(tmp_path).load("never-saved")
    one_line_naming(tmp_path / "runs" / "never-saved.json", excinfo)


def test_history_latest_is_the_newest_by_creation_time(tmp_path, monkeypatch):
    store = HistoryStore(tmp_path)
    assert store.latest() is None
    monkeypatch.setattr(baseline, "time", SimpleNamespace(time=lambda: 2000.0))
    store.save("a-newer", result(run(acceptance=0.6)))
    monkeypatch.setattr(baseline, "time", SimpleNamespace(time=lambda: 1000.0))
    store.save("z-older", result(run(acceptance=0.7)))
    name, latest = store.latest()
    assert name == "a-newer"
    assert latest.runs[0].acceptance_rate == pytest.approx(0.6)


def test_history_refuses_foreign_and_renamed_files(tmp_path):
    store = HistoryStore(tmp_path)
    path = store.save("first", result(run()))
    renamed = path.with_name("second.json")
    renamed.write_text(path.read_text())
    with pytest.raises(BaselineError) as excinfo:
        store.load("second")
    assert "does not match the file name" in one_line_naming(renamed, excinfo)
    baseline_file = BaselineStore(tmp_path).save(FP, figures(), {})
    path.write_text(baseline_file.read_text())
    with pytest.raises(BaselineError) as excinfo:
        store.load("first")
    assert "kind is 'specdecode-baseline'" in one_line_naming(path, excinfo)


def test_history_latest_does_not_skip_a_broken_file(tmp_path):
    store = HistoryStore(tmp_path)
    store.save("good", result(run()))
    broken = store.folder / "broken.json"
    broken.write_text("{")
    with pytest.raises(BaselineError) as excinfo:
        store.latest()
    one_line_naming(broken, excinfo)


def test_compare_runs_reports_an_acceptance_drop():
    comparison = compare_runs(result(run(acceptance=0.58)), result(run(acceptance=0.74)), 0.05, 0.10)
    assert comparison.outcome == "fail"
    [message] = comparison.drops
    assert message.startswith("acceptance at cpu-ngram T=0.8 fell from 0.74 to 0.58 (-0.16 > 0.05), 95% interval up to")


def test_compare_runs_reports_a_relative_speedup_drop():
    comparison = compare_runs(result(run(speedup=1.10)), result(run(speedup=1.42)), 0.05, 0.10)
    [message] = comparison.drops
    assert message.startswith("speedup at cpu-ngram T=0.8 fell from 1.42x to 1.10x (-22.5% > 10%)")


def test_compare_runs_allows_drops_within_the_limits():
    previous = result(run(acceptance=0.80, speedup=1.50))
    assert compare_runs(result(run(acceptance=0.75, speedup=1.35)), previous, 0.05, 0.10).outcome == "pass"
    assert compare_runs(result(run(acceptance=0.90, speedup=2.0)), previous, 0.05, 0.10).messages == []


def test_a_point_drop_whose_interval_reaches_the_limit_is_not_sure():
    """Was a failure on the point difference alone: one noisy rerun read as a regression."""
    current = run(speedup=1.20)
    noisy = current.model_copy()
    noisy.__dict__["speedup_ci"] = [0.9, 1.45]  # a wide interval, as from a short noisy window
    comparison = compare_runs(result(noisy), result(run(speedup=1.42)), 0.05, 0.10)
    assert comparison.outcome == "inconclusive" and comparison.drops == []
    assert "95% interval reaches 1.45 >= 1.28: not sure" in comparison.unsure[0]


def test_runs_from_another_machine_are_not_compared_and_latest_looks_for_this_one(tmp_path):
    here = Environment(vllm="0.11.0", torch="2.8.0", device="1x NVIDIA H100 (driver 580)")
    there = here.model_copy(update={"device": "1x NVIDIA A10G (driver 535)"})
    current = result(run(acceptance=0.58)).model_copy(update={"environment": here})
    elsewhere = result(run(acceptance=0.74)).model_copy(update={"environment": there})
    comparison = compare_runs(current, elsewhere, 0.05, 0.10)
    assert comparison.outcome == "inconclusive"
    assert "measured on 1x NVIDIA A10G (driver 535) (vLLM 0.11.0), this one on 1x NVIDIA H100" in comparison.not_comparable
    store = HistoryStore(tmp_path)
    store.save("a.cpu-ngram", elsewhere)
    assert store.latest(".cpu-ngram", here) is None
    store.save("b.cpu-ngram", current)
    assert store.latest(".cpu-ngram", here)[0] == "b.cpu-ngram"


def test_compare_runs_matches_by_temperature_and_load():
    previous = result(run(acceptance=0.9, temperature=0.0), run(acceptance=0.9, concurrency=4))
    current = result(run(acceptance=0.5, temperature=0.0, concurrency=8), run(acceptance=0.5, concurrency=4))
    [message] = compare_runs(current, previous, 0.05, 0.10).drops
    assert message.startswith("acceptance at cpu-ngram T=0.8 c=4 fell from 0.90 to 0.50 (-0.40 > 0.05)")


def test_compare_runs_reports_invalid_runs():
    invalid = run(invalid_reason="no drafts were proposed")
    assert compare_runs(result(invalid), result(run()), 0.05, 0.10).drops == [
        "cpu-ngram T=0.8: invalid run, not compared with the previous one: no drafts were proposed"
    ]
    assert compare_runs(result(run()), result(invalid), 0.05, 0.10).unsure == [
        "cpu-ngram T=0.8: previous run was invalid (no drafts were proposed), nothing to compare with"
    ]


def test_vllm_settings_are_read_as_the_session_began_not_as_an_engine_left_them(tmp_path, monkeypatch):
    """Was: vLLM sets VLLM_* variables itself once an engine runs, so a session's second config (or
    a second in-process session) got another fingerprint than the same config measured first."""
    before = BaselineStore(tmp_path, installed).identity(VANILLA)
    monkeypatch.setenv("VLLM_WORKER_MULTIPROC_METHOD", "spawn")
    assert BaselineStore(tmp_path, installed).identity(VANILLA) == before
