"""``TextDataModule``: the ``UnlearningDataModule`` over labelled texts, tokenised, dynamically padded."""

from __future__ import annotations

from typing import Literal

from unlearn_mc.data.datamodule import DEFAULT_TEST_FRACTION, UnlearningDataModule
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

    Args:
        data_dir: a JSONL / JSON / CSV file of ``{"text": …, "label": …}`` records, a folder with
            ``train.<ext>`` (and ``test.<ext>``), or a saved Hugging Face dataset (see ``text_records``).
        tokenizer: a local tokenizer folder (``save_pretrained``); null trains a word-level tokenizer on the pool.
        max_length: texts are truncated to this many tokens.
        vocab_size: size of the locally trained tokenizer's vocabulary (the net's embedding needs this many rows).
        text_field, label_field: the record fields holding the text and the label.
        dataset: the name under which the split is stored (default ``text``).
    """

    sources = ("text",)

    def __init__(
        self,
        data_dir: str = "data/text.jsonl",
        tokenizer: str | None = None,
        max_length: int = 128,
        vocab_size: int = 1000,
        text_field: str = "text",
        label_field: str = "label",
        dataset: str = "text",
        forget_rule: Literal["random", "class"] = "random",
        forget_ratio: float | None = 0.1,
        forget_count: int | None = None,
        forget_classes: list[int] | None = None,
        exclude_forget_classes_from_test: bool = False,
        split_seed: int = 0,
        val_fraction: float = 0.1,
        test_fraction: float = DEFAULT_TEST_FRACTION,
        split_file: str | None = None,
        train_streams: list[str] | None = None,
        combined_mode: Literal["max_size_cycle", "min_size", "max_size", "sequential"] = "max_size_cycle",
        eval_retain_max: int | None = None,
        batch_size: int = 32,
        eval_batch_size: int = 128,
        num_workers: int = 0,
    ) -> None:
        if max_length < 1:
            raise UnlearnMCError(f"max_length={max_length} must be at least 1.")
        super().__init__(
            dataset=dataset, data_dir=data_dir, forget_rule=forget_rule, forget_ratio=forget_ratio, forget_count=forget_count,
            forget_classes=forget_classes, exclude_forget_classes_from_test=exclude_forget_classes_from_test, split_seed=split_seed,
            val_fraction=val_fraction, test_fraction=test_fraction, split_file=split_file, train_streams=train_streams,
            combined_mode=combined_mode, eval_retain_max=eval_retain_max, batch_size=batch_size, eval_batch_size=eval_batch_size,
            num_workers=num_workers,
        )
        self.encoder: TextEncoder | None = None

    def load_source(self) -> SourceData:
        hp = self.hparams
        source, self.encoder = load_text_source(hp.data_dir, hp.tokenizer, hp.max_length, hp.vocab_size, hp.text_field, hp.label_field)
        return source
