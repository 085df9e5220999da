"""Config loading: defaults, path resolution, and one-line errors that name the file and key."""

from pathlib import Path

import pytest

from pytest_specdecode.config.spec import ConfigError, load_config, parse_config

MINIMAL = """
[model]
name = "builtin:smollm2-135m"

[speculative]
method = "ngram"
num_speculative_tokens = 3
"""


def write(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_model_and_speculative_sections_are_a_complete_config(tmp_path):
    config = load_config(write(tmp_path, MINIMAL))
    assert config.workload.prompts == "builtin:mixed"
    assert config.workload.temperatures == [0.0, 0.8]
    assert config.run.warmup > 0
    assert config.run.mode == "offline"
    assert config.name == "spec"


def test_engine_arguments_pass_through_without_name(tmp_path):
    config = load_config(write(tmp_path, MINIMAL.replace('[speculative]', 'dtype = "bfloat16"\nblock_size = 16\n\n[speculative]')))
    assert config.model.engine_args() == {"dtype": "bfloat16", "block_size": 16}


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("num_speculative_tokens = 3", "num_speculative_tokens = 0"), "[speculative] num_speculative_tokens: Input should be greater than or equal to 1"),
        (("num_speculative_tokens = 3", 'num_speculative_tokens = "three"'), "[speculative] num_speculative_tokens:"),
        (("method = \"ngram\"", 'method = "eagle"'), "method 'eagle' needs a draft 'model'"),
        (("num_speculative_tokens = 3", "num_speculative_tokens = 3\nprompt_lookup_min = 5\nprompt_lookup_max = 2"), "prompt_lookup_min (5) > prompt_lookup_max (2)"),
        (("[speculative]", "[workload]\ntemperatures = [0.0, -0.5]\n\n[speculative]"), "[workload] temperatures: temperature must be >= 0, got -0.5"),
        (("[speculative]", "[workload]\nnum_promps = 4\n\n[speculative]"), "[workload] num_promps: unknown key"),
        (("[speculative]", "[workload]\nprompts = \"missing.jsonl\"\n\n[speculative]"), "[workload] prompts: file not found"),
        (("[speculative]", "[workload]\nprompts = \"builtin:poetry\"\n\n[speculative]"), "unknown built-in prompt set 'builtin:poetry'"),
        (("[speculative]", "[gates]\nmin_acceptance = 1.5\n\n[speculative]"), "[gates] min_acceptance: Input should be less than or equal to 1"),
        (("[speculative]", "[extras]\nx = 1\n\n[speculative]"), "'extras': unknown key"),
    ],
)
def test_bad_values_are_one_line_errors_naming_file_and_key(tmp_path, edit, expected):
    path = write(tmp_path, MINIMAL.replace(*edit))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(str(path)), message
    assert expected in message
    assert "\n" not in message


