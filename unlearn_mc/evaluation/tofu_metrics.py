"""TOFU's metrics of a causal LM (Maini et al. 2024): answer NLL and perplexity, ROUGE-L of greedy answers,
truth ratio and forget quality.

With ℓ(a | q) the answer NLL per token (``unlearn_mc.evaluation.sequence``):

- perplexity of a split: exp of the mean ℓ over its questions;
- ROUGE-L: the recall of the longest common subsequence of the greedy answer's and the true answer's words,
  LCS(ŷ, a) / |a| (``rouge_score``, as TOFU reports it), averaged over the questions;
- truth ratio of a question: R = exp(mean_j ℓ(ã_j | q) − ℓ(â | q)) over its perturbed (wrong) answers ã_j and its
  paraphrased answer â, i.e. the per-token likelihood of the paraphrase over the geometric mean of the wrong
  answers' (TOFU's ``exp(perturbed − paraphrased)``); on the forget set TOFU reports mean min(R, 1/R);
- forget quality: the p-value of the two-sample Kolmogorov–Smirnov test between the truth ratios on the forget set
  of the unlearned model and of the retain model (high: indistinguishable from never having seen D_f).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from unlearn_mc.data.batches import Forward
from unlearn_mc.data.padding import collate_tokens
from unlearn_mc.data.qa_encoding import encode_prompt, encode_qa
from unlearn_mc.data.qa_records import QARecord
from unlearn_mc.data.tokenization import TextEncoder
from unlearn_mc.evaluation.sequence import cross_entropy_per_sample



@torch.no_grad()
def answer_nll(forward: Forward, samples: Sequence[tuple[Tensor, Tensor]], device, batch_size: int = 16) -> np.ndarray:
    """ℓ(a | q) of each (ids, targets) sample, in order."""
    out = []
    for start in range(0, len(samples), batch_size):
        ids, targets = collate_tokens(samples[start : start + batch_size])
        out.append(cross_entropy_per_sample(forward(ids.to(device)), targets.to(device)).cpu())
    return torch.cat(out).numpy() if out else np.zeros(0)


@torch.no_grad()
def greedy_answer(forward: Forward, prompt_ids: Tensor, max_new_tokens: int, eos_token_id: int | None) -> list[int]:
    """The argmax continuation of ``prompt_ids``, one token at a time, until EOS or ``max_new_tokens``.

    A Hugging Face wrapper (``forward.model.generate``, e.g. ``HFCausalLM``) decodes with its key-value cache
    (``do_sample=False``: the same argmax tokens); any other forward recomputes the whole sequence per token."""
    generate = getattr(getattr(forward, "model", None), "generate", None)
    if callable(generate):
        pad = getattr(forward, "pad_token_id", 0)
        out = generate(input_ids=prompt_ids[None], attention_mask=torch.ones_like(prompt_ids[None]), max_new_tokens=max_new_tokens,
                       do_sample=False, eos_token_id=eos_token_id, pad_token_id=pad)[0, len(prompt_ids):].tolist()
        return out[: out.index(eos_token_id)] if eos_token_id in out else out
    ids, new = prompt_ids[None], []
    for _ in range(max_new_tokens):
        token = int(forward(ids)[0, -1].argmax())
        if token == eos_token_id:
            break
        new.append(token)
        ids = torch.cat([ids, ids.new_tensor([[token]])], dim=1)
    return new


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Mean ROUGE-L recall LCS(ŷ, a) / |a| over the pairs (``rouge_score``, no stemming)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    scores = [scorer.score(reference, prediction)["rougeL"].recall for prediction, reference in zip(predictions, references)]
    return float(np.mean(scores)) if scores else float("nan")


def generated_rouge_l(forward: Forward, encoder: TextEncoder, decode: Callable[[list[int]], str], records: Sequence[QARecord],
                      prompt: str, max_length: int, max_new_tokens: int, device) -> float:
    """ROUGE-L recall of the greedy answers to ``records``' questions against their answers."""
    predictions = []
    for record in records:
        prompt_ids = encode_prompt(encoder, record.question, prompt, max_length).to(device)
        predictions.append(decode(greedy_answer(forward, prompt_ids, max_new_tokens, encoder.eos_token_id)))
    return rouge_l_recall(predictions, [record.answer for record in records])


def truth_ratios(forward: Forward, encoder: TextEncoder, records: Sequence[QARecord], prompt: str, max_length: int, device) -> np.ndarray:
    """R per record that has a paraphrased and at least one perturbed answer (see the module docstring)."""
    usable = [r for r in records if r.paraphrased_answer and r.perturbed_answers]
    if not usable:
        return np.zeros(0)
    paraphrased = answer_nll(forward, [encode_qa(encoder, r.question, r.paraphrased_answer, prompt, max_length) for r in usable], device)
    perturbed = [answer_nll(forward, [encode_qa(encoder, r.question, a, prompt, max_length) for a in r.perturbed_answers], device).mean() for r in usable]
    return np.exp(np.asarray(perturbed) - paraphrased)


def forget_quality(unlearned_ratios: np.ndarray, retain_ratios: np.ndarray) -> float:
    """p-value of the two-sample KS test between the two models' truth ratios on the forget set."""
    from scipy.stats import ks_2samp

    if len(unlearned_ratios) == 0 or len(retain_ratios) == 0:
        return float("nan")
    return float(ks_2samp(unlearned_ratios, retain_ratios).pvalue)
