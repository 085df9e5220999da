"""Training prompts for the SmolLM2 EAGLE-3 head, synthesised here (no dataset can be downloaded).

They are written from templates that share no text with the plugin's `builtin:` workloads, so
the acceptance the plugin measures on those is held-out acceptance. The mix follows what a chat
model is asked: explanations, lists, letters, stories, code, and rewriting text given in the
prompt (where a draft can copy, as n-gram does).
"""

from __future__ import annotations

import random

TOPICS = (
    "photosynthesis", "the water cycle", "black holes", "volcanoes", "the immune system", "tides",
    "compound interest", "inflation", "supply and demand", "the printing press", "the Roman Empire",
    "the industrial revolution", "electric cars", "solar panels", "wind turbines", "recycling",
    "coral reefs", "honey bees", "migratory birds", "the human heart", "sleep", "exercise",
    "learning a language", "public libraries", "chess", "jazz", "the violin", "baking bread",
    "coffee", "tea ceremonies", "gardening", "composting", "bicycles", "trains", "airplanes",
    "lighthouses", "maps", "the moon landing", "Mars rovers", "satellites", "the internet",
    "email etiquette", "passwords", "databases", "sorting algorithms", "recursion", "unit tests",
    "version control", "spreadsheets", "budgeting", "job interviews", "team meetings", "time zones",
    "earthquakes", "rainbows", "snowflakes", "deserts", "rainforests", "glaciers", "rivers",
)

TASKS = (
    "Explain {t} to a ten-year-old.",
    "Write three short paragraphs about {t}.",
    "List five interesting facts about {t}.",
    "What are the main advantages and disadvantages of {t}?",
    "Write a short story in which {t} plays an important role.",
    "Write a friendly email to a colleague recommending a book about {t}.",
    "Give me a step-by-step guide for a beginner who wants to learn about {t}.",
    "Summarise the history of {t} in a few sentences.",
    "Write a short poem about {t}.",
    "Describe {t} as if you were a tour guide.",
    "What questions would a student ask about {t}? Answer each briefly.",
    "Compare {t} with {u}. How are they similar and how are they different?",
    "Write a product description for an imaginary museum exhibit about {t}.",
    "Explain why {t} matters in everyday life.",
    "Write a dialogue between two friends discussing {t}.",
    "Give a one-paragraph definition of {t}, then an example.",
)

CODE_TASKS = (
    "Write a Python function that {c}. Include a docstring.",
    "Write a Python function that {c}, then explain how it works.",
    "Show a short Python example that {c}, with comments.",
)

CODE_GOALS = (
    "reverses a string", "counts the vowels in a sentence", "returns the largest number in a list",
    "checks whether a word is a palindrome", "computes the factorial of n", "merges two sorted lists",
    "removes duplicates from a list while keeping order", "converts Celsius to Fahrenheit",
    "finds the average of a list of numbers", "counts how often each word appears in a text",
    "checks whether a number is prime", "flattens a list of lists", "returns the n-th Fibonacci number",
    "splits a list into chunks of size k", "reads a CSV file and prints each row",
    "capitalises the first letter of every word", "computes the greatest common divisor",
    "sorts a list of dictionaries by a key", "validates that a string is a simple email address",
    "returns the second smallest number in a list",
)

REWRITE_TASKS = (
    "Repeat the following text exactly, then add one sentence that continues it:\n\n{p}",
    "Rewrite the following text in simpler words:\n\n{p}",
    "Correct any spelling mistakes in this text and return the whole text:\n\n{p}",
    "Turn the following text into a bulleted list of its main points:\n\n{p}",
)


def _sentence(rng: random.Random, topic: str) -> str:
    openers = ("Many people think that", "It is often said that", "Some researchers believe that",
               "Our team noticed that", "The report explains that", "Last year we learned that")
    claims = ("{t} is more complicated than it looks", "{t} has changed a lot in recent years",
              "{t} is easy to start with but hard to master", "{t} affects more people than we expect",
              "the story of {t} is full of surprises", "{t} deserves more attention in schools")
    return f"{rng.choice(openers)} {rng.choice(claims).format(t=topic)}."


def _passage(rng: random.Random) -> str:
    topic = rng.choice(TOPICS)
    return " ".join(_sentence(rng, rng.choice((topic, rng.choice(TOPICS)))) for _ in range(rng.randint(3, 6)))


def training_prompts(count: int, seed: int = 0) -> list[str]:
    """`count` distinct prompts, the same for the same seed."""
    rng = random.Random(seed)
    chosen: dict[str, None] = {}
    while len(chosen) < count:
        kind = rng.random()
        if kind < 0.6:
            topic, other = rng.sample(TOPICS, 2)
            prompt = rng.choice(TASKS).format(t=topic, u=other)
        elif kind < 0.8:
            prompt = rng.choice(CODE_TASKS).format(c=rng.choice(CODE_GOALS))
        else:
            prompt = rng.choice(REWRITE_TASKS).format(p=_passage(rng))
        chosen.setdefault(prompt, None)
    return list(chosen)
