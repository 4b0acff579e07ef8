"""``TofuDataModule``: causal-LM unlearning on TOFU-format forget/retain question–answer files."""

from __future__ import annotations

from typing import Literal

import torch
from torch.utils.data import ConcatDataset, Dataset

from unlearn_mc.data.datamodule import UnlearningDataModule
from unlearn_mc.data.padding import collate_tokens
from unlearn_mc.data.qa_encoding import DEFAULT_PROMPT, encode_qa
from unlearn_mc.data.qa_records import QARecord, read_qa_file, tofu_files
from unlearn_mc.data.sources import SourceData
from unlearn_mc.data.splits import Split, SplitSettings
from unlearn_mc.data.text_source import TokenDataset
from unlearn_mc.data.tokenization import TextEncoder, text_encoder


class TofuDataModule(UnlearningDataModule):
    """The streams ``full`` / ``forget`` / ``retain`` and the evaluation splits of a TOFU split (forget01/05/10).

    The split is the files' (D_f = ``<split>.json``, D_r = ``retain<100−k>.json``, D = both), not drawn, so
    nothing is persisted. A sample is ``(ids, targets)`` with answer-only next-token targets (``qa_encoding``);
    batches are padded dynamically (ids with ``PAD_ID``, targets with ``IGNORE_INDEX``). Evaluation splits:
    ``forget``, ``retain`` (at most ``eval_retain_max`` records, TOFU scores 400 of them), and ``test`` = the
    real-authors and world-facts questions when their files are there (the non-members the MIA compares with).
    ``records`` keeps the raw records (with paraphrased and perturbed answers where the files have them) for
    ``unlearn_mc.evaluation.TofuEvaluation``.

    Args:
        data_dir: the TOFU folder (``forget01.json``, ``retain99.json``, …).
        split: ``forget01``, ``forget05`` or ``forget10``.
        tokenizer: the model's tokenizer folder; null trains a word-level tokenizer on the QA text (tests).
        prompt: the question template, ``{question}`` replaced (phi-1.5: ``Question: {question}\\nAnswer: ``).
        max_length, vocab_size: truncation length; size of a locally trained vocabulary.
    """

    sources = ("tofu",)

    def __init__(
        self,
        data_dir: str = "data/tofu",
        split: Literal["forget01", "forget05", "forget10"] = "forget01",
        tokenizer: str | None = None,
        prompt: str = DEFAULT_PROMPT,
        max_length: int = 256,
        vocab_size: int = 1000,
        train_streams: list[str] | None = None,
        combined_mode: Literal["max_size_cycle", "min_size", "max_size", "sequential"] = "max_size_cycle",
        eval_retain_max: int | None = 400,
        batch_size: int = 8,
        eval_batch_size: int = 16,
        num_workers: int = 0,
    ) -> None:
        super().__init__(dataset="tofu", data_dir=data_dir, val_fraction=0.0, train_streams=train_streams, combined_mode=combined_mode,
                         eval_retain_max=eval_retain_max, batch_size=batch_size, eval_batch_size=eval_batch_size, num_workers=num_workers)
        self.files = tofu_files(data_dir, split)  # bad folder or split: refused before anything is written
        self.tokenizer, self.prompt, self.max_length, self.vocab_size = tokenizer, prompt, max_length, vocab_size
        self.encoder: TextEncoder | None = None
        self.records: dict[str, list[QARecord]] = {}
        self.test_data: Dataset | None = None

    @property
    def num_classes(self) -> None:
        """None: a causal LM has no class count to check (its outputs are next-token logits)."""
        return None

    def encode(self, records: list[QARecord], answer: str = "answer") -> TokenDataset:
        """Samples (ids, targets) of ``records`` with their ``answer`` field (or ``paraphrased_answer``)."""
        pairs = [encode_qa(self.encoder, r.question, getattr(r, answer), self.prompt, self.max_length) for r in records]
        return TokenDataset([ids for ids, _ in pairs], [targets for _, targets in pairs])

    def setup(self, stage: str | None = None) -> None:
        if self.split is not None:
            return
        self.records = {name: read_qa_file(path) for name, path in self.files.items()}
        forget, retain = self.records["forget"], self.records["retain"]
        texts = [f"{self.prompt.format(question=r.question)} {r.answer}" for r in forget + retain]
        self.encoder = text_encoder(self.tokenizer, texts, self.vocab_size)
        pool = self.encode(forget + retain)
        tests = [self.encode(self.records[name]) for name in ("real_authors", "world_facts") if name in self.records]
        self.test_data = ConcatDataset(tests) if tests else None
        targets = torch.zeros(len(pool), dtype=torch.long)  # no class labels: the split is the files'
        self.source = SourceData("tofu", pool, pool, targets, self.test_data, None, 0, collate_fn=collate_tokens)
        settings = SplitSettings("tofu", len(pool), "", "files", None, len(forget), None, 0, 0.0, None)
        self.split = Split(settings, forget=list(range(len(forget))), retain=list(range(len(forget), len(pool))), val=[])

    def eval_datasets(self) -> dict[str, Dataset]:
        self._require_setup()
        retain = self.split.retain[: self.eval_retain_max] if self.eval_retain_max else self.split.retain
        datasets = {"forget": self._train_view(self.split.forget, False), "retain": self._train_view(retain, False)}
        if self.test_data is not None:
            datasets["test"] = self.test_data
        return datasets

    @property
    def eval_split_names(self) -> list[str]:
        self._require_setup()
        return ["forget", "retain"] + (["test"] if self.test_data is not None else [])
