"""Prompts: the built-in sets and JSONL files, turned into the exact text both engines receive.

The spec engine and its vanilla twin must see byte-identical prompts, so the chat template is
applied here once (with the target's tokenizer) and the rendered text is what every mode sends.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .spec import ConfigError, WorkloadSection

_PASSAGES = (
    "The committee met on Tuesday to review the budget. After a long discussion, members agreed to "
    "move funds from the travel line to the training line, because most travel this year happens online.",
    "Photosynthesis turns light, water and carbon dioxide into glucose and oxygen. It takes place in "
    "the chloroplasts of plant cells, where chlorophyll absorbs mostly red and blue light.",
    "To reset the router, hold the reset button for ten seconds until the lights blink, then wait two "
    "minutes for it to restart. Your network name and password return to the values on the label.",
    "The library opens at nine in the morning and closes at six in the evening on weekdays. On "
    "Saturdays it opens at ten and closes at four. It is closed on Sundays and public holidays.",
    "Mount Everest is the highest mountain above sea level, at about 8,849 metres. It lies in the "
    "Himalayas on the border between Nepal and the Tibet Autonomous Region of China.",
    "Our return policy allows returns within thirty days of purchase. Items must be unused and in "
    "their original packaging. Refunds are issued to the original payment method within five days.",
    "The train leaves the central station at 8:15 and arrives at the airport at 8:52. Trains run "
    "every twenty minutes during the day and every hour after ten at night.",
    "Water boils at 100 degrees Celsius at sea level. At higher altitudes the air pressure is lower, "
    "so water boils at a lower temperature, which is why cooking pasta in the mountains takes longer.",
)

_COPY_TASKS = (
    "Repeat the following text exactly, word for word:\n\n{p}",
    "Rewrite the following text with every sentence on its own line, changing nothing else:\n\n{p}",
)

_CODE = (
    "def average(values):\n    total = 0\n    for v in values:\n        total += v\n    return total / len(values)\n",
    "def find_max(items):\n    best = items[0]\n    for item in items:\n        if item > best:\n            best = item\n    return best\n",
    "def count_words(text):\n    counts = {}\n    for word in text.split():\n        counts[word] = counts.get(word, 0) + 1\n    return counts\n",
    "def is_palindrome(s):\n    s = s.lower()\n    return s == s[::-1]\n",
)

_CODE_TASKS = (
    "Add type hints to this Python function and return the whole function:\n\n{c}",
    "Rename the variables in this Python function to longer, clearer names and return the whole function:\n\n{c}",
    "Add a docstring to this Python function and return the whole function:\n\n{c}",
)

_CHAT = (
    "What are three tips for staying focused while studying?",
    "Explain in simple words how a refrigerator keeps food cold.",
    "Write a short poem about the sea at night.",
    "What is the difference between weather and climate?",
    "Give me a recipe for a simple tomato soup.",
    "Why do leaves change colour in autumn?",
    "Describe a good morning routine in five steps.",
    "What should I pack for a weekend hiking trip?",
    "How do vaccines help the body fight disease?",
    "Suggest three names for a friendly robot and explain each.",
    "What are the benefits of learning a second language?",
    "Explain what a budget is and why it helps.",
    "Tell me a short story about a lost cat finding its way home.",
    "How does a bicycle stay upright when it moves?",
    "What is the water cycle?",
    "List five fun facts about octopuses.",
)

BUILTIN_SETS: dict[str, tuple[str, ...]] = {
    "copy": tuple(task.format(p=p) for p in _PASSAGES for task in _COPY_TASKS),
    "code": tuple(task.format(c=c) for c in _CODE for task in _CODE_TASKS),
    "chat": _CHAT,
}
#: Answers of ~150-250 tokens (three passages to copy), so a window lasts several times as many
#: decode steps as `copy`'s 25-60: what resolving a few percent of speed needs on a fast GPU.
BUILTIN_SETS["long"] = tuple(
    task.format(p="\n\n".join(_PASSAGES[(i + j) % len(_PASSAGES)] for j in range(3)))
    for i in range(len(_PASSAGES))
    for task in _COPY_TASKS
)
BUILTIN_SETS["mixed"] = tuple(
    prompt for trio in zip(BUILTIN_SETS["copy"], BUILTIN_SETS["chat"], BUILTIN_SETS["code"]) for prompt in trio
)

WARMUP_PROMPT = "Say hello and introduce yourself in one sentence."


@dataclass(frozen=True)
class Prompt:
    """One request's input: plain text, or chat messages (rendered with the target's template)."""

    text: str | None = None
    messages: tuple[dict[str, str], ...] | None = None


class ChatTokenizer(Protocol):
    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...


def load_prompts(workload: WorkloadSection) -> list[Prompt]:
    """The `num_prompts` measured prompts, cycling the source (with a numbered prefix) if it is short."""
    source = workload.prompts
    if source.startswith("builtin:"):
        base = [Prompt(text=text) for text in BUILTIN_SETS[source.removeprefix("builtin:")]]
    else:
        base = _read_jsonl(Path(source))
    chosen = base[: workload.num_prompts]
    cycle = 1
    while len(chosen) < workload.num_prompts:
        for prompt in base[: workload.num_prompts - len(chosen)]:
            chosen.append(_numbered(prompt, cycle))
        cycle += 1
    return chosen


def _numbered(prompt: Prompt, cycle: int) -> Prompt:
    """A distinct variant, so that repeated prompts are not served from the prefix cache."""
    tag = f"(Request variant {cycle}.) "
    if prompt.text is not None:
        return Prompt(text=tag + prompt.text)
    first, *rest = prompt.messages or ({"role": "user", "content": ""},)
    return Prompt(messages=({**first, "content": tag + first["content"]}, *rest))


def _read_jsonl(path: Path) -> list[Prompt]:
    prompts = []
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
            prompts.append(_prompt_from_record(record, path, number))
    if not prompts:
        raise ConfigError(f"{path}: no prompts in file")
    return prompts


def _prompt_from_record(record: Any, path: Path, number: int) -> Prompt:
    if isinstance(record, dict) and isinstance(record.get("prompt"), str):
        return Prompt(text=record["prompt"])
    messages = record.get("messages") if isinstance(record, dict) else None
    if isinstance(messages, list) and messages and all(
        isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
        for m in messages
    ):
        return Prompt(messages=tuple({"role": m["role"], "content": m["content"]} for m in messages))
    raise ConfigError(
        f'{path}:{number}: expected {{"prompt": "..."}} or {{"messages": [{{"role": ..., "content": ...}}]}}'
    )


def render(prompts: list[Prompt], tokenizer: ChatTokenizer, chat_template: bool) -> list[str]:
    """The text each engine receives. Instruct models need their template: raw text can end at once."""
    rendered = []
    for prompt in prompts:
        messages = list(prompt.messages or ({"role": "user", "content": prompt.text or ""},))
        if chat_template:
            rendered.append(tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False))
        else:
            rendered.append(prompt.text if prompt.text is not None else "\n".join(m["content"] for m in messages))
    return rendered


class TokenizerOwner(Protocol):
    """What rendering needs of an engine (the `Engine` protocol's `tokenizer`)."""

    def tokenizer(self) -> ChatTokenizer: ...


class RenderedPrompts:
    """The prompts as text, rendered once: with the target's local tokenizer before any engine
    starts when there is one (`text`), else with the first engine's (all share the target's)."""

    def __init__(self, prompts: list[Prompt], chat_template: bool, text: list[str] | None = None) -> None:
        self._prompts, self._chat_template = prompts, chat_template
        self._text = text

    def for_engine(self, engine: TokenizerOwner) -> list[str]:
        if self._text is None:
            self._text = render(self._prompts, engine.tokenizer(), self._chat_template)
        return self._text


def check_lengths(texts: list[str], tokenizer: Any, max_model_len: int | None, where: str) -> None:
    """Every rendered prompt must leave the model room to answer: found here, before an engine starts,
    not by vLLM as a raw validation error after one has (and again for every test of the config)."""
    if max_model_len is None:
        return
    for index, text in enumerate(texts):
        length = len(tokenizer.encode(text, add_special_tokens=False))
        if length >= max_model_len:
            snippet = " ".join(text.split())[:60]
            raise ConfigError(
                f"{where}: [workload] prompt {index} is {length} tokens, which leaves no room to answer within "
                f"max_model_len = {max_model_len}: {snippet!r}…"
            )


def local_tokenizer(model: str, engine_args: dict[str, Any]) -> Any | None:
    """The target's tokenizer from a local folder, loaded without an engine; None for a hub id
    (loading one could mean a network round trip) or a folder transformers cannot read."""
    if not Path(engine_args.get("tokenizer") or model).is_dir():
        return None
    try:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(
            engine_args.get("tokenizer") or model, trust_remote_code=bool(engine_args.get("trust_remote_code", False))
        )
    except Exception:  # noqa: BLE001 - the engine's own start reports what is wrong with the folder
        return None
