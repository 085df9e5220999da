import json

import pytest

from pytest_specdecode.config.spec import ConfigError, WorkloadSection
from pytest_specdecode.config.workload import BUILTIN_SETS, Prompt, load_prompts, render


class TemplateTokenizer:
    def apply_chat_template(self, conversation, add_generation_prompt, tokenize):
        assert add_generation_prompt and not tokenize
        return "".join(f"<{m['role']}>{m['content']}" for m in conversation) + "<assistant>"


def test_builtin_sets_are_distinct_prompts():
    for name, prompts in BUILTIN_SETS.items():
        assert len(prompts) >= 12, name
        assert len(set(prompts)) == len(prompts), name


def test_short_sources_cycle_with_distinct_variants():
    prompts = load_prompts(WorkloadSection(prompts="builtin:chat", num_prompts=40))
    assert len(prompts) == 40
    assert len({p.text for p in prompts}) == 40


def test_jsonl_prompts_and_messages(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "a"}) + "\n\n" + json.dumps({"messages": [{"role": "user", "content": "b"}]}) + "\n")
    prompts = load_prompts(WorkloadSection(prompts=str(path), num_prompts=2))
    assert prompts == [Prompt(text="a"), Prompt(messages=({"role": "user", "content": "b"},))]
    assert render(prompts, TemplateTokenizer(), chat_template=True) == ["<user>a<assistant>", "<user>b<assistant>"]
    assert render(prompts, TemplateTokenizer(), chat_template=False) == ["a", "b"]


@pytest.mark.parametrize("line", ["{not json", '{"text": "x"}', '{"messages": [{"role": "user"}]}'])
def test_bad_jsonl_lines_name_file_and_line(tmp_path, line):
    path = tmp_path / "p.jsonl"
    path.write_text('{"prompt": "ok"}\n' + line + "\n")
    with pytest.raises(ConfigError, match=rf"{path}:2: "):
        load_prompts(WorkloadSection(prompts=str(path), num_prompts=2))


def test_every_builtin_set_is_accepted_by_the_config():
    for name in BUILTIN_SETS:
        assert WorkloadSection(prompts=f"builtin:{name}").prompts == f"builtin:{name}"


def test_the_long_set_asks_for_answers_several_times_as_long_as_copy():
    mean = lambda prompts: sum(len(p.split()) for p in prompts) / len(prompts)  # noqa: E731
    assert mean(BUILTIN_SETS["long"]) > 2.5 * mean(BUILTIN_SETS["copy"]) - 20  # the instruction is counted once


class CountingTokenizer(TemplateTokenizer):
    def encode(self, text, add_special_tokens=False):
        return text.split()


def test_a_prompt_that_leaves_no_room_to_answer_is_named_before_any_engine():
    """Was a raw VLLMValidationError after an engine start, repeated for every test of the config."""
    from pytest_specdecode.config.workload import check_lengths

    texts = ["short prompt", "a b c d e f g h"]
    check_lengths(texts, CountingTokenizer(), 9, "/c/a.toml")
    check_lengths(texts, CountingTokenizer(), None, "/c/a.toml")
    with pytest.raises(ConfigError, match=r"^/c/a.toml: \[workload\] prompt 1 is 8 tokens, which leaves no room to "
                                          r"answer within max_model_len = 8: 'a b c d e f g h'…$"):
        check_lengths(texts, CountingTokenizer(), 8, "/c/a.toml")


def test_a_hub_id_is_not_loaded_for_the_length_check(tmp_path):
    from pytest_specdecode.config.workload import local_tokenizer

    assert local_tokenizer("org/not-here", {}) is None
    assert local_tokenizer(str(tmp_path), {}) is None  # a folder without a tokenizer: the engine says why
