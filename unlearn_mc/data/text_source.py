"""The text source of a DataModule: labelled texts tokenised into id tensors, served in dynamically padded batches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from unlearn_mc.data.padding import collate_tokens
from unlearn_mc.data.sources import SourceData
from unlearn_mc.data.text_records import read_text_records
from unlearn_mc.data.tokenization import TextEncoder, text_encoder


class TokenDataset(Dataset):
    """Samples ``(ids, label)``: a 1-D ``long`` tensor of token ids and a class id (or a tensor of token targets)."""

    def __init__(self, ids: Sequence[Tensor], labels: Sequence[int] | Sequence[Tensor]) -> None:
        self.ids, self.labels = list(ids), list(labels)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, index: int):
        label = self.labels[index]
        return self.ids[index], label if isinstance(label, Tensor) else torch.tensor(label, dtype=torch.long)


def load_text_source(
    data_dir: str | Path,
    tokenizer: str | None = None,
    max_length: int = 128,
    vocab_size: int = 1000,
    text_field: str = "text",
    label_field: str = "label",
) -> tuple[SourceData, TextEncoder]:
    """The source of a text classification study and its tokenizer.

    The texts are tokenised once (``tokenizer`` folder, else a word-level tokenizer trained on the
    training pool); batches are padded to their longest sequence with ``PAD_ID`` (``collate_tokens``)."""
    records = read_text_records(data_dir, text_field, label_field)
    encoder = text_encoder(tokenizer, records.train_texts, vocab_size)
    labels = torch.as_tensor(records.train_labels, dtype=torch.long)
    train = TokenDataset(encoder.encode(records.train_texts, max_length), records.train_labels)
    test = test_targets = None
    if records.test_texts is not None:
        test = TokenDataset(encoder.encode(records.test_texts, max_length), records.test_labels)
        test_targets = torch.as_tensor(records.test_labels, dtype=torch.long)
    source = SourceData("text", train, train, labels, test, test_targets, records.num_classes, collate_fn=collate_tokens)
    return source, encoder
