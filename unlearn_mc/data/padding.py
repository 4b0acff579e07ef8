"""Token batches: dynamic padding with a sentinel id, and concatenation of batches of different lengths.

A token batch is a ``(B, L)`` integer tensor of ids, right-padded to the longest sequence of the
batch with ``PAD_ID = -1``, an id no vocabulary has. The text networks derive their attention mask
from it (``mask = ids ≠ PAD_ID``), so a token batch is one plain tensor: every method, the
evaluation, the MIA and the curves handle it as they handle images. Token-level targets (causal
LMs) are padded with ``IGNORE_INDEX = -100``, the value ``F.cross_entropy`` skips.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

PAD_ID = -1
IGNORE_INDEX = -100


def pad_right(sequences: Sequence[Tensor], value: int, length: int | None = None) -> Tensor:
    """Stack 1-D (or (L, …)) tensors into (B, L_max, …), filling positions past each sequence's end with ``value``."""
    length = max(len(s) for s in sequences) if length is None else length
    out = sequences[0].new_full((len(sequences), length, *sequences[0].shape[1:]), value)
    for row, sequence in enumerate(sequences):
        out[row, : len(sequence)] = sequence
    return out


def collate_tokens(items: Sequence[tuple[Tensor, Tensor | int]]) -> tuple[Tensor, Tensor]:
    """``(ids, label)`` samples → ``(ids (B, L) padded with PAD_ID, labels)``.

    A label is a class id (sequence classification: labels (B,)) or a 1-D tensor of token targets
    (causal LM: labels (B, L) padded with IGNORE_INDEX)."""
    ids = pad_right([item[0] for item in items], PAD_ID)
    labels = [item[1] for item in items]
    if isinstance(labels[0], Tensor) and labels[0].ndim == 1:
        return ids, pad_right(labels, IGNORE_INDEX, ids.shape[1])
    return ids, torch.as_tensor([int(label) for label in labels], dtype=torch.long)


def cat_padded(tensors: Sequence[Tensor]) -> Tensor:
    """``torch.cat`` along dimension 0; integer (B, L) token batches of different L are first right-padded with PAD_ID.

    This is how a method joins a forget and a retain batch into one forward pass (``joint_logits``);
    padding more never changes what a masked network computes on the real tokens."""
    tensors = list(tensors)
    if len({t.shape[1:] for t in tensors}) > 1 and all(t.ndim == 2 and not t.is_floating_point() for t in tensors):
        length = max(t.shape[1] for t in tensors)
        tensors = [torch.nn.functional.pad(t, (0, length - t.shape[1]), value=PAD_ID) for t in tensors]
    return torch.cat(tensors)
