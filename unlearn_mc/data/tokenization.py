"""Turning texts into token ids: a model's own tokenizer from a local folder, or one trained here with ``tokenizers``.

Nothing is downloaded. Without a tokenizer folder, a word-level tokenizer (lower-cased, split on
whitespace and punctuation) is trained on the training pool's texts with ``tokenizers``: the
``vocab_size − 4`` most frequent words plus ``[PAD] [UNK] [CLS] [SEP]``. Its training is deterministic
(ties between equally frequent words are broken by the word), so every stage that reads the same
data builds the same vocabulary, and no file needs to travel between stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from unlearn_mc.errors import UnlearnMCError

SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]")


class TextEncoder:
    """Encodes texts as 1-D ``long`` tensors of ids, truncated to ``max_length`` tokens.

    ``vocab_size`` is the number of ids (the embedding size a network needs) and ``pad_token_id`` the id the
    tokenizer pads with (a network maps the batches' ``PAD_ID`` positions to it)."""

    def __init__(self, encode_batch, vocab_size: int, pad_token_id: int, eos_token_id: int | None = None, decode=None) -> None:
        self._encode_batch = encode_batch
        self._decode = decode
        self.vocab_size = vocab_size
        self.pad_token_id = pad_token_id
        self.eos_token_id = eos_token_id

    def encode(self, texts: Sequence[str], max_length: int, special_tokens: bool = True) -> list[Tensor]:
        """One id tensor per text, at most ``max_length`` long (at least one id: an empty text gives [UNK] or the BOS)."""
        out = []
        for ids in self._encode_batch(list(texts), special_tokens):
            ids = list(ids)[:max_length] or [self.pad_token_id]
            out.append(torch.tensor(ids, dtype=torch.long))
        return out

    def decode(self, ids: Sequence[int]) -> str:
        """The text of ``ids``, special tokens left out."""
        return self._decode(list(ids))

    @classmethod
    def from_folder(cls, folder: str | Path) -> TextEncoder:
        """A Hugging Face tokenizer saved in ``folder`` (``tokenizer.json`` / vocab files), read with ``local_files_only``."""
        path = Path(folder)
        if not path.is_dir():
            raise UnlearnMCError(f"tokenizer folder {str(path)!r} does not exist; give a folder written by tokenizer.save_pretrained, or null to train one on the data.")
        from transformers import AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError) as error:
            raise UnlearnMCError(f"no tokenizer could be read from {str(path)!r} ({str(error).splitlines()[0]}); give a folder written by tokenizer.save_pretrained.") from None
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)

        def encode_batch(texts: list[str], special: bool):
            return tokenizer(texts, add_special_tokens=special)["input_ids"]

        return cls(encode_batch, len(tokenizer), pad, tokenizer.eos_token_id, lambda ids: tokenizer.decode(ids, skip_special_tokens=True))

    @classmethod
    def train_local(cls, texts: Sequence[str], vocab_size: int) -> TextEncoder:
        """A word-level tokenizer trained on ``texts``; each encoding starts with [CLS] when ``special_tokens``."""
        if vocab_size <= len(SPECIAL_TOKENS):
            raise UnlearnMCError(f"vocab_size={vocab_size} leaves no room for words; it must exceed {len(SPECIAL_TOKENS)}.")
        from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
        tokenizer.normalizer = normalizers.Lowercase()
        tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
        tokenizer.train_from_iterator(list(texts), trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False))
        cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")

        def encode_batch(texts: list[str], special: bool):
            encoded = [item.ids for item in tokenizer.encode_batch(texts)]
            return [[cls_id, *ids] for ids in encoded] if special else encoded

        return cls(encode_batch, vocab_size, tokenizer.token_to_id("[PAD]"), sep_id, lambda ids: tokenizer.decode(ids, skip_special_tokens=True))


def text_encoder(tokenizer: str | None, texts: Sequence[str], vocab_size: int) -> TextEncoder:
    """The tokenizer of folder ``tokenizer``, or (None) one trained on ``texts`` with ``vocab_size`` ids."""
    return TextEncoder.from_folder(tokenizer) if tokenizer else TextEncoder.train_local(texts, vocab_size)
