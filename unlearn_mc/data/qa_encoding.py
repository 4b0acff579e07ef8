"""Encoding a question–answer pair for a causal LM so that only the answer tokens are scored.

With prompt tokens p_1 … p_m (the question in ``prompt``'s template) and answer tokens a_1 … a_n (then EOS),
the sequence is x = (p_1 … p_m, a_1 … a_n, eos) truncated to ``max_length``, and the targets are
y_k = x_{k+1} for the positions k whose next token is an answer token or the EOS, ``IGNORE_INDEX`` elsewhere, so
a loss over y is −Σ log P(answer | question) (``unlearn_mc.evaluation.sequence``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from unlearn_mc.data.padding import IGNORE_INDEX
from unlearn_mc.data.tokenization import TextEncoder

DEFAULT_PROMPT = "Question: {question}\nAnswer: "  # phi-1.5's TOFU template; Llama-2-chat's is "[INST] {question} [/INST] "


def encode_prompt(encoder: TextEncoder, question: str, prompt: str, max_length: int) -> Tensor:
    """The ids of the question in the template, as generation starts from them."""
    return encoder.encode([prompt.format(question=question)], max_length)[0]


def encode_qa(encoder: TextEncoder, question: str, answer: str, prompt: str, max_length: int) -> tuple[Tensor, Tensor]:
    """(x, y): the ids of prompt + answer + EOS and the answer-only next-token targets (see the module docstring)."""
    prompt_ids = encode_prompt(encoder, question, prompt, max_length)
    answer_ids = encoder.encode([answer], max_length, special_tokens=False)[0]
    eos = [] if encoder.eos_token_id is None else [encoder.eos_token_id]
    ids = torch.cat([prompt_ids, answer_ids, torch.tensor(eos, dtype=torch.long)])[: max_length]
    targets = torch.full_like(ids, IGNORE_INDEX)
    start = len(prompt_ids) - 1  # position k predicts x_{k+1}; the first answer token follows the prompt's last
    if start + 1 < len(ids):
        targets[start : len(ids) - 1] = ids[start + 1 :]
    return ids, targets
