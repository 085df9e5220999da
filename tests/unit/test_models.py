import pytest

from pytest_specdecode.config.spec import ConfigError
from pytest_specdecode.config.models import MODEL_DIR_ENV, resolve_model


def test_a_trained_head_that_is_not_in_the_model_folder_names_the_folder_and_the_recipe(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    with pytest.raises(ConfigError) as error:
        resolve_model("builtin:smollm2-135m-eagle3")
    message = str(error.value)
    assert str(tmp_path / "smollm2-135m-eagle3") in message
    assert "benchmarks/gpu/eagle3" in message and MODEL_DIR_ENV in message


def test_a_trained_head_in_the_model_folder_resolves_to_it_without_conversion(tmp_path, monkeypatch):
    monkeypatch.setenv(MODEL_DIR_ENV, str(tmp_path))
    head = tmp_path / "smollm2-135m-eagle3"
    head.mkdir()
    (head / "config.json").write_text("{}")
    assert resolve_model("builtin:smollm2-135m-eagle3") == str(head)


def test_an_unknown_builtin_model_lists_the_heads_too():
    with pytest.raises(ConfigError, match="smollm2-135m-eagle3"):
        resolve_model("builtin:smollm2-1b")
