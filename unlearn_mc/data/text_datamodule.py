"""``TextDataModule``: the ``UnlearningDataModule`` over labelled texts, tokenised, dynamically padded."""

from __future__ import annotations

from typing import Literal

from unlearn_mc.data.datamodule import UnlearningDataModule
from unlearn_mc.data.sources import SourceData
from unlearn_mc.data.text_source import load_text_source
from unlearn_mc.data.tokenization import TextEncoder
from unlearn_mc.errors import UnlearnMCError


class TextDataModule(UnlearningDataModule):
    """Text classification through the same streams, seeded persisted split and evaluation splits as images.

    Samples are ``(ids, label)`` with ``ids`` a 1-D tensor of token ids; a batch is ``(ids (B, L), labels (B,))``
    with L the longest sequence of the batch and shorter ones right-padded with ``PAD_ID = -1`` (the text
    networks mask those positions). Everything else (forget rules, ``split_file``, streams, loaders) is
    ``UnlearningDataModule``'s; the split is persisted under ``checkpoints/text/split.json`` by default.

    The other arguments are ``UnlearningDataModule``'s, documented there (``forget_ratio``, ``split_seed``, ``split_file``,
    ``train_streams``, …), except the image ones (``download``, ``image_size``), the shadow models' and the ``memorised`` rule's.

    Args:
        data_dir: a JSONL / JSON / CSV file of ``{"text": …, "label": …}`` records, a folder with
            ``train.<ext>`` (and ``test.<ext>``), or a saved Hugging Face dataset (see ``text_records``).
        tokenizer: a local tokenizer folder (``save_pretrained``); null trains a word-level tokenizer on the pool.
        max_length: texts are truncated to this many tokens.
        vocab_size: size of the locally trained tokenizer's vocabulary (the net's embedding needs this many rows).
        text_field: the record field holding the text.
        label_field: the record field holding the label.
        dataset: the name under which the split is stored (default ``text``).
        forget_rule: ``random`` or ``class``, as in ``UnlearningDataModule``.
        batch_size: training batch size.
        eval_batch_size: evaluation batch size.
    """

    sources = ("text",)

    def __init__(
        self,
        *,
        data_dir: str = "data/text.jsonl",
        tokenizer: str | None = None,
        max_length: int = 128,
        vocab_size: int = 1000,
        text_field: str = "text",
        label_field: str = "label",
        dataset: str = "text",
        forget_rule: Literal["random", "class"] = "random",
        batch_size: int = 32,
        eval_batch_size: int = 128,
        **kwargs,
    ) -> None:
        if max_length < 1:
            raise UnlearnMCError(f"max_length={max_length} must be at least 1.")
        # not offered for text: the image settings, the shadow models and the memorised rule (its arguments stay at these values)
        super().__init__(dataset=dataset, data_dir=data_dir, forget_rule=forget_rule, batch_size=batch_size, eval_batch_size=eval_batch_size,
                         download=False, image_size=32, shadow_count=None, shadow_index=0, shadow_seed=0, memorisation_file=None, **kwargs)
        self.tokenizer, self.max_length, self.vocab_size = tokenizer, max_length, vocab_size
        self.text_field, self.label_field = text_field, label_field
        self.encoder: TextEncoder | None = None

    def load_source(self) -> SourceData:
        source, self.encoder = load_text_source(self.data_dir, self.tokenizer, self.max_length, self.vocab_size, self.text_field, self.label_field)
        return source
