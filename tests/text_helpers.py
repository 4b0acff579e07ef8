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