def test_missing_section_is_named(tmp_path):
    with pytest.raises(ConfigError, match=r"\[speculative\]: required key is missing"):
        load_config(write(tmp_path, '[model]\nname = "m"\n'))


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[model\n"))


def test_paths_resolve_relative_to_the_config_file(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "draft").mkdir()
    (tmp_path / "sub" / "prompts.jsonl").write_text('{"prompt": "hi"}\n')
    text = MINIMAL.replace('method = "ngram"', 'method = "draft_model"\nmodel = "draft"') + '\n[workload]\nprompts = "prompts.jsonl"\n'
    config = load_config(write(tmp_path / "sub", text))
    assert config.speculative.model == str(tmp_path / "sub" / "draft")
    assert config.workload.prompts == str(tmp_path / "sub" / "prompts.jsonl")


def test_hub_ids_stay_as_written(tmp_path):
    text = MINIMAL.replace('"builtin:smollm2-135m"', '"meta-llama/Llama-3.1-8B-Instruct"')
    assert load_config(write(tmp_path, text)).model.name == "meta-llama/Llama-3.1-8B-Instruct"


def test_temperatures_are_sorted_and_deduplicated(tmp_path):
    config = load_config(write(tmp_path, MINIMAL + "\n[workload]\ntemperatures = [0.8, 0.0, 0.8]\n"))
    assert config.workload.temperatures == [0.0, 0.8]


@pytest.mark.parametrize(("section", "key"), [("model", "name"), ("speculative", "model")])
@pytest.mark.parametrize("value", ["./models/missing", "/nowhere/model", "models/org/missing"])
def test_a_missing_local_model_path_is_named_before_any_engine(tmp_path, section, key, value):
    """Was sent to the hub as a repo id, and a missing draft was found after vanilla had run."""
    raw = {"model": {"name": "org/target"}, "speculative": {"method": "draft_model", "model": "org/draft",
           "num_speculative_tokens": 3}}
    raw[section][key] = value
    with pytest.raises(ConfigError, match=rf"\[{section}\] {key}: path does not exist: .*missing|nowhere"):
        parse_config(raw, tmp_path / "c.toml")


def test_hub_ids_and_existing_folders_pass(tmp_path):
    (tmp_path / "draft").mkdir()
    raw = {"model": {"name": "HuggingFaceTB/SmolLM2-135M-Instruct"},
           "speculative": {"method": "draft_model", "model": "./draft", "num_speculative_tokens": 3}}
    config = parse_config(raw, tmp_path / "c.toml")
    assert config.model.name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert config.speculative.model == str(tmp_path / "draft")


def test_sequential_sampling_defaults_and_a_budget_below_the_first_look_is_an_error():
    raw = {"model": {"name": "org/m"}, "speculative": {"method": "ngram", "num_speculative_tokens": 3}}
    run = parse_config(raw, Path("c.toml")).run
    assert (run.repeats, run.window_budget, round(run.interval_level, 5)) == (3, 6, round(1 - 0.01 / 3, 5))
    assert parse_config({**raw, "run": {"repeats": 3, "max_repeats": 3}}, Path("c.toml")).run.interval_level == 0.99
    with pytest.raises(ConfigError, match=r"max_repeats \(2\) is below repeats \(4\)"):
        parse_config({**raw, "run": {"repeats": 4, "max_repeats": 2}}, Path("c.toml"))
    with pytest.raises(ConfigError, match="lossless_alpha: unknown key"):  # one alpha: sequential.ALPHA
        parse_config({**raw, "gates": {"lossless_alpha": 0.05}}, Path("c.toml"))


def test_a_list_of_k_is_a_sweep_of_one_config_per_k(tmp_path):
    config = load_config(write(tmp_path, MINIMAL.replace("num_speculative_tokens = 3", "num_speculative_tokens = [5, 1, 3]")))
    assert config.k_sweep and config.speculative.k_values == [1, 3, 5]
    variants = config.variants()
    assert [v.speculative.num_speculative_tokens for v in variants] == [1, 3, 5]
    assert len({v.content_key() for v in variants}) == 3 and all(v.path == config.path for v in variants)
    single = load_config(write(tmp_path, MINIMAL, "single.toml"))
    assert not single.k_sweep and single.variants() == [single]


@pytest.mark.parametrize(("value", "expected"), [
    ("[1, 1]", "a K appears twice in the sweep [1, 1]"),
    ("[0, 2]", "a K sweep needs one or more K, each >= 1, got [0, 2]"),
    ("[]", "a K sweep needs one or more K"),
    ('"three"', "Input should be an integer (a list of integers for a K sweep), got 'three'"),
])
def test_a_bad_sweep_is_a_one_line_error(tmp_path, value, expected):
    with pytest.raises(ConfigError, match=r"\[speculative\] num_speculative_tokens: ") as caught:
        load_config(write(tmp_path, MINIMAL.replace("num_speculative_tokens = 3", f"num_speculative_tokens = {value}")))
    assert expected in str(caught.value)
