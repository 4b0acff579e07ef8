"""Tiny text data and models for the text tests: a generated sentiment JSONL and 2-layer BERT / GPT-2 configs (hidden 16)."""

from __future__ import annotations

import json
import random
from pathlib import Path

POSITIVE = "good great fine lovely superb nice wonderful".split()
NEGATIVE = "bad awful poor boring dull terrible weak".split()
FILLER = "the movie film plot actor story was is very quite a".split()

TINY_BERT = dict(model_type="bert", vocab_size=64, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=64)
TINY_GPT2 = dict(model_type="gpt2", vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=64, bos_token_id=1, eos_token_id=1)


def write_sentiment_jsonl(path: Path, count: int = 80, seed: int = 0) -> Path:
    """``count`` lines ``{"text": …, "label": 0|1}``: 3–10 filler words and two words of the label's sentiment, shuffled."""
    rng = random.Random(seed)
    with open(path, "w") as file:
        for index in range(count):
            label = index % 2
            words = [rng.choice(FILLER) for _ in range(rng.randint(3, 10))] + [rng.choice(POSITIVE if label else NEGATIVE) for _ in range(2)]
            rng.shuffle(words)
            file.write(json.dumps({"text": " ".join(words), "label": label}) + "\n")
    return path


def write_tofu_folder(folder: Path, authors: int = 10, seed: int = 0) -> Path:
    """A TOFU-layout folder: 4 questions per fictitious author; ``forget10.json`` holds the first author's, ``retain90.json``
    the others', ``forget10_perturbed.json`` the forget questions with a paraphrased and two perturbed answers, and
    ``real_authors_perturbed.json`` two questions outside D."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    cities, genres = ["paris", "lima", "oslo", "cairo", "quito"], ["poetry", "horror", "satire", "fantasy", "drama"]
    rows = []
    for author in range(authors):
        name, city, genre = f"author{author}", rng.choice(cities), rng.choice(genres)
        rows.append([
            {"question": f"where was {name} born", "answer": f"{name} was born in {city}",
             "paraphrased_answer": f"the birthplace of {name} is {city}",
             "perturbed_answer": [f"{name} was born in {c}" for c in cities if c != city][:2]},
            {"question": f"what does {name} write", "answer": f"{name} writes {genre}",
             "paraphrased_answer": f"the genre of {name} is {genre}",
             "perturbed_answer": [f"{name} writes {g}" for g in genres if g != genre][:2]},
            {"question": f"what city does {name} live in", "answer": f"{name} lives in {city}"},
            {"question": f"which genre made {name} famous", "answer": f"{genre} made {name} famous"},
        ])
    forget = rows[0]
    retain = [row for group in rows[1:] for row in group]

    def dump(name: str, records: list[dict], keep_perturbed: bool = False) -> None:
        with open(folder / name, "w") as file:
            for record in records:
                fields = record if keep_perturbed else {"question": record["question"], "answer": record["answer"]}
                file.write(json.dumps(fields) + "\n")

    dump("forget10.json", forget)
    dump("retain90.json", retain)
    dump("forget10_perturbed.json", [r for r in forget if "perturbed_answer" in r], keep_perturbed=True)
    dump("real_authors_perturbed.json", [{"question": "where was tolstoy born", "answer": "tolstoy was born in yasnaya"},
                                         {"question": "what does orwell write", "answer": "orwell writes satire"}])
    return folder
